//! Client configuration: defaults, validation that names the bad field, and a Redis URL
//! type that never prints its password.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

mod log_filter;
mod numbers;

use log_filter::is_log_filter;
pub use log_filter::LOG_LEVELS;
use numbers::{float, int};
pub use numbers::{opt_count, opt_ms, whole_number};

/// Redis URL used when neither the config nor `REDIS_URL` gives one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// XREAD/XREADGROUP BLOCK time.
pub const DEFAULT_BLOCK_MS: u64 = 5_000;
/// Entries per read.
pub const DEFAULT_COUNT: usize = 10;
/// Milliseconds between automatic trims.
pub const DEFAULT_AUTO_TRIM_INTERVAL_MS: u64 = 3_600_000;
/// Length automatic trimming keeps.
pub const DEFAULT_MAX_LEN: u64 = 10_000;
/// Time allowed for one connection attempt (TCP, TLS, AUTH, PING).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Time allowed for one command before it counts as unavailable.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 1_000;
/// First reconnect delay.
pub const DEFAULT_RECONNECT_INITIAL_DELAY_MS: u64 = 50;
/// Longest reconnect delay.
pub const DEFAULT_RECONNECT_MAX_DELAY_MS: u64 = 2_000;
/// Growth of the reconnect delay per failed attempt.
pub const DEFAULT_RECONNECT_FACTOR: f64 = 2.0;
/// Random share of each reconnect delay (0 = none, 1 = up to the whole delay).
pub const DEFAULT_RECONNECT_JITTER: f64 = 0.3;
/// Longest BLOCK time accepted; longer blocks would hide dead connections for too long.
pub const MAX_BLOCK_MS: u64 = 3_600_000;
/// Largest COUNT accepted per read.
pub const MAX_COUNT: usize = 100_000;
/// Largest JSON payload a publish accepts by default (1 MiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 1024 * 1024;
/// Publishes kept while disconnected, by default none (fail open at once).
pub const DEFAULT_OFFLINE_BUFFER: u64 = 0;

