//! Building and running the server: the seam tests use (bind port 0, read the port, run until a
//! shutdown future completes).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DatabaseSettings, DeliverySettings, MailSettings, Settings, StorageSettings};
use crate::db::{self, rate_limits, sessions, user_tokens};
use crate::delivery::DeliveryEngine;
use crate::events::EventBus;
use crate::mail;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::storage;

/// How long shutdown waits for background work (account emails in flight) to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Stops the background parts (delivery engine, housekeeping, event subscriber).
    stop: CancellationToken,
}

/// The event bus the settings select: Redis when configured, else in-process.
pub async fn event_bus(redis_url: Option<&secrecy::SecretString>, stop: CancellationToken) -> anyhow::Result<EventBus> {
    match redis_url {
        Some(url) => EventBus::redis(secrecy::ExposeSecret::expose_secret(url), stop).await,
        None => Ok(EventBus::in_process()),
    }
}

impl Application {
    /// Connects the database (creating and migrating it), builds the mailer and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = db::connect_and_migrate(&settings.database).await?;
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding {}", settings.http.listen))?;
        Self::with_listener(settings, db, listener).await
    }

    /// Builds around an existing pool and listener.
    pub async fn with_listener(settings: Settings, db: PgPool, listener: TcpListener) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let mailer = mail::build_mailer(&settings.mail, db.clone())?;
        let events = event_bus(settings.redis_url.as_ref(), stop.clone()).await?;
        let store = storage::build_store(&settings.storage).await?;
        let cluster = match &settings.delivery.scheduler {
            crate::config::SchedulerBackend::Kubernetes { namespace } => Some(
                crate::cluster::Cluster::connect(namespace.clone())
                    .await
                    .context("connecting to the Kubernetes API (BORCELLE_SCHEDULER=kubernetes)")?,
            ),
            _ => None,
        };
        // Half as many connections again as the pool, for pages of contacts only.
        let contact_pages = Arc::new(crate::db::lane::Lane::new(
            &db,
            (settings.database.max_connections as usize).div_ceil(2),
            settings.database.acquire_timeout,
        ));
        let state = AppState {
            db,
            contact_pages,
            settings: Arc::new(settings),
            mailer,
            metrics: Arc::new(Metrics::default()),
            tasks: TaskTracker::new(),
            events,
            wake_delivery: Arc::new(Notify::new()),
            wake_scheduler: Arc::new(Notify::new()),
            store,
            cluster,
            db_gate: Arc::default(),
        };
        Ok(Self { listener, state, stop })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests finish and waits
    /// (up to a grace period) for background work.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application { listener, state, stop } = self;
        let housekeeping = tokio::spawn(housekeeping(state.clone(), stop.clone()));
        let delivery = state.settings.delivery.in_serve.then(|| {
            let engine = DeliveryEngine {
                db: state.db.clone(),
                mailer: state.mailer.clone(),
                events: state.events.clone(),
                mail: state.settings.mail.clone(),
                settings: state.settings.delivery.clone(),
                metrics: state.metrics.clone(),
                wake: state.wake_delivery.clone(),
                store: state.store.clone(),
                attachments_max_bytes: state.settings.storage.message_attachments_max_bytes,
            };
            tokio::spawn(engine.run(stop.clone()))
        });
        let scheduler = state.settings.delivery.scheduler.in_process().then(|| {
            let scheduler = crate::scheduler::Scheduler {
                db: state.db.clone(),
                events: state.events.clone(),
                wake: state.wake_scheduler.clone(),
                wake_delivery: state.wake_delivery.clone(),
                message_id_domain: state.settings.mail.message_id_domain().to_owned(),
                attachments_max_bytes: state.settings.storage.message_attachments_max_bytes,
            };
            tokio::spawn(scheduler.run(stop.clone()))
        });
        if state.settings.dev_mode {
            tracing::warn!("dev mode: the outbox page is open to everyone; set BORCELLE_DEV_MODE=false in production");
        }
        tracing::info!(addr = %listener.local_addr()?, public_url = %state.settings.http.public_url, mail = state.settings.mail.transport.name(), storage = state.store.name(), "serving");
        let app = crate::http::router(state.clone());
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        tracing::info!("no longer accepting requests; finishing background work");
        stop.cancel();
        let _ = housekeeping.await;
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        if let Some(delivery) = delivery {
            let _ = delivery.await;
        }
        state.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, state.tasks.wait()).await.is_err() {
            tracing::warn!(pending = state.tasks.len(), "background work still running at the end of the grace period");
        }
        state.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Deletes expired sessions, tokens and throttling counters now and then.
