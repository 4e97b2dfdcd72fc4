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

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::dial::open;
use crate::config::{Config, Topology};
use crate::error::{Error, Result};

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

/// Builds a client for one node URL, with the configured CA for TLS.
fn node_client(url: &str, cfg: &Config) -> std::result::Result<redis::Client, RedisError> {
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
                Ok(Target::Cluster(ClusterTarget {
                    client: b.build().map_err(invalid)?,
                    scheme,
                    userinfo,
                    slots: RwLock::new(Vec::new()),
                }))
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
                Ok(Target::Sentinel(Arc::new(SentinelTarget {
                    sentinels: clients,
                    master: master.clone(),
                    scheme: if *tls { "rediss" } else { "redis" }.to_owned(),
                    userinfo,
                    db: *db,
                    next: AtomicUsize::new(0),
                    current: watch::Sender::new(None),
                    promoting: Mutex::new(None),
                })))
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
            Target::Cluster(t) => {
                let connecting = async {
                    let mut conn = t.client.get_async_connection().await?;
                    redis::cmd("PING").query_async::<()>(&mut conn).await?;
                    Ok(conn)
                };
                match tokio::time::timeout(cfg.connect_timeout * 2, connecting).await {
                    Ok(r) => r.map(AnyConn::Cluster),
                    Err(_) => Err(timed_out("connecting to the cluster")),
                }
            }
            Target::Sentinel(t) => {
                // While a promotion is announced, the replica being promoted, not what the
                // sentinels still name (the old primary, which would take the writes and
                // lose them). It turns primary within milliseconds, so it is asked again
                // until it has (within connectTimeoutMs) instead of waiting out a back-off,
                // each time on a new connection: the sentinel's promotion ends with
                // `CLIENT KILL TYPE normal`, which closes every connection opened before it.
                let (addr, promoting) = match t.promoting() {
                    Some(a) => (a, true),
                    None => (t.resolve(cfg).await?, false),
                };
                let client = t.node(&addr, cfg)?;
                let deadline = Instant::now() + cfg.connect_timeout;
                let conn = loop {
                    let attempt = async {
                        let mut conn = open(&client, cfg).await?;
                        check_primary(&mut conn, &addr, cfg).await?;
                        Ok::<_, RedisError>(conn)
                    };
                    match attempt.await {
                        Ok(conn) => break conn,
                        Err(_) if promoting && Instant::now() < deadline => {
                            tokio::time::sleep(PROMOTION_POLL).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                t.current.send_replace(Some(addr));
                Ok(AnyConn::Node(conn))
            }
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
            (Target::Sentinel(t), _) => {
                let known = t.current.borrow().clone();
                let addr = match known {
                    Some(a) => a,
                    None => t.resolve(cfg).await?,
                };
                Ok((t.node(&addr, cfg)?, None))
            }
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

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn timed_out(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

fn not_known(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::NotFound, what))
}

/// Checks with `ROLE` that a node Sentinel named is the primary (a stale answer during a
/// failover names the old one).
async fn check_primary(
    conn: &mut MultiplexedConnection,
    addr: &NodeAddr,
    cfg: &Config,
) -> std::result::Result<(), RedisError> {
    let role = tokio::time::timeout(
        cfg.command_timeout,
        redis::cmd("ROLE").query_async::<Value>(conn),
    )
    .await
    .map_err(|_| timed_out("ROLE"))??;
    let is_master = match &role {
        Value::Array(parts) => {
            matches!(parts.first(), Some(Value::BulkString(b)) if b == b"master")
        }
        _ => false,
    };
    if is_master {
        Ok(())
    } else {
        Err(RedisError::from(std::io::Error::other(format!(
            "Sentinel named {addr} as the primary, but it is not one (yet)"
        ))))
    }
}

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
    fn node(
        &self,
        addr: &NodeAddr,
        cfg: &Config,
    ) -> std::result::Result<redis::Client, RedisError> {
        node_client(
            &format!(
                "{}://{}{}:{}",
                self.scheme, self.userinfo, addr.host, addr.port
            ),
            cfg,
        )
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

/// A primary named by Sentinel.
pub struct SentinelTarget {
    sentinels: Vec<redis::Client>,
    master: String,
    scheme: String,
    userinfo: String,
    db: i64,
    /// Which sentinel to ask first (the one that answered last).
    next: AtomicUsize,
    /// The primary, as last resolved or announced (a promotion, `+switch-master`).
    current: watch::Sender<Option<NodeAddr>>,
    /// The replica the leading sentinel is promoting and since when: connections go there
    /// until `+switch-master`, an abort, or [`PROMOTION_HINT_TTL`].
    promoting: Mutex<Option<(NodeAddr, Instant)>>,
}

/// How long an announced promotion is preferred to what the sentinels answer. A promotion
/// takes about a second (the leader waits for the replica's `INFO` to say master); if
/// neither `+switch-master` nor an abort arrived by then (the subscription was lost), the
/// sentinels are asked again.
const PROMOTION_HINT_TTL: Duration = Duration::from_secs(10);

/// How often each sentinel subscription is checked with a PING.
const SENTINEL_PING_EVERY: Duration = Duration::from_secs(1);

/// How often a replica being promoted is asked whether it is the primary yet.
const PROMOTION_POLL: Duration = Duration::from_millis(5);

/// What one sentinel event says about the primary of a given master name.
#[derive(Debug, PartialEq, Eq)]
enum SentinelNews {
    /// `+switch-master`: the failover ended, this is the primary.
    Switched(NodeAddr),
    /// `+failover-state-send-slaveof-noone` or `+promoted-slave`: this replica is being
    /// (or was just) made the primary.
    Promoting(NodeAddr),
    /// `-failover-abort-slave-timeout`: the promotion did not finish in time; the old
    /// primary stays. (The other aborts end a sentinel's own attempt before it promotes
    /// anything, possibly while another sentinel's promotion goes on: they change nothing.)
    Aborted,
}

/// The channels a failover is followed on.
const SENTINEL_CHANNELS: [&str; 4] = [
    "+switch-master",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
    "-failover-abort-slave-timeout",
];

/// Reads one sentinel event about `master`; `None` for other masters and other events.
fn sentinel_news(channel: &str, payload: &str, master: &str) -> Option<SentinelNews> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    let addr = |host: &str, port: &str| {
        Some(NodeAddr {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    };
    match channel {
        // "<name> <old ip> <old port> <new ip> <new port>"
        "+switch-master" => match parts[..] {
            [name, _, _, host, port] if name == master => {
                addr(host, port).map(SentinelNews::Switched)
            }
            _ => None,
        },
        // "slave <ip>:<port> <ip> <port> @ <name> <master ip> <master port>"
        "+failover-state-send-slaveof-noone" | "+promoted-slave" => match parts[..] {
            ["slave", _, host, port, "@", name, _, _] if name == master => {
                addr(host, port).map(SentinelNews::Promoting)
            }
            _ => None,
        },
        // "master <name> <ip> <port>"
        "-failover-abort-slave-timeout" => match parts[..] {
            ["master", name, _, _] if name == master => Some(SentinelNews::Aborted),
            _ => None,
        },
        _ => None,
    }
}

impl SentinelTarget {
    fn node(
        &self,
        addr: &NodeAddr,
        cfg: &Config,
    ) -> std::result::Result<redis::Client, RedisError> {
        node_client(
            &format!(
                "{}://{}{}:{}/{}",
                self.scheme, self.userinfo, addr.host, addr.port, self.db
            ),
            cfg,
        )
    }

    /// Asks the sentinels, in turn, where the primary is.
    ///
    /// # Errors
    /// The last sentinel's failure when none answered with an address.
    async fn resolve(&self, cfg: &Config) -> std::result::Result<NodeAddr, RedisError> {
        let n = self.sentinels.len();
        let first = self.next.load(Ordering::Relaxed);
        let mut last = not_known("no sentinel was asked");
        for k in 0..n {
            let i = (first + k) % n;
            let asked = async {
                let mut conn = open(&self.sentinels[i], cfg).await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match tokio::time::timeout(cfg.connect_timeout + cfg.command_timeout, asked).await {
                Ok(Ok(Some((host, port)))) => {
                    self.next.store(i, Ordering::Relaxed);
                    return Ok(NodeAddr { host, port });
                }
                Ok(Ok(None)) => {
                    last = not_known("the sentinels do not know this master name");
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = timed_out("asking a sentinel"),
            }
        }
        Err(last)
    }

    /// Watches the primary's address (changes on every announced promotion and switch;
    /// `None` after an aborted failover, until the sentinels are asked again).
    pub fn current(&self) -> watch::Receiver<Option<NodeAddr>> {
        self.current.subscribe()
    }

    /// The replica being promoted, while that announcement is fresh.
    fn promoting(&self) -> Option<NodeAddr> {
        let mut p = self.promoting.lock().unwrap_or_else(|e| e.into_inner());
        match &*p {
            Some((addr, since)) if since.elapsed() < PROMOTION_HINT_TTL => Some(addr.clone()),
            _ => {
                *p = None;
                None
            }
        }
    }

    /// Applies one piece of sentinel news; `true` when every connection must move.
    fn apply(&self, news: SentinelNews) -> bool {
        let mut promoting = self.promoting.lock().unwrap_or_else(|e| e.into_inner());
        let to = match news {
            SentinelNews::Switched(new) => {
                *promoting = None;
                Some(new)
            }
            SentinelNews::Promoting(new) => {
                *promoting = Some((new.clone(), Instant::now()));
                Some(new)
            }
            SentinelNews::Aborted => {
                // Only a failover we moved for matters: go back to asking the sentinels.
                if promoting.take().is_none() {
                    return false;
                }
                None
            }
        };
        self.current.send_if_modified(|cur| {
            if *cur == to {
                false
            } else {
                cur.clone_from(&to);
                true
            }
        })
    }

    /// Follows failovers of our primary on every sentinel until `token` is cancelled, and
    /// calls `switched` whenever the connections must move (once per change, however many
    /// sentinels announce it): when the leading sentinel starts promoting a replica, when a
    /// switch names another primary, and when a failover we moved for is aborted.
    pub async fn follow_switches(
        self: Arc<Self>,
        cfg: Arc<Config>,
        token: CancellationToken,
        switched: Arc<dyn Fn() + Send + Sync>,
    ) {
        let mut tasks = Vec::new();
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            let me = self.clone();
            let sentinel = sentinel.clone();
            let token = token.clone();
            let switched = switched.clone();
            let cfg = cfg.clone();
            tasks.push(tokio::spawn(async move {
                let mut backoff = super::backoff::Backoff::new(cfg.reconnect);
                while !token.is_cancelled() {
                    let listened = tokio::select! {
                        _ = token.cancelled() => return,
                        r = me.listen(&sentinel, &cfg, &switched, &mut backoff) => r,
                    };
                    if let Err(e) = listened {
                        let delay = backoff.next_delay();
                        warn!(sentinel = i, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot follow failovers on a sentinel; retrying");
                        tokio::select! {
                            _ = token.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }));
        }
        token.cancelled().await;
        for t in tasks {
            t.abort();
        }
    }

    /// Follows one sentinel's failover events until its subscription fails. A link that
    /// dies silently (no FIN: a partition, a frozen sentinel) is found by a PING every
    /// [`SENTINEL_PING_EVERY`] that must be answered within the command timeout.
    async fn listen(
        &self,
        sentinel: &redis::Client,
        cfg: &Config,
        switched: &Arc<dyn Fn() + Send + Sync>,
        backoff: &mut super::backoff::Backoff,
    ) -> std::result::Result<(), RedisError> {
        let subscribed = tokio::time::timeout(cfg.connect_timeout + cfg.command_timeout, async {
            let mut pubsub = sentinel.get_async_pubsub().await?;
            pubsub.subscribe(&SENTINEL_CHANNELS[..]).await?;
            Ok::<_, RedisError>(pubsub)
        })
        .await
        .map_err(|_| timed_out("subscribing to a sentinel"))??;
        backoff.reset();
        let (mut sink, mut messages) = subscribed.split();
        let mut ping = tokio::time::interval(SENTINEL_PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                _ = ping.tick() => {
                    tokio::time::timeout(cfg.command_timeout, sink.ping::<Value>())
                        .await
                        .map_err(|_| timed_out("a sentinel's subscription answering PING"))??;
                    continue;
                }
            };
            let payload: String = msg.get_payload()?;
            let channel = msg.get_channel_name();
            let Some(news) = sentinel_news(channel, &payload, &self.master) else {
                continue;
            };
            let what = match &news {
                SentinelNews::Switched(_) => "Sentinel switched the primary; moving every connection to it",
                SentinelNews::Promoting(_) => "Sentinel is promoting a replica; moving every connection to it now (the old primary would lose what it takes from here on)",
                SentinelNews::Aborted => "Sentinel aborted the failover; asking the sentinels for the primary again",
            };
            let to = match &news {
                SentinelNews::Switched(a) | SentinelNews::Promoting(a) => a.to_string(),
                SentinelNews::Aborted => "(the sentinels' answer)".to_owned(),
            };
            if self.apply(news) {
                info!(master = %self.master, event = channel, new = %to, "{what}");
                switched();
            }
        }
        Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the sentinel closed the subscription",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> NodeAddr {
        NodeAddr {
            host: "10.0.0.2".to_owned(),
            port,
        }
    }

    #[test]
    fn sentinel_events_are_read_for_our_master_only() {
        // Payloads as Redis 7.0 sentinels publish them.
        let promoting = "slave 10.0.0.2:6380 10.0.0.2 6380 @ mymaster 10.0.0.1 6379";
        assert_eq!(
            sentinel_news("+failover-state-send-slaveof-noone", promoting, "mymaster"),
            Some(SentinelNews::Promoting(at(6380)))
        );
        assert_eq!(
            sentinel_news("+promoted-slave", promoting, "mymaster"),
            Some(SentinelNews::Promoting(at(6380)))
        );
        assert_eq!(sentinel_news("+promoted-slave", promoting, "other"), None);
        assert_eq!(
            sentinel_news(
                "+switch-master",
                "mymaster 10.0.0.1 6379 10.0.0.2 6380",
                "mymaster"
            ),
            Some(SentinelNews::Switched(at(6380)))
        );
        assert_eq!(
            sentinel_news(
                "+switch-master",
                "mymaster 10.0.0.1 6379 10.0.0.2 notaport",
                "mymaster"
            ),
            None
        );
        assert_eq!(
            sentinel_news(
                "-failover-abort-slave-timeout",
                "master mymaster 10.0.0.1 6379",
                "mymaster"
            ),
            Some(SentinelNews::Aborted)
        );
        assert_eq!(
            sentinel_news(
                "-failover-abort-slave-timeout",
                "master other 10.0.0.1 6379",
                "mymaster"
            ),
            None
        );
        // Another sentinel's lost election says nothing about the promotion under way.
        assert_eq!(
            sentinel_news(
                "-failover-abort-not-elected",
                "master mymaster 10.0.0.1 6379",
                "mymaster"
            ),
            None
        );
        assert_eq!(
            sentinel_news("+sdown", "master mymaster 10.0.0.1 6379", "mymaster"),
            None
        );
    }

    fn sentinel_target() -> SentinelTarget {
        SentinelTarget {
            sentinels: Vec::new(),
            master: "mymaster".to_owned(),
            scheme: "redis".to_owned(),
            userinfo: String::new(),
            db: 0,
            next: AtomicUsize::new(0),
            current: watch::Sender::new(Some(at(6379))),
            promoting: Mutex::new(None),
        }
    }

    #[test]
    fn a_promotion_moves_the_connections_once_and_the_switch_confirms_it() {
        let t = sentinel_target();
        // The leader's two promotion events, from one or several sentinels: one move.
        assert!(t.apply(SentinelNews::Promoting(at(6380))));
        assert!(!t.apply(SentinelNews::Promoting(at(6380))));
        assert_eq!(t.promoting(), Some(at(6380)));
        assert_eq!(*t.current().borrow(), Some(at(6380)));
        // +switch-master names the same node: nothing moves again, the hint is done.
        assert!(!t.apply(SentinelNews::Switched(at(6380))));
        assert_eq!(t.promoting(), None);
        // An abort after the switch concerns nothing we moved for.
        assert!(!t.apply(SentinelNews::Aborted));
        assert_eq!(*t.current().borrow(), Some(at(6380)));
    }

    #[test]
    fn an_aborted_promotion_sends_the_connections_back_to_the_sentinels_answer() {
        let t = sentinel_target();
        assert!(t.apply(SentinelNews::Promoting(at(6380))));
        assert!(t.apply(SentinelNews::Aborted));
        assert_eq!(t.promoting(), None);
        assert_eq!(*t.current().borrow(), None);
    }

    #[test]
    fn a_stale_promotion_is_forgotten() {
        let t = sentinel_target();
        *t.promoting.lock().unwrap() = Some((at(6380), Instant::now() - PROMOTION_HINT_TTL));
        assert_eq!(t.promoting(), None);
        assert!(t.promoting.lock().unwrap().is_none());
    }

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
