//! Operations endpoints: liveness, readiness and Prometheus metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers within two seconds (503 otherwise). The event bus is reported
/// but does not decide: without Redis, CRUD keeps working and live progress falls back to
/// snapshots, so a replica whose Redis is away still serves (`"events": {"connected": false}`).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let events = json!({ "backend": state.events.backend(), "connected": state.events.is_connected() });
    let check =
        tokio::time::timeout(Duration::from_secs(2), sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(&state.db))
            .await;
    match check {
        Ok(Ok(_)) => Json(json!({ "status": "ready", "database": "ok", "events": events })).into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            let body = json!({ "status": "unavailable", "database": "unreachable", "events": events });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        Err(_) => {
            let body = json!({ "status": "unavailable", "database": "timeout", "events": events });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Some((events, bytes)) = state.events.retained() {
        state.metrics.set_events_retained(events, bytes);
    }
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
