//! Live events (task progress, notifications, broadcasts) carried from the process that produces them to every
//! `serve` replica: in process when standalone, over Redis pub/sub otherwise. WebSocket handlers filter per user.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use redis::aio::{ConnectionManagerConfig, PubSub};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The Redis pub/sub channel every process publishes on and subscribes to.
pub const CHANNEL: &str = "borcelle:events";
/// How many events the local channel keeps for a receiver before that receiver lags.
const LOCAL_CAPACITY: usize = 4096;
/// The longest a PUBLISH (connecting included) may take before the event is delivered in this process only.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest connecting and subscribing may take before the subscriber backs off and tries again.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the subscriber pings Redis, so that a connection that died silently is noticed and replaced.
const PING_EVERY: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failure that repeats is logged at most once per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Audience {
    /// One user, by id.
    User(Uuid),
    /// Every signed-in user.
    All,
}

/// One event: its audience and its JSON payload (which carries its own "type" field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Who may see the event.
    pub audience: Audience,
    /// The payload sent to the browser as it is.
    pub event: serde_json::Value,
}

impl Envelope {
    /// An event for one user.
    pub fn to_user(user_id: Uuid, event: serde_json::Value) -> Self {
        Self { audience: Audience::User(user_id), event }
    }

    /// An event for every user.
    pub fn to_all(event: serde_json::Value) -> Self {
        Self { audience: Audience::All, event }
    }

    /// Whether the user with this id may see the event.
    pub fn is_for(&self, user_id: Uuid) -> bool {
        match self.audience {
            Audience::All => true,
            Audience::User(id) => id == user_id,
        }
    }
}

/// Carries events to every receiver in this process and, with Redis, in every other process on the same Redis.
#[derive(Clone)]
pub struct EventBus {
    local: broadcast::Sender<Arc<Envelope>>,
    redis: Option<Arc<RedisLink>>,
}

struct RedisLink {
    /// Reconnects by itself after a failed command.
    publisher: redis::aio::ConnectionManager,
    /// Whether the subscriber task holds a live subscription.
    subscribed: Arc<AtomicBool>,
    publish_warnings: Throttle,
}

impl EventBus {
    /// Events stay inside this process (standalone mode, no REDIS_URL).
    pub fn in_process() -> Self {
        Self { local: broadcast::channel(LOCAL_CAPACITY).0, redis: None }
    }

    /// Events travel over Redis pub/sub (channel "borcelle:events") so that every process connected to the same
    /// Redis receives every event. Spawns a subscriber task that forwards what arrives into the local channel and
    /// resubscribes with capped exponential backoff (100 ms .. 5 s) when the connection drops; it stops when
    /// `stop` is cancelled. Fails only if the URL is invalid; an unreachable Redis at start is logged and retried.
    pub async fn redis(url: &str, stop: CancellationToken) -> anyhow::Result<Self> {
        // The error must not quote the URL: it may hold a password.
        let client = redis::Client::open(url).context("REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(PUBLISH_TIMEOUT))
            .set_response_timeout(Some(PUBLISH_TIMEOUT))
            .set_number_of_retries(1);
        // Lazy: an unreachable Redis must not stop the process from starting.
        let publisher = client.get_connection_manager_lazy(config).context("configuring the Redis publisher")?;
        let local = broadcast::channel(LOCAL_CAPACITY).0;
        let subscribed = Arc::new(AtomicBool::new(false));
        tokio::spawn(run_subscriber(client, local.clone(), subscribed.clone(), stop));
        let link = RedisLink { publisher, subscribed, publish_warnings: Throttle::new() };
        Ok(Self { local, redis: Some(Arc::new(link)) })
    }

    /// Publishes; never fails the caller. With Redis: PUBLISH; if that fails (Redis down), the event is delivered
    /// locally only and a warning is logged (rate-limited), so this process's own sockets still get it. Events are
    /// hints: clients re-read counts from the database, so a lost event never shows a wrong number.
    pub async fn publish(&self, envelope: Envelope) {
        let Some(link) = &self.redis else {
            self.deliver_locally(envelope);
            return;
        };
        let failure = match serde_json::to_string(&envelope) {
            Err(err) => err.to_string(),
            Ok(payload) => {
                let mut publisher = link.publisher.clone();
                let mut publish = redis::cmd("PUBLISH");
                publish.arg(CHANNEL).arg(payload);
                // If the PUBLISH reached Redis but its answer timed out, this process sees the event twice: harmless
                // for a hint, and better than not at all.
                match tokio::time::timeout(PUBLISH_TIMEOUT, publish.query_async::<i64>(&mut publisher)).await {
                    // On success the subscriber delivers it here too, once.
                    Ok(Ok(_receivers)) => return,
                    Ok(Err(err)) => err.to_string(),
                    Err(_elapsed) => format!("no answer within {PUBLISH_TIMEOUT:?}"),
                }
            }
        };
        if let Some(suppressed) = link.publish_warnings.check() {
            tracing::warn!(error = %failure, suppressed, "publishing an event to Redis failed; delivered in this process only");
        }
        self.deliver_locally(envelope);
    }

    /// A receiver of every event this process sees (all audiences; the caller filters). Bounded: a slow receiver
    /// lags (tokio broadcast semantics) instead of growing memory.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Envelope>> {
        self.local.subscribe()
    }

