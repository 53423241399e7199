//! Leader election on a coordination.k8s.io/v1 Lease (kube-runtime 5.0 ships no helper).
//!
//! The rules are client-go's: a candidate takes the Lease only after it has seen the same Lease
//! record unchanged for a whole `leaseDurationSeconds` of its own (monotonic) clock, or when the
//! Lease has no holder; every write carries the `resourceVersion` it read, so of two candidates
//! writing at once the API server accepts one and answers 409 Conflict to the other. As in
//! client-go, a renewal cycle starts a retry period after the last successful one and may take up
//! to `renew_deadline` (a slow API server must not cost the Lease while a renewal can still
//! succeed); a leader counts itself leader until that cycle's end, and never past `lease_duration`
//! after its last write was sent (no one else may take the Lease before that write's record has
//! stood unchanged for a lease duration), so it stops before anyone else may start.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::error::{Error, status_code};
use crate::time::to_jiff;

/// Which Lease, who we are, and the timing (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Unique per process: the pod name and a random suffix.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaseSettings {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The parts of a Lease whose change shows that its holder is alive (any write changes the
/// resourceVersion, even one whose renewTime equals the last).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaseRecord {
    resource_version: Option<String>,
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration_seconds: Option<i32>,
}

impl LeaseRecord {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            resource_version: lease.metadata.resource_version.clone(),
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time,
            acquire_time: spec.acquire_time,
            transitions: spec.lease_transitions,
            duration_seconds: spec.lease_duration_seconds,
        }
    }
}

/// One candidate's view of the Lease.
pub struct LeaseElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The last record seen, and when (our clock) it was first seen.
    observed: Option<(LeaseRecord, Instant)>,
    /// Until when we may act as leader (after a successful acquisition or renewal).
    valid_until: Option<Instant>,
}

impl LeaseElector {
    /// `api` must be namespaced to `settings.namespace`.
    pub fn new(api: Api<Lease>, settings: LeaseSettings) -> Self {
        LeaseElector { api, settings, observed: None, valid_until: None }
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Whether we may act as leader at `now`.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.leader_until().is_some_and(|until| now < until)
    }

    /// Until when we may act as leader, if we hold the Lease.
    pub fn leader_until(&self) -> Option<Instant> {
        self.valid_until
    }

    fn lease_duration_of(&self, record: &LeaseRecord) -> Duration {
        record
            .duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs)
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// A write that was sent at `sent` and answered at `answered` succeeded.
    fn won(&mut self, sent: Instant, answered: Instant, lease: &Lease) {
        let next_cycle_ends = answered + self.settings.retry_period + self.settings.renew_deadline;
        self.valid_until = Some(next_cycle_ends.min(sent + self.settings.lease_duration));
        self.observed = Some((LeaseRecord::of(lease), sent));
    }

    /// One round: take the Lease if it is free or expired, renew it if ours. `now` is when the
    /// round started (monotonic), `wall` the time written into the Lease. Returns whether we hold
    /// it. Errors (the API unreachable) leave leadership to expire by [`Self::is_leader`].
    pub async fn try_acquire_or_renew(&mut self, now: Instant, wall: DateTime<Utc>) -> Result<bool, Error> {
        // Times inside the round, measured from `now` (tests give simulated round starts).
        let round = Instant::now();
        let at = move || now + round.elapsed();
        let wall = MicroTime(to_jiff(wall));
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.settings.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(wall.clone()),
                    renew_time: Some(wall),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let sent = at();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.won(sent, at(), &created);
                    Ok(true)
                }
                Err(err) if status_code(&err) == Some(409) => {
                    self.valid_until = None;
                    Ok(false)
                }
                Err(err) => Err(err.into()),
            };
        };
        let record = LeaseRecord::of(&lease);
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != record) {
            self.observed = Some((record.clone(), now));
        }
        let mine = record.holder.as_deref() == Some(self.settings.identity.as_str());
        let mut spec = lease.spec.take().unwrap_or_default();
        if mine {
            spec.renew_time = Some(wall);
            spec.lease_duration_seconds = Some(self.duration_seconds());
        } else {
            self.valid_until = None;
            let seen_at = self.observed.as_ref().map_or(now, |(_, at)| *at);
            if record.holder.is_some() && now < seen_at + self.lease_duration_of(&record) {
                return Ok(false);
            }
            spec.holder_identity = Some(self.settings.identity.clone());
            spec.lease_duration_seconds = Some(self.duration_seconds());
            spec.acquire_time = Some(wall.clone());
            spec.renew_time = Some(wall);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        lease.spec = Some(spec);
        // `lease.metadata.resourceVersion` is the one read: a concurrent write makes this a 409.
        let sent = at();
        match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.won(sent, at(), &updated);
                Ok(true)
            }
            Err(err) if status_code(&err) == Some(409) => {
                self.valid_until = None;
                Ok(false)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Gives the Lease up (on shutdown) so that another replica takes over at once.
    pub async fn release(&mut self, wall: DateTime<Utc>) -> Result<(), Error> {
        let was_leader = self.valid_until.take().is_some();
        if !was_leader {
            return Ok(());
        }
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else { return Ok(()) };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        let wall = MicroTime(to_jiff(wall));
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.acquire_time = Some(wall.clone());
        spec.renew_time = Some(wall);
        lease.spec = Some(spec);
        match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(err) if status_code(&err) == Some(409) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}
