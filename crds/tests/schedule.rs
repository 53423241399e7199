//! Schedule semantics: cron parsing, DST in Europe/Berlin and America/New_York, missed runs,
//! deadlines, concurrency policies and suspend, plus properties that hold for any schedule.

#![allow(clippy::unwrap_used)] // test helpers fail loudly by design

use borcelle_crds::decide::{ConcurrencyPolicy, Decision, MAX_MISSED, Missed, Observed, Policy, SkipReason, decide};
use borcelle_crds::schedule::{Schedule, ScheduleError, parse_time_zone};
use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn schedule(s: &str) -> Schedule {
    s.parse().unwrap()
}

fn next_n(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
    let tz = parse_time_zone(tz).unwrap();
    schedule(expr).occurrences(utc(after), tz).take(n).map(|t| t.format("%Y-%m-%dT%H:%MZ").to_string()).collect()
}

#[test]
fn fields_ranges_steps_lists_and_names_parse() {
    assert_eq!(
        next_n("*/15 9-10 * * MON-FRI", "UTC", "2026-11-27T10:40:00Z", 3),
        ["2026-11-27T10:45Z", "2026-11-30T09:00Z", "2026-11-30T09:15Z"]
    );
    assert_eq!(
        next_n("0 12 1,15 jan,Jul *", "UTC", "2026-06-20T00:00:00Z", 2),
        ["2026-07-01T12:00Z", "2026-07-15T12:00Z"]
    );
    assert_eq!(
        next_n("5/20 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
        ["2026-01-01T00:05Z", "2026-01-01T00:25Z", "2026-01-01T00:45Z"]
    );
    // 7 is Sunday as well as 0.
    assert_eq!(next_n("0 8 * * 7", "UTC", "2026-11-24T00:00:00Z", 1), ["2026-11-29T08:00Z"]);
    // Day-of-month and day-of-week both restricted: either matches (cron's rule).
    assert_eq!(
        next_n("0 0 13 * 5", "UTC", "2026-11-10T00:00:00Z", 3),
        ["2026-11-13T00:00Z", "2026-11-20T00:00Z", "2026-11-27T00:00Z"]
    );
}

#[test]
fn macros_expand_to_their_schedules() {
    assert_eq!(next_n("@hourly", "UTC", "2026-11-24T10:20:00Z", 1), ["2026-11-24T11:00Z"]);
    assert_eq!(next_n("@daily", "UTC", "2026-11-24T10:20:00Z", 1), ["2026-11-25T00:00Z"]);
    assert_eq!(next_n("@weekly", "UTC", "2026-11-24T10:20:00Z", 1), ["2026-11-29T00:00Z"]);
    assert_eq!(next_n("@monthly", "UTC", "2026-11-24T10:20:00Z", 1), ["2026-12-01T00:00Z"]);
    assert_eq!(next_n("@yearly", "UTC", "2026-11-24T10:20:00Z", 1), ["2027-01-01T00:00Z"]);
    assert_eq!(next_n("0 0 29 2 *", "UTC", "2026-11-24T00:00:00Z", 1), ["2028-02-29T00:00Z"]);
}

#[test]
fn bad_schedules_and_zones_are_refused_with_the_reason() {
    assert!(matches!("* * *".parse::<Schedule>(), Err(ScheduleError::Shape(_))));
    assert!(matches!("@fortnightly".parse::<Schedule>(), Err(ScheduleError::Shape(_))));
    assert!(matches!("61 * * * *".parse::<Schedule>(), Err(ScheduleError::Field { field: "minute", .. })));
    assert!(matches!("* 24 * * *".parse::<Schedule>(), Err(ScheduleError::Field { field: "hour", .. })));
    assert!(matches!("*/0 * * * *".parse::<Schedule>(), Err(ScheduleError::Field { .. })));
    // A step past the field's span: once accepted, and its overflow added minute 0.
    let overflow = "1/4294967295 * * * *".parse::<Schedule>().unwrap_err();
    assert!(overflow.to_string().contains("a step must be between 1 and 59"), "{overflow}");
    assert!(matches!("*/60 * * * *".parse::<Schedule>(), Err(ScheduleError::Field { field: "minute", .. })));
    assert!(matches!("0 */24 * * *".parse::<Schedule>(), Err(ScheduleError::Field { field: "hour", .. })));
    assert!(matches!("0 0 1 */12 *".parse::<Schedule>(), Err(ScheduleError::Field { field: "month", .. })));
    assert!(matches!("0 0 10-5 * *".parse::<Schedule>(), Err(ScheduleError::Field { .. })));
    assert!(matches!("0 0 * smarch *".parse::<Schedule>(), Err(ScheduleError::Field { field: "month", .. })));
    assert!(matches!("0 0 30 2 *".parse::<Schedule>(), Err(ScheduleError::Never(_))));
    assert!(matches!(parse_time_zone("Mars/Olympus_Mons"), Err(ScheduleError::UnknownTimeZone(_))));
    assert!(parse_time_zone("Europe/Berlin").is_ok());
}

#[test]
fn berlin_spring_forward_runs_a_missing_local_time_once_at_the_end_of_the_gap() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    assert_eq!(
        next_n("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 3),
        ["2026-03-29T01:00Z", "2026-03-30T00:30Z", "2026-03-31T00:30Z"]
    );
    // Half-hourly: 02:00 and 02:30 do not exist and fold into one run at 03:00 CEST, not three.
    assert_eq!(
        next_n("*/30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 4),
        ["2026-03-29T00:30Z", "2026-03-29T01:00Z", "2026-03-29T01:30Z", "2026-03-29T02:00Z"]
    );
}

#[test]
fn berlin_fall_back_runs_a_repeated_local_time_once() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice (00:30 and 01:30 UTC).
    assert_eq!(
        next_n("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30Z", "2026-10-26T01:30Z"]
    );
    assert_eq!(
        next_n("0 * * * *", "Europe/Berlin", "2026-10-24T21:30:00Z", 5),
        ["2026-10-24T22:00Z", "2026-10-24T23:00Z", "2026-10-25T00:00Z", "2026-10-25T02:00Z", "2026-10-25T03:00Z"]
    );
}

#[test]
fn new_york_transitions_follow_the_same_rules() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    assert_eq!(
        next_n("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00Z", "2026-03-09T06:30Z"]
    );
    // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice (05:30 and 06:30 UTC).
    assert_eq!(
        next_n("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30Z", "2026-11-02T06:30Z"]
    );
    // A daily 09:00 stays at 09:00 local across the change.
    assert_eq!(
        next_n("0 9 * * *", "America/New_York", "2026-10-31T00:00:00Z", 3),
        ["2026-10-31T13:00Z", "2026-11-01T14:00Z", "2026-11-02T14:00Z"]
    );
}

