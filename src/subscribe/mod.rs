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
//! queued in Rust and [`Handler::max_in_flight`] handed to its handler, and the reader
//! leaves a busy subscription's stream out of its next XREAD. Redis is the buffer, not our
//! heap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use redis::Value;
use std::panic::AssertUnwindSafe;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::codec::{
    check_stream_name, parse_read_reply, parse_stream_info, StartId, StreamId, StreamInfo,
};
use crate::config::Config;
use crate::connection::{
    key_slot, BlockingReader, CommandConn, NodeAddr, Placement, ReadError, Target, UnblockHandle,
    Unblocker,
};
use crate::error::{classify, Error, Failure, Result};
use crate::handler::{Batch, Handler, Read};
use crate::lifecycle::Lifecycle;
use crate::status::{ConnState, Counters};

mod ends;
mod options;
mod positions;
mod registry;

use ends::StreamEnd;
use registry::Sub;

pub use options::{SubscribeInput, SubscribeOptions};

use positions::{
    verdict, GapReported, Position, Reset, Suspects, Verdict, IDLE_CHECKS_PER_BLOCK,
    SUSPECT_CHECKS_PER_BLOCK,
};

/// In a cluster, the blocking part of a read in turn lasts this long per ten slots that one
/// node reader reads (capped by BLOCK): a message on another slot of the node waits about
/// that long, and an idle node reader sends a bounded number of commands per second however
/// many slots it reads.
const IN_TURN_SLICE: Duration = Duration::from_millis(100);

/// Pause before asking for a cluster's slot map again when no master is known.
const SLOT_MAP_RETRY: Duration = Duration::from_millis(200);

/// Identifies one subscription of a client.
pub type SubscriptionId = u64;

/// The `run_id` in an `INFO server` reply: it differs on another server, and after a restart.
fn run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|v| v.trim().to_owned())
}

/// What one XREAD will ask for.
struct Plan {
    generation: u64,
    keys: Vec<(Arc<str>, StreamId)>,
    members: HashSet<SubscriptionId>,
    unresolved: Vec<Arc<Sub>>,
    block: Duration,
    count: usize,
}

/// What the reader has to check before its next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing.
    None,
    /// Every stream: the reader just reconnected, anything may have happened meanwhile.
    All,
    /// A few streams, round-robin: a BLOCK passed without news.
    Some,
}

/// The reader's memory between steps.
struct ReaderState {
    check: Check,
    connected_before: bool,
    /// Where the round-robin of idle checks goes on.
    idle_from: usize,
    /// Whose turn it is among the slots a cluster node reader reads.
    turn: usize,
    /// Subscriptions changed.
    changed: watch::Receiver<u64>,
    /// The cluster master this reader reads (`None`: the one reader).
    node: Option<NodeAddr>,
    /// `run_id` of the server this reader last read from.
    server: Option<String>,
    /// Streams whose server changed (a failover, a restart) since their positions were last
    /// checked: one whose ids went back was rolled back by it, not recreated. A stream stays
    /// here until a check could read it (the first one after a failover may meet
    /// CLUSTERDOWN or TRYAGAIN), so a rollback found later is still reported as a gap.
    switched: HashSet<Arc<str>>,
}

/// What the reader does after a step.
enum Flow {
    /// Plan and go on.
    Next,
    /// The client is closing.
    Stop,
    /// The step failed: react (reconnect, wait) and go on.
    Failed(Plan, ReadError),
}

/// The subscriptions of one client and the reader that serves them.
pub struct Hub {
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    cmd: Arc<CommandConn>,
    subs: Mutex<BTreeMap<SubscriptionId, Arc<Sub>>>,
    next_id: AtomicU64,
    /// Bumped on every change the reader must see.
    generation: AtomicU64,
    /// Wakes readers (and the cluster supervisor) that wait for subscriptions.
    changed: watch::Sender<u64>,
    unblock: Notify,
    /// The readers, by node (`None`: the one reader of a server or Sentinel primary).
    readers: Mutex<BTreeMap<Option<NodeAddr>, ReaderHandle>>,
    /// Readers are started with the first subscription.
    started: AtomicBool,
    /// Streams to check first when a BLOCK passes without news.
    suspects: Mutex<Suspects>,
    /// Where each subscribed stream ends, as far as the client knows.
    ends: Mutex<HashMap<Arc<str>, StreamEnd>>,
}

