//! Writing one partition (pass 2 of the commit protocol in [`super::collection`]): read the existing file back
//! (as Arrow when it has the collection's type, [`super::merge`]; as BSON on a widening; a row group at a time
//! when it is too large to hold, [`super::merge_stream`]), merge it with the documents buffered for this
//! partition, keep the latest version per key, encode to Arrow and Parquet on a blocking thread, and replace the
//! file atomically (staging, then rename).
//!
//! Encoding is deterministic, so a merge that changes nothing yields identical bytes and the file is left alone:
//! a rerun with no changes rewrites nothing.
use super::buffer::{Part, PartBytes, RowMeta};
use super::merge;
use super::rejects::Reject;
use super::RunContext;
use crate::config::CollectionSpec;
use crate::schema::arrow::{self as sarrow, ColumnBuilder, Prepare};
use crate::schema::{text, LakeType};
use crate::sink::parquet::{self, Encoded};
use crate::sink::remote::{Existing, RemoteFile};
use crate::sink::upload::{settle, ChunkSink};
use crate::transform::dedup::{latest, Candidate};
use crate::transform::{get_path, timestamp};
use crate::{Error, Result};
use arrow::array::{Array, RecordBatch, StructArray};
use bson::{RawBsonRef, RawDocument, RawDocumentBuf};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What writing one partition did.
pub struct PartitionOutcome {
    /// Rows in the partition's file.
    pub rows: u64,
    /// Documents read in this run superseded by a newer one read in this run.
    pub dups: u64,
    /// Rows of the existing file replaced by a document read in this run.
    pub replaced: u64,
    /// False when the merged file was identical to the existing one and left alone.
    pub written: bool,
    /// Values of this run's documents that their columns could not hold (null in the file, kept here).
    pub rejects: Vec<Reject>,
}

/// Writes one partition: merge, dedup, encode, atomic replace.
pub struct PartitionWriter {
    /// Keys to drop from a partition's existing rows (their newest version lives in another partition).
    pub removals: Arc<HashMap<String, HashSet<String>>>,
    /// Read orders of buffered rows not to write (see [`super::plan::Plan::dropped`]).
    pub dropped: Arc<crate::FastSet<u64>>,
    pub ctx: Arc<RunContext>,
    pub spec: CollectionSpec,
    pub file_ty: Arc<LakeType>,
    pub hints: Vec<String>,
    pub in_path: Vec<String>,
    /// Raised when this run lost the collection's lease: stop before touching another file.
    pub lease_lost: Arc<std::sync::atomic::AtomicBool>,
    /// The collection's spill directory, when its buffers spilled: a new partition whose rows spilled is sorted
    /// there ([`super::stream`]) instead of held.
    pub spill_dir: Option<std::path::PathBuf>,
    /// A worker encoding ranges of a shared first load ([`super::shard`]): the range's folder, where the file
    /// is staged (`parts/<partition>/part-0.parquet`) for the owner to join, instead of the table.
    pub stage_to: Option<object_store::path::Path>,
}

