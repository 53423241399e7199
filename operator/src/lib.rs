//! The Borcelle operator: reconciles `ScheduledReminder` and `Broadcast` resources into batch/v1
//! Jobs that run `borcelle worker occurrence`, with the CronJob semantics of `borcelle_crds::decide`.
//!
//! [`reconcile`] holds the per-object logic (testable against a mock API server), [`leader`] the
//! Lease-based leader election, [`run`] wires controllers, election and shutdown, [`server`] serves
//! health and metrics. `main.rs` only parses arguments and calls them.

pub mod backoff;
pub mod cache;
pub mod context;
pub mod error;
pub mod job;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod run;
pub mod server;
pub mod time;
pub mod webhook;

pub use context::{Clock, Context, JobSettings};
pub use error::Error;
pub use kinds::{Kind, Occurring};
pub use reconcile::{error_policy, reconcile};

/// The field manager of every write, and the reporting controller of events.
pub const FIELD_MANAGER: &str = "borcelle-operator";
