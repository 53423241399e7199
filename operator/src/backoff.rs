//! Per-object capped exponential backoff for the error policy: 1 s, 2 s, 4 s, … up to 5 min,
//! back to 1 s after a successful reconcile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Failures in a row, by object.
#[derive(Debug)]
pub struct ErrorBackoff {
    initial: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for ErrorBackoff {
    fn default() -> Self {
        ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

impl ErrorBackoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        ErrorBackoff { initial, max, failures: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // A panic elsewhere while holding the lock leaves a usable map: counters only.
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.lock();
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        let factor = 2u32.saturating_pow(count.saturating_sub(1).min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Forgets `key`'s failures (after a success).
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.lock();
        if !failures.is_empty() {
            failures.remove(key);
        }
    }

    /// How many objects are backing off.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_up_to_the_cap_and_resets_on_success() {
        let backoff = ErrorBackoff::default();
        let delays: Vec<u64> = (0..11).map(|_| backoff.failed("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff.failed("b"), Duration::from_secs(1));
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a"), Duration::from_secs(1));
    }
}
