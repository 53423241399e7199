//! Recording send outcomes in batches and telling the owners: progress events for the tasks that
//! moved (a few a second per task at most, [`ProgressThrottle`]), and when a task is done, its
//! occurrence marked finished and a stored notification.

use std::collections::HashMap;
use std::time::Duration;

use borcelle_store::messages::{self, Outcome, TaskProgress};
use borcelle_store::{Owner, PgConnection, notifications};
use tokio::time::Instant;
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

/// At most one progress event per task this often while it runs; its completion is told at once.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Coalesces progress events: a batch of outcomes is written every few milliseconds at full
/// speed, and each would otherwise send every owner's socket an event. A task's progress goes
/// out at most every [`PROGRESS_EVERY`]; what comes in between waits, replaced by newer counters,
/// and goes out when its time comes. A task's last progress (done) is never held back.
#[derive(Default)]
pub(super) struct ProgressThrottle {
    /// When each running task's progress last went out.
    told: HashMap<Uuid, Instant>,
    /// The newest progress not told yet, per task.
    waiting: HashMap<Uuid, TaskProgress>,
}

impl ProgressThrottle {
    /// Whether this progress goes out now (else it waits for [`due`](Self::due)).
    pub(super) fn offer(&mut self, task: TaskProgress, now: Instant) -> Option<TaskProgress> {
        if task.status == "done" {
            self.told.remove(&task.task_id);
            self.waiting.remove(&task.task_id);
            return Some(task);
        }
        match self.told.get(&task.task_id) {
            Some(told) if now.duration_since(*told) < PROGRESS_EVERY => {
                self.waiting.insert(task.task_id, task);
                None
            }
            _ => {
                self.told.insert(task.task_id, now);
                self.waiting.remove(&task.task_id);
                Some(task)
            }
        }
    }

    /// When the earliest waiting progress is due.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.waiting.keys().filter_map(|id| self.told.get(id)).min().map(|told| *told + PROGRESS_EVERY)
    }

    /// The waiting progress whose time has come; forgets tasks quiet for a while.
    pub(super) fn due(&mut self, now: Instant) -> Vec<TaskProgress> {
        let ready: Vec<Uuid> = self
            .waiting
            .keys()
            .filter(|id| self.told.get(id).is_none_or(|told| now.duration_since(*told) >= PROGRESS_EVERY))
            .copied()
            .collect();
        let mut out = Vec::with_capacity(ready.len());
        for id in ready {
            if let Some(task) = self.waiting.remove(&id) {
                self.told.insert(id, now);
                out.push(task);
            }
        }
        self.told.retain(|id, told| self.waiting.contains_key(id) || now.duration_since(*told) < PROGRESS_EVERY * 4);
        out
    }

    /// Everything waiting (the engine stops, or a test's batch ends).
    pub(super) fn drain(&mut self) -> Vec<TaskProgress> {
        self.told.clear();
        self.waiting.drain().map(|(_, task)| task).collect()
    }
}

impl DeliveryEngine {
    /// Writes waiting outcomes; on a database error they stay waiting and are tried again.
    pub(super) async fn flush(&self, pending: &mut Vec<Outcome>, progress: &mut ProgressThrottle) {
        if let Err(err) = self.record(pending, progress).await {
            tracing::warn!(error = %err, waiting = pending.len(), "recording outcomes failed; will retry");
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }

    /// Records outcomes (emptying `pending` once they are written) and tells the owners: progress
    /// through the throttle, completion at once.
    pub(super) async fn record(
        &self,
        pending: &mut Vec<Outcome>,
        progress: &mut ProgressThrottle,
    ) -> borcelle_store::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let moved = messages::record(&self.db, pending).await?;
        pending.clear();
        let now = Instant::now();
        for task in moved {
            let just_finished = task.just_finished;
            if let Some(task) = progress.offer(task, now) {
                self.publish_progress(&task).await;
                if just_finished {
                    self.finish(&task).await;
                }
            }
        }
        Ok(())
    }

    /// A task's progress event to its owner.
    pub(super) async fn publish_progress(&self, task: &TaskProgress) {
        self.events.publish(Envelope::to_user(task.owner_id, &LiveEvent::task_progress(task))).await;
    }

    /// A task just finished: its occurrence (reminders, broadcasts) and a stored notification.
    async fn finish(&self, task: &TaskProgress) {
        if matches!(task.kind.as_str(), "reminder" | "broadcast")
            && let Err(err) = borcelle_store::occurrences::finish_for_task(&self.db, task.task_id).await
        {
            tracing::error!(error = %err, task = %task.task_id, "marking the occurrence finished failed");
        }
        let (title, body) = completion_text(task);
        let data = completion_data(task);
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
    fn progress_goes_out_a_few_times_a_second_with_the_newest_counters_and_completion_at_once() {
        let mut throttle = ProgressThrottle::default();
        let start = Instant::now();
        let running =
            |sent: i32| TaskProgress { status: "running".into(), just_finished: false, ..progress(sent, 0, 1000) };
        // 100 batches written within 100 ms: the first goes out, the rest wait as one.
        let told: Vec<i32> = (1..=100)
            .filter_map(|i| throttle.offer(running(i), start + Duration::from_millis(i as u64)))
            .map(|task| task.sent)
            .collect();
        assert_eq!(told, [1]);
        assert_eq!(throttle.next_due(), Some(start + Duration::from_millis(1) + PROGRESS_EVERY));
        assert!(throttle.due(start + Duration::from_millis(200)).is_empty(), "not yet");
        let due: Vec<i32> = throttle.due(start + Duration::from_millis(251)).iter().map(|t| t.sent).collect();
        assert_eq!(due, [100], "the newest counters");
        assert_eq!(throttle.next_due(), None);
        // Held back again, then the task finishes: completion is told at once and nothing waits.
        assert!(throttle.offer(running(500), start + Duration::from_millis(300)).is_none());
        let done = throttle.offer(progress(1000, 0, 1000), start + Duration::from_millis(301));
        assert_eq!(done.map(|t| t.sent), Some(1000));
        assert!(throttle.drain().is_empty(), "the held-back 500 is not told after completion");
        // Another task is not held back by the first.
        let other = TaskProgress { task_id: Uuid::from_u128(7), ..running(1) };
        assert!(throttle.offer(other, start + Duration::from_millis(302)).is_some());
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
