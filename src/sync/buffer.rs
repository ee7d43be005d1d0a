//! Raw documents buffered per partition between the read pass and the write pass.
//!
//! Documents are kept as their raw BSON bytes (no decoding), appended to fixed-size chunks per partition (a
//! growing `Vec` would copy its bytes on every doubling and hold up to twice what it stores; chunks waste at most
//! one partly filled chunk per partition). When the total passes the memory budget, every partition's bytes are
//! appended to its own spill file on local disk and the memory is released; the write pass reads a partition's
//! spill file back in one piece. Memory is thus bounded by the budget plus one partition's data at write time,
//! not by the collection size.
use crate::{Error, FastMap, Result};
use std::io::Write;
use std::path::PathBuf;

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

    /// The partition's raw bytes, read back from its spill file if it has one.
    pub fn into_bytes(self) -> Result<(PartBytes, Vec<RowMeta>)> {
        let spilled = match &self.spill {
            Some(p) => std::fs::read(p).map_err(|e| Error::io(format!("reading spill file {}", p.display()), e))?,
            None => Vec::new(),
        };
        debug_assert_eq!(spilled.len() as u64, self.spilled);
        Ok((PartBytes { spilled, chunks: self.chunks }, self.rows))
    }
}

/// A partition's buffered bytes for the write pass: [`PartBytes::doc`] finds a row's document.
pub struct PartBytes {
    spilled: Vec<u8>,
    chunks: Vec<(u64, Vec<u8>)>,
}

impl PartBytes {
    /// The raw bytes of `row` (None only if the row does not belong to this partition: a bug).
    pub fn doc(&self, row: &RowMeta) -> Option<&[u8]> {
        let (start, len) = (row.offset, row.len as usize);
        if start < self.spilled.len() as u64 {
            return self.spilled.get(start as usize..start as usize + len);
        }
        let i = self.chunks.partition_point(|(first, _)| *first <= start).checked_sub(1)?;
        let (first, chunk) = &self.chunks[i];
        let at = (start - first) as usize;
        chunk.get(at..at + len)
    }
}

/// Partition values, outermost first (None: the null partition).
pub type PartitionValues = Vec<Option<String>>;

/// Buffers keyed by partition values.
pub struct PartitionBuffers {
    parts: FastMap<PartitionValues, Part>,
    budget: u64,
    in_memory: u64,
    dir: Option<tempfile::TempDir>,
    pub spills: u64,
}

impl PartitionBuffers {
    pub fn new(budget: u64) -> Self {
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
        part.rows.push(RowMeta { offset, len: raw.len() as u32, key, timestamp, seq });
        self.in_memory += raw.len() as u64;
        if self.in_memory > self.budget {
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
        let mut b = PartitionBuffers::new(u64::MAX);
        let sizes = [10usize, CHUNK - 5, 7, 3 * CHUNK, 1, CHUNK, 2];
        for (i, n) in sizes.iter().enumerate() {
            b.push(vec![None], &vec![i as u8; *n], format!("k{i}"), None, i as u64).unwrap();
        }
        let (parts, _guard) = b.drain();
        let (bytes, rows) = parts.into_iter().next().unwrap().1.into_bytes().unwrap();
        for (i, r) in rows.iter().enumerate() {
            let doc = bytes.doc(r).unwrap();
            assert_eq!(doc.len(), sizes[i]);
            assert!(doc.iter().all(|b| *b == i as u8), "document {i}");
        }
    }

    #[test]
    fn spills_and_reads_back_in_order() {
        let mut b = PartitionBuffers::new(10);
        for i in 0..20u8 {
            let p = vec![Some(format!("{}", i % 2))];
            b.push(p, &[i, i, i, i], format!("k{i}"), None, i as u64).unwrap();
        }
        assert!(b.spills > 0);
        let (parts, _guard) = b.drain();
        assert_eq!(parts.len(), 2);
        for (p, part) in parts {
            let parity: u8 = p[0].as_deref().unwrap().parse().unwrap();
            let (bytes, rows) = part.into_bytes().unwrap();
            assert_eq!(rows.len(), 10);
            for r in rows {
                let slice = bytes.doc(&r).unwrap();
                assert_eq!(slice[0] % 2, parity);
                assert_eq!(format!("k{}", slice[0]), r.key);
            }
        }
    }
}
