//! Reconciling ScheduledReminders against a mock API server: each test fixes "now" and asserts
//! exactly the requests the operator makes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use borcelle_crds::decide::ConcurrencyPolicy;
use borcelle_crds::{RunRef, ScheduledReminderStatus};
use borcelle_operator::Kind;
use borcelle_operator::context::JobSettings;
use borcelle_operator::{error_policy, reconcile};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use support::*;

const NAME: &str = "pipeline-review";
/// The Job of today's 09:00 occurrence (2026-11-24T09:00:00Z = minute 29925180).
const TODAY_JOB: &str = "pipeline-review-29925180";
/// The Job of yesterday's.
const YESTERDAY_JOB: &str = "pipeline-review-29923740";

fn daily() -> borcelle_crds::ScheduledReminder {
    reminder(NAME, reminder_spec("0 9 * * *"))
}

/// Status of a reminder whose previous occurrence (yesterday 09:00) is still running.
fn yesterday_running() -> ScheduledReminderStatus {
    ScheduledReminderStatus {
        last_schedule_time: Some(utc(2026, 11, 23, 9, 0, 0)),
        active: vec![RunRef { name: YESTERDAY_JOB.to_owned(), scheduled_time: utc(2026, 11, 23, 9, 0, 0) }],
        ..ScheduledReminderStatus::default()
    }
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    &container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).expect("env var")["value"]
}

#[tokio::test]
async fn a_due_reminder_creates_exactly_one_job_then_applies_its_status() {
    let (ctx, server) = context(now());
    let sr = daily();
    let expected_spec = serde_json::to_value(&sr.spec).unwrap();
    let object = sr.clone();
    let action = verify(
        server,
        |mut server| async move {
            let create = server.expect(Method::POST, JOBS_PATH).await;
            assert_eq!(create.query("fieldManager"), Some("borcelle-operator"));
            let job = &create.body;
            assert_eq!(job["metadata"]["name"], TODAY_JOB);
            assert_eq!(job["metadata"]["namespace"], NS);
            assert_eq!(
                job["metadata"]["ownerReferences"],
                json!([{
                    "apiVersion": "crm.borcelle.io/v1alpha1", "kind": "ScheduledReminder", "name": NAME, "uid": UID,
                    "controller": true, "blockOwnerDeletion": true
                }])
            );
            assert_eq!(
                job["metadata"]["labels"],
                json!({
                    "app.kubernetes.io/name": "borcelle", "app.kubernetes.io/component": "occurrence",
                    "app.kubernetes.io/managed-by": "borcelle-operator",
                    "crm.borcelle.io/kind": "ScheduledReminder", "crm.borcelle.io/resource": NAME
                })
            );
            assert_eq!(job["metadata"]["annotations"]["crm.borcelle.io/scheduled-time"], "2026-11-24T09:00:00Z");
            assert_eq!(job["spec"]["backoffLimit"], 3);
            assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600);
            // Exit code 3 (the occurrence can never run) fails the Job without retries.
            assert_eq!(
                job["spec"]["podFailurePolicy"]["rules"],
                json!([{ "action": "FailJob", "onExitCodes": { "operator": "In", "values": [3] } }])
            );
            let pod = &job["spec"]["template"]["spec"];
            assert_eq!(pod["restartPolicy"], "Never");
            assert_eq!(pod["serviceAccountName"], "borcelle-worker");
            assert_eq!(pod["automountServiceAccountToken"], false);
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
            let containers = pod["containers"].as_array().unwrap();
            assert_eq!(containers.len(), 1);
            let container = &containers[0];
            assert_eq!(container["image"], IMAGE);
            assert_eq!(container["command"], json!(["borcelle"]));
            assert_eq!(
                container["args"],
                json!([
                    "worker",
                    "occurrence",
                    "--kind",
                    "ScheduledReminder",
                    "--namespace",
                    NS,
                    "--name",
                    NAME,
                    "--uid",
                    UID,
                    "--scheduled",
                    "2026-11-24T09:00:00Z"
                ])
            );
            let spec_json = env_value(container, "BORCELLE_OCCURRENCE_SPEC").as_str().unwrap();
            assert_eq!(serde_json::from_str::<Value>(spec_json).unwrap(), expected_spec);
            assert_eq!(container["envFrom"], json!([{"secretRef": {"name": "borcelle-env", "optional": false}}]));
            assert_eq!(container["terminationMessagePolicy"], "FallbackToLogsOnError");
            let security = &container["securityContext"];
            assert_eq!(security["runAsNonRoot"], true);
            assert_eq!(security["runAsUser"], 65532);
            assert_eq!(security["readOnlyRootFilesystem"], true);
            assert_eq!(security["allowPrivilegeEscalation"], false);
            assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
            assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
            assert_eq!(container["resources"]["requests"], json!({"cpu": "50m", "memory": "64Mi"}));
            assert_eq!(container["resources"]["limits"], json!({"memory": "256Mi"}));
            create.respond_created();

            let event = expect_event(&mut server, "SuccessfulCreate", NAME).await;
            assert_eq!(event["type"], "Normal");
            assert_eq!(event["regarding"]["kind"], "ScheduledReminder");
            assert!(event["note"].as_str().unwrap().contains(TODAY_JOB));

            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            assert_eq!(status["observedGeneration"], 1);
            assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:00Z");
            assert_eq!(status["nextScheduleTime"], "2026-11-25T09:00:00Z");
            assert_eq!(status["active"], json!([{"name": TODAY_JOB, "scheduledTime": "2026-11-24T09:00:00Z"}]));
            assert_eq!(condition(&status, "Ready")["status"], "True");
            assert_eq!(condition(&status, "Scheduled")["status"], "True");
            assert_eq!(condition(&status, "Scheduled")["reason"], "NextRunScheduled");
            server
        },
        reconcile(Arc::new(sr), ctx.clone()),
    )
    .await
    .expect("reconcile");
    // The next occurrence is a day away: look again within the hour cap.
    assert_eq!(action, Action::requeue(Duration::from_secs(3600)));
    let metrics = ctx.metrics.encode().unwrap();
    assert!(metrics.contains("borcelle_operator_jobs_created_total{kind=\"ScheduledReminder\"} 1"), "{metrics}");
    assert!(
        metrics.contains("borcelle_operator_schedule_lag_seconds_sum{kind=\"ScheduledReminder\"} 30.0"),
        "{metrics}"
    );
    assert!(metrics.contains("borcelle_operator_reconciles_total{kind=\"ScheduledReminder\"} 1"));
}

