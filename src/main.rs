//! Thin entry point: everything lives in the library so tests and benches can drive it.

/// mimalloc instead of glibc's malloc. A night of small partitions allocates and frees a writer's worth of
/// buffers per file on several threads: with glibc, malloc, free and their consolidation took about a quarter of
/// the client's CPU in a `perf record` of a 1,429-file load with the lake on tmpfs, and mimalloc's per-thread heaps
/// cut that load's user CPU by about a third (see the README's Measured section). Built with `no_thp`: with
/// transparent huge pages (this machine's `madvise` mode) the same load peaked at 200 MB instead of 45 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mongolake::sync::tune_allocator();
    mongolake::cli::main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_whose_default_is_a_second() {
        // (mimalloc v3's default purge delay is 1000 ms; another option at that index would not have it)
        // SAFETY: reads an allocator option.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(mongolake::sync::PURGE_DELAY_OPTION) }, 1000);
    }
}
