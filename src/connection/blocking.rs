//! A connection of its own for blocking reads.
//!
//! A blocking `XREAD`/`XREADGROUP` occupies its connection until it returns, so it can never
//! share the command connection (it would stall every publish). Dropping the read's future
//! does not cancel it on the server either: the server keeps the connection blocked, and an
//! `XREADGROUP` may already have moved entries into the consumer's pending list. So a read is
//! not dropped to stop it: whoever wants it to end sends `CLIENT UNBLOCK` with the
//! connection's `CLIENT ID` from the command connection ([`Unblocker`]) and lets it return.
//! The one exception is a Sentinel switch of the primary: the read is then abandoned and its
//! connection closed with it, which ends the read on the (old) server as well.
//!
//! A read that has not returned long after its BLOCK time (a silent link: no FIN, no RST) is
//! presumed dead by a watchdog, and the connection is replaced. The subscription reader and
//! every group consumer read through a [`BlockingReader`]; a cluster has one per node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{FromRedisValue, RedisError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backoff::Backoff;
use super::command::CommandConn;
use super::dial::{connect_error, open};
use super::node::{AnyConn, NodeAddr};
use super::queryable::Queryable;
use super::target::{Placement, Target};
use crate::config::Config;
use crate::status::{ConnState, Counters};

/// Extra time past BLOCK (and the command timeout) before a silent read counts as a dead
/// connection.
const WATCHDOG_GRACE: Duration = Duration::from_secs(2);

/// Tries of `CLIENT UNBLOCK` while a blocking read is still on its way to the server.
const UNBLOCK_TRIES: u32 = 200;
/// Pause between those tries.
const UNBLOCK_RETRY: Duration = Duration::from_millis(2);

/// What `CLIENT UNBLOCK` needs to know about a reader: its connection's `CLIENT ID`, and
/// which read (if any) is on the way. Shared between the reader and whoever wakes it.
#[derive(Debug, Default)]
pub struct UnblockHandle {
    /// `CLIENT ID` of the connection, and its node (in a cluster).
    client_id: Mutex<Option<(i64, Option<NodeAddr>)>>,
    /// The tag of the read in progress plus one; 0 while not reading.
    reading: AtomicU64,
}

impl UnblockHandle {
    fn set_client_id(&self, id: Option<(i64, Option<NodeAddr>)>) {
        *self.client_id.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    fn client_id(&self) -> Option<(i64, Option<NodeAddr>)> {
        self.client_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The tag of the read in progress, if one is.
    pub fn reading(&self) -> Option<u64> {
        match self.reading.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n - 1),
        }
    }

    fn start_reading(&self, tag: u64) {
        self.reading.store(tag.saturating_add(1), Ordering::SeqCst);
    }

    fn stop_reading(&self) {
        self.reading.store(0, Ordering::SeqCst);
    }
}

/// Why a read or a command on a reader's connection failed.
#[derive(Debug)]
pub enum ReadError {
    /// The blocking read outlived its BLOCK time by far: the connection is presumed dead.
    Watchdog(Duration),
    /// A command did not answer within the command timeout.
    Timeout(Duration),
    /// Redis answered with an error, or the connection failed.
    Redis(RedisError),
}

impl ReadError {
    /// The step took too long (a command timeout or the watchdog), not a refusal or a
    /// broken connection.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ReadError::Timeout(_) | ReadError::Watchdog(_))
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Watchdog(d) => write!(
                f,
                "blocked read outlived its BLOCK time ({} ms); presuming the connection dead",
                d.as_millis()
            ),
            ReadError::Timeout(d) => write!(f, "Redis did not answer within {} ms", d.as_millis()),
            ReadError::Redis(e) => write!(f, "{e}"),
        }
    }
}

/// A dedicated connection for blocking reads, redialled with back-off, whose state shows
/// in `getStatus()`.
pub struct BlockingReader {
    target: Arc<Target>,
    placement: Placement,
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    state: Arc<watch::Sender<ConnState>>,
    backoff: Backoff,
    ever_connected: bool,
    what: &'static str,
    conn: Option<AnyConn>,
    slot: Arc<UnblockHandle>,
    /// Sentinel's primary (for a reader of the primary): a switch ends the read at once.
    primary: Option<watch::Receiver<Option<NodeAddr>>>,
}

