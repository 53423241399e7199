//! Live events (task progress, notifications, broadcasts) carried from the process that produces them to every
//! `serve` replica: in process when standalone, over Redis otherwise. Each WebSocket waits on its user's channel.
//!
//! Every event gets an id (see [`EventId`]), one total order shared by every process, so that a client that
//! reconnects with the last id it saw can be given exactly what it missed:
//! - in process, ids come from this process and the last [`Retention`] events are kept in a ring;
//! - with Redis, a script appends the event to the stream [`STREAM`] (which assigns the id and is trimmed to the
//!   retention) and publishes `<id> <envelope>` on [`CHANNEL`] in the same atomic step, so the pub/sub order is the
//!   id order; replay reads the stream. A subscriber that lost its connection reads what it missed from the stream
//!   when it is back, or tells every socket to resync when that is no longer possible.

mod envelope;
mod id;
mod live;
mod redis_link;
mod ring;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) use envelope::with_id;
pub use envelope::{Audience, Envelope, Event};
pub use id::{EventId, InvalidEventId};
pub use live::{BroadcastNotice, InboundNotice, LiveEvent, Snapshot, TaskProgress};
pub use redis_link::{CHANNEL, STREAM};

use redis_link::RedisLink;
use ring::Ring;

/// How many events the local channel keeps for a receiver before that receiver lags.
const LOCAL_CAPACITY: usize = 4096;

/// The same for one user's channel (that user's events and those for everyone). Small: each user with an open
/// socket has one, allocated in full (about 40 bytes a slot); a socket that falls this far behind resyncs.
const USER_CAPACITY: usize = 128;

/// How much history is kept for replay: at most this many events, none older than this, and in process at most
/// this many bytes of them (the ring's memory stays bounded however large the events are).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_events: usize,
    pub max_age: Duration,
    pub max_bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self { max_events: 10_000, max_age: Duration::from_secs(3600), max_bytes: 16 * 1024 * 1024 }
    }
}

/// Why the events after an id cannot be replayed; the client must re-read instead (a resync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unresumable {
    #[error("events after that id are no longer kept")]
    TooOld,
    #[error("that event id was never given out")]
    Unknown,
    #[error("the event history cannot be read right now")]
    Unavailable,
}

/// A receiver of the events this process sees from now on (all of them, or one user's), and the id of the
/// newest event before them.
pub struct Subscription {
    // Declared first, so that it is dropped before `_membership` looks at who still listens.
    pub receiver: broadcast::Receiver<Arc<Event>>,
    /// Every event with a larger id comes through `receiver`; `None` when no id is known yet.
    pub head: Option<EventId>,
    _membership: Option<Membership>,
}

/// A user's place in the hub's routing table, given up with the user's last subscription.
struct Membership {
    hub: Weak<Hub>,
    user: Uuid,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.lock();
            if state.users.get(&self.user).is_some_and(|sender| sender.receiver_count() == 0) {
                state.users.remove(&self.user);
            }
        }
    }
}

/// Carries events to every receiver in this process and, with Redis, in every other process on the same Redis.
#[derive(Clone)]
pub struct EventBus {
    hub: Arc<Hub>,
    redis: Option<Arc<RedisLink>>,
}

/// The local fan-out: the channel every socket subscribes to, the newest id delivered, and in process the ring.
/// One lock orders id assignment, retention and sending, so receivers see ids in increasing order.
struct Hub {
    state: Mutex<HubState>,
    retention: Retention,
}

struct HubState {
    /// Every event, for [`EventBus::subscribe`].
    sender: broadcast::Sender<Arc<Event>>,
    /// Each user with a subscription: that user's events and those for everyone. A socket waits on its user's
    /// channel only, so an event for one user wakes that user's sockets, not every socket of the process.
    users: HashMap<Uuid, broadcast::Sender<Arc<Event>>>,
    head: Option<EventId>,
    ring: Option<Ring>,
}

impl HubState {
    /// Sends to every receiver the event is for. A send fails only when nobody listens on that channel.
    fn send(&self, event: Arc<Event>) {
        match event.audience {
            Audience::User(user) => {
                if let Some(sender) = self.users.get(&user) {
                    let _ = sender.send(event.clone());
                }
            }
            Audience::All => {
                for sender in self.users.values() {
                    let _ = sender.send(event.clone());
                }
            }
        }
        let _ = self.sender.send(event);
    }
}

