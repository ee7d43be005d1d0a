//! Syncing one collection: the commit protocol.
//!
//! ```text
//!  1 clean staging/ left by a crashed run of this collection
//!  2 read state  ──► watermark W (none: full load)
//!  3 read schema ──► stored type S
//!  4 PASS 1  find({ts >= W - overlap, in every representation}) as raw batches
//!            per document: key, timestamp, partition values; S := S ⊔ type(doc); raw bytes -> partition buffer
//!  5 PASS 2  for each touched partition (and every partition when S's Arrow types changed):
//!            existing file rows ∪ buffered documents ─► latest per key ─► Arrow(S) ─► Parquet
//!            write to staging/, then move over <table>/<partition>/part-0.parquet     (atomic for readers)
//!            (a key whose newest version moved to another partition is removed from its old one, found
//!             through the key index)
//!  6 write key index, then schema S (if changed)
//!  7 append state row with the new watermark                                     ◄── the commit point
//! ```
//! A crash anywhere before 7 leaves the old watermark, so the next run re-reads the same documents (and more)
//! and, because merging is idempotent (a re-read document replaces its own earlier copy), lands in the same lake.
use super::buffer::{Part, PartitionBuffers};
use super::partition::{PartitionOutcome, PartitionWriter};
use super::rejects::{self, Reject};
use super::RunContext;
use crate::config::{CollectionSpec, PartitionKey};
use crate::schema::registry::{describe_changes, SchemaChange, StoredSchema};
use crate::schema::{arrow as sarrow, file_type, text, Field, LakeType};
use crate::state::{self, StateRow};
use crate::transform::partition::Partitioner;
use crate::transform::{get_path, timestamp};
use crate::{Error, Result};
use bson::RawDocument;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What happened to one collection, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectionStats {
    pub docs_read: u64,
    pub rows_written: u64,
    /// Rows in the partition files written (a partition file is rewritten whole).
    pub partitions_written: u64,
    /// Partitions whose merge changed nothing (e.g. documents re-read in the overlap window): left alone.
    pub partitions_unchanged: u64,
    pub duplicates_dropped: u64,
    pub rows_replaced: u64,
    /// Rows removed from their old partition because an update moved the document to another one.
    pub rows_moved: u64,
    pub spills: u64,
    pub full_load: bool,
    pub old_watermark: Option<String>,
    pub new_watermark: Option<String>,
    pub schema_version: u64,
    pub schema_changes: Vec<String>,
    /// Values stored as null because their column cannot hold them (kept in the rejects area).
    pub values_rejected: u64,
    /// Documents that could not be decoded at all (kept, as raw BSON, in the rejects area).
    pub documents_rejected: u64,
}

/// Fields whose values are normalised to timestamps (the timestamp column and `date(...)` partition sources).
fn timestamp_hints(spec: &CollectionSpec) -> Vec<String> {
    let mut hints = vec![spec.timestamp_column.clone()];
    for k in &spec.partition.keys {
        if let PartitionKey::Date { path, .. } = k {
            hints.push(path.clone());
        }
    }
    hints.retain(|h| !h.contains('.'));
    hints
}

