//! The `borcelle` binary.

fn main() -> std::process::ExitCode {
    borcelle::cli::main()
}