/// What the hub keeps of a running reader.
struct ReaderHandle {
    slot: Arc<UnblockHandle>,
    state: Arc<watch::Sender<ConnState>>,
    /// Stops this reader alone (its node is no master any more).
    token: CancellationToken,
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
            generation: AtomicU64::new(0),
            changed: watch::Sender::new(0),
            unblock: Notify::new(),
            readers: Mutex::new(BTreeMap::new()),
            started: AtomicBool::new(false),
            suspects: Mutex::new(Suspects::default()),
            ends: Mutex::new(HashMap::new()),
        }
    }

    /// Streams with at least one subscription, sorted, each once.
    pub fn streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self.subs().values().map(|s| s.stream.to_string()).collect();
        v.sort();
        v.dedup();
        v
    }

    fn suspects(&self) -> MutexGuard<'_, Suspects> {
        self.suspects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn readers(&self) -> MutexGuard<'_, BTreeMap<Option<NodeAddr>, ReaderHandle>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// State of the reader connections: the worst of them (in a cluster, one per master).
    pub fn reader_state(&self) -> ConnState {
        let readers = self.readers();
        let rank = |s: &ConnState| match s {
            ConnState::Reconnecting { .. } => 0,
            ConnState::Connecting => 1,
            ConnState::Closing | ConnState::Closed => 2,
            ConnState::Idle => 3,
            ConnState::Connected => 4,
        };
        readers
            .values()
            .map(|r| r.state.borrow().clone())
            .min_by_key(rank)
            .unwrap_or(ConnState::Idle)
    }

    /// Each reader's node (`None` outside a cluster) and state.
    pub fn reader_states(&self) -> Vec<(Option<NodeAddr>, ConnState)> {
        self.readers()
            .iter()
            .map(|(n, r)| (n.clone(), r.state.borrow().clone()))
            .collect()
    }

    /// Tells the readers that their plans are stale, interrupting blocked XREADs.
    fn wake(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
        self.unblock.notify_one();
    }

    /// Starts a reader for `node` (`None`: the primary) unless one runs.
    fn start_reader(self: &Arc<Self>, life: &Lifecycle, node: Option<NodeAddr>) {
        let mut readers = self.readers();
        if readers.contains_key(&node) {
            return;
        }
        let placement = match &node {
            Some(addr) => Placement::Node(addr.clone()),
            None => Placement::Primary,
        };
        let reader = BlockingReader::new("reader", &self.cmd, placement);
        let token = life.token.child_token();
        readers.insert(
            node.clone(),
            ReaderHandle {
                slot: reader.slot(),
                state: reader.state(),
                token: token.clone(),
            },
        );
        drop(readers);
        if let Some(addr) = &node {
            info!(node = %addr, "subscription reader started for a cluster master");
        }
        life.spawn("reader", self.clone().run_reader(reader, node, token));
    }

    /// In a cluster: one reader per master, started and stopped as the slot map changes.
    async fn supervise(self: Arc<Self>, life: Lifecycle) {
        let mut topology = self.cmd.topology();
        let Target::Cluster(cluster) = &**self.cmd.target() else {
            return;
        };
        loop {
            if cluster.masters().is_empty() {
                self.cmd.refresh_slots().await;
            }
            let masters = cluster.masters();
            for m in &masters {
                self.start_reader(&life, Some(m.clone()));
            }
            let gone: Vec<ReaderHandle> = {
                let mut readers = self.readers();
                let stale: Vec<Option<NodeAddr>> = readers
                    .keys()
                    .filter(|k| k.as_ref().is_some_and(|a| !masters.contains(a)))
                    .cloned()
                    .collect();
                stale.iter().filter_map(|k| readers.remove(k)).collect()
            };
            for r in gone {
                r.token.cancel();
                Unblocker {
                    cmd: &self.cmd,
                    slot: &r.slot,
                }
                .unblock(|_| true, None)
                .await;
            }
            // Every reader re-plans against the new map.
            self.wake();
            topology.borrow_and_update();
            tokio::select! {
                _ = life.token.cancelled() => return,
                r = topology.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(SLOT_MAP_RETRY), if masters.is_empty() => {}
            }
        }
    }

    /// Registers a subscription and starts delivering to `handler`: the subscription exists
    /// (and `unsubscribe` reaches it) when this returns, before anything is awaited.
    ///
    /// The returned future resolves `"$"` to the stream's current last id; once it resolved,
    /// every entry added afterwards is delivered. When Redis is unavailable it resolves
    /// anyway, and the reader resolves `"$"` as soon as it connects.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] for a bad stream name (at once); from the future,
    /// [`Error::Refused`] when the server refuses the `"$"` lookup (`NOPERM`, a key that is
    /// not a stream: the subscription is then removed again).
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
        let position = match opts.start {
            StartId::After(id) => Position {
                cursor: Some(id),
                seen: (id == StreamId::ZERO).then_some(0),
                caller_given: true,
            },
            StartId::Latest => Position::default(),
        };
        let (tx, rx) = mpsc::channel(1);
        let sub = Arc::new(Sub {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            stream: Arc::from(stream),
            block: opts.block.unwrap_or(self.cfg.default_block),
            count: opts.count.unwrap_or(self.cfg.default_count),
            position: Mutex::new(position),
            tx,
            excluded: AtomicBool::new(false),
            skipped: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            token: life.token.child_token(),
            gap_reported: Mutex::new(GapReported::default()),
        });
        self.subs().insert(sub.id, sub.clone());
        let id = sub.id;
        life.spawn(
            "subscription",
            deliver(self.clone(), sub.clone(), rx, handler),
        );
        if !self.started.swap(true, Ordering::SeqCst) {
            if self.cmd.target().is_cluster() {
                life.spawn("reader-supervisor", self.clone().supervise(life.clone()));
            } else {
                self.start_reader(life, None);
            }
            life.spawn("reader-waker", self.clone().run_waker(life.token.clone()));
        }
        info!(
            stream,
            subscription = id,
            cursor = %position.cursor.map_or_else(|| "$".to_owned(), |c| c.to_string()),
            "subscribed"
        );
        let hub = self.clone();
        let resolve = async move {
            if sub.position().cursor.is_some() {
                hub.wake();
                return Ok(());
            }
            match hub.latest_via_command(&sub.stream).await {
                Err(e) => {
                    hub.unsubscribe_one(sub.id);
                    Err(e)
                }
                Ok(found) => {
                    match found {
                        Some((at, seen)) => {
                            // Checked under the subscriptions' lock (taken before the ends',
                            // as everywhere): an unsubscribe that came first forgot the
                            // stream's end, and recording it now would leave it stale.
                            let subs = hub.subs();
                            if subs.contains_key(&sub.id) {
                                sub.resolve(at, seen);
                                hub.saw_end(&sub.stream, at, Some(seen));
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
            self.forget_if_unsubscribed(stream);
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
                self.forget_if_unsubscribed(&s.stream);
                self.wake();
                true
            }
            None => false,
        }
    }

    /// Whether subscription `id` is still registered.
    pub fn contains(&self, id: SubscriptionId) -> bool {
        self.subs().contains_key(&id)
    }

    /// Interrupts the readers' XREADs now (used by `disconnect()`).
    pub async fn interrupt(&self) {
        let slots: Vec<Arc<UnblockHandle>> =
            self.readers().values().map(|r| r.slot.clone()).collect();
        for slot in &slots {
            Unblocker {
                cmd: &self.cmd,
                slot,
            }
            .unblock(|_| true, None)
            .await;
        }
    }

    /// Resolves `"$"`: the stream's last generated id and its entry number, or `None`
    /// when Redis is unavailable.
    async fn latest_via_command(&self, stream: &str) -> Result<Option<(StreamId, u64)>> {
        let reply: Option<Vec<Value>> =
            self.cmd
                .query(&latest_pipe(stream))
                .await
                .map_err(|e| match classify(&e) {
                    Failure::WrongType | Failure::Refused => Error::refused(&e),
                    _ => Error::Protocol(e.to_string()),
                })?;
        match reply.map(|v| latest_of(&v)) {
            // No node could answer for the stream now: as unavailable.
            None | Some(Err(Error::Unavailable(_))) => Ok(None),
            Some(r) => r.map(Some),
        }
    }

    /// Whether `node`'s reader reads `stream` (outside a cluster, the one reader reads all).
    fn owns(&self, node: Option<&NodeAddr>, stream: &str) -> bool {
        match (node, &**self.cmd.target()) {
            (Some(addr), Target::Cluster(c)) => c.owner(stream).as_ref() == Some(addr),
            _ => true,
        }
    }

    /// Every stream with a resolved subscription that the reader of `node` reads, each once.
    fn owned_streams(&self, node: Option<&NodeAddr>) -> Vec<Arc<str>> {
        let subs = self.subs();
        let mut streams: Vec<Arc<str>> = subs
            .values()
            .filter(|s| self.owns(node, &s.stream) && s.position().cursor.is_some())
            .map(|s| s.stream.clone())
            .collect();
        streams.sort();
        streams.dedup();
        streams
    }

    fn plan(&self, node: Option<&NodeAddr>) -> Option<Plan> {
        let generation = self.generation.load(Ordering::SeqCst);
        let subs = self.subs();
        let mut min: HashMap<Arc<str>, StreamId> = HashMap::new();
        let mut readmitted = Vec::new();
        let mut plan = Plan {
            generation,
            keys: Vec::new(),
            members: HashSet::new(),
            unresolved: Vec::new(),
            block: Duration::MAX,
            count: 1,
        };
        for sub in subs.values() {
            if !self.owns(node, &sub.stream) {
                continue;
            }
            sub.excluded.store(true, Ordering::SeqCst);
            if sub.tx.capacity() == 0 {
                sub.skipped.store(true, Ordering::Relaxed);
                continue;
            }
            sub.excluded.store(false, Ordering::SeqCst);
            if sub.skipped.swap(false, Ordering::Relaxed) {
                readmitted.push(sub.stream.clone());
            }
            let Some(cursor) = sub.position().cursor else {
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
        drop(subs);
        if !readmitted.is_empty() {
            let mut suspects = self.suspects();
            for stream in &readmitted {
                suspects.push(stream);
            }
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
        let mut active = Vec::with_capacity(reply.len());
        for (stream, entries) in reply {
            let Some(last) = entries.last().map(|e| e.id) else {
                continue;
            };
            debug!(stream = %stream, count = entries.len(), last = %last, "read");
            let read = Read::new(Arc::from(stream.as_str()), entries);
            active.push(read.stream.clone());
            // A subscription whose entry number is known tells how many entries the stream
            // had up to `last`, at least.
            let mut end_count: Option<u64> = None;
            for sub in subs.values() {
                if &*sub.stream != stream.as_str() || !plan.members.contains(&sub.id) {
                    continue;
                }
                let mut position = sub.position();
                let Some(from) = position.cursor else {
                    continue;
                };
                let start = read.entries.partition_point(|e| e.id <= from);
                if start == read.entries.len() {
                    continue;
                }
                let batch = Batch::shared(read.clone(), start);
                let n = batch.len();
                match sub.tx.try_send(batch) {
                    Ok(()) => {
                        sub.queued.fetch_add(n as u64, Ordering::Relaxed);
                        position.cursor = Some(last);
                        position.caller_given = false;
                        if let Some(seen) = position.seen.as_mut() {
                            *seen += n as u64;
                            end_count = end_count.max(Some(*seen));
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
            self.saw_end(&read.stream, last, end_count);
        }
        drop(subs);
        let mut suspects = self.suspects();
        for stream in &active {
            suspects.push(stream);
        }
    }

    async fn resolve(
        &self,
        reader: &mut BlockingReader,
        unresolved: &[Arc<Sub>],
    ) -> std::result::Result<(), ReadError> {
        for sub in unresolved {
            let v: Vec<Value> = reader.command(&latest_pipe(&sub.stream)).await?;
            match latest_of(&v) {
                Ok((at, seen)) => {
                    self.saw_end(&sub.stream, at, Some(seen));
                    if sub.resolve(at, seen) {
                        info!(stream = %sub.stream, cursor = %at, "resolved \"$\"");
                    }
                }
                // The node cannot answer for the stream now (MOVED, ASK, a failover): the
                // reader reacts as to a failed read, and "$" is resolved again after.
                Err(Error::Unavailable(e)) => return Err(ReadError::Redis(e)),
                Err(e) => {
                    warn!(stream = %sub.stream, error = %e, "cannot resolve \"$\"; ending the subscription");
                    self.unsubscribe_one(sub.id);
                }
            }
        }
        Ok(())
    }

    /// Compares the position of every subscription of `streams` with `XINFO STREAM`:
    /// reports gaps (entries after the position were trimmed or deleted before they were
    /// read) and restarts from `0-0` a subscription whose stream was deleted or recreated
    /// (its ids went back below the position, so it would otherwise never see a new entry).
    ///
    /// After the stream's server changed (it is in `switched`: a failover), ids that went
    /// back mean the new server lost the stream's last entries (replication is
    /// asynchronous): those up to the position were delivered, and any the old server took
    /// after them are lost. That is reported as a gap, and the subscription goes on from the
    /// new server's last id: reading from `0-0` would deliver everything again. A stream
    /// leaves `switched` once checked; one that could not be checked stays there and is
    /// queued as a suspect, so an idle check looks at it again soon.
    async fn check_positions(
        &self,
        reader: &mut BlockingReader,
        streams: &[Arc<str>],
        switched: &mut HashSet<Arc<str>>,
    ) -> std::result::Result<(), ReadError> {
        if streams.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for stream in streams {
            pipe.cmd("XINFO").arg("STREAM").arg(&**stream);
        }
        let replies: Vec<Value> = reader.command(&pipe).await?;
        let subs = self.subs();
        for (stream, reply) in streams.iter().zip(replies) {
            let info = match &reply {
                Value::ServerError(e) => match classify(&redis::RedisError::from(e.clone())) {
                    // The one answer that means the stream is gone.
                    Failure::NoSuchKey => None,
                    // MOVED/ASK (its slot moved or is moving), TRYAGAIN/CLUSTERDOWN
                    // (resharding, a failover), anything else: nothing is known about the
                    // stream now. Its position stays; the read meets the same answer and
                    // finds the node, and the next check looks again.
                    _ => {
                        warn!(stream = %stream, error = %e, "cannot check the subscription's position now (its slot moves, or the cluster fails over); checking again later");
                        self.suspects().push(stream);
                        continue;
                    }
                },
                v => match parse_stream_info(v) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        warn!(stream = %stream, error = %e, "cannot read XINFO STREAM; position not checked");
                        self.suspects().push(stream);
                        continue;
                    }
                },
            };
            let rolled_back_by_switch = switched.remove(stream);
            if let Some(i) = &info {
                self.saw_end(stream, i.last_generated, Some(i.entries_added));
            }
            for sub in subs.values().filter(|s| s.stream == *stream) {
                let mut position = sub.position();
                let mut reported = sub.gap_reported.lock().unwrap_or_else(|p| p.into_inner());
                let v = verdict(*position, info.as_ref(), rolled_back_by_switch, *reported);
                self.report(stream, *position, info.as_ref(), v);
                *position = v.apply(*position);
                if let Verdict::Gap { reported: r, .. } = v {
                    *reported = r;
                }
            }
        }
        Ok(())
    }

    /// Logs and counts what a position check found.
    fn report(&self, stream: &str, was: Position, info: Option<&StreamInfo>, v: Verdict) {
        let at = was.cursor.unwrap_or_default();
        let last_generated = info.map(|i| i.last_generated).unwrap_or_default();
        match v {
            Verdict::Keep | Verdict::Recount(_) => return,
            Verdict::Gap { missed, .. } => {
                let first_entry = info.and_then(|i| i.first_entry);
                warn!(
                    stream,
                    cursor = %at,
                    missed = %missed.map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
                    first_entry = %first_entry.map_or_else(|| "none".to_owned(), |f| f.to_string()),
                    max_deleted = %info.map(|i| i.max_deleted).unwrap_or_default(),
                    "gap: entries after the last delivered id were trimmed or deleted before they could be read"
                );
                Counters::add(&self.counters.gaps, 1);
                return;
            }
            Verdict::ResetToZero(Reset::Deleted) => {
                warn!(stream, cursor = %at, "subscribed stream no longer exists; reading it from the start once it is created again");
            }
            Verdict::ResetToZero(Reset::Recreated) => {
                warn!(stream, cursor = %at, %last_generated, "subscribed stream was recreated (its ids went back); reading it from the start");
            }
            Verdict::ResumeAt { lost: true, .. } => {
                warn!(
                    stream,
                    cursor = %last_generated,
                    delivered_up_to = %at,
                    "gap: the stream went back in a failover; entries after the cursor that the old server took are lost (those up to delivered_up_to were delivered); reading on from the cursor"
                );
                Counters::add(&self.counters.gaps, 1);
            }
            Verdict::ResumeAt { lost: false, .. } => {
                warn!(stream, cursor = %at, %last_generated, "subscribed stream lost its newest entries (a failover to a replica that had not received them); they were delivered, resuming after its new last id");
            }
        }
        Counters::add(&self.counters.stream_resets, 1);
    }

    /// The reader loop: plan, read, dispatch; reconnects with back-off and resumes every
    /// subscription from its last id. A step that panics is logged and the reader goes on
    /// with a fresh connection: the subscriptions must not go quiet with it. In a cluster
    /// there is one per master (`node`), reading the streams whose slots it owns.
    async fn run_reader(
        self: Arc<Self>,
        mut reader: BlockingReader,
        node: Option<NodeAddr>,
        token: CancellationToken,
    ) {
        let mut state = ReaderState {
            check: Check::None,
            connected_before: false,
            idle_from: 0,
            turn: 0,
            changed: self.changed.subscribe(),
            node,
            server: None,
            switched: HashSet::new(),
        };
        while !token.is_cancelled() {
            let flow = AssertUnwindSafe(self.step(&mut reader, &mut state, &token))
                .catch_unwind()
                .await;
            let stop = match flow {
                Ok(Flow::Next) => false,
                Ok(Flow::Stop) => true,
                Ok(Flow::Failed(plan, e)) => {
                    self.after_failure(&mut reader, &plan, e, &token).await
                }
                Err(panic) => {
                    error!(error = %crate::lifecycle::panic_message(&*panic), "the subscription reader panicked; reconnecting and going on");
                    reader.disconnect();
                    let delay = reader.next_delay();
                    tokio::select! {
                        _ = token.cancelled() => true,
                        _ = tokio::time::sleep(delay) => false,
                    }
                }
            };
            if stop {
                break;
            }
        }
        reader.close();
        if let Some(addr) = &state.node {
            let mut readers = self.readers();
            if readers
                .get(&state.node)
                .is_some_and(|r| r.token.is_cancelled())
            {
                readers.remove(&state.node);
            }
            info!(node = %addr, "subscription reader stopped (its node owns no slots any more)");
        }
    }

    /// One step of the reader: wait for subscriptions, connect, check positions, resolve
    /// `"$"`, or read.
    async fn step(
        &self,
        reader: &mut BlockingReader,
        st: &mut ReaderState,
        token: &CancellationToken,
    ) -> Flow {
        st.changed.borrow_and_update();
        let Some(plan) = self.plan(st.node.as_ref()) else {
            return tokio::select! {
                _ = token.cancelled() => Flow::Stop,
                _ = st.changed.changed() => Flow::Next,
            };
        };
        match reader.connect(token).await {
            None => {
                // In a cluster, a node that refuses connections may have failed over: the
                // slot map names its successor once the cluster promoted one, and the
                // supervisor then replaces this reader.
                if !token.is_cancelled() {
                    self.cmd.refresh_slots().await;
                }
                return Flow::Next;
            }
            Some(true) => {
                let mut info = redis::cmd("INFO");
                info.arg("server");
                let server = match reader.command::<String>(&info).await {
                    Ok(info) => run_id(&info),
                    Err(e) => return Flow::Failed(plan, e),
                };
                // Whatever happened while we were away (trims, a deleted stream, a
                // failover) shows in the positions: check them all before reading. A new
                // cluster node reader takes over streams another node served (its master
                // failed, or their slots moved): check those too.
                if st.connected_before || st.node.is_some() {
                    st.check = Check::All;
                }
                if (st.server.is_some() && st.server != server)
                    || (!st.connected_before && st.node.is_some())
                {
                    st.switched = self.owned_streams(st.node.as_ref()).into_iter().collect();
                }
                st.server = server;
                st.connected_before = true;
            }
            Some(false) => {}
        }
        let result = if st.check != Check::None && !plan.keys.is_empty() {
            let streams: Vec<Arc<str>> = match st.check {
                // Also the streams left out of the plan because their subscriptions' queues
                // are full: after a failover they must not be read on unchecked.
                Check::All => self.owned_streams(st.node.as_ref()),
                _ => self.some_checks(&plan, st),
            };
            let check = std::mem::replace(&mut st.check, Check::None);
            if check == Check::All {
                // Streams no longer subscribed here need no check (`streams` is sorted).
                st.switched.retain(|s| streams.binary_search(s).is_ok());
            }
            let checked = self
                .check_positions(reader, &streams, &mut st.switched)
                .await;
            if checked.is_err() {
                // Not checked: check again once the reader can.
                st.check = check;
            }
            checked
        } else if !plan.unresolved.is_empty() {
            self.resolve(reader, &plan.unresolved).await
        } else if plan.keys.is_empty() {
            return tokio::select! {
                _ = token.cancelled() => Flow::Stop,
                _ = st.changed.changed() => Flow::Next,
            };
        } else {
            self.read(reader, st, &plan).await
        };
        match result {
            Ok(()) => Flow::Next,
            Err(e) => Flow::Failed(plan, e),
        }
    }

    /// The streams an idle BLOCK checks: suspects first (up to
    /// [`SUSPECT_CHECKS_PER_BLOCK`]), then the round-robin over all planned streams, up to
    /// [`IDLE_CHECKS_PER_BLOCK`] in all, each once.
    fn some_checks(&self, plan: &Plan, st: &mut ReaderState) -> Vec<Arc<str>> {
        let planned: HashSet<&str> = plan.keys.iter().map(|(s, _)| &**s).collect();
        let mut streams = self
            .suspects()
            .take(SUSPECT_CHECKS_PER_BLOCK, |s| planned.contains(s));
        let n = plan.keys.len();
        let room = IDLE_CHECKS_PER_BLOCK.saturating_sub(streams.len()).min(n);
        let from = st.idle_from % n;
        st.idle_from = (from + room) % n;
        for k in 0..room {
            let s = &plan.keys[(from + k) % n].0;
            if !streams.contains(s) {
                streams.push(s.clone());
            }
        }
        streams
    }

    /// Reads the planned streams: one blocking XREAD when they share one slot (always
    /// outside a cluster). In a cluster one XREAD can only name keys of one slot, and a node
    /// reader has one connection, so streams of several slots are read in turn: one
    /// pipeline of non-blocking XREADs (one per slot), and when that brings nothing, a
    /// short blocking XREAD on one slot after the other.
    async fn read(
        &self,
        reader: &mut BlockingReader,
        st: &mut ReaderState,
        plan: &Plan,
    ) -> std::result::Result<(), ReadError> {
        let groups = slot_groups(plan, st.node.is_some());
        let stale = || self.generation.load(Ordering::SeqCst) != plan.generation;
        if groups.len() > 1 {
            let mut pipe = redis::pipe();
            for keys in &groups {
                pipe.add_command(xread_cmd(keys, plan.count, None));
            }
            let replies: Vec<Value> = reader.command(&pipe).await?;
            let mut any = false;
            for v in replies {
                match parse_read_reply(&v) {
                    Ok(reply) if reply.is_empty() => {}
                    Ok(reply) => {
                        any = true;
                        self.dispatch(plan, reply);
                    }
                    Err(e) => error!(error = %e, "cannot parse an XREAD reply; re-reading"),
                }
            }
            if any {
                return Ok(());
            }
        }
        // One slot's streams, blocking: all of them, or (in turn) the next slot's with a
        // block short enough that the other slots wait at most about that long.
        let (keys, block) = if groups.len() > 1 {
            st.turn = (st.turn + 1) % groups.len();
            let slice = IN_TURN_SLICE.saturating_mul(groups.len().div_ceil(10) as u32);
            (&groups[st.turn], plan.block.min(slice))
        } else {
            (&groups[0], plan.block)
        };
        match reader
            .read::<Value>(
                &xread_cmd(keys, plan.count, Some(block)),
                block,
                plan.generation,
                stale,
            )
            .await?
        {
            // The plan changed before the read went out: plan again.
            None => {}
            Some(v) => match parse_read_reply(&v) {
                // A whole BLOCK without news (on every slot): a cheap moment to check that
                // no stream was deleted or recreated under us (ids lower than our position
                // would otherwise never be read).
                Ok(reply) if reply.is_empty() => st.check = Check::Some,
                Ok(reply) => self.dispatch(plan, reply),
                Err(e) => error!(error = %e, "cannot parse an XREAD reply; re-reading"),
            },
        }
        Ok(())
    }

    /// Reacts to a failed step of the reader; returns whether the reader must stop.
    async fn after_failure(
        &self,
        reader: &mut BlockingReader,
        plan: &Plan,
        e: ReadError,
        token: &CancellationToken,
    ) -> bool {
        let failure = match &e {
            ReadError::Redis(re) => classify(re),
            ReadError::Watchdog(_) | ReadError::Timeout(_) => Failure::Connection,
        };
        let wait = match failure {
            Failure::Connection | Failure::Redirect => {
                warn!(error = %e, "reader connection lost (or its slots moved); reconnecting");
                self.cmd.probe_soon();
                reader.disconnect();
                // In a cluster, a dead node or a moved slot changes who reads what.
                if self.cmd.refresh_slots().await || failure == Failure::Connection {
                    return false;
                }
                // A redirection without a new slot map: ASK while the slot migrates (the
                // node keeps it until the move ends). Back off instead of asking in a loop.
                reader.next_delay()
            }
            Failure::ServerState { reconnect } => {
                warn!(error = %e, reconnect, "Redis cannot serve the subscription read now (failover, loading); retrying");
                Counters::add(&self.counters.server_state_errors, 1);
                if reconnect {
                    reader.disconnect();
                }
                reader.next_delay()
            }
            _ => {
                let delay = reader.next_delay();
                error!(
                    error = %e,
                    streams = ?plan.keys.iter().map(|k| k.0.to_string()).collect::<Vec<_>>(),
                    retry_in_ms = delay.as_millis() as u64,
                    "Redis refused the subscription read; retrying"
                );
                delay
            }
        };
        tokio::select! {
            _ = token.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        }
    }

    /// Sends `CLIENT UNBLOCK` to the reader whenever its running XREAD is stale.
    async fn run_waker(self: Arc<Self>, token: CancellationToken) {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = self.unblock.notified() => {}
            }
            let slots: Vec<Arc<UnblockHandle>> =
                self.readers().values().map(|r| r.slot.clone()).collect();
            for slot in &slots {
                Unblocker {
                    cmd: &self.cmd,
                    slot,
                }
                .unblock(
                    |planned| planned < self.generation.load(Ordering::SeqCst),
                    Some(&token),
                )
                .await;
            }
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
    // However this task ends (a handler that panics included), the subscription ends with
    // it, instead of staying registered with nobody to deliver to.
    let _gone = Gone {
        hub: hub.clone(),
        id: sub.id,
    };
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
                        let n = b.len();
                        running.push_back(handler.handle(b).map(move |r| (n, r.map(|o| o.clamped(n)))));
                    }
                    None => open = false,
                }
                continue;
            }
        };
        let (n, result) = result;
        sub.queued.fetch_sub(n as u64, Ordering::Relaxed);
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
                break;
            }
        }
    }
}

