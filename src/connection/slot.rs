//! The command connection that is installed now, and what its results mean: which
//! connection (epoch) a result came from, when it is presumed broken (a failure, a refusal
//! for the server's state, timeouts in a row), and the state status shows for it.
//!
//! Shared by the request path (`command.rs`), the ordered queue (`ordered.rs`) and the
//! reconnect loop (`supervisor.rs`); none of them needs another to reach the connection.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use redis::RedisError;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::warn;

use super::backoff::reconnecting;
use super::node::AnyConn;
use super::target::Target;
use crate::config::Config;
use crate::error::{classify, Failure};
use crate::status::{ConnState, Counters, Throttle};

/// Consecutive command timeouts after which the command connection is presumed dead.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Which connection a result came from: a failure drops only the connection it happened on,
/// never one that replaced it meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnEpoch(u64);

/// The connection that commands use now.
#[derive(Clone)]
pub(super) struct Installed {
    pub(super) epoch: ConnEpoch,
    pub(super) conn: AnyConn,
}

/// The installed command connection and the judgement of its results.
pub(super) struct ConnSlot {
    target: Arc<Target>,
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    installed: RwLock<Option<Installed>>,
    /// The epoch of the newest connection opened.
    epoch: AtomicU64,
    /// The connection was dropped because the server refused it for its state (READONLY):
    /// the next one waits out the back-off, so that a server stuck in that state is not
    /// reconnected to once per command.
    refused_for_state: AtomicBool,
    timeouts: AtomicU32,
    timeout_log: Throttle,
    server_state_log: Throttle,
    pub(super) state: watch::Sender<ConnState>,
    /// Wakes the reconnect loop: the installed connection was dropped.
    pub(super) reconnect_now: Notify,
}

impl ConnSlot {
    pub(super) fn new(target: Arc<Target>, cfg: Arc<Config>, counters: Arc<Counters>) -> Self {
        ConnSlot {
            target,
            cfg,
            counters,
            installed: RwLock::new(None),
            epoch: AtomicU64::new(0),
            refused_for_state: AtomicBool::new(false),
            timeouts: AtomicU32::new(0),
            timeout_log: Throttle::default(),
            server_state_log: Throttle::default(),
            // A session's connection is being opened from the moment it exists: calls made
            // before the first attempt finishes wait for it (see `conn_or_first`).
            state: watch::Sender::new(ConnState::Connecting),
            reconnect_now: Notify::new(),
        }
    }

