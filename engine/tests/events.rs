//! The event bus in process and over the real Redis at 127.0.0.1:6379 (or `BORCELLE_TEST_REDIS_URL`).
//!
//! Every bus on that Redis shares one channel, so each test tags its events with a random nonce and looks only
//! for its own.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness fails loudly by design

use std::sync::Arc;
use std::time::{Duration, Instant};

use borcelle_engine::events::{Audience, CHANNEL, Envelope, Event, EventBus, LiveEvent};
use serde_json::json;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Held by the tests that use the real Redis: one of them kills every pub/sub connection, which would make the
/// others lose events.
static REDIS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn redis_url() -> String {
    std::env::var("BORCELLE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A test's own event: a task's progress with the nonce as its task id (`total` tells events of
/// one test apart).
fn tagged(nonce: Uuid, total: i32) -> LiveEvent {
    LiveEvent::task_started(nonce, total)
}

fn event_for_all(nonce: Uuid) -> Envelope {
    Envelope::to_all(&tagged(nonce, 0))
}

fn has_nonce(event: &Event, nonce: Uuid) -> bool {
    event.payload()["task_id"] == json!(nonce)
}

/// The next event carrying `nonce`, skipping everyone else's; fails the test after `within`.
async fn next_with(events: &mut Receiver<Arc<Event>>, nonce: Uuid, within: Duration) -> Arc<Event> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(envelope) if has_nonce(&envelope, nonce) => return envelope,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    };
    tokio::time::timeout(within, wait).await.unwrap_or_else(|_| panic!("no event {nonce} within {within:?}"))
}

/// How many events carrying `nonce` arrive during `window`.
async fn count_with(events: &mut Receiver<Arc<Event>>, nonce: Uuid, window: Duration) -> usize {
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(received) = tokio::time::timeout_at(deadline, events.recv()).await {
        if received.is_ok_and(|envelope| has_nonce(&envelope, nonce)) {
            count += 1;
        }
    }
    count
}

async fn wait_until(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn subscribed_redis_bus(stop: &CancellationToken) -> EventBus {
    let bus = EventBus::redis(&redis_url(), stop.child_token()).await.expect("a valid URL");
    assert_eq!(bus.backend(), "redis");
    wait_until("the bus subscribes to Redis", Duration::from_secs(5), || bus.is_connected()).await;
    bus
}

async fn raw_redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("redis url");
    client.get_multiplexed_async_connection().await.expect("Redis is running (scripts/test starts it)")
}

#[test]
fn the_audience_has_a_stable_wire_format() {
    let user = Uuid::new_v4();
    assert_eq!(serde_json::to_value(Audience::User(user)).unwrap(), json!({"kind": "user", "id": user}));
    assert_eq!(serde_json::to_value(Audience::All).unwrap(), json!({"kind": "all"}));
    let envelope = Envelope::to_user(user, &LiveEvent::task_started(Uuid::nil(), 1));
    assert!(envelope.is_for(user));
    assert!(!envelope.is_for(Uuid::new_v4()));
    assert!(Envelope::to_all(&LiveEvent::Resync { reason: "test".into() }).is_for(user));
}

#[tokio::test]
async fn in_process_every_subscriber_receives_what_is_published() {
    let bus = EventBus::in_process();
    assert_eq!(bus.backend(), "in-process");
    assert!(bus.is_connected());
    let (mut first, mut second) = (bus.subscribe(), bus.subscribe());
    let nonce = Uuid::new_v4();
    let sent = Envelope::to_user(Uuid::new_v4(), &tagged(nonce, 0));

    bus.publish(sent.clone()).await;

    assert_eq!(*next_with(&mut first, nonce, Duration::from_secs(1)).await, sent);
    assert_eq!(*next_with(&mut second, nonce, Duration::from_secs(1)).await, sent);
    assert_eq!(count_with(&mut first, nonce, Duration::from_millis(100)).await, 0, "delivered twice");
}

