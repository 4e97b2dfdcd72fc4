//! Consumer groups: the work-queue half. Each consumer runs its own loop on a connection of
//! its own (a blocking XREADGROUP can never share the command connection), reads its own
//! pending entries first (what a crash left behind), then new ones, acknowledges in one
//! XACK per batch, claims entries abandoned by dead consumers, and moves poison messages to
//! a dead-letter stream.
//!
//! A blocked XREADGROUP is never dropped: it may already have put entries in this
//! consumer's pending list. Stopping wakes it with `CLIENT UNBLOCK` and lets it return.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::codec::{check_stream_name, parse_entries, parse_read_reply, Entry, StartId, StreamId};
use crate::config::Config;
use crate::connection::{unblock, CommandConn, Redial};
use crate::error::{classify, Error, Failure, Result};
use crate::handler::{Batch, Handler, Outcome};
use crate::lifecycle::Lifecycle;
use crate::status::{ConnState, Counters};

/// Extra time past BLOCK before a silent read counts as a dead connection.
const WATCHDOG_GRACE: Duration = Duration::from_secs(2);
/// Shortest pause between two XAUTOCLAIM scans.
const MIN_CLAIM_PERIOD: Duration = Duration::from_millis(50);
/// Delay before a failed entry is retried, when `maxDeliveries` asks for retries.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(1000);
/// Suffix of the default dead-letter stream: `<stream>:dead`.
pub const DEAD_LETTER_SUFFIX: &str = ":dead";

/// Options of one consumer.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// XACK each entry whose callback resolved. Defaults to true.
    pub auto_ack: bool,
    /// COUNT per read; the config's default when `None`.
    pub count: Option<usize>,
    /// BLOCK time; the config's default when `None`.
    pub block: Option<Duration>,
    /// Claim entries of any consumer of the group that stayed pending longer than this.
    pub claim_idle: Option<Duration>,
    /// Deliveries after which an entry goes to the dead-letter stream instead of the callback.
    pub max_deliveries: Option<u64>,
    /// Where poison entries go; `<stream>:dead` when `None`.
    pub dead_letter_stream: Option<String>,
    /// With `max_deliveries` and auto-ack: how long a failed entry waits before it is
    /// delivered again.
    pub retry_delay: Duration,
    /// Create the group (from `0`, with MKSTREAM) when it is missing at start or vanishes
    /// while consuming, instead of failing or waiting for someone else to create it.
    pub create_if_missing: bool,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            auto_ack: true,
            count: None,
            block: None,
            claim_idle: None,
            max_deliveries: None,
            dead_letter_stream: None,
            retry_delay: DEFAULT_RETRY_DELAY,
            create_if_missing: false,
        }
    }
}

/// Checks a group or consumer name.
///
/// # Errors
/// [`Error::InvalidArg`] when empty.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, format!("the {field} name is empty")));
    }
    Ok(())
}

fn key(stream: &str, group: &str, consumer: &str) -> String {
    format!("{stream}:{group}:{consumer}")
}

fn nogroup(stream: &str, group: &str) -> Error {
    Error::NoGroup {
        stream: stream.to_owned(),
        group: group.to_owned(),
    }
}

/// One running consumer.
struct Consumer {
    stream: Arc<str>,
    group: String,
    name: String,
    opts: ConsumeOptions,
    count: usize,
    block: Duration,
    dead_letter: String,
    token: CancellationToken,
    reader_id: AtomicI64,
    reading: AtomicBool,
    finished: watch::Sender<bool>,
    state: Arc<watch::Sender<ConnState>>,
}

/// Marks a consumer finished when its task ends, however it ends.
struct Finished {
    groups: Arc<Groups>,
    key: String,
    c: Arc<Consumer>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let mut consumers = self.groups.consumers();
        if consumers
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.c))
        {
            consumers.remove(&self.key);
        }
        drop(consumers);
        self.c.reader_id.store(-1, Ordering::SeqCst);
        self.c.state.send_replace(ConnState::Closed);
        self.c.finished.send_replace(true);
    }
}

/// Where a batch came from; entries from a pending list may be redeliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    OwnPending,
    Claimed,
    New,
}

/// The consumers of one client.
pub struct Groups {
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    cmd: Arc<CommandConn>,
    consumers: Mutex<BTreeMap<String, Arc<Consumer>>>,
}

