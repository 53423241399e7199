//! What a scheduler (the operator, or `serve`'s in-process scheduler) does at an instant: the
//! CronJob rules of missed runs, starting deadline, concurrency policy and suspend, as one pure
//! function of the schedule, the policy, what has been observed and the current time.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::schedule::Schedule;

/// More missed occurrences than this are reported as `TooManyMissedTimes`.
pub const MAX_MISSED: usize = 100;

/// What to do when an occurrence is due while an earlier run is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start it anyway.
    #[default]
    Allow,
    /// Skip it (reported as `JobAlreadyActive`).
    Forbid,
    /// Stop the active run, then start it.
    Replace,
}

/// The user's choices that shape decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// No new runs start while suspended; active runs go on. Runs due meanwhile count as missed.
    pub suspend: bool,
    pub concurrency: ConcurrencyPolicy,
    /// A run that cannot start within this long after its time is skipped (`MissSchedule`).
    pub starting_deadline: Option<Duration>,
}

/// What is known about the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// When the resource was created: nothing before it is due.
    pub created: DateTime<Utc>,
    /// The occurrence most recently started or skipped: nothing up to it is due again.
    pub last_scheduled: Option<DateTime<Utc>>,
    /// Runs still going.
    pub active_runs: usize,
}

/// Occurrences that were due but will never run, because a later one was due too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Missed {
    /// How many (counted up to [`MAX_MISSED`] + 1).
    pub count: usize,
    /// More than [`MAX_MISSED`]: report `TooManyMissedTimes`.
    pub too_many: bool,
}

/// Why a due occurrence is not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Forbid, and a run is active (`JobAlreadyActive`).
    RunAlreadyActive,
    /// Its starting deadline has passed (`MissSchedule`).
    DeadlinePassed,
}

/// The decision for now. Every variant says when to look again (`next`: the next occurrence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due.
    Wait { next: Option<DateTime<Utc>> },
    /// Due occurrences exist but the resource is suspended.
    Suspended { due: Option<DateTime<Utc>>, next: Option<DateTime<Utc>> },
    /// Start the run for `scheduled` (stopping active runs first when `replace_active`).
    Start { scheduled: DateTime<Utc>, replace_active: bool, missed: Missed, next: Option<DateTime<Utc>> },
    /// `scheduled` is due but is not started; record it as handled.
    Skip { scheduled: DateTime<Utc>, reason: SkipReason, missed: Missed, next: Option<DateTime<Utc>> },
}

impl Decision {
    /// When to look again.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        match self {
            Decision::Wait { next }
            | Decision::Suspended { next, .. }
            | Decision::Start { next, .. }
            | Decision::Skip { next, .. } => *next,
        }
    }

    /// The occurrence this decision handles (started or skipped), if any.
    pub fn handled(&self) -> Option<DateTime<Utc>> {
        match self {
            Decision::Start { scheduled, .. } | Decision::Skip { scheduled, .. } => Some(*scheduled),
            Decision::Wait { .. } | Decision::Suspended { .. } => None,
        }
    }
}

/// The latest occurrence in `(after, now]`, and how many came before it in that interval.
fn due_occurrences(
    schedule: &Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, Missed)> {
    let mut latest = None;
    let mut count = 0usize;
    for t in schedule.occurrences(after, tz) {
        if t > now {
            break;
        }
        latest = Some(t);
        count += 1;
        if count > MAX_MISSED + 1 {
            // Too many to walk: find the latest from a window just before now instead.
            let latest = latest_in_window(schedule, tz, after, now)?;
            return Some((latest, Missed { count: MAX_MISSED + 1, too_many: true }));
        }
    }
    latest.map(|t| (t, Missed { count: count - 1, too_many: count - 1 > MAX_MISSED }))
}

/// The latest occurrence in `(after, now]`, searched from windows of growing size ending at now.
fn latest_in_window(schedule: &Schedule, tz: Tz, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    for window in [Duration::hours(2), Duration::days(2), Duration::days(40), Duration::days(400), Duration::days(3000)]
    {
        let from = (now - window).max(after);
        if let Some(latest) = schedule.occurrences(from, tz).take_while(|t| *t <= now).last() {
            return Some(latest);
        }
        if from == after {
            return None;
        }
    }
    None
}

/// Decides what to do at `now`.
pub fn decide(schedule: &Schedule, tz: Tz, policy: &Policy, observed: &Observed, now: DateTime<Utc>) -> Decision {
    let next = schedule.next_after(now, tz);
    let after = observed.last_scheduled.unwrap_or(observed.created).max(observed.created);
    let Some((scheduled, missed)) = due_occurrences(schedule, tz, after, now) else {
        return Decision::Wait { next };
    };
    if policy.suspend {
        return Decision::Suspended { due: Some(scheduled), next };
    }
    if let Some(deadline) = policy.starting_deadline
        && now - scheduled > deadline
    {
        return Decision::Skip { scheduled, reason: SkipReason::DeadlinePassed, missed, next };
    }
    if observed.active_runs > 0 {
        match policy.concurrency {
            ConcurrencyPolicy::Forbid => {
                return Decision::Skip { scheduled, reason: SkipReason::RunAlreadyActive, missed, next };
            }
            ConcurrencyPolicy::Replace => return Decision::Start { scheduled, replace_active: true, missed, next },
            ConcurrencyPolicy::Allow => {}
        }
    }
    Decision::Start { scheduled, replace_active: false, missed, next }
}

/// Decides what to do at `now` for a resource that runs once at `at` (a Broadcast with `at`, or
/// one sent at once): the same rules, with a single occurrence.
pub fn decide_once(at: DateTime<Utc>, policy: &Policy, observed: &Observed, now: DateTime<Utc>) -> Decision {
    if observed.last_scheduled.is_some_and(|last| last >= at) {
        return Decision::Wait { next: None };
    }
    if at > now {
        return Decision::Wait { next: Some(at) };
    }
    if policy.suspend {
        return Decision::Suspended { due: Some(at), next: None };
    }
    if let Some(deadline) = policy.starting_deadline
        && now - at > deadline
    {
        return Decision::Skip {
            scheduled: at,
            reason: SkipReason::DeadlinePassed,
            missed: Missed::default(),
            next: None,
        };
    }
    if observed.active_runs > 0 && policy.concurrency == ConcurrencyPolicy::Forbid {
        return Decision::Skip {
            scheduled: at,
            reason: SkipReason::RunAlreadyActive,
            missed: Missed::default(),
            next: None,
        };
    }
    let replace_active = observed.active_runs > 0 && policy.concurrency == ConcurrencyPolicy::Replace;
    Decision::Start { scheduled: at, replace_active, missed: Missed::default(), next: None }
}

/// Decides what to do at `now` for either kind of timing.
pub fn decide_timing(timing: &crate::Timing, policy: &Policy, observed: &Observed, now: DateTime<Utc>) -> Decision {
    match timing {
        crate::Timing::Once(at) => decide_once(*at, policy, observed, now),
        crate::Timing::Repeat(schedule, tz) => decide(schedule, *tz, policy, observed, now),
    }
}
