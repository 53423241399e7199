//! Reminders and broadcasts in standalone mode: the API, the in-process scheduler's decisions at
//! chosen instants, a real once-a-minute reminder across two `serve` processes and a restart,
//! `borcelle worker occurrence` as a Job runs it, and admin broadcasts reaching live sessions.

use std::process::{Command, Stdio};
use std::time::Duration;

use borcelle::config::TransportSettings;
use borcelle_engine::scheduler::Scheduler;
use borcelle_store::users::Role;
use chrono::{DateTime, Duration as Span, TimeZone, Timelike, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_borcelle");

/// A server whose own scheduler and delivery loops are off (as every test server's): the test
/// drives the scheduler's clock.
async fn quiet_app() -> TestApp {
    spawn_app().await
}

fn scheduler_of(app: &TestApp) -> Scheduler {
    app.scheduler().clone()
}

async fn patch_json(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .header("Origin", app.origin())
        .header("X-CSRF-Token", app.csrf.clone().unwrap_or_default())
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path))
        .header("Origin", app.origin())
        .header("X-CSRF-Token", app.csrf.clone().unwrap_or_default())
        .send()
        .await
        .unwrap()
}

async fn create_reminder(app: &TestApp, name: &str, spec: Value) -> Value {
    let response = app.post_json("/api/v1/reminders", &json!({ "name": name, "spec": spec })).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "creating {name}: {body}");
    body
}

/// Occurrences of a schedule: (scheduled_at, status), oldest first.
async fn occurrences_of(app: &TestApp, uid: &str) -> Vec<(DateTime<Utc>, String)> {
    sqlx::query_as("SELECT scheduled_at, status FROM occurrences WHERE resource_uid = $1::uuid ORDER BY scheduled_at")
        .bind(uid)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// Ticks the scheduler for one schedule at `now`, as if its next look were due then.
async fn tick_at(app: &TestApp, scheduler: &Scheduler, uid: &str, now: DateTime<Utc>) {
    let id: Uuid = uid.parse().unwrap();
    sqlx::query("UPDATE schedules SET next_run_at = least(next_run_at, $2) WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&app.db)
        .await
        .unwrap();
    scheduler.tick(id, now).await.unwrap();
}

async fn schedule_status(app: &TestApp, uid: &str) -> Value {
    sqlx::query_scalar("SELECT status FROM schedules WHERE id = $1::uuid").bind(uid).fetch_one(&app.db).await.unwrap()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == type_)).unwrap_or(&Value::Null)
}

/// Backdates a schedule's creation so that occurrences from `created` on count.
async fn created_at(app: &TestApp, uid: &str, created: DateTime<Utc>) {
    sqlx::query("UPDATE schedules SET created_at = $2, next_run_at = $2 WHERE id = $1::uuid")
        .bind(uid)
        .bind(created)
        .execute(&app.db)
        .await
        .unwrap();
}

