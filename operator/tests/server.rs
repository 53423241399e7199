//! The health and metrics listener.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use borcelle_operator::Kind;
use borcelle_operator::metrics::Metrics;
use borcelle_operator::server::{Health, router};
use tower::ServiceExt;

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String) {
    let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn readiness_waits_for_the_election_and_then_for_the_leaders_caches() {
    let health = Health::default();
    let app = router(health.clone(), Arc::new(Metrics::new()));
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);

    // A standby replica is ready as soon as it knows it is not the leader.
    health.set_leader(false);
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);

    // A leader is ready once both controllers' caches hold their initial lists.
    health.set_leader(true);
    health.controllers_starting();
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    health.controller_synced();
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    health.controller_synced();
    assert_eq!(get(&app, "/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let metrics = Arc::new(Metrics::new());
    metrics.reconciled(Kind::ScheduledReminder, 0.002);
    metrics.failed(Kind::Broadcast, "conflict");
    metrics.job_created(Kind::Broadcast, 0.7);
    metrics.set_leader(true);
    let app = router(Health::default(), metrics);
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "borcelle_operator_reconciles_total{kind=\"ScheduledReminder\"} 1",
        "borcelle_operator_reconcile_errors_total{kind=\"Broadcast\",reason=\"conflict\"} 1",
        "borcelle_operator_jobs_created_total{kind=\"Broadcast\"} 1",
        "borcelle_operator_schedule_lag_seconds_count{kind=\"Broadcast\"} 1",
        "borcelle_operator_leader 1",
        "# EOF",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}
