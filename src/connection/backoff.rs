//! The reconnect schedule.

use std::time::Duration;

use crate::codec::now_ms;
use crate::config::BackoffConfig;
use crate::status::ConnState;

/// Exponential back-off with a random share ("jitter") taken off each delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    /// A schedule starting at its first delay.
    pub fn new(cfg: BackoffConfig) -> Self {
        Backoff { cfg, attempt: 0 }
    }

    /// Failed attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts the schedule over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt: `initial * factor^attempt`, capped, minus up to
    /// `jitter` of itself so that many clients do not retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.cfg.factor.powi(self.attempt.min(64) as i32);
        let base = (self.cfg.initial.as_secs_f64() * exp).min(self.cfg.max.as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        let cut = base * self.cfg.jitter * fastrand::f64();
        Duration::from_secs_f64((base - cut).max(0.0))
    }

    /// The state to show while waiting `delay` for the next attempt, after the last one
    /// failed with `last_error`.
    pub fn reconnecting(
        &self,
        delay: Duration,
        last_error: String,
        last_error_code: &'static str,
    ) -> ConnState {
        reconnecting(self.attempt, delay, last_error, last_error_code)
    }
}

/// The state of a connection that is down: `attempt` attempts have failed since the last
/// success, and the next one starts after `delay`.
pub fn reconnecting(
    attempt: u32,
    delay: Duration,
    last_error: String,
    last_error_code: &'static str,
) -> ConnState {
    ConnState::Reconnecting {
        attempt,
        next_retry_at_ms: now_ms() + delay.as_millis() as u64,
        last_error,
        last_error_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            factor: 2.0,
            jitter,
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(cfg(0.0));
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempt(), 6);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_only_shortens_within_its_share() {
        let mut b = Backoff::new(cfg(0.5));
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }
}
