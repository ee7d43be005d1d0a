//! The incremental merge of a partition whose existing file is too large to hold (see
//! [`crate::sink::remote`]): the file is read a row group at a time, this run's documents are built into Arrow a
//! batch at a time, and the two are joined in key order straight into the new file, which streams to the lake.
//! So the merge holds a row group, a batch of each side and the encoder's row group, whatever the file's size.
//!
//! Files are written sorted by key text, and this run's winners are sorted the same way, so a merge join gives
//! exactly the rows, in exactly the order, of the in-memory merge ([`super::in_memory`]); the output is handed to the
//! encoder in batches of [`OUT_BATCH_ROWS`], so the bytes are the same too. A file not in strictly increasing
//! key order (written by other means) is found by a read of its key column first, and merged by
//! [`super::unsorted`] instead (should one still be found out of order as it is read, the partition falls
//! back to the in-memory merge). As there, a partition whose fresh documents are all re-reads of identical rows is recognised first from
//! the key column and those rows, and left alone.
use super::encode::{
    key_text, row_doc, same_row, Built, DocMerge, FreshRows, Job, ENCODE_BATCH_BYTES, ENCODE_BATCH_ROWS,
};
use crate::schema::LakeType;
use crate::sink::parquet::{self, Encoded, FileSink};
use crate::sink::remote::RemoteFile;
use crate::sink::upload::ChunkSink;
use crate::{Error, Result};
use arrow::array::{Array, RecordBatch, StructArray};
use arrow::datatypes::SchemaRef;

/// Rows per merged batch handed to the encoder: a multiple of the writer's 1024-row mini-batch, so the bytes are
/// those of the in-memory merge (see [`parquet::Encoder::write`]), and few, because a large file's rows may be
/// large.
const OUT_BATCH_ROWS: usize = parquet::CHECK_ROWS;

/// Merges `file` (too large to hold) with this run's documents for its partition, streaming the new file into
/// `sink`. None when the file is not in strictly increasing key order (the caller merges in memory instead);
/// [`Encoded::Unchanged`] when the merge would give back the file's own rows.
pub(super) fn merge(file: &RemoteFile, fresh: &FreshRows<'_>, job: &Job<'_>, sink: ChunkSink) -> Result<Option<Built>> {
    let Job { remove, file_ty, spec, row_groups, context, .. } = *job;
    let Some((kc, key_ty)) = key_column(file_ty, &spec.key) else { return Ok(None) };
    if job.remove.is_empty() {
        if let Some(built) = unchanged(file, fresh, job, kc, key_ty)? {
            return Ok(Some(built));
        }
    }
    let mut fb = fresh.batches(job, ENCODE_BATCH_ROWS, ENCODE_BATCH_BYTES);
    let mut cur_new = fb.next_batch()?;
    let schema = cur_new.schema();
    let encoder = parquet::Encoder::to_sink(FileSink::Upload(sink), schema.clone(), file_ty, row_groups, context)?;
    let mut out = Output { encoder, sources: Vec::new(), picks: Vec::new(), rows: 0 };
    let mut new_src = out.add(&cur_new);
    let mut old_batches = file.batches(None, None)?;
    let mut next_old = || -> Result<Option<RecordBatch>> {
        for batch in old_batches.by_ref() {
            let batch = batch?;
            if batch.num_rows() > 0 {
                return aligned(&schema, batch, context).map(Some);
            }
        }
        Ok(None)
    };
    let mut cur_old = next_old()?;
    let mut old_src = cur_old.as_ref().map_or(0, |b| out.add(b));
    let (mut old_at, mut new_at, mut j) = (0, 0, 0);
    let (mut replaced, mut changed, mut prev): (u64, bool, Option<String>) = (0, false, None);
    loop {
        if cur_old.as_ref().is_some_and(|b| old_at == b.num_rows()) {
            cur_old = next_old()?;
            old_src = cur_old.as_ref().map_or(0, |b| out.add(b));
            old_at = 0;
        }
        if j < fresh.len() && new_at == cur_new.num_rows() {
            cur_new = fb.next_batch()?;
            new_src = out.add(&cur_new);
            new_at = 0;
        }
        let old_key = cur_old.as_ref().map(|b| key_text(b.column(kc).as_ref(), old_at, key_ty));
        let new_key = (j < fresh.len()).then(|| fresh.key(j));
        match (old_key, new_key) {
            (None, None) => break,
            (Some(k), f) if f.is_none_or(|f| k.as_ref() <= f) => {
                if prev.as_deref().is_some_and(|p| p >= k.as_ref()) {
                    return Ok(None); // not in key order
                }
                let same_key = f == Some(k.as_ref());
                if same_key {
                    // The fresh document replaces the row (unless the row's key moved away, then it is only
                    // dropped); either way the fresh document is written here.
                    replaced += u64::from(!remove.contains(k.as_ref()));
                    let old = cur_old.as_ref().expect("a key came from it");
                    changed = changed || !same_row(&cur_new, new_at, old, old_at);
                    out.picks.push((new_src, new_at));
                    (new_at, j) = (new_at + 1, j + 1);
                } else if remove.contains(k.as_ref()) {
                    changed = true;
                } else {
                    out.picks.push((old_src, old_at));
                }
                prev = Some(k.into_owned());
                old_at += 1;
            }
            (_, Some(_)) => {
                changed = true;
                out.picks.push((new_src, new_at));
                (new_at, j) = (new_at + 1, j + 1);
            }
            (Some(_), None) => unreachable!("handled above"),
        }
        if out.picks.len() == OUT_BATCH_ROWS {
            out.flush(&mut [&mut old_src, &mut new_src], context)?;
        }
    }
    let rejects = std::mem::take(&mut fb.rejects);
    if !changed {
        // Dropping the encoder aborts the upload.
        return Ok(Some(Built { bytes: Encoded::Unchanged, rows: file.rows(), dups: fresh.dups(), replaced, rejects }));
    }
    if !out.picks.is_empty() {
        out.flush(&mut [&mut old_src, &mut new_src], context)?;
    }
    let (rows, dups) = (out.rows, fresh.dups());
    let bytes = if rows == 0 { Encoded::Streamed(0) } else { out.encoder.finish_file()? };
    Ok(Some(Built { bytes, rows, dups, replaced, rejects }))
}

