//! The Redis URL: parsing and checking the single-server, cluster and sentinel forms into a
//! [`Topology`], and printing them without their passwords.

use std::fmt;

use super::userinfo;
use crate::error::{Error, Result};

/// Where the data lives: one server, a Redis Cluster, or a primary found through Sentinel.
/// Its `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://`, `rediss://`, `unix://`).
    Standalone,
    /// A Redis Cluster (`redis+cluster://host:port,host:port`): the seed nodes, each a
    /// `redis://` URL with the credentials; the others are learnt from them.
    Cluster {
        /// `redis[s]://[user:password@]host:port`, one per seed node.
        seeds: Vec<String>,
    },
    /// A primary and its replicas watched by Sentinel
    /// (`redis+sentinel://host:port,host:port/mymaster[/db]`).
    Sentinel {
        /// `redis[s]://[user:password@]host:port` of each sentinel (the `sentinelUsername` /
        /// `sentinelPassword` query parameters, if given).
        sentinels: Vec<String>,
        /// The monitored primary's name.
        master: String,
        /// Credentials and db for the data nodes (the URL's user, password and db).
        username: Option<String>,
        /// See `username`.
        password: Option<String>,
        /// The database number.
        db: i64,
        /// Whether the data nodes (and sentinels) speak TLS.
        tls: bool,
    },
}

/// A Redis URL whose `Display` and `Debug` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    raw: String,
    redacted: String,
    topology: Topology,
}

impl RedisUrl {
    /// Parses and checks a `redis://`, `rediss://`, `unix://`, `redis+cluster://` or
    /// `redis+sentinel://` URL (the last two also with `rediss+`).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for `redisUrl` when it does not parse or has another scheme.
    pub fn parse(raw: &str) -> Result<RedisUrl> {
        // The redis crate reads a fragment as an option (`#insecure`: skip TLS checks, which
        // this build cannot do), so such a URL would pass here and then fail every attempt
        // to connect. The fragment is not quoted back: it may hold part of a password.
        if raw.contains('#') {
            return Err(Error::invalid(
                "redisUrl",
                "a URL fragment (#...) is not accepted; write a # in a user name or password as %23",
            ));
        }
        if let Some((scheme, rest)) = raw.split_once("://") {
            match scheme {
                "redis+cluster" | "rediss+cluster" => {
                    return Self::parse_cluster(raw, scheme.trim_end_matches("+cluster"), rest)
                }
                "redis+sentinel" | "rediss+sentinel" => {
                    return Self::parse_sentinel(raw, scheme.trim_end_matches("+sentinel"), rest)
                }
                _ => {}
            }
        }
        let parsed = url::Url::parse(raw).map_err(|e| {
            Error::invalid(
                "redisUrl",
                format!("cannot parse it ({e}); expected redis://[user:password@]host:port[/db]"),
            )
        })?;
        match parsed.scheme() {
            "redis" | "rediss" => {
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(Error::invalid("redisUrl", "it has no host"));
                }
            }
            "unix" | "redis+unix" => {}
            other => {
                return Err(Error::invalid(
                    "redisUrl",
                    format!("scheme {other:?} is not supported; use redis://, rediss://, redis+cluster:// or redis+sentinel://"),
                ))
            }
        }
        check_node_url(raw, &parsed)?;
        Ok(RedisUrl {
            raw: raw.to_owned(),
            redacted: redacted(&parsed),
            topology: Topology::Standalone,
        })
    }

    /// `redis+cluster://[user:password@]h1:p1,h2:p2`.
    fn parse_cluster(raw: &str, scheme: &str, rest: &str) -> Result<RedisUrl> {
        let parts = MultiHost::split(rest)?;
        if !parts.path.trim_matches('/').is_empty() {
            return Err(Error::invalid(
                "redisUrl",
                "a cluster URL has no database: Redis Cluster only has db 0",
            ));
        }
        let seeds = parts.node_urls(scheme, parts.userinfo)?;
        Ok(RedisUrl {
            raw: raw.to_owned(),
            redacted: parts.redacted(&format!("{scheme}+cluster")),
            topology: Topology::Cluster { seeds },
        })
    }

    /// `redis+sentinel://[user:password@]s1:p1,s2:p2/mymaster[/db][?sentinelPassword=…]`.
    fn parse_sentinel(raw: &str, scheme: &str, rest: &str) -> Result<RedisUrl> {
        let parts = MultiHost::split(rest)?;
        let mut path = parts.path.trim_matches('/').split('/');
        let master = path.next().unwrap_or_default().to_owned();
        if master.is_empty() {
            return Err(Error::invalid(
                "redisUrl",
                "a sentinel URL names the monitored primary: redis+sentinel://host:port,host:port/mymaster",
            ));
        }
        let db = match path.next() {
            None | Some("") => 0,
            Some(d) => d.parse::<i64>().map_err(|_| {
                Error::invalid("redisUrl", format!("database {d:?} is not a number"))
            })?,
        };
        let query: Vec<(String, String)> = url::form_urlencoded::parse(parts.query.as_bytes())
            .into_owned()
            .collect();
        let mut sentinel_user = None;
        let mut sentinel_password = None;
        for (k, v) in &query {
            match k.as_str() {
                "sentinelUsername" => sentinel_user = Some(v.clone()),
                "sentinelPassword" => sentinel_password = Some(v.clone()),
                other => {
                    return Err(Error::invalid(
                        "redisUrl",
                        format!("unknown parameter {other:?}; a sentinel URL takes sentinelUsername and sentinelPassword"),
                    ))
                }
            }
        }
        let sentinel_userinfo =
            userinfo::from_credentials(sentinel_user.as_deref(), sentinel_password.as_deref());
        let sentinels = parts.node_urls(scheme, sentinel_userinfo.as_deref())?;
        let (username, password) = userinfo::credentials(parts.userinfo);
        Ok(RedisUrl {
            raw: raw.to_owned(),
            redacted: parts.redacted(&format!("{scheme}+sentinel")),
            topology: Topology::Sentinel {
                sentinels,
                master,
                username,
                password,
                db,
                tls: scheme == "rediss",
            },
        })
    }

    /// Whether the URL asks for TLS (`rediss://`, `rediss+cluster://`, …).
    pub fn is_tls(&self) -> bool {
        self.raw.starts_with("rediss")
    }

    /// The URL with its password, for opening connections only (a standalone server).
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// Where the data lives.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }
}

