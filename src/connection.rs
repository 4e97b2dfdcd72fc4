//! Connections: the shared command connection (multiplexed, so concurrent commands pipeline
//! on one socket) with its reconnect loop, the back-off schedule, and opening the dedicated
//! connections that blocking reads use.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, Value};
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::codec::now_ms;
use crate::config::{BackoffConfig, Config};
use crate::error::{classify, Error, Failure, Result};
use crate::status::{ConnState, Counters, Throttle};

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
    let fut = client.get_multiplexed_async_connection_with_config(&conn_cfg);
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
    generation: AtomicU64,
    timeouts: AtomicU32,
    timeout_log: Throttle,
    state: watch::Sender<ConnState>,
    kick: Notify,
}

impl CommandConn {
    /// Creates the connection holder; nothing is opened until [`CommandConn::run`] starts.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] when the URL cannot be used.
    pub fn new(cfg: Arc<Config>, counters: Arc<Counters>) -> Result<Self> {
        let client = redis_client(&cfg)?;
        Ok(CommandConn {
            client,
            cfg,
            counters,
            slot: RwLock::new(None),
            parked: Mutex::new(VecDeque::new()),
            generation: AtomicU64::new(0),
            timeouts: AtomicU32::new(0),
            timeout_log: Throttle::default(),
            state: watch::Sender::new(ConnState::Idle),
            kick: Notify::new(),
        })
    }

    /// The redis client, for opening the dedicated reader connections.
    pub fn client(&self) -> &redis::Client {
        &self.client
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
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = self.kick.notified() => {}
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
            let _ = p.reply.send(Ok(None));
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
                        let _ = p.reply.send(r);
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

    /// Like [`CommandConn::query`], but while disconnected the command waits in the
    /// `offlineBuffer` (when it has room) and is sent once Redis is back.
    ///
    /// # Errors
    /// The server's refusal, as the raw `RedisError`.
    pub async fn query_or_park(
        &self,
        cmd: redis::Cmd,
    ) -> std::result::Result<Option<Value>, RedisError> {
        if self.cfg.offline_buffer == 0 || self.get().is_some() {
            return self.query(&cmd).await;
        }
        let rx = {
            let mut q = self.parked();
            if self.get().is_some() {
                // Connected between the two checks: the queue was flushed, send directly.
                drop(q);
                return self.query(&cmd).await;
            }
            if q.len() >= self.cfg.offline_buffer {
                warn!(
                    capacity = self.cfg.offline_buffer,
                    "offline buffer full; publish not kept"
                );
                return Ok(None);
            }
            let (tx, rx) = oneshot::channel();
            q.push_back(Parked { cmd, reply: tx });
            rx
        };
        rx.await.unwrap_or(Ok(None))
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
        let Some((gen, mut conn)) = self.get() else {
            return Ok(None);
        };
        match tokio::time::timeout(self.cfg.command_timeout, cmd.send(&mut conn)).await {
            Err(_) => {
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

/// A publish waiting for the connection to come back.
struct Parked {
    cmd: redis::Cmd,
    reply: oneshot::Sender<std::result::Result<Option<Value>, RedisError>>,
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
