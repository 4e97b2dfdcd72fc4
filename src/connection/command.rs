//! The command connection every non-blocking command of a client shares.
//!
//! One multiplexed socket: concurrent commands are written back to back and their replies
//! matched in order, which is Redis pipelining without any batching code of ours. One task
//! (`supervisor.rs`) opens it, replaces it when it fails, and pings it every second.

use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, RedisError, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::dial::state_error;
use super::ledger::Ledger;
use super::node::{AnyConn, NodeAddr};
use super::ordered::Ordered;
use super::queryable::Queryable;
use super::reply::ReplyTo;
use super::slot::{ConnSlot, Installed};
use super::target::Target;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::server_info::{ServerFacts, ServerInfo};
use crate::status::{ConnState, Counters};

/// The command connection every non-blocking command of a client shares.
pub struct CommandConn {
    target: Arc<Target>,
    pub(super) cfg: Arc<Config>,
    counters: Arc<Counters>,
    /// The installed connection and the judgement of its results.
    pub(super) link: Arc<ConnSlot>,
    pub(super) ordered: Ordered,
    pub(super) ping_soon: Notify,
    /// Bumped when the cluster's slot map changed: readers re-plan.
    topology: watch::Sender<u64>,
    /// The newest ids of this client's publishes, to find those a failover lost.
    ledger: Arc<Ledger>,
    /// Bumped to ask for a failover audit (see `audit.rs`).
    pub(super) audits: watch::Sender<u64>,
    /// The server the connection last reached: family, version, features, `run_id`.
    server: ServerFacts,
}

impl CommandConn {
    /// Creates the connection holder; nothing is opened until [`CommandConn::run`] starts.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] when the URL cannot be used.
    pub fn new(cfg: Arc<Config>, counters: Arc<Counters>) -> Result<Self> {
        let target = Arc::new(Target::new(&cfg)?);
        let link = Arc::new(ConnSlot::new(target.clone(), cfg.clone(), counters.clone()));
        Ok(CommandConn {
            ordered: Ordered::new(link.clone(), cfg.clone(), target.is_cluster()),
            target,
            cfg,
            counters,
            link,
            ping_soon: Notify::new(),
            topology: watch::Sender::new(0),
            ledger: Arc::new(Ledger::default()),
            audits: watch::Sender::new(0),
            server: ServerFacts::default(),
        })
    }

    /// Queues a command to be sent in exactly the order of the calls. Never blocks.
    ///
    /// The reply goes to `reply`: `Ok(Some(reply))`, `Ok(None)` when Redis is unavailable
    /// (within the command timeout, or later from the offline buffer), or the server's
    /// refusal.
    pub fn submit(&self, cmd: redis::Cmd, reply: ReplyTo) {
        self.ordered.submit(cmd, reply);
    }

    /// Sends the queued ordered commands until `token` is cancelled (see [`Ordered`]).
    pub async fn run_ordered(self: Arc<Self>, token: CancellationToken) {
        self.ordered.run(token).await;
    }

    /// Where the data lives, for opening the dedicated reader connections.
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    /// The cluster's masters as the slot map names them (empty outside a cluster).
    pub(super) fn masters(&self) -> Vec<NodeAddr> {
        match &*self.target {
            crate::connection::Target::Cluster(t) => t.masters(),
            _ => Vec::new(),
        }
    }

    /// Watches the cluster's slot map: bumped whenever it changed.
    pub fn topology(&self) -> watch::Receiver<u64> {
        self.topology.subscribe()
    }

    /// Reads the cluster's slot map again (`CLUSTER SLOTS`); returns whether it changed. A
    /// no-op outside a cluster.
    pub async fn refresh_slots(&self) -> bool {
        let crate::connection::Target::Cluster(t) = &*self.target else {
            return false;
        };
        match self
            .query::<Value, _>(redis::cmd("CLUSTER").arg("SLOTS"))
            .await
        {
            Ok(Some(reply)) => {
                let changed = t.set_slots(&reply);
                if changed {
                    info!(masters = ?t.masters().iter().map(ToString::to_string).collect::<Vec<_>>(), "cluster slot map changed");
                    self.topology.send_modify(|n| *n += 1);
                }
                changed
            }
            _ => false,
        }
    }

    /// Replaces the connection now (Sentinel named a new primary): the next one goes there.
    pub fn primary_switched(&self) {
        if let Some(i) = self.link.get() {
            self.link.broken(i.epoch, "Sentinel switched the primary");
        }
    }

