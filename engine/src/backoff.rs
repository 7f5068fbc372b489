//! smelt's one retry policy: exponential backoff with jitter, for a stage's
//! split retries, scheduled run attempts, HTTP fetches and translation
//! requests alike.
//!
//! ```text
//! wait after n failures = min(base · 2^(n-1), max) · (1/2 + jitter/2),   jitter in [0, 1)
//! ```
//! The jitter spreads retries of many splits, runs or requests that failed
//! together so that they do not fire in lockstep.

use std::time::Duration;

/// Exponential backoff with a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure (before jitter).
    pub base: Duration,
    /// No wait grows past this (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// A backoff starting at `base`, doubling, capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The wait before attempt `failures + 1` after `failures` failed ones
    /// (`failures` >= 1), scaled into `[1/2, 1]` of itself by `jitter`
    /// (a number in `[0, 1)`, see [`jitter`]).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << failures.saturating_sub(1).min(20)).min(self.max);
        exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// A jitter in `[0, 1)` drawn from the clock and `salt` (a run, split or URL).
pub fn jitter(salt: &str) -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let h = xxhash_rust::xxh3::xxh3_64(format!("{salt}/{nanos}").as_bytes());
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_a_cap() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(3600));
        assert_eq!(b.delay(1, 0.999_999).as_secs(), 9);
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(20));
        assert_eq!(b.delay(30, 0.0), Duration::from_secs(1800));
        let j = jitter("x");
        assert!((0.0..1.0).contains(&j));
    }
}
