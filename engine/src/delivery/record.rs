//! Recording send outcomes in batches and telling the owners: a progress event for each task that
//! moved, and when a task is done, its occurrence marked finished and a stored notification.

use borcelle_store::messages::{self, Outcome, TaskProgress};
use borcelle_store::{Owner, PgConnection, notifications};
use uuid::Uuid;

use super::{DeliveryEngine, ERROR_PAUSE};
use crate::events::{Envelope, LiveEvent};

/// Completes the tasks among `ids` that were done as soon as they were written (every recipient
/// suppressed), in the caller's transaction: their occurrences finish and their owners get the
/// completion notification. Returns the events to publish once the transaction commits, each
/// with its task's id.
pub async fn finished_at_once(tx: &mut PgConnection, ids: &[Uuid]) -> borcelle_store::Result<Vec<(Uuid, Envelope)>> {
    let mut events = Vec::new();
    for task in borcelle_store::tasks::done_among(tx, ids).await? {
        if matches!(task.kind.as_str(), "reminder" | "broadcast") {
            borcelle_store::occurrences::finish_for_task(&mut *tx, task.task_id).await?;
        }
        let (title, body) = completion_text(&task);
        let notification = notifications::insert(
            &mut *tx,
            Owner::new(task.owner_id),
            "task_done",
            &title,
            &body,
            &completion_data(&task),
        )
        .await?;
        events.push((task.task_id, Envelope::to_user(task.owner_id, &LiveEvent::task_progress(&task))));
        events.push((task.task_id, Envelope::to_user(task.owner_id, &LiveEvent::notification(notification))));
    }
    Ok(events)
}

fn completion_data(task: &TaskProgress) -> serde_json::Value {
    serde_json::json!({ "task_id": task.task_id, "sent": task.sent, "failed": task.failed,
        "suppressed": task.suppressed, "total": task.total })
}

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
        let data = completion_data(&task);
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

/// "Note sent to 950 of 1,000 contacts; 40 suppressed; 10 failed", and a second line naming the
/// subject.
pub fn completion_text(task: &TaskProgress) -> (String, String) {
    let what = match task.kind.as_str() {
        "note" => "Note",
        "reminder" => "Reminder",
        "broadcast" => "Broadcast",
        _ => "Message",
    };
    let contacts = |n: i32| if n == 1 { "contact" } else { "contacts" };
    let mut title = if task.failed == 0 && task.suppressed == 0 {
        format!("{what} sent to {} {}", thousands(task.sent), contacts(task.sent))
    } else {
        format!("{what} sent to {} of {} {}", thousands(task.sent), thousands(task.total), contacts(task.total))
    };
    if task.suppressed > 0 {
        title.push_str(&format!("; {} suppressed", thousands(task.suppressed)));
    }
    if task.failed > 0 {
        title.push_str(&format!("; {} failed", thousands(task.failed)));
    }
    (title, format!("“{}”", task.subject))
}

/// 1234567 → "1,234,567".
fn thousands(n: i32) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn progress(sent: i32, failed: i32, total: i32) -> TaskProgress {
        progress_with(sent, failed, 0, total)
    }

    fn progress_with(sent: i32, failed: i32, suppressed: i32, total: i32) -> TaskProgress {
        TaskProgress {
            task_id: Uuid::nil(),
            owner_id: Uuid::nil(),
            kind: "note".into(),
            subject: "Q3 update".into(),
            sent,
            failed,
            suppressed,
            total,
            status: "done".into(),
            just_finished: true,
        }
    }

    #[test]
    fn completion_says_how_many_were_sent_and_failed() {
        assert_eq!(completion_text(&progress(998, 2, 1000)).0, "Note sent to 998 of 1,000 contacts; 2 failed");
        assert_eq!(
            completion_text(&progress_with(950, 10, 40, 1000)).0,
            "Note sent to 950 of 1,000 contacts; 40 suppressed; 10 failed"
        );
        assert_eq!(completion_text(&progress_with(0, 0, 1, 1)).0, "Note sent to 0 of 1 contact; 1 suppressed");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(completion_text(&progress(1, 0, 1)).0, "Note sent to 1 contact");
        assert_eq!(completion_text(&progress(50, 0, 50)).1, "“Q3 update”");
    }
}
