//! The `borcelle-bench` binary: see `scripts/bench`.

fn main() -> std::process::ExitCode {
    borcelle_bench::cli::main()
}
