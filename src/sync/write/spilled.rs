//! Writing a partition of a first load whose rows spilled, in key order, without holding its rows.
//!
//! The in-memory write ([`super::new`]) reads every row of the partition back and keeps the newest per key
//! in a map: memory that grows with the partition. A partition of a first load has no existing file to merge,
//! so its rows (key, timestamp, read order, place) are sorted on disk instead (runs of a bounded number of
//! rows, merged), and the merge yields them in key order: the last row of each key is its newest version
//! (greatest timestamp, then read last, as [`crate::transform::dedup`] ranks them), and its document is read
//! from the buffers and encoded at once. The file is the same, byte for byte; only the memory differs.
use super::encode::{buffered_doc, Built, DocEncoder, Job};
use crate::sink::upload::ChunkSink;
use crate::sync::buffer::{Part, SortRow};
use crate::{Error, Result};
use std::path::Path;

/// Writes `part` (no existing file; rows spilled) sorting its rows under `spill_dir`, `run_rows` at a time.
pub(super) fn build(
    part: Part,
    job: &Job<'_>,
    spill_dir: &Path,
    run_rows: usize,
    sink: Option<ChunkSink>,
) -> Result<Built> {
    let context = job.context;
    // A directory of its own: partitions of one collection are written side by side.
    let dir = tempfile::Builder::new()
        .prefix("sort-")
        .tempdir_in(spill_dir)
        .map_err(|e| Error::io(format!("creating a sort directory in {}", spill_dir.display()), e))?;
    let io = |e: std::io::Error| Error::io(format!("{context}: sorting spilled rows in {}", dir.path().display()), e);
    let mut sorter = crate::sort::Sorter::new(run_rows, dir.path().to_path_buf());
    let (mut pushed, mut read) = (Ok(()), 0u64);
    part.visit_rows(|r| {
        if pushed.is_ok() && !job.dropped.contains(&r.seq) {
            read += 1;
            pushed = sorter.push(SortRow { row: r.clone(), part: 0 });
        }
    })?;
    pushed.map_err(io)?;
    let bytes = part.into_bytes_only()?;
    let mut out = DocEncoder::new(job, sink, super::encode::ENCODE_BATCH_ROWS);
    let mut scratch = Vec::new();
    let mut written = 0u64;
    let mut write = |sorted: &SortRow| -> Result<()> {
        let doc = buffered_doc(&bytes, &sorted.row, &mut scratch, context)?;
        written += 1;
        out.push(&sorted.row.key, doc)
    };
    let mut last: Option<SortRow> = None;
    for row in sorter.done().map_err(io)? {
        let row = row.map_err(io)?;
        if let Some(prev) = last.take() {
            if prev.row.key != row.row.key {
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
