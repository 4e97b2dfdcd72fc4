//! The counters `getStatus()` shows, kept for the life of a client.

use std::sync::atomic::{AtomicU64, Ordering};

use super::log_throttle::Throttle;

/// Counters kept for the life of a client (they survive reconnects and `disconnect()`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Entries written by publish calls.
    pub published: AtomicU64,
    /// Publish calls that resolved `null` because Redis was unavailable.
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
    /// Throttles the "Redis unavailable" warning of publishes.
    pub unavailable_log: Throttle,
}

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