impl PartitionWriter {
    pub async fn write(&self, rel: String, part: Part) -> Result<PartitionOutcome> {
        let lake = &self.ctx.lake;
        let (db, coll) = (self.spec.database.as_str(), self.spec.collection.as_str());
        let target = match &self.stage_to {
            Some(dir) => super::shard::staged_file(dir, &rel),
            None => lake.partition_file(db, coll, &rel),
        };
        let context = format!("{}.{} partition {rel}", db, coll);
        // A file too large to hold is merged a row group at a time ([`super::merge_stream`]).
        let existing = match &self.stage_to {
            Some(_) => None,
            None => lake.existing(&target, self.ctx.memory.whole_file_limit(), &context).await?,
        };
        let had_file = existing.is_some();
        let before = match &existing {
            Some(Existing::Whole(b)) => Some(b.clone()),
            _ => None,
        };
        // Where the new file is written first: this run's staging (then moved over the target), or the range's
        // folder of a shared load (the owner joins it).
        let upload_to = match &self.stage_to {
            Some(_) => target.clone(),
            None => lake.staging_path(&self.ctx.run_id, db, coll, &rel),
        };
        // A new partition (nothing to merge with, nothing to compare) and a large file's merge stream their file
        // to the lake as it is encoded instead of holding it ([`crate::sink::upload`]).
        let (sink, upload) = match existing {
            None | Some(Existing::Large(_)) => {
                let (sink, upload) = lake.upload(&upload_to);
                (Some(sink), Some(upload))
            }
            Some(Existing::Whole(_)) => (None, None),
        };
        let (file_ty, hints, in_path, spec) =
            (self.file_ty.clone(), self.hints.clone(), self.in_path.clone(), self.spec.clone());
        let row_groups = self.ctx.sync.row_groups();
        let remove = self.removals.get(&rel).cloned().unwrap_or_default();
        let dropped = self.dropped.clone();
        // Memory first, then a core: a write waiting for memory holds no core. A new partition whose rows
        // spilled streams them from an external sort (one sort run in memory); any other holds its rows.
        let run_rows = self.ctx.memory.sort_run_entries();
        let spill_dir = self.spill_dir.clone();
        let stream_in = spill_dir.clone().filter(|_| existing.is_none() && part.rows_if_in_memory().is_none());
        // An existing file decoded takes about four times its size; a large one's merge holds a row group of it
        // and the encoder's (about `row_group_mb` each) and a batch of each side.
        let existing_need = match &existing {
            None => 0,
            Some(Existing::Whole(b)) => b.len() as u64 * 4,
            Some(Existing::Large(_)) => row_groups.bytes.min(1 << 40) as u64 * 2 + (16 << 20),
        };
        let mut need = part.row_count() * super::budget::WRITE_BYTES_PER_ROW + existing_need;
        if stream_in.is_some() {
            need = need.min(run_rows as u64 * super::budget::SORT_ENTRY_BYTES + (16 << 20));
        }
        let memory = self.ctx.memory.reserve_write(need).await;
        let slot = self.ctx.encode_slots.clone().acquire_owned().await.expect("never closed");
        let built = tokio::task::spawn_blocking(move || {
            let (_slot, _memory) = (slot, memory);
            let job = Job {
                remove: &remove,
                dropped: &dropped,
                file_ty: &file_ty,
                hints: &hints,
                in_path: &in_path,
                spec: &spec,
                row_groups,
                context: &context,
            };
            match (stream_in, existing) {
                (Some(dir), _) => super::stream::build(part, &job, &dir, run_rows, sink),
                (None, Some(Existing::Large(file))) => {
                    build_large(&file, part, &job, sink.expect("opened above"), spill_dir.as_deref())
                }
                (None, Some(Existing::Whole(bytes))) => build_partition(Some(bytes), part, &job, sink),
                (None, None) => build_partition(None, part, &job, sink),
            }
        })
        .await
        .map_err(|e| Error::encode("partition task", e))
        .and_then(|built| built);
        let built = match upload {
            Some(upload) => settle(upload, built).await?.0,
            None => built?,
        };
        // Encoding is deterministic: identical bytes mean the merge changed nothing (documents re-read in the
        // overlap window), and the file is left alone.
        let Built { bytes, rows, dups, replaced, rejects } = built;
        if rows == 0 {
            // Every row left (deleted documents, or all moved elsewhere): the partition goes, file and folder.
            if had_file {
                lake.delete(&target).await?;
                crate::fault::point("after_partition");
            }
            return Ok(PartitionOutcome { rows, dups, replaced, written: had_file, rejects });
        }
        let same_bytes = matches!((&before, &bytes), (Some(old), Encoded::Memory(new)) if old == new);
        if same_bytes || matches!(bytes, Encoded::Unchanged) {
            return Ok(PartitionOutcome { rows, dups, replaced, written: false, rejects });
        }
        if self.lease_lost.load(std::sync::atomic::Ordering::SeqCst) {
            if matches!(bytes, Encoded::Streamed(_)) {
                lake.delete(&upload_to).await?;
            }
            return Err(Error::collection(
                format!("{db}.{coll}"),
                "lease lost to another run; stopped before rewriting another partition",
            ));
        }
        match bytes {
            // Streamed: already complete at `upload_to`.
            Encoded::Streamed(_) if self.stage_to.is_none() => lake.move_into_place(&upload_to, &target).await?,
            Encoded::Streamed(_) => {}
            Encoded::Memory(bytes) if self.stage_to.is_none() => lake.replace(&upload_to, &target, bytes).await?,
            Encoded::Memory(bytes) => lake.put(&target, bytes.into()).await?,
            Encoded::Unchanged => unreachable!("returned above"),
        }
        if self.stage_to.is_some() {
            return Ok(PartitionOutcome { rows, dups, replaced, written: true, rejects });
        }
        crate::fault::point("after_partition");
        self.ctx.progress.rows_written.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        Ok(PartitionOutcome { rows, dups, replaced, written: true, rejects })
    }
}

