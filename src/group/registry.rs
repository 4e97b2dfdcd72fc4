//! The running consumers of one client, by [`ConsumerKey`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::options::ConsumeOptions;
use crate::codec::StreamId;
use crate::config::Config;
use crate::connection::{CommandConn, UnblockHandle};
use crate::status::{ConnState, Counters};
use crate::trim::Touched;

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

/// One running consumer.
pub(super) struct Consumer {
    pub(super) stream: Arc<str>,
    pub(super) group: String,
    pub(super) name: String,
    pub(super) opts: ConsumeOptions,
    pub(super) count: usize,
    pub(super) block: Duration,
    pub(super) dead_letter: String,
    pub(super) token: CancellationToken,
    /// Its reader, for `CLIENT UNBLOCK`.
    pub(super) slot: Arc<UnblockHandle>,
    pub(super) finished: watch::Sender<bool>,
    pub(super) state: Arc<watch::Sender<ConnState>>,
    /// Handled entries whose XACK has not gone through yet: the loop sends them with its next
    /// read, and `acknowledgeMessages` leaves here what Redis could not take when it was made.
    pub(super) acks: Acks,
}

/// Entry ids waiting for their XACK (it is idempotent: sending one twice is harmless).
#[derive(Default)]
pub(super) struct Acks(Mutex<Vec<StreamId>>);

impl Acks {
    pub(super) fn take(&self) -> Vec<StreamId> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts ids whose XACK failed back in front, to be sent again.
    pub(super) fn keep(&self, ids: Vec<StreamId>) {
        let mut u = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *u, ids);
        u.extend(newer);
    }

    pub(super) fn extend(&self, ids: Vec<StreamId>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend(ids);
    }
}

/// Marks a consumer finished when its task ends, however it ends.
pub(super) struct Finished {
    pub(super) groups: Arc<Groups>,
    pub(super) key: ConsumerKey,
    pub(super) c: Arc<Consumer>,
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
    pub(super) cfg: Arc<Config>,
    pub(super) counters: Arc<Counters>,
    pub(super) cmd: Arc<CommandConn>,
    /// The client's streams for auto-trim: dead-letter streams are written here, so they
    /// are trimmed like any stream the client publishes to (else they grow without bound).
    pub(super) touched: Arc<Touched>,
    pub(super) consumers: Mutex<BTreeMap<ConsumerKey, Arc<Consumer>>>,
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

    pub(super) fn consumers(&self) -> MutexGuard<'_, BTreeMap<ConsumerKey, Arc<Consumer>>> {
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
}