fn observed(created: &str, last: Option<&str>, active: usize) -> Observed {
    Observed { created: utc(created), last_scheduled: last.map(utc), active_runs: active }
}

const UTC_TZ: Tz = chrono_tz::UTC;

#[test]
fn nothing_due_waits_for_the_next_occurrence() {
    let d = decide(
        &schedule("0 * * * *"),
        UTC_TZ,
        &Policy::default(),
        &observed("2026-11-24T10:00:00Z", Some("2026-11-24T10:00:00Z"), 0),
        utc("2026-11-24T10:30:00Z"),
    );
    assert_eq!(d, Decision::Wait { next: Some(utc("2026-11-24T11:00:00Z")) });
}

#[test]
fn a_due_occurrence_starts_and_says_when_to_look_again() {
    let d = decide(
        &schedule("0 * * * *"),
        UTC_TZ,
        &Policy::default(),
        &observed("2026-11-24T09:30:00Z", Some("2026-11-24T10:00:00Z"), 0),
        utc("2026-11-24T11:00:05Z"),
    );
    assert_eq!(
        d,
        Decision::Start {
            scheduled: utc("2026-11-24T11:00:00Z"),
            replace_active: false,
            missed: Missed::default(),
            next: Some(utc("2026-11-24T12:00:00Z"))
        }
    );
}

#[test]
fn nothing_before_creation_is_due() {
    let d = decide(
        &schedule("0 * * * *"),
        UTC_TZ,
        &Policy::default(),
        &observed("2026-11-24T10:30:00Z", None, 0),
        utc("2026-11-24T10:59:00Z"),
    );
    assert!(matches!(d, Decision::Wait { .. }));
}

