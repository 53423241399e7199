//! Building and running the server: the seam tests use (bind port 0, read the port, run until a
//! shutdown future completes). `borcelle worker` and `borcelle worker occurrence` are in [`worker`].

mod inbound;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use borcelle_engine::accounts::{AccountMail, Accounts};
use borcelle_engine::consent::UnsubscribeLinks;
use borcelle_engine::delivery::web::WebLoad;
use borcelle_engine::delivery::{DeliveryEngine, UnsubscribeSettings};
use borcelle_engine::events::EventBus;
use borcelle_engine::inbound::{Addresses, Inbox, Receiver};
use borcelle_engine::messaging::Messaging;
use borcelle_engine::scheduler::Scheduler;
use borcelle_engine::schedules::{Cluster, Schedules};
use borcelle_engine::settings::{DeliverySettings, SchedulerBackend, StorageSettings};
use borcelle_engine::storage::{self, Store};
use borcelle_mail::{MailSettings, Mailer};
use borcelle_store::lane::Lane;
use borcelle_store::{PgPool, rate_limits, sessions, user_tokens};
pub use inbound::{InboundProcessSettings, run_inbound};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
pub use worker::{OccurrenceJob, WorkerSettings, run_occurrence_job, run_worker};

use crate::config::Settings;
use crate::http::ops::Operations;
use crate::metrics::Metrics;
use crate::state::{AppState, Parts};

/// How long shutdown waits for background work (account emails in flight) to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

/// A built server, bound to its port(s), not yet serving.
pub struct Application {
    listener: TcpListener,
    /// `/metrics`, `/healthz`, `/readyz` on a port of their own, when configured.
    operations: Option<TcpListener>,
    /// The SMTP receiver's port, when `serve` runs it.
    inbound: Option<TcpListener>,
    state: AppState,
    /// Background parts that `run_until_stopped` starts.
    background: Background,
    /// Stops the background parts (delivery engine, scheduler, housekeeping, event subscriber).
    stop: CancellationToken,
}

/// What runs beside the requests.
struct Background {
    mailer: Mailer,
    wake_scheduler: Arc<Notify>,
    unsubscribe: Arc<UnsubscribeSettings>,
    /// Reply, bounce and unsubscribe addresses, when inbound mail is configured.
    addresses: Option<Addresses>,
}

/// The addresses of inbound mail in `domain` (none without one), signed with the installation's
/// key (created in the database on first use, shared by every process).
pub async fn inbound_addresses(db: &PgPool, domain: Option<&str>) -> anyhow::Result<Option<Addresses>> {
    match domain {
        Some(domain) => Ok(Some(Addresses::load(db, domain).await.context("loading the inbound addresses' key")?)),
        None => Ok(None),
    }
}

/// The event bus the settings select: Redis when configured, else in-process.
pub async fn event_bus(redis_url: Option<&secrecy::SecretString>, stop: CancellationToken) -> anyhow::Result<EventBus> {
    match redis_url {
        Some(url) => Ok(EventBus::redis(secrecy::ExposeSecret::expose_secret(url), stop).await?),
        None => Ok(EventBus::in_process()),
    }
}

/// A delivery engine over these parts (`serve`, `borcelle worker` and an occurrence's Job alike).
#[allow(clippy::too_many_arguments)]
pub fn delivery_engine(
    db: PgPool,
    mailer: Mailer,
    events: EventBus,
    mail: &MailSettings,
    delivery: &DeliverySettings,
    storage: &StorageSettings,
    store: Store,
    metrics: Arc<borcelle_engine::metrics::EngineMetrics>,
    wake: Arc<Notify>,
    unsubscribe: Arc<UnsubscribeSettings>,
    inbound: Option<Addresses>,
) -> DeliveryEngine {
    DeliveryEngine {
        db,
        mailer,
        events,
        mail: mail.clone(),
        settings: delivery.clone(),
        metrics,
        wake,
        store,
        attachments_max_bytes: storage.message_attachments_max_bytes,
        unsubscribe,
        inbound,
        web: None,
    }
}

