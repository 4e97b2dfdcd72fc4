//! A consumer's options as a caller gives them, and their validation.

use std::time::Duration;

use crate::codec::check_stream_name;
use crate::config::{opt_count, opt_ms, whole_number, MAX_BLOCK_MS};
use crate::error::{Error, Result};

/// Delay before a failed entry is retried, when `maxDeliveries` asks for retries.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(1000);

/// Options of one consumer.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// XACK each entry whose callback resolved. Defaults to true.
    pub auto_ack: bool,
    /// COUNT per read; the config's default when `None`.
    pub count: Option<usize>,
    /// BLOCK time; the config's default when `None`.
    pub block: Option<Duration>,
    /// Claim entries of any consumer of the group that stayed pending longer than this.
    pub claim_idle: Option<Duration>,
    /// Deliveries after which an entry goes to the dead-letter stream instead of the callback.
    pub max_deliveries: Option<u64>,
    /// Where poison entries go; `<stream>:dead` when `None`.
    pub dead_letter_stream: Option<String>,
    /// With `max_deliveries` and auto-ack: how long a failed entry waits before it is
    /// delivered again.
    pub retry_delay: Duration,
    /// Create the group (from `0`, with MKSTREAM) when it is missing at start or vanishes
    /// while consuming, instead of failing or waiting for someone else to create it.
    pub create_if_missing: bool,
    /// Delete each entry from the stream when it is acknowledged (handled, dead-lettered,
    /// or acknowledged by the caller for this group): a work queue that needs no trimming.
    pub delete_on_ack: bool,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            auto_ack: true,
            count: None,
            block: None,
            claim_idle: None,
            max_deliveries: None,
            dead_letter_stream: None,
            retry_delay: DEFAULT_RETRY_DELAY,
            create_if_missing: false,
            delete_on_ack: false,
        }
    }
}

/// The options of `consumeFromGroup` as a caller gives them.
#[derive(Debug, Clone, Default)]
pub struct ConsumeInput {
    /// See [`ConsumeOptions::auto_ack`].
    pub auto_ack: Option<bool>,
    /// COUNT.
    pub count: Option<f64>,
    /// BLOCK in milliseconds.
    pub block_ms: Option<f64>,
    /// See [`ConsumeOptions::claim_idle`], in milliseconds.
    pub claim_idle_ms: Option<f64>,
    /// See [`ConsumeOptions::max_deliveries`].
    pub max_deliveries: Option<f64>,
    /// See [`ConsumeOptions::dead_letter_stream`].
    pub dead_letter_stream: Option<String>,
    /// See [`ConsumeOptions::retry_delay`], in milliseconds.
    pub retry_delay_ms: Option<f64>,
    /// See [`ConsumeOptions::create_if_missing`].
    pub create_if_missing: Option<bool>,
    /// See [`ConsumeOptions::delete_on_ack`].
    pub delete_on_ack: Option<bool>,
}

impl ConsumeOptions {
    /// Validates a caller's options.
    ///
    /// # Errors
    /// [`Error::InvalidArg`] naming the option that is out of range or malformed.
    pub fn from_input(input: ConsumeInput) -> Result<ConsumeOptions> {
        if let Some(d) = &input.dead_letter_stream {
            check_stream_name(d).map_err(|_| {
                Error::invalid("deadLetterStream", "the stream name is empty or too long")
            })?;
        }
        Ok(ConsumeOptions {
            auto_ack: input.auto_ack.unwrap_or(true),
            count: opt_count("count", input.count)?,
            block: opt_ms("blockMs", input.block_ms, 1, MAX_BLOCK_MS)?,
            claim_idle: opt_ms("claimIdleMs", input.claim_idle_ms, 1, u32::MAX as u64)?,
            max_deliveries: input
                .max_deliveries
                .map(|n| whole_number("maxDeliveries", n, 1, u32::MAX as u64))
                .transpose()?,
            dead_letter_stream: input.dead_letter_stream,
            retry_delay: opt_ms("retryDelayMs", input.retry_delay_ms, 1, u32::MAX as u64)?
                .unwrap_or(DEFAULT_RETRY_DELAY),
            create_if_missing: input.create_if_missing.unwrap_or(false),
            delete_on_ack: input.delete_on_ack.unwrap_or(false),
        })
    }
}

/// Most callbacks of one consumer that may run at once.
pub const MAX_CONCURRENCY: u64 = 10_000;

/// Validates `concurrency` (callbacks of one batch at once; the handler's business).
///
/// # Errors
/// [`Error::InvalidArg`] unless a whole number between 1 and [`MAX_CONCURRENCY`].
pub fn concurrency(v: Option<f64>) -> Result<u32> {
    Ok(
        v.map(|n| whole_number("concurrency", n, 1, MAX_CONCURRENCY))
            .transpose()?
            .unwrap_or(1) as u32,
    )
}

/// Checks a group or consumer name.
///
/// # Errors
/// [`Error::InvalidArg`] when empty.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, format!("the {field} name is empty")));
    }
    Ok(())
}
