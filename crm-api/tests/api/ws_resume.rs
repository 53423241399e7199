//! `/ws` reconnect-with-resume and slow consumers: a tab that drops and comes back with its last event id gets
//! exactly what it missed (in process, and across two `serve` processes over the real Redis), a stale id gets a
//! resync, nobody is replayed another user's events, and a client that never reads is dropped without holding up
//! the others.
//!
//! Events are published the way the delivery engine and the scheduler publish them: on the server's own event bus,
//! or, across processes, on a bus of this test process connected to the same Redis (as a `borcelle worker` is).

use std::collections::HashSet;
use std::time::Duration;

use borcelle_engine::events::{BroadcastNotice, Envelope, EventBus, LiveEvent};
use futures::{SinkExt as _, StreamExt as _};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::*;

const REDIS: &str = "redis://127.0.0.1:6379";
const BIN: &str = env!("CARGO_BIN_EXE_borcelle");

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server like `spawn_app_with`, and the event bus it delivers from.
async fn spawn_app_and_bus(redis: bool) -> (TestApp, EventBus) {
    let app = spawn_app_with(|settings| {
        if redis {
            settings.redis_url = Some(SecretString::from(REDIS.to_owned()));
        }
    })
    .await;
    let bus = app.events().clone();
    (app, bus)
}

struct User {
    id: Uuid,
    cookie: String,
}

async fn user(app: &TestApp, email: &str) -> User {
    let browser = Browser::signed_in_user(app, email).await;
    let id = sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_one(&app.db).await.unwrap();
    User { id, cookie: browser.session_cookie.unwrap() }
}

/// `GET /ws[?after=…]` on `base` (`127.0.0.1:port`) with the user's cookie; `Err` holds the refusal's status.
async fn connect(base: &str, user: &User, after: Option<&str>) -> Result<Socket, u16> {
    let query = after.map(|id| format!("?after={id}")).unwrap_or_default();
    let mut request = format!("ws://{base}/ws{query}").into_client_request().unwrap();
    request.headers_mut().insert("Cookie", user.cookie.parse().unwrap());
    request.headers_mut().insert("Origin", format!("http://{base}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("handshake failed: {err}"),
    }
}

async fn next(socket: &mut Socket) -> Value {
    next_event(socket).await.expect("a message within 30 s")
}

/// Events this test published (they carry `nonce`) from the socket, until `count` arrived; others are skipped.
async fn ours(socket: &mut Socket, nonce: Uuid, count: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < count {
        let event = next(socket).await;
        if event["occurrence_id"] == json!(nonce) {
            got.push(event);
        }
    }
    got
}

/// Nothing of ours arrives within a short while (what a duplicate would do).
async fn no_more_of_ours(socket: &mut Socket, nonce: Uuid) {
    let quiet = async {
        loop {
            let event = next(socket).await;
            if event["occurrence_id"] == json!(nonce) {
                return event;
            }
        }
    };
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(500), quiet).await {
        panic!("an event arrived twice or for someone else: {extra}");
    }
}

/// The test's own event: a broadcast whose occurrence id is the test's nonce and whose title is
/// its sequence number.
fn tagged(nonce: Uuid, seq: usize, body: &str) -> LiveEvent {
    LiveEvent::Broadcast(BroadcastNotice {
        title: seq.to_string(),
        body: body.to_owned(),
        severity: "info".to_owned(),
        broadcast: "ws-resume-test".to_owned(),
        occurrence_id: nonce,
    })
}

async fn publish(bus: &EventBus, to: Uuid, nonce: Uuid, seq: usize) {
    bus.publish(Envelope::to_user(to, &tagged(nonce, seq, ""))).await;
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["title"].as_str().unwrap().parse().unwrap()).collect()
}

fn id_of(event: &Value) -> String {
    event["id"].as_str().unwrap_or_else(|| panic!("no id on {event}")).to_owned()
}

