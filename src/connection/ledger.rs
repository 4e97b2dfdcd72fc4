//! What this client published lately, kept to tell the writer which publishes a failover lost.
//!
//! Redis replicates asynchronously: a primary acknowledges an `XADD` before its replica has
//! it, so when the replica is promoted, the newest acknowledged entries may be gone. No
//! subscriber can see a loss of entries it had not read yet; the publisher can. After the
//! command connection finds itself on another server (another `run_id`, a new cluster
//! master), the recent ids are looked up there, and the missing ones are reported: a `warn`
//! record per stream and `counters.publishLost`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::codec::StreamId;

/// Ids kept per stream: the newest ones (a failover loses the newest).
pub const IDS_PER_STREAM: usize = 1_000;
/// Streams kept; publishing to another one forgets the one written to least recently.
pub const STREAMS: usize = 256;

struct Recent {
    ids: VecDeque<StreamId>,
    /// When it was last written to, in calls to [`Ledger::record`].
    touched: u64,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<Arc<str>, Recent>,
    /// The streams by when they were last written to: the first is evicted next, found
    /// without scanning every stream.
    by_age: BTreeMap<u64, Arc<str>>,
    clock: u64,
}

/// The newest ids this client's publishes got, per stream.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a publish to `stream` got `id`.
    pub fn record(&self, stream: &str, id: StreamId) {
        let mut inner = self.inner();
        inner.clock += 1;
        let now = inner.clock;
        let Inner {
            streams, by_age, ..
        } = &mut *inner;
        if let Some(r) = streams.get_mut(stream) {
            if r.ids.len() == IDS_PER_STREAM {
                r.ids.pop_front();
            }
            r.ids.push_back(id);
            let key = by_age
                .remove(&r.touched)
                .unwrap_or_else(|| Arc::from(stream));
            by_age.insert(now, key);
            r.touched = now;
            return;
        }
        if streams.len() == STREAMS {
            if let Some((_, oldest)) = by_age.pop_first() {
                streams.remove(&oldest);
            }
        }
        let key: Arc<str> = Arc::from(stream);
        by_age.insert(now, key.clone());
        streams.insert(
            key,
            Recent {
                ids: VecDeque::from([id]),
                touched: now,
            },
        );
    }

    /// Every stream with its recorded ids, oldest first.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Vec<StreamId>)> {
        self.inner()
            .streams
            .iter()
            .map(|(k, r)| (k.clone(), r.ids.iter().copied().collect()))
            .collect()
    }

    /// Forgets `ids` of `stream` (reported lost: not to be reported again).
    pub fn forget(&self, stream: &str, ids: &[StreamId]) {
        let mut inner = self.inner();
        if let Some(r) = inner.streams.get_mut(stream) {
            r.ids.retain(|id| ids.binary_search(id).is_err());
        }
    }
}

/// What the audit learns of a stream on the server it reached now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFacts {
    /// Its oldest entry (`None`: the stream exists but is empty).
    pub first: Option<StreamId>,
    /// The largest id deleted from it (`XDEL`; `0-0` when none).
    pub max_deleted: StreamId,
    /// Entries ever removed from it, by trims or deletions (`entries-added` − `length`).
    pub removed: u64,
}

