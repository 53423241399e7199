//! Event ids: `<milliseconds>-<sequence>`, the shape of Redis stream ids, totally ordered.
//!
//! With Redis the stream assigns them (one order for every process); in process they come from the same rule:
//! the current time in milliseconds, or the last id's millisecond with the next sequence number when the clock has
//! not moved on (or went back), so ids only grow, also across restarts of a process whose clock keeps going.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The id of one event, as clients see it (`"1732451234567-3"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    ms: u64,
    seq: u64,
}

/// A string that is not an event id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an event id looks like 1732451234567-0 (milliseconds, a dash, a sequence number)")]
pub struct InvalidEventId;

impl EventId {
    /// The smallest id: before every event.
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };

    pub const fn new(ms: u64, seq: u64) -> Self {
        Self { ms, seq }
    }

    /// The first id at or after this instant (sequence 0).
    pub fn at_ms(ms: u64) -> Self {
        Self { ms, seq: 0 }
    }

    /// The id that follows `last` at `now_ms`: never smaller than or equal to `last`.
    pub fn next(last: EventId, now_ms: u64) -> Self {
        if now_ms > last.ms {
            Self { ms: now_ms, seq: 0 }
        } else {
            Self { ms: last.ms, seq: last.seq.saturating_add(1) }
        }
    }

    pub fn millis(&self) -> u64 {
        self.ms
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EventId {
    type Err = InvalidEventId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (ms, seq) = text.split_once('-').ok_or(InvalidEventId)?;
        let digits = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidEventId);
            }
            part.parse::<u64>().map_err(|_| InvalidEventId)
        };
        Ok(Self { ms: digits(ms)?, seq: digits(seq)? })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_print_and_parse_like_redis_stream_ids() {
        let id: EventId = "1732451234567-12".parse().unwrap();
        assert_eq!(id, EventId::new(1_732_451_234_567, 12));
        assert_eq!(id.to_string(), "1732451234567-12");
        for bad in ["", "-", "12", "12-", "-3", "a-1", "1-b", "1-2-3", "+1-2", "1 -2", "99999999999999999999-0"] {
            assert_eq!(bad.parse::<EventId>(), Err(InvalidEventId), "{bad:?}");
        }
    }

    #[test]
    fn ids_order_by_time_then_sequence() {
        assert!(EventId::new(5, 9) < EventId::new(6, 0));
        assert!(EventId::new(6, 0) < EventId::new(6, 1));
        assert!(EventId::ZERO < EventId::new(0, 1));
    }

    #[test]
    fn the_next_id_always_grows_even_when_the_clock_does_not() {
        let last = EventId::new(1000, 4);
        assert_eq!(EventId::next(last, 1001), EventId::new(1001, 0));
        assert_eq!(EventId::next(last, 1000), EventId::new(1000, 5));
        assert_eq!(EventId::next(last, 10), EventId::new(1000, 5), "a clock that went back");
    }
}
