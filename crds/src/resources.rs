//! The custom resources: `ScheduledReminder` and `Broadcast` (group `crm.borcelle.io`, version
//! `v1alpha1`, namespaced), their specs, statuses and the schema rules the API server enforces.
//!
//! The same spec and status shapes are stored in PostgreSQL by the standalone scheduler, so a
//! reminder reads alike whether `kubectl` or the web UI created it.
//!
//! Each kind has its own module (`reminder`, `broadcast`); this one holds what their statuses and
//! schedules share (conditions, runs, timing, spec errors), and every type is reachable from here.

mod broadcast;
mod reminder;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::schedule::{Schedule, ScheduleError, parse_time_zone};

pub use broadcast::{
    Audience, AudienceGroup, Broadcast, BroadcastPhase, BroadcastSpec, BroadcastStatus, Channel, Severity,
};
pub use reminder::{Recipients, ScheduledReminder, ScheduledReminderSpec, ScheduledReminderStatus};

/// A condition in the Kubernetes style.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready or Scheduled.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// Why, in CamelCase.
    pub reason: String,
    /// Why, for people.
    #[serde(default)]
    pub message: String,
    /// When status last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The metadata.generation the condition was set from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A run of one occurrence (a Job, or an in-process run in standalone mode).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRef {
    /// Name of the Job (or of the standalone run).
    pub name: String,
    /// The occurrence it runs.
    pub scheduled_time: DateTime<Utc>,
}

/// The outcome of a finished run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The occurrence it ran.
    pub occurrence: DateTime<Utc>,
    /// The Job (or standalone run) that ran it.
    pub name: String,
    /// Succeeded, Failed or Replaced.
    pub outcome: String,
    /// Emails or notifications delivered (0 for a Replaced run: stopped partway, its counts stay
    /// with its task).
    #[serde(default)]
    pub delivered: i64,
    /// Emails that failed for good (0 for a Replaced run).
    #[serde(default)]
    pub failed: i64,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why a Failed run could not run (an unknown owner, a deleted note), when the run said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// When a resource's occurrences are due.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    /// Once, at this instant.
    Once(DateTime<Utc>),
    /// On a cron schedule in a time zone.
    Repeat(Schedule, Tz),
}

/// Why a spec cannot be scheduled: reported in status and events, never by a crash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A field that could not be sent as it is (a subject over two lines, an address that is not
    /// one): what the API refuses with a 422 and a resource applied with kubectl reports here.
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

impl SpecError {
    /// The CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::Schedule(ScheduleError::UnknownTimeZone(_)) => "UnknownTimeZone",
            SpecError::Schedule(_) => "InvalidSchedule",
            SpecError::Field { .. } => crate::status::reason::INVALID_SPEC,
        }
    }
}

fn time_zone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    parse_time_zone(name.unwrap_or("UTC"))
}

/// Sets a condition, keeping its transition time when its status does not change.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time;
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}
