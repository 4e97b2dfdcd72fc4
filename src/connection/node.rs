//! One Redis node's address, and a connection that commands are sent on: to one node, or
//! the cluster client (which routes by key).

use std::fmt;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::config::Config;

/// `host:port` of one Redis node, spelled as the server spells it (the crate's cluster
/// client finds nodes by this spelling).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// Host or IP.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A connection that commands are sent on: to one node, or the cluster client.
#[derive(Clone)]
pub enum AnyConn {
    /// One node (a standalone server, a sentinel-named primary, a cluster node).
    Node(MultiplexedConnection),
    /// The cluster client: routes by key.
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            AnyConn::Node(c) => c.req_packed_command(cmd),
            AnyConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            AnyConn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            AnyConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConn::Node(c) => c.get_db(),
            AnyConn::Cluster(c) => c.get_db(),
        }
    }
}

impl AnyConn {
    /// Sends `cmd` to the node at `addr` (cluster), or on this connection (one node).
    pub async fn to_node(
        &mut self,
        cmd: Cmd,
        addr: Option<&NodeAddr>,
    ) -> redis::RedisResult<Value> {
        match (self, addr) {
            (AnyConn::Cluster(c), Some(a)) => {
                c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: a.host.clone(),
                        port: a.port,
                    }),
                )
                .await
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// Builds a client for one node URL, with the configured CA for TLS.
pub(super) fn node_client(
    url: &str,
    cfg: &Config,
) -> std::result::Result<redis::Client, RedisError> {
    match &cfg.tls_ca {
        None => redis::Client::open(url),
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
    }
}

/// The URL of the node at `addr`, reached as the seed or sentinel URL says (`scheme`,
/// `user:password@`), with `/db` where a database is selected (not in a cluster).
pub(super) fn node_url(scheme: &str, userinfo: &str, addr: &NodeAddr, db: Option<i64>) -> String {
    match db {
        Some(db) => format!("{scheme}://{userinfo}{}:{}/{db}", addr.host, addr.port),
        None => format!("{scheme}://{userinfo}{}:{}", addr.host, addr.port),
    }
}

/// A timeout, as the `redis` crate would report it.
pub(super) fn timed_out(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

/// Nothing is known yet about where to go.
pub(super) fn not_known(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotFound, what))
}
