//! Operations endpoints: liveness, readiness and Prometheus metrics. The public port serves the
//! probes only; `/metrics` is served on the operations port (`BORCELLE_OPERATIONS_LISTEN` for
//! `serve`, `BORCELLE_WORKER_LISTEN` for `borcelle worker`), never to the public.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use borcelle_engine::events::EventBus;
use borcelle_store::PgPool;
use serde_json::json;

use crate::metrics::Metrics;

/// What the operations endpoints look at.
#[derive(Clone)]
pub struct Operations {
    pub db: PgPool,
    /// The process's event bus, reported by `/readyz` (a worker has none to report).
    pub events: Option<EventBus>,
    pub metrics: Arc<Metrics>,
}

/// `/healthz` and `/readyz`, as the public port serves them.
pub fn probes<S: Clone + Send + Sync + 'static>(ops: Operations) -> Router<S> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(ops)
}

/// The probes and `/metrics`, for the operations port.
pub fn router<S: Clone + Send + Sync + 'static>(ops: Operations) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers within two seconds (503 otherwise). The event bus is reported
/// but does not decide: without Redis, CRUD keeps working and live progress falls back to
/// snapshots, so a replica whose Redis is away still serves (`"events": {"connected": false}`).
pub async fn readyz(State(ops): State<Operations>) -> Response {
    let mut body = json!({ "status": "ready", "database": "ok" });
    if let Some(events) = &ops.events {
        body["events"] = json!({ "backend": events.backend(), "connected": events.is_connected() });
    }
    let check = tokio::time::timeout(Duration::from_secs(2), borcelle_store::ping(&ops.db)).await;
    let database = match check {
        Ok(Ok(())) => return Json(body).into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            "unreachable"
        }
        Err(_) => "timeout",
    };
    body["status"] = json!("unavailable");
    body["database"] = json!(database);
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

pub async fn metrics(State(ops): State<Operations>) -> Response {
    if let Some((events, bytes)) = ops.events.as_ref().and_then(EventBus::retained) {
        ops.metrics.engine.set_events_retained(events, bytes);
    }
    match ops.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