impl Hub {
    fn new(ring: Option<Ring>, head: Option<EventId>, retention: Retention) -> Arc<Self> {
        let sender = broadcast::channel(LOCAL_CAPACITY).0;
        Arc::new(Self { state: Mutex::new(HubState { sender, users: HashMap::new(), head, ring }), retention })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn subscribe(&self) -> Subscription {
        let state = self.lock();
        Subscription { receiver: state.sender.subscribe(), head: state.head, _membership: None }
    }

    fn subscribe_user(self: &Arc<Self>, user: Uuid) -> Subscription {
        let mut state = self.lock();
        let receiver = state.users.entry(user).or_insert_with(|| broadcast::channel(USER_CAPACITY).0).subscribe();
        let membership = Membership { hub: Arc::downgrade(self), user };
        Subscription { receiver, head: state.head, _membership: Some(membership) }
    }

    /// In process: numbers the event, keeps it and sends it.
    fn publish_numbered(&self, envelope: Envelope) {
        let now = id::now_ms();
        let mut state = self.lock();
        let id = EventId::next(state.head.unwrap_or(EventId::ZERO), now);
        let event = Arc::new(Event::numbered(id, envelope));
        if let Some(ring) = &mut state.ring {
            ring.push(event.clone(), now);
        }
        state.head = Some(id);
        state.send(event);
    }

    /// An event numbered by Redis; one this process already delivered (id not above the head) is dropped.
    fn deliver(&self, event: Event) {
        let mut state = self.lock();
        if let (Some(id), Some(head)) = (event.id, state.head)
            && id <= head
        {
            return;
        }
        if event.id.is_some() {
            state.head = event.id;
        }
        state.send(Arc::new(event));
    }

    /// Moves the head to `id` without delivering anything (the stream's newest id when nothing was seen yet).
    fn start_at(&self, id: EventId) {
        let mut state = self.lock();
        if state.head.is_none_or(|head| head < id) {
            state.head = Some(id);
        }
    }

    /// Events were lost: restart the numbering at `head` and tell every socket to resync.
    fn resync(&self, head: Option<EventId>, reason: &str) {
        let mut state = self.lock();
        state.head = head;
        state.send(Arc::new(Event::resync(reason)));
    }

    fn head(&self) -> Option<EventId> {
        self.lock().head
    }
}

impl EventBus {
    /// Events stay inside this process (standalone mode, no REDIS_URL), with the default retention.
    pub fn in_process() -> Self {
        Self::in_process_with(Retention::default())
    }

    /// Events stay inside this process; the last ones are kept for replay as `retention` says.
    pub fn in_process_with(retention: Retention) -> Self {
        // Ids from before this instant belong to an earlier process: their history is gone.
        let start = EventId::at_ms(id::now_ms());
        Self { hub: Hub::new(Some(Ring::new(start, retention)), Some(start), retention), redis: None }
    }

    /// How many events this process keeps for replay and what they take; `None` with Redis, whose
    /// stream keeps them.
    pub fn retained(&self) -> Option<(usize, usize)> {
        self.hub.lock().ring.as_ref().map(Ring::retained)
    }

    /// Events travel over Redis so that every process connected to the same Redis receives every event, and the
    /// stream keeps the default retention for replay. Spawns a subscriber task that forwards what arrives into the
    /// local channel and resubscribes with capped exponential backoff (100 ms .. 5 s) when the connection drops;
    /// it stops when `stop` is cancelled. Fails only if the URL is invalid; an unreachable Redis at start is
    /// logged and retried.
    pub async fn redis(url: &str, stop: CancellationToken) -> Result<Self, crate::SetupError> {
        let hub = Hub::new(None, None, Retention::default());
        let link = RedisLink::start(url, hub.clone(), stop)?;
        Ok(Self { hub, redis: Some(Arc::new(link)) })
    }

    /// Publishes; never fails the caller. With Redis: appended to the stream and published; if that fails (Redis
    /// down), the event is delivered locally only, without an id, and a warning is logged (rate-limited), so this
    /// process's own sockets still get it. Events are hints: clients re-read counts from the database, so a lost
    /// event never shows a wrong number.
    pub async fn publish(&self, envelope: Envelope) {
        match &self.redis {
            None => self.hub.publish_numbered(envelope),
            Some(link) => {
                if let Err(envelope) = link.publish(envelope).await {
                    self.hub.deliver(Event::unnumbered(*envelope));
                }
            }
        }
    }

    /// A receiver of every event this process sees (all audiences; the caller filters). Bounded: a slow receiver
    /// lags (tokio broadcast semantics) instead of growing memory.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.hub.subscribe().receiver
    }

    /// Like [`EventBus::subscribe`], with the id of the newest event before the first one received.
    pub fn subscribe_with_head(&self) -> Subscription {
        self.hub.subscribe()
    }

    /// The events for one user (theirs and those for everyone), with the id of the newest event before the first
    /// one received. What a socket waits on: an event for one user wakes only that user's sockets. Bounded by
    /// a small queue: a receiver that falls behind lags and must resync.
    pub fn subscribe_user(&self, user: Uuid) -> Subscription {
        self.hub.subscribe_user(user)
    }

    /// How many users have a subscription in this process (the size of the routing table).
    pub fn subscribed_users(&self) -> usize {
        self.hub.lock().users.len()
    }

    /// The newest event id this process has delivered, if any.
    pub fn head(&self) -> Option<EventId> {
        self.hub.head()
    }

    /// Every retained event after `after` (all audiences, oldest first), or why that would not be all of them.
    pub async fn replay(&self, after: EventId) -> Result<Vec<Arc<Event>>, Unresumable> {
        match &self.redis {
            Some(link) => link.replay(after).await,
            None => {
                let state = self.hub.lock();
                let head = state.head.unwrap_or(EventId::ZERO);
                state.ring.as_ref().map_or(Err(Unresumable::Unavailable), |ring| ring.after(after, head))
            }
        }
    }

    /// "in-process" or "redis", for logs and /readyz.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() { "redis" } else { "in-process" }
    }

    /// With Redis: whether the subscriber is currently connected (false while it is reconnecting). Always true in-process.
    pub fn is_connected(&self) -> bool {
        self.redis.as_ref().is_none_or(|link| link.is_subscribed())
    }

    /// How much history is kept for replay.
    pub fn retention(&self) -> Retention {
        self.hub.retention
    }
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus").field("backend", &self.backend()).field("connected", &self.is_connected()).finish()
    }
}