#[tokio::test]
async fn a_users_subscription_gets_that_users_events_and_everyones_but_no_one_elses() {
    let bus = EventBus::in_process();
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut on_alice = bus.subscribe_user(alice).receiver;
    let mut on_alice_too = bus.subscribe_user(alice).receiver;
    let mut on_bob = bus.subscribe_user(bob).receiver;
    assert_eq!(bus.subscribed_users(), 2);

    let nonce = Uuid::new_v4();
    let for_bob = Envelope::to_user(bob, &tagged(nonce, 1));
    let for_all = Envelope::to_all(&tagged(nonce, 2));
    bus.publish(for_bob.clone()).await;
    bus.publish(for_all.clone()).await;

    assert_eq!(*next_with(&mut on_bob, nonce, Duration::from_secs(1)).await, for_bob);
    assert_eq!(*next_with(&mut on_bob, nonce, Duration::from_secs(1)).await, for_all);
    for receiver in [&mut on_alice, &mut on_alice_too] {
        assert_eq!(*next_with(receiver, nonce, Duration::from_secs(1)).await, for_all, "Bob's event skipped");
        assert_eq!(count_with(receiver, nonce, Duration::from_millis(100)).await, 0);
    }

    // The routing table forgets a user with their last subscription.
    drop(on_bob);
    let bob_again = bus.subscribe_user(bob);
    assert_eq!(bus.subscribed_users(), 2);
    drop(bob_again);
    assert_eq!(bus.subscribed_users(), 1, "Bob has no subscription left");
}

#[tokio::test]
async fn an_event_published_on_one_process_reaches_every_process_exactly_once() {
    let _redis = REDIS.lock().await;
    let stop = CancellationToken::new();
    let (a, b) = (subscribed_redis_bus(&stop).await, subscribed_redis_bus(&stop).await);
    let (mut on_a, mut on_b) = (a.subscribe(), b.subscribe());
    let nonce = Uuid::new_v4();
    let sent = event_for_all(nonce);

    a.publish(sent.clone()).await;

    assert_eq!(*next_with(&mut on_b, nonce, Duration::from_secs(2)).await, sent);
    assert_eq!(*next_with(&mut on_a, nonce, Duration::from_secs(2)).await, sent);
    assert_eq!(count_with(&mut on_a, nonce, Duration::from_millis(500)).await, 0, "the publisher saw it twice");
    assert_eq!(count_with(&mut on_b, nonce, Duration::from_millis(100)).await, 0, "the other process saw it twice");
    stop.cancel();
}

#[tokio::test]
async fn the_subscriber_reconnects_after_redis_drops_its_connection() {
    let _redis = REDIS.lock().await;
    let stop = CancellationToken::new();
    let (a, b) = (subscribed_redis_bus(&stop).await, subscribed_redis_bus(&stop).await);
    let mut on_b = b.subscribe();

    let mut admin = raw_redis().await;
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut admin).await.unwrap();
    assert!(killed >= 2, "killed {killed} pub/sub connections");

    wait_until("b notices the lost connection", Duration::from_secs(2), || !b.is_connected()).await;
    wait_until("b resubscribes", Duration::from_secs(5), || b.is_connected()).await;
    wait_until("a resubscribes", Duration::from_secs(5), || a.is_connected()).await;
    let nonce = Uuid::new_v4();
    let sent = event_for_all(nonce);
    a.publish(sent.clone()).await;

    assert_eq!(*next_with(&mut on_b, nonce, Duration::from_secs(2)).await, sent);
    stop.cancel();
}

