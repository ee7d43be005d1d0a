//! Raw documents buffered per partition between the read pass and the write pass.
//!
//! Documents are kept as their raw BSON bytes (no decoding), appended to fixed-size chunks per partition (a
//! growing `Vec` would copy its bytes on every doubling and hold up to twice what it stores; chunks waste at most
//! one partly filled chunk per partition). When the total passes the memory budget, every partition's bytes are
//! appended to its own spill file on local disk and the memory is released; the write pass reads a partition's
//! spill file back in one piece. Memory is thus bounded by the budget plus one partition's data at write time,
//! not by the collection size.
//!
//! The budget is the run's, shared by every collection syncing at once ([`MemoryBudget`]): buffered bytes count
//! from the moment they are buffered until their partition is written, and the collection that pushes the total
//! past the cap spills its own buffers.
use crate::{Error, FastMap, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The run's memory budget (`[sync] memory_budget_mb`), shared by every collection syncing at once.
///
/// Three eighths of it cap the buffered document bytes (past it, the pushing collection spills). Three eighths
/// are for what cannot spill: the per-document metadata (key, timestamp, place in the buffers: about
/// [`METADATA_BYTES_PER_DOC`] per document of a full load) and the key index. A collection reserves its share
/// of those from its estimated size before it reads ([`MemoryBudget::reserve`]); when the share is not free
/// it waits for other collections to finish, so several million-document collections take turns instead of
/// holding their metadata at once. A collection alone always runs, whatever its size. The last quarter is
/// headroom for the process itself, batches in flight and the partitions being encoded.
#[derive(Debug)]
pub struct MemoryBudget {
    cap: u64,
    used: AtomicU64,
    /// The metadata half, in KiB permits.
    metadata: Arc<tokio::sync::Semaphore>,
    metadata_kib: u32,
}

/// Bytes of memory a full load holds per document besides its raw bytes, measured: the row's place, key and
/// timestamp (about 100 B), the cross-partition dedup map (about 60 B) and the key index entry (about 90 B).
pub const METADATA_BYTES_PER_DOC: u64 = 256;

impl MemoryBudget {
    /// A budget of `total` bytes: 3/8 for buffered documents, 3/8 for metadata, 1/4 headroom.
    pub fn new(total: u64) -> Arc<MemoryBudget> {
        let share = total / 8 * 3;
        let metadata_kib = (share / 1024).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        Arc::new(MemoryBudget {
            cap: share,
            used: AtomicU64::new(0),
            metadata: Arc::new(tokio::sync::Semaphore::new(metadata_kib as usize)),
            metadata_kib,
        })
    }

    /// Reserves `bytes` of the metadata half, waiting while other collections hold it; a request larger than
    /// the whole half waits for all of it (the collection then runs alone). Given back when dropped.
    pub async fn reserve(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let kib = bytes.div_ceil(1024).clamp(1, u64::from(self.metadata_kib)) as u32;
        self.metadata.clone().acquire_many_owned(kib).await.expect("the semaphore is never closed")
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

    fn over(&self) -> bool {
        self.used() > self.cap
    }
}

/// Bytes a partition holds against the budget, given back when it is dropped (written, or the run failed).
#[derive(Debug, Default)]
struct Charge {
    budget: Option<Arc<MemoryBudget>>,
    bytes: u64,
}

impl Charge {
    fn add(&mut self, budget: &Arc<MemoryBudget>, n: u64) {
        budget.used.fetch_add(n, Ordering::Relaxed);
        self.budget.get_or_insert_with(|| budget.clone());
        self.bytes += n;
    }

    fn release(&mut self) {
        if let Some(b) = &self.budget {
            b.used.fetch_sub(self.bytes, Ordering::Relaxed);
        }
        self.bytes = 0;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.release();
    }
}

/// Where one buffered document sits, and what dedup needs to know about it.
#[derive(Debug, Clone)]
pub struct RowMeta {
    pub offset: u64,
    pub len: u32,
    pub key: String,
    pub timestamp: Option<i64>,
    pub seq: u64,
}

/// Size of a buffer chunk; a document larger than this gets a chunk of its own.
const CHUNK: usize = 64 * 1024;

/// One partition's documents.
#[derive(Debug, Default)]
pub struct Part {
    /// In-memory chunks, each with the partition offset of its first byte; a document never straddles two.
    chunks: Vec<(u64, Vec<u8>)>,
    /// Bytes in memory (sum of the chunks' lengths).
    in_memory: u64,
    spilled: u64,
    spill: Option<PathBuf>,
    charge: Charge,
    pub rows: Vec<RowMeta>,
}

impl Part {
    /// Partition offset of the next byte.
    fn end(&self) -> u64 {
        self.spilled + self.in_memory
    }

    fn push(&mut self, raw: &[u8]) -> u64 {
        let offset = self.end();
        let fits = self.chunks.last().is_some_and(|(_, c)| c.capacity() - c.len() >= raw.len());
        if !fits {
            self.chunks.push((offset, Vec::with_capacity(CHUNK.max(raw.len()))));
        }
        self.chunks.last_mut().expect("just ensured").1.extend_from_slice(raw);
        self.in_memory += raw.len() as u64;
        offset
    }

    /// The partition's raw bytes: its chunks in memory, and its spill file (if any) opened for reading.
    pub fn into_bytes(self) -> Result<(PartBytes, Vec<RowMeta>)> {
        let spill = match &self.spill {
            Some(p) => Some((
                std::fs::File::open(p).map_err(|e| Error::io(format!("opening spill file {}", p.display()), e))?,
                p.clone(),
            )),
            None => None,
        };
        Ok((PartBytes { spill, spilled: self.spilled, chunks: self.chunks, _charge: self.charge }, self.rows))
    }
}

/// A partition's buffered bytes for the write pass: [`PartBytes::doc`] finds a row's document.
pub struct PartBytes {
    /// Spilled documents are read one at a time (from the page cache, as a rule), so a partition of any size
    /// costs one document's memory here.
    spill: Option<(std::fs::File, PathBuf)>,
    spilled: u64,
    chunks: Vec<(u64, Vec<u8>)>,
    /// The chunks count against the budget until this is dropped.
    _charge: Charge,
}

impl PartBytes {
    /// The raw bytes of `row`: borrowed from memory, or read from the spill file into `scratch`.
    pub fn doc<'a>(&'a self, row: &RowMeta, scratch: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        let (start, len) = (row.offset, row.len as usize);
        let outside =
            || Error::io("reading a buffered document", std::io::Error::other("offset outside its partition"));
        if start < self.spilled {
            let (file, path) = self.spill.as_ref().ok_or_else(outside)?;
            scratch.resize(len, 0);
            std::os::unix::fs::FileExt::read_exact_at(file, scratch, start)
                .map_err(|e| Error::io(format!("reading spill file {}", path.display()), e))?;
            return Ok(scratch);
        }
        let i = self.chunks.partition_point(|(first, _)| *first <= start).checked_sub(1).ok_or_else(outside)?;
        let (first, chunk) = &self.chunks[i];
        let at = (start - first) as usize;
        chunk.get(at..at + len).ok_or_else(outside)
    }
}

/// Partition values, outermost first (None: the null partition).
pub type PartitionValues = Vec<Option<String>>;

/// Buffers keyed by partition values.
pub struct PartitionBuffers {
    parts: FastMap<PartitionValues, Part>,
    budget: Arc<MemoryBudget>,
    /// This collection's bytes in memory.
    in_memory: u64,
    dir: Option<tempfile::TempDir>,
    pub spills: u64,
}

impl PartitionBuffers {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        PartitionBuffers { parts: FastMap::default(), budget, in_memory: 0, dir: None, spills: 0 }
    }

    pub fn push(
        &mut self,
        partition: Vec<Option<String>>,
        raw: &[u8],
        key: String,
        timestamp: Option<i64>,
        seq: u64,
    ) -> Result<()> {
        let part = self.parts.entry(partition).or_default();
        let offset = part.push(raw);
        part.charge.add(&self.budget, raw.len() as u64);
        part.rows.push(RowMeta { offset, len: raw.len() as u32, key, timestamp, seq });
        self.in_memory += raw.len() as u64;
        // Over the run's cap: spill, once this collection holds a share worth a round of file appends (the rest
        // may be other collections' partitions waiting to be written, which cannot spill).
        if self.budget.over() && self.in_memory >= (self.budget.cap / 8).max(1) {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        if self.dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("mongolake-spill-")
                .tempdir()
                .map_err(|e| Error::io("creating a spill directory", e))?;
            self.dir = Some(dir);
        }
        let dir = self.dir.as_ref().expect("just created").path().to_path_buf();
        for (i, part) in self.parts.values_mut().enumerate() {
            if part.chunks.is_empty() {
                continue;
            }
            let path = part.spill.get_or_insert_with(|| dir.join(format!("part-{i}-{}.bson", part.rows.len())));
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*path)
                .map_err(|e| Error::io(format!("opening spill file {}", path.display()), e))?;
            for (_, chunk) in &part.chunks {
                f.write_all(chunk).map_err(|e| Error::io(format!("writing spill file {}", path.display()), e))?;
            }
            part.spilled += part.in_memory;
            part.in_memory = 0;
            part.chunks = Vec::new();
            part.charge.release();
        }
        self.in_memory = 0;
        self.spills += 1;
        Ok(())
    }

    /// Every key buffered so far.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.parts.values().flat_map(|p| p.rows.iter().map(|r| r.key.as_str()))
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Takes every partition out, sorted by partition values (deterministic write order). The spill directory
    /// lives as long as the returned guard.
    pub fn drain(&mut self) -> (Vec<(PartitionValues, Part)>, Option<tempfile::TempDir>) {
        let mut v: Vec<_> = self.parts.drain().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        self.in_memory = 0;
        (v, self.dir.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_whole_documents_of_any_size() {
        let mut b = PartitionBuffers::new(MemoryBudget::new(u64::MAX));
        let sizes = [10usize, CHUNK - 5, 7, 3 * CHUNK, 1, CHUNK, 2];
        for (i, n) in sizes.iter().enumerate() {
            b.push(vec![None], &vec![i as u8; *n], format!("k{i}"), None, i as u64).unwrap();
        }
        let (parts, _guard) = b.drain();
        let (bytes, rows) = parts.into_iter().next().unwrap().1.into_bytes().unwrap();
        let mut scratch = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let doc = bytes.doc(r, &mut scratch).unwrap();
            assert_eq!(doc.len(), sizes[i]);
            assert!(doc.iter().all(|b| *b == i as u8), "document {i}");
        }
    }

    #[test]
    fn a_collection_spills_when_the_run_is_over_its_cap() {
        // Another collection's partitions, waiting to be written, hold most of the run's cap.
        let budget = MemoryBudget::new(8000 / 3); // buffers capped at 3/8 of it: 999 bytes
        let mut other = PartitionBuffers::new(budget.clone());
        other.push(vec![None], &[0; 900], "o".into(), None, 0).unwrap();
        let (waiting, _g) = other.drain();
        let mut b = PartitionBuffers::new(budget.clone());
        for i in 0..30u64 {
            b.push(vec![None], &[1; 10], format!("k{i}"), None, i).unwrap();
        }
        assert!(b.spills > 0, "the pushing collection spilled");
        assert!(budget.used() <= 1000 + 125 + 10, "{}", budget.used());
        drop(waiting);
        let (parts, _guard) = b.drain();
        let (bytes, rows) = parts.into_iter().next().unwrap().1.into_bytes().unwrap();
        assert_eq!(rows.len(), 30);
        assert!(rows.iter().all(|r| bytes.doc(r, &mut Vec::new()).unwrap() == [1u8; 10]));
    }

    #[test]
    fn spills_and_reads_back_in_order() {
        let budget = MemoryBudget::new(80);
        let mut b = PartitionBuffers::new(budget.clone());
        for i in 0..20u8 {
            let p = vec![Some(format!("{}", i % 2))];
            b.push(p, &[i, i, i, i], format!("k{i}"), None, i as u64).unwrap();
        }
        assert!(b.spills > 0);
        assert!(budget.used() <= 30 + 4, "spilled bytes are given back: {}", budget.used());
        let (parts, _guard) = b.drain();
        assert_eq!(parts.len(), 2);
        for (p, part) in parts {
            let parity: u8 = p[0].as_deref().unwrap().parse().unwrap();
            let (bytes, rows) = part.into_bytes().unwrap();
            assert_eq!(rows.len(), 10);
            let mut scratch = Vec::new();
            for r in rows {
                let slice = bytes.doc(&r, &mut scratch).unwrap();
                assert_eq!(slice[0] % 2, parity);
                assert_eq!(format!("k{}", slice[0]), r.key);
            }
        }
        assert_eq!(budget.used(), 0, "written partitions give their bytes back");
    }
}
