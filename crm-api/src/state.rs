//! What every request handler shares: the services of the engine, each with only what it needs,
//! and the web layer's own parts.

use std::sync::Arc;

use borcelle_engine::accounts::Accounts;
use borcelle_engine::events::EventBus;
use borcelle_engine::messaging::Messaging;
use borcelle_engine::schedules::Schedules;
use borcelle_engine::storage::Store;
use borcelle_store::PgPool;
use borcelle_store::lane::Lane;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::http::db_gate::DbGate;
use crate::metrics::Metrics;

/// Cloned for every layer and handler of every request: one shared allocation, so that a clone
/// is one reference count rather than one per part (a page of contacts spent 3 % of serve's CPU
/// cloning and dropping the parts one by one).
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Parts {
    pub db: PgPool,
    /// Connections for pages of contacts and autocomplete, the busiest reads (see
    /// [`borcelle_store::lane`]).
    pub contact_pages: Arc<Lane>,
    pub settings: Arc<Settings>,
    /// Registration, sessions, passwords, API tokens.
    pub accounts: Accounts,
    /// Queues sends to contacts.
    pub messaging: Messaging,
    /// Reminders and broadcasts, in PostgreSQL or in the cluster.
    pub schedules: Schedules,
    /// Live events to connected pages (in-process, or across processes over Redis).
    pub events: EventBus,
    /// Keeps attachment bytes (a local directory or S3).
    pub store: Store,
    /// Wakes this process's delivery engine (retries queued by a request).
    pub wake_delivery: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Background work that shutdown waits for (uploads being stored, account emails).
    pub tasks: TaskTracker,
    /// Answers 503 at once while the database is down (see [`crate::http::db_gate`]).
    pub db_gate: Arc<DbGate>,
    /// The web's requests in flight: this process's delivery engine yields while there are many.
    pub web_load: Arc<borcelle_engine::delivery::web::WebLoad>,
    /// Checks the unsubscribe links mail carries.
    pub unsubscribe_links: borcelle_engine::consent::UnsubscribeLinks,
    /// The owners' suppression lists.
    pub suppressions: borcelle_engine::consent::Suppressions,
    /// Files inbound mail (from MailJet's Parse webhook here; the SMTP receiver has its own), when
    /// inbound mail is configured.
    pub inbox: Option<borcelle_engine::inbound::Inbox>,
}
