//! The run's memory budget, shared by every collection syncing at once; see [`MemoryBudget`].
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The run's memory budget (`[sync] memory_budget_mb`), shared by every collection syncing at once.
///
/// Three eighths of it cap the buffered documents and their row metadata (past it, the pushing collection
/// spills both). Three eighths are for what cannot spill: the key index segments a run over an existing lake
/// holds (about [`INDEX_BYTES_PER_KEY`] per key: one segment and the new files being filled, or the whole index
/// when it is one file of an older version or was rebuilt) and, for a first load, one run of the external sort of row keys
/// ([`MemoryBudget::sort_run_entries`]). A collection reserves its share of those before it reads
/// ([`MemoryBudget::reserve`]); when the share is not free it waits for other collections to finish, so several
/// collections with million-key indexes take turns instead of holding them at once. A collection alone always
/// runs, whatever its index. The last quarter is headroom for the process itself, batches in flight and the
/// partitions being written: a partition's write holds its rows (with the dedup's candidates and map, about
/// [`WRITE_BYTES_PER_ROW`] each) and its existing file decoded, so each write reserves that much of the quarter
/// ([`MemoryBudget::reserve_write`]) and large partitions take turns instead of being encoded side by side.
#[derive(Debug)]
pub struct MemoryBudget {
    pub(super) cap: u64,
    pub(super) used: AtomicU64,
    /// The metadata half, in KiB permits.
    metadata: Arc<tokio::sync::Semaphore>,
    metadata_kib: u32,
    /// The quarter for partitions being written, in KiB permits.
    writing: Arc<tokio::sync::Semaphore>,
    writing_kib: u32,
}

/// Bytes a partition's write holds per row: the row read back (about 100 B), its dedup candidate and map
/// entry, and its share of the Arrow batch and the encoder's pages. Measured on the 5M benchmark: two
/// pharmacy_stock partitions of 170,000 rows written side by side raised the peak by about 120 MB.
pub const WRITE_BYTES_PER_ROW: u64 = 350;

/// Bytes of memory a loaded key index holds per key (key and partition strings in Arrow arrays, and this run's
/// changes), measured.
pub const INDEX_BYTES_PER_KEY: u64 = 90;
/// Bytes an entry of the sort of row keys holds in memory (key, timestamp, read order, partition).
pub const SORT_ENTRY_BYTES: u64 = 128;

/// A collection whose share of the metadata half, or a partition write whose reservation, is at least this
/// much runs with memory returned to the OS at once ([`PromptReturn`]).
const PROMPT_RETURN_BYTES: u64 = 4 << 20;

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the Rust binding names no constant for it).
pub const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with mimalloc before it goes back to the OS, outside large writes.
pub const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets the allocator's purge delay for a run (the binary calls it first; `MIMALLOC_PURGE_DELAY=<ms>` in the
/// environment, which mimalloc reads itself, wins).
///
/// A night of small partitions frees and allocates a file's buffers thousands of times a second: handing each
/// freed page back to the OS at once, then faulting it in again, cost about 15% of a night's CPU, so freed
/// memory is kept for [`PURGE_DELAY_MS`]. Mimalloc's default second let tests/memory.rs's merge into a 120 MB
/// partition within a 32 MB budget peak at 146 MB (glibc: 99 MB); while large buffers are about
/// ([`PromptReturn`]) memory goes back at once.
pub fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an allocator option; any thread may, at any time.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS) };
    }
}

/// [`PromptReturn`]s held, and the purge delay to restore when the last is dropped.
static PROMPT: std::sync::Mutex<(usize, std::ffi::c_long)> = std::sync::Mutex::new((0, 0));

/// Held while a collection's key index is loaded (or rebuilt), while a large partition is written, and while a
/// collection with a large key index or sort runs ([`PROMPT_RETURN_BYTES`]): memory freed meanwhile goes back to the OS at once (a purge delay of 0), so that
/// what one large buffer frees does not count twice against the budget while the next is allocated
/// (tests/memory.rs's incremental run over random keys peaked at 71 MB on a 32 MB baseline with the 10 ms delay
/// throughout, over its budget). When the last holder ends, what is still freed is returned and the delay before
/// restored. (Without mimalloc as the global allocator, as in the library's own tests, this sets the options of
/// an unused heap.)
pub struct PromptReturn(());

impl PromptReturn {
    /// Held for a reservation of `bytes` when that is at least [`PROMPT_RETURN_BYTES`].
    pub fn if_large(bytes: u64) -> Option<PromptReturn> {
        (bytes >= PROMPT_RETURN_BYTES).then(PromptReturn::start)
    }