/// The scenario both backends must pass: A and B connected, events, both drop, more events for both, A and B
/// come back (on `resume_on`) with their last ids and get exactly their missed events, then live ones.
async fn drop_and_resume(first_on: &str, resume_on: &str, publisher: &EventBus, alice: &User, bob: &User) {
    // So that the stream and the servers' positions exist before the snapshots are read.
    publish(publisher, Uuid::new_v4(), Uuid::new_v4(), 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let nonce = Uuid::new_v4();
    let mut a = connect(first_on, alice, None).await.unwrap();
    let mut b = connect(first_on, bob, None).await.unwrap();
    assert_eq!(next(&mut a).await["type"], "snapshot");
    let bob_snapshot = next(&mut b).await;
    assert_eq!(bob_snapshot["type"], "snapshot");
    // Bob will see none of the next events: he resumes from his snapshot's position.
    let bob_last = id_of(&bob_snapshot);

    for seq in 1..=3 {
        publish(publisher, alice.id, nonce, seq).await;
    }
    let seen = ours(&mut a, nonce, 3).await;
    assert_eq!(seqs(&seen), [1, 2, 3]);
    let ids: Vec<String> = seen.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] != w[1]), "ids are distinct: {ids:?}");
    let alice_last = ids[2].clone();
    drop(a);
    drop(b);

    // While both are away: Alice's and Bob's events interleaved.
    for seq in 4..=9 {
        let to = if seq % 3 == 0 { bob.id } else { alice.id };
        publish(publisher, to, nonce, seq).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut a = connect(resume_on, alice, Some(&alice_last)).await.unwrap();
    let resumed = next(&mut a).await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["after"], alice_last.as_str());
    let missed = ours(&mut a, nonce, 4).await;
    assert_eq!(seqs(&missed), [4, 5, 7, 8], "exactly Alice's missed events, in order");
    publish(publisher, alice.id, nonce, 10).await;
    assert_eq!(seqs(&ours(&mut a, nonce, 1).await), [10], "then live ones");
    no_more_of_ours(&mut a, nonce).await;

    let mut b = connect(resume_on, bob, Some(&bob_last)).await.unwrap();
    assert_eq!(next(&mut b).await["type"], "resumed");
    assert_eq!(seqs(&ours(&mut b, nonce, 2).await), [6, 9], "only Bob's own events are replayed to him");
    no_more_of_ours(&mut b, nonce).await;
}

/// A stale id (older than anything kept) and an id never given out both give a resync and a fresh snapshot.
async fn stale_ids_resync(base: &str, alice: &User) {
    for stale in ["1-0", "99999999999999-0"] {
        let mut socket = connect(base, alice, Some(stale)).await.unwrap();
        let resync = next(&mut socket).await;
        assert_eq!(resync["type"], "resync", "after={stale}: {resync}");
        assert!(resync["reason"].as_str().is_some_and(|r| !r.is_empty()), "{resync}");
        let snapshot = next(&mut socket).await;
        assert_eq!(snapshot["type"], "snapshot", "after={stale}: {snapshot}");
        assert!(snapshot["id"].is_string(), "the snapshot says where to resume from: {snapshot}");
    }
}

#[tokio::test]
async fn in_process_a_tab_that_reconnects_with_its_last_id_gets_exactly_what_it_missed() {
    let (app, bus) = spawn_app_and_bus(false).await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    let base = app.addr.to_string();

    drop_and_resume(&base, &base, &bus, &alice, &bob).await;
    stale_ids_resync(&base, &alice).await;
}

