//! What a resource's status says, for both runtimes: the operator (Jobs in a cluster) and `serve`'s
//! in-process scheduler (rows in PostgreSQL). Each turns what it observed into a [`RunState`] and
//! these rules fill in the rest: the `Ready` and `Scheduled` conditions and their reasons, the
//! next and last schedule times, the note on what was just decided, and a Broadcast's phase.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::decide::{Decision, MAX_MISSED, SkipReason};
use crate::{BroadcastPhase, BroadcastStatus, Condition, RunRef, RunSummary, ScheduledReminderStatus, SpecError};

/// The condition that says whether the spec can be scheduled.
pub const READY: &str = "Ready";
/// The condition that says whether an occurrence is coming.
pub const SCHEDULED: &str = "Scheduled";
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
/// Between the Scheduled message's outlook ("next occurrence at …") and the note of what the last
/// decision did; outlooks never contain it.
const NOTE_SEPARATOR: &str = "; ";

/// Reasons of the conditions (besides [`SpecError::reason`] for invalid specs).
pub mod reason {
    /// Ready=True.
    pub const SPEC_VALID: &str = "SpecValid";
    /// Ready=False: the spec does not even read as the kind's spec.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Scheduled=True: an occurrence is coming.
    pub const NEXT_RUN_SCHEDULED: &str = "NextRunScheduled";
    pub const SUSPENDED: &str = "Suspended";
    pub const NO_FUTURE_RUN: &str = "NoFutureRun";
    /// A Broadcast past its `expiresAt`.
    pub const EXPIRED: &str = "Expired";
}

/// `RunSummary::outcome` of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed,
    /// Stopped by a newer occurrence (concurrencyPolicy Replace).
    Replaced,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "Succeeded",
            RunOutcome::Failed => "Failed",
            RunOutcome::Replaced => "Replaced",
        }
    }
}

/// RFC 3339 in UTC with a `Z`, to the second: how times read in messages.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `t` without its fraction of a second: the precision of Kubernetes timestamps.
pub fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The status fields both kinds share, as a runtime observes them and these rules complete them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub next_schedule_time: Option<DateTime<Utc>>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// ScheduledReminder: `lastSuccessfulTime`; Broadcast: `deliveredAt`.
    pub last_successful_time: Option<DateTime<Utc>>,
    /// Runs still going, oldest first.
    pub active: Vec<RunRef>,
    pub last_run: Option<RunSummary>,
    /// Broadcast only: how many users the last delivery reached.
    pub recipients: Option<i64>,
}

/// What the schedule looks like once the decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlook {
    /// `suspend: true`: nothing starts.
    pub suspended: bool,
    /// A Broadcast past its `expiresAt`: nothing more is delivered.
    pub expired: bool,
}

impl RunState {
    /// Sets a condition at `now` for this generation, keeping its transition time when its status
    /// does not change.
    pub fn set_condition(&mut self, type_: &str, status: bool, reason: &str, message: String, now: DateTime<Utc>) {
        let condition = Condition {
            type_: type_.to_owned(),
            status: if status { TRUE } else { FALSE }.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: whole_seconds(now),
            observed_generation: self.observed_generation,
        };
        crate::set_condition(&mut self.conditions, condition);
    }

    /// The condition of `type_`, if set.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the spec was found valid.
    pub fn is_ready(&self) -> bool {
        self.condition(READY).is_some_and(|c| c.status == TRUE)
    }

    /// The spec cannot be scheduled: Ready=False with the reason, nothing scheduled until it is
    /// fixed. `reason` is [`SpecError::reason`] or [`reason::INVALID_SPEC`].
    pub fn invalid_spec(&mut self, reason: &str, message: String, now: DateTime<Utc>) {
        self.set_condition(READY, false, reason, message, now);
        self.set_condition(SCHEDULED, false, reason, "nothing is scheduled until the spec is fixed".to_owned(), now);
        self.next_schedule_time = None;
    }

