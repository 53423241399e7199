//! Drill: Redis killed and restarted while users are connected. CRUD keeps answering, `/readyz`
//! reports the degraded event bus, no process exits, and events between processes resume once
//! Redis is back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::*;
use crate::helpers::*;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A tab's WebSocket on the server at `base` (`http://host:port`), past its snapshot.
async fn tab(base: &str, cookie: &str) -> Socket {
    let mut request = format!("{}/ws", base.replacen("http", "ws", 1)).into_client_request().expect("request");
    request.headers_mut().insert("Cookie", cookie.parse().expect("cookie"));
    request.headers_mut().insert("Origin", base.parse().expect("origin"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket handshake");
    assert_eq!(next_event(&mut socket).await.expect("snapshot")["type"], "snapshot");
    socket
}

/// Reads events until the task's completion notification arrives (or `within` passes).
async fn sees_completion(socket: &mut Socket, task_id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, next_event(socket)).await {
            Ok(Some(event)) => {
                if event["type"] == "notification" && event["notification"]["data"]["task_id"] == task_id {
                    return true;
                }
            }
            Ok(None) | Err(_) => return false,
        }
    }
}

/// The `events` part of `/readyz`, and its status.
async fn readiness(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/readyz")).await.expect("readyz");
    let status = response.status().as_u16();
    (status, response.json::<Value>().await.expect("json")["events"].clone())
}

