//! Broadcast subscriptions: one reader per client runs one XREAD over every subscribed
//! stream on a connection of its own, and hands each subscription its entries in order.
//!
//! Why one reader: a blocking XREAD occupies its connection until it returns, so it can
//! never share the command connection (it would stall every publish), and a connection per
//! subscription does not scale. The reader is woken with `CLIENT UNBLOCK` (sent on the
//! command connection) whenever the set of streams changes, so `subscribe`/`unsubscribe`
//! take effect in milliseconds even with a long BLOCK.
//!
//! Memory stays flat under a slow callback: each subscription holds at most one batch
//! queued and one running, and the reader leaves a busy subscription's stream out of its
//! next XREAD. Redis is the buffer, not our heap.
//!
//! Cluster mode (later) fits this shape: one `Hub` per node, each serving the streams of
//! that node's slots; [`Hub`] knows nothing about other nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::codec::{check_stream_name, parse_read_reply, parse_stream_info, StartId, StreamId};
use crate::config::Config;
use crate::connection::{unblock, CommandConn, Redial};
use crate::error::{classify, Error, Failure, Result};
use crate::handler::{Batch, Handler, Read};
use crate::lifecycle::Lifecycle;
use crate::status::{ConnState, Counters};

/// `Sub::seen` when the entry number of the cursor is not known.
const UNKNOWN: u64 = u64::MAX;

/// `reading_gen` value while the reader is not inside an XREAD.
const NOT_READING: u64 = u64::MAX;
/// Extra time past BLOCK before a silent read counts as a dead connection.
const WATCHDOG_GRACE: Duration = Duration::from_secs(2);

/// Options of one subscription.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeOptions {
    /// Where to start reading.
    pub start: StartId,
    /// BLOCK time; the config's default when `None`.
    pub block: Option<Duration>,
    /// COUNT per read; the config's default when `None`.
    pub count: Option<usize>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            start: StartId::Latest,
            block: None,
            count: None,
        }
    }
}

/// Identifies one subscription of a client.
pub type SubscriptionId = u64;

/// One subscription as `getStatus()` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Its id, unique within the client.
    pub id: SubscriptionId,
    /// The stream it reads.
    pub stream: String,
    /// The last id handed to it (or the id it starts after); `None` while `"$"` is not
    /// resolved yet.
    pub last_id: Option<StreamId>,
}

struct Sub {
    id: SubscriptionId,
    stream: Arc<str>,
    block: Duration,
    count: usize,
    /// Last id handed to this subscription; `None` until `"$"` is resolved.
    cursor: Mutex<Option<StreamId>>,
    tx: mpsc::Sender<Batch>,
    /// Set by the reader when it left this subscription out of a read because its queue was
    /// full; the delivery task then wakes the reader when there is room again.
    excluded: AtomicBool,
    token: CancellationToken,
    /// How many entries were ever added to the stream up to the cursor (its entry
    /// number), when known: with it, a trim that removed unread entries shows as
    /// `removed > seen`. Unknown ([`UNKNOWN`]) after an explicit start id.
    seen: AtomicU64,
    /// The `removed` count (or, without `seen`, the largest deleted id) already reported
    /// as a gap, so each gap is reported once.
    gap_reported: Mutex<(u64, StreamId)>,
}

impl Sub {
    fn cursor(&self) -> MutexGuard<'_, Option<StreamId>> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one XREAD will ask for.
struct Plan {
    gen: u64,
    keys: Vec<(Arc<str>, StreamId)>,
    members: HashSet<SubscriptionId>,
    unresolved: Vec<Arc<Sub>>,
    block: Duration,
    count: usize,
}

/// The subscriptions of one client and the reader that serves them.
pub struct Hub {
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    cmd: Arc<CommandConn>,
    subs: Mutex<BTreeMap<SubscriptionId, Arc<Sub>>>,
    next_id: AtomicU64,
    /// Bumped on every change the reader must see.
    gen: AtomicU64,
    /// The generation the reader's current XREAD was planned with, or [`NOT_READING`].
    reading_gen: AtomicU64,
    /// `CLIENT ID` of the reader's connection, or -1.
    reader_id: AtomicI64,
    changed: Notify,
    unblock: Notify,
    started: AtomicBool,
    reader_state: Arc<watch::Sender<ConnState>>,
}

impl Hub {
    /// A hub with no subscriptions; the reader starts with the first one.
    pub fn new(cfg: Arc<Config>, counters: Arc<Counters>, cmd: Arc<CommandConn>) -> Self {
        Hub {
            cfg,
            counters,
            cmd,
            subs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            gen: AtomicU64::new(0),
            reading_gen: AtomicU64::new(NOT_READING),
            reader_id: AtomicI64::new(-1),
            changed: Notify::new(),
            unblock: Notify::new(),
            started: AtomicBool::new(false),
            reader_state: Arc::new(watch::Sender::new(ConnState::Idle)),
        }
    }

