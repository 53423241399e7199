//! The custom resources: `ScheduledReminder` and `Broadcast` (group `crm.borcelle.io`, version
//! `v1alpha1`, namespaced), their specs, statuses and the schema rules the API server enforces.
//!
//! The same spec and status shapes are stored in PostgreSQL by the standalone scheduler, so a
//! reminder reads alike whether `kubectl` or the web UI created it.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::decide::{ConcurrencyPolicy, Policy};
use crate::schedule::{Schedule, ScheduleError, parse_time_zone};

/// A reminder email that a CRM user sends to some of their contacts on a cron schedule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crm.borcelle.io",
    version = "v1alpha1",
    kind = "ScheduledReminder",
    namespaced,
    status = "ScheduledReminderStatus",
    derive = "PartialEq",
    shortname = "sr",
    shortname = "reminder",
    category = "borcelle",
    doc = "A reminder email that a Borcelle CRM user sends to some of their contacts on a cron schedule.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Time Zone", type_ = "string", json_path = ".spec.timeZone"),
    printcolumn(name = "Suspend", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Next", type_ = "date", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Last", type_ = "date", json_path = ".status.lastScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.body) != has(self.noteId)").message("set exactly one of body and noteId"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduledReminderSpec {
    /// Email address of the Borcelle user who owns the reminder. The mail goes out on their behalf,
    /// to their contacts only.
    #[schemars(length(min = 3, max = 254))]
    pub owner: String,
    /// Who receives the reminder: contacts of the owner, by id, by email or by tag.
    pub recipients: Recipients,
    /// Subject line of the email.
    #[schemars(length(min = 1, max = 200))]
    pub subject: String,
    /// Text of the email. Set this or noteId.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100000))]
    pub body: Option<String>,
    /// Id of one of the owner's notes whose text is the email's body. Set this or body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 36, max = 36))]
    pub note_id: Option<String>,
    /// Ids of the owner's uploaded attachments to send with every occurrence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub attachments: Vec<String>,
    /// When to send: five cron fields (minute hour day-of-month month day-of-week) or one of
    /// @hourly, @daily, @weekly, @monthly, @yearly.
    #[schemars(length(min = 1, max = 200))]
    pub schedule: String,
    /// IANA time zone the schedule is read in, such as Europe/Berlin. UTC when unset. A local time
    /// skipped by a daylight-saving change runs at the first instant after it; a repeated one runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// No new occurrence starts while true; a running one goes on. Occurrences due meanwhile are missed.
    #[serde(default)]
    pub suspend: bool,
    /// What to do when an occurrence is due while the previous one still runs: Allow (run both),
    /// Forbid (skip the new one) or Replace (stop the running one, start the new one).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// An occurrence that cannot start within this many seconds of its time is skipped and reported
    /// (MissSchedule). Without it, only the most recent missed occurrence runs, however late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("startingDeadlineSeconds must not be negative"))]
    pub starting_deadline_seconds: Option<i64>,
    /// How many finished successful runs (Jobs) to keep. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("successfulRunsHistoryLimit must not be negative"))]
    pub successful_runs_history_limit: Option<i32>,
    /// How many failed runs (Jobs) to keep. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("failedRunsHistoryLimit must not be negative"))]
    pub failed_runs_history_limit: Option<i32>,
}

/// Contacts of the owner that receive a reminder. Set at least one of the three; a contact named
/// twice receives one email.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("size(self.contactIds) + size(self.emails) > 0 || has(self.tag)").message("name at least one recipient: contactIds, emails or tag")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recipients {
    /// Contact ids of the owner's contacts.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub contact_ids: Vec<String>,
    /// Email addresses of the owner's contacts.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub emails: Vec<String>,
    /// Every contact of the owner carrying this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub tag: Option<String>,
}

/// What a ScheduledReminder has done and will do.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledReminderStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the spec is valid and the reminder is being scheduled) and Scheduled (an occurrence
    /// is coming), with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// When the next occurrence is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// The most recent occurrence that was started or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// When a run last finished successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<DateTime<Utc>>,
    /// Runs still going.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<RunRef>,
    /// The outcome of the most recent finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
}