    /// Records a decision on a valid spec: Ready=True, the times, and the Scheduled condition,
    /// whose message says what comes next and what the last decision that did something did
    /// (`note`: [`decision_note`]; without one, the previous note stays). The operator looks
    /// far more often than the standalone scheduler does (every Job event), so a note that lasted
    /// only until the next look would read differently in the two runtimes.
    pub fn decided(&mut self, decision: &Decision, outlook: Outlook, note: Option<String>, now: DateTime<Utc>) {
        let note = note.filter(|n| !n.is_empty()).or_else(|| self.last_note());
        self.set_condition(READY, true, reason::SPEC_VALID, "the schedule and time zone are valid".to_owned(), now);
        if let Some(handled) = decision.handled() {
            self.last_schedule_time = self.last_schedule_time.max(Some(handled));
        }
        let next = decision.next().filter(|_| !outlook.suspended && !outlook.expired);
        self.next_schedule_time = next;
        let (scheduled, why, mut message) = if outlook.expired {
            (false, reason::EXPIRED, "expired: nothing more is delivered".to_owned())
        } else if outlook.suspended {
            (false, reason::SUSPENDED, "suspended: no occurrence starts until suspend is false".to_owned())
        } else if let Some(next) = next {
            (true, reason::NEXT_RUN_SCHEDULED, format!("next occurrence at {}", rfc3339(next)))
        } else {
            (false, reason::NO_FUTURE_RUN, "no occurrence is left to run".to_owned())
        };
        if let Some(note) = note {
            message.push_str(NOTE_SEPARATOR);
            message.push_str(&note);
        }
        self.set_condition(SCHEDULED, scheduled, why, message, now);
    }

    /// The note of the Scheduled condition's message (what follows what comes next), if any.
    fn last_note(&self) -> Option<String> {
        let scheduled = self.condition(SCHEDULED)?;
        let (_, note) = scheduled.message.split_once(NOTE_SEPARATOR)?;
        Some(note.to_owned())
    }

    /// Folds in a run that finished `at`: it becomes `lastRun` when it finished last, and a
    /// success moves the last successful time (`recipients`: users reached, for a Broadcast).
    pub fn finished(&mut self, run: RunSummary, at: DateTime<Utc>, recipients: Option<i64>) {
        let finished_at = at;
        let succeeded = run.outcome == RunOutcome::Succeeded.as_str();
        let is_latest =
            self.last_run.as_ref().and_then(|last| last.finished_at).is_none_or(|previous| finished_at >= previous);
        if is_latest {
            self.last_run = Some(run);
            self.recipients = recipients;
        }
        if succeeded {
            self.last_successful_time = self.last_successful_time.max(Some(finished_at));
        }
    }

    /// Reads the shared fields of a ScheduledReminder's status.
    pub fn of_reminder(status: Option<&ScheduledReminderStatus>) -> Self {
        let Some(status) = status else { return Self::default() };
        Self {
            observed_generation: status.observed_generation,
            conditions: status.conditions.clone(),
            next_schedule_time: status.next_schedule_time,
            last_schedule_time: status.last_schedule_time,
            last_successful_time: status.last_successful_time,
            active: status.active.clone(),
            last_run: status.last_run.clone(),
            recipients: None,
        }
    }

    /// Reads the shared fields of a Broadcast's status.
    pub fn of_broadcast(status: Option<&BroadcastStatus>) -> Self {
        let Some(status) = status else { return Self::default() };
        Self {
            observed_generation: status.observed_generation,
            conditions: status.conditions.clone(),
            next_schedule_time: status.next_schedule_time,
            last_schedule_time: status.last_schedule_time,
            last_successful_time: status.delivered_at,
            active: status.active.clone(),
            last_run: status.last_run.clone(),
            recipients: status.recipients,
        }
    }

    /// The ScheduledReminder status that says this.
    pub fn reminder_status(&self) -> ScheduledReminderStatus {
        ScheduledReminderStatus {
            observed_generation: self.observed_generation,
            conditions: self.conditions.clone(),
            next_schedule_time: self.next_schedule_time,
            last_schedule_time: self.last_schedule_time,
            last_successful_time: self.last_successful_time,
            active: self.active.clone(),
            last_run: self.last_run.clone(),
        }
    }

    /// The Broadcast status that says this, with its phase.
    pub fn broadcast_status(&self) -> BroadcastStatus {
        BroadcastStatus {
            observed_generation: self.observed_generation,
            conditions: self.conditions.clone(),
            phase: Some(self.broadcast_phase()),
            delivered_at: self.last_successful_time,
            recipients: self.recipients,
            next_schedule_time: self.next_schedule_time,
            last_schedule_time: self.last_schedule_time,
            active: self.active.clone(),
            last_run: self.last_run.clone(),
        }
    }

    /// Where a Broadcast is: Pending while invalid (or never to run), Running while a delivery is
    /// active, then the outcome of the last delivery, else Scheduled while a delivery is coming.
    pub fn broadcast_phase(&self) -> BroadcastPhase {
        if !self.is_ready() {
            return BroadcastPhase::Pending;
        }
        if !self.active.is_empty() {
            return BroadcastPhase::Running;
        }
        match self.last_run.as_ref().map(|run| run.outcome.as_str()) {
            Some(outcome) if outcome == RunOutcome::Succeeded.as_str() => BroadcastPhase::Delivered,
            Some(outcome) if outcome == RunOutcome::Failed.as_str() => BroadcastPhase::Failed,
            _ if self.next_schedule_time.is_some() => BroadcastPhase::Scheduled,
            _ => BroadcastPhase::Pending,
        }
    }
}