/// A partition's encoded file and what merging it did.
pub(super) struct Built {
    pub bytes: Encoded,
    pub rows: u64,
    pub dups: u64,
    pub replaced: u64,
    pub rejects: Vec<Reject>,
}

/// What encoding one partition needs besides its rows.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    /// Keys to drop from the existing rows (their newest version lives in another partition, or was deleted).
    pub remove: &'a HashSet<String>,
    /// Buffered rows (by read order) not to write.
    pub dropped: &'a crate::FastSet<u64>,
    pub file_ty: &'a LakeType,
    pub hints: &'a [String],
    pub in_path: &'a [String],
    pub spec: &'a CollectionSpec,
    pub row_groups: parquet::RowGroups,
    pub context: &'a str,
}

/// Rows per Arrow batch handed to the encoder: bounds the Arrow held for one partition, and is a multiple of the
/// writer's 1024-row mini-batch so the file's bytes do not depend on it (see [`parquet::Encoder::write`]).
pub(super) const ENCODE_BATCH_ROWS: usize = 8192;
/// ... or fewer rows (still a multiple of 1024) once their documents pass this many bytes (large documents).
pub(super) const ENCODE_BATCH_BYTES: usize = 4 << 20;

/// This run's rows for a partition, without those the plan dropped.
fn fresh_rows(part: Part, dropped: &crate::FastSet<u64>) -> Result<(PartBytes, Vec<RowMeta>)> {
    let (bytes, mut rows) = part.into_bytes()?;
    if !dropped.is_empty() {
        rows.retain(|r| !dropped.contains(&r.seq));
    }
    Ok((bytes, rows))
}

/// A partition whose existing file is too large to hold: merged a row group at a time, at the Arrow level when
/// the file has the collection's type, else (a widening) through BSON as a small file's widening is. A file not
/// in key order (written by other means) has its rows sorted on disk first ([`super::merge_unsorted`]), in
/// `spill_dir` when the collection has one.
fn build_large(
    file: &RemoteFile,
    part: Part,
    job: &Job<'_>,
    sink: ChunkSink,
    spill_dir: Option<&std::path::Path>,
) -> Result<Built> {
    let (fresh_bytes, rows) = fresh_rows(part, job.dropped)?;
    let ty = file.lake_type()?;
    let fresh = super::merge_stream::FreshRows::new(&fresh_bytes, &rows);
    if !super::merge_unsorted::in_key_order(file, &ty, &job.spec.key)? {
        tracing::info!(file = %job.context, "The partition file is not in key order: sorting its rows on local disk to merge them");
        // (its rows sorted held at once: about a row group's bytes, as the streamed merges hold)
        let run_bytes = (job.row_groups.bytes as u64).clamp(4 << 20, 256 << 20);
        return super::merge_unsorted::merge_unsorted(file, &ty, &fresh, job, sink, spill_dir, run_bytes);
    }
    let streamed = if &ty == job.file_ty && merge::arrow_mergeable(&file.schema(), job.file_ty, &job.spec.key) {
        super::merge_stream::merge(file, &fresh, job, sink)?
    } else {
        super::merge_stream::widen(file, &ty, &fresh, job, sink)?
    };
    if let Some(built) = streamed {
        return Ok(built);
    }
    drop(fresh);
    build_from(Some(file.whole()?), &fresh_bytes, rows, job, None)
}

fn build_partition(
    existing: Option<bytes::Bytes>,
    part: Part,
    job: &Job<'_>,
    sink: Option<ChunkSink>,
) -> Result<Built> {
    let (fresh_bytes, rows) = fresh_rows(part, job.dropped)?;
    build_from(existing, &fresh_bytes, rows, job, sink)
}

