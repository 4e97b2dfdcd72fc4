//! Throttling of a repeated warning, so an outage logs a line per second, not per call.

use std::sync::atomic::{AtomicU64, Ordering};

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
