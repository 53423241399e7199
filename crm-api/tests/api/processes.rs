//! Separate processes: a second `serve` sharing Redis, and a `borcelle worker` killed mid-batch.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use borcelle::config::TransportSettings;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_borcelle");
const REDIS: &str = "redis://127.0.0.1:6379";

#[tokio::test]
async fn a_task_started_on_one_serve_process_reaches_a_socket_held_by_another_over_redis() {
    let mut app = spawn_app_with(|s| s.redis_url = Some(SecretString::from(REDIS.to_owned()))).await;
    app.signed_in_user("two-replicas@example.com").await;
    let ids = seed_contacts(&app.db, "two-replicas@example.com", "r", 3, "t").await;

    // A second replica: its own process, same database and Redis, no delivery of its own.
    let port = free_port();
    let other = format!("http://127.0.0.1:{port}");
    let _replica = Process(
        Command::new(BIN)
            .arg("serve")
            .env("DATABASE_URL", database_url(&app))
            .env("REDIS_URL", REDIS)
            .env("BORCELLE_LISTEN", format!("127.0.0.1:{port}"))
            .env("BORCELLE_SERVE_DELIVERY", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&other).await;

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/ws").into_client_request().unwrap();
    request.headers_mut().insert("Cookie", app.session_cookie.clone().unwrap().parse().unwrap());
    request.headers_mut().insert("Origin", other.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("handshake on the other replica");
    assert_eq!(next_event(&mut socket).await.unwrap()["type"], "snapshot");
    // Give the replica's Redis subscriber a moment after its start.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": ids, "subject": "Hi", "body": "x" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap();
    assert_eq!(app.deliver_all().await.sent, 3, "this process delivers");
    let mut finished = false;
    while !finished {
        let event = next_event(&mut socket).await.expect("the other replica relays this process's events");
        if event["type"] == "task_progress" && event["task_id"] == task_id && event["sent"] == 3 {
            finished = true;
        }
    }
}

fn worker(app: &TestApp, sink: &SmtpSink) -> Process {
    Process(
        Command::new(BIN)
            .arg("worker")
            .env("DATABASE_URL", database_url(app))
            .env("BORCELLE_MAIL_TRANSPORT", "smtp")
            .env("BORCELLE_SMTP_HOST", "127.0.0.1")
            .env("BORCELLE_SMTP_PORT", sink.port.to_string())
            .env("BORCELLE_SMTP_TLS", "none")
            .env("BORCELLE_MAIL_FROM", "noreply@borcelle.test")
            .env("BORCELLE_MAIL_RATE_PER_SEC", "150")
            .env("BORCELLE_DELIVERY_CONCURRENCY", "8")
            .env("BORCELLE_DELIVERY_LEASE_SECS", "10")
            .env_remove("REDIS_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_duplicates_only_its_crash_window() {
    let dir = std::env::temp_dir().join(unique("borcelle-sink-"));
    let sink = SmtpSink::start(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| {
        s.delivery.in_serve = false;
        s.mail.transport = TransportSettings::Smtp(sink.smtp_settings());
    })
    .await;
    app.signed_in_user("crash@example.com").await;
    seed_contacts(&app.db, "crash@example.com", "victim", 500, "all").await;
    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "tag": "all", "subject": "Crash test", "body": "x" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap().to_owned();

    let mut first = worker(&app, &sink);
    let before = sink.wait_for_count(150, 30).await.len();
    assert!((150..500).contains(&before), "killed mid-batch after {before} deliveries");
    first.0.kill().unwrap(); // SIGKILL: no shutdown, no release of claims
    first.0.wait().unwrap();
    let in_flight: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE status = 'sending'").fetch_one(&app.db).await.unwrap();

    let _second = worker(&app, &sink);
    let mut task = Value::Null;
    for _ in 0..600 {
        task = app.get(&format!("/api/v1/tasks/{task_id}")).await.json().await.unwrap();
        if task["status"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(500), Some(0)), "{task}");

    let arrived = sink.wait_for_count(500, 5).await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut per_recipient: HashMap<&str, Vec<&str>> = HashMap::new();
    for (to, message_id) in &arrived {
        per_recipient.entry(to.as_str()).or_default().push(message_id.as_str());
    }
    assert_eq!(per_recipient.len(), 500, "every recipient got the message");
    let duplicates = arrived.len() - 500;
    println!(
        "worker SIGKILL drill: {before} delivered before the kill, {in_flight} claims in flight at the kill, \
         {duplicates} duplicates after the restart (crash window)"
    );
    assert!(duplicates as i64 <= in_flight, "duplicates come only from sends in flight at the kill");
    for ids in per_recipient.values().filter(|ids| ids.len() > 1) {
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "a duplicate carries the same Message-ID: {ids:?}");
    }
}

#[tokio::test]
async fn a_worker_serves_health_readiness_and_metrics_when_asked_to() {
    let app = spawn_app_with(|s| s.delivery.in_serve = false).await;
    let port = free_port();
    let _worker = Process(
        Command::new(BIN)
            .arg("worker")
            .env("DATABASE_URL", database_url(&app))
            .env("BORCELLE_WORKER_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let health: Value = reqwest::get(format!("{base}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().ends_with("# EOF\n"), "OpenMetrics text");
}