#[tokio::test]
async fn over_redis_a_tab_resumes_on_another_serve_process_with_what_a_worker_published() {
    let (app, _bus) = spawn_app_and_bus(true).await;
    let alice = user(&app, "alice@example.com").await;
    let bob = user(&app, "bob@example.com").await;
    // A second replica: its own process, same database and Redis.
    let port = free_port();
    let _replica = Process(
        std::process::Command::new(BIN)
            .arg("serve")
            .env("DATABASE_URL", database_url(&app))
            .env("REDIS_URL", REDIS)
            .env("BORCELLE_LISTEN", format!("127.0.0.1:{port}"))
            .env("BORCELLE_SERVE_DELIVERY", "false")
            .env("BORCELLE_SCHEDULER", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let replica = format!("127.0.0.1:{port}");
    wait_ready(&format!("http://{replica}")).await;
    // A worker: a third process's bus on the same Redis.
    let stop = CancellationToken::new();
    let worker = EventBus::redis(REDIS, stop.clone()).await.unwrap();
    // Give the replica's subscriber a moment after its start.
    tokio::time::sleep(Duration::from_millis(300)).await;

    drop_and_resume(&replica, &app.addr.to_string(), &worker, &alice, &bob).await;
    drop_and_resume(&app.addr.to_string(), &replica, &worker, &alice, &bob).await;
    stale_ids_resync(&replica, &alice).await;
    stop.cancel();
}

#[tokio::test]
async fn a_resume_point_that_is_not_an_event_id_is_refused_with_422() {
    let (app, _bus) = spawn_app_and_bus(false).await;
    let alice = user(&app, "alice@example.com").await;
    assert_eq!(connect(&app.addr.to_string(), &alice, Some("yesterday")).await.err(), Some(422));
    let response = app
        .client
        .get(app.url("/ws?after=12"))
        .header("Cookie", &alice.cookie)
        .header("Connection", "upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    let (status, code, field) = error_of(response).await;
    assert_eq!((status, code.as_str(), field.as_deref()), (422, "invalid_field", Some("after")));
}

/// A WebSocket whose receive buffer is tiny and that never reads: the server's writes to it soon block.
async fn never_reading_socket(app: &TestApp, user: &User) -> Socket {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let mut request = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    request.headers_mut().insert("Cookie", user.cookie.parse().unwrap());
    request.headers_mut().insert("Origin", app.origin().parse().unwrap());
    let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await.unwrap();
    socket
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_the_others_get_every_event() {
    let (app, bus) = spawn_app_and_bus(false).await;
    let slow_user = user(&app, "slow@example.com").await;
    let alice = user(&app, "alice@example.com").await;
    let mut slow = never_reading_socket(&app, &slow_user).await;
    let mut normal = connect(&app.addr.to_string(), &alice, None).await.unwrap();
    assert_eq!(next(&mut normal).await["type"], "snapshot");

    // 4,000 events of 4 KB for everyone: 16 MB, far more than the kernel buffers between the server and the slow
    // client hold. Published in bursts of 100 (within a user's queue of 128), as a busy delivery engine would.
    let nonce = Uuid::new_v4();
    let padding = "x".repeat(4096);
    let total = 4000;
    let reader = tokio::spawn(async move {
        let got = ours(&mut normal, nonce, total).await;
        (got, normal)
    });
    for seq in 0..total {
        bus.publish(Envelope::to_all(&tagged(nonce, seq, &padding))).await;
        if seq % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (got, mut normal) = tokio::time::timeout(Duration::from_secs(60), reader).await.unwrap().unwrap();
    assert_eq!(seqs(&got), (0..total as u64).collect::<Vec<_>>(), "the reading client got every event, in order");
    let ids: HashSet<String> = got.iter().map(id_of).collect();
    assert_eq!(ids.len(), total, "every event has its own id");

    // The server says it dropped a client for being slow (after its send timeout of 10 s)…
    let dropped = async {
        loop {
            let metrics = app.metrics().await;
            if metrics.lines().any(|l| l.starts_with("borcelle_websocket_ends_total{reason=\"slow\"} 1")) {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let metrics =
        tokio::time::timeout(Duration::from_secs(60), dropped).await.expect("the server drops the slow client");
    assert!(metrics.contains("borcelle_websocket_connections 1\n"), "only the reading client is left:\n{metrics}");
    // …and the slow client, reading at last, finds what the kernel buffered, then the end of the connection.
    let drained = async {
        let mut received = 0;
        loop {
            match slow.next().await {
                Some(Ok(Message::Text(_))) => received += 1,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return received,
            }
        }
    };
    let received = tokio::time::timeout(Duration::from_secs(30), drained).await.expect("the connection ends");
    assert!(received < total / 2, "the slow client was dropped, not waited for: it got {received} of {total}");

    // The reading client is still served.
    publish(&bus, alice.id, nonce, total + 1).await;
    assert_eq!(seqs(&ours(&mut normal, nonce, 1).await), [total as u64 + 1]);
    let _ = normal.send(Message::Close(None)).await;
}

/// The events kept for reconnecting clients are visible to operators: their number and size.
#[tokio::test]
async fn metrics_show_the_events_kept_for_replay() {
    let mut app = spawn_app().await;
    app.signed_in_user("kept@example.com").await;
    let retained = |metrics: &str, name: &str| -> i64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
    };
    let before = app.metrics().await;
    assert_eq!(retained(&before, "borcelle_events_retained"), 0, "nothing happened yet");

    message_one_new_contact(&app).await;
    app.deliver_all().await;
    // The task's start, its progress and its completion notification.
    let metrics = app.metrics().await;
    let (events, bytes) =
        (retained(&metrics, "borcelle_events_retained"), retained(&metrics, "borcelle_events_retained_bytes"));
    assert_eq!(events, 3, "{metrics}");
    assert!(bytes > 100 * events, "{events} events take {bytes} bytes");
}