/// Observes a top-level document into the collection type, normalising timestamp fields.
/// `reserved` holds the partition columns, with the top-level field each one moves out of the files (if any):
/// only that field may use the column's name.
fn observe_document(
    fields: &mut Vec<Field>,
    doc: &RawDocument,
    hints: &[String],
    reserved: &[(String, Option<String>)],
) -> std::result::Result<(), String> {
    let mut hint = 0;
    for el in doc.iter() {
        let (name, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
        let name = name.as_str();
        let i = match crate::schema::lattice::find_field(fields, name, hint) {
            Some(i) => i,
            None => {
                // A new top-level field may not take the name of a partition column it is not the source of.
                let base = crate::schema::names::sanitize(name);
                let column = crate::schema::names::unique(&base, |c| {
                    fields.iter().any(|f| f.column == c)
                        || reserved.iter().any(|(col, src)| col == c && src.as_deref() != Some(name))
                });
                fields.push(Field { source: name.to_string(), column, ty: LakeType::Null });
                fields.len() - 1
            }
        };
        hint = i + 1;
        let v = if hints.iter().any(|h| h == name) { timestamp::normalise(v) } else { v };
        fields[i].ty.observe(v)?;
    }
    Ok(())
}

pub async fn sync_collection(ctx: Arc<RunContext>, spec: CollectionSpec) -> Result<CollectionStats> {
    let name = spec.name();
    let lake = &ctx.lake;
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let mut stats = CollectionStats::default();

    let cleaned = lake.clean_staging(db, coll).await?;
    if cleaned > 0 {
        tracing::warn!(collection = %name, cleaned, "Removed staging objects left by an interrupted run");
    }
    let state = state::load(lake, db, coll).await?;
    let committed = state.rows.iter().map(|r| r.run_id.clone()).collect();
    let stale = rejects::clean_uncommitted(lake, db, coll, &committed).await?;
    if stale > 0 {
        tracing::info!(collection = %name, files = stale, "Removed rejects of runs that did not commit (this run re-reads them)");
    }
    let mut rejected: Vec<Reject> = Vec::new();
    let old_watermark = if ctx.full { None } else { state.watermark() };
    stats.full_load = old_watermark.is_none();
    stats.old_watermark = state.watermark().map(text::format_millis);

    let schema_path = lake.schema_path(db, coll);
    let mut stored = match lake.get_opt(&schema_path).await? {
        Some(b) => serde_json::from_slice::<StoredSchema>(&b)
            .map_err(|e| Error::encode(format!("schema {}", lake.display(&schema_path)), e))?,
        None => StoredSchema::new(db, coll),
    };
    let old_document = stored.document.clone();

    // PASS 1: read.
    let hints = timestamp_hints(&spec);
    let in_path = spec.path_fields();
    let reserved: Vec<(String, Option<String>)> = spec
        .partition
        .keys
        .iter()
        .map(|k| (k.column().to_string(), in_path.iter().find(|p| *p == k.path()).cloned()))
        .collect();
    let partitioner = Partitioner::new(&spec.partition, ctx.sync.timezone);
    let filter = match old_watermark {
        Some(w) => crate::source::incremental_filter(&spec.timestamp_column, w - ctx.sync.overlap.num_milliseconds()),
        None => bson::Document::new(),
    };
    let read_started = chrono::Utc::now().timestamp_millis();
    let collection = ctx.client.database(db).collection::<bson::Document>(coll);
    let mut cursor = collection
        .find(filter)
        .batch_size(ctx.batch_size)
        .batch()
        .await
        .map_err(|e| Error::mongo(format!("{name}: find"), e))?;
    let mut buffers = PartitionBuffers::new(ctx.sync.memory_budget_bytes);
    let mut present = vec![0u64; spec.partition.keys.len()];
    let mut max_ts: Option<i64> = None;
    let mut fields = match std::mem::replace(&mut stored.document, LakeType::Null) {
        LakeType::Struct { fields } => fields,
        _ => Vec::new(),
    };
    let mut seq = 0u64;
    while let Some(batch) = cursor.next().await {
        let batch = batch.map_err(|e| Error::mongo(format!("{name}: reading a batch"), e))?;
        let docs = batch.doc_slices().map_err(|e| Error::mongo(format!("{name}: reading a batch"), e))?;
        for raw in docs {
            let doc = raw.ok().and_then(|r| r.as_document()).ok_or_else(|| Error::Bson {
                collection: name.clone(),
                message: "a batch element is not a document".into(),
            })?;
            seq += 1;
            ctx.progress.docs_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Read the whole document once (inferring its type); unreadable BSON is rejected, not fatal.
            if let Err(reason) = observe_document(&mut fields, doc, &hints, &reserved) {
                let key = get_path(doc, &spec.key).map(text::render);
                tracing::warn!(collection = %name, key = key.as_deref().unwrap_or("?"), %reason, "Document rejected");
                rejected.push(Reject::document(key.as_deref().unwrap_or(""), reason, doc.as_bytes()));
                continue;
            }
            let key = match get_path(doc, &spec.key) {
                Some(v) => text::render(v),
                None => {
                    return Err(Error::collection(
                        &name,
                        format!(
                            "a document has no key field `{}` (collections.csv `key` column); _id: {}",
                            spec.key,
                            doc.get("_id").ok().flatten().map(text::render).unwrap_or_default()
                        ),
                    ))
                }
            };
            let ts = get_path(doc, &spec.timestamp_column).and_then(timestamp::instant_millis);
            if let Some(t) = ts {
                max_ts = Some(max_ts.map_or(t, |m| m.max(t)));
            }
            let values = partitioner.values(doc);
            for (i, v) in values.iter().enumerate() {
                if v.is_some() {
                    present[i] += 1;
                }
            }
            buffers.push(values, doc.as_bytes(), key, ts, seq)?;
        }
    }
    stats.docs_read = seq;
    stats.spills = buffers.spills;
    let document = LakeType::Struct { fields };

    if seq > 0 {
        let missing: Vec<&str> = spec
            .partition
            .keys
            .iter()
            .zip(&present)
            .filter(|(k, n)| **n == 0 && !old_document_has(&old_document, k.path()))
            .map(|(k, _)| k.path())
            .collect();
        if !missing.is_empty() {
            return Err(Error::collection(&name, format!(
                "partition field(s) {} exist in none of the {seq} documents read; fix `partition_by` on line {} of collections.csv",
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "), spec.line
            )));
        }
    }

    // PASS 2: write every touched partition (every partition, when a column's Arrow type changed).
    let changes = match &old_document {
        LakeType::Struct { fields } if fields.is_empty() => match &document {
            LakeType::Struct { fields } if !fields.is_empty() => vec![format!("created with {} columns", fields.len())],
            _ => Vec::new(),
        },
        _ => describe_changes(&old_document, &document),
    };
    let file_ty = Arc::new(file_type(&document, &in_path));
    let arrow_changed = sarrow::data_type(&file_type(&old_document, &in_path)) != sarrow::data_type(&file_ty);
    let (mut parts, spill_guard) = buffers.drain();
    let widened = arrow_changed && !matches!(&old_document, LakeType::Struct { fields } if fields.is_empty());
    let schema_dirty = document != old_document || stored.rewrite_pending;
    // (pass 1 moved the stored document type out; put the widened one back in every case)
    stored.document = document.clone();
    if document != old_document && !changes.is_empty() {
        stored.version += 1;
        stored.history.push(SchemaChange {
            version: stored.version,
            run_id: ctx.run_id.clone(),
            changed_at: text::format_millis(read_started),
            changes: changes.clone(),
        });
    }
    let rewrite_all = widened || stored.rewrite_pending;
    if widened {
        // Write-ahead: the widened schema and the intent to rewrite every file, before the first file changes.
        stored.rewrite_pending = true;
        lake.put(&schema_path, serde_json::to_vec_pretty(&stored).expect("serialisable").into()).await?;
    }
    if rewrite_all {
        let existing = lake.list_partitions(db, coll).await?;
        for rel in existing {
            let values = partition_values_of(&rel, &spec);
            if !parts.iter().any(|(v, _)| partitioner.relative_path(v) == rel) {
                parts.push((values, Part::default()));
            }
        }
    }
    // Rows that moved: keep one fresh version per key across partitions, and remove a key from the partition
    // the index places it in when its newest version now lives elsewhere.
    let mut index = state::index::load_or_rebuild(lake, &spec).await?;
    let rels: Vec<String> = parts.iter().map(|(v, _)| partitioner.relative_path(v)).collect();
    let mut newest: HashMap<String, (Option<i64>, u64, usize)> = HashMap::new();
    for (pi, (_, part)) in parts.iter().enumerate() {
        for r in &part.rows {
            let cand = (r.timestamp, r.seq, pi);
            match newest.get_mut(&r.key) {
                Some(best) if (best.0, best.1) >= (cand.0, cand.1) => {}
                Some(best) => *best = cand,
                None => {
                    newest.insert(r.key.clone(), cand);
                }
            }
        }
    }
    let mut cross_dups = 0u64;
    for (pi, (_, part)) in parts.iter_mut().enumerate() {
        let before = part.rows.len();
        part.rows.retain(|r| newest.get(&r.key).is_some_and(|w| w.2 == pi));
        cross_dups += (before - part.rows.len()) as u64;
    }
    let mut removals: HashMap<String, HashSet<String>> = HashMap::new();
    for (key, (_, _, pi)) in &newest {
        if let Some(old_rel) = index.get(key) {
            if *old_rel != rels[*pi] {
                removals.entry(old_rel.clone()).or_default().insert(key.clone());
            }
        }
    }
    for rel in removals.keys() {
        if !parts.iter().any(|(v, _)| partitioner.relative_path(v) == *rel) {
            parts.push((partition_values_of(rel, &spec), Part::default()));
        }
    }
    for (key, (_, _, pi)) in newest {
        index.insert(key, rels[pi].clone());
    }
    let removals = Arc::new(removals);

    let writer = Arc::new(PartitionWriter {
        removals: removals.clone(),
        ctx: ctx.clone(),
        spec: spec.clone(),
        file_ty,
        hints: hints.clone(),
        in_path: in_path.clone(),
    });
    let results: Vec<PartitionOutcome> = futures::stream::iter(parts.into_iter().map(|(values, part)| {
        let w = writer.clone();
        let rel = partitioner.relative_path(&values);
        async move { w.write(rel, part).await }
    }))
    .buffer_unordered(ctx.sync.partition_concurrency)
    .try_collect()
    .await?;
    drop(spill_guard);
    lake.finish_staging(db, coll).await?;
    for r in results.iter().filter(|r| r.written) {
        stats.rows_written += r.rows;
        stats.rows_replaced += r.replaced;
        stats.partitions_written += 1;
    }
    stats.duplicates_dropped = cross_dups + results.iter().map(|r| r.dups).sum::<u64>();
    stats.rows_moved = removals.values().map(|k| k.len() as u64).sum();
    if stats.docs_read > 0 {
        state::index::save(lake, &spec, &index).await?;
    }
    stats.partitions_unchanged = results.iter().filter(|r| !r.written).count() as u64;
    rejected.extend(results.into_iter().flat_map(|r| r.rejects));
    stats.documents_rejected = rejected.iter().filter(|r| r.is_document()).count() as u64;
    stats.values_rejected = rejected.len() as u64 - stats.documents_rejected;
    if !rejected.is_empty() {
        tracing::warn!(
            collection = %name,
            values = stats.values_rejected,
            documents = stats.documents_rejected,
            file = %lake.display(&lake.rejects_path(db, coll, &ctx.run_id)),
            "Some values could not be stored; they are kept in the rejects area"
        );
    }
    rejects::write(lake, db, coll, &ctx.run_id, &rejected).await?;

    // Commit: schema, then watermark.
    crate::fault::point("before_schema");
    if schema_dirty || widened {
        stored.rewrite_pending = false;
        lake.put(&schema_path, serde_json::to_vec_pretty(&stored).expect("serialisable").into()).await?;
    }
    crate::fault::point("before_watermark");
    stats.schema_version = stored.version;
    stats.schema_changes = changes;
    let new_watermark = match (old_watermark, max_ts.map(|m| m.min(read_started))) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    stats.new_watermark = new_watermark.map(text::format_millis);
    state::append(
        lake,
        db,
        coll,
        StateRow {
            run_id: ctx.run_id.clone(),
            started_at: read_started,
            finished_at: chrono::Utc::now().timestamp_millis(),
            watermark: new_watermark,
            rows_read: stats.docs_read,
            rows_written: stats.rows_written,
            status: "ok".into(),
        },
    )
    .await?;
    Ok(stats)
}

fn old_document_has(doc: &LakeType, path: &str) -> bool {
    let first = path.split('.').next().unwrap_or(path);
    matches!(doc, LakeType::Struct { fields } if fields.iter().any(|f| f.source == first))
}

fn partition_values_of(rel: &str, spec: &CollectionSpec) -> Vec<Option<String>> {
    let mut values = vec![None; spec.partition.keys.len()];
    for seg in rel.split('/') {
        if let Some((k, v)) = seg.split_once('=') {
            if let Some(i) = spec.partition.keys.iter().position(|p| p.column() == k) {
                if v != crate::transform::partition::HIVE_NULL {
                    values[i] = Some(crate::transform::partition::unescape(v));
                }
            }
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn a_field_never_takes_a_partition_columns_name() {
        let reserved = vec![("date".to_string(), None), ("facility_id".to_string(), Some("facility_id".to_string()))];
        let mut fields = Vec::new();
        observe_document(&mut fields, &rawdoc! { "date": "x", "facility_id": "BLR01", "Date": 1 }, &[], &reserved)
            .unwrap();
        let cols: Vec<(&str, &str)> = fields.iter().map(|f| (f.source.as_str(), f.column.as_str())).collect();
        assert_eq!(cols, vec![("date", "date_1"), ("facility_id", "facility_id"), ("Date", "date_2")]);
    }

    #[test]
    fn undecodable_bson_is_an_error_for_the_whole_document_not_a_panic() {
        // {_id: 2, s: "\xff"}: framed correctly, but the string is not UTF-8.
        let mut body = vec![0x10];
        body.extend_from_slice(b"_id\0");
        body.extend_from_slice(&2i32.to_le_bytes());
        body.extend_from_slice(&[0x02, b's', 0]);
        body.extend_from_slice(&2i32.to_le_bytes());
        body.extend_from_slice(&[0xff, 0x00]);
        let mut bytes = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        bytes.push(0);
        for nested in [false, true] {
            let bytes = if nested {
                // The same document one level down: {d: {...}}.
                let mut outer = vec![0x03, b'd', 0];
                outer.extend_from_slice(&bytes);
                let mut b = ((outer.len() + 5) as i32).to_le_bytes().to_vec();
                b.extend_from_slice(&outer);
                b.push(0);
                b
            } else {
                bytes.clone()
            };
            let doc = RawDocument::from_bytes(&bytes).expect("framing is valid");
            let mut fields = Vec::new();
            let err = observe_document(&mut fields, doc, &[], &[]).unwrap_err();
            assert!(err.contains("unreadable BSON"), "{err}");
            let r = Reject::document("2", err, doc.as_bytes());
            assert!(r.is_document() && r.raw_bson_base64.is_some());
        }
    }

    #[test]
    fn timestamp_fields_are_normalised_whatever_their_representation() {
        let mut fields = Vec::new();
        for d in [
            rawdoc! { "ts": bson::DateTime::from_millis(5) },
            rawdoc! { "ts": 1_751_394_600_000i64 },
            rawdoc! { "ts": "2025-07-01T00:00:00Z" },
        ] {
            observe_document(&mut fields, &d, &["ts".to_string()], &[]).unwrap();
        }
        assert_eq!(fields[0].ty, LakeType::Timestamp);
    }
}