impl BlockingReader {
    /// A reader named `what` in logs, connecting at `placement`; nothing is opened until
    /// [`BlockingReader::connect`].
    pub fn new(what: &'static str, cmd: &CommandConn, placement: Placement) -> Self {
        let cfg = cmd.config().clone();
        let primary = match (&**cmd.target(), &placement) {
            (Target::Sentinel(t), Placement::Primary) => Some(t.current()),
            _ => None,
        };
        BlockingReader {
            target: cmd.target().clone(),
            placement,
            primary,
            backoff: Backoff::new(cfg.reconnect),
            cfg,
            counters: cmd.counters().clone(),
            state: Arc::new(watch::Sender::new(ConnState::Idle)),
            ever_connected: false,
            what,
            conn: None,
            slot: Arc::new(UnblockHandle::default()),
        }
    }

    /// The state of the connection, for status.
    pub fn state(&self) -> Arc<watch::Sender<ConnState>> {
        self.state.clone()
    }

    /// What an [`Unblocker`] needs to wake this reader.
    pub fn slot(&self) -> Arc<UnblockHandle> {
        self.slot.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Opens a connection when there is none: `Some(true)` when this call opened one (the
    /// caller resumes from its last ids), `Some(false)` when one was open already, `None`
    /// when the attempt failed (after waiting out the back-off delay) or `token` was
    /// cancelled.
    pub async fn connect(&mut self, token: &CancellationToken) -> Option<bool> {
        if self.conn.is_some() {
            return Some(false);
        }
        if let Some(p) = self.primary.as_mut() {
            p.borrow_and_update();
        }
        let attempt = async {
            let (client, node) = self
                .target
                .reader_client(&self.placement, &self.cfg)
                .await?;
            let mut conn = open(&client, &self.cfg).await?;
            let id: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            Ok::<_, RedisError>((conn, id, node))
        };
        let outcome = tokio::select! {
            _ = token.cancelled() => return None,
            r = attempt => r,
        };
        match outcome {
            Ok((conn, id, node)) => {
                if self.ever_connected {
                    Counters::add(&self.counters.reconnects, 1);
                    info!(
                        connection = self.what,
                        attempt = self.backoff.attempt(),
                        "reconnected; resuming from the last ids"
                    );
                }
                self.ever_connected = true;
                self.slot.set_client_id(Some((id, node)));
                self.conn = Some(AnyConn::Node(conn));
                self.state.send_replace(ConnState::Connected);
                Some(true)
            }
            Err(e) => {
                let delay = self.backoff.next_delay();
                let err = connect_error(&e, &self.cfg);
                warn!(
                    connection = self.what,
                    attempt = self.backoff.attempt(),
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "cannot connect to Redis"
                );
                self.state.send_replace(self.backoff.reconnecting(
                    delay,
                    e.to_string(),
                    err.code(),
                ));
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                None
            }
        }
    }

    /// Drops the connection (after it failed); the next [`BlockingReader::connect`] dials.
    pub fn disconnect(&mut self) {
        self.conn = None;
        self.slot.set_client_id(None);
    }

    /// A handle on the connection, to write a command ahead of a read on the same socket.
    pub fn conn_clone(&self) -> Option<AnyConn> {
        self.conn.clone()
    }

    /// The next back-off delay, for a read that failed without losing the connection.
    pub fn next_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }

    /// Marks the reader closed for status.
    pub fn close(&mut self) {
        self.disconnect();
        self.state.send_replace(ConnState::Closed);
    }

    /// Runs a blocking read tagged `tag` (so that an [`Unblocker`] can tell whether this read
    /// is the one to wake), unless `stale()` says it is not wanted any more: `Ok(None)`.
    /// Never raced against cancellation: wake it with `CLIENT UNBLOCK`.
    ///
    /// `stale` is asked after the read is marked as in progress: a change that lands before
    /// is seen by `stale`, one that lands after finds the read and unblocks it, so no
    /// wake-up is lost between the two.
    ///
    /// # Errors
    /// [`ReadError::Watchdog`] when it outlived `block` by far; the server's error otherwise.
    /// Without a connection, an I/O error.
    pub async fn read<T: FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
        block: Duration,
        tag: u64,
        stale: impl Fn() -> bool,
    ) -> Result<Option<T>, ReadError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(not_connected());
        };
        let watchdog = block + self.cfg.command_timeout + WATCHDOG_GRACE;
        self.slot.start_reading(tag);
        if stale() {
            self.slot.stop_reading();
            return Ok(None);
        }
        let read = tokio::time::timeout(watchdog, cmd.query_async::<T>(conn));
        let r = match self.primary.as_mut() {
            None => read.await,
            Some(primary) => tokio::select! {
                r = read => r,
                // Sentinel switched the primary: this connection goes to the old one. Closing
                // it (not only dropping the read) ends the read on the server too, and a
                // consumer's entries the server handed out meanwhile stay pending for it.
                _ = primary.changed() => {
                    self.slot.stop_reading();
                    self.disconnect();
                    return Err(ReadError::Redis(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "Sentinel switched the primary",
                    ))));
                }
            },
        };
        self.slot.stop_reading();
        match r {
            Err(_) => {
                warn!(
                    connection = self.what,
                    watchdog_ms = watchdog.as_millis() as u64,
                    "blocked read outlived its BLOCK time; presuming the connection dead"
                );
                Err(ReadError::Watchdog(watchdog))
            }
            Ok(Ok(v)) => {
                // Only a read that came back proves the link works: a connect alone does not
                // (a step that times out after every connect would retry at the first delay
                // for ever, REVIEW A4).
                self.backoff.reset();
                Ok(Some(v))
            }
            Ok(Err(e)) => Err(ReadError::Redis(e)),
        }
    }

    /// Runs a non-blocking command (or pipeline) on the reader's connection within the
    /// command timeout.
    ///
    /// # Errors
    /// [`ReadError::Timeout`], or the server's error. Without a connection, an I/O error.
    pub async fn command<T: FromRedisValue + Send>(
        &mut self,
        q: &impl Queryable,
    ) -> Result<T, ReadError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(not_connected());
        };
        let timeout = self.cfg.command_timeout;
        match tokio::time::timeout(timeout, q.send(conn)).await {
            Err(_) => Err(ReadError::Timeout(timeout)),
            Ok(r) => r.map_err(ReadError::Redis),
        }
    }
}