    pub fn start() -> PromptReturn {
        let mut g = PROMPT.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            // SAFETY: reads and sets an allocator option; any thread may, at any time.
            g.1 = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
            unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, 0) };
        }
        g.0 += 1;
        PromptReturn(())
    }
}

impl Drop for PromptReturn {
    fn drop(&mut self) {
        let mut g = PROMPT.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            // SAFETY: an allocator collection (this thread's retired pages, and every arena range freed and not
            // yet purged) and an option set; any thread may make them at any time.
            unsafe {
                libmimalloc_sys::mi_collect(true);
                libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, g.1);
            }
        }
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes: 3/8 for buffered documents, 3/8 for metadata, 1/4 headroom.
    pub fn new(total: u64) -> Arc<MemoryBudget> {
        let share = total / 8 * 3;
        let metadata_kib = (share / 1024).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        let writing_kib = (total / 4 / 1024).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Arc::new(MemoryBudget {
            cap: share,
            used: AtomicU64::new(0),
            metadata: Arc::new(tokio::sync::Semaphore::new(metadata_kib as usize)),
            metadata_kib,
            writing: Arc::new(tokio::sync::Semaphore::new(writing_kib as usize)),
            writing_kib,
        })
    }

    /// Entries of the external sort of row keys held in memory at once: a quarter of the metadata half.
    pub fn sort_run_entries(&self) -> usize {
        (u64::from(self.metadata_kib) * 1024 / 4 / SORT_ENTRY_BYTES).max(1024) as usize
    }

    /// The metadata a collection holds: its key index (`index_keys`, loaded in a run over an existing lake), or
    /// for a first load of about `documents`, one sort run at most.
    pub fn share_for(&self, index_keys: u64, documents: u64) -> u64 {
        if index_keys > 0 {
            index_keys * INDEX_BYTES_PER_KEY
        } else {
            documents.min(self.sort_run_entries() as u64) * SORT_ENTRY_BYTES
        }
    }

    /// Reserves `bytes` of the metadata half, waiting while other collections hold it; a request larger than
    /// the whole half waits for all of it (the collection then runs alone). Given back when dropped.
    pub async fn reserve(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(self.metadata_kib)) as u32;
        self.metadata.clone().acquire_many_owned(kib).await.expect("the semaphore is never closed")
    }

    /// Reserves `bytes` of the writing quarter for one partition's write, waiting while other writes hold it; a
    /// request larger than the quarter waits for all of it (the partition is then written alone).
    pub async fn reserve_write(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(self.writing_kib)) as u32;
        self.writing.clone().acquire_many_owned(kib).await.expect("the semaphore is never closed")
    }

    /// The largest existing partition file a merge reads whole (a sixteenth of the writing quarter: decoded, it
    /// takes about four times its size); a larger one is merged a row group at a time ([`super::merge_stream`]).
    pub fn whole_file_limit(&self) -> u64 {
        u64::from(self.writing_kib) * 1024 / 16
    }

    /// Whether a reservation of `bytes` would have to wait now.
    pub fn would_wait(&self, bytes: u64) -> bool {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(self.metadata_kib)) as usize;
        self.metadata.available_permits() < kib
    }

    /// Bytes buffered now, across collections.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn over(&self) -> bool {
        self.used() > self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_0_while_any_prompt_return_is_held_and_restored_after_the_last() {
        // SAFETY: reads and sets an allocator option (of mimalloc's heap, unused by this test binary).
        let delay = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, 7) };
        let a = PromptReturn::start();
        let b = PromptReturn::start();
        assert_eq!(delay(), 0);
        drop(a);
        assert_eq!(delay(), 0, "one is still held");
        drop(b);
        assert_eq!(delay(), 7);
    }

    #[tokio::test]
    async fn large_partition_writes_take_turns_and_one_larger_than_the_quarter_runs_alone() {
        let budget = MemoryBudget::new(4 << 20); // writing quarter: 1 MiB
        let a = budget.reserve_write(600 << 10).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve_write(600 << 10));
        assert!(waiting.await.is_err(), "a second 600 KiB write waits for the first");
        let small = budget.reserve_write(100 << 10).await; // fits beside it
        drop((a, small));
        let huge = budget.reserve_write(10 << 20).await; // clamped to the whole quarter
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), budget.reserve_write(1));
        assert!(waiting.await.is_err(), "nothing runs beside a write larger than the quarter");
        drop(huge);
        let _free = budget.reserve_write(1).await;
    }
}
