//! People first: while the web of the same process is busy, the delivery engine claims at a low
//! rate, so that a large send takes what the people using the app leave.
//!
//! The web counts its requests ([`WebLoad::begin`]); it is busy while it answers many a second
//! (`BORCELLE_WEB_BUSY_REQUESTS_PER_SEC`, counted over quarter seconds) or holds many in flight at
//! once (`BORCELLE_WEB_BUSY_REQUESTS`: a slow database shows there first), and for a second
//! after. One person clicking through pages is far below either. While it is busy the engine
//! claims through a token bucket ([`Pace`]) of its own rate (`BORCELLE_DELIVERY_RATE_WHILE_WEB_BUSY`);
//! a send never stops altogether, so a web that stays busy still lets every note through, slowly.
//!
//! Requests in flight alone missed a saturated web: with both cores busy a request waits in the
//! socket and the scheduler before it is counted, and the few counted at a time stayed under any
//! threshold that one person's page never reaches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long the web counts as busy after it last reached a threshold.
pub const BUSY_HOLD: Duration = Duration::from_secs(1);

/// The window over which requests are counted against the rate threshold.
const WINDOW_MS: u64 = 250;

/// The web's requests in flight, as the delivery engine of the same process sees them.
#[derive(Debug)]
pub struct WebLoad {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Requests in flight at once that make the web busy.
    threshold: usize,
    /// Requests begun in one window that make the web busy.
    per_window: u64,
    /// The current window (milliseconds after `epoch` / [`WINDOW_MS`]) and the requests begun in it.
    window: AtomicU64,
    begun: AtomicU64,
    /// When (milliseconds after `epoch`, plus one; 0: never) the threshold was last reached.
    busy_at: AtomicU64,
}

