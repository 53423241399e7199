//! A load benchmark of the real `borcelle serve` release binary, run as a child process on a
//! fresh database: contact create and list throughput, autocomplete latency on 100,000 contacts,
//! end-to-end delivery against a raw SMTP baseline, delivery with personalisation, suppression
//! checks and DKIM against without, inbound replies accepted per second by serve's SMTP receiver
//! and their time to the owner's socket, and the server's peak memory. It prints one
//! table and writes it, with the conditions it ran under, to `BENCHMARKS.md`.
//!
//! Not a test: `scripts/bench` builds and runs it; `cargo test` runs nothing from it.

pub mod cli;
pub mod conditions;
pub mod consent;
pub mod delivery;
pub mod during_send;
pub mod fanout;
pub mod inbound;
pub mod load;
pub mod pgbench;
pub mod probe;
pub mod report;
pub mod seed;
pub mod server;
pub mod sink;
pub mod soak;
pub mod soak_load;
pub mod wire;
pub mod workloads;

use std::future::Future;
use std::process::ExitCode;

/// Runs a benchmark on a multi-threaded runtime and turns its outcome into the exit code: 0 when every target was
/// met, 3 when one was missed, 1 when the run itself failed (with the error on stderr).
pub fn run_to_exit(run: impl Future<Output = anyhow::Result<bool>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
