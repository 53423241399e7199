//! What the browser is told live, one variant per `"type"`: the only list of the events there are.
//!
//! Each event is built here, once per kind, and serialized once where it is published; the JSON
//! is what `static/*.js` reads and what the WebSocket resume protocol sends (`resumed`, `resync`,
//! `snapshot`). Every event the bus carries gets an `"id"` on its way out (see [`super::Event`]),
//! so no variant has a top-level `id` of its own.

use borcelle_store::notifications::Notification;
use borcelle_store::tasks::Task;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

/// One live event, tagged by `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A send's counters moved (sent, failed, done).
    TaskProgress(TaskProgress),
    /// A notification was stored for the user (the bell and a toast).
    Notification { notification: Notification },
    /// An administrator's broadcast reached the user's open pages.
    Broadcast(BroadcastNotice),
    /// Mail came back for one of the user's messages: a reply, an automatic answer, a bounce.
    Inbound(InboundNotice),
    /// What a socket starts with: open tasks, unread notifications and their count.
    Snapshot(Snapshot),
    /// A reconnecting socket will now get exactly the events after `after` that it missed.
    Resumed { after: String },
    /// Events were lost (or cannot be replayed): re-read, a snapshot follows.
    Resync { reason: String },
}

/// A send's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskProgress {
    pub task_id: Uuid,
    pub sent: i32,
    pub failed: i32,
    /// Not sent: on the owner's suppression list (left out while none is).
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: i32,
    pub total: i32,
    /// `running` or `done`.
    pub status: String,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A broadcast as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BroadcastNotice {
    pub title: String,
    pub body: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The Broadcast's name (`namespace/name` in Kubernetes).
    pub broadcast: String,
    pub occurrence_id: Uuid,
}

/// Mail that came back, as the pages are told of it (the contact page re-reads its conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundNotice {
    pub inbound_id: Uuid,
    /// The contact it is filed under, when the message was to a contact.
    pub contact_id: Option<Uuid>,
    /// The ledger row it answers or reports on.
    pub message_id: Option<Uuid>,
    /// `reply`, `auto_reply`, `bounce`, `unsubscribe` or `report`.
    pub kind: String,
    pub from: String,
    pub subject: String,
}

/// The state a socket starts from.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub tasks: Vec<Task>,
    pub notifications: Vec<Notification>,
    pub unread: i64,
}

impl LiveEvent {
    /// A send just queued: nothing sent yet.
    pub fn task_started(task_id: Uuid, total: i32) -> Self {
        LiveEvent::TaskProgress(TaskProgress {
            task_id,
            sent: 0,
            failed: 0,
            suppressed: 0,
            total,
            status: "running".to_owned(),
        })
    }

    /// A send's counters as the ledger recorded them.
    pub fn task_progress(task: &borcelle_store::messages::TaskProgress) -> Self {
        LiveEvent::TaskProgress(TaskProgress {
            task_id: task.task_id,
            sent: task.sent,
            failed: task.failed,
            suppressed: task.suppressed,
            total: task.total,
            status: task.status.clone(),
        })
    }

    pub fn notification(notification: Notification) -> Self {
        LiveEvent::Notification { notification }
    }