async fn housekeeping(state: AppState, stop: CancellationToken) {
    let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let auth = &state.settings.auth;
        let longest_window = [
            auth.login_failures_per_account,
            auth.login_failures_per_ip,
            auth.mail_requests_per_email,
            auth.mail_requests_per_ip,
        ]
        .iter()
        .map(|t| t.window.as_secs_f64())
        .fold(0.0, f64::max);
        let result = async {
            let sessions = sessions::delete_expired(&state.db, auth.session_idle.as_secs_f64()).await?;
            let tokens = user_tokens::delete_expired(&state.db).await?;
            let counters = rate_limits::delete_stale(&state.db, longest_window).await?;
            Ok::<_, sqlx::Error>((sessions, tokens, counters))
        }
        .await;
        match result {
            Ok((sessions, tokens, counters)) => tracing::debug!(sessions, tokens, counters, "housekeeping done"),
            Err(err) => tracing::warn!(error = %err, "housekeeping failed; will try again"),
        }
    }
}

/// What `borcelle worker` needs.
pub struct WorkerSettings {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (none when unset).
    pub listen: Option<SocketAddr>,
    pub database: DatabaseSettings,
    pub mail: MailSettings,
    pub delivery: DeliverySettings,
    pub redis_url: Option<secrecy::SecretString>,
    pub storage: StorageSettings,
}

