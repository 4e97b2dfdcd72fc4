//! Consumer groups: the work-queue half.
//!
//! - this module: the API (`createConsumerGroup`, starting and stopping consumers, XACK) and
//!   the registry of running consumers;
//! - [`consumer`]: one consumer's loop, on a [`BlockingReader`] of its own (a blocking
//!   XREADGROUP can never share the command connection): its own pending entries first (what
//!   a crash left behind), then new ones, one XACK per batch, claims of entries abandoned by
//!   dead consumers;
//! - [`dead_letter`]: moving poison messages to a dead-letter stream;
//! - [`step`]: what a step of that loop can fail with.
//!
//! A blocked XREADGROUP is never dropped: it may already have put entries in this
//! consumer's pending list. Stopping wakes it with `CLIENT UNBLOCK` and lets it return.

mod consumer;
mod dead_letter;
mod step;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::Value;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::codec::{check_stream_name, parse_groups_info, StartId, StreamId};
use crate::config::{opt_count, opt_ms, whole_number, Config, MAX_BLOCK_MS};
use crate::connection::{BlockingReader, CommandConn, Placement, UnblockHandle, Unblocker};
use crate::error::{classify, refusal, Error, Failure, Result};
use crate::handler::Handler;
use crate::lifecycle::Lifecycle;
use crate::status::{ConnState, Counters, GroupInfo};
use crate::trim::Touched;

pub use dead_letter::DEAD_LETTER_SUFFIX;

/// Delay before a failed entry is retried, when `maxDeliveries` asks for retries.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(1000);

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
    /// Delete each entry from the stream when it is acknowledged (handled, dead-lettered,
    /// or acknowledged by the caller for this group): a work queue that needs no trimming.
    pub delete_on_ack: bool,
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
            delete_on_ack: false,
        }
    }
}

/// The options of `consumeFromGroup` as a caller gives them.
#[derive(Debug, Clone, Default)]
pub struct ConsumeInput {
    /// See [`ConsumeOptions::auto_ack`].
    pub auto_ack: Option<bool>,
    /// COUNT.
    pub count: Option<f64>,
    /// BLOCK in milliseconds.
    pub block_ms: Option<f64>,
    /// See [`ConsumeOptions::claim_idle`], in milliseconds.
    pub claim_idle_ms: Option<f64>,
    /// See [`ConsumeOptions::max_deliveries`].
    pub max_deliveries: Option<f64>,
    /// See [`ConsumeOptions::dead_letter_stream`].
    pub dead_letter_stream: Option<String>,
    /// See [`ConsumeOptions::retry_delay`], in milliseconds.
    pub retry_delay_ms: Option<f64>,
    /// See [`ConsumeOptions::create_if_missing`].
    pub create_if_missing: Option<bool>,
    /// See [`ConsumeOptions::delete_on_ack`].
    pub delete_on_ack: Option<bool>,
}

impl ConsumeOptions {
    /// Validates a caller's options.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the option that is out of range or malformed.
    pub fn from_input(input: ConsumeInput) -> Result<ConsumeOptions> {
        if let Some(d) = &input.dead_letter_stream {
            check_stream_name(d).map_err(|_| {
                Error::invalid("deadLetterStream", "the stream name is empty or too long")
            })?;
        }
        Ok(ConsumeOptions {
            auto_ack: input.auto_ack.unwrap_or(true),
            count: opt_count("count", input.count)?,
            block: opt_ms("blockMs", input.block_ms, 1, MAX_BLOCK_MS)?,
            claim_idle: opt_ms("claimIdleMs", input.claim_idle_ms, 1, u32::MAX as u64)?,
            max_deliveries: input
                .max_deliveries
                .map(|n| whole_number("maxDeliveries", n, 1, u32::MAX as u64))
                .transpose()?,
            dead_letter_stream: input.dead_letter_stream,
            retry_delay: opt_ms("retryDelayMs", input.retry_delay_ms, 1, u32::MAX as u64)?
                .unwrap_or(DEFAULT_RETRY_DELAY),
            create_if_missing: input.create_if_missing.unwrap_or(false),
            delete_on_ack: input.delete_on_ack.unwrap_or(false),
        })
    }
}

/// Most callbacks of one consumer that may run at once.
pub const MAX_CONCURRENCY: u64 = 10_000;