/// A widening's merge (the file has an older type), streamed: each of the file's rows is read back as BSON, as
/// the in-memory path does, and joined in key order with this run's winners into a file of the new type (a fresh
/// document always wins; a row whose key moved away is dropped). None when the file is not in key order (rows
/// sharing a key are in order, see [`DocMerge`]).
pub(super) fn widen(
    file: &RemoteFile,
    file_ty: &LakeType,
    fresh: &FreshRows<'_>,
    job: &Job<'_>,
    sink: ChunkSink,
) -> Result<Option<Built>> {
    let mut merge = DocMerge::new(fresh, job, Some(sink));
    for batch in file.batches(None, None)? {
        let s = StructArray::from(batch?);
        for row in 0..s.len() {
            let (key, doc) = row_doc(&s, row, file_ty, job)?;
            if !merge.push_old(key, &doc)? {
                return Ok(None); // not in key order
            }
        }
    }
    merge.finish().map(Some)
}

/// [`unchanged`] for a file whose type is `job.file_ty` (the file's own, when the collection's only extends it):
/// Some only when no fresh value was rejected under that type.
pub(super) fn unchanged_file(file: &RemoteFile, fresh: &FreshRows<'_>, job: &Job<'_>) -> Result<Option<Built>> {
    let Some((kc, key_ty)) = key_column(job.file_ty, &job.spec.key) else { return Ok(None) };
    Ok(unchanged(file, fresh, job, kc, key_ty)?.filter(|b| b.rejects.is_empty()))
}

/// The check of [`super::in_memory::unchanged`], streamed: every fresh winner's key is in the file, in the same
/// order, and its row there holds the same values. Reads the key column, then only those rows.
fn unchanged(
    file: &RemoteFile,
    fresh: &FreshRows<'_>,
    job: &Job<'_>,
    kc: usize,
    key_ty: &LakeType,
) -> Result<Option<Built>> {
    let index: crate::FastMap<&str, usize> = (0..fresh.len()).map(|j| (fresh.key(j), j)).collect();
    let mut hits: Vec<usize> = Vec::with_capacity(fresh.len());
    let mut base = 0;
    for batch in file.batches(Some(kc), None)? {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            if let Some(&j) = index.get(key_text(batch.column(0).as_ref(), row, key_ty).as_ref()) {
                if j != hits.len() {
                    return Ok(None); // out of order: the merge decides
                }
                hits.push(base + row);
            }
        }
        base += batch.num_rows();
    }
    if hits.len() != fresh.len() {
        return Ok(None);
    }
    let mut fb = fresh.batches(job, ENCODE_BATCH_ROWS, ENCODE_BATCH_BYTES);
    let (mut cur, mut at) = (fb.next_batch()?, 0);
    if !hits.is_empty() {
        for batch in file.batches(None, Some(&hits))? {
            let batch = batch?;
            for row in 0..batch.num_rows() {
                if at == cur.num_rows() {
                    (cur, at) = (fb.next_batch()?, 0);
                }
                if at == cur.num_rows() || batch.num_columns() != cur.num_columns() || !same_row(&cur, at, &batch, row)
                {
                    return Ok(None);
                }
                at += 1;
            }
        }
    }
    Ok(Some(Built {
        bytes: Encoded::Unchanged,
        rows: file.rows(),
        dups: fresh.dups(),
        replaced: hits.len() as u64,
        rejects: std::mem::take(&mut fb.rejects),
    }))
}

/// The position and type of the key among the file type's top-level columns.
fn key_column<'t>(file_ty: &'t LakeType, key: &str) -> Option<(usize, &'t LakeType)> {
    let LakeType::Struct { fields } = file_ty else { return None };
    fields.iter().position(|f| f.source == key).map(|i| (i, &fields[i].ty))
}

/// A file's batch under the builders' schema (same columns and types; field metadata may differ).
fn aligned(schema: &SchemaRef, batch: RecordBatch, context: &str) -> Result<RecordBatch> {
    RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(|e| Error::encode(context, e))
}

/// The merged rows on their way to the encoder: picks of (source batch, row), interleaved a batch at a time.
struct Output {
    encoder: parquet::Encoder,
    sources: Vec<RecordBatch>,
    picks: Vec<(usize, usize)>,
    rows: u64,
}

impl Output {
    fn add(&mut self, batch: &RecordBatch) -> usize {
        self.sources.push(batch.clone());
        self.sources.len() - 1
    }

    /// Encodes the picks, then keeps only the sources still being read (`current`, renumbered in place).
    fn flush(&mut self, current: &mut [&mut usize], context: &str) -> Result<()> {
        let refs: Vec<&RecordBatch> = self.sources.iter().collect();
        let batch =
            arrow::compute::interleave_record_batch(&refs, &self.picks).map_err(|e| Error::encode(context, e))?;
        self.encoder.write(&batch)?;
        self.rows += self.picks.len() as u64;
        self.picks.clear();
        let mut kept = Vec::with_capacity(current.len());
        for idx in current.iter_mut() {
            if let Some(b) = self.sources.get(**idx) {
                kept.push(b.clone());
                **idx = kept.len() - 1;
            }
        }
        self.sources = kept;
        Ok(())
    }
}