/// Removes a subscription when its delivery task ends.
struct Gone {
    hub: Arc<Hub>,
    id: SubscriptionId,
}

impl Drop for Gone {
    fn drop(&mut self) {
        let removed = self.hub.subs().remove(&self.id);
        if let Some(s) = removed {
            // Not ended by unsubscribe or disconnect (those remove it first or cancel it).
            if !s.token.is_cancelled() {
                error!(stream = %s.stream, subscription = self.id, "a subscription's delivery stopped unexpectedly; it has ended (subscribe again)");
            }
            self.hub.forget_if_unsubscribed(&s.stream);
            self.hub.wake();
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
///
/// # Errors
/// [`Error::Refused`] when the server refuses the lookup (`NOPERM`, `WRONGTYPE`): the
/// caller's to fix, retrying changes nothing. [`Error::Unavailable`] when a node could not
/// answer for the stream (its slot moved or is moving, the cluster fails over): try again
/// later; nothing is known about the stream.
fn latest_of(replies: &[Value]) -> Result<(StreamId, u64)> {
    let failure = |e: &redis::ServerError| {
        let err = redis::RedisError::from(e.clone());
        match classify(&err) {
            Failure::Refused | Failure::WrongType => Error::refused(&err),
            _ => Error::Unavailable(err),
        }
    };
    match replies {
        [Value::Int(0), _] => Ok((StreamId::ZERO, 0)),
        [Value::ServerError(e), _] => Err(failure(e)),
        // Deleted between the two commands: a new stream starts from the beginning.
        [_, Value::ServerError(e)]
            if classify(&redis::RedisError::from(e.clone())) == Failure::NoSuchKey =>
        {
            Ok((StreamId::ZERO, 0))
        }
        [_, Value::ServerError(e)] => Err(failure(e)),
        [_, info] => {
            let i = parse_stream_info(info)?;
            Ok((i.last_generated, i.entries_added))
        }
        other => Err(Error::Protocol(format!(
            "EXISTS + XINFO STREAM replied {other:?}"
        ))),
    }
}

/// The planned streams grouped by hash slot (in a cluster; else one group), each group
/// sorted as the plan is.
fn slot_groups(plan: &Plan, cluster: bool) -> Vec<Vec<(Arc<str>, StreamId)>> {
    if !cluster {
        return vec![plan.keys.clone()];
    }
    let mut groups: BTreeMap<u16, Vec<(Arc<str>, StreamId)>> = BTreeMap::new();
    for (k, id) in &plan.keys {
        groups
            .entry(key_slot(k.as_bytes()))
            .or_default()
            .push((k.clone(), *id));
    }
    groups.into_values().collect()
}

fn xread_cmd(keys: &[(Arc<str>, StreamId)], count: usize, block: Option<Duration>) -> redis::Cmd {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    if let Some(b) = block {
        cmd.arg("BLOCK").arg(b.as_millis() as u64);
    }
    cmd.arg("STREAMS");
    for (k, _) in keys {
        cmd.arg(&**k);
    }
    for (_, id) in keys {
        cmd.arg(id);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:4f1c0a\r\ntcp_port:6379\r\n";
        assert_eq!(run_id(info).as_deref(), Some("4f1c0a"));
        assert_eq!(run_id("# Server\r\nredis_version:7.0.15\r\n"), None);
    }
}