/// Validates `concurrency` (callbacks of one batch at once; the handler's business).
///
/// # Errors
/// [`Error::InvalidArg`] unless a whole number between 1 and [`MAX_CONCURRENCY`].
pub fn concurrency(v: Option<f64>) -> Result<u32> {
    Ok(
        v.map(|n| whole_number("concurrency", n, 1, MAX_CONCURRENCY))
            .transpose()?
            .unwrap_or(1) as u32,
    )
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

/// Names one consumer of a client. A tuple, not a joined string: `:` may appear in stream
/// and group names, so `a:b`/`c` and `a`/`b:c` would collide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerKey {
    /// The stream read.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// The consumer's name in the group.
    pub consumer: String,
}

impl ConsumerKey {
    /// The key of `consumer` of `group` on `stream`.
    pub fn new(stream: &str, group: &str, consumer: &str) -> Self {
        ConsumerKey {
            stream: stream.to_owned(),
            group: group.to_owned(),
            consumer: consumer.to_owned(),
        }
    }
}

/// `stream:group:consumer`, as status shows it (for people; never parsed back).
impl std::fmt::Display for ConsumerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.stream, self.group, self.consumer)
    }
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
    /// Its reader, for `CLIENT UNBLOCK`.
    slot: Arc<UnblockHandle>,
    finished: watch::Sender<bool>,
    state: Arc<watch::Sender<ConnState>>,
}

/// Marks a consumer finished when its task ends, however it ends.
struct Finished {
    groups: Arc<Groups>,
    key: ConsumerKey,
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
        self.c.state.send_replace(ConnState::Closed);
        self.c.finished.send_replace(true);
    }
}

/// The consumers of one client.
pub struct Groups {
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    cmd: Arc<CommandConn>,
    /// The client's streams for auto-trim: dead-letter streams are written here, so they
    /// are trimmed like any stream the client publishes to (else they grow without bound).
    touched: Arc<Touched>,
    consumers: Mutex<BTreeMap<ConsumerKey, Arc<Consumer>>>,
}

impl Groups {
    /// No consumers yet.
    pub fn new(
        cfg: Arc<Config>,
        counters: Arc<Counters>,
        cmd: Arc<CommandConn>,
        touched: Arc<Touched>,
    ) -> Self {
        Groups {
            cfg,
            counters,
            cmd,
            touched,
            consumers: Mutex::new(BTreeMap::new()),
        }
    }

    fn consumers(&self) -> MutexGuard<'_, BTreeMap<ConsumerKey, Arc<Consumer>>> {
        self.consumers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `stream:group:consumer` of every running consumer, sorted.
    pub fn names(&self) -> Vec<String> {
        self.consumers().keys().map(ToString::to_string).collect()
    }

    /// Each running consumer's `stream:group:consumer` with the state of its connection.
    pub fn states(&self) -> Vec<(String, ConnState)> {
        self.consumers()
            .iter()
            .map(|(k, c)| (k.to_string(), c.state.borrow().clone()))
            .collect()
    }

