//! Connections: the shared command connection (multiplexed, so concurrent commands pipeline
//! on one socket) with its reconnect loop, the back-off schedule, and opening the dedicated
//! connections that blocking reads use.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::codec::now_ms;
use crate::config::{BackoffConfig, Config};
use crate::error::{classify, Error, Failure, Result};
use crate::status::{ConnState, Counters, Throttle};

/// How often an otherwise idle command connection is checked with a PING.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Consecutive command timeouts after which the command connection is presumed dead.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Exponential back-off with a random share ("jitter") taken off each delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A schedule starting at its first delay.
    pub fn new(cfg: BackoffConfig) -> Self {
        Backoff { cfg, attempt: 0 }
    }

    /// Failed attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts the schedule over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt: `initial * factor^attempt`, capped, minus up to
    /// `jitter` of itself so that many clients do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.cfg.factor.powi(self.attempt.min(64) as i32);
        let base = (self.cfg.initial.as_secs_f64() * exp).min(self.cfg.max.as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        let cut = base * self.cfg.jitter * fastrand::f64();
        Duration::from_secs_f64((base - cut).max(0.0))
    }
}

/// Opens one connection: TCP (or TLS), AUTH, SELECT, within the connect timeout.
///
/// # Errors
/// The `RedisError` of the failed step; a timeout is reported as an I/O timeout.
pub async fn open(
    client: &redis::Client,
    cfg: &Config,
) -> std::result::Result<MultiplexedConnection, RedisError> {
    let conn_cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cfg.connect_timeout))
        .set_response_timeout(None);
    // A PING proves the connection can run commands: a server that wants a password
    // and got none only says so (NOAUTH) when asked something.
    let fut = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(conn)
    };
    match tokio::time::timeout(cfg.connect_timeout + Duration::from_millis(100), fut).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

/// Builds the redis client for a config: plain, TLS with the system roots, or TLS with the
/// configured CA.
///
/// # Errors
/// [`Error::InvalidArg`] when the URL or CA cannot be used.
pub fn redis_client(cfg: &Config) -> Result<redis::Client> {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        // One process-wide rustls provider; another library may have installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let url = cfg.redis_url.expose();
    let built = match &cfg.tls_ca {
        None => redis::Client::open(url),
        Some(pem) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
    };
    built.map_err(|e| {
        let field = if cfg.tls_ca.is_some() {
            "tlsCaFile"
        } else {
            "redisUrl"
        };
        Error::invalid(field, format!("cannot be used: {e}"))
    })
}

/// Turns a connection failure into the error `connect()` reports.
pub fn connect_error(err: &RedisError, cfg: &Config) -> Error {
    let url = cfg.redis_url.to_string();
    let reason = err.to_string();
    if err.is_timeout() {
        Error::Timeout(cfg.connect_timeout.as_millis() as u64)
    } else if is_auth_failure(err) {
        Error::Auth { url, reason }
    } else {
        Error::Unreachable { url, reason }
    }
}

