//! The client: `connect` … `disconnect` sessions, and the calls that need one.
//!
//! - [`session`]: what exists between `connect()` and `disconnect()`, opening it (on the first
//!   call or on `connect()`), closing it, and what a call does once the client is closed.
//! - [`publish`]: `publish` and `publish_batch` (fail open).
//! - [`subscribe`]: broadcast subscriptions.
//! - [`groups`]: consumer groups: create, consume, stop, acknowledge.
//! - [`trim`]: trimming a stream on demand.
//! - [`status`]: the status snapshot and its background refresh.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::Config;
use crate::status::{Counters, Throttle};

mod groups;
mod publish;
mod session;
mod status;
mod subscribe;
mod trim;

use session::Phase;

/// How long `disconnect()` waits for running callbacks before it stops waiting.
pub const DISCONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// A Redis Streams client: publishing, broadcast subscriptions, status.
///
/// Cheap to share behind an `Arc`; every method takes `&self`. A client that was never
/// connected connects on its first call; calls that start tasks must then run inside a
/// tokio runtime.
pub struct Client {
    config: Arc<Config>,
    counters: Arc<Counters>,
    phase: RwLock<Phase>,
    /// Serializes `connect` and `disconnect`.
    transition: tokio::sync::Mutex<()>,
    /// Throttles the warning of calls that fail open because the client is closed.
    closed_log: Throttle,
}

impl Client {
    /// A client that is not connected yet.
    pub fn new(config: Config) -> Self {
        Client {
            config: Arc::new(config),
            counters: Arc::new(Counters::default()),
            phase: RwLock::new(Phase::Idle),
            transition: tokio::sync::Mutex::new(()),
            closed_log: Throttle::default(),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