    /// Each consumer group this client consumes, as `XINFO GROUPS` says now (one command per
    /// consumed stream, sent together); groups Redis cannot tell about now are left out.
    pub async fn infos(&self) -> Vec<GroupInfo> {
        let mut wanted: BTreeMap<Arc<str>, Vec<String>> = BTreeMap::new();
        for c in self.consumers().values() {
            let groups = wanted.entry(c.stream.clone()).or_default();
            if !groups.contains(&c.group) {
                groups.push(c.group.clone());
            }
        }
        let asks = wanted.into_iter().map(|(stream, groups)| async move {
            let mut cmd = redis::cmd("XINFO");
            cmd.arg("GROUPS").arg(&*stream);
            let reply = self.cmd.query::<Value, _>(&cmd).await;
            let checked_at_ms = crate::codec::now_ms();
            match reply.map(|v| v.map(|v| parse_groups_info(&v))) {
                Ok(Some(Ok(facts))) => facts
                    .into_iter()
                    .filter(|f| groups.contains(&f.name))
                    .map(|f| GroupInfo {
                        stream: stream.to_string(),
                        group: f.name,
                        lag: f.lag,
                        pending: f.pending,
                        last_delivered_id: f.last_delivered,
                        consumers: f.consumers,
                        checked_at_ms,
                    })
                    .collect(),
                Ok(Some(Err(e))) => {
                    warn!(stream = %stream, error = %e, "cannot read XINFO GROUPS for the status");
                    Vec::new()
                }
                // Unavailable, or the stream is gone: nothing to report now.
                Ok(None) | Err(_) => Vec::new(),
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Creates `group` on `stream` (and the stream, if missing).
    ///
    /// `Ok(true)` when the group exists afterwards (including when it existed before),
    /// `Ok(false)` when Redis is unavailable.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for bad names; [`Error::Refused`] when Redis refuses it (a key that
    /// is not a stream, a missing permission).
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
            Err(e) => match classify(&e) {
                Failure::AlreadyExists => Ok(true),
                _ => Err(refusal(stream, &e)),
            },
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
        let k = ConsumerKey::new(stream, group, consumer);
        let reader =
            BlockingReader::new("consumer", &self.cmd, consumer_placement(&self.cmd, stream));
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
            slot: reader.slot(),
            finished: watch::Sender::new(false),
            state: reader.state(),
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
            let finished = Finished {
                groups: groups.clone(),
                key: k,
                c: c.clone(),
            };
            if let Err(e) = groups.probe(&c).await {
                // Out of the registry before the caller hears of it: a start that failed
                // leaves nothing behind, and the same consumer can be started at once.
                drop(finished);
                let _ = ready_tx.send(Err(e));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            info!(stream = %c.stream, group = %c.group, consumer = %c.name, "consumer started");
            consumer::ConsumerLoop::new(groups, c, handler, reader)
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
            Err(e) => match classify(&e) {
                Failure::NoGroup if c.opts.create_if_missing => self
                    .create_group(stream, group, StartId::After(StreamId::ZERO))
                    .await
                    .map(|_| ()),
                Failure::NoGroup => Err(nogroup(stream, group)),
                _ => Err(refusal(stream, &e)),
            },
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
        let found = self
            .consumers()
            .get(&ConsumerKey::new(stream, group, consumer))
            .cloned();
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
        Unblocker {
            cmd: &self.cmd,
            slot: &c.slot,
        }
        .unblock(|_| true, None)
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
        // A consumer of this client with deleteOnAck owns the group's entries: they go when
        // acknowledged, by it or by the caller (autoAck: false, or `consume()`'s ack()).
        let delete = self
            .consumers()
            .values()
            .any(|c| &*c.stream == stream && c.group == group && c.opts.delete_on_ack);
        let q = AckQuery::new(stream, group, ids, delete, &self.cmd);
        match self.cmd.query::<Vec<Value>, _>(&q.pipe).await {
            Ok(Some(reply)) => Ok(q.acked(&reply)),
            Ok(None) => {
                warn!(
                    stream,
                    group,
                    count = ids.len(),
                    "Redis unavailable; nothing acknowledged"
                );
                Ok(0)
            }
            Err(e) => match classify(&e) {
                Failure::NoGroup => Err(nogroup(stream, group)),
                _ => Err(refusal(stream, &e)),
            },
        }
    }
}

/// Where a consumer reads: the master of its stream's slot in a cluster, else the primary.
fn consumer_placement(cmd: &CommandConn, stream: &str) -> Placement {
    if cmd.target().is_cluster() {
        Placement::KeyOwner(Arc::from(stream))
    } else {
        Placement::Primary
    }
}

fn xack(stream: &str, group: &str, ids: &[StreamId]) -> redis::Cmd {
    let mut cmd = redis::cmd("XACK");
    cmd.arg(stream).arg(group).arg(ids);
    cmd
}

/// The acknowledgement of some entries: `XACK`, or with deleteOnAck `XACKDEL … KEEPREF` on
/// Redis 8.2+ and `XACK` + `XDEL` in one MULTI elsewhere (the same effect: the entries leave
/// the stream whatever other groups have read; their pending lists keep the ids).
struct AckQuery {
    pipe: redis::Pipeline,
    xackdel: bool,
}

impl AckQuery {
    fn new(
        stream: &str,
        group: &str,
        ids: &[StreamId],
        delete: bool,
        cmd: &CommandConn,
    ) -> AckQuery {
        let mut pipe = redis::pipe();
        let xackdel = delete && cmd.server_has_xtrim_acked();
        if xackdel {
            pipe.cmd("XACKDEL")
                .arg(stream)
                .arg(group)
                .arg("KEEPREF")
                .arg("IDS")
                .arg(ids.len())
                .arg(ids);
        } else if delete {
            pipe.atomic()
                .add_command(xack(stream, group, ids))
                .cmd("XDEL")
                .arg(stream)
                .arg(ids)
                .ignore();
        } else {
            pipe.add_command(xack(stream, group, ids));
        }
        AckQuery { pipe, xackdel }
    }

    /// How many entries the reply says were acknowledged.
    fn acked(&self, reply: &[Value]) -> u64 {
        match reply.first() {
            // XACKDEL: one code per id; -1 for an id the group did not have pending.
            Some(Value::Array(codes)) if self.xackdel => codes
                .iter()
                .filter(|c| !matches!(c, Value::Int(-1)))
                .count() as u64,
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        }
    }
}
