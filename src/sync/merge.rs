//! The incremental merge of one partition without a BSON round trip (pass 2, see [`super::partition`]): the
//! existing file's rows stay Arrow, this run's documents for the partition are built into Arrow once
//! ([`Fresh`]), and the union is sorted by key text: exactly the order and values the BSON path gives, so an
//! unchanged merge still yields identical bytes.
//!
//! Most partitions an incremental run touches only hold documents re-read in the overlap window: [`unchanged`]
//! recognises them from the file's key column and the few rows those keys hold, without decoding the rest.
use super::buffer::{PartBytes, RowMeta};
use super::partition::{buffered_doc, finish_batch, prepare_fn, Built, Job};
use super::rejects::Reject;
use crate::schema::arrow::{self as sarrow, ColumnBuilder};
use crate::schema::{text, LakeType};
use crate::sink::parquet::{self, Encoded};
use crate::transform::dedup::{latest, Candidate};
use crate::{Error, Result};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::SchemaRef;
use std::borrow::Cow;

/// This run's documents for one partition, deduplicated (one per key) and built into Arrow under the file type.
pub(super) struct Fresh<'r> {
    candidates: Vec<Candidate<'r>>,
    /// Indices into `candidates` of the winners, sorted by key; row `i` of `batch` is `winners[i]`.
    winners: Vec<usize>,
    batch: RecordBatch,
    rejects: Vec<Reject>,
}

impl<'r> Fresh<'r> {
    pub fn build(bytes: &PartBytes, rows: &'r [RowMeta], job: &Job<'_>) -> Result<Fresh<'r>> {
        let Job { file_ty, hints, in_path, spec, context, .. } = *job;
        let candidates: Vec<Candidate> = rows
            .iter()
            .map(|r| Candidate { key: Cow::Borrowed(r.key.as_str()), fresh: true, timestamp: r.timestamp, seq: r.seq })
            .collect();
        let winners = latest(&candidates);
        let mut scratch = Vec::new();
        let prepare = prepare_fn(hints, in_path);
        let mut builder = ColumnBuilder::for_document(file_ty);
        let (mut value_rejects, mut rejects) = (Vec::new(), Vec::new());
        for &i in &winners {
            let r = &rows[i];
            let doc = buffered_doc(bytes, r, &mut scratch, context)?;
            builder.append_document(doc, prepare.as_ref(), &mut value_rejects).map_err(|m| {
                Error::collection(format!("{}.{}", spec.database, spec.collection), format!("document {}: {m}", r.key))
            })?;
            for v in value_rejects.drain(..) {
                rejects.push(Reject::value(&r.key, v));
            }
        }
        let batch = finish_batch(&mut builder, context)?;
        Ok(Fresh { candidates, winners, batch, rejects })
    }

    /// Documents read for the partition that a newer one read in this run superseded.
    fn dups(&self) -> u64 {
        (self.candidates.len() - self.winners.len()) as u64
    }
}