    /// The epoch for a connection just opened.
    pub(super) fn next_epoch(&self) -> ConnEpoch {
        ConnEpoch(self.epoch.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Drops the installed connection for good (the client is closing).
    pub(super) fn clear(&self) {
        *self
            .installed
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether the last connection was dropped for the server's state (and forgets it).
    pub(super) fn take_refused_for_state(&self) -> bool {
        self.refused_for_state.swap(false, Ordering::SeqCst)
    }

    /// Starts the count of timeouts in a row over (a new connection).
    pub(super) fn reset_timeouts(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
    }

    /// What a command that ran against `deadline` means for its caller: a reply, `None`
    /// when Redis is unavailable (timeout, connection failed, the server's state; see
    /// [`ConnSlot::judge`]), or the server's refusal.
    pub(super) fn outcome<T>(
        &self,
        epoch: ConnEpoch,
        sent: std::result::Result<std::result::Result<T, RedisError>, tokio::time::error::Elapsed>,
    ) -> std::result::Result<Option<T>, RedisError> {
        match sent {
            Err(_) => {
                self.timed_out(epoch);
                Ok(None)
            }
            Ok(Err(e)) => {
                self.answered();
                self.judge(epoch, e)
            }
            Ok(Ok(v)) => {
                self.answered();
                Ok(Some(v))
            }
        }
    }

    pub(super) fn get(&self) -> Option<Installed> {
        self.installed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Hands out `conn` (called with the offline buffer's lock held, once it is empty).
    pub(super) fn install(&self, installed: Installed) {
        *self
            .installed
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(installed);
    }

    /// Whether the session's first connection attempt is still running.
    pub(super) fn is_first_attempt(&self) -> bool {
        matches!(*self.state.borrow(), ConnState::Connecting)
    }

    /// The connection; while the first attempt of the session is still running (a client
    /// that connects on its first call), waits for it, but not past `until`. While Sentinel
    /// promotes a replica, waits (not past `until`) for the connection to it: the new primary
    /// is milliseconds away, and failing open at once would drop what it will take.
    pub(super) async fn conn_or_first(&self, until: Instant) -> Option<Installed> {
        if let Some(c) = self.get() {
            return Some(c);
        }
        let mut rx = self.state.subscribe();
        if matches!(*rx.borrow_and_update(), ConnState::Connecting) {
            let _ = tokio::time::timeout_at(
                until,
                rx.wait_for(|s| !matches!(s, ConnState::Connecting)),
            )
            .await;
        } else if self.target.promotion_under_way() {
            // Every install is followed by a state update: look again after each one.
            let _ = tokio::time::timeout_at(until, async {
                while self.get().is_none() && rx.changed().await.is_ok() {}
            })
            .await;
        }
        self.get()
    }

    /// Drops the connection of `epoch` (if still current) and wakes the reconnect loop.
    pub(super) fn broken(&self, epoch: ConnEpoch, why: &str) {
        let mut installed = self
            .installed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if installed.as_ref().is_some_and(|i| i.epoch == epoch) {
            *installed = None;
            drop(installed);
            warn!(error = %why, "command connection lost; reconnecting");
            // Status tells the truth at once, not when the next attempt has finished.
            self.state.send_if_modified(|s| {
                let up = matches!(s, ConnState::Connected);
                if up {
                    *s = reconnecting(0, Duration::ZERO, why.to_owned(), "ERR_UNAVAILABLE");
                }
                up
            });
            self.reconnect_now.notify_one();
        }
    }

    /// What a command's failure means for its caller: `Ok(None)` when Redis is unavailable
    /// (the connection failed, or the server's state refuses it for now: fail open), `Err`
    /// for a refusal the caller has to hear about.
    pub(super) fn judge<T>(
        &self,
        epoch: ConnEpoch,
        e: RedisError,
    ) -> std::result::Result<Option<T>, RedisError> {
        match classify(&e) {
            Failure::Connection => {
                self.broken(epoch, &e.to_string());
                Ok(None)
            }
            Failure::ServerState { reconnect } => {
                self.server_state(&e, reconnect);
                if reconnect {
                    self.refused_for_state.store(true, Ordering::SeqCst);
                    self.broken(epoch, &e.to_string());
                }
                Ok(None)
            }
            // A slot moving while a reshard or failover runs: the cluster client follows
            // MOVED and ASK itself and refreshes its map, so one that reaches us is a slot
            // that did not settle within its retries: the cluster's state, not the caller's
            // mistake (it was rejected as ERR_PROTOCOL: a consume() loop ended on it).
            Failure::Redirect => {
                self.server_state(&e, false);
                Ok(None)
            }
            _ => Err(e),
        }
    }

    /// Counts and logs (throttled) a command refused because of the server's state.
    pub(super) fn server_state(&self, e: &RedisError, reconnect: bool) {
        Counters::add(&self.counters.server_state_errors, 1);
        if let Some(held_back) = self.server_state_log.allow() {
            warn!(
                error = %e,
                reconnect,
                similar_since_last = held_back,
                "Redis refused a command because of its own state (failover, loading, memory, busy); failing open"
            );
        }
    }

    /// Counts a command timeout (logged, throttled); after a few in a row the connection
    /// of `epoch` is presumed dead and replaced.
    pub(super) fn timed_out(&self, epoch: ConnEpoch) {
        let n = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(held_back) = self.timeout_log.allow() {
            warn!(
                timeout_ms = self.cfg.command_timeout.as_millis() as u64,
                consecutive = n,
                similar_since_last = held_back,
                "Redis did not answer in time"
            );
        }
        if n >= TIMEOUTS_BEFORE_RECONNECT {
            self.broken(epoch, "too many consecutive timeouts");
        }
    }

    /// Notes that a command got its answer in time.
    pub(super) fn answered(&self) {
        self.timeouts.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> ConnSlot {
        let cfg = Arc::new(
            Config::from_input(crate::config::ConfigInput {
                redis_url: Some("redis://127.0.0.1:1".into()),
                ..Default::default()
            })
            .unwrap(),
        );
        let target = Arc::new(Target::new(&cfg).unwrap());
        ConnSlot::new(target, cfg, Arc::default())
    }

    /// The error a server reply `-<text>` becomes, as the crate parses it.
    fn server(text: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{text}\r\n").as_bytes()) {
            Ok(redis::Value::ServerError(e)) => RedisError::from(e),
            other => panic!("{text}: parsed as {other:?}"),
        }
    }

    // Found by the chaos run (seed 4, cluster): a MOVED that reached the caller during a
    // reshard made acknowledgeMessages reject ERR_PROTOCOL, which ended a consume() loop.
    #[test]
    fn a_redirect_the_cluster_client_did_not_follow_fails_open() {
        let s = slot();
        let r: std::result::Result<Option<u64>, RedisError> =
            s.judge(ConnEpoch(0), server("MOVED 1990 127.0.0.1:35547"));
        assert!(matches!(r, Ok(None)), "{r:?}");
        assert_eq!(s.counters.server_state_errors.load(Ordering::Relaxed), 1);
        // A refusal still reaches the caller.
        let r: std::result::Result<Option<u64>, RedisError> =
            s.judge(ConnEpoch(0), server("NOPERM no permissions"));
        assert!(r.is_err());
    }
}