#[tokio::test]
async fn a_reminder_that_is_not_due_only_writes_its_status_and_requeues_at_the_next_occurrence() {
    let mut sr = reminder(NAME, reminder_spec("*/15 * * * *"));
    sr.status =
        Some(ScheduledReminderStatus { last_schedule_time: Some(utc(2026, 11, 24, 9, 0, 0)), ..Default::default() });
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr.clone()), ctx),
    )
    .await;
    assert_eq!(action.expect("reconcile"), Action::requeue(Duration::from_secs(14 * 60 + 30)));
    assert_eq!(status["nextScheduleTime"], "2026-11-24T09:15:00Z");
    assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:00Z");
    assert!(status.get("active").is_none());
    assert_eq!(condition(&status, "Scheduled")["message"], "next occurrence at 2026-11-24T09:15:00Z");

    // Once that status is in place, looking again writes nothing at all.
    let settled = with_status(&sr, &status);
    let (ctx, server) = context(now());
    let action = verify(server, |server| async move { server }, reconcile(Arc::new(settled), ctx)).await;
    assert_eq!(action.expect("reconcile"), Action::requeue(Duration::from_secs(14 * 60 + 30)));
}

#[tokio::test]
async fn a_job_that_already_exists_for_the_occurrence_is_adopted_not_duplicated() {
    let sr = daily();
    let existing = job_for(&sr, utc(2026, 11, 24, 9, 0, 0));
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            // A stale list does not show it yet …
            let create = server.expect(Method::POST, JOBS_PATH).await;
            assert_eq!(create.body["metadata"]["name"], TODAY_JOB);
            create.respond_error(409, "AlreadyExists");
            // … so the operator reads it, sees it is its own, and adopts it: no second create.
            server.expect(Method::GET, &format!("{JOBS_PATH}/{TODAY_JOB}")).await.respond(200, &existing);
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx.clone()),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(status["active"], json!([{"name": TODAY_JOB, "scheduledTime": "2026-11-24T09:00:00Z"}]));
    assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:00Z");
    assert!(!ctx.metrics.encode().unwrap().contains("jobs_created_total{"));
}