/// The configuration as it arrives from a caller: every field optional and unvalidated.
/// Its `Debug` shows `redis_url` without the password.
#[derive(Clone, Default)]
pub struct ConfigInput {
    /// `redis://` or `rediss://` URL; falls back to `REDIS_URL`, then [`DEFAULT_REDIS_URL`].
    pub redis_url: Option<String>,
    /// XREAD BLOCK in milliseconds.
    pub default_block_ms: Option<f64>,
    /// Entries per read.
    pub default_count: Option<f64>,
    /// Milliseconds between automatic trims.
    pub auto_trim_interval: Option<f64>,
    /// Length automatic trimming keeps.
    pub default_max_len: Option<f64>,
    /// Whether streams are trimmed automatically.
    pub enable_auto_trim: Option<bool>,
    /// Which streams auto-trim covers: `published` (default) or `touched`.
    pub auto_trim_streams: Option<String>,
    /// Time allowed for one connection attempt, in milliseconds.
    pub connect_timeout_ms: Option<f64>,
    /// Time allowed for one command, in milliseconds.
    pub command_timeout_ms: Option<f64>,
    /// First reconnect delay in milliseconds.
    pub reconnect_initial_delay_ms: Option<f64>,
    /// Longest reconnect delay in milliseconds.
    pub reconnect_max_delay_ms: Option<f64>,
    /// Growth factor of the reconnect delay.
    pub reconnect_factor: Option<f64>,
    /// Random share of each reconnect delay, 0..=1.
    pub reconnect_jitter: Option<f64>,
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace` or an EnvFilter directive).
    pub log_level: Option<String>,
    /// Publishes kept in order while disconnected and written once Redis is back.
    pub offline_buffer: Option<f64>,
    /// Largest JSON payload of one publish, in bytes.
    pub max_payload_bytes: Option<f64>,
    /// PEM file with the CA certificate(s) that sign the server's TLS certificate.
    pub tls_ca_file: Option<String>,
}

/// Which streams automatic trimming covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoTrimStreams {
    /// Only streams this client publishes to (the default): a process that only reads never
    /// trims streams other services write.
    Published,
    /// Also the streams it subscribes to or consumes from.
    Touched,
}

impl AutoTrimStreams {
    /// The name the config uses.
    pub fn name(self) -> &'static str {
        match self {
            AutoTrimStreams::Published => "published",
            AutoTrimStreams::Touched => "touched",
        }
    }
}

/// Reconnect back-off bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any delay, jitter included.
    pub max: Duration,
    /// Growth per failed attempt.
    pub factor: f64,
    /// Random share of each delay, 0..=1.
    pub jitter: f64,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where Redis is; prints without its password.
    pub redis_url: RedisUrl,
    /// XREAD BLOCK time when a subscription gives none.
    pub default_block: Duration,
    /// COUNT when a subscription gives none.
    pub default_count: usize,
    /// Time between automatic trims.
    pub auto_trim_interval: Duration,
    /// Length automatic trimming keeps.
    pub default_max_len: u64,
    /// Whether streams are trimmed automatically.
    pub enable_auto_trim: bool,
    /// Which streams auto-trim covers.
    pub auto_trim_streams: AutoTrimStreams,
    /// Time allowed for one connection attempt.
    pub connect_timeout: Duration,
    /// Time allowed for one command.
    pub command_timeout: Duration,
    /// Reconnect schedule.
    pub reconnect: BackoffConfig,
    /// Log filter, when the caller chose one.
    pub log_level: Option<String>,
    /// Publishes kept while disconnected (0: none).
    pub offline_buffer: usize,
    /// Largest JSON payload of one publish, in bytes.
    pub max_payload_bytes: usize,
    /// PEM CA certificates for `rediss://`, read when the config was validated.
    pub tls_ca: Option<Vec<u8>>,
    /// Where [`Config::tls_ca`] came from, for status and logs.
    pub tls_ca_file: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_input(ConfigInput::default()).expect("the defaults are valid")
    }
}

