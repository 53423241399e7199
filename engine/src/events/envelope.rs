//! The event as it travels: [`Envelope`] is what a producer publishes (and what crosses Redis as
//! JSON); [`Event`] is what this process hands to its sockets, with the id added to the text once.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{EventId, LiveEvent};

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Audience {
    /// One user, by id.
    User(Uuid),
    /// Every signed-in user.
    All,
}

/// One event: its audience and its payload, a [`LiveEvent`] serialized once when it is made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Who may see the event.
    pub audience: Audience,
    /// The payload sent to the browser as it is (a JSON object with its `"type"`).
    pub event: Box<RawValue>,
}

impl Envelope {
    /// An event for one user.
    pub fn to_user(user_id: Uuid, event: &LiveEvent) -> Self {
        Self { audience: Audience::User(user_id), event: event.to_raw() }
    }

    /// An event for every user.
    pub fn to_all(event: &LiveEvent) -> Self {
        Self { audience: Audience::All, event: event.to_raw() }
    }

    /// Whether the user with this id may see the event.
    pub fn is_for(&self, user_id: Uuid) -> bool {
        match self.audience {
            Audience::All => true,
            Audience::User(id) => id == user_id,
        }
    }

    /// The payload as a JSON value (for inspection and tests).
    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_str(self.event.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.audience == other.audience && self.payload() == other.payload()
    }
}

/// An event as this process delivers it: its audience, its id, and the text sockets send (the payload with `"id"`
/// added), made once for every socket. Only the text is kept (not a JSON tree): it is what the sockets, the replay
/// ring and the local queue hold.
#[derive(Debug)]
pub struct Event {
    /// `None` only for an event that could not go through Redis (delivered in this process only) and for the
    /// resync notice; such an event cannot be replayed.
    pub id: Option<EventId>,
    pub audience: Audience,
    /// UTF-8 JSON text.
    text: Bytes,
    resync: bool,
}

/// The payload's text with `"id":"<id>"` as its first member (a payload that is not an object is kept as it is).
pub(crate) fn with_id(payload: &str, id: EventId) -> String {
    let trimmed = payload.trim_start();
    let Some(members) = trimmed.strip_prefix('{') else { return payload.to_owned() };
    let empty = members.trim_start().starts_with('}');
    let separator = if empty { "" } else { "," };
    format!("{{\"id\":\"{id}\"{separator}{members}")
}

impl Event {
    pub(super) fn numbered(id: EventId, envelope: Envelope) -> Self {
        let text = with_id(envelope.event.get(), id);
        Self { id: Some(id), audience: envelope.audience, text: Bytes::from(text), resync: false }
    }

    pub(super) fn unnumbered(envelope: Envelope) -> Self {
        let text = Bytes::from(envelope.event.get().to_owned());
        Self { id: None, audience: envelope.audience, text, resync: false }
    }

    /// Tells every socket that events were lost on the way (the Redis subscription was down too long): their pages
    /// must re-read.
    pub(super) fn resync(reason: &str) -> Self {
        let envelope = Envelope::to_all(&LiveEvent::Resync { reason: reason.to_owned() });
        Self { resync: true, ..Self::unnumbered(envelope) }
    }

    /// The UTF-8 text to send on a WebSocket (cheap to clone: shared by every socket).
    pub fn bytes(&self) -> Bytes {
        self.text.clone()
    }

    /// The payload as sent (with its `"id"`), parsed again: for inspection and tests.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_slice(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// Whether the user with this id may see the event.
    pub fn is_for(&self, user_id: Uuid) -> bool {
        match self.audience {
            Audience::All => true,
            Audience::User(id) => id == user_id,
        }
    }

    /// Whether this is the notice that events were lost and every page must re-read.
    pub fn is_resync(&self) -> bool {
        self.resync
    }

    pub(super) fn size(&self) -> usize {
        self.text.len() + std::mem::size_of::<Self>()
    }
}

/// The same audience and payload (the `"id"` this process added aside).
impl PartialEq<Envelope> for Event {
    fn eq(&self, other: &Envelope) -> bool {
        let mut payload = self.payload();
        let expected = other.payload();
        if let (Some(id), Some(fields)) = (self.id, payload.as_object_mut())
            && fields.get("id") == Some(&serde_json::Value::String(id.to_string()))
            && expected.get("id").is_none()
        {
            fields.remove("id");
        }
        self.audience == other.audience && payload == expected
    }
}
