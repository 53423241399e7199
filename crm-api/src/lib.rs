//! Borcelle's CRM server: web pages, the JSON API, mail transports and account management.
//!
//! `main.rs` only parses the command line ([`cli`]); everything else receives typed [`config::Settings`].

pub mod attachments;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod contacts;
pub mod contacts_csv;
pub mod db;
pub mod delivery;
pub mod error;
pub mod events;
pub mod http;
pub mod mail;
pub mod messaging;
pub mod metrics;
pub mod occurrence;
pub mod rfc3339;
pub mod scheduler;
pub mod schedules;
pub mod startup;
pub mod state;
pub mod storage;
