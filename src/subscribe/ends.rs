//! Where each subscribed stream ends, as far as the client knows (from reads, position
//! checks and status refreshes), and the status views built from it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::positions::Position;
use super::Subscriptions;
use crate::codec::StreamId;
use crate::status::SubscriptionInfo;

/// What the client knows about a subscribed stream's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamEnd {
    /// The newest id known.
    pub(super) last_id: StreamId,
    /// Entries ever added up to it, when known.
    pub(super) entries_added: Option<u64>,
}

impl StreamEnd {
    /// Moves the end forward (never back: a read may report less than a check saw).
    pub(super) fn advance(&mut self, last_id: StreamId, entries_added: Option<u64>) {
        if last_id > self.last_id {
            self.last_id = last_id;
            self.entries_added = entries_added.or(self.entries_added);
        } else if let (Some(a), Some(b)) = (entries_added, self.entries_added) {
            self.entries_added = Some(a.max(b));
        } else if self.entries_added.is_none() {
            self.entries_added = entries_added;
        }
    }
}

impl Subscriptions {
    /// Records where `stream` ends (from a read, a check or a refresh).
    pub(super) fn saw_end(&self, stream: &Arc<str>, last_id: StreamId, entries_added: Option<u64>) {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(stream.clone())
            .and_modify(|e| e.advance(last_id, entries_added))
            .or_insert(StreamEnd {
                last_id,
                entries_added,
            });
    }

    /// Where the client knows `stream` to end.
    pub(super) fn end_of(&self, stream: &str) -> Option<StreamEnd> {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .copied()
    }

    /// Forgets where `stream` ends (it went: the end known was another stream's).
    pub(super) fn forget_end(&self, stream: &str) {
        self.ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stream);
    }

    /// Records what `XINFO STREAM` said about `stream` (used by status refreshes).
    pub fn saw_stream_info(&self, stream: &str, info: &crate::codec::StreamInfo) {
        self.saw_end(
            &Arc::from(stream),
            info.last_generated,
            Some(info.entries_added),
        );
    }

    /// Streams whose subscriptions are too busy to be read now, sorted, each once: how far
    /// their streams ran ahead only Redis can tell.
    pub fn busy_streams(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .subs()
            .values()
            .filter(|s| s.tx.capacity() == 0)
            .map(|s| s.stream.to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every subscription with its stream and position, by id.
    pub fn details(&self) -> Vec<SubscriptionInfo> {
        // Locked in the order the reader takes them (subscriptions, then ends): no copy of
        // every stream's end per call.
        let subs = self.subs();
        let ends = self.ends.lock().unwrap_or_else(|p| p.into_inner());
        subs.values()
            .map(|s| {
                let position = *s.position();
                let queued = s.queued.load(Ordering::Relaxed);
                let end = ends.get(&s.stream);
                let unread = match (position, end) {
                    (
                        Position {
                            cursor: Some(at), ..
                        },
                        Some(e),
                    ) if at >= e.last_id => Some(0),
                    (
                        Position {
                            seen: Some(seen), ..
                        },
                        Some(StreamEnd {
                            entries_added: Some(added),
                            ..
                        }),
                    ) => Some(added.saturating_sub(seen)),
                    _ => None,
                };
                SubscriptionInfo {
                    id: s.id,
                    stream: s.stream.to_string(),
                    last_id: position.cursor,
                    queued,
                    stream_last_id: end.map(|e| e.last_id),
                    behind: unread.map(|u| u + queued),
                }
            })
            .collect()
    }
}
