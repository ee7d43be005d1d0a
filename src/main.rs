//! Thin entry point: everything lives in the library so tests and benches can drive it.
fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    mongolake::cli::main()
}

/// glibc gives threads up to 8 malloc arenas per core, and memory freed in one arena is not reused by another:
/// with encoding on tokio's blocking threads, a run spilling within a 32 MB budget peaked at 236 MB, against
/// 105 MB with 4 arenas (2 per core); the full-load benchmark's peak fell by a fifth at the same speed.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, (2 * cores).min(64) as libc::c_int);
        }
    }
}
