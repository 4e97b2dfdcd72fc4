//! The registry of subscriptions: one entry per subscription (its stream, position, queue
//! and token), and the lock that guards them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::positions::{GapReported, Position};
use super::{Hub, SubscriptionId};
use crate::codec::StreamId;
use crate::handler::Batch;

pub(super) struct Sub {
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
    pub(super) gap_reported: Mutex<GapReported>,
}

impl Sub {
    pub(super) fn position(&self) -> MutexGuard<'_, Position> {
        self.position.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the position if it is still unresolved (`"$"`): whoever resolves it first (the
    /// subscribe call or the reader) wins, and either is right.
    pub(super) fn resolve(&self, at: StreamId, seen: u64) -> bool {
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

impl Hub {
    pub(super) fn subs(&self) -> MutexGuard<'_, BTreeMap<SubscriptionId, Arc<Sub>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `stream` as a suspect when nobody subscribes to it any more.
    pub(super) fn forget_if_unsubscribed(&self, stream: &str) {
        let subscribed = self.subs().values().any(|s| &*s.stream == stream);
        if !subscribed {
            self.suspects().retain(|s| s != stream);
            self.ends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(stream);
        }
    }
}
