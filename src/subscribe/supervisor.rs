//! The readers: one per client, or in a cluster one per master (started and stopped as the
//! slot map changes); waking them when the subscriptions change, and their states.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Subscriptions;
use crate::connection::{BlockingReader, NodeAddr, Placement, Target, UnblockHandle, Unblocker};
use crate::lifecycle::Lifecycle;
use crate::status::ConnState;

/// Pause before asking for a cluster's slot map again when no master is known.
pub(super) const SLOT_MAP_RETRY: Duration = Duration::from_millis(200);

/// What the subscriptions keep of a running reader.
pub(super) struct ReaderHandle {
    pub(super) slot: Arc<UnblockHandle>,
    pub(super) state: Arc<watch::Sender<ConnState>>,
    /// Stops this reader alone (its node is no master any more).
    pub(super) token: CancellationToken,
}

impl Subscriptions {
    pub(super) fn readers(&self) -> MutexGuard<'_, BTreeMap<Option<NodeAddr>, ReaderHandle>> {
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
    pub(super) fn wake(&self) {
        self.plan_version.fetch_add(1, Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
        self.unblock.notify_one();
    }

    /// Starts a reader for `node` (`None`: the primary) unless one runs.
    pub(super) fn start_reader(self: &Arc<Self>, life: &Lifecycle, node: Option<NodeAddr>) {
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
    pub(super) async fn supervise(self: Arc<Self>, life: Lifecycle) {
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

    /// Sends `CLIENT UNBLOCK` to the reader whenever its running XREAD is stale.
    pub(super) async fn run_waker(self: Arc<Self>, token: CancellationToken) {
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
                    |planned| planned < self.plan_version.load(Ordering::SeqCst),
                    Some(&token),
                )
                .await;
            }
        }
    }
}
