//! Reconciling one ScheduledReminder or Broadcast: read its Jobs, decide with
//! `borcelle_crds::decide`, start/skip/replace, report finished runs, prune history, write status.

mod history;
mod occurrence;

use std::sync::Arc;
use std::time::Duration;

use borcelle_crds::SpecError;
use borcelle_crds::decide::{Decision, Observed, decide_timing};
use borcelle_crds::status::{FALSE, Outlook, READY, RunState, decision_note};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::Instrument;

use crate::context::Context;
use crate::error::Error;
use crate::job::OwnedJob;
use crate::kinds::Occurring;
use crate::time::to_chrono;

/// Requeue at least this late (an early wake-up must not spin) …
pub const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// … and at most this late (a missed watch event is caught up within the hour).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// Reconciles `obj`: the function `Controller::run` calls.
/// How soon a reconcile that came before the first list of Jobs is tried again.
const JOBS_NOT_LISTED_YET: std::time::Duration = std::time::Duration::from_secs(1);

pub async fn reconcile<K: Occurring>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Decisions read the owned Jobs from the Job watch's cache: until its first full list is in,
    // a resource with a running Job would look idle (Forbid would start a second run).
    if !ctx.jobs_cache.of(K::KIND).is_synced() {
        return Ok(Action::requeue(JOBS_NOT_LISTED_YET));
    }
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        kind = %K::KIND,
        namespace = obj.namespace().as_deref().unwrap_or_default(),
        name = %obj.name_any(),
    );
    let result = match reconcile_object(obj.as_ref(), &ctx).instrument(span).await {
        // Worked from a status older than the stored one: look again once the watch has it.
        Err(Error::StaleStatus) => {
            tracing::debug!("status changed since it was read: reconciling again");
            Ok(Action::requeue(MIN_REQUEUE))
        }
        other => other,
    };
    ctx.metrics.reconciled(K::KIND, started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => ctx.backoff.succeeded(&object_key(obj.as_ref())),
        Err(err) => ctx.metrics.failed(K::KIND, err.metric_reason()),
    }
    result
}

/// Retries a failed object after a per-object backoff (1 s doubling to 5 min).
pub fn error_policy<K: Occurring>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&object_key(obj.as_ref()));
    tracing::warn!(
        kind = %K::KIND,
        namespace = obj.namespace().as_deref().unwrap_or_default(),
        name = %obj.name_any(),
        error = %err,
        retry_in_secs = delay.as_secs_f64(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

fn object_key<K: Occurring>(obj: &K) -> String {
    format!("{}/{}/{}", K::KIND, obj.namespace().unwrap_or_default(), obj.name_any())
}

/// Look again at `next` (within [`MIN_REQUEUE`, `MAX_REQUEUE`]), or in an hour without one.
pub fn requeue_at(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Action {
    let wait = next.map_or(MAX_REQUEUE, |next| (next - now).to_std().unwrap_or(Duration::ZERO));
    Action::requeue(wait.clamp(MIN_REQUEUE, MAX_REQUEUE))
}

/// One reconcile of one object: what it is, and the status being built.
struct Reconciler<'a, K: Occurring> {
    obj: &'a K,
    ctx: &'a Context,
    name: String,
    namespace: String,
    uid: String,
    reference: ObjectReference,
    now: DateTime<Utc>,
    jobs: Api<Job>,
    /// The status as it was read.
    before: RunState,
    /// The status being built.
    state: RunState,
}

async fn reconcile_object<K: Occurring>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let namespace = obj.namespace().ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let uid = obj.uid().ok_or_else(|| Error::MissingUid(name.clone()))?;
    let now = ctx.now();
    let created = obj.meta().creation_timestamp.as_ref().map_or(now, |t| to_chrono(t.0));
    let before = obj.run_state();
    let mut state = before.clone();
    state.observed_generation = obj.meta().generation;
    let mut run = Reconciler {
        obj,
        ctx,
        jobs: Api::namespaced(ctx.client.clone(), &namespace),
        reference: obj.object_ref(&()),
        name,
        namespace,
        uid,
        now,
        before,
        state,
    };
    let timing = match obj.timing(created) {
        Ok(timing) => timing,
        Err(err) => return run.invalid_spec(&err).await,
    };

    let mut owned = run.owned_jobs();
    run.observe_finished(&owned).await?;
    run.prune_history(&mut owned).await?;

    // The newest occurrence a Job exists for counts as handled even if the status write that
    // recorded it was lost (or has not reached the watch cache yet).
    let last_scheduled = run.state.last_schedule_time.max(owned.iter().map(|j| j.occurrence).max());
    run.state.last_schedule_time = last_scheduled;
    let policy = obj.policy();
    let decision = if obj.expired(now) {
        Decision::Wait { next: None }
    } else {
        let observed =
            Observed { created, last_scheduled, active_runs: owned.iter().filter(|j| j.is_active()).count() };
        decide_timing(&timing, &policy, &observed, now)
    };
    tracing::debug!(?decision, "decided");
    run.act(&decision, &mut owned).await?;

    let mut active: Vec<_> = owned
        .iter()
        .filter(|j| j.is_active())
        .map(|j| borcelle_crds::RunRef { name: j.name.clone(), scheduled_time: j.occurrence })
        .collect();
    active.sort_by(|a, b| (a.scheduled_time, &a.name).cmp(&(b.scheduled_time, &b.name)));
    run.state.active = active;
    let outlook = Outlook { suspended: policy.suspend, expired: obj.expired(now) };
    run.state.decided(&decision, outlook, decision_note(&decision), now);
    run.write_status().await?;
    Ok(requeue_at(decision.next(), now))
}

impl<K: Occurring> Reconciler<'_, K> {
    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        self.ctx.publish(&self.reference, type_, reason, action, note).await;
    }

    /// An unusable spec: reported once per generation (condition + event), no Job, and no requeue
    /// until the spec changes.
    async fn invalid_spec(mut self, err: &SpecError) -> Result<Action, Error> {
        let reason = err.reason();
        let generation = self.state.observed_generation;
        let reported = self
            .before
            .condition(READY)
            .is_some_and(|c| c.status == FALSE && c.reason == reason && c.observed_generation == generation);
        self.state.invalid_spec(reason, err.to_string(), self.now);
        if !reported {
            tracing::info!(reason, error = %err, "invalid spec");
            self.event(EventType::Warning, reason, "Validate", err.to_string()).await;
        }
        self.write_status().await?;
        Ok(Action::await_change())
    }

    /// The Jobs this object controls, from the Job watch's cache (never a list per reconcile).
    fn owned_jobs(&self) -> Vec<OwnedJob> {
        self.ctx.jobs_cache.of(K::KIND).jobs_of(&self.uid)
    }

    /// Writes the status by server-side apply, unless it already reads so. The write carries the
    /// resourceVersion the status was read at: a reconcile working from a cached status older than
    /// the last write (the watch not caught up yet) is refused (409) and looks again, instead of
    /// putting an older `lastRun` back.
    async fn write_status(&self) -> Result<(), Error> {
        let status = K::status_from(&self.state);
        if self.obj.status_is(&status) {
            return Ok(());
        }
        let mut patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        if let Some(version) = &self.obj.meta().resource_version {
            patch["metadata"] = serde_json::json!({ "resourceVersion": version });
        }
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let params = PatchParams::apply(crate::FIELD_MANAGER).force();
        match api.patch_status(&self.name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => Ok(()),
            Err(err) if crate::error::status_code(&err) == Some(409) => Err(Error::StaleStatus),
            Err(err) => Err(err.into()),
        }
    }
}
