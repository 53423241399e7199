//! The in-process scheduler of standalone mode: drives the reminders and broadcasts stored in
//! PostgreSQL with the same decision functions the operator uses (`borcelle_crds::decide`), and
//! runs each due occurrence with [`crate::occurrence::start`], in the transaction that records the
//! decision. What the status then says comes from `borcelle_crds::status`, as in the operator.
//!
//! Any number of `serve` processes may run it against one database: a due schedule is locked
//! with `FOR UPDATE SKIP LOCKED`, and the occurrence row (unique on schedule and time) makes a
//! second start of one occurrence a no-op, across restarts too.

use std::sync::Arc;
use std::time::Duration;

mod process;
mod status;

use borcelle_store::PgPool;
use borcelle_store::schedules;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::EventBus;
pub use status::{first_due, status_view, timing_of};

/// Batches handled at once (each its own transaction over disjoint schedules).
const CONCURRENCY: usize = 4;
/// Due schedules locked and started per transaction.
const BATCH: i64 = 250;
/// Longest sleep between passes (a schedule created by another process wakes nobody here).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Pause after a database error.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What the scheduler needs.
#[derive(Clone)]
pub struct Scheduler {
    pub db: PgPool,
    pub events: EventBus,
    /// Woken when a schedule is created or changed in this process.
    pub wake: Arc<Notify>,
    /// This process's delivery engine, woken when an occurrence queues emails.
    pub wake_delivery: Arc<Notify>,
    /// Domain of the Message-IDs.
    pub message_id_domain: String,
    pub attachments_max_bytes: u64,
}

impl Scheduler {
    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!("scheduler started");
        loop {
            let now = Utc::now();
            // Several transactions drain the due schedules in parallel, each locking its own batch.
            let this = &self;
            let passes = futures::stream::iter(0..CONCURRENCY)
                .map(|_| async move {
                    loop {
                        match this.tick_batch(now, BATCH).await {
                            Ok(n) if n as i64 == BATCH => continue,
                            Ok(_) => return Ok(()),
                            Err(err) => return Err(err),
                        }
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<borcelle_store::Result<()>>>()
                .await;
            let sleep = if let Some(Err(err)) = passes.iter().find(|r| r.is_err()) {
                tracing::warn!(error = %err, "scheduling failed; retrying");
                ERROR_PAUSE
            } else {
                self.until_next_due().await
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    async fn until_next_due(&self) -> Duration {
        match schedules::next_due(&self.db).await {
            Ok(Some(next)) => (next - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(MAX_IDLE),
            Ok(None) => MAX_IDLE,
            Err(_) => ERROR_PAUSE,
        }
    }

    /// Decides for up to `limit` due schedules and acts, in one transaction; returns how many
    /// it handled.
    pub async fn tick_batch(&self, now: DateTime<Utc>, limit: i64) -> borcelle_store::Result<usize> {
        let mut tx = self.db.begin().await?;
        let rows = schedules::lock_due_batch(&mut tx, now, limit).await?;
        let n = rows.len();
        if n > 0 {
            self.process(tx, rows, now).await?;
        }
        Ok(n)
    }

    /// Decides for one schedule (if due at `now`) and acts.
    pub async fn tick(&self, id: Uuid, now: DateTime<Utc>) -> borcelle_store::Result<()> {
        let mut tx = self.db.begin().await?;
        let Some(row) = schedules::lock_due(&mut tx, id, now).await? else {
            return Ok(());
        };
        self.process(tx, vec![row], now).await
    }

    /// Handles every schedule due at `now`, batch after batch, and returns how many: what tests
    /// call instead of waiting for the loop (time is theirs to choose).
    pub async fn run_due(&self, now: DateTime<Utc>) -> borcelle_store::Result<usize> {
        let mut handled = 0;
        loop {
            let n = self.tick_batch(now, BATCH).await?;
            handled += n;
            if (n as i64) < BATCH {
                return Ok(handled);
            }
        }
    }
}
