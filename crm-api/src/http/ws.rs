//! `GET /ws`: one WebSocket per browser tab. It checks the session (or API token) and the Origin,
//! sends a snapshot (open tasks, unread notifications), then this user's events. Events are hints:
//! counts come from the database, so a client that missed some re-reads and is right again.
//!
//! Every event carries an `"id"`, and the snapshot the id of the newest event it already reflects. A client that
//! reconnects with `GET /ws?after=<last id it saw>` gets `{"type":"resumed","after":…}`, then exactly the events for
//! its user that it missed, in order, then live ones; when they can no longer be replayed (older than the retention,
//! an id never given out, history unreadable) it gets `{"type":"resync","reason":…}` and a fresh snapshot instead.
//! A client that cannot keep up gets the same resync (it lagged behind the shared queue) or, when it does not read at
//! all, is dropped after [`SEND_TIMEOUT`]: what a connection holds stays bounded.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use borcelle_engine::events::{Event, EventId, LiveEvent, Snapshot, Subscription};
use borcelle_store::{Owner, notifications, tasks};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::http::extract::CurrentUser;
use crate::state::AppState;

/// A client that cannot take a message within this time is dropped (it would only fall behind).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// What a connection reserves for reading: clients send nothing but control frames, so a small buffer is enough
/// (the library's default of 128 KiB per connection would dominate the memory of idle sockets).
const READ_BUFFER: usize = 2 * 1024;
/// The largest message a client may send.
const MAX_INCOMING: usize = 16 * 1024;

#[derive(Deserialize)]
struct Query {
    after: Option<String>,
}

/// The `after` parameter: empty or absent is a fresh start.
fn resume_point(query: Option<&str>) -> AppResult<Option<EventId>> {
    let query: Query = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|err| AppError::validation("after", format!("the query string is not valid: {err}")))?;
    match query.after.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(after) => after.parse().map(Some).map_err(|err| AppError::validation("after", format!("{err}"))),
    }
}

fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    state.settings.http.origin_allowed(origin.to_str().unwrap_or(""))
}

pub async fn connect(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> AppResult<Response> {
    if !origin_allowed(&state, &headers) {
        return Err(AppError::CsrfRejected("WebSocket from another site refused"));
    }
    let after = resume_point(query.as_deref())?;
    let upgrade = upgrade
        .read_buffer_size(READ_BUFFER)
        // Every message is flushed at once anyway; nothing to gain from batching writes.
        .write_buffer_size(0)
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING);
    Ok(upgrade.on_upgrade(move |socket| serve(state, user.user_id, after, socket)))
}

/// The first message: what is true now.
pub async fn snapshot(state: &AppState, user: Uuid) -> AppResult<LiveEvent> {
    let owner = Owner::new(user);
    let tasks = tasks::list(&state.db, owner, true, 100).await?;
    let notifications = notifications::list(&state.db, owner, true, 50).await?;
    let unread = notifications::unread_count(&state.db, owner).await?;
    Ok(LiveEvent::Snapshot(Snapshot { tasks, notifications, unread }))
}

/// Whether an event with this id was already given (by a replay that reached further than the live queue), moving
/// `last` on when it was not.
fn already_given(last: &mut Option<EventId>, id: Option<EventId>) -> bool {
    match (id, *last) {
        (Some(id), Some(seen)) if id <= seen => true,
        (Some(id), _) => {
            *last = Some(id);
            false
        }
        (None, _) => false,
    }
}

/// One open socket: its user, its position in the event order and, once it ends, why.
struct Tab {
    state: AppState,
    socket: WebSocket,
    user: Uuid,
    /// The newest event id this socket has been given or told about.
    last: Option<EventId>,
    /// Why the connection ended: "closed" (by the client, or failed) or "slow" (a send did not finish in time).
    ended: &'static str,
}

