//! Failure drills of `borcelle` (issues #7, #15 and #17): each kills or stops a part the product
//! depends on while it works (Redis, PostgreSQL, the SMTP server, a worker, `serve` itself, the
//! inbound SMTP receiver in the middle of 1,000 replies), prints what it did and what it saw, and
//! asserts that nothing is lost; the SMTP outage and the worker kills happen while the engine sends
//! at full rate, and the SMTP server's count of what it accepted is held against the ledger's.
//! `cargo test` runs them at a tenth of their size
//! (`BORCELLE_DRILL_SCALE=0.1`); `scripts/drills` runs them at full size with their output shown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness fails loudly by design

#[allow(dead_code, unused_imports)] // the API tests' harness; the drills use part of it
#[path = "../api/helpers/mod.rs"]
mod helpers;

mod harness;
mod sink;

mod inbound_sigkill;
mod postgres_restart;
mod redis_outage;
mod serve_sigterm;
mod smtp_outage;
mod worker_sigkill;
