//! A new partition whose rows are held in memory (pass 2, see [`super`]): no file to merge with, so this run's
//! winners (one per key, [`crate::transform::dedup`]'s rule) are encoded in key order, streamed to the lake as
//! they are encoded when a sink is given.
use super::encode::{fresh_rows, Built, DocMerge, FreshRows, Job};
use crate::sink::upload::ChunkSink;
use crate::sync::buffer::Part;
use crate::Result;

/// Writes `part` as a new file.
pub(super) fn build(part: Part, job: &Job<'_>, sink: Option<ChunkSink>) -> Result<Built> {
    let (bytes, rows) = fresh_rows(part, job.dropped)?;
    let fresh = FreshRows::new(&bytes, &rows);
    DocMerge::new(&fresh, job, sink).finish()
}
