//! Raw documents buffered per partition between the read pass and the write pass.
//!
//! Documents are kept as their raw BSON bytes (no decoding), appended to one byte buffer per partition. When the
//! total passes the memory budget, every partition's bytes are appended to its own spill file on local disk and
//! the memory is released; the write pass reads a partition's spill file back in one piece. Memory is thus bounded
//! by the budget plus one partition's data at write time, not by the collection size.
use crate::{Error, Result};
use std::collections::HashMap;
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

/// One partition's documents.
#[derive(Debug, Default)]
pub struct Part {
    bytes: Vec<u8>,
    spilled: u64,
    spill: Option<PathBuf>,
    pub rows: Vec<RowMeta>,
}

impl Part {
    /// All the partition's raw bytes, contiguous (offsets in `rows` index into them).
    pub fn into_bytes(self) -> Result<(Vec<u8>, Vec<RowMeta>)> {
        let mut all = match &self.spill {
            Some(p) => std::fs::read(p).map_err(|e| Error::io(format!("reading spill file {}", p.display()), e))?,
            None => Vec::new(),
        };
        debug_assert_eq!(all.len() as u64, self.spilled);
        all.extend_from_slice(&self.bytes);
        Ok((all, self.rows))
    }
}

/// Partition values, outermost first (None: the null partition).
pub type PartitionValues = Vec<Option<String>>;

/// Buffers keyed by partition values.
pub struct PartitionBuffers {
    parts: HashMap<PartitionValues, Part>,
    budget: u64,
    in_memory: u64,
    dir: Option<tempfile::TempDir>,
    pub spills: u64,
}

impl PartitionBuffers {
    pub fn new(budget: u64) -> Self {
        PartitionBuffers { parts: HashMap::new(), budget, in_memory: 0, dir: None, spills: 0 }
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
        let offset = part.spilled + part.bytes.len() as u64;
        part.bytes.extend_from_slice(raw);
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
            if part.bytes.is_empty() {
                continue;
            }
            let path = part.spill.get_or_insert_with(|| dir.join(format!("part-{i}-{}.bson", part.rows.len())));
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*path)
                .map_err(|e| Error::io(format!("opening spill file {}", path.display()), e))?;
            f.write_all(&part.bytes).map_err(|e| Error::io(format!("writing spill file {}", path.display()), e))?;
            part.spilled += part.bytes.len() as u64;
            part.bytes = Vec::new();
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
                let slice = &bytes[r.offset as usize..r.offset as usize + r.len as usize];
                assert_eq!(slice[0] % 2, parity);
                assert_eq!(format!("k{}", slice[0]), r.key);
            }
        }
    }
}
