//! Where the data lives and how to reach it: one server, a Redis Cluster, or the primary
//! that Sentinel names.
//!
//! - One server: every connection goes to it.
//! - Cluster: the command connection is the `redis` crate's cluster client (it routes each
//!   command by its key, follows `MOVED`/`ASK` and refreshes its slot map); blocking reads go
//!   over connections of their own to the master that owns their keys, found in a slot map
//!   kept here (`CLUSTER SLOTS`, refreshed when a read meets `MOVED`, `UNBLOCKED` or a dead
//!   node).
//! - Sentinel: the crate resolves a primary only when it connects, so the resolution is
//!   done here: ask the sentinels (`SENTINEL get-master-addr-by-name`), check the answer with
//!   `ROLE`, and follow the failover as the leading sentinel announces it: the moment it sends
//!   `REPLICAOF NO ONE` to the chosen replica (`+failover-state-send-slaveof-noone`), every
//!   connection moves there, instead of writing on to the old primary (which takes writes
//!   until the sentinels demote it, and loses them) until `+switch-master`, about a second
//!   later.

use std::sync::Arc;

use redis::RedisError;

use super::cluster::ClusterTarget;
use super::dial::open;
use super::node::{node_client, not_known, AnyConn, NodeAddr};
use super::sentinel::SentinelTarget;
use crate::config::{encode, Config, Topology};
use crate::error::{Error, Result};

/// Where a dedicated (blocking-read) connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The server, or the current primary (standalone, Sentinel).
    Primary,
    /// One cluster node.
    Node(NodeAddr),
    /// The cluster master owning this key's slot when the connection is opened.
    KeyOwner(Arc<str>),
}

/// How to reach the data.
// One per client: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster.
    Cluster(ClusterTarget),
    /// A primary named by Sentinel.
    Sentinel(Arc<SentinelTarget>),
}

/// The scheme and `user:password@` of a node URL, to build URLs of other nodes.
fn scheme_and_userinfo(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let userinfo = rest
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    (scheme.to_owned(), userinfo)
}

impl Target {
    /// The target of a validated config.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] when the URL or the CA cannot be used.
    pub fn new(cfg: &Config) -> Result<Target> {
        static CRYPTO: std::sync::Once = std::sync::Once::new();
        CRYPTO.call_once(|| {
            // One process-wide rustls provider; another library may have installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let field = if cfg.tls_ca.is_some() {
            "tlsCaFile"
        } else {
            "redisUrl"
        };
        let invalid = |e: RedisError| Error::invalid(field, format!("cannot be used: {e}"));
        match cfg.redis_url.topology() {
            Topology::Standalone => Ok(Target::Single(
                node_client(cfg.redis_url.expose(), cfg).map_err(invalid)?,
            )),
            Topology::Cluster { seeds } => {
                let mut b = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(cfg.connect_timeout)
                    .response_timeout(cfg.command_timeout)
                    // Our own timeouts bound every call; a few quick retries ride out a
                    // failover's MOVED/CLUSTERDOWN window within them.
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(200);
                if let Some(pem) = &cfg.tls_ca {
                    b = b.certs(redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem.clone()),
                    });
                }
                let (scheme, userinfo) = scheme_and_userinfo(&seeds[0]);
                Ok(Target::Cluster(ClusterTarget::new(
                    b.build().map_err(invalid)?,
                    scheme,
                    userinfo,
                )))
            }
            Topology::Sentinel {
                sentinels,
                master,
                username,
                password,
                db,
                tls,
            } => {
                let clients = sentinels
                    .iter()
                    .map(|u| node_client(u, cfg))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                let userinfo = match (username, password) {
                    (None, None) => String::new(),
                    (u, p) => format!(
                        "{}:{}@",
                        encode(u.as_deref().unwrap_or("")),
                        encode(p.as_deref().unwrap_or(""))
                    ),
                };
                Ok(Target::Sentinel(Arc::new(SentinelTarget::new(
                    clients,
                    master.clone(),
                    if *tls { "rediss" } else { "redis" }.to_owned(),
                    userinfo,
                    *db,
                ))))
            }
        }
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// Whether Sentinel is promoting a replica right now (the connections are moving to it).
    pub fn promotion_under_way(&self) -> bool {
        matches!(self, Target::Sentinel(t) if t.promoting().is_some())
    }

    /// Opens the command connection.
    ///
    /// # Errors
    /// Why it could not be opened.
    pub async fn open_command(&self, cfg: &Config) -> std::result::Result<AnyConn, RedisError> {
        match self {
            Target::Single(c) => Ok(AnyConn::Node(open(c, cfg).await?)),
            Target::Cluster(t) => t.open(cfg).await.map(AnyConn::Cluster),
            Target::Sentinel(t) => t.open_primary(cfg).await.map(AnyConn::Node),
        }
    }

    /// A client for a dedicated connection at `placement`, and the node it goes to (for
    /// routing `CLIENT UNBLOCK`; `None` where there is one node).
    ///
    /// # Errors
    /// When no node is known for it yet (the cluster's slot map is empty, Sentinel has not
    /// named a primary): try again after the command connection is up.
    pub async fn reader_client(
        &self,
        placement: &Placement,
        cfg: &Config,
    ) -> std::result::Result<(redis::Client, Option<NodeAddr>), RedisError> {
        match (self, placement) {
            (Target::Single(c), _) => Ok((c.clone(), None)),
            (Target::Sentinel(t), _) => Ok((t.primary_client(cfg).await?, None)),
            (Target::Cluster(t), Placement::Node(addr)) => {
                Ok((t.node(addr, cfg)?, Some(addr.clone())))
            }
            (Target::Cluster(t), Placement::KeyOwner(key)) => {
                let addr = t
                    .owner(key)
                    .ok_or_else(|| not_known("no node is known for this key's slot yet"))?;
                Ok((t.node(&addr, cfg)?, Some(addr)))
            }
            (Target::Cluster(_), Placement::Primary) => {
                Err(not_known("a cluster has no single primary to read from"))
            }
        }
    }
}
