//! Raw documents buffered per partition between the read pass and the write pass.
//!
//! Documents are kept as their raw BSON bytes (no decoding), appended to fixed-size chunks per partition (a
//! growing `Vec` would copy its bytes on every doubling and hold up to twice what it stores; chunks waste at most
//! one partly filled chunk per partition), each with a [`RowMeta`] (key, timestamp, place). When the total passes
//! the memory budget, every partition's bytes are appended to its own spill file on local disk, its row metadata
//! to another, and the memory is released; the write pass reads a partition's rows back, and its documents one at
//! a time. Memory is thus bounded by the budget plus one partition's rows at write time, not by the collection
//! size: a collection of small documents holds more in metadata than in bytes (about 100 B per document against
//! the 300-1,000 B of a typical hospital document), so both count and both spill.
//!
//! The budget is the run's, shared by every collection syncing at once ([`MemoryBudget`]): buffered bytes count
//! from the moment they are buffered until their partition is written, and the collection that pushes the total
//! past the cap spills its own buffers.
pub use super::budget::MemoryBudget;
use crate::{Error, FastMap, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowMeta {
    pub offset: u64,
    pub len: u32,
    pub key: String,
    pub timestamp: Option<i64>,
    pub seq: u64,
}

impl RowMeta {
    /// Memory the row holds: itself and its key's heap bytes.
    fn bytes(&self) -> u64 {
        (std::mem::size_of::<RowMeta>() + self.key.capacity()) as u64
    }

    /// Appends the row to a metadata spill file: offset, len, seq, then [`write_stamped_key`].
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.offset.to_le_bytes())?;
        w.write_all(&self.len.to_le_bytes())?;
        w.write_all(&self.seq.to_le_bytes())?;
        write_stamped_key(w, self.timestamp, &self.key)
    }

    /// Reads the next row of a metadata spill file into `self` (reusing its key's buffer); false at the end.
    fn read_from(&mut self, r: &mut impl std::io::Read) -> std::io::Result<bool> {
        let mut head = [0u8; 8 + 4 + 8];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        self.offset = u64::from_le_bytes(head[0..8].try_into().expect("8 bytes"));
        self.len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        self.seq = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
        self.timestamp = read_stamped_key(r, &mut self.key)?;
        Ok(true)
    }
}

/// A buffered row with its partition (by position), as the external sorts of rows take it ([`super::plan`],
/// [`super::stream`]), ordered by key, then recency (timestamp, then read order): the last row of a key is its
/// newest version.
pub(super) struct SortRow {
    pub row: RowMeta,
    pub part: u32,
}

impl extsort::Sortable for SortRow {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.part.to_le_bytes())?;
        self.row.write_to(w)
    }

    fn decode<R: std::io::Read>(r: &mut R) -> std::io::Result<SortRow> {
        let mut part = [0u8; 4];
        r.read_exact(&mut part)?; // an end of file here ends the run, as extsort expects
        let mut row = RowMeta::default();
        if !row.read_from(r)? {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(SortRow { row, part: u32::from_le_bytes(part) })
    }
}

impl crate::sort::SortItem for SortRow {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        use crate::transform::dedup::Version;
        let (a, b) = (&self.row, &other.row);
        a.key.cmp(&b.key).then(Version::read(a.timestamp, a.seq).cmp(&Version::read(b.timestamp, b.seq)))
    }
}

/// The tail of a spilled row: the timestamp (a presence byte and 8 bytes) and the key (4 bytes of
/// length, then UTF-8).
fn write_stamped_key(w: &mut impl Write, timestamp: Option<i64>, key: &str) -> std::io::Result<()> {
    w.write_all(&[u8::from(timestamp.is_some())])?;
    w.write_all(&timestamp.unwrap_or(0).to_le_bytes())?;
    w.write_all(&(key.len() as u32).to_le_bytes())?;
    w.write_all(key.as_bytes())
}

