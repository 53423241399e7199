//! The `borcelle` binary.

/// mimalloc instead of glibc's malloc: the server allocates many small, short-lived buffers per request from
/// several threads, where glibc's arenas cost measurably more (contact list on this 2-core machine: 4,145 against
/// 3,578 requests/s over 4 interleaved runs each; later 5,025 and 4,533 against 4,650 and 3,847). It also keeps
/// less: the 10-minute soak ran at 50 MiB instead of 84 (BENCHMARKS-scale.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    borcelle::cli::main()
}
