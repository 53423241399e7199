//! `borcelle worker`: a delivery engine on its own; and `borcelle worker occurrence`: one
//! occurrence of a reminder or broadcast, what the operator's Jobs run (the contract with the
//! operator is `borcelle_crds::contract`).

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use borcelle_crds::contract::{EXIT_PERMANENT, TerminationReport};
use borcelle_engine::delivery::DeliveryEngine;
use borcelle_engine::events::EventBus;
use borcelle_engine::occurrence::{self, Occurrence, OccurrenceError, OccurrenceSpec};
use borcelle_engine::settings::{DeliverySettings, StorageSettings};
use borcelle_engine::storage;
use borcelle_mail::MailSettings;
use borcelle_store::{DatabaseSettings, PgPool};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{delivery_engine, event_bus};
use crate::http::ops::Operations;
use crate::metrics::Metrics;

/// What `borcelle worker` needs.
pub struct WorkerSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub listen: Option<SocketAddr>,
    pub database: DatabaseSettings,
    pub mail: MailSettings,
    pub delivery: DeliverySettings,
    pub redis_url: Option<secrecy::SecretString>,
    pub storage: StorageSettings,
    /// Where `borcelle serve` is reached: the unsubscribe links point there.
    pub public_url: url::Url,
    /// One-to-one messages carry unsubscribe links too.
    pub unsubscribe_one_to_one: bool,
    /// The inbound domain: messages carry reply, bounce and unsubscribe addresses in it.
    pub inbound_domain: Option<String>,
}

/// Runs a delivery engine on its own (`borcelle worker`) until `shutdown` completes.
pub async fn run_worker(settings: WorkerSettings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let db = borcelle_store::connect_and_migrate(&settings.database).await?;
    let stop = CancellationToken::new();
    let events = event_bus(settings.redis_url.as_ref(), stop.clone()).await?;
    let metrics = Arc::new(Metrics::default());
    let engine = worker_engine(&settings, db.clone(), events, &metrics).await?;
    let running = tokio::spawn(engine.run(stop.clone()));
    let health = match settings.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            tracing::info!(%addr, "worker health and metrics listening");
            let router = crate::http::ops::router(Operations { db: db.clone(), events: None, metrics });
            let stopped = stop.clone();
            Some(tokio::spawn(async move {
                axum::serve(listener, router).with_graceful_shutdown(async move { stopped.cancelled().await }).await
            }))
        }
        None => None,
    };
    shutdown.await;
    tracing::info!("worker stopping");
    stop.cancel();
    running.await.context("the delivery engine stopped abnormally")?;
    if let Some(health) = health {
        let _ = health.await;
    }
    db.close().await;
    Ok(())
}

/// A delivery engine of a worker process: its own mailer and store, woken by nobody (it polls).
async fn worker_engine(
    settings: &WorkerSettings,
    db: PgPool,
    events: EventBus,
    metrics: &Metrics,
) -> anyhow::Result<DeliveryEngine> {
    let db_for_keys = db.clone();
    Ok(delivery_engine(
        db.clone(),
        borcelle_mail::build_mailer(&settings.mail, db)?,
        events,
        &settings.mail,
        &settings.delivery,
        &settings.storage,
        storage::build_store(&settings.storage).await?,
        metrics.engine.clone(),
        Arc::new(Notify::new()),
        super::unsubscribe_settings(&db_for_keys, settings.public_url.clone(), settings.unsubscribe_one_to_one).await?,
        super::inbound_addresses(&db_for_keys, settings.inbound_domain.as_deref()).await?,
    ))
}

/// One occurrence for `borcelle worker occurrence` (what the operator's Jobs run).
pub struct OccurrenceJob {
    pub kind: String,
    /// `namespace/name`.
    pub resource: String,
    pub uid: uuid::Uuid,
    pub scheduled: chrono::DateTime<chrono::Utc>,
    /// The resource's spec as JSON.
    pub spec: String,
    /// Where the outcome is written for the operator.
    pub termination_log: std::path::PathBuf,
}

/// How often a Job checks whether its occurrence's emails are all sent or failed.
const OCCURRENCE_POLL: Duration = Duration::from_millis(250);

