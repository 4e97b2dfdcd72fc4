//! What `getStatus()` shows: the snapshot type and its views (groups, subscriptions, the
//! facts only Redis knows).
//!
//! - [`conn_state`]: where a connection is in its life;
//! - [`counters`]: the counters kept for the life of a client;
//! - [`log_throttle`]: one line per interval for a repeated warning.

mod conn_state;
mod counters;
mod log_throttle;

pub use conn_state::ConnState;
pub use counters::{Counters, CountersSnapshot, MAX_LABELLED_STREAMS, OTHER_STREAMS};
pub use log_throttle::Throttle;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::StreamId;

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
    pub server: Option<crate::server_info::ServerInfo>,
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
    /// The millisecond part of the id of the group's oldest pending entry (`XPENDING`'s
    /// summary), so its age is `checked_at_ms` minus this; `None` when nothing is pending.
    pub oldest_pending_ms: Option<u64>,
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
    /// explicit id, whose entry number Redis cannot tell, while it trails its stream by more
    /// than a position check counts).
    pub behind: Option<u64>,
}
