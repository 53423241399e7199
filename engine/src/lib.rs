//! What Borcelle does, without HTTP: the rules of accounts, contacts and sends, the delivery engine
//! that works the ledger, live events, attachment storage, and the occurrences of reminders and
//! broadcasts with the in-process scheduler and the two places schedules are kept (PostgreSQL
//! standalone, the cluster's custom resources with the operator).
//!
//! Below it are `borcelle-store` (SQL) and `borcelle-mail` (transports and templates); above it
//! the web crate, which turns [`Error`] into HTTP answers in one place.

pub mod accounts;
pub mod attachments;
pub mod consent;
pub mod contacts;
pub mod delivery;
mod error;
pub mod events;
pub mod feedback;
pub mod inbound;
pub mod input;
pub mod messaging;
pub mod metrics;
pub mod occurrence;
pub mod scheduler;
pub mod schedules;
pub mod settings;
pub mod storage;
pub mod validate;

pub use error::{BoxError, Error, Result, SetupError};