/// Reads what [`write_stamped_key`] wrote; the key into `key` (its buffer reused).
fn read_stamped_key(r: &mut impl std::io::Read, key: &mut String) -> std::io::Result<Option<i64>> {
    let mut head = [0u8; 1 + 8 + 4];
    r.read_exact(&mut head)?;
    let timestamp = (head[0] == 1).then(|| i64::from_le_bytes(head[1..9].try_into().expect("8 bytes")));
    let mut bytes = std::mem::take(key).into_bytes();
    bytes.resize(u32::from_le_bytes(head[9..13].try_into().expect("4 bytes")) as usize, 0);
    r.read_exact(&mut bytes)?;
    *key = String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(timestamp)
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
    /// Rows in memory (their documents may be in memory or spilled: a row is spilled with the chunks of its
    /// time, and always after its document).
    rows: Vec<RowMeta>,
    /// Rows spilled, in order, before those in `rows`.
    meta: Option<PathBuf>,
    meta_rows: u64,
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

    /// Rows buffered (in memory and spilled).
    pub fn row_count(&self) -> u64 {
        self.meta_rows + self.rows.len() as u64
    }

    /// Bytes of the documents buffered (in memory and spilled).
    pub fn byte_size(&self) -> u64 {
        self.end()
    }

    /// Every row, when none was spilled.
    pub fn rows_if_in_memory(&self) -> Option<&[RowMeta]> {
        self.meta.is_none().then_some(self.rows.as_slice())
    }

    /// Calls `f` with every row in the order they were buffered: those spilled (read back one at a time), then
    /// those in memory.
    pub fn visit_rows(&self, mut f: impl FnMut(&RowMeta)) -> Result<()> {
        if let Some(path) = &self.meta {
            let context = || format!("reading spilled row metadata {}", path.display());
            let file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
            let mut r = std::io::BufReader::with_capacity(256 * 1024, file);
            let mut row = RowMeta::default();
            while row.read_from(&mut r).map_err(|e| Error::io(context(), e))? {
                f(&row);
            }
        }
        self.rows.iter().for_each(f);
        Ok(())
    }

    /// The partition's raw bytes (its chunks in memory, and its spill file, if any, opened for reading) and
    /// every row, spilled ones read back.
    pub fn into_bytes(mut self) -> Result<(PartBytes, Vec<RowMeta>)> {
        let mut rows = Vec::with_capacity(self.row_count() as usize);
        if self.meta.is_some() {
            self.visit_rows(|r| rows.push(r.clone()))?;
        } else {
            rows = std::mem::take(&mut self.rows);
        }
        Ok((self.into_bytes_only()?, rows))
    }

    /// The partition's raw bytes alone (its rows already visited with [`Part::visit_rows`]).
    pub fn into_bytes_only(self) -> Result<PartBytes> {
        let spill = match &self.spill {
            Some(p) => Some((
                std::fs::File::open(p).map_err(|e| Error::io(format!("opening spill file {}", p.display()), e))?,
                p.clone(),
            )),
            None => None,
        };
        Ok(PartBytes { spill, spilled: self.spilled, chunks: self.chunks, _charge: self.charge })
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
    /// Partitions given spill files so far.
    files: u64,
    pub spills: u64,
}

impl PartitionBuffers {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        PartitionBuffers { parts: FastMap::default(), budget, in_memory: 0, dir: None, files: 0, spills: 0 }
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
        let row = RowMeta { offset, len: raw.len() as u32, key, timestamp, seq };
        let held = raw.len() as u64 + row.bytes();
        part.charge.add(&self.budget, held);
        part.rows.push(row);
        self.in_memory += held;
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
        for part in self.parts.values_mut() {
            if part.rows.is_empty() {
                continue;
            }
            // A partition's two files are named when it first spills (hash map order changes as partitions come).
            if part.meta.is_none() {
                self.files += 1;
            }
            let i = self.files;
            if !part.chunks.is_empty() {
                let path = part.spill.get_or_insert_with(|| dir.join(format!("part-{i}.bson")));
                let mut f = append(path)?;
                for (_, chunk) in &part.chunks {
                    f.write_all(chunk).map_err(|e| Error::io(format!("writing spill file {}", path.display()), e))?;
                }
                part.spilled += part.in_memory;
                part.in_memory = 0;
                part.chunks = Vec::new();
            }
            let path = part.meta.get_or_insert_with(|| dir.join(format!("part-{i}.rows")));
            let mut f = std::io::BufWriter::with_capacity(256 * 1024, append(path)?);
            let written: std::io::Result<()> = part.rows.iter().try_for_each(|r| r.write_to(&mut f));
            written
                .and_then(|()| f.flush())
                .map_err(|e| Error::io(format!("writing spill file {}", path.display()), e))?;
            part.meta_rows += part.rows.len() as u64;
            part.rows = Vec::new();
            part.charge.release();
        }
        self.in_memory = 0;
        self.spills += 1;
        Ok(())
    }

    /// Calls `f` with every key buffered so far (spilled ones read back).
    pub fn for_each_key(&self, mut f: impl FnMut(&str)) -> Result<()> {
        self.parts.values().try_for_each(|p| p.visit_rows(|r| f(&r.key)))
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Every partition buffered so far, with its rows.
    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionValues, u64)> {
        self.parts.iter().map(|(v, p)| (v, p.row_count()))
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

/// Opens a spill file for appending, creating it.
fn append(path: &std::path::Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening spill file {}", path.display()), e))
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

    #[test]
    fn spilled_rows_read_back_in_buffering_order_with_their_documents() {
        // The third push passes the cap (150 B; each row holds about 70 B with its document): rows 0-2 spill,
        // rows 3 and 4 stay in memory.
        let budget = MemoryBudget::new(400);
        let mut b = PartitionBuffers::new(budget.clone());
        let stamps = [Some(-5), None, Some(i64::MAX), Some(0), None];
        for (i, ts) in stamps.iter().enumerate() {
            let key = "é".repeat(i); // "" first: an empty key
            b.push(vec![None], &[i as u8; 3], key, *ts, 10 + i as u64).unwrap();
        }
        assert_eq!(b.spills, 1);
        let mut keys = Vec::new();
        b.for_each_key(|k| keys.push(k.to_string())).unwrap();
        assert_eq!(keys, (0..5).map(|i| "é".repeat(i)).collect::<Vec<_>>());
        let (parts, _guard) = b.drain();
        let part = parts.into_iter().next().unwrap().1;
        assert_eq!(part.row_count(), 5);
        assert!(part.rows_if_in_memory().is_none());
        assert_eq!(part.rows.len(), 2);
        let (bytes, rows) = part.into_bytes().unwrap();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!((r.key.chars().count(), r.timestamp, r.seq), (i, stamps[i], 10 + i as u64));
            assert_eq!(bytes.doc(r, &mut Vec::new()).unwrap(), [i as u8; 3]);
        }
    }
}