#[tokio::test]
async fn a_job_of_that_name_owned_by_something_else_is_an_error_not_an_adoption() {
    let sr = daily();
    let mut foreign = job_for(&sr, utc(2026, 11, 24, 9, 0, 0));
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "another-uid".to_owned();
    let (ctx, server) = context(now());
    let result = verify(
        server,
        |mut server| async move {
            server.expect(Method::POST, JOBS_PATH).await.respond_error(409, "AlreadyExists");
            server.expect(Method::GET, &format!("{JOBS_PATH}/{TODAY_JOB}")).await.respond(200, &foreign);
            server
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    let err = result.expect_err("a foreign Job must not be adopted");
    assert_eq!(err.metric_reason(), "job_name_taken");
}

#[tokio::test]
async fn forbid_with_an_active_job_skips_the_occurrence_with_job_already_active() {
    let mut sr = daily();
    sr.spec.concurrency_policy = ConcurrencyPolicy::Forbid;
    sr.status = Some(yesterday_running());
    let running = job_for(&sr, utc(2026, 11, 23, 9, 0, 0));
    let (ctx, server) = context(now());
    let object = sr.clone();
    index_jobs(&ctx, Kind::ScheduledReminder, &[running]);
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let event = expect_event(&mut server, "JobAlreadyActive", NAME).await;
            assert!(event["note"].as_str().unwrap().contains(YESTERDAY_JOB), "{event}");
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    action.expect("reconcile");
    // Today's occurrence is handled (skipped); yesterday's run goes on.
    assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:00Z");
    assert_eq!(status["active"], json!([{"name": YESTERDAY_JOB, "scheduledTime": "2026-11-23T09:00:00Z"}]));
}

#[tokio::test]
async fn replace_deletes_the_active_job_then_creates_the_new_one() {
    let mut sr = daily();
    sr.spec.concurrency_policy = ConcurrencyPolicy::Replace;
    sr.status = Some(yesterday_running());
    let running = job_for(&sr, utc(2026, 11, 23, 9, 0, 0));
    let (ctx, server) = context(now());
    let object = sr.clone();
    index_jobs(&ctx, Kind::ScheduledReminder, std::slice::from_ref(&running));
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let delete = server.expect(Method::DELETE, &format!("{JOBS_PATH}/{YESTERDAY_JOB}")).await;
            assert_eq!(delete.body["propagationPolicy"], "Background");
            delete.respond(200, &running);
            expect_event(&mut server, "SuccessfulDelete", NAME).await;
            let create = server.expect(Method::POST, JOBS_PATH).await;
            assert_eq!(create.body["metadata"]["name"], TODAY_JOB);
            create.respond_created();
            expect_event(&mut server, "SuccessfulCreate", NAME).await;
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(status["active"], json!([{"name": TODAY_JOB, "scheduledTime": "2026-11-24T09:00:00Z"}]));
    assert_eq!(status["lastRun"]["name"], YESTERDAY_JOB);
    assert_eq!(status["lastRun"]["outcome"], "Replaced");
}

#[tokio::test]
async fn a_completed_job_is_reported_once_with_its_counts() {
    let mut sr = daily();
    sr.status = Some(ScheduledReminderStatus {
        last_schedule_time: Some(utc(2026, 11, 24, 9, 0, 0)),
        active: vec![RunRef { name: TODAY_JOB.to_owned(), scheduled_time: utc(2026, 11, 24, 9, 0, 0) }],
        ..ScheduledReminderStatus::default()
    });
    let done_at = utc(2026, 11, 24, 9, 2, 10);
    let complete = finished(job_for(&sr, utc(2026, 11, 24, 9, 0, 0)), true, done_at);
    let later = utc(2026, 11, 24, 9, 5, 0);
    let (ctx, server) = context(later);
    let object = sr.clone();
    let job_list_answer = complete.clone();
    index_jobs(&ctx, Kind::ScheduledReminder, &[job_list_answer]);
    let (action, status, server) = verify_session(
        server,
        |mut server| async move {
            let pods = server.expect(Method::GET, PODS_PATH).await;
            assert_eq!(pods.query("labelSelector"), Some(format!("batch.kubernetes.io/job-name={TODAY_JOB}").as_str()));
            let pod = pod_with_message(TODAY_JOB, r#"{"delivered":12,"failed":1,"recipients":13}"#, done_at);
            pods.respond(200, &list("PodList", "v1", &[pod]));
            let event = expect_event(&mut server, "SawCompletedJob", NAME).await;
            assert!(event["note"].as_str().unwrap().contains(TODAY_JOB));
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr.clone()), ctx.clone()),
    )
    .await;
    action.expect("reconcile");
    assert!(status.get("active").is_none(), "{status}");
    assert_eq!(
        status["lastRun"],
        json!({
            "occurrence": "2026-11-24T09:00:00Z", "name": TODAY_JOB, "outcome": "Succeeded",
            "delivered": 12, "failed": 1, "finishedAt": "2026-11-24T09:02:10Z"
        })
    );
    assert_eq!(status["lastSuccessfulTime"], "2026-11-24T09:02:10Z");

    // A reconcile that still sees the old status (the watch has not caught up) neither reports
    // the run again (no pods read, no event) nor forgets it.
    let object = sr.clone();
    index_jobs(&ctx, Kind::ScheduledReminder, &[complete]);
    let (action, again) = verify_with(
        server,
        |mut server| async move {
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr.clone()), ctx.clone()),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(again, status);

    // Once the status is current, nothing is written.
    let settled = with_status(&sr, &status);
    let (ctx, server) = context(later);
    let completed = finished(job_for(&sr, utc(2026, 11, 24, 9, 0, 0)), true, done_at);
    index_jobs(&ctx, Kind::ScheduledReminder, &[completed]);
    verify(server, |server| async move { server }, reconcile(Arc::new(settled), ctx)).await.expect("reconcile");
}

#[tokio::test]
async fn an_unknown_time_zone_is_reported_once_and_creates_no_job() {
    let mut sr = daily();
    sr.spec.time_zone = Some("Mars/Olympus_Mons".to_owned());
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            // No Job is listed or created: the event, then the status.
            let event = expect_event(&mut server, "UnknownTimeZone", NAME).await;
            assert_eq!(event["type"], "Warning");
            assert!(event["note"].as_str().unwrap().contains("Mars/Olympus_Mons"));
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr.clone()), ctx),
    )
    .await;
    // No requeue: nothing changes until the spec does.
    assert_eq!(action.expect("an invalid spec is not a reconcile error"), Action::await_change());
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("UnknownTimeZone")));
    assert_eq!(ready["observedGeneration"], 1);
    assert_eq!(condition(&status, "Scheduled")["status"], "False");
    assert!(status.get("nextScheduleTime").is_none());

    // Reconciled again (a resync, a Job event): no second event, no write.
    let settled = with_status(&sr, &status);
    let (ctx, server) = context(now());
    let action = verify(server, |server| async move { server }, reconcile(Arc::new(settled), ctx)).await;
    assert_eq!(action.expect("reconcile"), Action::await_change());
}