/// A Broadcast: a notification from the administrators to the users of Borcelle, shown live in
/// every open session and optionally emailed, now, at a time or on a schedule.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crm.borcelle.io",
    version = "v1alpha1",
    kind = "Broadcast",
    namespaced,
    status = "BroadcastStatus",
    derive = "PartialEq",
    shortname = "bc",
    category = "borcelle",
    doc = "A notification from the administrators to the users of Borcelle: shown live in every open session and optionally emailed, now, at a time or on a schedule.",
    printcolumn(name = "Title", type_ = "string", json_path = ".spec.title"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Recipients", type_ = "integer", json_path = ".status.recipients"),
    printcolumn(name = "Next", type_ = "date", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Delivered", type_ = "date", json_path = ".status.deliveredAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!(has(self.at) && has(self.schedule))").message("set at most one of at and schedule"))]
#[x_kube(validation = Rule::new("has(self.schedule) || !has(self.timeZone)").message("timeZone applies to schedule only"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BroadcastSpec {
    /// Short title shown in the notification bell.
    #[schemars(length(min = 1, max = 200))]
    pub title: String,
    /// The text of the notification.
    #[schemars(length(min = 1, max = 10000))]
    pub message: String,
    /// info, warning or critical.
    #[serde(default)]
    pub severity: Severity,
    /// Who receives it.
    #[serde(default)]
    pub audience: Audience,
    /// Where it is delivered: web (the bell and a live toast) and/or email. Default web.
    #[serde(default = "default_channels")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub channels: Vec<Channel>,
    /// When to deliver it once (RFC 3339). Without at and schedule it is delivered at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Deliver it repeatedly: five cron fields or @hourly, @daily, @weekly, @monthly, @yearly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub schedule: Option<String>,
    /// IANA time zone of schedule. UTC when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// After this time the broadcast is no longer shown and no longer delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// No new delivery starts while true.
    #[serde(default)]
    pub suspend: bool,
    /// A delivery that cannot start within this many seconds of its time is skipped (MissSchedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("startingDeadlineSeconds must not be negative"))]
    pub starting_deadline_seconds: Option<i64>,
}

fn default_channels() -> Vec<Channel> {
    vec![Channel::Web]
}

/// How urgent a broadcast is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A delivery channel of a broadcast.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The notification bell and a live toast in every open session.
    Web,
    /// An email to every user of the audience.
    Email,
}

/// Who receives a broadcast: every user (`group: all`, the default), the administrators
/// (`group: admins`) or the users listed in `users` (by email).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(self.group == 'users') == (has(self.users) && size(self.users) > 0)").message("list users exactly when group is users")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Audience {
    /// all, admins or users.
    #[serde(default)]
    pub group: AudienceGroup,
    /// Email addresses of the users, when group is users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub users: Vec<String>,
}

/// The kinds of audience.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AudienceGroup {
    #[default]
    All,
    Admins,
    Users,
}

/// Where a Broadcast is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum BroadcastPhase {
    /// Not yet looked at, or invalid (see the Ready condition).
    Pending,
    /// Waiting for its time.
    Scheduled,
    /// Being delivered.
    Running,
    /// Delivered (for a repeating broadcast: the last delivery; more are scheduled).
    Delivered,
    /// The delivery failed (see lastRun and the events).
    Failed,
}

/// What a Broadcast has done and will do.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and Scheduled, with a reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pending, Scheduled, Running, Delivered or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BroadcastPhase>,
    /// When the last delivery finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// How many users the last delivery reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<i64>,
    /// When the next delivery is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// The most recent delivery time that was started or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// Deliveries still going.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<RunRef>,
    /// The outcome of the most recent finished delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
}

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
}

impl SpecError {
    /// The CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::Schedule(ScheduleError::UnknownTimeZone(_)) => "UnknownTimeZone",
            SpecError::Schedule(_) => "InvalidSchedule",
        }
    }
}

fn time_zone(name: Option<&str>) -> Result<Tz, ScheduleError> {
    parse_time_zone(name.unwrap_or("UTC"))
}

impl ScheduledReminderSpec {
    /// The schedule in its time zone.
    pub fn timing(&self) -> Result<Timing, SpecError> {
        let schedule: Schedule = self.schedule.parse()?;
        Ok(Timing::Repeat(schedule, time_zone(self.time_zone.as_deref())?))
    }

    pub fn policy(&self) -> Policy {
        Policy {
            suspend: self.suspend,
            concurrency: self.concurrency_policy,
            starting_deadline: self.starting_deadline_seconds.map(Duration::seconds),
        }
    }

    /// Finished successful runs to keep.
    pub fn successful_history(&self) -> usize {
        usize::try_from(self.successful_runs_history_limit.unwrap_or(3)).unwrap_or(0)
    }

    /// Finished failed runs to keep.
    pub fn failed_history(&self) -> usize {
        usize::try_from(self.failed_runs_history_limit.unwrap_or(1)).unwrap_or(0)
    }
}

impl BroadcastSpec {
    /// When it is delivered; `created` stands for "now" when neither `at` nor `schedule` is set.
    pub fn timing(&self, created: DateTime<Utc>) -> Result<Timing, SpecError> {
        match (&self.schedule, self.at) {
            (Some(schedule), _) => {
                let schedule: Schedule = schedule.parse()?;
                Ok(Timing::Repeat(schedule, time_zone(self.time_zone.as_deref())?))
            }
            (None, Some(at)) => Ok(Timing::Once(at)),
            (None, None) => Ok(Timing::Once(created)),
        }
    }

    pub fn policy(&self) -> Policy {
        Policy {
            suspend: self.suspend,
            // Broadcast deliveries are short and each one is its own notification: never skipped for an active one.
            concurrency: ConcurrencyPolicy::Allow,
            starting_deadline: self.starting_deadline_seconds.map(Duration::seconds),
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Whether email is one of its channels.
    pub fn emails(&self) -> bool {
        self.channels.contains(&Channel::Email)
    }
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