/// Wrong password, unknown ACL user, or a user without the permission to connect.
fn is_auth_failure(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Rebuilds the error a failed attempt left in a [`ConnState::Reconnecting`].
fn state_error(code: &str, reason: &str, cfg: &Config) -> Error {
    let url = cfg.redis_url.to_string();
    let reason = reason.to_owned();
    match code {
        "ERR_TIMEOUT" => Error::Timeout(cfg.connect_timeout.as_millis() as u64),
        "ERR_AUTH" => Error::Auth { url, reason },
        _ => Error::Unreachable { url, reason },
    }
}

/// The command connection every non-blocking command of a client shares.
///
/// One multiplexed socket: concurrent commands are written back to back and their replies
/// matched in order, which is Redis pipelining without any batching code of ours.
pub struct CommandConn {
    client: redis::Client,
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    slot: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Publishes parked while disconnected (`offlineBuffer`); flushed in order before the
    /// next connection is handed out, so parked and new publishes keep their order.
    parked: Mutex<VecDeque<Parked>>,
    /// Commands whose order matters, sent by [`CommandConn::run_ordered`].
    ordered: mpsc::UnboundedSender<Queued>,
    ordered_rx: Mutex<Option<mpsc::UnboundedReceiver<Queued>>>,
    generation: AtomicU64,
    timeouts: AtomicU32,
    timeout_log: Throttle,
    state: watch::Sender<ConnState>,
    kick: Notify,
    probe: Notify,
}

impl CommandConn {
    /// Creates the connection holder; nothing is opened until [`CommandConn::run`] starts.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] when the URL cannot be used.
    pub fn new(cfg: Arc<Config>, counters: Arc<Counters>) -> Result<Self> {
        let client = redis_client(&cfg)?;
        let (ordered, ordered_rx) = mpsc::unbounded_channel();
        Ok(CommandConn {
            client,
            cfg,
            counters,
            slot: RwLock::new(None),
            parked: Mutex::new(VecDeque::new()),
            ordered,
            ordered_rx: Mutex::new(Some(ordered_rx)),
            generation: AtomicU64::new(0),
            timeouts: AtomicU32::new(0),
            timeout_log: Throttle::default(),
            // A session's connection is being opened from the moment it exists: calls made
            // before the first attempt finishes wait for it (see `conn_or_first`).
            state: watch::Sender::new(ConnState::Connecting),
            kick: Notify::new(),
            probe: Notify::new(),
        })
    }

    /// The redis client, for opening the dedicated reader connections.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Asks for a PING soon: another connection of this client just failed, so this one
    /// may be dead too.
    pub fn probe_soon(&self) {
        self.probe.notify_one();
    }

    /// Watches the connection state.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.subscribe()
    }

    /// The current state.
    pub fn current_state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    /// Marks the connection closing/closed for status.
    pub fn set_state(&self, s: ConnState) {
        self.state.send_replace(s);
    }

    fn get(&self) -> Option<(u64, MultiplexedConnection)> {
        self.slot.read().ok()?.clone()
    }

    /// Whether the session's first connection attempt is still running.
    fn is_first_attempt(&self) -> bool {
        matches!(*self.state.borrow(), ConnState::Connecting)
    }

    /// The connection; while the first attempt of the session is still running (a client
    /// that connects on its first call), waits for it, but not past `until`.
    async fn conn_or_first(&self, until: Instant) -> Option<(u64, MultiplexedConnection)> {
        if let Some(c) = self.get() {
            return Some(c);
        }
        let mut rx = self.state.subscribe();
        if !matches!(*rx.borrow_and_update(), ConnState::Connecting) {
            return None;
        }
        let _ =
            tokio::time::timeout_at(until, rx.wait_for(|s| !matches!(s, ConnState::Connecting)))
                .await;
        self.get()
    }

    /// Drops the connection of generation `gen` (if still current) and wakes the reconnect loop.
    fn broken(&self, gen: u64, why: &str) {
        let mut slot = match self.slot.write() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if slot.as_ref().is_some_and(|(g, _)| *g == gen) {
            *slot = None;
            drop(slot);
            warn!(error = %why, "command connection lost; reconnecting");
            self.kick.notify_one();
        }
    }

    /// Keeps the connection up until `token` is cancelled: connects, waits for a failure,
    /// reconnects with back-off. The only task that opens command connections.
    pub async fn run(self: Arc<Self>, token: CancellationToken) {
        let mut backoff = Backoff::new(self.cfg.reconnect);
        let mut ever_connected = false;
        self.state.send_replace(ConnState::Connecting);
        loop {
            let attempt = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                r = open(&self.client, &self.cfg) => r,
            };
            match attempt {
                Ok(mut conn) => {
                    let gen = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Err(e) = self.flush_parked(&mut conn, gen).await {
                        warn!(error = %e, "connection failed while writing parked publishes");
                        continue;
                    }
                    self.timeouts.store(0, Ordering::Relaxed);
                    if ever_connected {
                        Counters::add(&self.counters.reconnects, 1);
                        info!(
                            attempt = backoff.attempt(),
                            url = %self.cfg.redis_url,
                            "command connection re-established"
                        );
                    } else {
                        info!(url = %self.cfg.redis_url, "connected to Redis");
                    }
                    ever_connected = true;
                    backoff.reset();
                    self.state.send_replace(ConnState::Connected);
                    // A connection whose server went away is only noticed when used: probe
                    // it now and then, and at once when another connection of this client
                    // just failed, so status and the next publish see the truth.
                    loop {
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = self.kick.notified() => break,
                            _ = self.probe.notified() => {}
                            _ = tokio::time::sleep(HEALTH_CHECK_EVERY) => {}
                        }
                        let _ = self.query::<Value, _>(&redis::cmd("PING")).await;
                        if self.get().is_none() {
                            break;
                        }
                    }
                    if token.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let err = connect_error(&e, &self.cfg);
                    warn!(
                        attempt = backoff.attempt(),
                        retry_in_ms = delay.as_millis() as u64,
                        url = %self.cfg.redis_url,
                        error = %e,
                        "cannot connect to Redis"
                    );
                    self.state.send_replace(ConnState::Reconnecting {
                        attempt: backoff.attempt(),
                        next_retry_at_ms: now_ms() + delay.as_millis() as u64,
                        last_error: e.to_string(),
                        last_error_code: err.code(),
                    });
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        if let Ok(mut slot) = self.slot.write() {
            *slot = None;
        }
        let left: Vec<Parked> = self.parked().drain(..).collect();
        if !left.is_empty() {
            warn!(count = left.len(), "closing: parked publishes resolve null");
        }
        for p in left {
            p.reply.send(Ok(None));
        }
    }

    fn parked(&self) -> MutexGuard<'_, VecDeque<Parked>> {
        self.parked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the parked publishes in order, then hands out `conn` (generation `gen`).
    ///
    /// The connection is installed under the parking lock once the queue is empty, so a
    /// publish either parks before that (and is flushed first) or goes out directly after.
    async fn flush_parked(
        &self,
        conn: &mut MultiplexedConnection,
        gen: u64,
    ) -> std::result::Result<(), RedisError> {
        loop {
            let batch: Vec<Parked> = {
                let mut q = self.parked();
                if q.is_empty() {
                    if let Ok(mut slot) = self.slot.write() {
                        *slot = Some((gen, conn.clone()));
                    }
                    return Ok(());
                }
                q.drain(..).collect()
            };
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for p in &batch {
                pipe.add_command(p.cmd.clone());
            }
            info!(
                count = batch.len(),
                "writing publishes parked while disconnected"
            );
            let sent = tokio::time::timeout(
                self.cfg.command_timeout * 2,
                pipe.query_async::<Vec<Value>>(conn),
            )
            .await;
            match sent {
                Ok(Ok(replies)) if replies.len() == batch.len() => {
                    for (p, v) in batch.into_iter().zip(replies) {
                        let r = match v {
                            Value::ServerError(e) => Err(RedisError::from(e)),
                            v => Ok(Some(v)),
                        };
                        p.reply.send(r);
                    }
                }
                other => {
                    // Put them back in front, in order, for the next connection.
                    let mut q = self.parked();
                    for p in batch.into_iter().rev() {
                        q.push_front(p);
                    }
                    return Err(match other {
                        Ok(Err(e)) => e,
                        _ => RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "writing parked publishes timed out",
                        )),
                    });
                }
            }
        }
    }

    /// Queues a command to be sent in exactly the order of the calls (an XADD stream's
    /// order is what its publishers called, not what a scheduler picked). Never blocks.
    ///
    /// The reply goes to `reply`: `Ok(Some(reply))`, `Ok(None)` when Redis is unavailable
    /// (within the command timeout, or later from the offline buffer), or the server's
    /// refusal.
    pub fn submit(&self, cmd: redis::Cmd, reply: ReplyTo) {
        let q = Queued {
            cmd,
            deadline: Instant::now() + self.cfg.command_timeout,
            reply,
        };
        if let Err(mpsc::error::SendError(q)) = self.ordered.send(q) {
            q.reply.send(Ok(None));
        }
    }

    /// Sends the queued commands, in order, as pipelines: everything queued while the
    /// previous pipeline was on the wire goes out in the next one (automatic pipelining).
    /// Runs until `token` is cancelled; what is still queued then resolves `None`.
    pub async fn run_ordered(self: Arc<Self>, token: CancellationToken) {
        let Some(mut rx) = self
            .ordered_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        loop {
            let first = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                q = rx.recv() => match q { Some(q) => q, None => break },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_PIPELINE {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            self.send_ordered(batch).await;
        }
        rx.close();
        while let Ok(q) = rx.try_recv() {
            q.reply.send(Ok(None));
        }
    }

    async fn send_ordered(&self, mut batch: Vec<Queued>) {
        // A client that connects on its first call: its first commands wait (each until its
        // own deadline) for the first connection attempt instead of failing at once.
        let conn = loop {
            let now = Instant::now();
            let (live, expired): (Vec<Queued>, Vec<Queued>) =
                batch.into_iter().partition(|q| q.deadline > now);
            for q in expired {
                q.reply.send(Ok(None));
            }
            batch = live;
            let Some(first) = batch.first().map(|q| q.deadline) else {
                return;
            };
            match self.conn_or_first(first).await {
                Some(c) => break Some(c),
                None if self.is_first_attempt() => continue,
                None => break None,
            }
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut replies = Vec::with_capacity(batch.len());
        for q in batch {
            pipe.add_command(q.cmd);
            replies.push(q.reply);
        }
        let Some((gen, mut conn)) = conn else {
            self.park_or_fail(&pipe, replies);
            return;
        };
        let sent = tokio::time::timeout(
            self.cfg.command_timeout,
            pipe.query_async::<Vec<Value>>(&mut conn),
        )
        .await;
        match sent {
            Ok(Ok(values)) if values.len() == replies.len() => {
                self.timeouts.store(0, Ordering::Relaxed);
                for (reply, v) in replies.into_iter().zip(values) {
                    let r = match v {
                        Value::ServerError(e) => {
                            let e = RedisError::from(e);
                            if classify(&e) == Failure::Connection {
                                self.broken(gen, &e.to_string());
                                Ok(None)
                            } else {
                                Err(e)
                            }
                        }
                        v => Ok(Some(v)),
                    };
                    reply.send(r);
                }
            }
            Ok(Ok(_)) => {
                warn!("pipeline reply count did not match; resolving the batch as unavailable");
                self.park_or_fail(&pipe, replies);
            }
            Ok(Err(e)) => {
                self.broken(gen, &e.to_string());
                // Whether Redis wrote them is unknown: with an offline buffer they are sent
                // again after the reconnect (at least once), else they resolve null.
                self.park_or_fail(&pipe, replies);
            }
            Err(_) => {
                self.timed_out(gen);
                for reply in replies {
                    reply.send(Ok(None));
                }
            }
        }
    }

    /// Counts a command timeout (logged, throttled); after a few in a row the connection
    /// of generation `gen` is presumed dead and replaced.
    fn timed_out(&self, gen: u64) {
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
            self.broken(gen, "too many consecutive timeouts");
        }
    }

    /// Keeps what fits in the offline buffer (in order); the rest resolves `None`.
    /// `pipe` holds the commands of `replies`, one each, in the same order.
    fn park_or_fail(&self, pipe: &redis::Pipeline, replies: Vec<ReplyTo>) {
        let mut parked = self.parked();
        let mut dropped = 0;
        for (cmd, reply) in pipe.cmd_iter().zip(replies) {
            if parked.len() < self.cfg.offline_buffer {
                parked.push_back(Parked {
                    cmd: cmd.clone(),
                    reply,
                });
            } else {
                dropped += 1;
                reply.send(Ok(None));
            }
        }
        if dropped > 0 && self.cfg.offline_buffer > 0 {
            warn!(
                capacity = self.cfg.offline_buffer,
                dropped, "offline buffer full; publishes not kept"
            );
        }
    }

    /// Waits until the connection works, a new attempt fails, or `within` passes.
    ///
    /// # Errors
    /// The failure of the attempt, or [`Error::Timeout`].
    pub async fn wait_connected(&self, within: Duration) -> Result<()> {
        let mut rx = self.state.subscribe();
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
    /// `Ok(None)` means Redis is unavailable (no connection, connection failed, timeout):
    /// the caller fails open. `Err` is a refusal by the server that retrying cannot fix.
    ///
    /// # Errors
    /// The server's refusal, as the raw `RedisError`, for the caller to name.
    pub async fn query<T, C>(&self, cmd: &C) -> std::result::Result<Option<T>, RedisError>
    where
        T: FromRedisValue,
        C: Queryable,
    {
        let deadline = Instant::now() + self.cfg.command_timeout;
        let Some((gen, mut conn)) = self.conn_or_first(deadline).await else {
            return Ok(None);
        };
        match tokio::time::timeout_at(deadline, cmd.send(&mut conn)).await {
            Err(_) => {
                self.timed_out(gen);
                Ok(None)
            }
            Ok(Err(e)) => match classify(&e) {
                Failure::Connection => {
                    self.broken(gen, &e.to_string());
                    Ok(None)
                }
                _ => {
                    self.timeouts.store(0, Ordering::Relaxed);
                    Err(e)
                }
            },
            Ok(Ok(v)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                Ok(Some(v))
            }
        }
    }
}

/// A connection of its own for blocking reads, with the `CLIENT ID` that `CLIENT UNBLOCK`
/// needs.
pub struct BlockingConn {
    /// The connection; nothing else sends on it while a read is blocked.
    pub conn: MultiplexedConnection,
    /// Its `CLIENT ID`.
    pub id: i64,
}

/// Opens blocking-read connections with back-off, publishing the schedule to a state watch.
pub struct Redial {
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    state: Arc<watch::Sender<ConnState>>,
    backoff: Backoff,
    ever_connected: bool,
    what: &'static str,
}

impl Redial {
    /// A dialer for the connection named `what` in logs.
    pub fn new(
        cfg: Arc<Config>,
        counters: Arc<Counters>,
        state: Arc<watch::Sender<ConnState>>,
        what: &'static str,
    ) -> Self {
        Redial {
            backoff: Backoff::new(cfg.reconnect),
            cfg,
            counters,
            state,
            ever_connected: false,
            what,
        }
    }

    /// One attempt: a connection, or `None` after the back-off delay (or on cancellation).
    pub async fn connect(
        &mut self,
        client: &redis::Client,
        token: &CancellationToken,
    ) -> Option<BlockingConn> {
        let attempt = async {
            let mut conn = open(client, &self.cfg).await?;
            let id: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            Ok::<_, RedisError>(BlockingConn { conn, id })
        };
        let outcome = tokio::select! {
            _ = token.cancelled() => return None,
            r = attempt => r,
        };
        match outcome {
            Ok(c) => {
                if self.ever_connected {
                    Counters::add(&self.counters.reconnects, 1);
                    info!(
                        connection = self.what,
                        attempt = self.backoff.attempt(),
                        "reconnected; resuming from the last ids"
                    );
                }
                self.ever_connected = true;
                self.backoff.reset();
                self.state.send_replace(ConnState::Connected);
                Some(c)
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
                self.state.send_replace(ConnState::Reconnecting {
                    attempt: self.backoff.attempt(),
                    next_retry_at_ms: now_ms() + delay.as_millis() as u64,
                    last_error: e.to_string(),
                    last_error_code: err.code(),
                });
                tokio::select! {
                    _ = token.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                None
            }
        }
    }

    /// The next back-off delay, for a read that failed without losing the connection.
    pub fn next_delay(&mut self) -> Duration {
        self.backoff.next_delay()
    }
}

/// Tries of `CLIENT UNBLOCK` while a blocking read is still on its way to the server.
const UNBLOCK_TRIES: u32 = 200;
/// Pause between those tries.
const UNBLOCK_RETRY: Duration = Duration::from_millis(2);

/// Sends `CLIENT UNBLOCK id` until it takes or `still_needed` turns false.
///
/// A read just sent may not have reached the server yet (UNBLOCK then answers 0), so this
/// tries again briefly; it gives up when the command connection is unavailable, and the
/// read then ends at its BLOCK time.
pub async fn unblock(
    cmd: &CommandConn,
    id: impl Fn() -> i64,
    still_needed: impl Fn() -> bool,
    token: Option<&CancellationToken>,
) {
    for _ in 0..UNBLOCK_TRIES {
        let target = id();
        if target < 0 || !still_needed() {
            return;
        }
        match cmd
            .query::<i64, _>(redis::cmd("CLIENT").arg("UNBLOCK").arg(target))
            .await
        {
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

/// What a queued command resolves to.
pub type Reply = std::result::Result<Option<Value>, RedisError>;

/// Where the reply of a queued command goes: called exactly once, from whichever task
/// finishes the command. Dropped unanswered (a task cancelled, the runtime shutting down),
/// it is called with `Ok(None)`: Redis unavailable. No caller is ever left waiting.
pub struct ReplyTo(Option<Box<dyn FnOnce(Reply) + Send>>);

impl ReplyTo {
    /// Sends the reply to `f`.
    pub fn new(f: impl FnOnce(Reply) + Send + 'static) -> Self {
        ReplyTo(Some(Box::new(f)))
    }

    /// Delivers `reply`.
    pub fn send(mut self, reply: Reply) {
        if let Some(f) = self.0.take() {
            f(reply);
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Ok(None));
        }
    }
}

/// Most commands sent in one automatic pipeline.
const MAX_PIPELINE: usize = 1024;

/// A command waiting its turn in [`CommandConn::submit`]'s queue.
struct Queued {
    cmd: redis::Cmd,
    /// After this the caller has been told "unavailable", so it is not sent any more.
    deadline: Instant,
    reply: ReplyTo,
}

/// A publish waiting for the connection to come back.
struct Parked {
    cmd: redis::Cmd,
    reply: ReplyTo,
}

/// Something that can be sent on a multiplexed connection: a command or a pipeline.
pub trait Queryable: Sync {
    /// Sends it and parses the reply.
    fn send<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send;
}

impl Queryable for redis::Cmd {
    fn send<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send {
        self.query_async(conn)
    }
}

impl Queryable for redis::Pipeline {
    fn send<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> impl std::future::Future<Output = std::result::Result<T, RedisError>> + Send {
        self.query_async(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            factor: 2.0,
            jitter,
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(cfg(0.0));
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempt(), 6);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_only_shortens_within_its_share() {
        let mut b = Backoff::new(cfg(0.5));
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }
}