#[test]
fn after_a_three_day_outage_only_the_most_recent_occurrence_runs() {
    let hourly = schedule("0 * * * *");
    let seen = observed("2026-11-01T00:00:00Z", Some("2026-11-21T10:00:00Z"), 0);
    let now = utc("2026-11-24T10:02:00Z");
    let d = decide(&hourly, UTC_TZ, &Policy::default(), &seen, now);
    assert_eq!(d.handled(), Some(utc("2026-11-24T10:00:00Z")));
    let Decision::Start { missed, .. } = d else { panic!("{d:?}") };
    assert_eq!(missed, Missed { count: 71, too_many: false }, "72 were due, 71 are reported missed");

    // With a 5-minute starting deadline the latest still starts at 10:02…
    let policy = Policy { starting_deadline: Some(Duration::seconds(300)), ..Policy::default() };
    assert!(matches!(decide(&hourly, UTC_TZ, &policy, &seen, now), Decision::Start { .. }));
    // …but not at 10:06: it is skipped as a missed schedule.
    let late = decide(&hourly, UTC_TZ, &policy, &seen, utc("2026-11-24T10:06:00Z"));
    assert!(matches!(late, Decision::Skip { reason: SkipReason::DeadlinePassed, .. }), "{late:?}");
}

#[test]
fn more_than_a_hundred_missed_is_reported_and_the_latest_still_runs() {
    let every_minute = schedule("* * * * *");
    let seen = observed("2026-11-01T00:00:00Z", Some("2026-11-24T07:00:00Z"), 0);
    let d = decide(&every_minute, UTC_TZ, &Policy::default(), &seen, utc("2026-11-24T10:00:30Z"));
    let Decision::Start { scheduled, missed, .. } = d else { panic!("{d:?}") };
    assert_eq!(scheduled, utc("2026-11-24T10:00:00Z"));
    assert!(missed.too_many && missed.count > MAX_MISSED);
}

#[test]
fn forbid_skips_while_a_run_is_active_replace_replaces_and_allow_overlaps() {
    let hourly = schedule("0 * * * *");
    let busy = observed("2026-11-24T00:00:00Z", Some("2026-11-24T10:00:00Z"), 1);
    let now = utc("2026-11-24T11:00:01Z");
    let forbid = Policy { concurrency: ConcurrencyPolicy::Forbid, ..Policy::default() };
    assert!(matches!(
        decide(&hourly, UTC_TZ, &forbid, &busy, now),
        Decision::Skip { reason: SkipReason::RunAlreadyActive, .. }
    ));
    let replace = Policy { concurrency: ConcurrencyPolicy::Replace, ..Policy::default() };
    assert!(matches!(decide(&hourly, UTC_TZ, &replace, &busy, now), Decision::Start { replace_active: true, .. }));
    assert!(matches!(
        decide(&hourly, UTC_TZ, &Policy::default(), &busy, now),
        Decision::Start { replace_active: false, .. }
    ));
    let idle = observed("2026-11-24T00:00:00Z", Some("2026-11-24T10:00:00Z"), 0);
    assert!(
        matches!(decide(&hourly, UTC_TZ, &forbid, &idle, now), Decision::Start { .. }),
        "Forbid only matters while a run is active"
    );
}

#[test]
fn suspend_stops_new_runs_and_resuming_catches_up_within_the_deadline() {
    let hourly = schedule("0 * * * *");
    let seen = observed("2026-11-24T00:00:00Z", Some("2026-11-24T09:00:00Z"), 1);
    let now = utc("2026-11-24T11:00:30Z");
    let suspended = Policy { suspend: true, ..Policy::default() };
    assert_eq!(
        decide(&hourly, UTC_TZ, &suspended, &seen, now),
        Decision::Suspended { due: Some(utc("2026-11-24T11:00:00Z")), next: Some(utc("2026-11-24T12:00:00Z")) }
    );
    // Resumed: the latest missed run starts (the active one is not touched by suspend).
    assert!(matches!(decide(&hourly, UTC_TZ, &Policy::default(), &seen, now), Decision::Start { .. }));
    let strict = Policy { starting_deadline: Some(Duration::seconds(10)), ..Policy::default() };
    assert!(matches!(
        decide(&hourly, UTC_TZ, &strict, &seen, now),
        Decision::Skip { reason: SkipReason::DeadlinePassed, .. }
    ));
}

const ZONES: [&str; 6] =
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"];
const EXPRESSIONS: [&str; 8] =
    ["* * * * *", "*/7 * * * *", "30 2 * * *", "0 1-3 * * *", "15,45 * * * 1-5", "0 0 1 * *", "@hourly", "0 9 * * 0"];