impl Config {
    /// Validates a caller's configuration and fills in the defaults.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the first field that is negative, not finite, out of
    /// range, or (for `redisUrl`) not a `redis://`/`rediss://` URL.
    pub fn from_input(input: ConfigInput) -> Result<Config> {
        let url = match input.redis_url {
            Some(u) => u,
            None => std::env::var("REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
        };
        let redis_url = RedisUrl::parse(&url)?;
        let default_block = Duration::from_millis(int(
            "defaultBlockMs",
            input.default_block_ms,
            DEFAULT_BLOCK_MS,
            1,
            MAX_BLOCK_MS,
        )?);
        let default_count = int(
            "defaultCount",
            input.default_count,
            DEFAULT_COUNT as u64,
            1,
            MAX_COUNT as u64,
        )? as usize;
        let auto_trim_interval = Duration::from_millis(int(
            "autoTrimInterval",
            input.auto_trim_interval,
            DEFAULT_AUTO_TRIM_INTERVAL_MS,
            1,
            u32::MAX as u64,
        )?);
        let default_max_len = int(
            "defaultMaxLen",
            input.default_max_len,
            DEFAULT_MAX_LEN,
            0,
            i64::MAX as u64,
        )?;
        let connect_timeout = Duration::from_millis(int(
            "connectTimeoutMs",
            input.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT_MS,
            1,
            600_000,
        )?);
        let command_timeout = Duration::from_millis(int(
            "commandTimeoutMs",
            input.command_timeout_ms,
            DEFAULT_COMMAND_TIMEOUT_MS,
            1,
            600_000,
        )?);
        let initial = int(
            "reconnectInitialDelayMs",
            input.reconnect_initial_delay_ms,
            DEFAULT_RECONNECT_INITIAL_DELAY_MS,
            1,
            600_000,
        )?;
        let max = int(
            "reconnectMaxDelayMs",
            input.reconnect_max_delay_ms,
            DEFAULT_RECONNECT_MAX_DELAY_MS.max(initial),
            1,
            3_600_000,
        )?;
        if max < initial {
            return Err(Error::invalid(
                "reconnectMaxDelayMs",
                format!("{max} is smaller than reconnectInitialDelayMs ({initial})"),
            ));
        }
        let factor = float(
            "reconnectFactor",
            input.reconnect_factor,
            DEFAULT_RECONNECT_FACTOR,
            1.0,
            100.0,
        )?;
        let jitter = float(
            "reconnectJitter",
            input.reconnect_jitter,
            DEFAULT_RECONNECT_JITTER,
            0.0,
            1.0,
        )?;
        if let Some(level) = &input.log_level {
            if !is_log_filter(level) {
                return Err(Error::invalid(
                    "logLevel",
                    format!(
                        "{level:?} is not error, warn, info, debug, trace or a filter directive"
                    ),
                ));
            }
        }
        let offline_buffer = int(
            "offlineBuffer",
            input.offline_buffer,
            DEFAULT_OFFLINE_BUFFER,
            0,
            1_000_000,
        )? as usize;
        let max_payload_bytes = int(
            "maxPayloadBytes",
            input.max_payload_bytes,
            DEFAULT_MAX_PAYLOAD_BYTES,
            1,
            512 * 1024 * 1024,
        )? as usize;
        let tls_ca = match &input.tls_ca_file {
            None => None,
            Some(path) => {
                if !redis_url.is_tls() {
                    return Err(Error::invalid(
                        "tlsCaFile",
                        "is only used with a rediss:// redisUrl",
                    ));
                }
                let pem = std::fs::read(path).map_err(|e| {
                    Error::invalid("tlsCaFile", format!("cannot read {path:?}: {e}"))
                })?;
                if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
                    return Err(Error::invalid(
                        "tlsCaFile",
                        format!("{path:?} holds no PEM certificate"),
                    ));
                }
                Some(pem)
            }
        };
        Ok(Config {
            redis_url,
            default_block,
            default_count,
            auto_trim_interval,
            default_max_len,
            enable_auto_trim: input.enable_auto_trim.unwrap_or(true),
            auto_trim_streams: match input.auto_trim_streams.as_deref() {
                None | Some("published") => AutoTrimStreams::Published,
                Some("touched") => AutoTrimStreams::Touched,
                Some(other) => {
                    return Err(Error::invalid(
                        "autoTrimStreams",
                        format!("{other:?} is not \"published\" or \"touched\""),
                    ))
                }
            },
            connect_timeout,
            command_timeout,
            reconnect: BackoffConfig {
                initial: Duration::from_millis(initial),
                max: Duration::from_millis(max),
                factor,
                jitter,
            },
            log_level: input.log_level,
            offline_buffer,
            max_payload_bytes,
            tls_ca,
            tls_ca_file: input.tls_ca_file,
        })
    }
}

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
        let sentinel_userinfo = match (&sentinel_user, &sentinel_password) {
            (None, None) => None,
            (u, p) => Some(format!(
                "{}:{}",
                encode(u.as_deref().unwrap_or("")),
                encode(p.as_deref().unwrap_or(""))
            )),
        };
        let sentinels = parts.node_urls(scheme, sentinel_userinfo.as_deref())?;
        let (username, password) = parts.credentials();
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

