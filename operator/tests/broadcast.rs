//! Reconciling Broadcasts against a mock API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use borcelle_crds::{BroadcastStatus, RunRef};
use borcelle_operator::Kind;
use borcelle_operator::reconcile;
use kube::runtime::controller::Action;
use serde_json::json;
use support::*;

const NAME: &str = "maintenance";
/// Created at 09:00:20, sent at once: its occurrence is its creation time (minute 29925180).
const JOB: &str = "maintenance-bc-29925180";

#[tokio::test]
async fn a_send_now_broadcast_starts_one_job_and_is_running() {
    let created = utc(2026, 11, 24, 9, 0, 20);
    let bc = broadcast(NAME, broadcast_spec(), created);
    let expected_spec = serde_json::to_value(&bc.spec).unwrap();
    let (ctx, server) = context(now());
    let object = bc.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let create = server.expect(Method::POST, JOBS_PATH).await;
            let job = &create.body;
            assert_eq!(job["metadata"]["name"], JOB);
            assert_eq!(job["metadata"]["labels"]["crm.borcelle.io/kind"], "Broadcast");
            assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "Broadcast");
            assert_eq!(job["metadata"]["annotations"]["crm.borcelle.io/scheduled-time"], "2026-11-24T09:00:20Z");
            let container = &job["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(
                container["args"],
                json!([
                    "worker",
                    "occurrence",
                    "--kind",
                    "Broadcast",
                    "--namespace",
                    NS,
                    "--name",
                    NAME,
                    "--uid",
                    UID,
                    "--scheduled",
                    "2026-11-24T09:00:20Z"
                ])
            );
            let spec = container["env"][0]["value"].as_str().unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(spec).unwrap(), expected_spec);
            create.respond_created();
            expect_event(&mut server, "SuccessfulCreate", NAME).await;
            let status = expect_status_apply(&mut server, &broadcast_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(bc), ctx),
    )
    .await;
    // Nothing more is due: look again within the hour cap.
    assert_eq!(action.expect("reconcile"), Action::requeue(Duration::from_secs(3600)));
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["active"], json!([{"name": JOB, "scheduledTime": "2026-11-24T09:00:20Z"}]));
    assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:20Z");
    assert_eq!(condition(&status, "Scheduled")["reason"], "NoFutureRun");
    assert!(status.get("deliveredAt").is_none());
}

#[tokio::test]
async fn a_completed_delivery_makes_the_broadcast_delivered_with_its_recipients() {
    let created = utc(2026, 11, 24, 9, 0, 20);
    let mut bc = broadcast(NAME, broadcast_spec(), created);
    bc.status = Some(BroadcastStatus {
        last_schedule_time: Some(created),
        active: vec![RunRef { name: JOB.to_owned(), scheduled_time: created }],
        ..BroadcastStatus::default()
    });
    let done_at = utc(2026, 11, 24, 9, 0, 50);
    let complete = finished(job_for(&bc, created), true, done_at);
    let (ctx, server) = context(utc(2026, 11, 24, 9, 1, 0));
    let object = bc.clone();
    index_jobs(&ctx, Kind::Broadcast, &[complete]);
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let pods = server.expect(Method::GET, PODS_PATH).await;
            let pod = pod_with_message(JOB, r#"{"delivered":40,"failed":0,"recipients":41}"#, done_at);
            pods.respond(200, &list("PodList", "v1", &[pod]));
            expect_event(&mut server, "SawCompletedJob", NAME).await;
            let status = expect_status_apply(&mut server, &broadcast_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(bc), ctx),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(status["phase"], "Delivered");
    assert_eq!(status["recipients"], 41);
    assert_eq!(status["deliveredAt"], "2026-11-24T09:00:50Z");
    assert_eq!(status["lastRun"]["outcome"], "Succeeded");
    assert_eq!(status["lastRun"]["delivered"], 40);
    assert!(status.get("active").is_none());
}

#[tokio::test]
async fn a_failed_delivery_without_a_termination_message_counts_zero() {
    let created = utc(2026, 11, 24, 9, 0, 20);
    let mut bc = broadcast(NAME, broadcast_spec(), created);
    bc.status = Some(BroadcastStatus {
        last_schedule_time: Some(created),
        active: vec![RunRef { name: JOB.to_owned(), scheduled_time: created }],
        ..BroadcastStatus::default()
    });
    let failed = finished(job_for(&bc, created), false, utc(2026, 11, 24, 9, 0, 55));
    let (ctx, server) = context(utc(2026, 11, 24, 9, 1, 0));
    let object = bc.clone();
    index_jobs(&ctx, Kind::Broadcast, &[failed]);
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            server.expect(Method::GET, PODS_PATH).await.respond(200, &list::<()>("PodList", "v1", &[]));
            let event = expect_event(&mut server, "SawCompletedJob", NAME).await;
            assert!(event["note"].as_str().unwrap().contains("status: Failed"));
            let status = expect_status_apply(&mut server, &broadcast_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(bc), ctx),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["lastRun"]["delivered"], 0);
    assert_eq!(status["lastRun"]["failed"], 0);
    assert!(status.get("deliveredAt").is_none());
}

#[tokio::test]
async fn a_broadcast_at_a_later_time_is_scheduled_for_it() {
    let mut spec = broadcast_spec();
    spec.at = Some(utc(2026, 11, 24, 22, 0, 0));
    let bc = broadcast(NAME, spec, utc(2026, 11, 24, 8, 0, 0));
    let (ctx, server) = context(now());
    let object = bc.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let status = expect_status_apply(&mut server, &broadcast_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(bc), ctx),
    )
    .await;
    assert_eq!(action.expect("reconcile"), Action::requeue(Duration::from_secs(3600)));
    assert_eq!(status["phase"], "Scheduled");
    assert_eq!(status["nextScheduleTime"], "2026-11-24T22:00:00Z");
}

#[tokio::test]
async fn an_expired_broadcast_starts_nothing() {
    let mut spec = broadcast_spec();
    spec.at = Some(utc(2026, 11, 24, 8, 0, 0));
    spec.expires_at = Some(utc(2026, 11, 24, 8, 30, 0));
    let bc = broadcast(NAME, spec, utc(2026, 11, 24, 7, 0, 0));
    let (ctx, server) = context(now());
    let object = bc.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let status = expect_status_apply(&mut server, &broadcast_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(bc), ctx),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(condition(&status, "Scheduled")["reason"], "Expired");
    assert_eq!(status["phase"], "Pending");
    assert!(status.get("active").is_none());
}
