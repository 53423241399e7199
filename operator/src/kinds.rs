//! What the reconciler needs from each kind of resource: timing, policy, history limits, and the
//! mapping between its status and the kind-independent [`RunState`].

use std::fmt::Debug;

use borcelle_crds::decide::Policy;
use borcelle_crds::{
    Broadcast, BroadcastPhase, BroadcastStatus, Condition, RunRef, RunSummary, ScheduledReminder,
    ScheduledReminderStatus, SpecError, Timing,
};
use chrono::{DateTime, Utc};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::status::{READY, TRUE, condition_is};

/// The kinds the operator reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ScheduledReminder,
    Broadcast,
}

impl Kind {
    /// The Kubernetes kind, also the value of the `crm.borcelle.io/kind` label and of metrics' `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ScheduledReminder => "ScheduledReminder",
            Kind::Broadcast => "Broadcast",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many finished runs to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub succeeded: usize,
    pub failed: usize,
}

/// The status fields both kinds share, as the reconciler computes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunState {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub next_schedule_time: Option<DateTime<Utc>>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// ScheduledReminder: `lastSuccessfulTime`; Broadcast: `deliveredAt`.
    pub last_successful_time: Option<DateTime<Utc>>,
    pub active: Vec<RunRef>,
    pub last_run: Option<RunSummary>,
    /// Broadcast only: how many users the last delivery reached.
    pub recipients: Option<i64>,
}

/// A resource whose occurrences run as Jobs.
pub trait Occurring:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The kind's status subresource.
    type Status: Serialize + Clone + PartialEq + Debug + Default + Send + Sync;
    const KIND: Kind;

    /// When occurrences are due; `created` is the resource's creation time.
    fn timing(&self, created: DateTime<Utc>) -> Result<Timing, SpecError>;
    fn policy(&self) -> Policy;
    fn history_limits(&self) -> HistoryLimits;
    /// The spec as JSON, handed to the worker in `BORCELLE_OCCURRENCE_SPEC`.
    fn spec_json(&self) -> Result<String, serde_json::Error>;
    /// Whether nothing may start any more at `now`.
    fn expired(&self, _now: DateTime<Utc>) -> bool {
        false
    }
    /// The shared fields of the current status.
    fn run_state(&self) -> RunState;
    /// Whether the current status already equals `status`.
    fn status_is(&self, status: &Self::Status) -> bool;
    /// The status to write for `state`.
    fn status_from(state: &RunState) -> Self::Status;
}

impl Occurring for ScheduledReminder {
    type Status = ScheduledReminderStatus;
    const KIND: Kind = Kind::ScheduledReminder;

    fn timing(&self, _created: DateTime<Utc>) -> Result<Timing, SpecError> {
        self.spec.timing()
    }

    fn policy(&self) -> Policy {
        self.spec.policy()
    }

    fn history_limits(&self) -> HistoryLimits {
        HistoryLimits { succeeded: self.spec.successful_history(), failed: self.spec.failed_history() }
    }

    fn spec_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.spec)
    }

    fn run_state(&self) -> RunState {
        let Some(status) = &self.status else { return RunState::default() };
        RunState {
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

    fn status_is(&self, status: &Self::Status) -> bool {
        match &self.status {
            Some(current) => current == status,
            None => *status == Self::Status::default(),
        }
    }

    fn status_from(state: &RunState) -> Self::Status {
        ScheduledReminderStatus {
            observed_generation: state.observed_generation,
            conditions: state.conditions.clone(),
            next_schedule_time: state.next_schedule_time,
            last_schedule_time: state.last_schedule_time,
            last_successful_time: state.last_successful_time,
            active: state.active.clone(),
            last_run: state.last_run.clone(),
        }
    }
}

/// Broadcast history: 3 successful and 1 failed delivery are kept.
const BROADCAST_HISTORY: HistoryLimits = HistoryLimits { succeeded: 3, failed: 1 };

impl Occurring for Broadcast {
    type Status = BroadcastStatus;
    const KIND: Kind = Kind::Broadcast;

    fn timing(&self, created: DateTime<Utc>) -> Result<Timing, SpecError> {
        self.spec.timing(created)
    }

    fn policy(&self) -> Policy {
        self.spec.policy()
    }

    fn history_limits(&self) -> HistoryLimits {
        BROADCAST_HISTORY
    }

    fn spec_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.spec)
    }

    fn expired(&self, now: DateTime<Utc>) -> bool {
        self.spec.expired(now)
    }

    fn run_state(&self) -> RunState {
        let Some(status) = &self.status else { return RunState::default() };
        RunState {
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

    fn status_is(&self, status: &Self::Status) -> bool {
        match &self.status {
            Some(current) => current == status,
            None => *status == Self::Status::default(),
        }
    }

    fn status_from(state: &RunState) -> Self::Status {
        BroadcastStatus {
            observed_generation: state.observed_generation,
            conditions: state.conditions.clone(),
            phase: Some(broadcast_phase(state)),
            delivered_at: state.last_successful_time,
            recipients: state.recipients,
            next_schedule_time: state.next_schedule_time,
            last_schedule_time: state.last_schedule_time,
            active: state.active.clone(),
            last_run: state.last_run.clone(),
        }
    }
}

/// Where a Broadcast is: Pending while invalid (or never to run), Running while a delivery is
/// active, then the outcome of the last delivery, else Scheduled while a delivery is coming.
pub fn broadcast_phase(state: &RunState) -> BroadcastPhase {
    if !condition_is(&state.conditions, READY, TRUE) {
        return BroadcastPhase::Pending;
    }
    if !state.active.is_empty() {
        return BroadcastPhase::Running;
    }
    match state.last_run.as_ref().map(|run| run.outcome.as_str()) {
        Some(crate::job::SUCCEEDED) => BroadcastPhase::Delivered,
        Some(crate::job::FAILED) => BroadcastPhase::Failed,
        _ if state.next_schedule_time.is_some() => BroadcastPhase::Scheduled,
        _ => BroadcastPhase::Pending,
    }
}
