//! A Redis Cluster: the hash slot of a key, and the slot map (`CLUSTER SLOTS`) that blocking
//! reads are placed by; commands go through the `redis` crate's cluster client.

use std::sync::RwLock;

use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};
use tracing::warn;

use super::node::{node_client, node_url, timed_out, NodeAddr};
use crate::config::Config;

/// The hash slot of a key (CRC16 of the key, or of its `{hash tag}`, modulo 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged) % 16384
}

/// A Redis Cluster: the crate's client for commands, and the slot map for blocking reads.
pub struct ClusterTarget {
    client: redis::cluster::ClusterClient,
    scheme: String,
    userinfo: String,
    /// `(first slot, last slot, master)`, from `CLUSTER SLOTS`.
    slots: RwLock<Vec<(u16, u16, NodeAddr)>>,
}

impl ClusterTarget {
    pub(super) fn new(
        client: redis::cluster::ClusterClient,
        scheme: String,
        userinfo: String,
    ) -> Self {
        ClusterTarget {
            client,
            scheme,
            userinfo,
            slots: RwLock::new(Vec::new()),
        }
    }

    /// A client for the node at `addr`, with the seeds' scheme and credentials.
    pub(super) fn node(
        &self,
        addr: &NodeAddr,
        cfg: &Config,
    ) -> std::result::Result<redis::Client, RedisError> {
        node_client(&node_url(&self.scheme, &self.userinfo, addr, None), cfg)
    }

    /// Opens the cluster client's connection (checked with a PING).
    ///
    /// # Errors
    /// Why it could not be opened.
    pub(super) async fn open(
        &self,
        cfg: &Config,
    ) -> std::result::Result<ClusterConnection, RedisError> {
        let connecting = async {
            let mut conn = self.client.get_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok(conn)
        };
        match tokio::time::timeout(cfg.connect_timeout * 2, connecting).await {
            Ok(r) => r,
            Err(_) => Err(timed_out("connecting to the cluster")),
        }
    }

    /// The master that owns `key`'s slot, as last seen.
    pub fn owner(&self, key: &str) -> Option<NodeAddr> {
        let slot = key_slot(key.as_bytes());
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&slot))
            .map(|(_, _, a)| a.clone())
    }

    /// Replaces the slot map with a `CLUSTER SLOTS` reply; returns whether it changed.
    pub fn set_slots(&self, reply: &Value) -> bool {
        let mut map = Vec::new();
        if let Value::Array(ranges) = reply {
            for r in ranges {
                let Value::Array(parts) = r else { continue };
                let (Some(Value::Int(from)), Some(Value::Int(to)), Some(Value::Array(master))) =
                    (parts.first(), parts.get(1), parts.get(2))
                else {
                    continue;
                };
                let host = match master.first() {
                    Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                    Some(Value::SimpleString(h)) => h.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = master.get(1) else {
                    continue;
                };
                let (Ok(from), Ok(to), Ok(port)) = (
                    u16::try_from(*from),
                    u16::try_from(*to),
                    u16::try_from(*port),
                ) else {
                    warn!(
                        from,
                        to,
                        port,
                        "CLUSTER SLOTS named a slot or port out of range; skipping that range"
                    );
                    continue;
                };
                map.push((from, to, NodeAddr { host, port }));
            }
        }
        map.sort();
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let changed = *slots != map;
        *slots = map;
        changed
    }

    /// Every master that owns slots.
    pub fn masters(&self) -> Vec<NodeAddr> {
        let mut v: Vec<NodeAddr> = self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, _, a)| a.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value out of range in `CLUSTER SLOTS` (a port above 65535) is skipped, not wrapped
    /// into another node's address.
    #[test]
    fn a_slot_map_entry_out_of_range_is_skipped() {
        let t = ClusterTarget {
            client: redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000"]).unwrap(),
            scheme: "redis".into(),
            userinfo: String::new(),
            slots: RwLock::default(),
        };
        let range = |from: i64, to: i64, port: i64| {
            Value::Array(vec![
                Value::Int(from),
                Value::Int(to),
                Value::Array(vec![
                    Value::BulkString(b"10.0.0.1".to_vec()),
                    Value::Int(port),
                ]),
            ])
        };
        assert!(t.set_slots(&Value::Array(vec![
            range(0, 8191, 7000),
            range(8192, 16383, 70_000),
            range(70_000, 70_001, 7001),
        ])));
        assert_eq!(
            t.masters(),
            vec![NodeAddr {
                host: "10.0.0.1".into(),
                port: 7000
            }]
        );
    }

    #[test]
    fn slots_follow_the_cluster_spec() {
        // The examples of the Redis Cluster specification and of CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag is no tag: the whole key is hashed.
        assert_eq!(
            key_slot(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % 16384
        );
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }
}
