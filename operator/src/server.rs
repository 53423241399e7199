//! The health and metrics listener: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How many controllers run (ScheduledReminder, Broadcast).
pub const CONTROLLERS: usize = 2;

/// What readiness depends on: the leader state is known, and a leader's caches are synced.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    election_known: AtomicBool,
    leader: AtomicBool,
    synced: AtomicUsize,
}

impl Health {
    /// Leadership decided (either way) or election disabled.
    pub fn set_leader(&self, leader: bool) {
        self.0.leader.store(leader, Ordering::SeqCst);
        self.0.election_known.store(true, Ordering::SeqCst);
    }

    /// Controllers (re)start: their caches are not synced yet.
    pub fn controllers_starting(&self) {
        self.0.synced.store(0, Ordering::SeqCst);
    }

    /// One controller's cache holds its initial list.
    pub fn controller_synced(&self) {
        self.0.synced.fetch_add(1, Ordering::SeqCst);
    }

    pub fn is_leader(&self) -> bool {
        self.0.leader.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.0.election_known.load(Ordering::SeqCst)
            && (!self.is_leader() || self.0.synced.load(Ordering::SeqCst) >= CONTROLLERS)
    }
}

#[derive(Clone)]
struct AppState {
    health: Health,
    metrics: Arc<Metrics>,
}

/// The listener's routes.
pub fn router(health: Health, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { health, metrics })
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.health.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: waiting for leader election or cache sync").into_response()
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}