fn arb_instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2025-01-01 .. 2028-01-01, to cover several DST transitions in every zone.
    (1_735_689_600i64..1_830_297_600i64).prop_map(|secs| Utc.timestamp_opt(secs, 0).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn occurrences_strictly_increase_and_never_repeat_a_local_time(
        expr in prop::sample::select(&EXPRESSIONS[..]),
        zone in prop::sample::select(&ZONES[..]),
        start in arb_instant(),
    ) {
        let tz = parse_time_zone(zone).unwrap();
        let occurrences: Vec<_> = schedule(expr).occurrences(start, tz).take(60).collect();
        prop_assert!(occurrences.first().is_some_and(|t| *t > start));
        for pair in occurrences.windows(2) {
            prop_assert!(pair[0] < pair[1], "{} not before {}", pair[0], pair[1]);
        }
        let mut locals: Vec<_> = occurrences.iter().map(|t| t.with_timezone(&tz).naive_local()).collect();
        locals.sort();
        locals.dedup();
        prop_assert_eq!(locals.len(), occurrences.len(), "a local time ran twice");
    }

    #[test]
    fn extra_reconciles_never_change_which_runs_start(
        expr in prop::sample::select(&EXPRESSIONS[..]),
        zone in prop::sample::select(&ZONES[..]),
        start in arb_instant(),
        extra in prop::collection::vec(1i64..3_000, 0..40),
        forbid in any::<bool>(),
    ) {
        let tz = parse_time_zone(zone).unwrap();
        let sched = schedule(expr);
        let policy = Policy {
            concurrency: if forbid { ConcurrencyPolicy::Forbid } else { ConcurrencyPolicy::Allow },
            starting_deadline: Some(Duration::seconds(120)),
            ..Policy::default()
        };
        let end = start + Duration::hours(30);
        // Runs last 50 minutes; a reconcile at each requested time, plus arbitrary extra ones.
        let simulate = |extra_offsets: &[i64]| {
            let mut seen = Observed { created: start, last_scheduled: None, active_runs: 0 };
            let mut runs: Vec<(DateTime<Utc>, bool)> = Vec::new();
            let mut started = Vec::new();
            let mut extras: Vec<DateTime<Utc>> = extra_offsets.iter().scan(start, |t, s| { *t += Duration::seconds(*s * 30); Some(*t) }).collect();
            let mut now = start;
            while now < end {
                seen.active_runs = runs.iter().filter(|(at, _)| *at + Duration::minutes(50) > now).count();
                let d = decide(&sched, tz, &policy, &seen, now);
                if let Decision::Start { scheduled, .. } = d { started.push(scheduled); runs.push((now, true)); }
                if let Some(handled) = d.handled() { seen.last_scheduled = Some(handled); }
                let next_due = d.next().unwrap_or(end);
                let run_ends = runs.iter().map(|(at, _)| *at + Duration::minutes(50)).filter(|t| *t > now).min().unwrap_or(end);
                extras.retain(|t| *t > now);
                now = [next_due, run_ends, extras.first().copied().unwrap_or(end), end].into_iter().min().unwrap_or(end);
            }
            started
        };
        prop_assert_eq!(simulate(&[]), simulate(&extra));
    }
}

proptest! {
    /// For every field and every step: within the field's span, `from/step` holds exactly the
    /// values from `from` to the field's end `step` apart; beyond it (up to u32::MAX), the schedule
    /// is refused with the allowed steps, never wrapped into values nobody asked for.
    #[test]
    fn steps_give_exactly_their_values_or_are_refused(field in 0usize..5, from_offset in 0u32..60, step in prop_oneof![1u32..80, any::<u32>()]) {
        let (min, max) = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)][field];
        let from = min + from_offset % (max - min + 1);
        let mut parts = ["0", "0", "1", "1", "*"];
        let expr = format!("{from}/{step}");
        parts[field] = &expr;
        let parsed = parts.join(" ").parse::<Schedule>();
        if step > max - min {
            let err = parsed.unwrap_err();
            prop_assert!(err.to_string().contains(&format!("a step must be between 1 and {}", max - min)), "{}", err);
        } else if field < 2 {
            // Minutes and hours: the next runs of a day show exactly the stepped values.
            let schedule = parsed.unwrap();
            let day = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap() - Duration::seconds(1);
            let runs: Vec<u32> = schedule
                .occurrences(day, Tz::UTC)
                .take_while(|t| *t < day + Duration::days(1))
                .map(|t| if field == 0 { chrono::Timelike::minute(&t) } else { chrono::Timelike::hour(&t) })
                .collect();
            let expected: Vec<u32> = (from..=max).step_by(step as usize).collect();
            prop_assert_eq!(runs, expected);
        } else {
            prop_assert!(parsed.is_ok() || matches!(parsed, Err(ScheduleError::Never(_))));
        }
    }
}