/// Of the `recorded` ids of a stream, those a server does not have although nothing says they
/// were trimmed or deleted there: `present[i]` tells whether `recorded[i]` is in the stream,
/// and `facts` is what the server says of the stream (`None`: it is not there at all).
///
/// An id below the first entry (or up to the largest deleted one) may have been trimmed
/// away, but only as many as the stream ever removed: when more of ours are missing, the
/// stream was created anew after a restart or failover lost it (other clients kept
/// publishing), and every missing id is lost.
pub fn lost(recorded: &[StreamId], present: &[bool], facts: Option<StreamFacts>) -> Vec<StreamId> {
    let missing: Vec<StreamId> = recorded
        .iter()
        .zip(present)
        .filter(|(_, here)| !**here)
        .map(|(id, _)| *id)
        .collect();
    let Some(f) = facts else { return missing };
    let removable = |id: &StreamId| *id <= f.max_deleted || f.first.is_none_or(|first| *id < first);
    let explained = missing.iter().filter(|id| removable(id)).count() as u64;
    if explained > f.removed {
        return missing;
    }
    missing.into_iter().filter(|id| !removable(id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64) -> StreamId {
        StreamId::new(ms, 0)
    }

    #[test]
    fn keeps_the_newest_ids_of_the_most_recently_written_streams() {
        let l = Ledger::default();
        for ms in 0..(IDS_PER_STREAM as u64 + 5) {
            l.record("a", id(ms));
        }
        let snap = l.snapshot();
        assert_eq!(snap[0].1.len(), IDS_PER_STREAM);
        assert_eq!(snap[0].1[0], id(5));
        for s in 0..STREAMS {
            l.record(&format!("s{s}"), id(1));
        }
        // "a" was written to least recently: it made room.
        assert_eq!(l.snapshot().len(), STREAMS);
        assert!(l.snapshot().iter().all(|(k, _)| &**k != "a"));
        l.forget("s0", &[id(1)]);
        assert!(l
            .snapshot()
            .iter()
            .any(|(k, v)| &**k == "s0" && v.is_empty()));
    }

    #[test]
    fn writing_to_a_stream_again_keeps_it_over_streams_written_to_since() {
        let l = Ledger::default();
        l.record("a", id(1));
        for s in 0..STREAMS - 1 {
            l.record(&format!("s{s}"), id(1));
        }
        l.record("a", id(2));
        l.record("new", id(1));
        let snap = l.snapshot();
        assert_eq!(snap.len(), STREAMS);
        assert!(snap
            .iter()
            .any(|(k, v)| &**k == "a" && v == &[id(1), id(2)]));
        assert!(snap.iter().all(|(k, _)| &**k != "s0"));
    }

    #[test]
    fn missing_ids_are_lost_unless_trimmed_or_deleted() {
        let rec = [id(1), id(2), id(3), id(4)];
        let facts = |max_deleted, first, removed| {
            Some(StreamFacts {
                first,
                max_deleted,
                removed,
            })
        };
        // 1 trimmed (below the first entry; the stream removed 5), 2 present, 3 and 4 missing.
        assert_eq!(
            lost(
                &rec,
                &[false, true, false, false],
                facts(StreamId::ZERO, Some(id(2)), 5)
            ),
            vec![id(3), id(4)]
        );
        // 3 deleted (max_deleted covers it): only 4 lost.
        assert_eq!(
            lost(
                &rec,
                &[false, true, false, false],
                facts(id(3), Some(id(2)), 5)
            ),
            vec![id(4)]
        );
        // No stream at all on the new server: everything recorded is lost.
        assert_eq!(lost(&rec, &[false; 4], None), rec);
        // An empty stream that removed at least as many: trimmed to nothing.
        assert_eq!(
            lost(&rec, &[false; 4], facts(StreamId::ZERO, None, 4)),
            vec![]
        );
    }

    #[test]
    fn a_stream_created_again_after_a_loss_does_not_pass_for_a_trim() {
        // Four of ours are below the new stream's first entry, but the stream never removed
        // anything (a restarted server, and another client wrote to it since): lost, not trimmed.
        let rec = [id(1), id(2), id(3), id(4)];
        let recreated = StreamFacts {
            first: Some(id(10)),
            max_deleted: StreamId::ZERO,
            removed: 0,
        };
        assert_eq!(lost(&rec, &[false; 4], Some(recreated)), rec);
        // Fewer removals than missing ids below the first entry: the same.
        let partly = StreamFacts {
            removed: 3,
            ..recreated
        };
        assert_eq!(lost(&rec, &[false; 4], Some(partly)), rec);
    }
}
