//! `soak`: ten minutes of mixed load against one `borcelle serve`, watching its memory; see
//! `scripts/soak`.

fn main() -> std::process::ExitCode {
    borcelle_bench::soak::main()
}
