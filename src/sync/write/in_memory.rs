//! The incremental merge of one partition without a BSON round trip (pass 2, see [`super`]): the
//! existing file's rows stay Arrow, this run's documents for the partition are built into Arrow once
//! ([`Fresh`]), and the union is sorted by key text: exactly the order and values the BSON path gives, so an
//! unchanged merge still yields identical bytes.
//!
//! Most partitions an incremental run touches only hold documents re-read in the overlap window: [`unchanged`]
//! recognises them from the file's key column and the few rows those keys hold, without decoding the rest.
use super::encode::{arrow_mergeable, buffered_doc, fresh_rows, key_text, same_row, Built, DocEncoder, FreshRows, Job};
use crate::schema::arrow as sarrow;
use crate::schema::{text, LakeType};
use crate::sink::parquet::{self, Encoded};
use crate::sink::upload::ChunkSink;
use crate::sync::buffer::{Part, PartBytes, RowMeta};
use crate::sync::rejects::Reject;
use crate::transform::dedup::{latest, Candidate};
use crate::transform::{get_path, timestamp};
use crate::{Error, Result};
use arrow::array::{Array, RecordBatch, StructArray};
use bson::{RawDocument, RawDocumentBuf};
use std::borrow::Cow;

/// This run's documents for one partition, deduplicated (one per key) and built into Arrow under the file type.
pub(super) struct Fresh<'r> {
    rows: FreshRows<'r>,
    /// Row `i` is the `i`-th winner of `rows`.
    batch: RecordBatch,
    rejects: Vec<Reject>,
}

