//! Cron schedules in a time zone: parsing and the next occurrence after an instant.
//!
//! Five fields (minute hour day-of-month month day-of-week) or `@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@yearly`. Occurrences are computed in local time and then placed on the timeline:
//! - a local time that does not exist (the clock jumps forward) runs once, at the first instant
//!   after the gap;
//! - a local time that happens twice (the clock goes back) runs once, at its first instance.
//!
//! Placing local times this way never moves a later local time before an earlier one, so
//! occurrences strictly increase and no instant runs twice.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead an occurrence is searched for (a schedule such as "30 February" never occurs).
const SEARCH_DAYS: i64 = 366 * 8 + 2;

/// Why a schedule or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "a schedule has five fields (minute hour day-of-month month day-of-week) or is one of @hourly, @daily, @weekly, @monthly, @yearly; got {0:?}"
    )]
    Shape(String),
    #[error("{field} field {value:?}: {reason}")]
    Field { field: &'static str, value: String, reason: String },
    #[error("the schedule {0:?} never occurs")]
    Never(String),
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Berlin or America/New_York")]
    UnknownTimeZone(String),
}

/// A parsed cron schedule.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    source: String,
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Whether day-of-month / day-of-week were `*` (cron ORs the two only when both are restricted).
    any_day_of_month: bool,
    any_day_of_week: bool,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.source)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

fn parse_value(spec: &FieldSpec, raw: &str) -> Result<u32, String> {
    let lower = raw.to_ascii_lowercase();
    if let Some(index) = spec.names.iter().position(|n| *n == lower) {
        return Ok(spec.min + index as u32);
    }
    let value: u32 = raw.parse().map_err(|_| format!("{raw:?} is not a number"))?;
    if value < spec.min || value > spec.max {
        return Err(format!("{value} is outside {}-{}", spec.min, spec.max));
    }
    Ok(value)
}

/// Parses one field into a bit set of allowed values.
fn parse_field(spec: &FieldSpec, raw: &str) -> Result<(u64, bool), ScheduleError> {
    let err = |reason: String| ScheduleError::Field { field: spec.name, value: raw.to_owned(), reason };
    let mut bits = 0u64;
    for part in raw.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| err(format!("step {step:?} is not a number")))?;
                // A step past the field's span could only ever give its first value (and once
                // overflowed the arithmetic, adding values that were never asked for).
                let span = spec.max - spec.min;
                if step == 0 || step > span {
                    return Err(err(format!("a step must be between 1 and {span}")));
                }
                (range, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(spec, a).map_err(&err)?, parse_value(spec, b).map_err(&err)?);
            if a > b {
                return Err(err(format!("range {a}-{b} runs backwards")));
            }
            (a, b)
        } else {
            let value = parse_value(spec, range).map_err(&err)?;
            // `5/15` means from 5 to the end, every 15.
            (value, if part.contains('/') { spec.max } else { value })
        };
        let mut value = from;
        while value <= to {
            bits |= 1 << value;
            let Some(next) = value.checked_add(step) else { break };
            value = next;
        }
    }
    Ok((bits, raw == "*" || raw == "?"))
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let source = raw.trim().to_owned();
        let expanded = match source.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            other if other.starts_with('@') => return Err(ScheduleError::Shape(source)),
            _ => source.clone(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else { return Err(ScheduleError::Shape(source)) };
        let (minutes, _) = parse_field(&FieldSpec { name: "minute", min: 0, max: 59, names: &[] }, minute)?;
        let (hours, _) = parse_field(&FieldSpec { name: "hour", min: 0, max: 23, names: &[] }, hour)?;
        let (days_of_month, any_dom) =
            parse_field(&FieldSpec { name: "day-of-month", min: 1, max: 31, names: &[] }, dom)?;
        let (months, _) = parse_field(&FieldSpec { name: "month", min: 1, max: 12, names: &MONTHS }, month)?;
        let (mut days_of_week, any_dow) =
            parse_field(&FieldSpec { name: "day-of-week", min: 0, max: 7, names: &WEEKDAYS }, dow)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7f; // 7 is Sunday too
        }
        let schedule = Schedule {
            source: source.clone(),
            minutes,
            hours: hours as u32,
            days_of_month: days_of_month as u32,
            months: months as u16,
            days_of_week: days_of_week as u8,
            any_day_of_month: any_dom,
            any_day_of_week: any_dow,
        };
        let probe = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().map(|t| schedule.next_after(t, chrono_tz::UTC));
        match probe {
            Some(Some(_)) => Ok(schedule),
            _ => Err(ScheduleError::Never(source)),
        }
    }
}

/// Parses an IANA time zone name, exactly as [`time_zone_names`] spells it.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))
}

/// Every time zone name [`parse_time_zone`] reads (the IANA database's, aliases included).
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// Places a local time on the timeline: its first instance if it happens twice, the first
/// instant after the gap if it does not exist.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // Walk forward a minute at a time to the end of the gap (gaps last at most a few hours).
            let mut probe = local;
            for _ in 0..(26 * 60) {
                probe += Duration::minutes(1);
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(t) => return Some(first_instant_at_or_after_gap(tz, t.with_timezone(&Utc))),
                    LocalResult::Ambiguous(first, _) => {
                        return Some(first_instant_at_or_after_gap(tz, first.with_timezone(&Utc)));
                    }
                    LocalResult::None => {}
                }
            }
            None
        }
    }
}

/// Steps back from an instant after a gap to the gap's end (the transition), which may lie
/// between whole minutes of local time in zones with odd offsets.
fn first_instant_at_or_after_gap(tz: Tz, after_gap: DateTime<Utc>) -> DateTime<Utc> {
    let mut t = after_gap;
    loop {
        let earlier = t - Duration::seconds(1);
        let offset_changed =
            tz.offset_from_utc_datetime(&earlier.naive_utc()) != tz.offset_from_utc_datetime(&t.naive_utc());
        if offset_changed || (after_gap - earlier) > Duration::hours(26) {
            return t;
        }
        t = earlier;
    }
}

impl Schedule {
    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day_of_month, self.any_day_of_week) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first occurrence strictly after `after`, in time zone `tz`.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Placing local times never moves one before an earlier one, and only a gap moves one
        // forward (to the gap's end, which lies after any local time before the gap). So no local
        // time before `after`'s own can land after it: the search starts at that minute.
        let floor = after.with_timezone(&tz).naive_local() - Duration::minutes(1);
        let start = floor.date();
        for offset in 0..SEARCH_DAYS {
            let date = start + Duration::days(offset);
            if !self.day_matches(date) {
                continue;
            }
            for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                    let Some(time) = NaiveTime::from_hms_opt(hour, minute, 0) else { continue };
                    let local = date.and_time(time);
                    if local < floor {
                        continue;
                    }
                    if let Some(instant) = resolve_local(tz, local)
                        && instant > after
                    {
                        return Some(instant);
                    }
                }
            }
        }
        None
    }

    /// Occurrences strictly after `after`, in order.
    pub fn occurrences(&self, after: DateTime<Utc>, tz: Tz) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after, tz), move |t| self.next_after(*t, tz))
    }
}