#[tokio::test]
async fn events_published_while_a_subscriber_was_disconnected_reach_it_once_from_the_stream() {
    let _redis = REDIS.lock().await;
    let stop = CancellationToken::new();
    let (a, b) = (subscribed_redis_bus(&stop).await, subscribed_redis_bus(&stop).await);
    let mut on_b = b.subscribe();
    // Numbered, so b knows where it stands before losing its subscription.
    a.publish(event_for_all(Uuid::new_v4())).await;
    wait_until("b has a position", Duration::from_secs(2), || b.head().is_some()).await;

    let mut admin = raw_redis().await;
    let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut admin).await.unwrap();
    wait_until("b notices the lost connection", Duration::from_secs(2), || !b.is_connected()).await;
    // Published while b is not subscribed: only the stream has them.
    let nonces: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    for nonce in &nonces {
        a.publish(event_for_all(*nonce)).await;
    }
    wait_until("b resubscribes", Duration::from_secs(5), || b.is_connected()).await;

    // Everything b delivers for a while: each of them once, in publication order.
    let mut ours = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(received) = tokio::time::timeout_at(deadline, on_b.recv()).await {
        if let Ok(event) = received
            && let Some(at) = nonces.iter().position(|nonce| has_nonce(&event, *nonce))
        {
            ours.push((at, event.id.expect("an event from the stream has its id")));
        }
    }
    assert_eq!(ours.iter().map(|(at, _)| *at).collect::<Vec<_>>(), [0, 1, 2], "each once, in order");
    assert!(ours.windows(2).all(|w| w[0].1 < w[1].1), "ids grow: {ours:?}");
    stop.cancel();
}

#[tokio::test]
async fn a_malformed_message_on_the_channel_is_skipped() {
    let _redis = REDIS.lock().await;
    let stop = CancellationToken::new();
    let bus = subscribed_redis_bus(&stop).await;
    let mut events = bus.subscribe();
    let mut raw = raw_redis().await;
    for garbage in ["not json", r#"{"audience":{"kind":"nobody"},"event":{}}"#] {
        let _: i64 = redis::cmd("PUBLISH").arg(CHANNEL).arg(garbage).query_async(&mut raw).await.unwrap();
    }
    let nonce = Uuid::new_v4();
    let sent = event_for_all(nonce);

    bus.publish(sent.clone()).await;

    assert_eq!(*next_with(&mut events, nonce, Duration::from_secs(2)).await, sent);
    assert!(bus.is_connected(), "a malformed message must not cost the subscription");
    stop.cancel();
}

#[tokio::test]
async fn with_redis_unreachable_publish_is_prompt_and_delivers_locally() {
    let stop = CancellationToken::new();
    let bus = tokio::time::timeout(Duration::from_secs(1), EventBus::redis("redis://127.0.0.1:1", stop.clone()))
        .await
        .expect("creating the bus must not wait for Redis")
        .expect("a valid URL");
    let mut events = bus.subscribe();
    assert_published_locally_and_promptly(&bus, &mut events).await;
    assert!(!bus.is_connected());
    stop.cancel();
}

#[tokio::test]
async fn a_redis_that_never_answers_cannot_stall_publish() {
    // Accepts connections and holds them without reading or answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let stop = CancellationToken::new();
    let bus = EventBus::redis(&format!("redis://127.0.0.1:{port}"), stop.clone()).await.unwrap();
    let mut events = bus.subscribe();
    assert_published_locally_and_promptly(&bus, &mut events).await;
    assert!(!bus.is_connected());
    stop.cancel();
    silent.abort();
}

/// Publishes twice (a first attempt and one after the failure is known) and checks each is local and quick.
async fn assert_published_locally_and_promptly(bus: &EventBus, events: &mut Receiver<Arc<Event>>) {
    for attempt in 1..=2 {
        let nonce = Uuid::new_v4();
        let sent = event_for_all(nonce);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(3), bus.publish(sent.clone())).await.expect("publish hangs");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "publish {attempt} took {took:?}");
        assert_eq!(*next_with(events, nonce, Duration::from_secs(1)).await, sent);
    }
}

#[tokio::test]
async fn an_invalid_redis_url_is_refused() {
    let error = EventBus::redis("http://127.0.0.1:6379", CancellationToken::new()).await.expect_err("refused");
    assert!(error.to_string().contains("not a valid Redis URL"), "{error:#}");
}
