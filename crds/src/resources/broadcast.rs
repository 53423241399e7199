//! `Broadcast`: an administrators' notification to the users, shown live and optionally emailed,
//! with its audience, channels, phase and status.

use chrono::{DateTime, Duration, Utc};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Condition, RunRef, RunSummary, SpecError, Timing, time_zone};
use crate::decide::{ConcurrencyPolicy, Policy};
use crate::schedule::Schedule;
use crate::text;

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
    // A string column, not a date: kubectl shows a date column as the age of the time, and the age
    // of a future time as `<invalid>`. Next is always ahead, so it shows the RFC 3339 time as stored.
    printcolumn(
        name = "Next",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        description = "When the next delivery is due (RFC 3339, UTC)."
    ),
    printcolumn(name = "Delivered", type_ = "date", json_path = ".status.deliveredAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!(has(self.at) && has(self.schedule))").message("set at most one of at and schedule"))]
#[x_kube(validation = Rule::new("has(self.schedule) || !has(self.timeZone)").message("timeZone applies to schedule only"))]
#[x_kube(validation = Rule::new("!self.title.matches('[[:cntrl:]]')").message("title must be one line, without control characters"))]
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

impl BroadcastSpec {
    /// When it is delivered; `created` stands for "now" when neither `at` nor `schedule` is set.
    /// Its title, which is the emails' subject, must be one line.
    pub fn timing(&self, created: DateTime<Utc>) -> Result<Timing, SpecError> {
        if !text::is_one_line(&self.title) {
            let reason = "must be one line, without control characters".to_owned();
            return Err(SpecError::Field { field: "spec.title", reason });
        }
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