#[tokio::test]
async fn an_invalid_schedule_is_reported_as_invalid_schedule() {
    let sr = reminder(NAME, reminder_spec("61 * * * *"));
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            expect_event(&mut server, "InvalidSchedule", NAME).await;
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    assert_eq!(action.expect("reconcile"), Action::await_change());
    assert_eq!(condition(&status, "Ready")["reason"], "InvalidSchedule");
}

#[tokio::test]
async fn finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() {
    let mut sr = daily();
    sr.spec.successful_runs_history_limit = Some(2);
    sr.spec.failed_runs_history_limit = Some(1);
    let day = |d: u32| utc(2026, 11, d, 9, 0, 0);
    let done = |d: u32| utc(2026, 11, d, 9, 1, 0);
    let jobs = vec![
        finished(job_for(&sr, day(23)), true, done(23)),
        finished(job_for(&sr, day(18)), false, done(18)),
        finished(job_for(&sr, day(20)), true, done(20)),
        finished(job_for(&sr, day(19)), false, done(19)),
        finished(job_for(&sr, day(21)), true, done(21)),
        finished(job_for(&sr, day(22)), true, done(22)),
    ];
    // Everything has been reported before: the status knows the newest run.
    let before = ScheduledReminderStatus {
        last_schedule_time: Some(day(23)),
        last_successful_time: Some(done(23)),
        last_run: Some(borcelle_crds::RunSummary {
            occurrence: day(23),
            name: "pipeline-review-29923740".to_owned(),
            outcome: "Succeeded".to_owned(),
            delivered: 3,
            failed: 0,
            finished_at: Some(done(23)),
            error: None,
        }),
        ..ScheduledReminderStatus::default()
    };
    sr.status = Some(before);
    let (ctx, server) = context(utc(2026, 11, 24, 8, 0, 0));
    let object = sr.clone();
    index_jobs(&ctx, Kind::ScheduledReminder, &jobs);
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            // Succeeded: keep 23 and 22, delete 20 then 21. Failed: keep 19, delete 18.
            for deleted in ["pipeline-review-29919420", "pipeline-review-29920860", "pipeline-review-29916540"] {
                let delete = server.expect(Method::DELETE, &format!("{JOBS_PATH}/{deleted}")).await;
                assert_eq!(delete.body["propagationPolicy"], "Background");
                delete.respond(200, &json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}));
            }
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    assert_eq!(action.expect("reconcile"), Action::requeue(Duration::from_secs(3600)));
    assert_eq!(status["lastScheduleTime"], "2026-11-23T09:00:00Z");
    assert_eq!(status["nextScheduleTime"], "2026-11-24T09:00:00Z");
}