    /// The event's JSON, serialized once.
    pub fn to_raw(&self) -> Box<RawValue> {
        // Serializing these types cannot fail (no maps with non-string keys, no failing
        // `Serialize` impls); the fallback keeps the caller infallible all the same.
        serde_json::value::to_raw_value(self).unwrap_or_else(|err| {
            tracing::error!(error = %err, "serializing a live event failed");
            RawValue::from_string(r#"{"type":"resync","reason":"an event could not be sent"}"#.to_owned())
                .unwrap_or_else(|_| unreachable!("a constant JSON object"))
        })
    }

    /// The event's JSON text, as a socket sends it when it is not carried by the bus (the
    /// snapshot and the resume notices), with the id of the newest event it reflects when given.
    pub fn to_text(&self, id: Option<super::EventId>) -> String {
        let raw = self.to_raw();
        match id {
            Some(id) => super::with_id(raw.get(), id),
            None => raw.get().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::{TimeZone, Utc};
    use serde_json::{Value, json};

    use super::*;

    fn json_of(event: &LiveEvent) -> Value {
        serde_json::from_str(event.to_raw().get()).unwrap()
    }

    fn notification() -> Notification {
        Notification {
            id: Uuid::nil(),
            kind: "task_done".into(),
            title: "Note sent to 3 contacts".into(),
            body: "“Q3”".into(),
            data: json!({"task_id": Uuid::nil()}),
            read_at: None,
            created_at: Utc.with_ymd_and_hms(2026, 12, 3, 21, 30, 43).unwrap(),
        }
    }

    #[test]
    fn task_progress_is_what_the_progress_bar_reads() {
        let task = Uuid::from_u128(7);
        assert_eq!(
            json_of(&LiveEvent::task_started(task, 48)),
            json!({"type": "task_progress", "task_id": task, "sent": 0, "failed": 0, "total": 48, "status": "running"})
        );
        let recorded = borcelle_store::messages::TaskProgress {
            task_id: task,
            owner_id: Uuid::nil(),
            kind: "note".into(),
            subject: "Q3".into(),
            sent: 45,
            failed: 3,
            suppressed: 0,
            total: 48,
            status: "done".into(),
            just_finished: true,
        };
        assert_eq!(
            json_of(&LiveEvent::task_progress(&recorded)),
            json!({"type": "task_progress", "task_id": task, "sent": 45, "failed": 3, "total": 48, "status": "done"})
        );
    }

    #[test]
    fn a_notification_carries_the_stored_notification() {
        assert_eq!(
            json_of(&LiveEvent::notification(notification())),
            json!({"type": "notification", "notification": {
                "id": Uuid::nil(), "kind": "task_done", "title": "Note sent to 3 contacts", "body": "“Q3”",
                "data": {"task_id": Uuid::nil()}, "read_at": null, "created_at": "2026-12-03T21:30:43Z"
            }})
        );
    }

    #[test]
    fn a_broadcast_has_its_title_body_and_severity_at_the_top() {
        let notice = BroadcastNotice {
            title: "Maintenance".into(),
            body: "Tonight at 22:00".into(),
            severity: "warning".into(),
            broadcast: "crm/maintenance".into(),
            occurrence_id: Uuid::nil(),
        };
        assert_eq!(
            json_of(&LiveEvent::Broadcast(notice)),
            json!({"type": "broadcast", "title": "Maintenance", "body": "Tonight at 22:00", "severity": "warning",
                   "broadcast": "crm/maintenance", "occurrence_id": Uuid::nil()})
        );
    }

    #[test]
    fn the_snapshot_lists_open_tasks_and_unread_notifications() {
        let snapshot = Snapshot { tasks: Vec::new(), notifications: vec![notification()], unread: 1 };
        let value = json_of(&LiveEvent::Snapshot(snapshot));
        assert_eq!(value["type"], "snapshot");
        assert_eq!(value["tasks"], json!([]));
        assert_eq!(value["notifications"][0]["title"], "Note sent to 3 contacts");
        assert_eq!(value["unread"], 1);
    }

    #[test]
    fn resume_notices_name_where_the_socket_stands() {
        assert_eq!(
            json_of(&LiveEvent::Resumed { after: "1700000000000-3".into() }),
            json!({"type": "resumed", "after": "1700000000000-3"})
        );
        assert_eq!(
            json_of(&LiveEvent::Resync { reason: "events after that id are no longer kept".into() }),
            json!({"type": "resync", "reason": "events after that id are no longer kept"})
        );
    }

    #[test]
    fn no_event_has_an_id_of_its_own_for_the_bus_to_collide_with() {
        let events = [
            LiveEvent::task_started(Uuid::nil(), 1),
            LiveEvent::notification(notification()),
            LiveEvent::Resumed { after: "1-0".into() },
            LiveEvent::Resync { reason: "r".into() },
            LiveEvent::Snapshot(Snapshot { tasks: Vec::new(), notifications: Vec::new(), unread: 0 }),
        ];
        for event in events {
            assert!(json_of(&event).get("id").is_none(), "{event:?}");
        }
    }
}