/// Runs a delivery engine on its own (`borcelle worker`) until `shutdown` completes.
pub async fn run_worker(settings: WorkerSettings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let db = db::connect_and_migrate(&settings.database).await?;
    let stop = CancellationToken::new();
    let events = event_bus(settings.redis_url.as_ref(), stop.clone()).await?;
    let engine = DeliveryEngine {
        mailer: mail::build_mailer(&settings.mail, db.clone())?,
        db: db.clone(),
        events,
        mail: settings.mail,
        settings: settings.delivery,
        metrics: Arc::new(Metrics::default()),
        wake: Arc::new(Notify::new()),
        store: storage::build_store(&settings.storage).await?,
        attachments_max_bytes: settings.storage.message_attachments_max_bytes,
    };
    let metrics = engine.metrics.clone();
    let running = tokio::spawn(engine.run(stop.clone()));
    let health = match settings.listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            tracing::info!(%addr, "worker health and metrics listening");
            let router = worker_router(db.clone(), metrics);
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

/// `/healthz` (the process answers), `/readyz` (the database answers within two seconds) and
/// `/metrics` of `borcelle worker`.
fn worker_router(db: PgPool, metrics: Arc<Metrics>) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }))
        .route(
            "/readyz",
            get(move || {
                let db = db.clone();
                async move {
                    let check =
                        tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&db)).await;
                    match check {
                        Ok(Ok(_)) => (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready" }))),
                        _ => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(serde_json::json!({ "status": "unavailable" })),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.render() {
                        Ok(text) => (
                            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                            text,
                        )
                            .into_response(),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }
            }),
        )
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

/// The exit code of an occurrence that can never run (the Job should not retry it).
pub const EXIT_PERMANENT: u8 = 3;
/// How often a Job checks whether its occurrence's emails are all sent or failed.
const OCCURRENCE_POLL: Duration = Duration::from_millis(250);

/// Runs one occurrence: starts it (once, whatever the retries), delivers its emails with a local
/// engine, waits until they are all sent or failed, and reports the counts. See
/// `borcelle worker occurrence --help` for the exit codes.
pub async fn run_occurrence_job(
    settings: WorkerSettings,
    job: OccurrenceJob,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::occurrence::{Occurrence, OccurrenceError, OccurrenceSpec};
    let report_permanent = |reason: String| {
        tracing::error!(resource = %job.resource, scheduled = %job.scheduled, %reason, "the occurrence cannot run");
        write_termination_log(
            &job.termination_log,
            &serde_json::json!({ "delivered": 0, "failed": 0, "recipients": 0, "error": reason }),
        );
        Ok(std::process::ExitCode::from(EXIT_PERMANENT))
    };
    let spec: serde_json::Value = match serde_json::from_str(&job.spec) {
        Ok(spec) => spec,
        Err(err) => return report_permanent(format!("BORCELLE_OCCURRENCE_SPEC is not JSON: {err}")),
    };
    let spec = match OccurrenceSpec::from_json(&job.kind, spec) {
        Ok(spec) => spec,
        Err(err) => return report_permanent(err.to_string()),
    };
    let db = db::connect_and_migrate(&settings.database).await?;
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
    let mut started = match crate::occurrence::start(
        &mut tx,
        &occurrence,
        settings.mail.message_id_domain(),
        settings.storage.message_attachments_max_bytes,
    )
    .await
    {
        Ok(started) => started,
        Err(OccurrenceError::Permanent(reason)) => return report_permanent(reason),
        Err(OccurrenceError::Database(err)) => return Err(err).context("starting the occurrence"),
    };
    tx.commit().await?;
    started.announce(&events).await;
    tracing::info!(resource = %job.resource, scheduled = %job.scheduled, occurrence = %started.occurrence_id, first_run = started.created, recipients = started.recipients, skipped = started.skipped.len(), "occurrence started");

    let mut report = serde_json::json!({ "delivered": started.recipients, "failed": 0, "recipients": started.recipients, "skipped": started.skipped });
    if let Some(task_id) = started.task_id {
        let wake = Arc::new(Notify::new());
        let engine = DeliveryEngine {
            mailer: mail::build_mailer(&settings.mail, db.clone())?,
            db: db.clone(),
            events,
            mail: settings.mail.clone(),
            settings: settings.delivery.clone(),
            metrics: Arc::new(Metrics::default()),
            wake: wake.clone(),
            store: storage::build_store(&settings.storage).await?,
            attachments_max_bytes: settings.storage.message_attachments_max_bytes,
        };
        let running = tokio::spawn(engine.run(stop.clone()));
        tokio::pin!(shutdown);
        let finished = loop {
            match crate::db::tasks::progress(&db, task_id).await {
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
                    return Ok(std::process::ExitCode::FAILURE);
                }
                _ = tokio::time::sleep(OCCURRENCE_POLL) => {}
            }
        };
        stop.cancel();
        running.await.context("the delivery engine stopped abnormally")?;
        if let Some(task) = finished {
            report["delivered"] = task.sent.into();
            report["failed"] = task.failed.into();
        }
    }
    db.close().await;
    println!("{report}");
    write_termination_log(&job.termination_log, &report);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes the outcome where Kubernetes reads a container's termination message; without such a
/// file (outside a pod) it is only printed.
fn write_termination_log(path: &std::path::Path, report: &serde_json::Value) {
    if let Err(err) = std::fs::write(path, report.to_string()) {
        tracing::debug!(path = %path.display(), error = %err, "no termination log written");
    }
}

/// Completes on SIGINT or SIGTERM.
/// Raises this process's soft limit on open files to its hard limit, and returns the limit now in force. Every
/// WebSocket, HTTP and database connection is a file, and the soft limit a shell or service manager often gives
/// (1,024) would cap `serve` at about a thousand open tabs whatever the memory allows. The hard limit is the
/// administrator's (`ulimit -Hn`, systemd's `LimitNOFILE`, the container runtime's), and is left as it is.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return limit.current;
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum: Some(hard) }) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-files limit");
            Some(hard)
        }
        Err(err) => {
            tracing::warn!(error = %err, soft, hard, "could not raise the open-files limit");
            Some(soft)
        }
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