#[tokio::test]
async fn an_api_error_fails_the_reconcile_and_backs_off_per_object() {
    let sr = Arc::new(daily());
    let other = Arc::new(reminder("another-reminder", reminder_spec("0 9 * * *")));
    let (ctx, mut server) = context(now());
    let mut delays = Vec::new();
    // The Job cannot be created: the API server fails.
    for _ in 0..3 {
        let (result, _, returned) = verify_session(
            server,
            |mut server| async move {
                server.expect(Method::POST, JOBS_PATH).await.respond_error(500, "InternalError");
                (server, ())
            },
            reconcile(sr.clone(), ctx.clone()),
        )
        .await;
        server = returned;
        let err = result.expect_err("a 500 fails the reconcile");
        assert_eq!(err.metric_reason(), "server_error");
        delays.push(error_policy(sr.clone(), &err, ctx.clone()));
    }
    let secs = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(delays, [secs(1), secs(2), secs(4)]);
    let metrics = ctx.metrics.encode().unwrap();
    assert!(
        metrics
            .contains("borcelle_operator_reconcile_errors_total{kind=\"ScheduledReminder\",reason=\"server_error\"} 3"),
        "{metrics}"
    );

    // Another object's backoff is its own.
    let (result, _, server) = verify_session(
        server,
        |mut server| async move {
            server.expect(Method::POST, JOBS_PATH).await.respond_error(503, "ServiceUnavailable");
            (server, ())
        },
        reconcile(other.clone(), ctx.clone()),
    )
    .await;
    assert_eq!(error_policy(other, &result.expect_err("503"), ctx.clone()), secs(1));

    // A success resets the first object's backoff.
    let object = (*sr).clone();
    let (result, _, server) = verify_session(
        server,
        |mut server| async move {
            server.expect(Method::POST, JOBS_PATH).await.respond_created();
            expect_event(&mut server, "SuccessfulCreate", NAME).await;
            expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, ())
        },
        reconcile(sr.clone(), ctx.clone()),
    )
    .await;
    result.expect("reconcile");
    // The Job exists now (the cache holds it); the status write fails this time.
    let (result, _, _) = verify_session(
        server,
        |mut server| async move {
            server.expect(Method::PATCH, &reminder_status_path(NAME)).await.respond_error(500, "InternalError");
            (server, ())
        },
        reconcile(sr.clone(), ctx.clone()),
    )
    .await;
    assert_eq!(error_policy(sr, &result.expect_err("500"), ctx), secs(1));
}

#[tokio::test]
async fn missed_occurrences_are_reported_and_only_the_latest_runs() {
    let mut sr = reminder(NAME, reminder_spec("0 * * * *"));
    // The operator was away: the last occurrence handled was 06:00, so 07:00 and 08:00 were missed.
    sr.status =
        Some(ScheduledReminderStatus { last_schedule_time: Some(utc(2026, 11, 24, 6, 0, 0)), ..Default::default() });
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let missed = expect_event(&mut server, "MissSchedule", NAME).await;
            assert_eq!(missed["type"], "Warning");
            assert!(missed["note"].as_str().unwrap().starts_with("Missed 2 earlier occurrence(s)"), "{missed}");
            let create = server.expect(Method::POST, JOBS_PATH).await;
            assert_eq!(
                create.body["metadata"]["annotations"]["crm.borcelle.io/scheduled-time"],
                "2026-11-24T09:00:00Z"
            );
            create.respond_created();
            expect_event(&mut server, "SuccessfulCreate", NAME).await;
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    // Next at 10:00, 59.5 minutes away.
    assert_eq!(action.expect("reconcile"), Action::requeue(Duration::from_secs(59 * 60 + 30)));
    assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:00Z");
}

