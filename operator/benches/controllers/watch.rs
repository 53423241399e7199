//! Watches of the mock API server: the changes after the requested resourceVersion are replayed
//! from the change log, then new ones are sent as they happen, with a BOOKMARK every so often
//! when asked for, until the timeout. A resourceVersion older than the log gets 410 Gone.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::api_server::{ApiServer, Resource};
use super::selector::{Labels, Selector};

/// Which changes a watch sends.
pub struct WatchFilter {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub selector: Selector,
}

impl WatchFilter {
    pub fn matches(&self, resource: Resource, namespace: &str, labels: &Labels) -> bool {
        resource == self.resource
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.selector.matches(labels)
    }
}

struct Watch {
    server: Arc<ApiServer>,
    filter: WatchFilter,
    /// Every change up to this resourceVersion has been looked at.
    cursor: u64,
    pending: VecDeque<Bytes>,
    deadline: Instant,
    /// When the next bookmark is due, and how often (none unless asked for).
    bookmarks: Option<(Instant, Duration)>,
    latest: watch::Receiver<u64>,
    ended: bool,
}

/// The lines of a watch from `since` (exclusive).
pub fn stream(
    server: Arc<ApiServer>,
    filter: WatchFilter,
    since: u64,
    timeout: Duration,
    bookmarks: bool,
) -> BoxStream<'static, Result<Bytes, Infallible>> {
    let every = server.behaviour().bookmark_every;
    let state = Watch {
        latest: server.subscribe(),
        server,
        filter,
        cursor: since,
        pending: VecDeque::new(),
        deadline: Instant::now() + timeout,
        bookmarks: bookmarks.then(|| (Instant::now() + every, every)),
        ended: false,
    };
    futures::stream::unfold(state, next_line).boxed()
}

fn line(kind: &str, object: &serde_json::Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

async fn next_line(mut w: Watch) -> Option<(Result<Bytes, Infallible>, Watch)> {
    loop {
        if let Some(line) = w.pending.pop_front() {
            return Some((Ok(line), w));
        }
        if w.ended {
            return None;
        }
        w.latest.borrow_and_update();
        let resource = w.filter.resource;
        let changes = w.server.store().changes_after(w.cursor, &w.filter, &mut w.pending);
        match changes {
            Some(rv) => w.cursor = rv,
            None => {
                let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410});
                w.pending.push_back(line("ERROR", &status));
                w.server.counted(format!("watch {} → 410 Gone", resource.plural()), 1);
                w.ended = true;
                continue;
            }
        }
        if !w.pending.is_empty() {
            w.server.counted(format!("watch events sent: {}", resource.plural()), w.pending.len() as u64);
            continue;
        }
        let bookmark_at = w.bookmarks.map(|(at, _)| at);
        tokio::select! {
            () = tokio::time::sleep_until(w.deadline) => return None,
            () = sleep_until(bookmark_at) => {
                let object = json!({"apiVersion": resource.api_version(), "kind": resource.kind(),
                    "metadata": {"resourceVersion": w.cursor.to_string()}});
                w.pending.push_back(line("BOOKMARK", &object));
                w.bookmarks = w.bookmarks.map(|(at, every)| (at + every, every));
            }
            changed = w.latest.changed() => if changed.is_err() {
                return None;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
