//! The `petrel` command; everything lives in the library.

// mimalloc instead of glibc's malloc: the daemon allocates and frees small
// objects on every worker thread (sessions, Lua events, log records), where
// glibc's arenas cost about a tenth of its CPU (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    petrel::cli::main()
}
