//! The registry of subscriptions: one entry per subscription (its stream, position, queue
//! and token), and the lock that guards them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::positions::{GapReported, Position};
use super::{SubscriptionId, Subscriptions};
use crate::codec::StreamId;
use crate::handler::Batch;

pub(super) struct Registered {
    pub(super) id: SubscriptionId,
    pub(super) stream: Arc<str>,
    pub(super) block: Duration,
    pub(super) count: usize,
    pub(super) position: Mutex<Position>,
    pub(super) tx: mpsc::Sender<Batch>,
    /// Set by the reader when it left this subscription out of a read because its queue was
    /// full; the delivery task then wakes the reader when there is room again.
    pub(super) excluded: AtomicBool,
    /// Set when a plan left this subscription out because it was busy: when it is planned
    /// again, its stream is a suspect (entries may have been trimmed meanwhile).
    pub(super) skipped: AtomicBool,
    /// Entries handed over and not finished by the handler yet.
    pub(super) queued: AtomicU64,
    pub(super) token: CancellationToken,
    /// Set when the core ends the subscription on its own, so that its handler is told.
    pub(super) ended_by_core: AtomicBool,
    pub(super) gap_reported: Mutex<GapReported>,
}

impl Registered {
    pub(super) fn position(&self) -> MutexGuard<'_, Position> {
        self.position.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the position if it is still unresolved (`"$"`): whoever resolves it first (the
    /// subscribe call or the reader) wins, and either is right.
    pub(super) fn resolve_latest(&self, at: StreamId, seen: u64) -> bool {
        let mut p = self.position();
        if p.cursor.is_some() {
            return false;
        }
        *p = Position {
            cursor: Some(at),
            seen: Some(seen),
            caller_given: false,
        };
        true
    }
}

/// The subscriptions of each of `streams` (those that have any), in id order, found in one
/// pass over `subs`: looking each stream up with a scan of every subscription costs
/// streams × subscriptions, seconds with thousands of streams (a full position check or a
/// read of 6,000 streams, each subscribed once, made 36 million comparisons per pass).
pub(super) fn by_stream<'s, 'w>(
    subs: &'s BTreeMap<SubscriptionId, Arc<Registered>>,
    streams: impl IntoIterator<Item = &'w str>,
) -> HashMap<&'s str, Vec<&'s Arc<Registered>>> {
    let wanted: HashSet<&'w str> = streams.into_iter().collect();
    let mut of: HashMap<&str, Vec<&Arc<Registered>>> = HashMap::with_capacity(wanted.len());
    for sub in subs.values() {
        if wanted.contains(&*sub.stream) {
            of.entry(&*sub.stream).or_default().push(sub);
        }
    }
    of
}

impl Subscriptions {
    pub(super) fn subs(&self) -> MutexGuard<'_, BTreeMap<SubscriptionId, Arc<Registered>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `stream` as a suspect when nobody subscribes to it any more.
    pub(super) fn forget_if_unsubscribed(&self, stream: &str) {
        let subscribed = self.subs().values().any(|s| &*s.stream == stream);
        if !subscribed {
            self.suspects().forget(stream);
            self.ends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(stream);
        }
    }
}