/// One request in flight, until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<WebLoad>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WebLoad {
    /// Busy from `in_flight` requests at once or `per_sec` requests a second (each at least 1).
    pub fn new(in_flight: usize, per_sec: u32) -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            threshold: in_flight.max(1),
            per_window: (u64::from(per_sec) * WINDOW_MS / 1000).max(1),
            window: AtomicU64::new(0),
            begun: AtomicU64::new(0),
            busy_at: AtomicU64::new(0),
        }
    }

    /// Counts a request, in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let now = self.stamp(Instant::now());
        let window = now / WINDOW_MS;
        let current = self.window.load(Ordering::Relaxed);
        // The first request of a new window starts its count (a request racing it may be counted
        // in either window: close enough for a threshold).
        if current != window
            && self.window.compare_exchange(current, window, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.begun.store(0, Ordering::Relaxed);
        }
        let begun = self.begun.fetch_add(1, Ordering::Relaxed) + 1;
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        if in_flight >= self.threshold || begun >= self.per_window {
            self.busy_at.store(now, Ordering::Relaxed);
        }
        InFlight(Arc::clone(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the web is busy at `now`: the threshold reached now or within [`BUSY_HOLD`].
    pub fn busy(&self, now: Instant) -> bool {
        if self.in_flight() >= self.threshold {
            return true;
        }
        match self.busy_at.load(Ordering::Relaxed) {
            0 => false,
            at => self.stamp(now).saturating_sub(at) < BUSY_HOLD.as_millis() as u64,
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }
}

/// How many rows the engine may claim: all it wants while the web is quiet, a token bucket of
/// `rate` a second (a quarter of a second's worth at once) while it is busy.
#[derive(Debug)]
pub struct Pace {
    web: Arc<WebLoad>,
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    yielding: bool,
}

impl Pace {
    /// `rate`: rows a second while the web is busy (at least 1).
    pub fn new(web: Arc<WebLoad>, rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 4.0).max(1.0);
        Self { web, rate, burst, tokens: burst, last: Instant::now(), yielding: false }
    }

    /// How many of `want` rows may be claimed at `now`.
    pub fn allow(&mut self, want: usize, now: Instant) -> usize {
        let busy = self.web.busy(now);
        if busy != self.yielding {
            self.yielding = busy;
            if busy {
                tracing::debug!(in_flight = self.web.in_flight(), rate = self.rate, "the web is busy: delivery yields");
            } else {
                tracing::debug!("the web is quiet again: delivery at full speed");
            }
        }
        if !busy {
            self.tokens = self.burst;
            self.last = now;
            return want;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        // A claim of a burst's worth (or of all that is wanted) at a time, not one row per token.
        let whole = (self.tokens + 1e-9).floor();
        if whole < self.burst.min(want as f64) { 0 } else { want.min(whole as usize) }
    }

    /// Rows claimed (fewer than allowed when fewer were due).
    pub fn took(&mut self, rows: usize) {
        if self.yielding {
            self.tokens = (self.tokens - rows as f64).max(0.0);
        }
    }

    /// While yielding short of a burst's worth of tokens: when the bucket holds one again.
    pub fn next_claim(&self) -> Option<Instant> {
        let short = self.burst - self.tokens;
        (self.yielding && short > 1e-9)
            .then(|| self.last + Duration::from_secs_f64(short / self.rate).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_web_is_busy_from_the_threshold_and_for_a_second_after() {
        let web = Arc::new(WebLoad::new(3, 1000));
        let first = web.begin();
        let second = web.begin();
        assert!(!web.busy(Instant::now()), "2 requests in flight, threshold 3");
        let third = web.begin();
        assert_eq!(web.in_flight(), 3);
        assert!(web.busy(Instant::now()));
        drop((first, second, third));
        assert_eq!(web.in_flight(), 0);
        assert!(web.busy(Instant::now()), "held for a second after the threshold was last reached");
        tokio::time::advance(BUSY_HOLD - Duration::from_millis(10)).await;
        assert!(web.busy(Instant::now()));
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(!web.busy(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn many_requests_a_second_make_the_web_busy_even_one_at_a_time() {
        // 200 a second: 50 in a quarter second.
        let web = Arc::new(WebLoad::new(8, 200));
        // One person: a page and its requests, one at a time, every few seconds.
        for _ in 0..5 {
            for _ in 0..10 {
                drop(web.begin());
            }
            assert!(!web.busy(Instant::now()), "10 requests are no load");
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        // A load that never has more than one request in flight, at 400 a second.
        for _ in 0..100 {
            drop(web.begin());
            tokio::time::advance(Duration::from_micros(2500)).await;
        }
        assert!(web.busy(Instant::now()), "400 requests a second, one at a time");
        tokio::time::advance(BUSY_HOLD + Duration::from_millis(10)).await;
        assert!(!web.busy(Instant::now()), "quiet a second after the last busy window");
        // 150 a second stays under the threshold.
        for _ in 0..150 {
            drop(web.begin());
            assert!(!web.busy(Instant::now()), "150 requests a second is under 200");
            tokio::time::advance(Duration::from_nanos(6_666_667)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_web_is_busy_claims_follow_the_rate_and_never_stop() {
        let web = Arc::new(WebLoad::new(1, 1000));
        let mut pace = Pace::new(Arc::clone(&web), 100);
        assert_eq!(pace.allow(256, Instant::now()), 256, "quiet web: everything wanted");
        assert_eq!(pace.next_claim(), None);

        let held = web.begin();
        // Ten seconds of a claim loop that takes all it may whenever it may.
        let (start, mut claimed) = (Instant::now(), 0);
        while Instant::now() < start + Duration::from_secs(10) {
            let now = Instant::now();
            let allowed = pace.allow(256, now);
            assert!(allowed == 0 || allowed == 25, "a quarter second's worth at once, got {allowed}");
            pace.took(allowed);
            claimed += allowed;
            match pace.next_claim() {
                Some(at) => {
                    assert!(at > now, "the next claim is in the future");
                    tokio::time::advance(at - now).await;
                }
                None => tokio::time::advance(Duration::from_millis(50)).await,
            }
        }
        assert!((1000..=1025).contains(&claimed), "100 a second for 10 s (plus the first burst), got {claimed}");
        drop(held);

        tokio::time::advance(BUSY_HOLD).await;
        assert_eq!(pace.allow(256, Instant::now()), 256, "full speed once the web is quiet");
    }
}