impl Tab {
    async fn send_text(&mut self, text: Utf8Bytes) -> bool {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_elapsed) => {
                tracing::debug!(user = %self.user, "dropping a WebSocket client that does not keep up");
                self.ended = "slow";
                false
            }
        }
    }

    /// Sends an event the bus does not carry (the snapshot, the resume notices).
    async fn send(&mut self, event: &LiveEvent, id: Option<EventId>) -> bool {
        self.send_text(event.to_text(id).into()).await
    }

    /// Sends the event if it is new and for this user; false when the socket is gone or too slow.
    async fn give(&mut self, event: &Event) -> bool {
        if already_given(&mut self.last, event.id) || !event.is_for(self.user) {
            return true;
        }
        match Utf8Bytes::try_from(event.bytes()) {
            Ok(text) => self.send_text(text).await,
            // The bus makes its text from JSON: always UTF-8.
            Err(_) => true,
        }
    }

    /// The snapshot, marked with the id of the newest event it reflects (we subscribed before reading it).
    async fn send_snapshot(&mut self) -> bool {
        match snapshot(&self.state, self.user).await {
            Ok(first) => {
                let id = self.last;
                self.send(&first, id).await
            }
            Err(err) => {
                tracing::warn!(error = %err, "WebSocket snapshot failed");
                let _ = self.socket.send(Message::Close(None)).await;
                false
            }
        }
    }

    /// Tells the page to re-read, with a fresh subscription and snapshot to go on from.
    async fn resync(&mut self, reason: &str) -> Option<Subscription> {
        let subscription = self.state.events.subscribe_user(self.user);
        self.last = subscription.head;
        if !self.send(&LiveEvent::Resync { reason: reason.to_owned() }, None).await {
            return None;
        }
        self.send_snapshot().await.then_some(subscription)
    }

    /// The start of a connection: a snapshot, or the missed events after `after` (a resync when they are gone).
    async fn open(&mut self, after: Option<EventId>) -> Option<Subscription> {
        // Subscribe before reading anything, so nothing between the two is missed.
        let subscription = self.state.events.subscribe_user(self.user);
        self.last = subscription.head;
        let Some(after) = after else {
            return self.send_snapshot().await.then_some(subscription);
        };
        let missed = match self.state.events.replay(after).await {
            Ok(missed) => missed,
            Err(why) => return self.resync(&why.to_string()).await,
        };
        if !self.send(&LiveEvent::Resumed { after: after.to_string() }, None).await {
            return None;
        }
        self.last = Some(after);
        for event in missed {
            if !self.give(&event).await {
                return None;
            }
        }
        // Live events up to the newer of the two were replayed (or came before `after`).
        self.last = self.last.max(subscription.head);
        Some(subscription)
    }

    async fn run(&mut self, after: Option<EventId>) {
        // Boxed: the start and the resync (snapshot queries) are large futures that an idle connection, which
        // only waits in the loop below, must not carry.
        let Some(mut subscription) = Box::pin(self.open(after)).await else { return };
        loop {
            tokio::select! {
                received = subscription.receiver.recv() => {
                    let reason = match received {
                        Ok(event) if event.is_resync() => "events were lost on the way to this server",
                        Ok(event) => {
                            if !self.give(&event).await {
                                return;
                            }
                            continue;
                        }
                        // Too slow for its user's queue: the page re-reads instead of being replayed to.
                        Err(RecvError::Lagged(_)) => "this connection fell behind",
                        Err(RecvError::Closed) => return,
                    };
                    match Box::pin(self.resync(reason)).await {
                        Some(fresh) => subscription = fresh,
                        None => return,
                    }
                },
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

async fn serve(state: AppState, user: Uuid, after: Option<EventId>, socket: WebSocket) {
    let mut counted = state.metrics.websocket_opened();
    let mut tab = Tab { state, socket, user, last: None, ended: "closed" };
    tab.run(after).await;
    counted.ending(tab.ended);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_resume_point_is_an_event_id_or_nothing() {
        assert_eq!(resume_point(None).unwrap(), None);
        assert_eq!(resume_point(Some("")).unwrap(), None);
        assert_eq!(resume_point(Some("after=")).unwrap(), None);
        assert_eq!(resume_point(Some("after=17-2")).unwrap(), Some(EventId::new(17, 2)));
        for bad in ["after=17", "after=yesterday", "after=1-2&after=3-4"] {
            let err = resume_point(Some(bad)).unwrap_err();
            assert_eq!(err.field(), Some("after"), "{bad}: {err:?}");
        }
    }

    #[test]
    fn an_event_is_given_once_whatever_the_path_it_comes_by() {
        let mut last = Some(EventId::new(5, 0));
        assert!(already_given(&mut last, Some(EventId::new(4, 9))));
        assert!(already_given(&mut last, Some(EventId::new(5, 0))));
        assert!(!already_given(&mut last, Some(EventId::new(5, 1))));
        assert!(already_given(&mut last, Some(EventId::new(5, 1))));
        assert!(!already_given(&mut last, None), "an event without id cannot be told apart: always given");
        let mut nothing_yet = None;
        assert!(!already_given(&mut nothing_yet, Some(EventId::new(1, 0))));
        assert_eq!(nothing_yet, Some(EventId::new(1, 0)));
    }
}
