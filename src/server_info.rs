//! What the connected server is, read once per connection from `INFO server`: its family
//! (Redis or Valkey), its version, and the stream features that differ between them.
//!
//! Valkey answers `redis_version:7.2.4` for compatibility whatever its own version; its real
//! one is `valkey_version`, and `server_name:valkey` names it. The features that matter here
//! came with Redis 8.2 (`XACKDEL`, `XDELEX`, and `KEEPREF`/`DELREF`/`ACKED` on `XTRIM` and
//! `XADD`); no Valkey release has them so far.

use std::sync::Mutex;

use redis::{FromRedisValue, Value};
use tracing::info;

/// Which server software answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFamily {
    /// Redis.
    Redis,
    /// Valkey.
    Valkey,
}

impl ServerFamily {
    /// `"redis"` or `"valkey"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerFamily::Redis => "redis",
            ServerFamily::Valkey => "valkey",
        }
    }
}

/// The server a connection reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Redis or Valkey.
    pub family: ServerFamily,
    /// Its own version, e.g. `8.2.3` (Valkey's `valkey_version`, not its `redis_version`).
    pub version: String,
    /// `major * 1000 + minor`, for comparisons.
    version_num: u32,
    /// The server process's `run_id` (changes on a restart or a failover).
    pub run_id: Option<String>,
}

impl ServerInfo {
    /// Reads an `INFO server` reply; `None` when it names no version.
    pub fn parse(info: &str) -> Option<ServerInfo> {
        let valkey = field(info, "server_name") == Some("valkey");
        let (family, version) = match (valkey, field(info, "valkey_version")) {
            (true, Some(v)) => (ServerFamily::Valkey, v),
            (true, None) => (ServerFamily::Valkey, field(info, "redis_version")?),
            (false, _) => (ServerFamily::Redis, field(info, "redis_version")?),
        };
        Some(ServerInfo {
            family,
            version: version.to_owned(),
            version_num: version_num(version)?,
            run_id: run_id(info),
        })
    }

    /// `XACKDEL`, `XDELEX`, and `KEEPREF`/`DELREF`/`ACKED` on `XTRIM` and `XADD`: Redis 8.2
    /// and later.
    pub fn has_redis_82_streams(&self) -> bool {
        self.family == ServerFamily::Redis && self.version_num >= 8_002
    }

    /// The features of [`ServerInfo::has_redis_82_streams`] this server has, for the log.
    pub fn features(&self) -> &'static [&'static str] {
        if self.has_redis_82_streams() {
            &["XACKDEL", "XDELEX", "XTRIM/XADD KEEPREF|DELREF|ACKED"]
        } else {
            &[]
        }
    }
}

/// The last server the command connection reached; logs each change of family or version
/// once.
#[derive(Debug, Default)]
pub struct ServerFacts(Mutex<Option<ServerInfo>>);

impl ServerFacts {
    /// Records the server of a new connection from its `INFO server` reply and logs it when
    /// it differs from the previous one. Returns whether the `run_id` changed (another
    /// server, or the same one restarted, since the last connection).
    pub fn learn(&self, info: &str) -> bool {
        let Some(now) = ServerInfo::parse(info) else {
            return false;
        };
        let mut known = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let before = known.replace(now.clone());
        // In a cluster INFO reaches any node: a new run_id alone is no news for the log.
        if before
            .as_ref()
            .is_none_or(|b| (b.family, &b.version) != (now.family, &now.version))
        {
            info!(
                family = now.family.as_str(),
                version = %now.version,
                features = ?now.features(),
                "connected to a new server"
            );
        }
        matches!((before.and_then(|b| b.run_id), &now.run_id), (Some(b), Some(n)) if b != *n)
    }

    /// As [`ServerFacts::learn`], from the reply to `INFO server` as the connection gives it:
    /// a cluster connection asks every node and answers a map of node to text, of which the
    /// first is taken (a cluster runs one server version).
    pub fn learn_reply(&self, reply: &Value) -> bool {
        let text = match reply {
            Value::Map(nodes) => nodes.first().map(|(_, v)| v),
            Value::Array(nodes) => nodes.first(),
            other => Some(other),
        };
        match text.and_then(|v| String::from_redis_value_ref(v).ok()) {
            Some(info) => self.learn(&info),
            None => false,
        }
    }

    /// The server last reached, if any.
    pub fn get(&self) -> Option<ServerInfo> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// See [`ServerInfo::has_redis_82_streams`]; false before the first connection.
    pub fn has_redis_82_streams(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(ServerInfo::has_redis_82_streams)
    }
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `7.0.15` as `7 * 1000 + 0`.
fn version_num(v: &str) -> Option<u32> {
    let mut parts = v.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(major * 1000 + minor.min(999))
}

/// The `run_id` of an `INFO server` reply.
pub fn run_id(info: &str) -> Option<String> {
    field(info, "run_id").map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_info() {
        let num = |info: &str| ServerInfo::parse(info).map(|s| s.version_num);
        assert_eq!(
            num("# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:0\r\n"),
            Some(7_000)
        );
        assert_eq!(num("redis_version:8.2.1\n"), Some(8_002));
        assert_eq!(num("no version here"), None);
        assert_eq!(run_id("a:1\r\nrun_id:abc \r\n").as_deref(), Some("abc"));
    }

    #[test]
    fn the_family_and_its_features_are_told_apart() {
        let redis82 = ServerInfo::parse("redis_version:8.2.3\r\nrun_id:r1\r\n").unwrap();
        assert_eq!(
            (redis82.family, redis82.version.as_str()),
            (ServerFamily::Redis, "8.2.3")
        );
        assert!(redis82.has_redis_82_streams());
        assert!(!ServerInfo::parse("redis_version:7.0.15\r\n")
            .unwrap()
            .has_redis_82_streams());
        // Valkey 9.1 says redis_version:7.2.4; its own version is valkey_version.
        let valkey = ServerInfo::parse(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\nrun_id:v1\r\n",
        )
        .unwrap();
        assert_eq!(
            (valkey.family, valkey.version.as_str()),
            (ServerFamily::Valkey, "9.1.2")
        );
        assert!(!valkey.has_redis_82_streams());

        let facts = ServerFacts::default();
        assert!(!facts.has_redis_82_streams());
        assert!(!facts.learn("redis_version:8.2.3\r\nrun_id:r1\r\n"));
        assert!(facts.has_redis_82_streams());
        assert!(!facts.learn("redis_version:8.2.3\r\nrun_id:r1\r\n"));
        assert!(facts.learn("redis_version:8.2.3\r\nrun_id:r2\r\n"));
        assert_eq!(facts.get().unwrap().run_id.as_deref(), Some("r2"));
        // A cluster connection's reply: node -> text.
        let cluster = ServerFacts::default();
        cluster.learn_reply(&Value::Map(vec![(
            Value::SimpleString("127.0.0.1:7000".into()),
            Value::BulkString(b"server_name:valkey\r\nvalkey_version:8.1.8\r\n".to_vec()),
        )]));
        assert_eq!(cluster.get().unwrap().version, "8.1.8");
    }
}