/// Percent-encodes a user name or password for a URL.
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
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

    /// The user name and password of the userinfo, decoded.
    fn credentials(&self) -> (Option<String>, Option<String>) {
        let Some(ui) = self.userinfo else {
            return (None, None);
        };
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        match ui.split_once(':') {
            Some((u, p)) => (Some(decode(u)).filter(|u| !u.is_empty()), Some(decode(p))),
            None => (Some(decode(ui)).filter(|u| !u.is_empty()), None),
        }
    }

    /// The URL with `***` for the password.
    fn redacted(&self, scheme: &str) -> String {
        let userinfo = match self.userinfo {
            Some(ui) => match ui.split_once(':') {
                Some((u, _)) => format!("{u}:***@"),
                None => format!("{ui}@"),
            },
            None => String::new(),
        };
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

impl fmt::Debug for ConfigInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redis_url = self
            .redis_url
            .as_deref()
            .map(|raw| match RedisUrl::parse(raw) {
                Ok(u) => u.redacted,
                // A URL that does not parse may still hold a password somewhere.
                Err(_) => "(a URL that does not parse, not shown)".to_owned(),
            });
        f.debug_struct("ConfigInput")
            .field("redis_url", &redis_url)
            .field("default_block_ms", &self.default_block_ms)
            .field("default_count", &self.default_count)
            .field("auto_trim_interval", &self.auto_trim_interval)
            .field("default_max_len", &self.default_max_len)
            .field("enable_auto_trim", &self.enable_auto_trim)
            .field("auto_trim_streams", &self.auto_trim_streams)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field(
                "reconnect_initial_delay_ms",
                &self.reconnect_initial_delay_ms,
            )
            .field("reconnect_max_delay_ms", &self.reconnect_max_delay_ms)
            .field("reconnect_factor", &self.reconnect_factor)
            .field("reconnect_jitter", &self.reconnect_jitter)
            .field("log_level", &self.log_level)
            .field("offline_buffer", &self.offline_buffer)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
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
    fn defaults_match_the_contract() {
        let c = Config::from_input(ConfigInput {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.default_block, Duration::from_millis(5000));
        assert_eq!(c.default_count, 10);
        assert_eq!(c.auto_trim_interval, Duration::from_millis(3_600_000));
        assert_eq!(c.default_max_len, 10_000);
        assert!(c.enable_auto_trim);
        assert_eq!(c.command_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn bad_numbers_name_their_field() {
        let cases: Vec<(ConfigInput, &str)> = vec![
            (
                ConfigInput {
                    default_block_ms: Some(-1.0),
                    ..Default::default()
                },
                "defaultBlockMs",
            ),
            (
                ConfigInput {
                    default_count: Some(0.0),
                    ..Default::default()
                },
                "defaultCount",
            ),
            (
                ConfigInput {
                    command_timeout_ms: Some(f64::NAN),
                    ..Default::default()
                },
                "commandTimeoutMs",
            ),
            (
                ConfigInput {
                    default_max_len: Some(1.5),
                    ..Default::default()
                },
                "defaultMaxLen",
            ),
            (
                ConfigInput {
                    reconnect_jitter: Some(2.0),
                    ..Default::default()
                },
                "reconnectJitter",
            ),
            (
                ConfigInput {
                    reconnect_initial_delay_ms: Some(500.0),
                    reconnect_max_delay_ms: Some(100.0),
                    ..Default::default()
                },
                "reconnectMaxDelayMs",
            ),
        ];
        for (input, field) in cases {
            assert_eq!(field_of(Config::from_input(input).unwrap_err()), field);
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
    fn debug_never_prints_credentials() {
        let input = ConfigInput {
            redis_url: Some("redis://alice:s3cret@h:6379".into()),
            ..Default::default()
        };
        let shown = format!("{input:?} {input:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("alice:***@h"), "{shown}");
        let unparsable = ConfigInput {
            redis_url: Some("redis://alice:s3cret@h:notaport".into()),
            ..Default::default()
        };
        assert!(!format!("{unparsable:?}").contains("s3cret"));
        for raw in [
            "redis+cluster://app:s3cret@h1:7000,h2:7001",
            "rediss+sentinel://app:s3cret@s1:26379/m?sentinelPassword=s3cret",
        ] {
            let t = RedisUrl::parse(raw).unwrap().topology().clone();
            let shown = format!("{t:?} {t:#?}");
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn url_password_never_prints() {
        let u = RedisUrl::parse("redis://alice:s3cret@127.0.0.1:6380/2").unwrap();
        assert_eq!(u.to_string(), "redis://alice:***@127.0.0.1:6380/2");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(u.expose().contains("s3cret"));
    }
}