/// Checks that the redis crate can use a single-node URL.
fn check_node_url(raw: &str, parsed: &url::Url) -> Result<()> {
    // Let the redis crate reject what it cannot use (a db that is not a number, ...).
    redis::parse_redis_url(raw)
        .ok_or_else(|| Error::invalid("redisUrl", "the redis client cannot use it"))?;
    redis::Client::open(raw).map_err(|e| {
        Error::invalid(
            "redisUrl",
            format!(
                "the redis client cannot use it: {}",
                redact_text(&e.to_string(), parsed)
            ),
        )
    })?;
    Ok(())
}

fn redacted(parsed: &url::Url) -> String {
    let mut shown = parsed.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// The parts of a URL with several hosts: `[userinfo@]h1:p1,h2:p2[/path][?query]`.
struct MultiHost<'a> {
    userinfo: Option<&'a str>,
    hosts: Vec<&'a str>,
    path: &'a str,
    query: &'a str,
}

impl<'a> MultiHost<'a> {
    fn split(rest: &'a str) -> Result<Self> {
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let hosts: Vec<&str> = hosts.split(',').map(str::trim).collect();
        if hosts.iter().any(|h| h.is_empty()) {
            return Err(Error::invalid(
                "redisUrl",
                "an empty host in the list; expected host:port,host:port",
            ));
        }
        Ok(MultiHost {
            userinfo,
            hosts,
            path,
            query,
        })
    }

    /// One `scheme://[userinfo@]host` URL per host, each checked.
    fn node_urls(&self, scheme: &str, userinfo: Option<&str>) -> Result<Vec<String>> {
        self.hosts
            .iter()
            .map(|h| {
                let u = match userinfo {
                    Some(ui) => format!("{scheme}://{ui}@{h}"),
                    None => format!("{scheme}://{h}"),
                };
                let parsed = url::Url::parse(&u).map_err(|e| {
                    Error::invalid("redisUrl", format!("cannot parse host {h:?}: {e}"))
                })?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(Error::invalid(
                        "redisUrl",
                        format!("host {h:?} has no name"),
                    ));
                }
                check_node_url(&u, &parsed)?;
                Ok(u)
            })
            .collect()
    }

    /// The URL with `***` for the password.
    fn redacted(&self, scheme: &str) -> String {
        let userinfo = userinfo::redacted(self.userinfo);
        let query = if self.query.is_empty() {
            String::new()
        } else {
            // Sentinel credentials live in the query; show only the names.
            let names: Vec<String> = url::form_urlencoded::parse(self.query.as_bytes())
                .map(|(k, _)| format!("{k}=***"))
                .collect();
            format!("?{}", names.join("&"))
        };
        format!(
            "{scheme}://{userinfo}{}{}{query}",
            self.hosts.join(","),
            self.path
        )
    }
}