fn not_connected() -> ReadError {
    ReadError::Redis(RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the reader has no connection",
    )))
}

/// Wakes a [`BlockingReader`]'s read with `CLIENT UNBLOCK`, sent on the command connection.
pub struct Unblocker<'a> {
    /// The command connection to send it on.
    pub cmd: &'a CommandConn,
    /// The reader to wake.
    pub slot: &'a UnblockHandle,
}

impl Unblocker<'_> {
    /// Sends `CLIENT UNBLOCK` while the read in progress is one `wanted` accepts (by tag),
    /// until it takes.
    ///
    /// A read just sent may not have reached the server yet (UNBLOCK then answers 0), so this
    /// tries again briefly; it gives up when the command connection is unavailable, and the
    /// read then ends at its BLOCK time.
    pub async fn unblock(&self, wanted: impl Fn(u64) -> bool, token: Option<&CancellationToken>) {
        for _ in 0..UNBLOCK_TRIES {
            let (Some((id, node)), Some(tag)) = (self.slot.client_id(), self.slot.reading()) else {
                return;
            };
            if !wanted(tag) {
                return;
            }
            let mut unblock = redis::cmd("CLIENT");
            unblock.arg("UNBLOCK").arg(id);
            match self.cmd.query_node::<i64>(unblock, node.as_ref()).await {
                Ok(Some(1)) => return,
                Ok(Some(_)) => {}
                _ => return,
            }
            match token {
                Some(t) => tokio::select! {
                    _ = t.cancelled() => return,
                    _ = tokio::time::sleep(UNBLOCK_RETRY) => {}
                },
                None => tokio::time::sleep(UNBLOCK_RETRY).await,
            }
        }
    }
}
