//! Thin entry point: everything lives in the library so tests and benches can drive it.

/// mimalloc instead of glibc's malloc. A night of small partitions allocates and frees a writer's worth of
/// buffers per file on several threads: with glibc, malloc, free and their consolidation took about a quarter of
/// the client's CPU in a `perf record` of a 1,429-file load with the lake on tmpfs, and mimalloc's per-thread heaps
/// cut that load's user CPU by about a third (see the README's Measured section). Built with `no_thp`: with
/// transparent huge pages (this machine's `madvise` mode) the same load peaked at 200 MB instead of 45 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the Rust binding names no constant for it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the OS at once rather than after mimalloc's default second: with the delay,
    // tests/memory.rs's merge into a 120 MB partition within a 32 MB budget peaked at 146 MB (glibc: 99 MB),
    // without it at 77 MB, and the 1,429-file load above spent no more CPU.
    // (`MIMALLOC_PURGE_DELAY=<ms>` in the environment, which mimalloc reads itself, is left to win)
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an allocator option; any thread may, at any time.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
    mongolake::cli::main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_whose_default_is_a_second() {
        // (mimalloc v3's default purge delay is 1000 ms; another option at that index would not have it)
        // SAFETY: reads an allocator option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) }, 1000);
    }
}