impl<'r> Fresh<'r> {
    pub fn build(bytes: &'r PartBytes, rows: &'r [RowMeta], job: &Job<'_>) -> Result<Fresh<'r>> {
        let rows = FreshRows::new(bytes, rows);
        let mut batches = rows.batches(job, usize::MAX, usize::MAX);
        let batch = batches.next_batch()?;
        let rejects = std::mem::take(&mut batches.rejects);
        Ok(Fresh { rows, batch, rejects })
    }

    /// Documents read for the partition that a newer one read in this run superseded.
    fn dups(&self) -> u64 {
        self.rows.dups()
    }
}

/// A file of at least this many rows is checked for [`unchanged`] before the full merge: only its key column
/// and the matching rows are decoded then. A smaller one goes straight to [`merge_arrow`], which leaves an
/// unchanged file alone too. Since the digest (`state::digest`) keeps re-reads of what the lake holds out of
/// the merge, a partition reaching it has usually changed, and the check is a second decode of the file.
const CHECK_FIRST_ROWS: u64 = 1024;

/// The merge when every fresh document is a re-read: each fresh winner's key is in the file (`file_rows` rows)
/// and its row there holds exactly the same values. The merge would then give back the file's own rows and
/// bytes, so they are returned as they are. Only the key column and the matching rows are decoded; None when a
/// fresh key is new or a row differs (the full merge decides). Call only when no key leaves the partition.
pub(super) fn unchanged(file: &parquet::WholeFile, fresh: &Fresh<'_>, job: &Job<'_>) -> Result<Option<Built>> {
    let file_rows = file.rows;
    let Job { file_ty, spec, context, .. } = *job;
    let LakeType::Struct { fields } = file_ty else { return Ok(None) };
    let Some(kc) = fields.iter().position(|f| f.source == spec.key) else { return Ok(None) };
    let fresh_row: crate::FastMap<&str, usize> = (0..fresh.rows.len()).map(|row| (fresh.rows.key(row), row)).collect();
    // (file row, fresh row) for every fresh key found, in file order.
    let mut hits: Vec<(usize, usize)> = Vec::with_capacity(fresh_row.len());
    let mut base = 0;
    for batch in file.decode_column(kc, context)? {
        let array = batch.column(0);
        for row in 0..batch.num_rows() {
            if let Some(&f) = fresh_row.get(key_text(array.as_ref(), row, &fields[kc].ty).as_ref()) {
                hits.push((base + row, f));
            }
        }
        base += batch.num_rows();
    }
    if hits.len() != fresh_row.len() {
        return Ok(None);
    }
    let wanted: Vec<usize> = hits.iter().map(|h| h.0).collect();
    let mut hit = hits.iter();
    for batch in file.decode_rows(&wanted, context)? {
        if batch.num_columns() != fresh.batch.num_columns() {
            return Ok(None);
        }
        for row in 0..batch.num_rows() {
            let Some(&(_, f)) = hit.next() else { return Ok(None) };
            if !same_row(&fresh.batch, f, &batch, row) {
                return Ok(None);
            }
        }
    }
    if hit.next().is_some() {
        return Ok(None);
    }
    Ok(Some(Built {
        bytes: Encoded::Unchanged,
        rows: file_rows,
        dups: fresh.dups(),
        replaced: hits.len() as u64,
        rejects: fresh.rejects.clone(),
    }))
}

/// The full merge: rows of the file that no fresh document replaces (a fresh document always wins) and that did
/// not move away, plus the fresh winners, sorted by key text. When the merged rows equal the file's rows, the
/// file is left alone ([`Encoded::Unchanged`]) instead of an encode (comparing Arrow arrays costs a fraction of a zstd encode).
pub(super) fn merge_arrow(old: &[RecordBatch], fresh: Fresh<'_>, job: &Job<'_>) -> Result<Built> {
    let Job { remove, file_ty, spec, row_groups, context, .. } = *job;
    let LakeType::Struct { fields } = file_ty else { unreachable!("a file type is a struct") };
    let key_col = fields.iter().position(|f| f.source == spec.key);
    let enc = |e: arrow::error::ArrowError| Error::encode(context, e);
    let dups = fresh.dups();
    let Fresh { rows: fresh_rows, batch: fresh, rejects } = fresh;
    let fresh_keys: crate::FastSet<&str> = (0..fresh_rows.len()).map(|j| fresh_rows.key(j)).collect();
    // Old rows that no fresh document replaces and that did not move away, then the fresh winners, as (key,
    // batch, row); sorted by key (stably: rows sharing a key keep the file's order) and gathered in one pass
    // over the columns (a filter, a concat and a take were three, each through every nested column).
    let mut batches = Vec::with_capacity(old.len() + 1);
    let mut order: Vec<(Cow<'_, str>, usize, usize)> = Vec::new();
    let mut replaced = 0u64;
    for (b, batch) in old.iter().enumerate() {
        let batch = RecordBatch::try_new(fresh.schema(), batch.columns().to_vec()).map_err(enc)?;
        let key_array = key_col.map(|c| (batch.column(c).clone(), &fields[c].ty));
        for row in 0..batch.num_rows() {
            let key = match &key_array {
                Some((array, ty)) => Cow::Owned(key_text(array.as_ref(), row, ty).into_owned()),
                None => Cow::Borrowed(""),
            };
            let removed = remove.contains(key.as_ref());
            if fresh_keys.contains(key.as_ref()) {
                replaced += u64::from(!removed);
            } else if !removed {
                order.push((key, b, row));
            }
        }
        batches.push(batch);
    }
    let kept_rows = order.len() as u64;
    order.extend((0..fresh_rows.len()).map(|j| (Cow::Borrowed(fresh_rows.key(j)), old.len(), j)));
    order.sort_by(|a, b| a.0.cmp(&b.0));
    batches.push(fresh);
    let indices: Vec<(usize, usize)> = order.iter().map(|&(_, b, row)| (b, row)).collect();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let sorted = arrow::compute::interleave_record_batch(&refs, &indices).map_err(enc)?;
    let unchanged = sorted.num_rows() == old.iter().map(|b| b.num_rows()).sum::<usize>() && same_rows(&sorted, old);
    let bytes = if unchanged {
        Encoded::Unchanged
    } else {
        Encoded::Memory(parquet::encode(sorted.schema(), &[sorted], file_ty, row_groups, context)?)
    };
    Ok(Built { bytes, rows: kept_rows + fresh_rows.len() as u64, dups, replaced, rejects })
}

/// Whether `merged` holds exactly the rows of `old`, in the same order (column by column, logically).
fn same_rows(merged: &RecordBatch, old: &[RecordBatch]) -> bool {
    let mut start = 0;
    old.iter().all(|batch| {
        let slice = merged.slice(start, batch.num_rows());
        start += batch.num_rows();
        slice.columns().iter().zip(batch.columns()).all(|(a, b)| a.to_data() == b.to_data())
    })
}

/// A partition with an existing file held whole (or none): merged at the Arrow level when the file has the
/// collection's type, else through BSON under the new type (a widening).
pub(super) fn build(
    existing: Option<bytes::Bytes>,
    part: Part,
    job: &Job<'_>,
    sink: Option<ChunkSink>,
) -> Result<Built> {
    let (fresh_bytes, rows) = fresh_rows(part, job.dropped)?;
    build_from(existing, &fresh_bytes, rows, job, sink)
}

pub(super) fn build_from(
    existing: Option<bytes::Bytes>,
    fresh_bytes: &PartBytes,
    rows: Vec<RowMeta>,
    job: &Job<'_>,
    sink: Option<ChunkSink>,
) -> Result<Built> {
    let Job { remove, file_ty, spec, context, .. } = *job;
    // Rows of the existing file: merged at the Arrow level when the file already has the collection's type (the
    // common incremental case; see [`merge`]), else back as BSON and rebuilt under the new type (a widening).
    let mut old_docs: Vec<RawDocumentBuf> = Vec::new();
    if let Some(b) = existing {
        // (the footer parsed once for every look below)
        let file = job.open(b)?;
        let ty = job.type_of(&file)?;
        if (std::ptr::eq(ty.as_ref(), file_ty) || ty.as_ref() == file_ty)
            && arrow_mergeable(file.schema(), file_ty, job)
        {
            let fresh = Fresh::build(fresh_bytes, &rows, job)?;
            // (a small file is merged whole at once: the merge finds an unchanged file as well, and the check
            // first would decode it twice when, as on most nights now, it did change)
            if remove.is_empty() && file.rows >= CHECK_FIRST_ROWS {
                if let Some(built) = unchanged(&file, &fresh, job)? {
                    return Ok(built);
                }
            }
            return merge_arrow(&file.decode(context)?, fresh, job);
        }
        // A file of an older type that the collection's only extends (columns or members added since): when this
        // run's rows are re-reads of its own rows, it reads as its rewrite would, and is left alone.
        if remove.is_empty() && !crate::schema::needs_rewrite(&ty, file_ty) && arrow_mergeable(file.schema(), &ty, job)
        {
            let old_job = Job { file_ty: &ty, ..*job };
            let fresh = Fresh::build(fresh_bytes, &rows, &old_job)?;
            if fresh.rejects.is_empty() {
                if let Some(built) = unchanged(&file, &fresh, &old_job)? {
                    return Ok(built);
                }
            }
        }
        for batch in file.decode(context)? {
            let s = StructArray::from(batch);
            for row in 0..s.len() {
                let doc = match sarrow::to_bson(&s, row, &ty) {
                    Some(bson::Bson::Document(d)) => d,
                    _ => bson::Document::new(),
                };
                old_docs.push(RawDocumentBuf::try_from(&doc).map_err(|e| Error::encode(context, e))?);
            }
        }
    }
    let mut scratch = Vec::new();
    let mut candidates = Vec::with_capacity(old_docs.len() + rows.len());
    old_docs.retain(|d| !remove.contains(&get_path(d, &spec.key).map(text::key_text).unwrap_or_default()));
    for (i, d) in old_docs.iter().enumerate() {
        let key = get_path(d, &spec.key).map(text::key_text).unwrap_or_default();
        let ts = get_path(d, &spec.timestamp_column).and_then(timestamp::instant_millis);
        candidates.push(Candidate { key: key.into(), fresh: false, timestamp: ts, seq: i as u64 });
    }
    for r in &rows {
        candidates.push(Candidate { key: r.key.as_str().into(), fresh: true, timestamp: r.timestamp, seq: r.seq });
    }
    let winners = latest(&candidates);
    let fresh_winners = winners.iter().filter(|&&i| i >= old_docs.len()).count() as u64;
    let dups = rows.len() as u64 - fresh_winners;
    let replaced = old_docs.len() as u64 - (winners.len() as u64 - fresh_winners);

    let mut out = DocEncoder::new(job, sink, winners.len());
    for &i in &winners {
        let doc: &RawDocument = if i < old_docs.len() {
            &old_docs[i]
        } else {
            buffered_doc(fresh_bytes, &rows[i - old_docs.len()], &mut scratch, context)?
        };
        out.push(&candidates[i].key, doc)?;
    }
    let (bytes, rejects) = out.finish()?;
    Ok(Built { bytes, rows: winners.len() as u64, dups, replaced, rejects })
}