#[tokio::test]
async fn reminder_specs_are_checked_and_each_refusal_names_the_field_to_fix() {
    let mut app = quiet_app().await;
    app.signed_in_user("checks@example.com").await;
    let ids = seed_contacts(&app.db, "checks@example.com", "chk", 2, "team").await;
    app.verified_user("someone-else@example.com", Role::User).await;
    let foreign = seed_contacts(&app.db, "someone-else@example.com", "foreign", 1, "x").await;

    let good = json!({ "recipients": { "contactIds": [ids[0]] }, "subject": "Hi", "body": "Text", "schedule": "0 9 * * 1-5", "timeZone": "Europe/Berlin" });
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("Bad_Name", good.clone(), 422, "name"),
        (
            "ok-1",
            json!({ "recipients": { "contactIds": [ids[0]] }, "subject": "Hi", "body": "x", "schedule": "61 * * * *" }),
            422,
            "spec.schedule",
        ),
        (
            "ok-2",
            json!({ "recipients": { "contactIds": [ids[0]] }, "subject": "Hi", "body": "x", "schedule": "@daily", "timeZone": "Mars/Olympus" }),
            422,
            "spec.timeZone",
        ),
        (
            "ok-3",
            json!({ "recipients": {}, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            422,
            "spec.recipients",
        ),
        ("ok-4", json!({ "recipients": { "tag": "team" }, "subject": "Hi", "schedule": "@daily" }), 422, "spec.body"),
        (
            "ok-5",
            json!({ "recipients": { "tag": "team" }, "subject": "Hi", "body": "x", "noteId": Uuid::new_v4(), "schedule": "@daily" }),
            422,
            "spec.body",
        ),
        (
            "ok-6",
            json!({ "recipients": { "contactIds": [foreign[0]] }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            404,
            "spec.recipients.contactIds",
        ),
        (
            "ok-7",
            json!({ "recipients": { "tag": "team" }, "subject": "", "body": "x", "schedule": "@daily" }),
            422,
            "spec.subject",
        ),
        (
            "ok-8",
            json!({ "recipients": { "tag": "team" }, "subject": "Hi", "body": "x", "schedule": "@daily", "startingDeadlineSeconds": -5 }),
            422,
            "spec.startingDeadlineSeconds",
        ),
        (
            "ok-9",
            json!({ "recipients": { "tag": "team" }, "subject": "Hi", "body": "x", "schedule": "@daily", "colour": "red" }),
            422,
            "spec.colour",
        ),
        (
            "ok-10",
            json!({ "recipients": { "tag": "team" }, "subject": "Hi", "body": "x", "schedule": "@daily", "concurrencyPolicy": "Sometimes" }),
            422,
            "spec.concurrencyPolicy",
        ),
        (
            "ok-11",
            json!({ "owner": "someone-else@example.com", "recipients": { "tag": "team" }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            422,
            "spec.owner",
        ),
        // Recipients are checked on save, never first at run time: words that are no addresses
        // (422), addresses of no contact (another user's contact is not one of ours) and a tag
        // nobody has (404 with the field, as for a send to such a tag).
        (
            "ok-12",
            json!({ "recipients": { "emails": ["hello", "world"] }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            422,
            "spec.recipients.emails",
        ),
        (
            "ok-13",
            json!({ "recipients": { "emails": ["chk1@example.com", "foreign1@example.com"] }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            404,
            "spec.recipients.emails",
        ),
        (
            "ok-14",
            json!({ "recipients": { "tag": "vip" }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            404,
            "spec.recipients.tag",
        ),
        (
            "ok-15",
            json!({ "recipients": { "tag": "x" }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
            404,
            "spec.recipients.tag",
        ),
    ];
    for (name, spec, status, field) in cases {
        let response = app.post_json("/api/v1/reminders", &json!({ "name": name, "spec": spec })).await;
        let (got, message, got_field) = error_of(response).await;
        assert_eq!((got, got_field.as_deref()), (status, Some(field)), "{name}: {message}");
        assert!(!message.is_empty());
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM schedules").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0, "no refused reminder was stored");

    create_reminder(&app, "weekday-report", good.clone()).await;
    let response = app.post_json("/api/v1/reminders", &json!({ "name": "weekday-report", "spec": good })).await;
    assert_eq!(error_of(response).await.0, 409, "a name is unique per user");

    // A contact's email in any case and the user's own tag are taken; the refusal named what to fix.
    let response = app
        .post_json(
            "/api/v1/reminders",
            &json!({ "name": "by-email", "spec": { "recipients": { "emails": ["chk1@example.com", "foreign1@example.com"] }, "subject": "Hi", "body": "x", "schedule": "@daily" } }),
        )
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("foreign1@example.com") && !message.contains("chk1@"), "{message}");
    let by_email = json!({ "recipients": { "emails": [" CHK2@Example.com "], "tag": "team" }, "subject": "Hi", "body": "x", "schedule": "@daily" });
    create_reminder(&app, "by-email", by_email).await;

    // Recipients accepted once stay accepted: with the contact deleted since, the reminder can
    // still be suspended and resumed (changing the recipients checks them again).
    sqlx::query("DELETE FROM contacts WHERE email = 'chk2@example.com'").execute(&app.db).await.unwrap();
    for suspend in [true, false] {
        let response = patch_json(&app, "/api/v1/reminders/by-email", &json!({ "spec": { "suspend": suspend } })).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let response = patch_json(
        &app,
        "/api/v1/reminders/by-email",
        &json!({ "spec": { "recipients": { "emails": ["chk2@example.com"] } } }),
    )
    .await;
    let (status, code, field) = error_of(response).await;
    assert_eq!((status, field.as_deref()), (404, Some("spec.recipients.emails")), "{code}");
}

#[tokio::test]
async fn another_users_reminder_answers_404_on_every_route() {
    let mut app = quiet_app().await;
    app.signed_in_user("owner-a@example.com").await;
    let ids = seed_contacts(&app.db, "owner-a@example.com", "pa", 1, "t").await;
    create_reminder(
        &app,
        "private",
        json!({ "recipients": { "contactIds": [ids[0]] }, "subject": "Hi", "body": "x", "schedule": "@daily" }),
    )
    .await;
    let b = Browser::signed_in_user(&app, "owner-b@example.com").await;
    use reqwest::Method;
    assert_eq!(b.send(Method::GET, "/api/v1/reminders/private", None).await, 404);
    assert_eq!(
        b.send(Method::PATCH, "/api/v1/reminders/private", Some(json!({ "spec": { "suspend": true } }))).await,
        404
    );
    assert_eq!(b.send(Method::DELETE, "/api/v1/reminders/private", None).await, 404);
    assert_eq!(b.get_json("/api/v1/reminders").await["reminders"], json!([]), "B lists none of A's reminders");
    let spec: Value = app.get("/api/v1/reminders/private").await.json().await.unwrap();
    assert_eq!(spec["spec"]["suspend"], false);
    // Broadcasts are for administrators only.
    assert_eq!(b.send(Method::GET, "/api/v1/admin/broadcasts", None).await, 403);
    assert_eq!(
        b.send(
            Method::POST,
            "/api/v1/admin/broadcasts",
            Some(json!({ "name": "x", "spec": { "title": "t", "message": "m" } }))
        )
        .await,
        403
    );
}

#[tokio::test]
async fn reminders_show_their_next_runs_in_their_time_zone() {
    let mut app = quiet_app().await;
    app.signed_in_user("preview@example.com").await;
    let response = app.get("/api/v1/reminders/preview?schedule=30%202%20*%20*%20*&timeZone=Europe/Berlin").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let runs: Vec<DateTime<Utc>> = serde_json::from_value(body["runs"].clone()).unwrap();
    assert_eq!(runs.len(), 5);
    let berlin = borcelle_crds::schedule::parse_time_zone("Europe/Berlin").unwrap();
    for pair in runs.windows(2) {
        assert!(pair[0] < pair[1], "runs strictly increase");
    }
    for run in &runs {
        let local = run.with_timezone(&berlin);
        // 02:30 every day, or 03:00 on the night the clocks skip 02:30.
        assert!((local.hour(), local.minute()) == (2, 30) || (local.hour(), local.minute()) == (3, 0), "{local}");
    }
    let (status, _, field) = error_of(app.get("/api/v1/reminders/preview?schedule=bad").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("schedule")));

    let ids = seed_contacts(&app.db, "preview@example.com", "pv", 1, "t").await;
    let created = create_reminder(
        &app,
        "morning",
        json!({ "recipients": { "contactIds": [ids[0]] }, "subject": "Hi", "body": "x", "schedule": "0 9 * * *", "timeZone": "America/New_York" }),
    )
    .await;
    let next: DateTime<Utc> = serde_json::from_value(created["status"]["nextScheduleTime"].clone()).unwrap();
    let new_york = borcelle_crds::schedule::parse_time_zone("America/New_York").unwrap();
    assert_eq!(next.with_timezone(&new_york).hour(), 9);
    assert!(next > Utc::now() && next <= Utc::now() + Span::days(1));
}

#[tokio::test]
async fn the_scheduler_runs_each_occurrence_once_and_follows_the_cronjob_rules() {
    let mut app = quiet_app().await;
    app.signed_in_user("rules@example.com").await;
    let ids = seed_contacts(&app.db, "rules@example.com", "rules", 3, "t").await;
    let scheduler = scheduler_of(&app);
    let berlin = borcelle_crds::schedule::parse_time_zone("Europe/Berlin").unwrap();
    // 09:00 in Berlin on 2026-03-27, two days before the clocks go forward.
    let t0 = berlin.with_ymd_and_hms(2026, 3, 27, 9, 0, 0).unwrap().with_timezone(&Utc);
    let spec = |policy: &str| json!({ "recipients": { "contactIds": ids }, "subject": "Daily", "body": "x", "schedule": "0 9 * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": policy });

    // Due: exactly one occurrence, with one ledger row per recipient; a second look (a restart,
    // another scheduler) starts nothing more.
    let allow = create_reminder(&app, "allow", spec("Allow")).await;
    let uid = allow["uid"].as_str().unwrap().to_owned();
    created_at(&app, &uid, t0 - Span::days(1)).await;
    tick_at(&app, &scheduler, &uid, t0 + Span::seconds(5)).await;
    tick_at(&app, &scheduler, &uid, t0 + Span::seconds(6)).await;
    sqlx::query("UPDATE schedules SET next_run_at = $2 WHERE id = $1::uuid")
        .bind(&uid)
        .bind(t0)
        .execute(&app.db)
        .await
        .unwrap();
    scheduler.tick(uid.parse().unwrap(), t0 + Span::seconds(7)).await.unwrap();
    assert_eq!(occurrences_of(&app, &uid).await, vec![(t0, "running".to_owned())]);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages m JOIN occurrences o ON o.task_id = m.task_id WHERE o.resource_uid = $1::uuid",
    )
    .bind(&uid)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(queued, 3);
    let status = schedule_status(&app, &uid).await;
    let next: DateTime<Utc> = serde_json::from_value(status["nextScheduleTime"].clone()).unwrap();
    // The next run is 09:00 Berlin the next day: 08:00 UTC (CET) on the 28th.
    assert_eq!(next, Utc.with_ymd_and_hms(2026, 3, 28, 8, 0, 0).unwrap());

    // Across the DST change and a 3-day outage, only the most recent missed run starts.
    let back = t0 + Span::days(3) + Span::hours(2);
    tick_at(&app, &scheduler, &uid, back).await;
    let runs = occurrences_of(&app, &uid).await;
    let t3 = berlin.with_ymd_and_hms(2026, 3, 30, 9, 0, 0).unwrap().with_timezone(&Utc);
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![t0, t3], "Allow runs alongside the active one");
    assert_eq!(t3.hour(), 7, "09:00 CEST is 07:00 UTC");
    let status = schedule_status(&app, &uid).await;
    assert!(
        condition(&status, "Scheduled")["message"].as_str().unwrap().contains("2 earlier occurrence(s) missed"),
        "{status}"
    );

    // Forbid with an active run: the due occurrence is skipped and reported.
    let forbid = create_reminder(&app, "forbid", spec("Forbid")).await;
    let fid = forbid["uid"].as_str().unwrap().to_owned();
    created_at(&app, &fid, t0 - Span::days(1)).await;
    tick_at(&app, &scheduler, &fid, t0 + Span::seconds(1)).await;
    tick_at(&app, &scheduler, &fid, t0 + Span::days(1) + Span::seconds(1)).await;
    assert_eq!(occurrences_of(&app, &fid).await, vec![(t0, "running".to_owned())]);
    let status = schedule_status(&app, &fid).await;
    assert!(condition(&status, "Scheduled")["message"].as_str().unwrap().contains("JobAlreadyActive"), "{status}");

    // Replace: the active run is stopped (its unsent emails fail with the reason), the new one starts.
    let replace = create_reminder(&app, "replace", spec("Replace")).await;
    let rid = replace["uid"].as_str().unwrap().to_owned();
    created_at(&app, &rid, t0 - Span::days(1)).await;
    tick_at(&app, &scheduler, &rid, t0 + Span::seconds(1)).await;
    let t1 = t0 + Span::days(1);
    tick_at(&app, &scheduler, &rid, t1 + Span::seconds(1)).await;
    assert_eq!(occurrences_of(&app, &rid).await, vec![(t0, "replaced".to_owned()), (t1, "running".to_owned())]);
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT m.last_error FROM messages m JOIN occurrences o ON o.task_id = m.task_id
         WHERE o.resource_uid = $1::uuid AND o.scheduled_at = $2 AND m.status = 'failed'",
    )
    .bind(&rid)
    .bind(t0)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(reasons.len(), 3);
    assert!(reasons[0].contains("replaced"));

    // Suspend stops future runs only; resuming runs the most recent missed one (no deadline).
    let response = patch_json(&app, "/api/v1/reminders/allow", &json!({ "spec": { "suspend": true } })).await;
    assert_eq!(response.status(), 200);
    let later = t3 + Span::days(1) + Span::seconds(30);
    tick_at(&app, &scheduler, &uid, later).await;
    assert_eq!(occurrences_of(&app, &uid).await.len(), 2, "nothing starts while suspended");
    assert_eq!(condition(&schedule_status(&app, &uid).await, "Scheduled")["reason"], "Suspended");
    patch_json(
        &app,
        "/api/v1/reminders/allow",
        &json!({ "spec": { "suspend": false, "startingDeadlineSeconds": 10 } }),
    )
    .await;
    tick_at(&app, &scheduler, &uid, later + Span::seconds(1)).await;
    assert_eq!(occurrences_of(&app, &uid).await.len(), 2, "a run past its starting deadline is missed, not started");
    assert!(
        condition(&schedule_status(&app, &uid).await, "Scheduled")["message"]
            .as_str()
            .unwrap()
            .contains("MissSchedule")
    );

    // The list shows the runs: active ones and the last finished one.
    let list: Value = app.get("/api/v1/reminders").await.json().await.unwrap();
    let replace = list["reminders"].as_array().unwrap().iter().find(|r| r["name"] == "replace").unwrap();
    assert_eq!(replace["status"]["active"].as_array().unwrap().len(), 1);
    assert_eq!(replace["status"]["lastRun"]["outcome"], "Replaced");
    // Its three stopped emails are counted on its task (above); the run reports no counts, as
    // the operator cannot for a Job it deleted.
    assert_eq!(
        (&replace["status"]["lastRun"]["delivered"], &replace["status"]["lastRun"]["failed"]),
        (&json!(0), &json!(0))
    );

    // Deleting stops it; the user's other reminders stay.
    assert_eq!(delete(&app, "/api/v1/reminders/forbid").await.status(), 204);
    assert_eq!(app.get("/api/v1/reminders/forbid").await.status(), 404);
    assert_eq!(app.get("/api/v1/reminders/allow").await.status(), 200);
}

#[tokio::test]
async fn an_unknown_time_zone_stored_by_an_older_build_is_reported_not_fatal() {
    let mut app = quiet_app().await;
    app.signed_in_user("tz@example.com").await;
    let ids = seed_contacts(&app.db, "tz@example.com", "tz", 1, "t").await;
    let created = create_reminder(
        &app,
        "tz",
        json!({ "recipients": { "contactIds": ids }, "subject": "Hi", "body": "x", "schedule": "@hourly" }),
    )
    .await;
    let uid = created["uid"].as_str().unwrap().to_owned();
    sqlx::query(
        "UPDATE schedules SET spec = jsonb_set(spec, '{timeZone}', '\"Nowhere/Atlantis\"') WHERE id = $1::uuid",
    )
    .bind(&uid)
    .execute(&app.db)
    .await
    .unwrap();
    let scheduler = scheduler_of(&app);
    tick_at(&app, &scheduler, &uid, Utc::now() + Span::hours(2)).await;
    let status = schedule_status(&app, &uid).await;
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "UnknownTimeZone");
    assert!(occurrences_of(&app, &uid).await.is_empty());
    let next: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT next_run_at FROM schedules WHERE id = $1::uuid")
        .bind(&uid)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(next, None, "no hot loop on a spec that cannot be scheduled");
}

/// The acceptance of standalone mode: a reminder every minute fires once per minute through the
/// in-process scheduler, its emails reach a real SMTP server, and neither a second `serve` on the
/// same database nor a restart fires an occurrence twice.
#[tokio::test]
async fn a_reminder_every_minute_fires_once_per_minute_across_two_serves_and_a_restart() {
    let mut app = quiet_app().await;
    app.signed_in_user("minutely@example.com").await;
    seed_contacts(&app.db, "minutely@example.com", "minutely", 3, "crew").await;
    let dir = std::env::temp_dir().join(unique("borcelle-minutely-"));
    let sink = SmtpSink::start(free_port(), &dir).await;
    let serve = |port: u16| {
        Process(
            Command::new(BIN)
                .arg("serve")
                .env("DATABASE_URL", database_url(&app))
                .env("BORCELLE_LISTEN", format!("127.0.0.1:{port}"))
                .env("BORCELLE_MAIL_TRANSPORT", "smtp")
                .env("BORCELLE_SMTP_HOST", "127.0.0.1")
                .env("BORCELLE_SMTP_PORT", sink.port.to_string())
                .env("BORCELLE_SMTP_TLS", "none")
                .env_remove("REDIS_URL")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let (p1, p2) = (free_port(), free_port());
    let first = serve(p1);
    let second = serve(p2);
    for port in [p1, p2] {
        wait_ready(&format!("http://127.0.0.1:{port}")).await;
    }
    let created = create_reminder(
        &app,
        "every-minute",
        json!({ "recipients": { "tag": "crew" }, "subject": "Stand-up", "body": "In five minutes.", "schedule": "* * * * *" }),
    )
    .await;
    let uid = created["uid"].as_str().unwrap().to_owned();

    // The first minute boundary, with two schedulers racing for it.
    let first_minute = wait_for_occurrences(&app, &uid, 1).await;
    let got = sink.wait_for_count(3, 60).await;
    assert_eq!(got.len(), 3, "one email per contact: {got:?}");
    drop(first);
    drop(second);

    // A fresh process, as after a restart: the next minute fires, the first never again.
    let p3 = free_port();
    let _third = serve(p3);
    wait_ready(&format!("http://127.0.0.1:{p3}")).await;
    let runs = wait_for_occurrences(&app, &uid, 2).await;
    let got = sink.wait_for_count(6, 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_after = sink.messages();
    assert_eq!(got_after.len(), 6, "three emails per minute, none twice: {got:?}");
    let mut ids: Vec<&String> = got_after.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "six distinct Message-IDs");
    assert_eq!(runs[0], first_minute[0]);
    assert_eq!(runs[1] - runs[0], Span::minutes(1), "consecutive minutes: {runs:?}");
    for run in &runs {
        assert_eq!(run.second(), 0);
    }
    let lateness: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM created_at - scheduled_at)::float8 FROM occurrences WHERE resource_uid = $1::uuid",
    )
    .bind(&uid)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(lateness.iter().all(|l| *l < 10.0), "each occurrence started within seconds of its time: {lateness:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits (up to 130 s) until the schedule has `count` occurrences; returns their times.
async fn wait_for_occurrences(app: &TestApp, uid: &str, count: usize) -> Vec<DateTime<Utc>> {
    for _ in 0..1300 {
        let runs = occurrences_of(app, uid).await;
        if runs.len() >= count {
            return runs.into_iter().map(|r| r.0).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {count} occurrences after 130 s");
}

/// `borcelle worker occurrence`, as the operator's Job runs it: a retry of the same occurrence
/// sends nothing twice, the counts land in the termination log, and an occurrence that can never
/// run exits with 3 so that the Job does not retry it.
#[tokio::test]
async fn worker_occurrence_runs_an_occurrence_once_whatever_the_retries() {
    let app = spawn_app_with(|s| {
        s.delivery.in_serve = false;
        s.delivery.scheduler = borcelle::config::SchedulerBackend::Off;
        s.mail.transport = TransportSettings::Outbox;
    })
    .await;
    app.verified_user("job-owner@example.com", Role::User).await;
    seed_contacts(&app.db, "job-owner@example.com", "job", 4, "clients").await;
    let dir = std::env::temp_dir().join(unique("borcelle-job-"));
    std::fs::create_dir_all(&dir).unwrap();
    let sink = SmtpSink::start(free_port(), &dir.join("mail")).await;
    let spec = json!({ "owner": "Job-Owner@example.com", "recipients": { "tag": "clients", "emails": ["nobody@example.com"] }, "subject": "Quarterly", "body": "Numbers attached.", "schedule": "0 9 1 */3 *" });
    let uid = Uuid::new_v4();
    let run = |spec: &Value, log: &std::path::Path| {
        Command::new(BIN)
            .args(["worker", "occurrence", "--kind", "ScheduledReminder", "--namespace", "crm", "--name", "quarterly"])
            .args(["--uid", &uid.to_string(), "--scheduled", "2026-10-01T07:00:00Z"])
            .env("BORCELLE_OCCURRENCE_SPEC", spec.to_string())
            .env("BORCELLE_TERMINATION_LOG", log)
            .env("DATABASE_URL", database_url(&app))
            .env("BORCELLE_MAIL_TRANSPORT", "smtp")
            .env("BORCELLE_SMTP_HOST", "127.0.0.1")
            .env("BORCELLE_SMTP_PORT", sink.port.to_string())
            .env("BORCELLE_SMTP_TLS", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let log = dir.join("termination-log");
    assert_eq!(run(&spec, &log).code(), Some(0));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!((report["delivered"].as_i64(), report["failed"].as_i64()), (Some(4), Some(0)), "{report}");
    assert_eq!(report["skipped"], json!(["nobody@example.com"]), "a missing contact is skipped and reported");
    assert_eq!(sink.wait_for_count(4, 30).await.len(), 4);

    // The Job retried (or the operator adopted an existing Job): nothing is sent again.
    assert_eq!(run(&spec, &log).code(), Some(0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.messages().len(), 4, "a second run of one occurrence sends nothing");
    let occurrences: i64 = sqlx::query_scalar("SELECT count(*) FROM occurrences WHERE resource_uid = $1")
        .bind(uid)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(occurrences, 1);
    let owner_told: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications n JOIN users u ON u.id = n.user_id
         WHERE u.email = 'job-owner@example.com' AND n.kind IN ('reminder_skipped', 'task_done')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(owner_told, 2, "the owner hears of the skipped recipient and of the completion");

    // An owner without an account can never run: exit 3, reason in the log, nothing written.
    let mut orphan = spec.clone();
    orphan["owner"] = json!("ghost@example.com");
    let code = Command::new(BIN)
        .args([
            "worker",
            "occurrence",
            "--kind",
            "ScheduledReminder",
            "--name",
            "ghost",
            "--uid",
            &Uuid::new_v4().to_string(),
        ])
        .args(["--scheduled", "2026-10-01T07:00:00Z"])
        .env("BORCELLE_OCCURRENCE_SPEC", orphan.to_string())
        .env("BORCELLE_TERMINATION_LOG", &log)
        .env("DATABASE_URL", database_url(&app))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(code.code(), Some(3));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert!(report["error"].as_str().unwrap().contains("ghost@example.com"), "{report}");
    let occurrences: i64 = sqlx::query_scalar("SELECT count(*) FROM occurrences").fetch_one(&app.db).await.unwrap();
    assert_eq!(occurrences, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_admin_broadcast_reaches_every_open_session_live_and_later_visitors_in_the_bell() {
    let mut admin = spawn_app().await;
    admin.verified_user("chief@example.com", Role::Admin).await;
    assert_eq!(admin.login("chief@example.com", PASSWORD).await.status(), 200);
    let alice = Browser::signed_in_user(&admin, "alice@example.com").await;
    let bob = Browser::signed_in_user(&admin, "bob@example.com").await;
    admin.verified_user("carol@example.com", Role::User).await;

    let mut alice_tab = open_socket(&admin, alice.session_cookie.as_deref().unwrap()).await;
    let mut bob_tab = open_socket(&admin, bob.session_cookie.as_deref().unwrap()).await;
    assert_eq!(next_event(&mut alice_tab).await.unwrap()["type"], "snapshot");
    assert_eq!(next_event(&mut bob_tab).await.unwrap()["type"], "snapshot");

    let response = admin
        .post_json(
            "/api/v1/admin/broadcasts",
            &json!({ "name": "maintenance", "spec": { "title": "Maintenance tonight", "message": "From 22:00 to 23:00.", "severity": "warning" } }),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(admin.scheduler().run_due(Utc::now()).await.unwrap(), 1, "the broadcast is due at once");
    for tab in [&mut alice_tab, &mut bob_tab] {
        let event = loop {
            let event = next_event(tab).await.expect("an event within 30 s");
            if event["type"] == "broadcast" {
                break event;
            }
        };
        assert_eq!(event["title"], "Maintenance tonight");
        assert_eq!(event["severity"], "warning");
    }
    // Carol was not connected: she finds it in the bell at her next visit.
    let mut carol = Browser::of(&admin);
    carol.login("carol@example.com").await;
    let bell = carol.get_json("/api/v1/notifications").await;
    let titles: Vec<&str> =
        bell["notifications"].as_array().unwrap().iter().filter_map(|n| n["title"].as_str()).collect();
    assert!(titles.contains(&"Maintenance tonight"), "{bell}");

    // The admin is told it was delivered, with the count (four verified users).
    let list: Value = admin.get("/api/v1/notifications").await.json().await.unwrap();
    let told = list["notifications"].as_array().unwrap().iter().find(|n| n["kind"] == "broadcast_done").cloned();
    assert_eq!(told.as_ref().map(|n| n["data"]["recipients"].clone()), Some(json!(4)), "{list}");
    let shown: Value = admin.get("/api/v1/admin/broadcasts/maintenance").await.json().await.unwrap();
    assert_eq!(shown["status"]["phase"], "Delivered", "{shown}");
    assert_eq!(shown["status"]["recipients"], 4);

    // Once it expires it leaves the bell.
    sqlx::query("UPDATE notifications SET expires_at = now() - interval '1 second' WHERE kind = 'broadcast'")
        .execute(&admin.db)
        .await
        .unwrap();
    let bell = carol.get_json("/api/v1/notifications").await;
    assert!(bell["notifications"].as_array().unwrap().iter().all(|n| n["kind"] != "broadcast"), "{bell}");

    // A bad spec is refused with the field.
    let response = admin
        .post_json("/api/v1/admin/broadcasts", &json!({ "name": "bad", "spec": { "title": "t", "message": "m", "at": "2030-01-01T00:00:00Z", "schedule": "@daily" } }))
        .await;
    let (status, _, field) = error_of(response).await;
    assert_eq!((status, field.as_deref()), (422, Some("spec.at")));
}
