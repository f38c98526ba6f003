//! Flood protection: a token bucket per sender.
//!
//! Servers shape their own clients, but a component also receives traffic from federated
//! servers and from other components. One sender over its rate has its excess stanzas
//! refused before any handler runs (IQ requests get `resource-constraint`, the rest are
//! dropped), so a presence storm or a script gone wrong cannot starve everyone else.
//! Pure logic with explicit time, so it is tested without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Senders idle this long are forgotten (their bucket would be full again anyway).
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// How many checks between sweeps of forgotten senders.
const SWEEP_EVERY: u32 = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Whether this sender's current excess has already been logged.
    reported: bool,
}

/// What the limiter decided for one stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the rate.
    Allow,
    /// Over the rate; `first` is true for the first refusal of a burst (log it once).
    Refuse {
        /// First refusal since the sender was last within its rate.
        first: bool,
    },
}

/// Token buckets keyed by a hash of the sender's JID.
#[derive(Debug)]
pub(crate) struct FloodGuard {
    rate: f64,
    burst: f64,
    buckets: HashMap<u64, Bucket>,
    checks: u32,
}

impl FloodGuard {
    /// `rate` stanzas per second sustained, bursts up to `burst`; a rate of 0 disables it.
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        FloodGuard {
            rate,
            burst: burst.max(1.0),
            buckets: HashMap::new(),
            checks: 0,
        }
    }

    /// Charges one stanza from `sender` at time `now`.
    pub(crate) fn check(&mut self, sender: u64, now: Instant) -> Verdict {
        if self.rate <= 0.0 {
            return Verdict::Allow;
        }
        self.checks = self.checks.wrapping_add(1);
        if self.checks.is_multiple_of(SWEEP_EVERY) {
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.last) < FORGET_AFTER);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(sender).or_insert(Bucket {
            tokens: burst,
            last: now,
            reported: false,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.reported = false;
            Verdict::Allow
        } else {
            let first = !bucket.reported;
            bucket.reported = true;
            Verdict::Refuse { first }
        }
    }

    /// Senders currently tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_the_sustained_rate() {
        let mut guard = FloodGuard::new(10.0, 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(guard.check(1, t0), Verdict::Allow);
        }
        assert_eq!(guard.check(1, t0), Verdict::Refuse { first: true });
        assert_eq!(guard.check(1, t0), Verdict::Refuse { first: false });
        // Another sender is unaffected.
        assert_eq!(guard.check(2, t0), Verdict::Allow);
        // 100 ms later one token (10/s) is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(guard.check(1, t1), Verdict::Allow);
        assert_eq!(guard.check(1, t1), Verdict::Refuse { first: true });
    }

    #[test]
    fn zero_rate_disables_and_idle_senders_are_forgotten() {
        let mut off = FloodGuard::new(0.0, 1.0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(off.check(1, t0), Verdict::Allow);
        }
        let mut guard = FloodGuard::new(1.0, 1.0);
        for sender in 0..100 {
            guard.check(sender, t0);
        }
        assert_eq!(guard.tracked(), 100);
        let later = t0 + FORGET_AFTER + Duration::from_secs(1);
        for _ in 0..SWEEP_EVERY {
            guard.check(7777, later);
        }
        assert_eq!(guard.tracked(), 1);
    }
}