/// Removes a URL's password from a text (an error message that may quote the URL).
fn redact_text(text: &str, url: &url::Url) -> String {
    match url.password() {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text.to_owned(),
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A node URL of a [`Topology`] (`redis[s]://[user:password@]host:port`) without its password.
fn redacted_node(u: &str) -> String {
    url::Url::parse(u).map_or_else(|_| "(not shown)".to_owned(), |p| redacted(&p))
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = |urls: &[String]| urls.iter().map(|u| redacted_node(u)).collect::<Vec<_>>();
        match self {
            Topology::Standalone => f.write_str("Standalone"),
            Topology::Cluster { seeds } => f
                .debug_struct("Cluster")
                .field("seeds", &nodes(seeds))
                .finish(),
            Topology::Sentinel {
                sentinels,
                master,
                username,
                password,
                db,
                tls,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", &nodes(sentinels))
                .field("master", master)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "***"))
                .field("db", db)
                .field("tls", tls)
                .finish(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidArg { field, .. } => field,
            other => panic!("expected InvalidArg, got {other:?}"),
        }
    }

    #[test]
    fn bad_urls_are_rejected() {
        for raw in [
            "not a url",
            "http://localhost:6379",
            "redis://",
            "redis://h:6379/x",
        ] {
            let err = RedisUrl::parse(raw).unwrap_err();
            assert_eq!(field_of(err), "redisUrl", "{raw}");
        }
    }

    #[test]
    fn cluster_and_sentinel_urls() {
        let c = RedisUrl::parse("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001").unwrap();
        assert_eq!(
            c.topology(),
            &Topology::Cluster {
                seeds: vec![
                    "redis://app:s3cret@10.0.0.1:7000".into(),
                    "redis://app:s3cret@10.0.0.2:7001".into()
                ]
            }
        );
        assert_eq!(
            c.to_string(),
            "redis+cluster://app:***@10.0.0.1:7000,10.0.0.2:7001"
        );
        let s = RedisUrl::parse(
            "rediss+sentinel://:pw@s1:26379,s2:26380/mymaster/2?sentinelPassword=spw",
        )
        .unwrap();
        assert_eq!(
            s.topology(),
            &Topology::Sentinel {
                sentinels: vec![
                    "rediss://:spw@s1:26379".into(),
                    "rediss://:spw@s2:26380".into()
                ],
                master: "mymaster".into(),
                username: None,
                password: Some("pw".into()),
                db: 2,
                tls: true,
            }
        );
        assert!(!s.to_string().contains("pw@") && !s.to_string().contains("spw"));
        assert!(s.is_tls());
        for bad in [
            "redis+cluster://",
            "redis+cluster://h1:7000,,h2:7001",
            "redis+cluster://h1:7000/3",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/m/x",
            "redis+sentinel://s1:26379/m?nodes=3",
            "redis+cluster://h1:notaport",
        ] {
            assert_eq!(
                field_of(RedisUrl::parse(bad).unwrap_err()),
                "redisUrl",
                "{bad}"
            );
        }
    }

    #[test]
    fn url_fragments_are_rejected() {
        for raw in [
            "rediss://h:6379#insecure",
            "redis://:pw@h:6379/0#x",
            "rediss+cluster://h1:7000,h2:7001#insecure",
            "redis+sentinel://s1:26379/mymaster#insecure",
            "redis+sentinel://s1:26379/m?sentinelPassword=p#insecure",
        ] {
            let err = RedisUrl::parse(raw).unwrap_err();
            assert!(err.to_string().contains("fragment"), "{raw}: {err}");
            assert_eq!(field_of(err), "redisUrl", "{raw}");
        }
        // A `#` in a password is written %23 and stays accepted.
        RedisUrl::parse("redis://:p%23w@h:6379").unwrap();
    }

    #[test]
    fn url_password_never_prints() {
        let u = RedisUrl::parse("redis://alice:s3cret@127.0.0.1:6380/2").unwrap();
        assert_eq!(u.to_string(), "redis://alice:***@127.0.0.1:6380/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(u.expose().contains("s3cret"));
    }
}
