//! Where a connection is in its life, as `getStatus()` names it.

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