#[tokio::test]
async fn an_occurrence_past_its_starting_deadline_is_skipped_with_miss_schedule() {
    let mut sr = daily();
    sr.spec.starting_deadline_seconds = Some(10);
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let event = expect_event(&mut server, "MissSchedule", NAME).await;
            assert!(event["note"].as_str().unwrap().contains("startingDeadlineSeconds"));
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(status["lastScheduleTime"], "2026-11-24T09:00:00Z");
    assert!(status.get("active").is_none());
}

#[tokio::test]
async fn a_suspended_reminder_starts_nothing() {
    let mut sr = daily();
    sr.spec.suspend = true;
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    action.expect("reconcile");
    assert_eq!(condition(&status, "Scheduled")["reason"], "Suspended");
    assert!(status.get("nextScheduleTime").is_none());
    assert!(status.get("lastScheduleTime").is_none());
}

#[tokio::test]
async fn a_subject_over_two_lines_is_an_invalid_spec_and_creates_no_job() {
    // Applied before the schema refused it: the operator refuses it too, in the status.
    let mut spec = reminder_spec("0 9 * * *");
    spec.subject = "Weekly\r\nBcc: victim@example.org".to_owned();
    let sr = reminder(NAME, spec);
    let (ctx, server) = context(now());
    let object = sr.clone();
    let (action, status) = verify_with(
        server,
        |mut server| async move {
            let event = expect_event(&mut server, "InvalidSpec", NAME).await;
            assert!(event["note"].as_str().unwrap().contains("spec.subject"), "{event}");
            let status = expect_status_apply(&mut server, &reminder_status_path(NAME), &object).await;
            (server, status)
        },
        reconcile(Arc::new(sr), ctx),
    )
    .await;
    assert_eq!(action.expect("reconcile"), Action::await_change());
    let ready = condition(&status, "Ready");
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("InvalidSpec")));
    assert!(ready["message"].as_str().unwrap().contains("one line"), "{ready}");
}

/// A reconcile triggered by a Job event can run on a cached status older than the operator's own
/// last write (the watch has not brought it yet). Writing that older status back rewound
/// `lastRun` on a real cluster; the write now carries the resourceVersion it was read at, the API
/// server refuses it (409), and the reconcile looks again shortly instead.
#[tokio::test]
async fn a_status_read_before_the_last_write_is_refused_not_written_back() {
    let mut sr = reminder(NAME, reminder_spec("*/15 * * * *"));
    sr.status =
        Some(ScheduledReminderStatus { last_schedule_time: Some(utc(2026, 11, 24, 9, 0, 0)), ..Default::default() });
    let (ctx, server) = context(now());
    let (action, version) = verify_with(
        server,
        |mut server| async move {
            let call = server.expect(Method::PATCH, &reminder_status_path(NAME)).await;
            let version = call.body["metadata"]["resourceVersion"].clone();
            call.respond_error(409, "Conflict");
            (server, version)
        },
        reconcile(Arc::new(sr), ctx.clone()),
    )
    .await;
    assert_eq!(version, json!("42"), "the write names the resourceVersion the status was read at");
    assert_eq!(action.expect("a stale read is no failure"), Action::requeue(Duration::from_secs(1)));
    assert!(!ctx.metrics.encode().unwrap().contains("reconcile_errors_total{"), "and is not counted as one");
}

/// The chart's `imagePullSecrets` reach the occurrence Jobs (they never did).
#[test]
fn jobs_pull_their_image_with_the_configured_secrets() {
    let sr = daily();
    let settings = JobSettings {
        image: IMAGE.to_owned(),
        image_pull_secrets: vec!["regcred".to_owned(), "mirror".to_owned()],
        ..JobSettings::default()
    };
    let job = borcelle_operator::job::build_job(&sr, utc(2026, 11, 24, 9, 0, 0), &settings).unwrap();
    let pod = serde_json::to_value(job.spec.unwrap().template.spec.unwrap()).unwrap();
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}, {"name": "mirror"}]));
    let plain = borcelle_operator::job::build_job(&sr, utc(2026, 11, 24, 9, 0, 0), &JobSettings::default()).unwrap();
    assert!(plain.spec.unwrap().template.spec.unwrap().image_pull_secrets.is_none());
}