/// What a decision did, in words (`None` when it did nothing): the note both runtimes add to the
/// Scheduled condition, besides the events the operator records.
pub fn decision_note(decision: &Decision) -> Option<String> {
    let (mut note, missed) = match decision {
        Decision::Start { scheduled, missed, .. } => {
            (format!("started the occurrence of {}", rfc3339(*scheduled)), *missed)
        }
        Decision::Skip { scheduled, reason: SkipReason::RunAlreadyActive, missed, .. } => (
            format!(
                "skipped the occurrence of {}: the previous one still runs (JobAlreadyActive)",
                rfc3339(*scheduled)
            ),
            *missed,
        ),
        Decision::Skip { scheduled, reason: SkipReason::DeadlinePassed, missed, .. } => (
            format!("missed the occurrence of {}: its starting deadline passed (MissSchedule)", rfc3339(*scheduled)),
            *missed,
        ),
        Decision::Wait { .. } | Decision::Suspended { .. } => return None,
    };
    if missed.count > 0 {
        note.push_str(&format!("; {} earlier occurrence(s) missed", missed.count));
    }
    if missed.too_many {
        note.push_str(&format!("; more than {MAX_MISSED} occurrences were missed (TooManyMissedTimes)"));
    }
    Some(note)
}

/// The Ready reason and message of a spec that cannot be scheduled.
pub fn spec_problem(err: &SpecError) -> (&'static str, String) {
    (err.reason(), err.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::decide::Missed;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).single().unwrap_or_default()
    }

    fn run(outcome: RunOutcome) -> RunSummary {
        RunSummary {
            occurrence: at(9, 0),
            name: "run".into(),
            outcome: outcome.as_str().into(),
            delivered: 1,
            failed: 0,
            finished_at: Some(at(9, 1)),
            error: None,
        }
    }

    const OPEN: Outlook = Outlook { suspended: false, expired: false };

    #[test]
    fn a_valid_spec_with_a_coming_run_is_ready_and_scheduled() {
        let mut state = RunState { observed_generation: Some(2), ..RunState::default() };
        state.decided(&Decision::Wait { next: Some(at(10, 0)) }, OPEN, None, at(9, 30));
        let ready = state.condition(READY).cloned().unwrap_or_else(|| unreachable!());
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), (TRUE, reason::SPEC_VALID));
        assert_eq!(ready.observed_generation, Some(2));
        let scheduled = state.condition(SCHEDULED).cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(scheduled.reason, reason::NEXT_RUN_SCHEDULED);
        assert_eq!(scheduled.message, "next occurrence at 2026-12-03T10:00:00Z");
        assert_eq!(state.next_schedule_time, Some(at(10, 0)));
    }

    #[test]
    fn suspended_and_expired_schedules_show_no_next_run() {
        let mut state = RunState::default();
        let wait = Decision::Suspended { due: Some(at(9, 0)), next: Some(at(10, 0)) };
        state.decided(&wait, Outlook { suspended: true, expired: false }, None, at(9, 30));
        assert_eq!(
            state.condition(SCHEDULED).map(|c| (c.status.as_str(), c.reason.as_str())),
            Some((FALSE, "Suspended"))
        );
        assert_eq!(state.next_schedule_time, None);
        state.decided(&Decision::Wait { next: None }, Outlook { suspended: false, expired: true }, None, at(9, 31));
        assert_eq!(state.condition(SCHEDULED).map(|c| c.reason.as_str()), Some(reason::EXPIRED));
    }

    #[test]
    fn a_decision_is_noted_and_moves_the_last_schedule_time() {
        let mut state = RunState::default();
        let missed = Missed { count: 2, too_many: false };
        let start = Decision::Start { scheduled: at(9, 0), replace_active: false, missed, next: Some(at(10, 0)) };
        state.decided(&start, OPEN, decision_note(&start), at(9, 0));
        assert_eq!(state.last_schedule_time, Some(at(9, 0)));
        let message = state.condition(SCHEDULED).map(|c| c.message.clone()).unwrap_or_default();
        assert_eq!(
            message,
            "next occurrence at 2026-12-03T10:00:00Z; started the occurrence of 2026-12-03T09:00:00Z; 2 earlier occurrence(s) missed"
        );
        let skip = Decision::Skip {
            scheduled: at(10, 0),
            reason: SkipReason::RunAlreadyActive,
            missed: Missed::default(),
            next: Some(at(11, 0)),
        };
        assert!(decision_note(&skip).is_some_and(|n| n.contains("JobAlreadyActive")));
        assert_eq!(decision_note(&Decision::Wait { next: None }), None);
    }

    #[test]
    fn the_last_note_stays_until_a_decision_does_something_else() {
        let mut state = RunState::default();
        let start = Decision::Start {
            scheduled: at(9, 0),
            replace_active: false,
            missed: Missed::default(),
            next: Some(at(10, 0)),
        };
        state.decided(&start, OPEN, decision_note(&start), at(9, 0));
        let message = |state: &RunState| state.condition(SCHEDULED).map(|c| c.message.clone()).unwrap_or_default();
        // Looking again (a Job event, a resync) changes nothing the user reads.
        state.decided(&Decision::Wait { next: Some(at(10, 0)) }, OPEN, None, at(9, 2));
        assert_eq!(
            message(&state),
            "next occurrence at 2026-12-03T10:00:00Z; started the occurrence of 2026-12-03T09:00:00Z"
        );
        assert_eq!(state.condition(SCHEDULED).map(|c| c.last_transition_time), Some(at(9, 0)));
        // Suspending keeps what was done last, under the new outlook.
        let suspended = Decision::Suspended { due: None, next: Some(at(10, 0)) };
        state.decided(&suspended, Outlook { suspended: true, expired: false }, None, at(9, 30));
        assert_eq!(
            message(&state),
            "suspended: no occurrence starts until suspend is false; started the occurrence of 2026-12-03T09:00:00Z"
        );
        // An invalid spec drops it: nothing that was done applies any more.
        state.invalid_spec("InvalidSchedule", "bad".into(), at(9, 40));
        state.decided(&Decision::Wait { next: Some(at(10, 0)) }, OPEN, None, at(9, 50));
        assert_eq!(message(&state), "next occurrence at 2026-12-03T10:00:00Z");
    }

    #[test]
    fn an_invalid_spec_is_not_ready_and_schedules_nothing() {
        let mut state = RunState { next_schedule_time: Some(at(10, 0)), ..RunState::default() };
        state.invalid_spec("UnknownTimeZone", "unknown time zone \"Mars/Olympus\"".into(), at(9, 0));
        assert!(!state.is_ready());
        assert_eq!(state.next_schedule_time, None);
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Pending);
    }

    #[test]
    fn the_broadcast_phase_follows_validity_activity_and_the_last_run() {
        let mut state = RunState::default();
        state.decided(&Decision::Wait { next: Some(at(10, 0)) }, OPEN, None, at(9, 0));
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Scheduled);
        state.active = vec![RunRef { name: "run".into(), scheduled_time: at(10, 0) }];
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Running);
        state.active.clear();
        state.last_run = Some(run(RunOutcome::Succeeded));
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Delivered);
        state.last_run = Some(run(RunOutcome::Failed));
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Failed);
        state.last_run = Some(run(RunOutcome::Replaced));
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Scheduled);
        state.next_schedule_time = None;
        assert_eq!(state.broadcast_phase(), BroadcastPhase::Pending);
    }

    #[test]
    fn the_latest_finished_run_is_the_last_run_and_only_successes_count_as_successful() {
        let mut state = RunState::default();
        let mut failed = run(RunOutcome::Failed);
        failed.finished_at = Some(at(9, 5));
        state.finished(run(RunOutcome::Succeeded), at(9, 1), Some(3));
        state.finished(failed.clone(), at(9, 5), Some(0));
        assert_eq!(state.last_run.as_ref(), Some(&failed));
        assert_eq!((state.last_successful_time, state.recipients), (Some(at(9, 1)), Some(0)));
        // An older run seen late changes the successful time only.
        let mut older = run(RunOutcome::Succeeded);
        older.finished_at = Some(at(8, 0));
        state.finished(older, at(8, 0), Some(9));
        assert_eq!(state.last_run.as_ref(), Some(&failed));
        assert_eq!(state.recipients, Some(0));
    }

    #[test]
    fn statuses_round_trip_through_the_shared_fields() {
        let mut state = RunState { observed_generation: Some(3), recipients: Some(12), ..RunState::default() };
        state.decided(&Decision::Wait { next: Some(at(10, 0)) }, OPEN, None, at(9, 0));
        state.last_run = Some(run(RunOutcome::Succeeded));
        state.last_successful_time = Some(at(9, 1));
        let broadcast = state.broadcast_status();
        assert_eq!(RunState::of_broadcast(Some(&broadcast)), state);
        let mut reminder_state = state.clone();
        reminder_state.recipients = None;
        assert_eq!(RunState::of_reminder(Some(&reminder_state.reminder_status())), reminder_state);
    }
}
