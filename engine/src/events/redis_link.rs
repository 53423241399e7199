//! Events over Redis: a script appends each event to a stream and publishes it with its id in one atomic step; a
//! subscriber task forwards what is published into this process's hub, filling any gap from the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

use super::{Envelope, Event, EventId, Hub, Retention, Unresumable};

/// The Redis pub/sub channel every process publishes on and subscribes to.
pub const CHANNEL: &str = "borcelle:events";
/// The Redis stream that keeps recent events for replay; its entry ids are the event ids.
pub const STREAM: &str = "borcelle:events:stream";
/// The longest a publish (connecting included) may take before the event is delivered in this process only.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest reading the history for a replay may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest connecting and subscribing may take before the subscriber backs off and tries again.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the subscriber pings Redis, so that a connection that died silently is noticed and replaced.
const PING_EVERY: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failure that repeats is logged at most once per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Stream entries read per XRANGE.
const PAGE: usize = 1000;

/// KEYS[1] the stream; ARGV: max events, max age in ms, the envelope, the channel. A new stream starts with a
/// `genesis` entry, so that a replay can tell "nothing was lost since this id" from "the stream was recreated (Redis
/// restarted empty) after this id". Returns the event's id.
const PUBLISH_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], '*', 'genesis', '1')
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 - tonumber(ARGV[2])
if oldest > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', oldest))
end
redis.call('PUBLISH', ARGV[4], id .. ' ' .. ARGV[3])
return id
";

pub(super) struct RedisLink {
    /// Reconnects by itself after a failed command.
    publisher: ConnectionManager,
    script: redis::Script,
    /// Whether the subscriber task holds a live subscription.
    subscribed: Arc<AtomicBool>,
    publish_warnings: Throttle,
    retention: Retention,
}

impl RedisLink {
    /// Configures the connections (lazily: an unreachable Redis must not stop the process from starting) and
    /// spawns the subscriber.
    pub(super) fn start(url: &str, hub: Arc<Hub>, stop: CancellationToken) -> Result<Self, crate::SetupError> {
        // The error must not quote the URL: it may hold a password.
        let client = redis::Client::open(url)
            .map_err(|err| crate::SetupError::new("REDIS_URL is not a valid Redis URL", err))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(PUBLISH_TIMEOUT))
            .set_response_timeout(Some(REPLAY_TIMEOUT))
            .set_number_of_retries(1);
        let publisher = client
            .get_connection_manager_lazy(config)
            .map_err(|err| crate::SetupError::new("configuring the Redis publisher", err))?;
        let subscribed = Arc::new(AtomicBool::new(false));
        let retention = hub.retention;
        let subscriber =
            Subscriber { client, history: publisher.clone(), hub, subscribed: subscribed.clone(), retention };
        tokio::spawn(subscriber.run(stop));
        Ok(Self {
            publisher,
            script: redis::Script::new(PUBLISH_SCRIPT),
            subscribed,
            publish_warnings: Throttle::new(),
            retention,
        })
    }

    pub(super) fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Appends and publishes; on failure hands the envelope back for local delivery. On success the subscriber
    /// delivers it here too, once.
    pub(super) async fn publish(&self, envelope: Envelope) -> Result<(), Box<Envelope>> {
        let failure = match serde_json::to_string(&envelope) {
            Err(err) => err.to_string(),
            Ok(payload) => {
                let mut publisher = self.publisher.clone();
                let max_age_ms = u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX);
                let mut invocation = self.script.key(STREAM);
                invocation.arg(self.retention.max_events).arg(max_age_ms).arg(payload).arg(CHANNEL);
                // If the script ran but its answer timed out, this process sees the event twice (once without an
                // id): harmless for a hint, and better than not at all.
                match tokio::time::timeout(PUBLISH_TIMEOUT, invocation.invoke_async::<String>(&mut publisher)).await {
                    Ok(Ok(_id)) => return Ok(()),
                    Ok(Err(err)) => err.to_string(),
                    Err(_elapsed) => format!("no answer within {PUBLISH_TIMEOUT:?}"),
                }
            }
        };
        if let Some(suppressed) = self.publish_warnings.check() {
            tracing::warn!(error = %failure, suppressed, "publishing an event to Redis failed; delivered in this process only");
        }
        Err(Box::new(envelope))
    }

    pub(super) async fn replay(&self, after: EventId) -> Result<Vec<Arc<Event>>, Unresumable> {
        let mut history = self.publisher.clone();
        let read = read_after(&mut history, after, self.retention.max_events.saturating_mul(4));
        match tokio::time::timeout(REPLAY_TIMEOUT, read).await {
            Ok(result) => result.map(|events| events.into_iter().map(Arc::new).collect()),
            Err(_elapsed) => Err(Unresumable::Unavailable),
        }
    }
}

