//! Conditions: `Ready` (the spec is valid) and `Scheduled` (an occurrence is coming).

use borcelle_crds::Condition;
use chrono::{DateTime, Utc};

pub const READY: &str = "Ready";
pub const SCHEDULED: &str = "Scheduled";
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";

/// Ready=True reason.
pub const SPEC_VALID: &str = "SpecValid";
/// Scheduled reasons.
pub const NEXT_RUN_SCHEDULED: &str = "NextRunScheduled";
pub const SUSPENDED: &str = "Suspended";
pub const NO_FUTURE_RUN: &str = "NoFutureRun";
pub const EXPIRED: &str = "Expired";

/// A condition of `type_` set at `now` from `generation`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { TRUE } else { FALSE }.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: crate::time::whole_seconds(now),
        observed_generation: generation,
    }
}

/// Whether the condition of `type_` has `status`.
pub fn condition_is(conditions: &[Condition], type_: &str, status: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == status)
}

/// The condition of `type_`, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}
