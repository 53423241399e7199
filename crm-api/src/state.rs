//! What every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::events::EventBus;
use crate::mail::{MailError, Mailer, OutgoingEmail};
use crate::metrics::Metrics;
use crate::storage::Store;

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    /// Connections for pages of contacts, the busiest read (see [`crate::db::lane`]).
    pub contact_pages: Arc<crate::db::lane::Lane>,
    pub settings: Arc<Settings>,
    pub mailer: Mailer,
    pub metrics: Arc<Metrics>,
    /// Background work that shutdown waits for.
    pub tasks: TaskTracker,
    /// Live events to connected pages (in-process, or across processes over Redis).
    pub events: EventBus,
    /// Wakes this process's delivery engine when a send is queued.
    pub wake_delivery: Arc<tokio::sync::Notify>,
    /// Wakes this process's scheduler when a reminder or broadcast is created or changed.
    pub wake_scheduler: Arc<tokio::sync::Notify>,
    /// Keeps attachment bytes (a local directory or S3).
    pub store: Store,
    /// With `BORCELLE_SCHEDULER=kubernetes`: the cluster that keeps reminders and broadcasts.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Answers 503 at once while the database is down (see [`crate::http::db_gate`]).
    pub db_gate: Arc<crate::http::db_gate::DbGate>,
}

/// How often an account email is tried before it is given up (with 1 s, 4 s, 16 s pauses).
const MAIL_ATTEMPTS: u32 = 4;

impl AppState {
    /// Sends an account email in the background, retrying transient failures, so that the answer
    /// to the request neither waits for the mail server nor reveals by its timing what it sent.
    pub fn send_in_background(&self, email: OutgoingEmail) {
        let mailer = self.mailer.clone();
        let metrics = self.metrics.clone();
        self.tasks.spawn(async move {
            let mut pause = Duration::from_secs(1);
            for attempt in 1..=MAIL_ATTEMPTS {
                match mailer.send(&email).await {
                    Ok(delivery) => {
                        metrics.mail_sent(mailer.name(), "sent");
                        tracing::info!(message_id = %email.message_id, provider_id = %delivery.provider_id, "account email sent");
                        return;
                    }
                    Err(err @ MailError::Transient(_)) if attempt < MAIL_ATTEMPTS => {
                        metrics.mail_sent(mailer.name(), "retrying");
                        tracing::warn!(message_id = %email.message_id, attempt, error = %err, "account email will be retried");
                        tokio::time::sleep(pause).await;
                        pause *= 4;
                    }
                    Err(err) => {
                        metrics.mail_sent(mailer.name(), "failed");
                        tracing::error!(message_id = %email.message_id, attempt, error = %err, "account email failed");
                        return;
                    }
                }
            }
        });
    }
}