/// What `XINFO STREAM` says about the retained range.
struct StreamInfo {
    last: EventId,
    max_deleted: EventId,
    first: Option<EventId>,
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn parse_info(value: &Value) -> Option<StreamInfo> {
    let (mut last, mut max_deleted, mut first) = (None, None, None);
    for (key, field) in value.as_map_iter()? {
        match text(key)?.as_str() {
            "last-generated-id" => last = text(field)?.parse().ok(),
            "max-deleted-entry-id" => max_deleted = text(field)?.parse().ok(),
            "first-entry" => first = field.as_sequence().and_then(|entry| entry.first()).and_then(text),
            _ => {}
        }
    }
    let first = first.and_then(|id| id.parse().ok());
    Some(StreamInfo { last: last?, max_deleted: max_deleted?, first })
}

/// Whether every event after `cursor` is still in the stream.
fn check(info: &StreamInfo, cursor: EventId) -> Result<(), Unresumable> {
    if cursor > info.last {
        return Err(Unresumable::Unknown);
    }
    let complete = if info.max_deleted > EventId::ZERO {
        cursor >= info.max_deleted
    } else {
        // Nothing trimmed: the stream is whole from its genesis entry on.
        info.first.is_some_and(|first| cursor >= first)
    };
    if complete { Ok(()) } else { Err(Unresumable::TooOld) }
}

/// Every event after `after`, read page by page; each page is checked against the trimming in the same MULTI.
async fn read_after(conn: &mut ConnectionManager, after: EventId, limit: usize) -> Result<Vec<Event>, Unresumable> {
    let mut events = Vec::new();
    let mut cursor = after;
    loop {
        let (info, page): (Value, StreamRangeReply) = redis::pipe()
            .atomic()
            .cmd("XINFO")
            .arg("STREAM")
            .arg(STREAM)
            .cmd("XRANGE")
            .arg(STREAM)
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .map_err(|err| {
                tracing::debug!(error = %err, "reading the event stream failed");
                Unresumable::Unavailable
            })?;
        check(&parse_info(&info).ok_or(Unresumable::Unavailable)?, cursor)?;
        let count = page.ids.len();
        for entry in page.ids {
            let Ok(id) = entry.id.parse::<EventId>() else { continue };
            cursor = id;
            let Some(payload) = entry.map.get("e") else { continue }; // the genesis entry
            let payload = match payload {
                Value::BulkString(bytes) => bytes.as_slice(),
                _ => continue,
            };
            if let Ok(envelope) = serde_json::from_slice::<Envelope>(payload) {
                events.push(Event::numbered(id, envelope));
            }
        }
        if count < PAGE {
            return Ok(events);
        }
        if events.len() > limit {
            return Err(Unresumable::TooOld);
        }
    }
}

/// The stream's newest id, `None` when it does not exist.
async fn stream_head(conn: &mut ConnectionManager) -> redis::RedisResult<Option<EventId>> {
    let exists: bool = redis::cmd("EXISTS").arg(STREAM).query_async(conn).await?;
    if !exists {
        return Ok(None);
    }
    let info: Value = redis::cmd("XINFO").arg("STREAM").arg(STREAM).query_async(conn).await?;
    Ok(parse_info(&info).map(|info| info.last))
}

/// Parses a published message: `<id> <envelope>`, or a bare envelope (from a process that does not number events).
fn parse_message(payload: &[u8]) -> Option<Event> {
    if payload.first() == Some(&b'{') {
        return serde_json::from_slice::<Envelope>(payload).ok().map(Event::unnumbered);
    }
    let space = payload.iter().position(|&b| b == b' ')?;
    let id = std::str::from_utf8(&payload[..space]).ok()?.parse::<EventId>().ok()?;
    let envelope = serde_json::from_slice::<Envelope>(&payload[space + 1..]).ok()?;
    Some(Event::numbered(id, envelope))
}

struct Subscriber {
    client: redis::Client,
    /// For reading the stream (a multiplexed connection of its own; the pub/sub one cannot run commands).
    history: ConnectionManager,
    hub: Arc<Hub>,
    subscribed: Arc<AtomicBool>,
    retention: Retention,
}

impl Subscriber {
    /// Keeps this process subscribed to [`CHANNEL`] until `stop` is cancelled, forwarding what arrives.
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        let failures = Throttle::new();
        loop {
            match stop.run_until_cancelled(self.open()).await {
                None => break,
                Some(Ok(pubsub)) => {
                    self.subscribed.store(true, Ordering::Relaxed);
                    backoff = BACKOFF_MIN;
                    tracing::info!(channel = CHANNEL, "subscribed to Redis events");
                    let ended = stop.run_until_cancelled(forward(pubsub, &self.hub)).await;
                    self.subscribed.store(false, Ordering::Relaxed);
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

    /// A fresh subscription to [`CHANNEL`], after delivering from the stream what was published since the last
    /// event this process delivered (or, the first time, since just before subscribing).
    async fn open(&mut self) -> Result<PubSub, SubscribeError> {
        let open = async {
            let seen = self.hub.head();
            let cursor = match seen {
                Some(head) => Some(head),
                None => stream_head(&mut self.history).await?,
            };
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            if let Some(cursor) = cursor {
                let limit = self.retention.max_events.saturating_mul(4);
                match read_after(&mut self.history, cursor, limit).await {
                    Ok(missed) => {
                        self.hub.start_at(cursor);
                        missed.into_iter().for_each(|event| self.hub.deliver(event));
                    }
                    Err(why) if seen.is_some() => {
                        tracing::warn!(reason = %why, "events published while unsubscribed are lost; clients resync");
                        let head = stream_head(&mut self.history).await.ok().flatten();
                        self.hub.resync(head, "events were lost while the server was disconnected from Redis");
                    }
                    Err(_) => {}
                }
            }
            Ok::<_, SubscribeError>(pubsub)
        };
        // The client sets no connection timeout on pub/sub connections; a Redis that accepts and never answers
        // would otherwise hold the subscriber forever.
        tokio::time::timeout(SUBSCRIBE_TIMEOUT, open).await.unwrap_or(Err(SubscribeError::TimedOut))
    }
}

/// Why subscribing failed this time (the subscriber backs off and tries again).
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("timed out")]
    TimedOut,
}

/// Forwards events until the connection ends, and says why it ended.
async fn forward(pubsub: PubSub, hub: &Hub) -> &'static str {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset(); // the first tick would otherwise come at once
    let malformed = Throttle::new();
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return "connection closed" };
                match parse_message(message.get_payload_bytes()) {
                    Some(event) => hub.deliver(event),
                    None => {
                        if let Some(suppressed) = malformed.check() {
                            tracing::warn!(suppressed, "skipped a malformed message on the events channel");
                        }
                    }
                }
            }
            _ = ping.tick() => {
                // Answered in subscribed mode with ["pong", ""], hence a raw value.
                if !matches!(tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.ping::<Value>()).await, Ok(Ok(_))) {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(last: (u64, u64), max_deleted: (u64, u64), first: Option<(u64, u64)>) -> StreamInfo {
        StreamInfo {
            last: EventId::new(last.0, last.1),
            max_deleted: EventId::new(max_deleted.0, max_deleted.1),
            first: first.map(|(ms, seq)| EventId::new(ms, seq)),
        }
    }

    #[test]
    fn replay_is_complete_only_from_the_genesis_or_the_last_trimmed_entry_on() {
        let whole = info((50, 0), (0, 0), Some((10, 0)));
        assert_eq!(check(&whole, EventId::new(10, 0)), Ok(()));
        assert_eq!(check(&whole, EventId::new(30, 2)), Ok(()));
        assert_eq!(check(&whole, EventId::new(50, 0)), Ok(()));
        assert_eq!(check(&whole, EventId::new(9, 9)), Err(Unresumable::TooOld), "from before the stream was created");
        assert_eq!(check(&whole, EventId::new(50, 1)), Err(Unresumable::Unknown));
        let trimmed = info((50, 0), (20, 0), Some((21, 0)));
        assert_eq!(check(&trimmed, EventId::new(20, 0)), Ok(()));
        assert_eq!(check(&trimmed, EventId::new(19, 5)), Err(Unresumable::TooOld));
    }

    #[test]
    fn published_messages_carry_their_id_and_bare_envelopes_are_still_understood() {
        let event = parse_message(br#"1700000000000-3 {"audience":{"kind":"all"},"event":{"type":"t"}}"#).unwrap();
        assert_eq!(event.id, Some(EventId::new(1_700_000_000_000, 3)));
        let sent = event.payload();
        assert_eq!(sent, serde_json::json!({"id": "1700000000000-3", "type": "t"}));
        let bare = parse_message(br#"{"audience":{"kind":"all"},"event":{"type":"t"}}"#).unwrap();
        assert_eq!(bare.id, None);
        for garbage in [&b"not json"[..], b"1-2 nope", br#"{"audience":{"kind":"nobody"},"event":{}}"#, b""] {
            assert!(parse_message(garbage).is_none());
        }
    }
}
