//! What `getStatus()` shows: connection state, counters, and the snapshot type.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::StreamId;

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Not started (before `connect()`).
    Idle,
    /// The first attempt is running.
    Connecting,
    /// Commands can be sent.
    Connected,
    /// The connection failed; the next attempt runs after a back-off delay.
    Reconnecting {
        /// Failed attempts since the last success.
        attempt: u32,
        /// Milliseconds since the epoch when the next attempt starts.
        next_retry_at_ms: u64,
        /// Why the last attempt failed (never contains the password).
        last_error: String,
        /// The stable code of that failure.
        last_error_code: &'static str,
    },
    /// `disconnect()` is draining.
    Closing,
    /// `disconnect()` finished.
    Closed,
}

impl ConnState {
    /// The name `getStatus().state` shows.
    pub fn name(&self) -> &'static str {
        match self {
            ConnState::Idle => "idle",
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Reconnecting { .. } => "reconnecting",
            ConnState::Closing => "closing",
            ConnState::Closed => "closed",
        }
    }
}

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

/// Everything `getStatus()` reports.
#[derive(Debug, Clone)]
pub struct Status {
    /// The command connection works.
    pub connected: bool,
    /// State of the command connection.
    pub state: ConnState,
    /// State of the subscription reader (`Idle` when nothing is subscribed).
    pub reader_state: ConnState,
    /// Streams with at least one subscription, sorted, each once.
    pub subscriptions: Vec<String>,
    /// Every subscription, by id.
    pub subscription_details: Vec<SubscriptionInfo>,
    /// `stream:group:consumer` of each running consumer.
    pub consumer_groups: Vec<String>,
    /// Each consumer's connection state, by `stream:group:consumer`.
    pub consumers: Vec<(String, ConnState)>,
    /// Each consumer group this client consumes, as `XINFO GROUPS` last reported it (see
    /// [`Insight`]).
    pub groups: Vec<GroupInfo>,
    /// Counter values.
    pub counters: CountersSnapshot,
    /// The server the command connection last reached (`None` before the first connection).
    pub server: Option<crate::connection::ServerInfo>,
}

/// A consumer group as `XINFO GROUPS` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The stream.
    pub stream: String,
    /// The group.
    pub group: String,
    /// Entries in the stream that the group has not been delivered yet (`lag`); `None` when
    /// Redis cannot tell (after deletions or trims past the group's position).
    pub lag: Option<u64>,
    /// Entries delivered to the group's consumers and not acknowledged yet (`pending`).
    pub pending: u64,
    /// The last id delivered to the group.
    pub last_delivered_id: StreamId,
    /// Consumers the group has (all processes, not only this client).
    pub consumers: u64,
    /// When Redis was asked, ms since the epoch.
    pub checked_at_ms: u64,
}

/// The numbers of `getStatus()` that only Redis knows (groups' lag and pending, how far a
/// busy subscription's stream has run ahead of it), kept between refreshes.
///
/// `getStatus()` never waits for Redis: it shows the last refresh and starts a new one in
/// the background when that is older than [`Insight::MAX_AGE_MS`]; `refreshStatus()`
/// waits for one. A refresh costs one `XINFO GROUPS` per consumed stream and one
/// `XINFO STREAM` per busy subscribed stream (at most [`Insight::MAX_BUSY_STREAMS`]), so a
/// client nobody asks costs nothing.
#[derive(Debug, Default)]
pub struct Insight {
    groups: std::sync::Mutex<Vec<GroupInfo>>,
    refreshed_at_ms: AtomicU64,
    running: std::sync::atomic::AtomicBool,
}

impl Insight {
    /// Age after which `getStatus()` starts a refresh.
    pub const MAX_AGE_MS: u64 = 1_000;
    /// Busy subscribed streams asked about per refresh, at most.
    pub const MAX_BUSY_STREAMS: usize = 256;

    /// The groups as last refreshed.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the groups.
    pub fn set_groups(&self, groups: Vec<GroupInfo>) {
        *self.groups.lock().unwrap_or_else(|p| p.into_inner()) = groups;
    }

    /// Whether `getStatus()` should start a refresh: none runs and the last one is older
    /// than [`Insight::MAX_AGE_MS`].
    pub fn due(&self) -> bool {
        let age =
            crate::codec::now_ms().saturating_sub(self.refreshed_at_ms.load(Ordering::Relaxed));
        !self.running() && age >= Self::MAX_AGE_MS
    }

    /// Claims a background refresh: `None` when one runs already. Dropping the claim (when
    /// the refresh ends, however it ends) releases it.
    pub fn claim(&self) -> Option<InsightClaim<'_>> {
        (!self.running.swap(true, Ordering::AcqRel)).then_some(InsightClaim(self))
    }

    /// Stamps the time of a refresh that just ended.
    pub fn refreshed(&self) {
        self.refreshed_at_ms
            .store(crate::codec::now_ms(), Ordering::Relaxed);
    }

    /// Whether a refresh runs now.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// A claimed background refresh of [`Insight`]; released on drop.
#[derive(Debug)]
pub struct InsightClaim<'a>(&'a Insight);

impl Drop for InsightClaim<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// Lets a repeated warning through at most once per interval, counting the rest, so an
/// outage under load logs a line per second instead of one per call.
#[derive(Debug, Default)]
pub struct Throttle {
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Milliseconds between two lines.
    pub const INTERVAL_MS: u64 = 1_000;

    /// `Some(n)` when a line may be written now, `n` being how many were held back since
    /// the last one; `None` when this one should be held back.
    pub fn allow(&self) -> Option<u64> {
        let now = crate::codec::now_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + Self::INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// One subscription as `getStatus()` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Its id, unique within the client (`subscribe::SubscriptionId`).
    pub id: u64,
    /// The stream it reads.
    pub stream: String,
    /// The last id handed to it (or the id it starts after); `None` while `"$"` is not
    /// resolved yet.
    pub last_id: Option<StreamId>,
    /// Entries read for it that its handler has not finished yet (queued or running).
    pub queued: u64,
    /// The newest id the client knows the stream has (from its reads, position checks and
    /// status refreshes); `None` before the stream was read or checked.
    pub stream_last_id: Option<StreamId>,
    /// How many entries of the stream it has not handled yet: `queued` plus the entries
    /// after `last_id`. `None` when that count is unknown (a subscription started after an
    /// explicit id, whose entry number Redis cannot tell, while it trails its stream).
    pub behind: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        t.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(t.allow(), Some(2));
    }
}