    /// "in-process" or "redis", for logs and /readyz.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() { "redis" } else { "in-process" }
    }

    /// With Redis: whether the subscriber is currently connected (false while it is reconnecting). Always true in-process.
    pub fn is_connected(&self) -> bool {
        self.redis.as_ref().is_none_or(|link| link.subscribed.load(Ordering::Relaxed))
    }

    fn deliver_locally(&self, envelope: Envelope) {
        // Fails only when nobody is listening, and then there is nobody to tell.
        let _ = self.local.send(Arc::new(envelope));
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus").field("backend", &self.backend()).field("connected", &self.is_connected()).finish()
    }
}

/// Keeps this process subscribed to [`CHANNEL`] until `stop` is cancelled, forwarding what arrives into `local`.
async fn run_subscriber(
    client: redis::Client,
    local: broadcast::Sender<Arc<Envelope>>,
    subscribed: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    let failures = Throttle::new();
    loop {
        match stop.run_until_cancelled(open_subscription(&client)).await {
            None => break,
            Some(Ok(pubsub)) => {
                subscribed.store(true, Ordering::Relaxed);
                backoff = BACKOFF_MIN;
                tracing::info!(channel = CHANNEL, "subscribed to Redis events");
                let ended = stop.run_until_cancelled(forward(pubsub, &local)).await;
                subscribed.store(false, Ordering::Relaxed);
                let Some(reason) = ended else { break };
                tracing::warn!(reason, "Redis event subscription lost; resubscribing");
            }
            Some(Err(err)) => {
                if let Some(suppressed) = failures.check() {
                    tracing::warn!(error = %err, suppressed, retry_in = ?backoff, "cannot subscribe to Redis events");
                }
            }
        }
        if stop.run_until_cancelled(tokio::time::sleep(backoff)).await.is_none() {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    tracing::debug!("Redis event subscriber stopped");
}

/// A fresh pub/sub connection subscribed to [`CHANNEL`].
async fn open_subscription(client: &redis::Client) -> redis::RedisResult<PubSub> {
    let open = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok(pubsub)
    };
    // The client sets no connection timeout on pub/sub connections; a Redis that accepts and never answers would
    // otherwise hold the subscriber forever.
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, open)
        .await
        .unwrap_or_else(|_elapsed| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
}

/// Forwards events until the connection ends, and says why it ended.
async fn forward(pubsub: PubSub, local: &broadcast::Sender<Arc<Envelope>>) -> &'static str {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset(); // the first tick would otherwise come at once
    let malformed = Throttle::new();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return "connection closed" };
                match serde_json::from_slice::<Envelope>(message.get_payload_bytes()) {
                    Ok(envelope) => {
                        let _ = local.send(Arc::new(envelope));
                    }
                    Err(err) => {
                        if let Some(suppressed) = malformed.check() {
                            tracing::warn!(error = %err, suppressed, "skipped a malformed message on the events channel");
                        }
                    }
                }
            }
            _ = ping.tick() => {
                // Answered in subscribed mode with ["pong", ""], hence a raw value.
                if !matches!(tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.ping::<redis::Value>()).await, Ok(Ok(_))) {
                    return "no answer to ping";
                }
            }
        }
    }
}

/// Lets a repeating warning through at most once per [`WARN_EVERY`], counting the ones it holds back.
struct Throttle {
    start: Instant,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    fn new() -> Self {
        Self { start: Instant::now(), next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(how many were held back since the last one)` when a warning may be logged now.
    fn check(&self) -> Option<u64> {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        let period = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now >= next
            && self
                .next_ms
                .compare_exchange(next, now.saturating_add(period), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