/// Polls both servers' `/readyz` until their event bus shows `connected`; how long it took.
async fn wait_events_connected(bases: &[&str], connected: bool, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let mut all = true;
        for base in bases {
            let (status, events) = readiness(base).await;
            assert_eq!(status, 200, "/readyz stays 200 whatever Redis does: {events}");
            all &= events["connected"] == connected;
        }
        if all {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// One round of what a user does with contacts; the status of each call, by call.
async fn crud_round(app: &TestApp, n: usize, statuses: &mut BTreeMap<String, Vec<u16>>) -> Duration {
    let mut slowest = Duration::ZERO;
    let mut record = |what: &str, status: u16, took: Duration| {
        statuses.entry(what.to_owned()).or_default().push(status);
        slowest = slowest.max(took);
    };
    let started = Instant::now();
    let created = app
        .post_json(
            "/api/v1/contacts",
            &json!({ "name": format!("Outage {n}"), "email": format!("outage{n}@example.com") }),
        )
        .await;
    record("create", created.status().as_u16(), started.elapsed());
    let id = created.json::<Value>().await.ok().and_then(|c| c["id"].as_str().map(str::to_owned));
    let started = Instant::now();
    let listed = app.get("/api/v1/contacts?limit=50").await.status().as_u16();
    record("list", listed, started.elapsed());
    let started = Instant::now();
    let found = app.get("/api/v1/contacts/autocomplete?q=outa").await.status().as_u16();
    record("autocomplete", found, started.elapsed());
    if let Some(id) = id {
        let started = Instant::now();
        let shown = app.get(&format!("/api/v1/contacts/{id}")).await.status().as_u16();
        record("show", shown, started.elapsed());
        let started = Instant::now();
        let path = app.url(&format!("/api/v1/contacts/{id}"));
        let csrf = app.csrf.clone().unwrap_or_default();
        let patched = app
            .client
            .patch(&path)
            .header("Origin", app.origin())
            .header("X-CSRF-Token", &csrf)
            .json(&json!({ "company": "Degraded Ltd" }))
            .send()
            .await
            .expect("patch");
        record("update", patched.status().as_u16(), started.elapsed());
        if n.is_multiple_of(2) {
            let started = Instant::now();
            let deleted = app
                .client
                .delete(&path)
                .header("Origin", app.origin())
                .header("X-CSRF-Token", &csrf)
                .send()
                .await
                .expect("delete");
            record("delete", deleted.status().as_u16(), started.elapsed());
        }
    }
    slowest
}

#[tokio::test]
async fn redis_killed_and_restarted_while_users_are_connected() {
    let report = Report::new("redis");
    let mut redis = PrivateRedis::start(free_port()).await;
    let (db_name, db_url) = fresh_database();
    let redis_env = ("REDIS_URL", redis.url());
    let (mut serve_process, mut app) = serve(&db_url, &db_name, std::slice::from_ref(&redis_env)).await;
    // A second replica on the same database and Redis, without delivery: events of tasks that the
    // first one sends reach its sockets only through Redis.
    let replica_port = free_port();
    let mut replica =
        serve_on(replica_port, &db_url, &[redis_env.clone(), ("BORCELLE_SERVE_DELIVERY", "false".to_owned())]).await;
    let (base, replica_base) = (app.url(""), format!("http://127.0.0.1:{replica_port}"));
    report.say(format!("serve {base} and a replica {replica_base} (no delivery) share Redis {}", redis.url()));

    app.signed_in_user("redis-drill@example.com").await;
    seed_contacts(&app.db, "redis-drill@example.com", "fan", 5, "fans").await;
    let cookie = app.session_cookie.clone().expect("session");
    let mut tabs = [tab(&base, &cookie).await, tab(&base, &cookie).await, tab(&replica_base, &cookie).await];
    report.say("3 tabs connected (2 on serve, 1 on the replica)");
    assert!(wait_events_connected(&[&base, &replica_base], true, Duration::from_secs(10)).await.is_some());

    let before = send_to_tag(&app, "fans", "Before the outage").await;
    for (i, socket) in tabs.iter_mut().enumerate() {
        assert!(sees_completion(socket, &before, Duration::from_secs(20)).await, "tab {i} before the outage");
    }
    report.say("before the outage: a task's completion reached all 3 tabs");

    // The outage.
    redis.kill();
    let killed = Instant::now();
    report.say("redis-server killed (SIGKILL)");
    let noticed = wait_events_connected(&[&base, &replica_base], false, Duration::from_secs(40))
        .await
        .expect("/readyz reports the event bus disconnected");
    report.say(format!("/readyz on both: 200 with events.connected=false after {}", secs(noticed)));

    let outage = scaled_secs(60, 6);
    let mut statuses: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    let (mut rounds, mut slowest) = (0, Duration::ZERO);
    let during = send_to_tag(&app, "fans", "During the outage").await;
    while killed.elapsed() < outage {
        slowest = slowest.max(crud_round(&app, rounds, &mut statuses).await);
        rounds += 1;
    }
    let summary: Vec<String> = statuses
        .iter()
        .map(|(what, all)| {
            let ok = all.iter().filter(|s| (200..300).contains(*s)).count();
            format!("{what} {ok}/{}", all.len())
        })
        .collect();
    report.say(format!(
        "{} s without Redis: {rounds} CRUD rounds, 2xx per call: {}; slowest call {}",
        outage.as_secs(),
        summary.join(", "),
        secs(slowest)
    ));
    for (what, all) in &statuses {
        assert!(all.iter().all(|s| (200..300).contains(s)), "{what} answered {all:?} without Redis");
    }
    let task = wait_task_done(&app, &during, 30).await.expect("a task queued during the outage finishes");
    assert_eq!(task["sent"], 5, "{task}");
    let local = sees_completion(&mut tabs[0], &during, Duration::from_secs(5)).await;
    let relayed = sees_completion(&mut tabs[2], &during, Duration::from_secs(1)).await;
    report.say(format!(
        "a task sent during the outage finished ({} sent); its completion reached serve's own tab: {local}, \
         the replica's tab: {relayed} (events are hints; the replica's page shows counts from the database)",
        task["sent"]
    ));
    assert!(local, "serve's own tabs still get its events while Redis is down");
    assert!(running(&mut serve_process) && running(&mut replica), "no process exited during the outage");

    // Redis is back.
    redis.restart().await;
    report.say("redis-server started again on the same port");
    let resubscribed = wait_events_connected(&[&base, &replica_base], true, Duration::from_secs(30))
        .await
        .expect("both processes resubscribe");
    report.say(format!("both processes resubscribed after {}", secs(resubscribed)));
    let after = send_to_tag(&app, "fans", "After the outage").await;
    let back = Instant::now();
    for (i, socket) in tabs.iter_mut().enumerate() {
        assert!(sees_completion(socket, &after, Duration::from_secs(20)).await, "tab {i} after Redis is back");
    }
    report.say(format!(
        "after the outage: a new task's completion reached all 3 tabs (the replica's through Redis) within {}",
        secs(back.elapsed())
    ));
    assert!(running(&mut serve_process) && running(&mut replica), "no process exited");
    report.say(format!("done in {}: no 5xx, no process exited, events resumed", secs(report.elapsed())));
}
