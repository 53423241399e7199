//! A load benchmark of the real `borcelle serve` release binary, run as a child process on a
//! fresh database: contact create and list throughput, autocomplete latency on 100,000 contacts,
//! end-to-end delivery against a raw SMTP baseline, and the server's peak memory. It prints one
//! table and writes it, with the conditions it ran under, to `BENCHMARKS.md`.
//!
//! Not a test: `scripts/bench` builds and runs it; `cargo test` runs nothing from it.

pub mod cli;
pub mod conditions;
pub mod delivery;
pub mod fanout;
pub mod load;
pub mod probe;
pub mod report;
pub mod seed;
pub mod server;
pub mod sink;
pub mod soak;
pub mod soak_load;
pub mod workloads;
