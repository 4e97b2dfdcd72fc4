//! The counters `getStatus()` shows, kept for the life of a client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::log_throttle::Throttle;

/// Counters kept for the life of a client (they survive reconnects and `disconnect()`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries written by publish calls.
    pub published: AtomicU64,
    /// Entries not written: Redis was unavailable (resolved `null`), refused them (rejected
    /// with its code), or the client was disconnected; the three counters below split it.
    pub publish_failed: AtomicU64,
    /// Publishes that resolved with an id and that a failover then lost (the new primary
    /// did not have them); see `connection::ledger`.
    pub publish_lost: AtomicU64,
    /// Messages handed to callbacks (subscriptions and consumers).
    pub delivered: AtomicU64,
    /// Callbacks that threw or rejected.
    pub callback_errors: AtomicU64,
    /// Successful reconnects of any connection of this client.
    pub reconnects: AtomicU64,
    /// Group entries acknowledged (auto-ack and `acknowledgeMessages`).
    pub acked: AtomicU64,
    /// Entries taken over from idle consumers with XAUTOCLAIM.
    pub claimed: AtomicU64,
    /// Entries moved to a dead-letter stream.
    pub dead_lettered: AtomicU64,
    /// Times a subscription found entries trimmed or deleted before it could read them.
    pub gaps: AtomicU64,
    /// Times a subscribed stream was found deleted or recreated, so reading restarted at 0.
    pub stream_resets: AtomicU64,
    /// Commands Redis refused because of its own state (a failover's `READONLY` or
    /// `MASTERDOWN`, `LOADING`, `OOM`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`); they failed open.
    pub server_state_errors: AtomicU64,
    /// Entries of `publish_failed` not written because Redis was unavailable.
    pub publish_unavailable: AtomicU64,
    /// Entries Redis refused (`NOPERM`, `WRONGTYPE`, an id not above the stream's top).
    pub publish_refused: AtomicU64,
    /// Entries of `publish_failed` not written because the client was disconnected.
    pub publish_closed: AtomicU64,
    /// `delivered` per stream, for `metrics()`: at most [`MAX_LABELLED_STREAMS`] streams,
    /// the rest summed under [`OTHER_STREAMS`].
    pub delivered_by_stream: Mutex<BTreeMap<String, u64>>,
    /// Throttles the "Redis unavailable" warning of publishes.
    pub unavailable_log: Throttle,
}

/// Streams (or other label values) a per-stream counter keeps apart; the series of a
/// metric stay bounded however many streams a client touches.
pub const MAX_LABELLED_STREAMS: usize = 256;

/// The label value under which counts past [`MAX_LABELLED_STREAMS`] are summed.
pub const OTHER_STREAMS: &str = "_other";

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// See [`Counters::published`].
    pub published: u64,
    /// See [`Counters::publish_failed`].
    pub publish_failed: u64,
    /// See [`Counters::publish_lost`].
    pub publish_lost: u64,
    /// See [`Counters::delivered`].
    pub delivered: u64,
    /// See [`Counters::callback_errors`].
    pub callback_errors: u64,
    /// See [`Counters::reconnects`].
    pub reconnects: u64,
    /// See [`Counters::acked`].
    pub acked: u64,
    /// See [`Counters::claimed`].
    pub claimed: u64,
    /// See [`Counters::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`Counters::gaps`].
    pub gaps: u64,
    /// See [`Counters::stream_resets`].
    pub stream_resets: u64,
    /// See [`Counters::server_state_errors`].
    pub server_state_errors: u64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` messages handed to the callbacks of `stream` (in `delivered` and per
    /// stream).
    pub fn delivered_to(&self, stream: &str, n: u64) {
        if n == 0 {
            return;
        }
        Self::add(&self.delivered, n);
        let mut by = self
            .delivered_by_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = by.get_mut(stream) {
            *c += n;
        } else if by.len() < MAX_LABELLED_STREAMS {
            by.insert(stream.to_owned(), n);
        } else {
            *by.entry(OTHER_STREAMS.to_owned()).or_default() += n;
        }
    }

    /// `delivered` per stream (see [`Counters::delivered_by_stream`]).
    pub fn delivered_by_stream(&self) -> Vec<(String, u64)> {
        let by = self
            .delivered_by_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        by.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            published: get(&self.published),
            publish_failed: get(&self.publish_failed),
            publish_lost: get(&self.publish_lost),
            delivered: get(&self.delivered),
            callback_errors: get(&self.callback_errors),
            reconnects: get(&self.reconnects),
            acked: get(&self.acked),
            claimed: get(&self.claimed),
            dead_lettered: get(&self.dead_lettered),
            gaps: get(&self.gaps),
            stream_resets: get(&self.stream_resets),
            server_state_errors: get(&self.server_state_errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_per_stream_is_bounded() {
        let c = Counters::default();
        for i in 0..MAX_LABELLED_STREAMS + 10 {
            c.delivered_to(&format!("s{i}"), 2);
        }
        c.delivered_to("s0", 1);
        c.delivered_to("s1", 0);
        let by = c.delivered_by_stream();
        assert_eq!(by.len(), MAX_LABELLED_STREAMS + 1);
        let get = |k: &str| by.iter().find(|(s, _)| s == k).map(|(_, n)| *n);
        assert_eq!(get("s0"), Some(3));
        assert_eq!(get(OTHER_STREAMS), Some(20));
        assert_eq!(
            c.snapshot().delivered,
            2 * (MAX_LABELLED_STREAMS as u64 + 10) + 1
        );
    }
}
