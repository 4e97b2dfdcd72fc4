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
//!
//! Here: [`Subscriptions`] and the public API. `options`: what a caller gives.
//! `registry`: one entry per subscription. `ends`: where each stream ends, and the
//! status views. `plan`: what the next XREAD asks for. `reader`: the reader's state
//! machine. `supervisor`: one reader per master, waking them. `latest`: resolving `"$"`.
//! `stream_facts`: where a stream is, without payloads. `positions`: whether a position
//! still fits its stream (a pure decision). `check`: the checks that apply it.
//! `deliver`: fan-out and delivery to the handler.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Notify};
use tracing::{info, warn};

use crate::codec::{check_stream_name, StartId, StreamId};
use crate::config::Config;
use crate::connection::{CommandConn, NodeAddr};
use crate::error::Result;
use crate::handler::Handler;
use crate::lifecycle::Lifecycle;
use crate::status::Counters;

mod check;
mod deliver;
mod ends;
mod latest;
mod options;
mod plan;
mod positions;
mod reader;
mod registry;
mod stream_facts;
mod supervisor;

pub(crate) use stream_facts::{parse_stream_facts, stream_facts_cmd};

use deliver::deliver;
use ends::StreamEnd;
use registry::Registered;
use supervisor::ReaderHandle;

pub use options::{SubscribeInput, SubscribeOptions};

use positions::{GapReported, Position, Suspects};

/// Identifies one subscription of a client.
pub type SubscriptionId = u64;

/// The subscriptions of one client and the reader that serves them.
pub struct Subscriptions {
    cfg: Arc<Config>,
    counters: Arc<Counters>,
    cmd: Arc<CommandConn>,
    subs: Mutex<BTreeMap<SubscriptionId, Arc<Registered>>>,
    next_id: AtomicU64,
    /// Bumped on every change the reader must see.
    plan_version: AtomicU64,
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

impl Subscriptions {
    /// No subscriptions yet; the reader starts with the first one.
    pub fn new(cfg: Arc<Config>, counters: Arc<Counters>, cmd: Arc<CommandConn>) -> Self {
        Subscriptions {
            cfg,
            counters,
            cmd,
            subs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            plan_version: AtomicU64::new(0),
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

    /// Registers a subscription and starts delivering to `handler`: the subscription exists
    /// (and `unsubscribe` reaches it) when this returns, before anything is awaited.
    ///
    /// The returned future resolves `"$"` to the stream's current last id; once it resolved,
    /// every entry added afterwards is delivered. When Redis is unavailable it resolves
    /// anyway, and the reader resolves `"$"` as soon as it connects.
    ///
    /// # Errors
    /// [`Error::InvalidArg`](crate::Error::InvalidArg) for a bad stream name (at once); from the future,
    /// [`Error::Refused`](crate::Error::Refused) when the server refuses the `"$"` lookup (`NOPERM`, a key that is
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
        let sub = Arc::new(Registered {
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
            ended_by_core: AtomicBool::new(false),
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
        Ok((id, self.clone().resolve_latest(sub)))
    }

    /// Resolves `"$"` for a new subscription on the command connection (nothing to do for
    /// an explicit start id); when Redis is unavailable, the reader resolves it later.
    async fn resolve_latest(self: Arc<Self>, sub: Arc<Registered>) -> Result<()> {
        if sub.position().cursor.is_some() {
            self.wake();
            return Ok(());
        }
        match self.resolve_latest_on_command(&sub.stream).await {
            Err(e) => {
                self.unsubscribe_one(sub.id);
                Err(e)
            }
            Ok(found) => {
                match found {
                    Some((at, seen)) => {
                        // Checked under the subscriptions' lock (taken before the ends',
                        // as everywhere): an unsubscribe that came first forgot the
                        // stream's end, and recording it now would leave it stale.
                        let registered = self.subs();
                        if registered.contains_key(&sub.id) {
                            sub.resolve_latest(at, seen);
                            self.saw_end(&sub.stream, at, Some(seen));
                        }
                    }
                    None => warn!(
                        stream = %sub.stream,
                        "Redis unavailable; \"$\" will be resolved when the reader connects"
                    ),
                }
                self.wake();
                Ok(())
            }
        }
    }

    /// Registers a subscription and waits until `"$"` is resolved; see
    /// [`Subscriptions::start_subscribe`].
    ///
    /// # Errors
    /// As [`Subscriptions::start_subscribe`].
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
        let removed: Vec<Arc<Registered>> = {
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
}