    fn subs(&self) -> MutexGuard<'_, BTreeMap<SubscriptionId, Arc<Sub>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Streams with at least one subscription, sorted, each once.
    pub fn streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self.subs().values().map(|s| s.stream.to_string()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// State of the reader connection.
    pub fn reader_state(&self) -> ConnState {
        self.reader_state.borrow().clone()
    }

    /// Tells the reader that its plan is stale, interrupting a blocked XREAD.
    fn wake(&self) {
        self.gen.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        self.unblock.notify_one();
    }

    /// Registers a subscription and starts delivering to `handler`: the subscription exists
    /// (and `unsubscribe` reaches it) when this returns, before anything is awaited.
    ///
    /// The returned future resolves `"$"` to the stream's current last id; once it resolved,
    /// every entry added afterwards is delivered. When Redis is unavailable it resolves
    /// anyway, and the reader resolves `"$"` as soon as it connects.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name (at once) or, from the future, a key that
    /// is not a stream (the subscription is then removed again).
    pub fn start_subscribe(
        self: &Arc<Self>,
        life: &Lifecycle,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<(
        SubscriptionId,
        impl Future<Output = Result<()>> + Send + 'static,
    )> {
        check_stream_name(stream)?;
        let (cursor, seen) = match opts.start {
            StartId::After(StreamId::ZERO) => (Some(StreamId::ZERO), 0),
            StartId::After(id) => (Some(id), UNKNOWN),
            StartId::Latest => (None, UNKNOWN),
        };
        let (tx, rx) = mpsc::channel(1);
        let sub = Arc::new(Sub {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            stream: Arc::from(stream),
            block: opts.block.unwrap_or(self.cfg.default_block),
            count: opts.count.unwrap_or(self.cfg.default_count),
            cursor: Mutex::new(cursor),
            tx,
            excluded: AtomicBool::new(false),
            token: life.token.child_token(),
            seen: AtomicU64::new(seen),
            gap_reported: Mutex::new((0, StreamId::ZERO)),
        });
        self.subs().insert(sub.id, sub.clone());
        let id = sub.id;
        life.spawn(
            "subscription",
            deliver(self.clone(), sub.clone(), rx, handler),
        );
        if !self.started.swap(true, Ordering::SeqCst) {
            life.spawn("reader", self.clone().run_reader(life.token.clone()));
            life.spawn("reader-waker", self.clone().run_waker(life.token.clone()));
        }
        info!(
            stream,
            subscription = id,
            cursor = %cursor.map_or_else(|| "$".to_owned(), |c| c.to_string()),
            "subscribed"
        );
        let hub = self.clone();
        let resolve = async move {
            if sub.cursor().is_some() {
                hub.wake();
                return Ok(());
            }
            match hub.latest_via_command(&sub.stream).await {
                Err(e) => {
                    hub.remove(sub.id);
                    Err(e)
                }
                Ok(found) => {
                    match found {
                        Some((at, seen)) => {
                            let mut cursor = sub.cursor();
                            // The reader may have resolved it first, which is as good.
                            if cursor.is_none() {
                                *cursor = Some(at);
                                sub.seen.store(seen, Ordering::SeqCst);
                            }
                        }
                        None => warn!(
                            stream = %sub.stream,
                            "Redis unavailable; \"$\" will be resolved when the reader connects"
                        ),
                    }
                    hub.wake();
                    Ok(())
                }
            }
        };
        Ok((id, resolve))
    }

    /// Registers a subscription and waits until `"$"` is resolved; see
    /// [`Hub::start_subscribe`].
    ///
    /// # Errors
    /// As [`Hub::start_subscribe`].
    pub async fn subscribe(
        self: &Arc<Self>,
        life: &Lifecycle,
        stream: &str,
        handler: Arc<dyn Handler>,
        opts: SubscribeOptions,
    ) -> Result<SubscriptionId> {
        let (id, resolved) = self.start_subscribe(life, stream, handler, opts)?;
        resolved.await?;
        Ok(id)
    }

    /// Removes every subscription of `stream`; returns how many there were.
    ///
    /// No batch starts for them afterwards; one already running finishes.
    pub fn unsubscribe(&self, stream: &str) -> usize {
        let removed: Vec<Arc<Sub>> = {
            let mut subs = self.subs();
            let ids: Vec<SubscriptionId> = subs
                .values()
                .filter(|s| &*s.stream == stream)
                .map(|s| s.id)
                .collect();
            ids.iter().filter_map(|id| subs.remove(id)).collect()
        };
        for s in &removed {
            s.token.cancel();
        }
        if !removed.is_empty() {
            info!(stream, count = removed.len(), "unsubscribed");
            self.wake();
        }
        removed.len()
    }

    /// Removes one subscription; returns whether it existed. No batch starts for it
    /// afterwards; one already running finishes.
    pub fn unsubscribe_one(&self, id: SubscriptionId) -> bool {
        let removed = self.subs().remove(&id);
        match removed {
            Some(s) => {
                s.token.cancel();
                info!(stream = %s.stream, subscription = id, "unsubscribed");
                self.wake();
                true
            }
            None => false,
        }
    }

    fn remove(&self, id: SubscriptionId) {
        if let Some(s) = self.subs().remove(&id) {
            s.token.cancel();
            self.wake();
        }
    }

    /// Whether subscription `id` is still registered.
    pub fn contains(&self, id: SubscriptionId) -> bool {
        self.subs().contains_key(&id)
    }

    /// Every subscription with its stream and position, by id.
    pub fn details(&self) -> Vec<SubscriptionInfo> {
        self.subs()
            .values()
            .map(|s| SubscriptionInfo {
                id: s.id,
                stream: s.stream.to_string(),
                last_id: *s.cursor(),
            })
            .collect()
    }

    /// Interrupts the reader's XREAD now (used by `disconnect()`).
    pub async fn interrupt(&self) {
        unblock(
            &self.cmd,
            || self.reader_id.load(Ordering::SeqCst),
            || self.reading_gen.load(Ordering::SeqCst) != NOT_READING,
            None,
        )
        .await;
    }

    /// Resolves `"$"`: the stream's last generated id and its entry number, or `None`
    /// when Redis is unavailable.
    async fn latest_via_command(&self, stream: &str) -> Result<Option<(StreamId, u64)>> {
        let reply: Option<Vec<Value>> = self
            .cmd
            .query(&latest_pipe(stream))
            .await
            .map_err(|e| not_a_stream(stream, &e))?;
        reply.map(|v| latest_of(stream, &v)).transpose()
    }

    fn plan(&self) -> Option<Plan> {
        let gen = self.gen.load(Ordering::SeqCst);
        let subs = self.subs();
        let mut min: HashMap<Arc<str>, StreamId> = HashMap::new();
        let mut plan = Plan {
            gen,
            keys: Vec::new(),
            members: HashSet::new(),
            unresolved: Vec::new(),
            block: Duration::MAX,
            count: 1,
        };
        for sub in subs.values() {
            sub.excluded.store(true, Ordering::SeqCst);
            if sub.tx.capacity() == 0 {
                continue;
            }
            sub.excluded.store(false, Ordering::SeqCst);
            let Some(cursor) = *sub.cursor() else {
                plan.unresolved.push(sub.clone());
                continue;
            };
            plan.members.insert(sub.id);
            plan.block = plan.block.min(sub.block);
            plan.count = plan.count.max(sub.count);
            min.entry(sub.stream.clone())
                .and_modify(|c| *c = (*c).min(cursor))
                .or_insert(cursor);
        }
        if min.is_empty() && plan.unresolved.is_empty() {
            return None;
        }
        plan.keys = min.into_iter().collect();
        plan.keys.sort();
        Some(plan)
    }

    /// Hands each subscription the entries of `reply` after its position. Each stream's
    /// entries are wrapped once in a shared [`Read`]: every subscription gets a view of it,
    /// not a copy.
    fn dispatch(&self, plan: &Plan, reply: Vec<(String, Vec<crate::codec::Entry>)>) {
        let subs = self.subs();
        for (stream, entries) in reply {
            let Some(last) = entries.last().map(|e| e.id) else {
                continue;
            };
            debug!(stream = %stream, count = entries.len(), last = %last, "read");
            let read = Read::new(Arc::from(stream.as_str()), entries);
            for sub in subs.values() {
                if &*sub.stream != stream.as_str() || !plan.members.contains(&sub.id) {
                    continue;
                }
                let mut cursor = sub.cursor();
                let Some(from) = *cursor else { continue };
                let start = read.entries.partition_point(|e| e.id <= from);
                if start == read.entries.len() {
                    continue;
                }
                let batch = Batch::shared(read.clone(), start);
                let n = batch.len();
                match sub.tx.try_send(batch) {
                    Ok(()) => {
                        *cursor = Some(last);
                        let seen = sub.seen.load(Ordering::SeqCst);
                        if seen != UNKNOWN {
                            sub.seen.store(seen + n as u64, Ordering::SeqCst);
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // Only the reader sends, and it planned with room: not reachable,
                        // but if it were, the cursor stays and the entries are read again.
                        warn!(stream = %stream, count = n, "subscription queue full; will re-read");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
    }

    async fn resolve(
        &self,
        conn: &mut MultiplexedConnection,
        unresolved: &[Arc<Sub>],
    ) -> Result<()> {
        for sub in unresolved {
            let v: Vec<Value> = tokio::time::timeout(
                self.cfg.command_timeout,
                latest_pipe(&sub.stream).query_async(conn),
            )
            .await
            .map_err(|_| Error::Timeout(self.cfg.command_timeout.as_millis() as u64))?
            .map_err(Error::Unavailable)?;
            let (id, seen) = latest_of(&sub.stream, &v)?;
            let mut cursor = sub.cursor();
            if cursor.is_none() {
                *cursor = Some(id);
                sub.seen.store(seen, Ordering::SeqCst);
                info!(stream = %sub.stream, cursor = %id, "resolved \"$\"");
            }
        }
        Ok(())
    }

    /// Compares every subscription's position with `XINFO STREAM` of its stream: reports
    /// gaps (entries after the position were trimmed or deleted before they were read) and
    /// restarts from `0-0` a subscription whose stream was deleted or recreated (its ids
    /// went back below the position, so it would otherwise never see a new entry).
    async fn check_positions(&self, conn: &mut MultiplexedConnection, plan: &Plan) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (stream, _) in &plan.keys {
            pipe.cmd("XINFO").arg("STREAM").arg(&**stream);
        }
        let replies: Vec<Value> =
            tokio::time::timeout(self.cfg.command_timeout, pipe.query_async(conn))
                .await
                .map_err(|_| Error::Timeout(self.cfg.command_timeout.as_millis() as u64))?
                .map_err(Error::Unavailable)?;
        let subs = self.subs();
        for ((stream, _), reply) in plan.keys.iter().zip(replies) {
            let info = match &reply {
                Value::ServerError(_) => None,
                v => Some(parse_stream_info(v)?),
            };
            for sub in subs.values().filter(|s| s.stream == *stream) {
                let mut cursor = sub.cursor();
                let Some(at) = *cursor else { continue };
                match info {
                    None if at != StreamId::ZERO => {
                        warn!(stream = %stream, cursor = %at, "subscribed stream no longer exists; reading it from the start once it is created again");
                        Counters::add(&self.counters.stream_resets, 1);
                        *cursor = Some(StreamId::ZERO);
                        sub.seen.store(0, Ordering::SeqCst);
                    }
                    None => {}
                    Some(i) if i.last_generated < at => {
                        warn!(stream = %stream, cursor = %at, last_generated = %i.last_generated, "subscribed stream was recreated (its ids went back); reading it from the start");
                        Counters::add(&self.counters.stream_resets, 1);
                        *cursor = Some(StreamId::ZERO);
                        sub.seen.store(0, Ordering::SeqCst);
                    }
                    Some(i) => {
                        let seen = sub.seen.load(Ordering::SeqCst);
                        let mut reported =
                            sub.gap_reported.lock().unwrap_or_else(|p| p.into_inner());
                        // Known entry number: more entries removed than existed up to the
                        // cursor means unread ones went. Unknown: only deletions (XDEL)
                        // past the cursor can be seen.
                        let missed = if seen != UNKNOWN {
                            (i.removed() > seen.max(reported.0)).then(|| {
                                reported.0 = i.removed();
                                (i.removed() - seen).to_string()
                            })
                        } else {
                            (i.max_deleted > at && i.max_deleted > reported.1).then(|| {
                                reported.1 = i.max_deleted;
                                "unknown".to_owned()
                            })
                        };
                        if let Some(missed) = missed {
                            warn!(
                                stream = %stream,
                                cursor = %at,
                                missed = %missed,
                                first_entry = %i.first_entry.map_or_else(|| "none".to_owned(), |f| f.to_string()),
                                max_deleted = %i.max_deleted,
                                "gap: entries after the last delivered id were trimmed or deleted before they could be read"
                            );
                            Counters::add(&self.counters.gaps, 1);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The reader loop: plan, read, dispatch; reconnects with back-off and resumes every
    /// subscription from its last id.
    async fn run_reader(self: Arc<Self>, token: CancellationToken) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut check_positions = false;
        let mut connected_before = false;
        let mut redial = Redial::new(
            self.cfg.clone(),
            self.counters.clone(),
            self.reader_state.clone(),
            "reader",
        );
        loop {
            if token.is_cancelled() {
                break;
            }
            let Some(plan) = self.plan() else {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = self.changed.notified() => continue,
                }
            };
            let Some(c) = conn.as_mut() else {
                self.reader_id.store(-1, Ordering::SeqCst);
                if let Some(b) = redial.connect(self.cmd.client(), &token).await {
                    self.reader_id.store(b.id, Ordering::SeqCst);
                    conn = Some(b.conn);
                    // Whatever happened while we were away (trims, a deleted stream)
                    // shows in the positions: check them before reading.
                    check_positions = connected_before;
                    connected_before = true;
                }
                continue;
            };
            if check_positions && !plan.keys.is_empty() {
                check_positions = false;
                if let Err(e) = self.check_positions(c, &plan).await {
                    warn!(error = %e, "cannot check subscription positions; reconnecting the reader");
                    conn = None;
                }
                continue;
            }
            if !plan.unresolved.is_empty() {
                if let Err(e) = self.resolve(c, &plan.unresolved).await {
                    warn!(error = %e, "cannot resolve \"$\"; reconnecting the reader");
                    conn = None;
                }
                continue;
            }
            if plan.keys.is_empty() {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = self.changed.notified() => continue,
                }
            }
            let cmd = xread_cmd(&plan);
            self.reading_gen.store(plan.gen, Ordering::SeqCst);
            // A change that landed between planning and this store found the reader "not
            // reading", so nobody will unblock this read: plan again instead.
            if self.gen.load(Ordering::SeqCst) != plan.gen {
                self.reading_gen.store(NOT_READING, Ordering::SeqCst);
                continue;
            }
            let watchdog = plan.block + self.cfg.command_timeout + WATCHDOG_GRACE;
            let outcome = tokio::select! {
                biased;
                _ = token.cancelled() => break,
                r = tokio::time::timeout(watchdog, cmd.query_async::<Value>(c)) => r,
            };
            self.reading_gen.store(NOT_READING, Ordering::SeqCst);
            match outcome {
                Err(_) => {
                    warn!(
                        watchdog_ms = watchdog.as_millis() as u64,
                        "blocked read outlived its BLOCK time; presuming the connection dead"
                    );
                    conn = None;
                }
                Ok(Err(e)) => match classify(&e) {
                    Failure::Connection => {
                        warn!(error = %e, "reader connection lost; reconnecting");
                        self.cmd.probe_soon();
                        conn = None;
                    }
                    _ => {
                        let delay = redial.next_delay();
                        error!(
                            error = %e,
                            streams = ?plan.keys.iter().map(|k| k.0.to_string()).collect::<Vec<_>>(),
                            retry_in_ms = delay.as_millis() as u64,
                            "Redis refused the subscription read; retrying"
                        );
                        tokio::select! {
                            _ = token.cancelled() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                },
                Ok(Ok(v)) => match parse_read_reply(&v) {
                    // A whole BLOCK without news: cheap moment to check that no stream was
                    // deleted or recreated under us (ids lower than our position would
                    // otherwise never be read).
                    Ok(reply) if reply.is_empty() => check_positions = true,
                    Ok(reply) => self.dispatch(&plan, reply),
                    Err(e) => error!(error = %e, "cannot parse an XREAD reply; re-reading"),
                },
            }
        }
        self.reader_id.store(-1, Ordering::SeqCst);
        self.reader_state.send_replace(ConnState::Closed);
    }

    /// Sends `CLIENT UNBLOCK` to the reader whenever its running XREAD is stale.
    async fn run_waker(self: Arc<Self>, token: CancellationToken) {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = self.unblock.notified() => {}
            }
            unblock(
                &self.cmd,
                || self.reader_id.load(Ordering::SeqCst),
                || {
                    let reading = self.reading_gen.load(Ordering::SeqCst);
                    reading != NOT_READING && reading < self.gen.load(Ordering::SeqCst)
                },
                Some(&token),
            )
            .await;
        }
    }
}

/// Hands batches to the handler, in order, until the subscription ends: up to
/// [`Handler::max_in_flight`] at a time, so a handler that queues them on its side gets
/// the next batch without waiting for the previous one's result to come back.
async fn deliver(
    hub: Arc<Hub>,
    sub: Arc<Sub>,
    mut rx: mpsc::Receiver<Batch>,
    handler: Arc<dyn Handler>,
) {
    let limit = handler.max_in_flight().max(1);
    let mut running = FuturesOrdered::new();
    let mut open = true;
    while open || !running.is_empty() {
        let result = tokio::select! {
            biased;
            // Stopping takes no new batch; the running ones finish (the JavaScript side
            // skips what it had not started).
            _ = sub.token.cancelled(), if open => {
                open = false;
                continue;
            }
            Some(r) = running.next(), if !running.is_empty() => r,
            b = rx.recv(), if open && running.len() < limit => {
                match b {
                    Some(b) => {
                        if sub.excluded.swap(false, Ordering::SeqCst) {
                            hub.wake();
                        }
                        running.push_back(handler.handle(b));
                    }
                    None => open = false,
                }
                continue;
            }
        };
        match result {
            Ok(outcome) => {
                Counters::add(&hub.counters.delivered, outcome.handled as u64);
                for f in &outcome.failures {
                    warn!(stream = %sub.stream, id = %f.id, error = %f.error, "subscription callback failed; delivery goes on");
                }
                Counters::add(&hub.counters.callback_errors, outcome.failures.len() as u64);
            }
            Err(gone) => {
                warn!(stream = %sub.stream, error = %gone, "subscription callback is gone; removing the subscription");
                hub.remove(sub.id);
                break;
            }
        }
    }
}

/// `EXISTS` + `XINFO STREAM`: where a stream is, or that it does not exist.
fn latest_pipe(stream: &str) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("EXISTS").arg(stream);
    pipe.cmd("XINFO").arg("STREAM").arg(stream);
    pipe
}

/// The position `"$"` stands for: the last generated id (reading after it sees every
/// later entry) and the number of entries ever added up to it; `0-0`/0 for a missing key.
fn latest_of(stream: &str, replies: &[Value]) -> Result<(StreamId, u64)> {
    match replies {
        [Value::Int(0), _] => Ok((StreamId::ZERO, 0)),
        [_, Value::ServerError(e)] if e.code() == "WRONGTYPE" => Err(Error::invalid(
            "stream",
            format!("key {stream:?} holds a value that is not a stream"),
        )),
        // Deleted between the two commands: a new stream starts from the beginning.
        [_, Value::ServerError(_)] => Ok((StreamId::ZERO, 0)),
        [_, info] => {
            let i = parse_stream_info(info)?;
            Ok((i.last_generated, i.entries_added))
        }
        other => Err(Error::Protocol(format!(
            "EXISTS + XINFO STREAM replied {other:?}"
        ))),
    }
}

fn not_a_stream(stream: &str, e: &redis::RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") {
        Error::invalid(
            "stream",
            format!("key {stream:?} holds a value that is not a stream"),
        )
    } else {
        Error::Protocol(e.to_string())
    }
}

fn xread_cmd(plan: &Plan) -> redis::Cmd {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(plan.count)
        .arg("BLOCK")
        .arg(plan.block.as_millis() as u64)
        .arg("STREAMS");
    for (k, _) in &plan.keys {
        cmd.arg(&**k);
    }
    for (_, id) in &plan.keys {
        cmd.arg(id.to_string());
    }
    cmd
}
