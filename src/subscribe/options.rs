//! The options of one subscription, as a caller gives them and validated.

use std::time::Duration;

use crate::codec::StartId;
use crate::config::{opt_count, opt_ms, MAX_BLOCK_MS};
use crate::error::Result;

/// Options of one subscription.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeOptions {
    /// Where to start reading.
    pub start: StartId,
    /// BLOCK time; the config's default when `None`.
    pub block: Option<Duration>,
    /// COUNT per read; the config's default when `None`.
    pub count: Option<usize>,
}

/// The options of `subscribe` as a caller gives them.
#[derive(Debug, Clone, Default)]
pub struct SubscribeInput {
    /// `"$"`, `"0"` or an id.
    pub start_id: Option<String>,
    /// BLOCK in milliseconds.
    pub block_ms: Option<f64>,
    /// COUNT.
    pub count: Option<f64>,
}

impl SubscribeOptions {
    /// Validates a caller's options.
    ///
    /// # Errors
    /// [`Error::InvalidArg`](crate::Error::InvalidArg) naming the option that is out of range or malformed.
    pub fn from_input(input: SubscribeInput) -> Result<SubscribeOptions> {
        Ok(SubscribeOptions {
            start: match input.start_id.as_deref() {
                Some(s) => s.parse()?,
                None => StartId::Latest,
            },
            block: opt_ms("blockMs", input.block_ms, 1, MAX_BLOCK_MS)?,
            count: opt_count("count", input.count)?,
        })
    }
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            start: StartId::Latest,
            block: None,
            count: None,
        }
    }
}
