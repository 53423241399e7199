//! Running the operator: both controllers, under leader election unless it is disabled, until
//! shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use borcelle_crds::{Broadcast, ScheduledReminder};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Resource, ResourceExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::trim_for_trigger;
use crate::context::Context;
use crate::kinds::Occurring;
use crate::leader::{LeaseElector, LeaseSettings};
use crate::reconcile::{error_policy, reconcile};
use crate::server::Health;

/// How long a graceful stop waits for in-flight reconciles.
const GRACEFUL_STOP: Duration = Duration::from_secs(20);

/// Where the controllers watch, and the Lease (none: leader election disabled).
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Watch one namespace; all when `None`.
    pub namespace: Option<String>,
    pub lease: Option<LeaseSettings>,
}

/// Runs until `shutdown` is cancelled; then stops the controllers and releases the Lease.
pub async fn run(ctx: Arc<Context>, settings: RunSettings, health: Health, shutdown: CancellationToken) {
    match settings.lease.clone() {
        None => {
            health.set_leader(true);
            ctx.metrics.set_leader(true);
            run_controllers(ctx, settings.namespace, health, shutdown).await;
        }
        Some(lease) => run_elected(ctx, settings.namespace, lease, health, shutdown).await,
    }
}

/// Runs the controllers while holding the Lease.
async fn run_elected(
    ctx: Arc<Context>,
    namespace: Option<String>,
    lease: LeaseSettings,
    health: Health,
    shutdown: CancellationToken,
) {
    let retry = lease.retry_period;
    let renew_deadline = lease.renew_deadline;
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), &lease.namespace);
    let mut elector = LeaseElector::new(api, lease);
    let mut leading: Option<(CancellationToken, JoinHandle<()>)> = None;
    let mut ticker = tokio::time::interval(retry);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let until = elector.leader_until().map(tokio::time::Instant::from_std);
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                let started = Instant::now();
                // A leader's renewal may take until its deadline (client-go's renew deadline), not
                // just one retry period: a slow API server must not cost the Lease while a
                // renewal can still succeed. It must end by then, so that a lost Lease is noticed
                // before another replica may take it. A candidate's attempt is bounded the same.
                let budget =
                    elector.leader_until().map_or(renew_deadline, |u| u.saturating_duration_since(started));
                let round = elector.try_acquire_or_renew(started, chrono::Utc::now());
                match tokio::time::timeout(budget.max(Duration::from_millis(100)), round).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::warn!(error = %err, "leader election round failed"),
                    Err(_) => tracing::warn!("leader election round timed out"),
                }
            }
            () = sleep_until(until), if until.is_some() => {}
        }
        let leader = elector.is_leader(Instant::now());
        health.set_leader(leader);
        ctx.metrics.set_leader(leader);
        match (leader, leading.take()) {
            (true, None) => {
                tracing::info!(identity = %elector.settings().identity, "acquired the lease: starting controllers");
                let stop = shutdown.child_token();
                let task = tokio::spawn(run_controllers(ctx.clone(), namespace.clone(), health.clone(), stop.clone()));
                leading = Some((stop, task));
            }
            (false, Some((stop, task))) => {
                // Lost: stop at once (in-flight creates are idempotent by Job name).
                tracing::warn!("lost the lease: stopping controllers");
                stop.cancel();
                task.abort();
                let _ = task.await;
            }
            (_, current) => leading = current,
        }
    }
    if let Some((stop, task)) = leading {
        stop.cancel();
        stop_gracefully(task).await;
    }
    match elector.release(chrono::Utc::now()).await {
        Ok(()) => tracing::info!("released the lease"),
        Err(err) => tracing::warn!(error = %err, "could not release the lease"),
    }
}

async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

async fn stop_gracefully(mut task: JoinHandle<()>) {
    if tokio::time::timeout(GRACEFUL_STOP, &mut task).await.is_err() {
        tracing::warn!("controllers did not stop in time: aborting");
        task.abort();
    }
}

/// Reconciles in flight at once, per controller.
const RECONCILE_CONCURRENCY: u16 = 16;
/// Jobs per page of the Job watch's lists.
const JOB_PAGE: u32 = 100;

/// Runs the ScheduledReminder and Broadcast controllers until `stop`.
pub async fn run_controllers(ctx: Arc<Context>, namespace: Option<String>, health: Health, stop: CancellationToken) {
    health.controllers_starting();
    let reminders = controller::<ScheduledReminder>(ctx.clone(), namespace.as_deref(), health.clone(), stop.clone());
    let broadcasts = controller::<Broadcast>(ctx, namespace.as_deref(), health, stop);
    futures::join!(reminders, broadcasts);
    tracing::info!("controllers stopped");
}

