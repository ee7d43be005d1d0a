//! Writing a partition of a first load whose rows spilled, in key order, without holding its rows.
//!
//! The in-memory write ([`super::partition`]) reads every row of the partition back and keeps the newest per key
//! in a map: memory that grows with the partition. A partition of a first load has no existing file to merge,
//! so its rows (key, timestamp, read order, place) are sorted on disk instead (runs of a bounded number of
//! rows, merged), and the merge yields them in key order: the last row of each key is its newest version
//! (greatest timestamp, then read last, as [`crate::transform::dedup`] ranks them), and its document is read
//! from the buffers and encoded at once. The file is the same, byte for byte; only the memory differs.
use super::buffer::{read_stamped_key, write_stamped_key, Part};
use super::partition::{Built, DocEncoder, Job};
use crate::{Error, Result};
use bson::RawDocument;
use std::io::{Read, Write};
use std::path::Path;

/// One buffered row, as sorted.
struct Row {
    key: String,
    timestamp: Option<i64>,
    seq: u64,
    offset: u64,
    len: u32,
}

impl extsort::Sortable for Row {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.seq.to_le_bytes())?;
        w.write_all(&self.offset.to_le_bytes())?;
        w.write_all(&self.len.to_le_bytes())?;
        write_stamped_key(w, self.timestamp, &self.key)
    }

    fn decode<R: Read>(r: &mut R) -> std::io::Result<Row> {
        let mut head = [0u8; 8 + 8 + 4];
        r.read_exact(&mut head)?; // an end of file here ends the run, as extsort expects
        let seq = u64::from_le_bytes(head[0..8].try_into().expect("8 bytes"));
        let offset = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[16..20].try_into().expect("4 bytes"));
        let mut key = String::new();
        let timestamp = read_stamped_key(r, &mut key)?;
        Ok(Row { key, timestamp, seq, offset, len })
    }
}

/// Writes `part` (no existing file; rows spilled) sorting its rows under `spill_dir`, `run_rows` at a time.
pub(super) fn build(part: Part, job: &Job<'_>, spill_dir: &Path, run_rows: usize) -> Result<Built> {
    let context = job.context;
    // A directory of its own: partitions of one collection are written side by side.
    let dir = tempfile::Builder::new()
        .prefix("sort-")
        .tempdir_in(spill_dir)
        .map_err(|e| Error::io(format!("creating a sort directory in {}", spill_dir.display()), e))?;
    let io = |e: std::io::Error| Error::io(format!("{context}: sorting spilled rows in {}", dir.path().display()), e);
    let mut sorter = extsort::ExternalSorter::new()
        .with_segment_size(run_rows.max(1))
        .with_sort_dir(dir.path().to_path_buf())
        .pushed_by(|a: &Row, b: &Row| a.key.cmp(&b.key).then((a.timestamp, a.seq).cmp(&(b.timestamp, b.seq))));
    let (mut pushed, mut read) = (Ok(()), 0u64);
    part.visit_rows(|r| {
        if pushed.is_ok() && !job.dropped.contains(&r.seq) {
            read += 1;
            let row = Row { key: r.key.clone(), timestamp: r.timestamp, seq: r.seq, offset: r.offset, len: r.len };
            pushed = sorter.push(row);
        }
    })?;
    pushed.map_err(io)?;
    let bytes = part.into_bytes_only()?;
    let mut out = DocEncoder::new(job);
    let mut scratch = Vec::new();
    let mut written = 0u64;
    let mut write = |row: &Row| -> Result<()> {
        let raw = bytes.doc_at(row.offset, row.len, &mut scratch)?;
        let doc = RawDocument::from_bytes(raw).map_err(|e| Error::encode(context, e))?;
        written += 1;
        out.push(&row.key, doc)
    };
    let mut last: Option<Row> = None;
    for row in sorter.done().map_err(io)? {
        let row = row.map_err(io)?;
        if let Some(prev) = last.take() {
            if prev.key != row.key {
                write(&prev)?;
            }
        }
        last = Some(row);
    }
    if let Some(prev) = last {
        write(&prev)?;
    }
    let (file, rejects) = out.finish()?;
    Ok(Built { bytes: file, rows: written, dups: read - written, replaced: 0, rejects })
}