/// The merge when every fresh document is a re-read: each fresh winner's key is in the file (`file_rows` rows)
/// and its row there holds exactly the same values. The merge would then give back the file's own rows and
/// bytes, so they are returned as they are. Only the key column and the matching rows are decoded; None when a
/// fresh key is new or a row differs (the full merge decides). Call only when no key leaves the partition.
pub(super) fn unchanged(
    file: &bytes::Bytes,
    file_rows: u64,
    fresh: &Fresh<'_>,
    job: &Job<'_>,
) -> Result<Option<Built>> {
    let Job { file_ty, spec, context, .. } = *job;
    let LakeType::Struct { fields } = file_ty else { return Ok(None) };
    let Some(kc) = fields.iter().position(|f| f.source == spec.key) else { return Ok(None) };
    let fresh_row: crate::FastMap<&str, usize> =
        fresh.winners.iter().enumerate().map(|(row, &i)| (fresh.candidates[i].key.as_ref(), row)).collect();
    // (file row, fresh row) for every fresh key found, in file order.
    let mut hits: Vec<(usize, usize)> = Vec::with_capacity(fresh_row.len());
    let mut base = 0;
    for batch in parquet::decode_column(file.clone(), kc, context)? {
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
    for batch in parquet::decode_rows(file.clone(), &wanted, file_rows as usize, context)? {
        if batch.num_columns() != fresh.batch.num_columns() {
            return Ok(None);
        }
        for row in 0..batch.num_rows() {
            let Some(&(_, f)) = hit.next() else { return Ok(None) };
            let same = fresh.batch.columns().iter().zip(batch.columns()).all(|(a, b)| {
                // (logical equality of one-row slices, as `same_rows` compares whole files)
                a.slice(f, 1).to_data() == b.slice(row, 1).to_data()
            });
            if !same {
                return Ok(None);
            }
        }
    }
    if hit.next().is_some() {
        return Ok(None);
    }
    Ok(Some(Built {
        bytes: Encoded::Memory(file.clone()),
        rows: file_rows,
        dups: fresh.dups(),
        replaced: hits.len() as u64,
        rejects: fresh.rejects.clone(),
    }))
}

/// The full merge: rows of the file that no fresh document replaces (a fresh document always wins) and that did
/// not move away, plus the fresh winners, sorted by key text. When the merged rows equal the file's rows, the
/// file's own bytes are returned instead of an encode (comparing Arrow arrays costs a fraction of a zstd encode).
pub(super) fn merge_arrow(
    old: &[RecordBatch],
    old_bytes: bytes::Bytes,
    fresh: Fresh<'_>,
    job: &Job<'_>,
) -> Result<Built> {
    let Job { remove, file_ty, spec, row_groups, context, .. } = *job;
    let LakeType::Struct { fields } = file_ty else { unreachable!("a file type is a struct") };
    let key_col = fields.iter().position(|f| f.source == spec.key);
    let enc = |e: arrow::error::ArrowError| Error::encode(context, e);
    let dups = fresh.dups();
    let Fresh { candidates, winners, batch: fresh, rejects } = fresh;
    let fresh_keys: crate::FastSet<&str> = winners.iter().map(|&i| candidates[i].key.as_ref()).collect();
    // Old rows: keep those no fresh document replaces and that did not move away.
    let mut kept_batches = Vec::with_capacity(old.len());
    let mut keys: Vec<String> = Vec::new();
    let mut replaced = 0u64;
    for batch in old {
        let batch = RecordBatch::try_new(fresh.schema(), batch.columns().to_vec()).map_err(enc)?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let key_array = key_col.map(|c| (batch.column(c).clone(), &fields[c].ty));
        for row in 0..batch.num_rows() {
            let key = match &key_array {
                Some((array, ty)) => key_text(array.as_ref(), row, ty).into_owned(),
                None => String::new(),
            };
            let replaced_here = fresh_keys.contains(key.as_str());
            let stays = !replaced_here && !remove.contains(&key);
            if replaced_here && !remove.contains(&key) {
                replaced += 1;
            }
            if stays {
                keys.push(key);
            }
            keep.push(stays);
        }
        kept_batches.push(arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(enc)?);
    }
    let kept_rows = keys.len() as u64;
    keys.extend(winners.iter().map(|&i| candidates[i].key.to_string()));
    kept_batches.push(fresh);
    let all = arrow::compute::concat_batches(&kept_batches[0].schema(), &kept_batches).map_err(enc)?;
    let order = arrow::compute::sort_to_indices(&StringArray::from(keys), None, None).map_err(enc)?;
    let sorted = arrow::compute::take_record_batch(&all, &order).map_err(enc)?;
    let unchanged = sorted.num_rows() == old.iter().map(|b| b.num_rows()).sum::<usize>() && same_rows(&sorted, old);
    let bytes =
        if unchanged { old_bytes } else { parquet::encode(sorted.schema(), &[sorted], file_ty, row_groups, context)? };
    Ok(Built { bytes: Encoded::Memory(bytes), rows: kept_rows + winners.len() as u64, dups, replaced, rejects })
}

/// The text a key is matched by (as [`text::render`] gives it for the BSON value). A string key, the common
/// case (ObjectIds are stored as their hex text), is borrowed straight from the array without a BSON round trip.
fn key_text<'a>(array: &'a dyn Array, row: usize, ty: &LakeType) -> Cow<'a, str> {
    match (ty, array.data_type()) {
        (LakeType::String, arrow::datatypes::DataType::Utf8) if !array.is_null(row) => {
            Cow::Borrowed(array.as_string::<i32>().value(row))
        }
        _ => Cow::Owned(
            sarrow::to_bson(array, row, ty)
                .and_then(|b| bson::RawBson::try_from(b).ok())
                .map(|raw| text::render(raw.as_raw_bson_ref()))
                .unwrap_or_default(),
        ),
    }
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

/// The Arrow merge needs the key as a top-level column, and the file's Arrow types exactly those the builders
/// produce for the collection's type (they are, unless a file was written by a different version).
pub(super) fn arrow_mergeable(schema: &SchemaRef, file_ty: &LakeType, key: &str) -> bool {
    let LakeType::Struct { fields } = file_ty else { return false };
    if !fields.iter().any(|f| f.source == key) {
        return false;
    }
    let want = sarrow::struct_fields(fields);
    schema.fields().len() == want.len()
        && schema.fields().iter().zip(want.iter()).all(|(g, w)| g.name() == w.name() && g.data_type() == w.data_type())
}
