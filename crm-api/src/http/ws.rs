//! `GET /ws`: one WebSocket per browser tab. It checks the session (or API token) and the Origin,
//! sends a snapshot (open tasks, unread notifications), then this user's events. Events are hints:
//! counts come from the database, so a client that missed some re-reads and is right again.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::db::{notifications, tasks};
use crate::error::{AppError, AppResult};
use crate::http::extract::CurrentUser;
use crate::state::AppState;

/// A client that cannot take a message within this time is dropped (it would only fall behind).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    state.settings.http.origin_allowed(origin.to_str().unwrap_or(""))
}

pub async fn connect(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> AppResult<Response> {
    if !origin_allowed(&state, &headers) {
        return Err(AppError::CsrfRejected("WebSocket from another site refused"));
    }
    Ok(upgrade.on_upgrade(move |socket| serve(state, user.user_id, socket)))
}

/// The first message: what is true now.
pub async fn snapshot(state: &AppState, user: uuid::Uuid) -> AppResult<serde_json::Value> {
    let open = tasks::list(&state.db, user, true, 100).await?;
    let unread = notifications::list(&state.db, user, true, 50).await?;
    let unread_count = notifications::unread_count(&state.db, user).await?;
    Ok(json!({ "type": "snapshot", "tasks": open, "notifications": unread, "unread": unread_count }))
}

async fn send(socket: &mut WebSocket, value: &serde_json::Value) -> bool {
    let text = Utf8Bytes::from(value.to_string());
    matches!(tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await, Ok(Ok(())))
}

async fn serve(state: AppState, user: uuid::Uuid, mut socket: WebSocket) {
    // Subscribe before the snapshot, so nothing between the two is missed.
    let mut events = state.events.subscribe();
    let first = match snapshot(&state, user).await {
        Ok(snapshot) => snapshot,
        Err(err) => {
            tracing::warn!(error = %err, "WebSocket snapshot failed");
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    if !send(&mut socket, &first).await {
        return;
    }
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(envelope) => {
                    if envelope.is_for(user) && !send(&mut socket, &envelope.event).await {
                        tracing::debug!(%user, "dropping a WebSocket client that does not keep up");
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    // Too slow for the stream: tell the page to re-read instead of replaying.
                    if !send(&mut socket, &json!({ "type": "resync", "missed": missed })).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
