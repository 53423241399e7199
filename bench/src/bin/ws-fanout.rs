//! `ws-fanout`: N authenticated WebSockets on one `borcelle serve`, broadcast delivery latency to every one of them,
//! memory per idle connection, and the slow-consumer drill. See `borcelle_bench::fanout`.
//!
//! `scripts/bench-ws [--connections 10000 …]` builds the release binaries and runs it.

use std::process::ExitCode;

use borcelle_bench::fanout::{self, Args};
use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let output = args.output.clone();
    let report = match fanout::run(args).await {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let section = report.markdown().await;
    println!("\n{section}");
    if let Err(err) = fanout::write_section(&output, &section) {
        eprintln!("error: writing {}: {err}", output.display());
        return ExitCode::FAILURE;
    }
    println!("written to {}", output.display());
    if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
