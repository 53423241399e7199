//! The in-process retention of recent events, for replay to a client that reconnects: a bounded ring, in id order.

use std::collections::VecDeque;
use std::sync::Arc;

use super::id::EventId;
use super::{Event, Retention, Unresumable};

/// The last events, oldest first, and the newest id that is no longer kept (everything after it is).
pub(super) struct Ring {
    events: VecDeque<Arc<Event>>,
    /// Replay after an id older than this would miss events: they were evicted (or predate the process).
    floor: EventId,
    retention: Retention,
    /// What the kept events take.
    bytes: usize,
}

impl Ring {
    /// Empty, with the floor at `start`: an id from before it belongs to an earlier process.
    pub(super) fn new(start: EventId, retention: Retention) -> Self {
        Self { events: VecDeque::new(), floor: start, retention, bytes: 0 }
    }

    /// Keeps an event whose id is larger than every kept one, evicting by count, size and age.
    pub(super) fn push(&mut self, event: Arc<Event>, now_ms: u64) {
        self.bytes += event.size();
        self.events.push_back(event);
        let oldest_kept = now_ms.saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        while let Some(front) = self.events.front() {
            let too_many = self.events.len() > self.retention.max_events || self.bytes > self.retention.max_bytes;
            let too_old = front.id.is_some_and(|id| id.millis() < oldest_kept);
            if !(too_many || too_old) {
                break;
            }
            if let Some(evicted) = self.events.pop_front() {
                self.bytes = self.bytes.saturating_sub(evicted.size());
                if let Some(id) = evicted.id {
                    self.floor = self.floor.max(id);
                }
            }
        }
    }

    /// How many events are kept, and what they take.
    pub(super) fn retained(&self) -> (usize, usize) {
        (self.events.len(), self.bytes)
    }

    /// Every kept event after `after`, oldest first, or why that cannot be complete. `head` is the newest id given.
    pub(super) fn after(&self, after: EventId, head: EventId) -> Result<Vec<Arc<Event>>, Unresumable> {
        if after > head {
            return Err(Unresumable::Unknown);
        }
        if after < self.floor {
            return Err(Unresumable::TooOld);
        }
        let start = self.events.partition_point(|e| e.id.is_some_and(|id| id <= after));
        Ok(self.events.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::events::{Envelope, LiveEvent};

    fn event(ms: u64, seq: u64) -> Arc<Event> {
        let resync = LiveEvent::Resync { reason: "test".into() };
        Arc::new(Event::numbered(EventId::new(ms, seq), Envelope::to_all(&resync)))
    }

    fn ids(events: &[Arc<Event>]) -> Vec<String> {
        events.iter().map(|e| e.id.unwrap().to_string()).collect()
    }

    #[test]
    fn replay_gives_what_came_after_an_id_and_refuses_what_was_evicted() {
        let retention = Retention { max_events: 3, max_age: Duration::from_secs(3600), max_bytes: usize::MAX };
        let mut ring = Ring::new(EventId::new(100, 0), retention);
        for seq in 1..=5 {
            ring.push(event(100, seq), 100);
        }
        let head = EventId::new(100, 5);
        assert_eq!(ids(&ring.after(EventId::new(100, 2), head).unwrap()), ["100-3", "100-4", "100-5"]);
        assert_eq!(ids(&ring.after(EventId::new(100, 4), head).unwrap()), ["100-5"]);
        assert!(ring.after(head, head).unwrap().is_empty());
        assert_eq!(ring.after(EventId::new(100, 1), head).unwrap_err(), Unresumable::TooOld, "100-2 was evicted");
        assert_eq!(ring.after(EventId::new(99, 0), head).unwrap_err(), Unresumable::TooOld, "an earlier process");
        assert_eq!(ring.after(EventId::new(100, 6), head).unwrap_err(), Unresumable::Unknown, "not given yet");
    }

    #[test]
    fn the_kept_events_never_take_more_than_the_byte_limit() {
        let one = event(1, 10).size();
        let retention = Retention { max_events: 100, max_age: Duration::from_secs(3600), max_bytes: 3 * one };
        let mut ring = Ring::new(EventId::new(1, 0), retention);
        for seq in 1..=10 {
            ring.push(event(1, seq), 1);
            assert!(ring.bytes <= 3 * one);
        }
        assert_eq!(ids(&ring.after(EventId::new(1, 7), EventId::new(1, 10)).unwrap()), ["1-8", "1-9", "1-10"]);
        assert_eq!(ring.after(EventId::new(1, 6), EventId::new(1, 10)).unwrap_err(), Unresumable::TooOld);
    }

    #[test]
    fn events_older_than_the_age_limit_are_evicted() {
        let retention = Retention { max_events: 100, max_age: Duration::from_secs(1), max_bytes: usize::MAX };
        let mut ring = Ring::new(EventId::new(1_000, 0), retention);
        ring.push(event(1_000, 1), 1_000);
        ring.push(event(1_500, 0), 1_500);
        ring.push(event(2_200, 0), 2_200);
        let head = EventId::new(2_200, 0);
        assert_eq!(ring.after(EventId::new(1_000, 0), head).unwrap_err(), Unresumable::TooOld, "1000-1 is gone");
        assert_eq!(ids(&ring.after(EventId::new(1_000, 1), head).unwrap()), ["1500-0", "2200-0"]);
    }
}