async fn controller<K: Occurring>(ctx: Arc<Context>, namespace: Option<&str>, health: Health, stop: CancellationToken) {
    let client = ctx.client.clone();
    let (resources, jobs): (Api<K>, Api<Job>) = match namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let synced = Arc::new(SyncState::new(health));
    // Pages of 100 Jobs: a page is read whole (managedFields and all) before it is trimmed.
    let job_watch =
        watcher::Config::default().labels(&crate::job::kind_selector(K::KIND)).any_semantic().page_size(JOB_PAGE);
    // The owned Jobs: folded into the cache each reconcile reads (no list per reconcile), and
    // passed on, trimmed to their owner, to queue their resource's reconcile.
    let cache = ctx.jobs_cache.of(K::KIND).clone();
    let jobs_synced = synced.clone();
    let job_triggers = watcher(jobs, job_watch)
        .default_backoff()
        .map_ok(move |event| {
            cache.apply(&event);
            if matches!(event, watcher::Event::InitDone) {
                jobs_synced.jobs_listed(K::KIND);
            }
            event
        })
        .touched_objects()
        .map_ok(trim_for_trigger);
    let (store, writer) = reflector::store::<K>();
    // The cache keeps objects without their managedFields (often the larger part of an object),
    // and only spec changes (generation) trigger a reconcile: the operator's own status writes
    // do not. Job events (owns) and requeues trigger the rest. The initial list is noticed on the
    // stream itself: waiting on the store from another task as well left one of the two waiters
    // unwoken (kube-runtime wakes one), and the leader never turned ready.
    let resources_synced = synced.clone();
    let changes = watcher(resources, watcher::Config::default().any_semantic())
        .default_backoff()
        .map_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                resources_synced.resources_listed(K::KIND);
            }
            event
        })
        .modify(strip_for_cache::<K>)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    // Bounded reconciles in flight: kube's client opens a connection per request in flight and
    // keeps them, so 10,000 reconciles at once held ~7,800 connections (~375 MiB).
    let controller = Controller::for_stream(changes, store)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .owns_stream(job_triggers)
        .graceful_shutdown_on(async move { stop.cancelled().await });
    controller
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, action)) => tracing::debug!(%object, ?action, "reconciled"),
                // Logged with its backoff by the error policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(object)) => tracing::debug!(%object, "object gone"),
                Err(err) => tracing::warn!(kind = %K::KIND, error = %err, "controller error"),
            }
        })
        .await;
}

/// Whether a controller has seen the first full list of its resources and of its Jobs; once it
/// has both, it counts as synced for readiness (once, whatever relists follow).
struct SyncState {
    health: Health,
    resources: AtomicBool,
    jobs: AtomicBool,
    reported: AtomicBool,
}

impl SyncState {
    fn new(health: Health) -> Self {
        SyncState {
            health,
            resources: AtomicBool::new(false),
            jobs: AtomicBool::new(false),
            reported: AtomicBool::new(false),
        }
    }

    fn resources_listed(&self, kind: crate::Kind) {
        self.resources.store(true, Ordering::SeqCst);
        self.report(kind);
    }

    fn jobs_listed(&self, kind: crate::Kind) {
        self.jobs.store(true, Ordering::SeqCst);
        self.report(kind);
    }

    fn report(&self, kind: crate::Kind) {
        if self.resources.load(Ordering::SeqCst)
            && self.jobs.load(Ordering::SeqCst)
            && !self.reported.swap(true, Ordering::SeqCst)
        {
            tracing::info!(%kind, "cache synced");
            self.health.controller_synced();
        }
    }
}

/// The annotation in which `kubectl apply` keeps a copy of the whole object it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what the reconciler never reads from a cached object: managedFields, and the copy of the
/// object that `kubectl apply` keeps in an annotation (as large as the spec again).
pub fn strip_for_cache<K: Resource>(obj: &mut K) {
    obj.managed_fields_mut().clear();
    if let Some(annotations) = obj.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    use super::*;

    #[test]
    fn the_cache_keeps_neither_managed_fields_nor_the_last_applied_copy() {
        let mut job = Job {
            metadata: ObjectMeta {
                annotations: Some(
                    [(LAST_APPLIED.to_owned(), "{}".to_owned()), ("team".to_owned(), "sales".to_owned())].into(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..ObjectMeta::default()
            },
            ..Job::default()
        };
        strip_for_cache(&mut job);
        assert_eq!(job.metadata.managed_fields, Some(Vec::new()));
        assert_eq!(job.metadata.annotations, Some([("team".to_owned(), "sales".to_owned())].into()));
    }
}
