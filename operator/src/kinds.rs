//! What the reconciler needs from each kind of resource: timing, policy, history limits, and the
//! mapping between its status and the kind-independent [`RunState`] of `borcelle_crds::status`.

use std::fmt::Debug;

use borcelle_crds::decide::Policy;
use borcelle_crds::status::RunState;
use borcelle_crds::{Broadcast, BroadcastStatus, ScheduledReminder, ScheduledReminderStatus, SpecError, Timing};
use chrono::{DateTime, Utc};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

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
        RunState::of_reminder(self.status.as_ref())
    }

    fn status_is(&self, status: &Self::Status) -> bool {
        match &self.status {
            Some(current) => current == status,
            None => *status == Self::Status::default(),
        }
    }

    fn status_from(state: &RunState) -> Self::Status {
        state.reminder_status()
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
        RunState::of_broadcast(self.status.as_ref())
    }

    fn status_is(&self, status: &Self::Status) -> bool {
        match &self.status {
            Some(current) => current == status,
            None => *status == Self::Status::default(),
        }
    }

    fn status_from(state: &RunState) -> Self::Status {
        state.broadcast_status()
    }
}