    /// Sends one command to the node at `addr` (in a cluster; elsewhere on the connection),
    /// within the command timeout: `Ok(None)` when unavailable.
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn query_node<T: FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        addr: Option<&NodeAddr>,
    ) -> std::result::Result<Option<T>, RedisError> {
        let reply = self
            .timed(|mut conn| async move { conn.to_node(cmd, addr).await })
            .await?;
        reply
            .map(|v| T::from_redis_value(v).map_err(RedisError::from))
            .transpose()
    }

    /// Runs `send` on the installed connection (waiting for the first one) within the
    /// command timeout, and judges the result with [`ConnSlot::outcome`].
    async fn timed<T, F, Fut>(&self, send: F) -> std::result::Result<Option<T>, RedisError>
    where
        F: FnOnce(AnyConn) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, RedisError>>,
    {
        let deadline = Instant::now() + self.cfg.command_timeout;
        let Some(Installed { epoch, conn }) = self.link.conn_or_first(deadline).await else {
            return Ok(None);
        };
        self.link
            .outcome(epoch, tokio::time::timeout_at(deadline, send(conn)).await)
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.cfg
    }

    /// The client's counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Asks for a PING soon: another connection of this client just failed, so this one
    /// may be dead too.
    pub fn probe_soon(&self) {
        self.ping_soon.notify_one();
    }

    /// Watches the connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.link.state.subscribe()
    }

    /// The current state.
    pub fn current_state(&self) -> ConnState {
        self.link.state.borrow().clone()
    }

    /// Marks the connection closing/closed for status.
    pub fn set_state(&self, s: ConnState) {
        self.link.state.send_replace(s);
    }

    /// Reads the server's version (for features of newer servers), best effort.
    /// Learns the server's version and, outside a cluster, whether this is another server
    /// than the connection reached before (its `run_id` changed: a failover, or a restart
    /// that may have lost data). Returns the latter.
    pub(super) async fn learn_server(&self, conn: &mut AnyConn) -> bool {
        let info = tokio::time::timeout(
            self.cfg.command_timeout,
            redis::cmd("INFO").arg("server").query_async::<Value>(conn),
        )
        .await;
        let Ok(Ok(info)) = info else { return false };
        self.server.learn_reply(&info) && !self.target.is_cluster()
    }

    /// The server the connection last reached, if any.
    pub fn server(&self) -> Option<ServerInfo> {
        self.server.get()
    }

    /// The record of this client's newest publish ids.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Whether the server has `XTRIM … ACKED` and `XACKDEL` (Redis 8.2 and later).
    pub fn server_has_xtrim_acked(&self) -> bool {
        self.server.has_redis_82_streams()
    }

    /// Waits until the connection works, a new attempt fails, or `within` passes.
    ///
    /// # Errors
    /// The failure of the attempt, or [`Error::Timeout`].
    pub async fn wait_connected(&self, within: Duration) -> Result<()> {
        let mut rx = self.link.state.subscribe();
        let failed_before = match &*rx.borrow() {
            ConnState::Reconnecting { attempt, .. } => *attempt,
            _ => 0,
        };
        let outcome = tokio::time::timeout(
            within,
            rx.wait_for(|s| match s {
                ConnState::Connected | ConnState::Closing | ConnState::Closed => true,
                ConnState::Reconnecting { attempt, .. } => *attempt > failed_before,
                _ => false,
            }),
        )
        .await;
        match outcome {
            Err(_) => Err(Error::Timeout(within.as_millis() as u64)),
            Ok(Err(_)) => Err(Error::Closed),
            Ok(Ok(state)) => match &*state {
                ConnState::Connected => Ok(()),
                ConnState::Reconnecting {
                    last_error,
                    last_error_code,
                    ..
                } => Err(state_error(last_error_code, last_error, &self.cfg)),
                _ => Err(Error::Closed),
            },
        }
    }

    /// Sends one command (or pipeline) within the command timeout.
    ///
    /// `Ok(None)` means Redis is unavailable (no connection, connection failed, timeout,
    /// or the server's state refuses it for now): the caller fails open. `Err` is a refusal
    /// by the server that retrying cannot fix.
    ///
    /// # Errors
    /// The server's refusal, as the raw `RedisError`, for the caller to name.
    pub async fn query<T, C>(&self, cmd: &C) -> std::result::Result<Option<T>, RedisError>
    where
        T: FromRedisValue + Send,
        C: Queryable,
    {
        self.timed(|mut conn| async move { cmd.send(&mut conn).await })
            .await
    }
}
