//! Recording send outcomes in batches and telling the owners: a progress event for each task that
//! moved, and when a task is done, its occurrence marked finished and a stored notification.

use borcelle_store::messages::{self, Outcome, TaskProgress};
use borcelle_store::{Owner, notifications};

use super::{DeliveryEngine, ERROR_PAUSE};
use crate::events::{Envelope, LiveEvent};

impl DeliveryEngine {
    /// Writes waiting outcomes; on a database error they stay waiting and are tried again.
    pub(super) async fn flush(&self, pending: &mut Vec<Outcome>) {
        if let Err(err) = self.record(pending).await {
            tracing::warn!(error = %err, waiting = pending.len(), "recording outcomes failed; will retry");
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }

    /// Records outcomes (emptying `pending` once they are written) and tells the owners.
    pub(super) async fn record(&self, pending: &mut Vec<Outcome>) -> borcelle_store::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let progress = messages::record(&self.db, pending).await?;
        pending.clear();
        for task in progress {
            self.announce(task).await;
        }
        Ok(())
    }

    /// Tells the owner: a progress event, and on completion a stored notification.
    async fn announce(&self, task: TaskProgress) {
        self.events.publish(Envelope::to_user(task.owner_id, &LiveEvent::task_progress(&task))).await;
        if !task.just_finished {
            return;
        }
        if matches!(task.kind.as_str(), "reminder" | "broadcast")
            && let Err(err) = borcelle_store::occurrences::finish_for_task(&self.db, task.task_id).await
        {
            tracing::error!(error = %err, task = %task.task_id, "marking the occurrence finished failed");
        }
        let (title, body) = completion_text(&task);
        let data = serde_json::json!({ "task_id": task.task_id, "sent": task.sent, "failed": task.failed, "total": task.total });
        let owner = Owner::new(task.owner_id);
        match notifications::insert(&self.db, owner, "task_done", &title, &body, &data).await {
            Ok(notification) => {
                let event = LiveEvent::notification(notification);
                self.events.publish(Envelope::to_user(task.owner_id, &event)).await;
            }
            Err(err) => {
                tracing::error!(error = %err, task = %task.task_id, "storing the completion notification failed")
            }
        }
    }
}

/// "Note sent to 998 of 1000 contacts; 2 failed", and a second line naming the subject.
pub fn completion_text(task: &TaskProgress) -> (String, String) {
    let what = match task.kind.as_str() {
        "note" => "Note",
        "reminder" => "Reminder",
        "broadcast" => "Broadcast",
        _ => "Message",
    };
    let contacts = |n: i32| if n == 1 { "contact".to_owned() } else { "contacts".to_owned() };
    let title = if task.failed == 0 {
        format!("{what} sent to {} {}", task.sent, contacts(task.sent))
    } else {
        format!("{what} sent to {} of {} {}; {} failed", task.sent, task.total, contacts(task.total), task.failed)
    };
    (title, format!("“{}”", task.subject))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn progress(sent: i32, failed: i32, total: i32) -> TaskProgress {
        TaskProgress {
            task_id: Uuid::nil(),
            owner_id: Uuid::nil(),
            kind: "note".into(),
            subject: "Q3 update".into(),
            sent,
            failed,
            total,
            status: "done".into(),
            just_finished: true,
        }
    }

    #[test]
    fn completion_says_how_many_were_sent_and_failed() {
        assert_eq!(completion_text(&progress(998, 2, 1000)).0, "Note sent to 998 of 1000 contacts; 2 failed");
        assert_eq!(completion_text(&progress(1, 0, 1)).0, "Note sent to 1 contact");
        assert_eq!(completion_text(&progress(50, 0, 50)).1, "“Q3 update”");
    }
}
