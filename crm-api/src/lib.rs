//! Borcelle's web layer: the pages, the JSON API, the WebSocket and the operations endpoints
//! ([`http`]), and the `borcelle` binary's wiring ([`cli`] reads the command line and the
//! environment, [`startup`] builds and runs the processes).
//!
//! Everything the product does without HTTP lives below, in `borcelle-engine`; this crate turns
//! its errors into answers once ([`error::AppError`]). `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod startup;
pub mod state;