impl Groups {
    /// No consumers yet.
    pub fn new(cfg: Arc<Config>, counters: Arc<Counters>, cmd: Arc<CommandConn>) -> Self {
        Groups {
            cfg,
            counters,
            cmd,
            consumers: Mutex::new(BTreeMap::new()),
        }
    }

    fn consumers(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Consumer>>> {
        self.consumers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `stream:group:consumer` of every running consumer, sorted.
    pub fn names(&self) -> Vec<String> {
        self.consumers().keys().cloned().collect()
    }

    /// Each running consumer's `stream:group:consumer` with the state of its connection.
    pub fn states(&self) -> Vec<(String, ConnState)> {
        self.consumers()
            .iter()
            .map(|(k, c)| (k.clone(), c.state.borrow().clone()))
            .collect()
    }

    /// Creates `group` on `stream` (and the stream, if missing).
    ///
    /// `Ok(true)` when the group exists afterwards (including when it existed before),
    /// `Ok(false)` when Redis is unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names or a key that is not a stream.
    pub async fn create_group(&self, stream: &str, group: &str, start: StartId) -> Result<bool> {
        check_stream_name(stream)?;
        check_name("group", group)?;
        let start = match start {
            StartId::Latest => "$".to_owned(),
            StartId::After(id) => id.to_string(),
        };
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg(&start)
            .arg("MKSTREAM");
        match self.cmd.query::<Value, _>(&cmd).await {
            Ok(Some(_)) => {
                info!(stream, group, start = %start, "consumer group created");
                Ok(true)
            }
            Ok(None) => {
                warn!(
                    stream,
                    group, "Redis unavailable; consumer group not created"
                );
                Ok(false)
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(true),
            Err(e) if e.code() == Some("WRONGTYPE") => Err(Error::invalid(
                "stream",
                format!("key {stream:?} holds a value that is not a stream"),
            )),
            Err(e) => Err(Error::Protocol(e.to_string())),
        }
    }

    /// Registers a consumer and starts its loop: the consumer exists (and `stop` reaches it)
    /// when this returns, before anything is awaited.
    ///
    /// The returned future resolves once the group is known to exist (or Redis is
    /// unavailable: the loop then runs anyway and waits for it).
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names, or when this client already runs that consumer
    /// (at once); from the future, [`Error::NoGroup`] when the group or stream does not exist
    /// (the consumer is then removed again).
    pub fn start_consume(
        self: &Arc<Self>,
        life: &Lifecycle,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        check_stream_name(stream)?;
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        let k = key(stream, group, consumer);
        let c = Arc::new(Consumer {
            stream: Arc::from(stream),
            group: group.to_owned(),
            name: consumer.to_owned(),
            count: opts.count.unwrap_or(self.cfg.default_count),
            block: opts.block.unwrap_or(self.cfg.default_block),
            dead_letter: opts
                .dead_letter_stream
                .clone()
                .unwrap_or_else(|| format!("{stream}{DEAD_LETTER_SUFFIX}")),
            opts,
            token: life.token.child_token(),
            reader_id: AtomicI64::new(-1),
            reading: AtomicBool::new(false),
            finished: watch::Sender::new(false),
            state: Arc::new(watch::Sender::new(ConnState::Idle)),
        });
        {
            let mut consumers = self.consumers();
            if consumers.contains_key(&k) {
                return Err(Error::invalid(
                    "consumer",
                    format!("{k} is already consuming on this client; call stopConsumer first"),
                ));
            }
            consumers.insert(k.clone(), c.clone());
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let groups = self.clone();
        life.spawn("consumer", async move {
            // Runs however this task ends (a panic included): the consumer leaves the
            // registry, so it can be started again, and `stop` stops waiting for it.
            let _finished = Finished {
                groups: groups.clone(),
                key: k,
                c: c.clone(),
            };
            if let Err(e) = groups.probe(&c).await {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer started");
            ConsumerLoop {
                groups,
                c,
                handler,
                unacked: Mutex::new(Vec::new()),
            }
            .run()
            .await;
        });
        Ok(async move {
            ready_rx.await.unwrap_or_else(|_| {
                Err(Error::Protocol(
                    "the consumer task ended before it started".into(),
                ))
            })
        })
    }

    /// Registers a consumer and waits until its group is known to exist; see
    /// [`Groups::start_consume`].
    ///
    /// # Errors
    /// As [`Groups::start_consume`].
    pub async fn consume(
        self: &Arc<Self>,
        life: &Lifecycle,
        stream: &str,
        group: &str,
        consumer: &str,
        handler: Arc<dyn Handler>,
        opts: ConsumeOptions,
    ) -> Result<()> {
        self.start_consume(life, stream, group, consumer, handler, opts)?
            .await
    }

    /// Checks that the consumer's group exists (creating it with `createIfMissing`).
    async fn probe(&self, c: &Consumer) -> Result<()> {
        let (stream, group) = (&*c.stream, c.group.as_str());
        let mut probe = redis::cmd("XPENDING");
        probe.arg(stream).arg(group);
        match self.cmd.query::<Value, _>(&probe).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                warn!(
                    stream,
                    group,
                    consumer = %c.name,
                    "Redis unavailable; the consumer starts and waits for it"
                );
                Ok(())
            }
            Err(e) if e.code() == Some("NOGROUP") && c.opts.create_if_missing => self
                .create_group(stream, group, StartId::After(StreamId::ZERO))
                .await
                .map(|_| ()),
            Err(e) if e.code() == Some("NOGROUP") => Err(nogroup(stream, group)),
            Err(e) if e.code() == Some("WRONGTYPE") => Err(Error::invalid(
                "stream",
                format!("key {stream:?} holds a value that is not a stream"),
            )),
            Err(e) => Err(Error::Protocol(e.to_string())),
        }
    }

    /// Stops a consumer: no new reads; a running callback finishes and is acknowledged.
    /// Waits up to `deadline` for that; returns whether such a consumer was running.
    pub async fn stop(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        deadline: Duration,
    ) -> bool {
        let found = self.consumers().get(&key(stream, group, consumer)).cloned();
        let Some(c) = found else {
            return false;
        };
        c.token.cancel();
        self.wake(&c).await;
        let mut done = c.finished.subscribe();
        if tokio::time::timeout(deadline, done.wait_for(|f| *f))
            .await
            .is_err()
        {
            warn!(
                stream,
                group,
                consumer,
                deadline_ms = deadline.as_millis() as u64,
                "stopConsumer: the callback was still running at the deadline"
            );
        }
        true
    }

    /// Wakes every consumer's blocked read (used by `disconnect()` after cancelling).
    pub async fn interrupt_all(&self) {
        let all: Vec<Arc<Consumer>> = self.consumers().values().cloned().collect();
        for c in &all {
            self.wake(c).await;
        }
    }

    async fn wake(&self, c: &Consumer) {
        unblock(
            &self.cmd,
            || c.reader_id.load(Ordering::SeqCst),
            || c.reading.load(Ordering::SeqCst),
            None,
        )
        .await;
    }

    /// XACK of `ids` in one command; the number acknowledged, `0` when unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names; [`Error::NoGroup`] for a missing group.
    pub async fn ack(&self, stream: &str, group: &str, ids: &[StreamId]) -> Result<u64> {
        check_stream_name(stream)?;
        check_name("group", group)?;
        if ids.is_empty() {
            return Ok(0);
        }
        match self.cmd.query::<u64, _>(&xack(stream, group, ids)).await {
            Ok(Some(n)) => Ok(n),
            Ok(None) => {
                warn!(
                    stream,
                    group,
                    count = ids.len(),
                    "Redis unavailable; nothing acknowledged"
                );
                Ok(0)
            }
            Err(e) if e.code() == Some("NOGROUP") => Err(nogroup(stream, group)),
            Err(e) => Err(Error::Protocol(e.to_string())),
        }
    }
}

fn xack(stream: &str, group: &str, ids: &[StreamId]) -> redis::Cmd {
    let mut cmd = redis::cmd("XACK");
    cmd.arg(stream).arg(group);
    for id in ids {
        cmd.arg(id.to_string());
    }
    cmd
}

/// Why a read step failed.
enum StepError {
    /// The connection is gone: reconnect.
    Connection(String),
    /// The group (or stream) is missing.
    NoGroup,
    /// The server refused something else.
    Refused(String),
}

impl From<RedisError> for StepError {
    fn from(e: RedisError) -> Self {
        match classify(&e) {
            Failure::Connection => StepError::Connection(e.to_string()),
            Failure::NoGroup => StepError::NoGroup,
            Failure::Command => StepError::Refused(e.to_string()),
        }
    }
}

impl From<Error> for StepError {
    fn from(e: Error) -> Self {
        match e {
            Error::Timeout(_) => StepError::Connection(e.to_string()),
            other => StepError::Refused(other.to_string()),
        }
    }
}

struct ConsumerLoop {
    groups: Arc<Groups>,
    c: Arc<Consumer>,
    handler: Arc<dyn Handler>,
    /// Handled entries whose XACK has not been answered yet. It goes out right before the
    /// next read, on the same connection and without waiting for its own reply, which saves
    /// one round trip per batch; every other step (and stopping) sends it first on its own.
    unacked: Mutex<Vec<StreamId>>,
}

impl ConsumerLoop {
    fn cfg(&self) -> &Config {
        &self.groups.cfg
    }

    fn claim_due(&self, at: Instant) -> bool {
        self.c.opts.claim_idle.is_some() && Instant::now() >= at
    }

    fn take_unacked(&self) -> Vec<StreamId> {
        std::mem::take(&mut *self.unacked.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts ids whose XACK failed back, to be sent again (XACK is idempotent).
    fn keep_unacked(&self, ids: Vec<StreamId>) {
        let mut u = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *u, ids);
        u.extend(newer);
    }

    /// Sends the XACK of `ids` and counts it; on failure the ids are kept for the next try.
    async fn ack(
        &self,
        conn: &mut MultiplexedConnection,
        ids: Vec<StreamId>,
    ) -> std::result::Result<(), StepError> {
        if ids.is_empty() {
            return Ok(());
        }
        let c = &self.c;
        let r = timed(
            self.cfg(),
            xack(&c.stream, &c.group, &ids).query_async::<u64>(conn),
        )
        .await;
        match r {
            Ok(Ok(n)) => {
                Counters::add(&self.groups.counters.acked, n);
                Ok(())
            }
            Ok(Err(e)) => {
                warn!(stream = %c.stream, group = %c.group, count = ids.len(), error = %e, "XACK failed; will try again (the entries stay pending until then)");
                self.keep_unacked(ids);
                Err(e.into())
            }
            Err(e) => {
                warn!(stream = %c.stream, group = %c.group, count = ids.len(), error = %e, "XACK timed out; will try again (the entries stay pending until then)");
                self.keep_unacked(ids);
                Err(e.into())
            }
        }
    }

    /// Sends the outstanding XACK on its own and waits for it.
    async fn flush_acks(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> std::result::Result<(), StepError> {
        let ids = self.take_unacked();
        self.ack(conn, ids).await
    }

    async fn run(self) {
        let c = &self.c;
        let mut redial = Redial::new(
            self.groups.cfg.clone(),
            self.groups.counters.clone(),
            c.state.clone(),
            "consumer",
        );
        let mut conn: Option<MultiplexedConnection> = None;
        // `Some(id)`: reading this consumer's own pending entries after `id`.
        let mut pending_from: Option<StreamId> = Some(StreamId::ZERO);
        let mut claim_from = StreamId::ZERO;
        let mut claim_due = Instant::now();
        let mut retry_due: Option<Instant> = None;
        let mut missing_group = false;
        loop {
            if c.token.is_cancelled() {
                break;
            }
            let Some(conn_ref) = conn.as_mut() else {
                c.reader_id.store(-1, Ordering::SeqCst);
                if let Some(b) = redial.connect(self.groups.cmd.client(), &c.token).await {
                    c.reader_id.store(b.id, Ordering::SeqCst);
                    conn = Some(b.conn);
                    // After any reconnect: own pending entries first, then new ones.
                    pending_from = Some(StreamId::ZERO);
                }
                continue;
            };
            if retry_due.is_some_and(|t| Instant::now() >= t) {
                retry_due = None;
                pending_from = Some(StreamId::ZERO);
            }
            // Only a read of new entries takes the outstanding XACK along; anything else
            // (own pending entries, claims) must see it done first.
            let flushed = if pending_from.is_none() && !self.claim_due(claim_due) {
                Ok(())
            } else {
                self.flush_acks(conn_ref).await
            };
            let step = if let Err(e) = flushed {
                Err(e)
            } else if let Some(from) = pending_from {
                match self.read_pending(conn_ref, from).await {
                    Ok(entries) if entries.is_empty() => {
                        pending_from = None;
                        Ok(())
                    }
                    Ok(entries) => {
                        pending_from = entries.last().map(|e| e.id);
                        self.process(conn_ref, entries, Source::OwnPending, &mut retry_due)
                            .await
                    }
                    Err(e) => Err(e),
                }
            } else if self.claim_due(claim_due) {
                match self.claim(conn_ref, claim_from).await {
                    Ok((next, entries)) => {
                        claim_from = next;
                        if next == StreamId::ZERO {
                            let idle = c.opts.claim_idle.unwrap_or_default();
                            claim_due = Instant::now() + (idle / 2).max(MIN_CLAIM_PERIOD);
                        }
                        self.process(conn_ref, entries, Source::Claimed, &mut retry_due)
                            .await
                    }
                    Err(e) => Err(e),
                }
            } else {
                let mut block = c.block;
                let now = Instant::now();
                if c.opts.claim_idle.is_some() {
                    block = block.min(claim_due.saturating_duration_since(now));
                }
                if let Some(t) = retry_due {
                    block = block.min(t.saturating_duration_since(now));
                }
                match self
                    .read_new(conn_ref, block.max(Duration::from_millis(1)))
                    .await
                {
                    Ok(entries) => {
                        self.process(conn_ref, entries, Source::New, &mut retry_due)
                            .await
                    }
                    Err(e) => Err(e),
                }
            };
            match step {
                Ok(()) => {
                    if missing_group {
                        info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer group is back; consuming again");
                        missing_group = false;
                    }
                }
                Err(StepError::Connection(e)) => {
                    self.groups.cmd.probe_soon();
                    warn!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %e, "consumer connection lost; reconnecting");
                    conn = None;
                }
                Err(StepError::NoGroup) if c.opts.create_if_missing => {
                    warn!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer group or stream vanished; recreating it from 0 (createIfMissing)");
                    pending_from = Some(StreamId::ZERO);
                    match self
                        .groups
                        .create_group(&c.stream, &c.group, StartId::After(StreamId::ZERO))
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) | Err(_) => {
                            let delay = redial.next_delay();
                            tokio::select! {
                                _ = c.token.cancelled() => break,
                                _ = tokio::time::sleep(delay) => {}
                            }
                        }
                    }
                }
                Err(StepError::NoGroup) => {
                    let delay = redial.next_delay();
                    if !missing_group {
                        warn!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer group or stream is missing; waiting for it to exist again (call createConsumerGroup)");
                    }
                    missing_group = true;
                    pending_from = Some(StreamId::ZERO);
                    tokio::select! {
                        _ = c.token.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(StepError::Refused(e)) => {
                    let delay = redial.next_delay();
                    error!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %e, retry_in_ms = delay.as_millis() as u64, "Redis refused a consumer read; retrying");
                    tokio::select! {
                        _ = c.token.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        // Callbacks that finished are always acknowledged, also when stopping.
        if let Some(conn_ref) = conn.as_mut() {
            let _ = self.flush_acks(conn_ref).await;
        }
        let left = self.take_unacked();
        if !left.is_empty() {
            warn!(stream = %c.stream, group = %c.group, consumer = %c.name, count = left.len(), "stopped without a connection; handled entries stay pending and will be redelivered");
        }
        info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer stopped");
    }

    fn xreadgroup(&self, block: Option<Duration>, id: &str) -> redis::Cmd {
        let c = &self.c;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&c.group)
            .arg(&c.name)
            .arg("COUNT")
            .arg(c.count);
        if let Some(b) = block {
            cmd.arg("BLOCK").arg(b.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&*c.stream).arg(id);
        cmd
    }

    fn entries_of(&self, v: &Value) -> std::result::Result<Vec<Entry>, StepError> {
        Ok(parse_read_reply(v)?
            .into_iter()
            .flat_map(|(_, entries)| entries)
            .collect())
    }

    async fn read_pending(
        &self,
        conn: &mut MultiplexedConnection,
        after: StreamId,
    ) -> std::result::Result<Vec<Entry>, StepError> {
        let v = timed(
            self.cfg(),
            self.xreadgroup(None, &after.to_string()).query_async(conn),
        )
        .await??;
        self.entries_of(&v)
    }

    async fn read_new(
        &self,
        conn: &mut MultiplexedConnection,
        block: Duration,
    ) -> std::result::Result<Vec<Entry>, StepError> {
        let c = &self.c;
        let cmd = self.xreadgroup(Some(block), ">");
        c.reading.store(true, Ordering::SeqCst);
        // Not raced against cancellation: stopping unblocks this read instead of dropping it.
        let watchdog = block + self.cfg().command_timeout + WATCHDOG_GRACE;
        // The previous batch's XACK goes first on the same connection (a biased join polls
        // it first, and the connection writes in that order); its reply comes back before
        // the read blocks, so it is counted then.
        let ids = self.take_unacked();
        let mut ack_conn = conn.clone();
        let (_, r) = tokio::join!(
            biased;
            self.ack(&mut ack_conn, ids),
            tokio::time::timeout(watchdog, cmd.query_async::<Value>(conn))
        );
        c.reading.store(false, Ordering::SeqCst);
        match r {
            Err(_) => Err(StepError::Connection(format!(
                "blocked read outlived its BLOCK time ({} ms)",
                watchdog.as_millis()
            ))),
            Ok(r) => self.entries_of(&r?),
        }
    }

    async fn claim(
        &self,
        conn: &mut MultiplexedConnection,
        from: StreamId,
    ) -> std::result::Result<(StreamId, Vec<Entry>), StepError> {
        let c = &self.c;
        let idle = c.opts.claim_idle.unwrap_or_default();
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&*c.stream)
            .arg(&c.group)
            .arg(&c.name)
            .arg(idle.as_millis() as u64)
            .arg(from.to_string())
            .arg("COUNT")
            .arg(c.count);
        let v = timed(self.cfg(), cmd.query_async::<Value>(conn)).await??;
        let Value::Array(parts) = &v else {
            return Err(StepError::Refused(format!("XAUTOCLAIM replied {v:?}")));
        };
        let next = match parts.first() {
            Some(Value::BulkString(b)) => {
                String::from_utf8_lossy(b).parse().unwrap_or(StreamId::ZERO)
            }
            Some(Value::SimpleString(s)) => s.parse().unwrap_or(StreamId::ZERO),
            _ => StreamId::ZERO,
        };
        let entries = match parts.get(1) {
            Some(list) => parse_entries(list)?,
            None => Vec::new(),
        };
        if !entries.is_empty() {
            Counters::add(&self.groups.counters.claimed, entries.len() as u64);
            info!(stream = %c.stream, group = %c.group, consumer = %c.name, count = entries.len(), idle_ms = idle.as_millis() as u64, "claimed idle pending entries");
        }
        Ok((next, entries))
    }

    /// Delivery counts of `entries` from this consumer's pending list.
    async fn deliveries(
        &self,
        conn: &mut MultiplexedConnection,
        entries: &[Entry],
    ) -> std::result::Result<HashMap<StreamId, u64>, StepError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(HashMap::new());
        };
        let c = &self.c;
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&*c.stream)
            .arg(&c.group)
            .arg(first.id.to_string())
            .arg(last.id.to_string())
            .arg(entries.len())
            .arg(&c.name);
        let v = timed(self.cfg(), cmd.query_async::<Value>(conn)).await??;
        let mut out = HashMap::new();
        if let Value::Array(rows) = v {
            for row in rows {
                if let Value::Array(f) = row {
                    let id = match f.first() {
                        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).parse().ok(),
                        Some(Value::SimpleString(s)) => s.parse().ok(),
                        _ => None,
                    };
                    let n = match f.get(3) {
                        Some(Value::Int(n)) => Some(*n as u64),
                        _ => None,
                    };
                    if let (Some(id), Some(n)) = (id, n) {
                        out.insert(id, n);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Moves poison entries to the dead-letter stream and acknowledges them, atomically.
    async fn dead_letter(
        &self,
        conn: &mut MultiplexedConnection,
        poison: &[(Entry, u64)],
    ) -> std::result::Result<(), StepError> {
        let c = &self.c;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (e, n) in poison {
            let mut add = redis::cmd("XADD");
            add.arg(&c.dead_letter).arg("*");
            for (k, v) in e.fields.iter().flatten() {
                add.arg(k.as_slice()).arg(v.as_slice());
            }
            add.arg("originalStream")
                .arg(&*c.stream)
                .arg("originalId")
                .arg(e.id.to_string())
                .arg("group")
                .arg(&c.group)
                .arg("consumer")
                .arg(&c.name)
                .arg("deliveries")
                .arg(*n);
            pipe.add_command(add).ignore();
        }
        let ids: Vec<StreamId> = poison.iter().map(|(e, _)| e.id).collect();
        pipe.add_command(xack(&c.stream, &c.group, &ids)).ignore();
        timed(self.cfg(), pipe.query_async::<()>(conn)).await??;
        Counters::add(&self.groups.counters.dead_lettered, ids.len() as u64);
        for (e, n) in poison {
            error!(stream = %c.stream, group = %c.group, consumer = %c.name, id = %e.id, deliveries = n, dead_letter = %c.dead_letter, "entry exceeded maxDeliveries; moved to the dead-letter stream");
        }
        Ok(())
    }

    async fn process(
        &self,
        conn: &mut MultiplexedConnection,
        mut entries: Vec<Entry>,
        source: Source,
        retry_due: &mut Option<Instant>,
    ) -> std::result::Result<(), StepError> {
        let c = &self.c;
        if entries.is_empty() {
            return Ok(());
        }
        // Entries deleted from the stream while pending carry no fields: nothing to deliver.
        let (deleted, live): (Vec<Entry>, Vec<Entry>) =
            entries.drain(..).partition(|e| e.fields.is_none());
        entries = live;
        if !deleted.is_empty() {
            let ids: Vec<StreamId> = deleted.iter().map(|e| e.id).collect();
            warn!(stream = %c.stream, group = %c.group, count = ids.len(), "pending entries were deleted from the stream; acknowledging them");
            timed(
                self.cfg(),
                xack(&c.stream, &c.group, &ids).query_async::<u64>(conn),
            )
            .await??;
        }
        if let (Some(max), true) = (c.opts.max_deliveries, source != Source::New) {
            let counts = self.deliveries(conn, &entries).await?;
            let (poison, ok): (Vec<Entry>, Vec<Entry>) = entries
                .into_iter()
                .partition(|e| counts.get(&e.id).is_some_and(|n| *n > max));
            entries = ok;
            if !poison.is_empty() {
                let with_counts: Vec<(Entry, u64)> = poison
                    .into_iter()
                    .map(|e| {
                        let n = counts.get(&e.id).copied().unwrap_or_default();
                        (e, n)
                    })
                    .collect();
                self.dead_letter(conn, &with_counts).await?;
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        debug!(stream = %c.stream, group = %c.group, consumer = %c.name, count = entries.len(), source = ?source, "delivering");
        let ids: Vec<StreamId> = entries.iter().map(|e| e.id).collect();
        let n = entries.len();
        let outcome = match self
            .handler
            .handle(Batch::new(c.stream.clone(), entries))
            .await
        {
            Ok(o) => o.clamped(n),
            Err(gone) => {
                warn!(stream = %c.stream, group = %c.group, consumer = %c.name, error = %gone, "consumer callback is gone; stopping the consumer");
                c.token.cancel();
                Outcome::default()
            }
        };
        Counters::add(&self.groups.counters.delivered, outcome.handled as u64);
        Counters::add(
            &self.groups.counters.callback_errors,
            outcome.failures.len() as u64,
        );
        for f in &outcome.failures {
            warn!(stream = %c.stream, group = %c.group, consumer = %c.name, id = %f.id, error = %f.error, "consumer callback failed; the entry stays pending");
        }
        if !c.opts.auto_ack {
            return Ok(());
        }
        let failed: std::collections::HashSet<&str> =
            outcome.failures.iter().map(|f| f.id.as_str()).collect();
        let done: Vec<StreamId> = ids[..outcome.handled]
            .iter()
            .filter(|id| !failed.contains(id.to_string().as_str()))
            .copied()
            .collect();
        if !failed.is_empty() && c.opts.max_deliveries.is_some() {
            *retry_due = Some(Instant::now() + c.opts.retry_delay);
        }
        if done.is_empty() {
            return Ok(());
        }
        // Sent with the next read, or on its own before any other step and when stopping:
        // callbacks that finished are always acknowledged.
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(done);
        Ok(())
    }
}

/// Runs a non-blocking command on a consumer connection within the command timeout.
async fn timed<T>(
    cfg: &Config,
    fut: impl std::future::Future<Output = std::result::Result<T, RedisError>>,
) -> std::result::Result<std::result::Result<T, RedisError>, Error> {
    tokio::time::timeout(cfg.command_timeout, fut)
        .await
        .map_err(|_| Error::Timeout(cfg.command_timeout.as_millis() as u64))
}
