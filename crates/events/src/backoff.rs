//! Exponential backoff with jitter: attempt `n` waits between half and all of
//! `base * 2^(n-1)`, capped at `max` ("equal jitter"). The seeds' Go producer called its linear
//! delay exponential and never grew its counter; this one is tested to grow.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
        }
    }

    /// The delay before retry number `attempt` (1 for the first retry), with random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with_jitter(attempt, random_fraction())
    }

    /// The delay for a given jitter in `[0, 1)`: 0 gives half the exponential delay, 1 all of it.
    pub fn delay_with_jitter(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let exponential = self
            .base
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let half = exponential / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A fraction in `[0, 1)` from the standard library's randomly keyed hasher: enough to spread
/// retries apart, without a random-number dependency.
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_per_attempt_within_jitter_bounds() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(60));
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1600)] {
            assert_eq!(
                backoff.delay_with_jitter(attempt, 0.0),
                full * MS / 2,
                "attempt {attempt}"
            );
            assert_eq!(
                backoff.delay_with_jitter(attempt, 1.0),
                full * MS,
                "attempt {attempt}"
            );
            let random = backoff.delay(attempt);
            assert!(
                (full * MS / 2..=full * MS).contains(&random),
                "attempt {attempt}: {random:?}"
            );
        }
    }

    #[test]
    fn delays_are_capped() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(5));
        assert_eq!(backoff.delay_with_jitter(10, 1.0), Duration::from_secs(5));
        assert_eq!(backoff.delay_with_jitter(1000, 1.0), Duration::from_secs(5));
        assert_eq!(
            backoff.delay_with_jitter(1000, 0.0),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn jitter_spreads_retries() {
        let backoff = Backoff::new(100 * MS, Duration::from_secs(60));
        let delays: std::collections::HashSet<_> = (0..50).map(|_| backoff.delay(3)).collect();
        assert!(delays.len() > 10, "jitter should vary: {delays:?}");
    }
}