/// Runs one occurrence: starts it (once, whatever the retries), delivers its emails with a local
/// engine, waits until they are all sent or failed, and reports the counts. See
/// `borcelle worker occurrence --help` for the exit codes.
pub async fn run_occurrence_job(
    settings: WorkerSettings,
    job: OccurrenceJob,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    let report_permanent = |reason: String| {
        tracing::error!(resource = %job.resource, scheduled = %job.scheduled, %reason, "the occurrence cannot run");
        write_termination_log(&job.termination_log, &TerminationReport::permanent(reason));
        Ok(ExitCode::from(EXIT_PERMANENT))
    };
    let spec: serde_json::Value = match serde_json::from_str(&job.spec) {
        Ok(spec) => spec,
        Err(err) => return report_permanent(format!("BORCELLE_OCCURRENCE_SPEC is not JSON: {err}")),
    };
    let spec = match OccurrenceSpec::from_json(&job.kind, spec) {
        Ok(spec) => spec,
        Err(err) => return report_permanent(err.to_string()),
    };
    let db = borcelle_store::connect_and_migrate(&settings.database).await?;
    let stop = CancellationToken::new();
    let events = event_bus(settings.redis_url.as_ref(), stop.clone()).await?;
    let occurrence = Occurrence {
        resource_uid: job.uid,
        resource: &job.resource,
        scheduled: job.scheduled,
        spec: &spec,
        owner: None,
    };
    let mut tx = db.begin().await?;
    let replaced = occurrence::replace_older(&mut tx, &occurrence).await.context("replacing older occurrences")?;
    if replaced > 0 {
        tracing::info!(resource = %job.resource, replaced, "stopped the occurrences this one replaces");
    }
    let domain = settings.mail.message_id_domain();
    let mut started =
        match occurrence::start(&mut tx, &occurrence, domain, settings.storage.message_attachments_max_bytes).await {
            Ok(started) => started,
            Err(OccurrenceError::Permanent(reason)) => return report_permanent(reason),
            Err(OccurrenceError::Database(err)) => return Err(err).context("starting the occurrence"),
        };
    tx.commit().await?;
    started.announce(&events).await;
    tracing::info!(resource = %job.resource, scheduled = %job.scheduled, occurrence = %started.occurrence_id, first_run = started.created, recipients = started.recipients, skipped = started.skipped.len(), "occurrence started");

    let mut report = TerminationReport {
        delivered: i64::from(started.recipients),
        failed: 0,
        recipients: Some(i64::from(started.recipients)),
        skipped: started.skipped.clone(),
        error: None,
    };
    if let Some(task_id) = started.task_id {
        let engine = worker_engine(&settings, db.clone(), events, &Metrics::default()).await?;
        let running = tokio::spawn(engine.run(stop.clone()));
        tokio::pin!(shutdown);
        let finished = loop {
            match borcelle_store::tasks::progress(&db, task_id).await {
                Ok(Some(task)) if task.status == "done" => break Some(task),
                Ok(None) => break None,
                Ok(Some(_)) => {}
                Err(err) => tracing::warn!(error = %err, "reading the occurrence's progress failed; retrying"),
            }
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::warn!("stopping before the occurrence finished; a retry of this Job picks it up");
                    stop.cancel();
                    let _ = running.await;
                    db.close().await;
                    return Ok(ExitCode::FAILURE);
                }
                _ = tokio::time::sleep(OCCURRENCE_POLL) => {}
            }
        };
        stop.cancel();
        running.await.context("the delivery engine stopped abnormally")?;
        if let Some(task) = finished {
            report.delivered = i64::from(task.sent);
            report.failed = i64::from(task.failed);
        }
    }
    db.close().await;
    println!("{}", report.to_message());
    write_termination_log(&job.termination_log, &report);
    Ok(ExitCode::SUCCESS)
}

/// Writes the outcome where Kubernetes reads a container's termination message; without such a
/// file (outside a pod) it is only printed.
fn write_termination_log(path: &std::path::Path, report: &TerminationReport) {
    if let Err(err) = std::fs::write(path, report.to_message()) {
        tracing::debug!(path = %path.display(), error = %err, "no termination log written");
    }
}
