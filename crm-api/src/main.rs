//! The `borcelle` binary.

/// mimalloc instead of glibc's malloc: the server allocates many small, short-lived buffers per request from
/// several threads, where glibc's arenas cost measurably more (contact list, 4 interleaved runs each on this
/// 2-core machine: 4,145 against 3,578 requests/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    borcelle::cli::main()
}