fn build_from(
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
        let (ty, schema, file_rows) = parquet::header(b.clone(), context)?;
        if &ty == file_ty && merge::arrow_mergeable(&schema, file_ty, &spec.key) {
            let fresh = merge::Fresh::build(fresh_bytes, &rows, job)?;
            if remove.is_empty() {
                if let Some(built) = merge::unchanged(&b, file_rows, &fresh, job)? {
                    return Ok(built);
                }
            }
            let (batches, _) = parquet::decode(b.clone(), context)?;
            return merge::merge_arrow(&batches, fresh, job);
        }
        let (batches, ty) = parquet::decode(b, context)?;
        for batch in batches {
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
    old_docs.retain(|d| !remove.contains(&get_path(d, &spec.key).map(text::render).unwrap_or_default()));
    for (i, d) in old_docs.iter().enumerate() {
        let key = get_path(d, &spec.key).map(text::render).unwrap_or_default();
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

    let mut out = DocEncoder::new(job, sink);
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

/// Documents in key order to one Parquet file: Arrow batches of [`ENCODE_BATCH_ROWS`] (or fewer rows of large
/// documents) handed to the encoder as they fill, so a partition holds one batch of Arrow at a time.
pub(super) struct DocEncoder<'a> {
    job: &'a Job<'a>,
    prepare: Box<Prepare>,
    builder: ColumnBuilder,
    encoder: Option<parquet::Encoder>,
    /// Where the file streams to, until the first batch opens the encoder; None: in memory.
    sink: Option<ChunkSink>,
    value_rejects: Vec<sarrow::ValueReject>,
    rejects: Vec<Reject>,
    in_batch: usize,
    batch_bytes: usize,
    rows: u64,
}

impl<'a> DocEncoder<'a> {
    pub fn new(job: &'a Job<'a>, sink: Option<ChunkSink>) -> Self {
        DocEncoder {
            job,
            prepare: prepare_fn(job.hints, job.in_path),
            builder: ColumnBuilder::for_document(job.file_ty),
            encoder: None,
            sink,
            value_rejects: Vec::new(),
            rejects: Vec::new(),
            in_batch: 0,
            batch_bytes: 0,
            rows: 0,
        }
    }

    /// Appends the document of `key` (the next in key order).
    pub fn push(&mut self, key: &str, doc: &RawDocument) -> Result<()> {
        let spec = self.job.spec;
        self.builder.append_document(doc, self.prepare.as_ref(), &mut self.value_rejects).map_err(|m| {
            Error::collection(format!("{}.{}", spec.database, spec.collection), format!("document {key}: {m}"))
        })?;
        for r in self.value_rejects.drain(..) {
            self.rejects.push(Reject::value(key, r));
        }
        self.in_batch += 1;
        self.rows += 1;
        self.batch_bytes += doc.as_bytes().len();
        if self.in_batch == ENCODE_BATCH_ROWS
            || (self.in_batch.is_multiple_of(1024) && self.batch_bytes >= ENCODE_BATCH_BYTES)
        {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = finish_batch(&mut self.builder, self.job.context)?;
        if self.encoder.is_none() {
            let Job { file_ty, row_groups, context, .. } = *self.job;
            let sink = match self.sink.take() {
                Some(upload) => parquet::FileSink::Upload(upload),
                None => parquet::FileSink::Memory(Vec::new()),
            };
            self.encoder = Some(parquet::Encoder::to_sink(sink, batch.schema(), file_ty, row_groups, context)?);
        }
        (self.in_batch, self.batch_bytes) = (0, 0);
        self.encoder.as_mut().expect("just created").write(&batch)
    }

    /// Documents pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file, and the values its columns could not hold. A streamed partition left without rows writes no
    /// file: its upload is dropped, hence aborted.
    pub fn finish(mut self) -> Result<(Encoded, Vec<Reject>)> {
        if self.rows == 0 && self.sink.is_some() {
            return Ok((Encoded::Streamed(0), self.rejects));
        }
        if self.in_batch > 0 || self.rows == 0 {
            self.flush()?;
        }
        Ok((self.encoder.expect("at least one batch").finish_file()?, self.rejects))
    }
}

pub(super) fn buffered_doc<'a>(
    bytes: &'a PartBytes,
    row: &RowMeta,
    scratch: &'a mut Vec<u8>,
    context: &str,
) -> Result<&'a RawDocument> {
    RawDocument::from_bytes(bytes.doc(row, scratch)?).map_err(|e| Error::encode(context, e))
}

pub(super) fn prepare_fn(hints: &[String], in_path: &[String]) -> Box<Prepare> {
    let (in_path, hints) = (in_path.to_vec(), hints.to_vec());
    Box::new(move |name: &str, v: RawBsonRef<'_>| {
        if in_path.iter().any(|p| p == name) {
            None
        } else if hints.iter().any(|h| h == name) {
            Some(timestamp::normalise(v))
        } else {
            Some(v)
        }
    })
}

pub(super) fn finish_batch(builder: &mut ColumnBuilder, context: &str) -> Result<RecordBatch> {
    let array = builder.finish();
    let s = array
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| Error::encode(context, "the document type has no columns"))?;
    if s.num_columns() == 0 {
        return Err(Error::encode(context, "every field of the documents is a partition column; nothing to store"));
    }
    Ok(RecordBatch::from(s.clone()))
}