/// The unsubscribe links of outgoing mail, signed with the installation's key (created in the
/// database on first use, shared by every process).
pub async fn unsubscribe_settings(
    db: &PgPool,
    public_url: url::Url,
    one_to_one: bool,
) -> anyhow::Result<Arc<UnsubscribeSettings>> {
    let links = UnsubscribeLinks::load(db, public_url).await.context("loading the unsubscribe links' key")?;
    Ok(Arc::new(UnsubscribeSettings { links, one_to_one }))
}

impl Application {
    /// Connects the database (creating and migrating it), builds the mailer and binds the listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = borcelle_store::connect_and_migrate(&settings.database).await?;
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding {}", settings.http.listen))?;
        Self::with_listener(settings, db, listener).await
    }

    /// Builds around an existing pool and listener (the operations listener, when configured, is
    /// bound here).
    pub async fn with_listener(settings: Settings, db: PgPool, listener: TcpListener) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let operations = match settings.operations_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| format!("binding {addr} (operations)"))?),
            None => None,
        };
        let mailer = borcelle_mail::build_mailer(&settings.mail, db.clone())?;
        let unsubscribe =
            unsubscribe_settings(&db, settings.http.public_url.clone(), settings.consent.unsubscribe_one_to_one)
                .await?;
        let events = event_bus(settings.redis_url.as_ref(), stop.clone()).await?;
        let store = storage::build_store(&settings.storage).await?;
        let addresses = inbound_addresses(&db, settings.inbound.as_ref().map(|i| i.domain.as_str())).await?;
        let inbound = match &settings.inbound {
            Some(inbound) if settings.inbound_in_serve => Some(
                TcpListener::bind(inbound.listen)
                    .await
                    .with_context(|| format!("binding {} (inbound SMTP)", inbound.listen))?,
            ),
            _ => None,
        };
        let inbox = addresses.clone().map(|addresses| Inbox {
            db: db.clone(),
            store: store.clone(),
            events: events.clone(),
            addresses,
        });
        let metrics = Arc::new(Metrics::default());
        let tasks = TaskTracker::new();
        let wake_delivery = Arc::new(Notify::new());
        let wake_scheduler = Arc::new(Notify::new());
        let schedules = match &settings.delivery.scheduler {
            SchedulerBackend::Kubernetes { namespace } => {
                Schedules::kubernetes(db.clone(), Cluster::connect(namespace.clone()).await?)
            }
            SchedulerBackend::InProcess | SchedulerBackend::Off => {
                Schedules::postgres(db.clone(), wake_scheduler.clone())
            }
        };
        // Half as many connections again as the pool, for pages of contacts only.
        let contact_pages = Arc::new(Lane::new(
            &db,
            (settings.database.max_connections as usize).div_ceil(2),
            settings.database.acquire_timeout,
        ));
        let account_mail =
            AccountMail::new(Arc::new(settings.mail.clone()), mailer.clone(), metrics.engine.clone(), tasks.clone());
        let accounts =
            Accounts::new(db.clone(), Arc::new(settings.auth.clone()), settings.http.public_url.clone(), account_mail);
        let messaging = Messaging {
            db: db.clone(),
            events: events.clone(),
            wake_delivery: wake_delivery.clone(),
            message_id_domain: settings.mail.message_id_domain().to_owned(),
            attachments_max_bytes: settings.storage.message_attachments_max_bytes,
            queue_chunk: i64::try_from(settings.delivery.queue_chunk).unwrap_or(i64::MAX),
            queue_lease: settings.delivery.queue_lease,
        };
        let web_load =
            Arc::new(WebLoad::new(settings.delivery.web_busy_requests, settings.delivery.web_busy_requests_per_sec));
        let state = AppState::new(Parts {
            db: db.clone(),
            contact_pages,
            settings: Arc::new(settings),
            accounts,
            messaging,
            schedules,
            events,
            store,
            wake_delivery,
            metrics,
            tasks,
            db_gate: Arc::default(),
            web_load,
            unsubscribe_links: unsubscribe.links.clone(),
            suppressions: borcelle_engine::consent::Suppressions { db: db.clone() },
            inbox,
        });
        let background = Background { mailer, wake_scheduler, unsubscribe, addresses };
        Ok(Self { listener, operations, inbound, state, background, stop })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Where the SMTP receiver listens, when `serve` runs it.
    pub fn inbound_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        Ok(self.inbound.as_ref().map(TcpListener::local_addr).transpose()?)
    }

    /// Where `/metrics` is served, when it is.
    pub fn operations_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        Ok(self.operations.as_ref().map(TcpListener::local_addr).transpose()?)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The delivery engine this server runs (or would run): tests drive it themselves.
    pub fn delivery_engine(&self) -> DeliveryEngine {
        let state = &self.state;
        let engine = delivery_engine(
            state.db.clone(),
            self.background.mailer.clone(),
            state.events.clone(),
            &state.settings.mail,
            &state.settings.delivery,
            &state.settings.storage,
            state.store.clone(),
            state.metrics.engine.clone(),
            state.wake_delivery.clone(),
            self.background.unsubscribe.clone(),
            self.background.addresses.clone(),
        );
        // People first: this process's web slows its engine while it is busy.
        DeliveryEngine { web: Some(state.web_load.clone()), ..engine }
    }

    /// The scheduler this server runs (or would run): tests drive it themselves.
    pub fn scheduler(&self) -> Scheduler {
        let state = &self.state;
        Scheduler {
            db: state.db.clone(),
            events: state.events.clone(),
            wake: self.background.wake_scheduler.clone(),
            wake_delivery: state.wake_delivery.clone(),
            message_id_domain: state.settings.mail.message_id_domain().to_owned(),
            attachments_max_bytes: state.settings.storage.message_attachments_max_bytes,
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests finish and waits
    /// (up to a grace period) for background work.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let delivery = self.state.settings.delivery.in_serve.then(|| self.delivery_engine());
        let scheduler = self.state.settings.delivery.scheduler.in_process().then(|| self.scheduler());
        let Application { listener, operations, inbound, state, background, stop } = self;
        let receiver = match (inbound, &state.inbox, &state.settings.inbound) {
            (Some(listener), Some(inbox), Some(settings)) => {
                let receiver = Receiver::new(inbox.clone(), settings.clone())?;
                Some(tokio::spawn(receiver.run(listener, stop.clone())))
            }
            _ => None,
        };
        let housekeeping = tokio::spawn(housekeeping(state.clone(), stop.clone()));
        // Sends whose queueing stopped with their writer (another process's crash) are finished here.
        let resume = tokio::spawn(state.messaging.clone().resume_stalled(stop.clone()));
        let delivery = delivery.map(|engine| tokio::spawn(engine.run(stop.clone())));
        let scheduler = scheduler.map(|scheduler| tokio::spawn(scheduler.run(stop.clone())));
        let operations = operations.map(|listener| {
            let ops = Operations { db: state.db.clone(), events: Some(state.events.clone()), metrics: state.metrics.clone() };
            let stopped = stop.clone();
            tracing::info!(addr = ?listener.local_addr().ok(), "operations endpoints (/metrics, /healthz, /readyz) listening");
            tokio::spawn(async move {
                axum::serve(listener, crate::http::ops::router(ops))
                    .with_graceful_shutdown(async move { stopped.cancelled().await })
                    .await
            })
        });
        if state.settings.dev_mode {
            tracing::warn!("dev mode: the outbox page is open to everyone; set BORCELLE_DEV_MODE=false in production");
        }
        tracing::info!(addr = %listener.local_addr()?, public_url = %state.settings.http.public_url, mail = state.settings.mail.transport.name(), storage = state.store.name(), schedules = state.schedules.backend(), "serving");
        let app = crate::http::router(state.clone());
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP")?;
        tracing::info!("no longer accepting requests; finishing background work");
        stop.cancel();
        let _ = housekeeping.await;
        let _ = resume.await;
        if let Some(operations) = operations {
            let _ = operations.await;
        }
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        if let Some(receiver) = receiver {
            let _ = receiver.await;
        }
        if let Some(delivery) = delivery {
            let _ = delivery.await;
        }
        let _ = background;
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
            auth.login_failures_per_account_new_clients,
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
            borcelle_store::login_devices::delete_stale(&state.db, auth.login_device_idle.as_secs_f64()).await?;
            Ok::<_, borcelle_store::Error>((sessions, tokens, counters))
        }
        .await;
        match result {
            Ok((sessions, tokens, counters)) => tracing::debug!(sessions, tokens, counters, "housekeeping done"),
            Err(err) => tracing::warn!(error = %err, "housekeeping failed; will try again"),
        }
    }
}

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

/// Completes on SIGINT or SIGTERM.
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
