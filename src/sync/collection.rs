//! Syncing one collection: the commit protocol.
//!
//! ```text
//!  0 take the collection's lease (sync::run; state::lease)        ── held by another run: skip, nothing touched
//!  1 clean staging/ and rejects of runs that never committed
//!  2 read state  ──► watermark W (none: full load)
//!  3 read schema ──► stored type S
//!  4 PASS 1  find({ts >= W - overlap, in every representation}) as raw batches               ✝ after_batch
//!            per document: key, timestamp, partition values; S := S ⊔ type(doc); raw bytes -> partition buffer
//!    RECONCILE (optional) keys of every live document vs the key index: deleted keys marked for removal,
//!            missing documents fetched by key into pass 1
//!  5 if S widened: save S with rewrite_pending (write-ahead), and every partition joins pass 2
//!  6 PASS 2  for each touched partition:
//!            existing file rows ∪ buffered documents − moved/deleted keys ─► latest per key ─► Arrow(S) ─► Parquet
//!            write to staging/ (✝ staged), then move over <table>/<partition>/part-0.parquet
//!            (atomic for readers; a partition left with no rows is deleted)                   ✝ after_partition
//!  7 rejects file, key index                                                                  ✝ before_schema
//!  8 schema S (rewrite_pending cleared)                                                       ✝ before_watermark
//!  9 append state row with the new watermark                                     ◄── the commit point
//! 10 release the lease
//! ```
//! `sync --dry-run` runs 2-5 (reads only: no lease, no cleaning, no spill outside the local temp dir), lists what
//! 6 would rewrite and whether 5 would widen the schema, and returns before the first write.
//!
//! A crash anywhere (✝ marks the `MONGOLAKE_FAULT` points the tests kill at) before 9 leaves the old watermark,
//! so the next run re-reads the same documents (and more) and, because merging is idempotent (a re-read document
//! replaces its own earlier copy), lands in the same lake. Readers never see a partial file: staging is outside
//! every table, and a move replaces a whole file. A run that lost its lease stops before 6's next file and 9.
use super::buffer::Part;
use super::partition::{PartitionOutcome, PartitionWriter};
use super::read::ReadPass;
use super::rejects;
use super::RunContext;
use crate::config::CollectionSpec;
use crate::schema::registry::{describe_changes, SchemaChange, StoredSchema};
use crate::schema::{arrow as sarrow, file_type, text, LakeType};
use crate::state::{self, StateRow};
use crate::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// This run compared key sets with MongoDB (`--reconcile` or the schedule).
    pub reconciled: bool,
    /// Rows removed because their documents were deleted in MongoDB (reconcile).
    pub rows_deleted: u64,
    /// Documents the lake lacked that reconcile fetched by key (no timestamp, or written too late).
    pub docs_fetched: u64,
    /// The Athena/Glue table definition stored next to the schema changed: re-apply it.
    pub table_definition_changed: bool,
    /// Values masked per rule (collections.csv `mask`).
    pub masked: crate::mask::MaskCounts,
    /// No index starts with the timestamp column (incremental runs scan the whole collection): the command that
    /// creates one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_index: Option<String>,
    /// `sync --dry-run`: the partitions (relative to the table) that would be rewritten.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned_partitions: Vec<String>,
    /// `sync --dry-run`: the documents read would change the stored schema ...
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub schema_would_change: bool,
    /// ... and widen a column's file type, which rewrites every partition.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub schema_would_widen: bool,
}

/// Loads (or rebuilds) the collection's key index, with its time in the debug log.
async fn load_index(ctx: &RunContext, spec: &CollectionSpec) -> Result<state::index::KeyIndex> {
    let phase = std::time::Instant::now();
    let index = state::index::load_or_rebuild(&ctx.lake, spec, &ctx.index_rebuild()).await?;
    tracing::debug!(collection = %spec.name(), keys = index.len(), ms = phase.elapsed().as_millis() as u64, "Phase: key index loaded");
    Ok(index)
}

/// Syncs one collection. `lease_lost` is raised if this run's lease on the collection was taken over; the
/// collection then stops before its next partition write and before its watermark.
pub async fn sync_collection(
    ctx: Arc<RunContext>,
    spec: CollectionSpec,
    lease_lost: Arc<AtomicBool>,
) -> Result<CollectionStats> {
    let name = spec.name();
    let lake = &ctx.lake;
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let mut stats = CollectionStats::default();

    let progress = ctx.progress.clone();
    progress.set_phase(crate::progress::Phase::Reading);
    if !ctx.dry_run {
        let cleaned = lake.clean_staging(db, coll).await?;
        if cleaned > 0 {
            tracing::warn!(collection = %name, cleaned, "Removed staging objects left by an interrupted run");
        }
    }
    let state = state::load(lake, db, coll).await?;
    if !ctx.dry_run {
        let committed = state.rows.iter().map(|r| r.run_id.clone()).collect();
        let stale = rejects::clean_uncommitted(lake, db, coll, &committed).await?;
        if stale > 0 {
            tracing::info!(collection = %name, files = stale, "Removed rejects of runs that did not commit (this run re-reads them)");
        }
    }
    let old_watermark = if ctx.full { None } else { state.watermark() };
    stats.full_load = old_watermark.is_none();
    // This collection's share of the memory budget's metadata half (what cannot spill, see MemoryBudget): a
    // run over an existing lake holds key index segments; a first load holds one external sort run at most
    // (sized by estimatedDocumentCount, also the progress bar's ETA). The index is read first (its manifest, or
    // the single file of older versions) to count its keys.
    // (estimatedDocumentCount is collection metadata on MongoDB, but SecantusDB counts: 1.4 s per 1M documents.)
    let mut index = load_index(&ctx, &spec).await?;
    let estimate = if stats.full_load {
        let estimate = ctx.client.database(db).collection::<bson::Document>(coll).estimated_document_count().await.ok();
        progress.expected.store(estimate.unwrap_or(0), Ordering::Relaxed);
        estimate
    } else {
        None
    };
    // (an index of segment files is updated a segment at a time: it holds one, and the new files being filled)
    let held = match index.segments_loaded() {
        (_, 0) => index.len().min(4 * ctx.sync.index_segment_keys),
        _ => index.len(),
    };
    let share = ctx.memory.share_for(held as u64, estimate.unwrap_or(0));
    if ctx.memory.would_wait(share) {
        tracing::info!(collection = %name, share_mb = share >> 20, "Waiting for other collections to free the memory budget");
    }
    let _memory = ctx.memory.reserve(share).await;
    stats.old_watermark = state.watermark().map(text::format_millis);

    let schema_path = lake.schema_path(db, coll);
    let mut stored =
        crate::schema::registry::load(lake, db, coll).await?.unwrap_or_else(|| StoredSchema::new(db, coll));
    let old_document = stored.document.clone();

    // PASS 1: read.
    let in_path = spec.path_fields();
    let fields = match std::mem::replace(&mut stored.document, LakeType::Null) {
        LakeType::Struct { fields } => fields,
        _ => Vec::new(),
    };
    let mut pass = ReadPass::new(&spec, fields, &ctx)?;
    let phase = std::time::Instant::now();
    let filter = match old_watermark {
        Some(w) => crate::source::incremental_filter(&spec.timestamp_column, w - ctx.sync.overlap.num_milliseconds()),
        None => bson::Document::new(),
    };
    if old_watermark.is_some() {
        // The incremental query only grows with the changes when an index serves it.
        let c = ctx.client.database(db).collection::<bson::Document>(coll);
        match crate::source::timestamp_index(&c, &spec.timestamp_column).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let hint = crate::source::create_index_hint(db, coll, &spec.timestamp_column);
                tracing::warn!(collection = %name, create = %hint, "No index starts with the timestamp column: this incremental run scans the whole collection");
                stats.missing_index = Some(hint);
            }
            Err(e) => tracing::debug!(collection = %name, error = %e, "Could not list indexes"),
        }
    }
    let read_started = chrono::Utc::now().timestamp_millis();
    // A large first load with `--shard`: shared with the other workers in `_id` ranges (see super::shard).
    let mut shared = match (stats.full_load && index.is_empty() && !stored.rewrite_pending, estimate) {
        (true, Some(docs)) => super::shard::owner::start(&ctx, &spec, &pass, docs).await?,
        _ => None,
    };
    if let Some(s) = shared.as_mut() {
        s.read(&mut pass).await?;
        let (here, helped) = s.ranges();
        tracing::info!(collection = %name, ranges_here = here, ranges_helped = helped, "Shared first load read");
    } else if old_watermark.is_none() && ctx.sync.read_ranges > 1 && spec.key == "_id" {
        // A full load: several cursors over `_id` ranges (see ReadPass::id_ranges).
        let ranges = pass.id_ranges(ctx.sync.read_ranges, estimate).await?;
        tracing::debug!(collection = %name, ranges = ranges.len(), "Full load in _id ranges");
        pass.read_all(ranges).await?;
    } else {
        pass.read(filter).await?;
    }
    tracing::debug!(collection = %name, docs = pass.seq, ms = phase.elapsed().as_millis() as u64, "Phase: read");
    let reconcile_due = ctx.reconcile
        || ctx.sync.reconcile_every_days.is_some_and(|days| {
            state.last_reconcile().is_none_or(|last| read_started - last >= days as i64 * 86_400_000)
        });
    // A first load read every document: it is the reconcile the schedule asks for, without comparing key sets
    // (a second scan of every key). `--reconcile` still compares.
    let compare_keys = reconcile_due && (ctx.reconcile || !(stats.full_load && index.is_empty()));
    stats.reconciled = reconcile_due;
    let deleted = if compare_keys {
        // (it visits the index a segment at a time, and fetches what the lake lacks into this pass)
        let r = super::reconcile::reconcile(&mut pass, &mut index, ctx.memory.sort_run_entries()).await?;
        stats.docs_fetched = r.fetched;
        r.deleted
    } else {
        HashSet::new()
    };
    let ReadPass { fields, mut buffers, present, max_ts, seq, mut rejected, hints, partitioner, masked, .. } = pass;
    stats.masked = masked;
    stats.docs_read = seq + shared.as_ref().map_or(0, |s| s.helped_docs());
    stats.spills = buffers.spills;
    let document = LakeType::Struct { fields };

    if stats.docs_read > 0 {
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
                "partition field(s) {} exist in none of the {} documents read; fix `partition_by` on line {} of collections.csv",
                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "), stats.docs_read, spec.line
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
    if widened && !ctx.dry_run {
        // Write-ahead: the widened schema and the intent to rewrite every file, before the first file changes.
        stored.rewrite_pending = true;
        lake.put(&schema_path, serde_json::to_vec_pretty(&stored).expect("serialisable").into()).await?;
    }
    if let Some(shared) = shared.as_ref() {
        // A shared first load: the ranges read here are encoded like the helpers' and all are joined.
        progress.set_phase(crate::progress::Phase::Writing);
        let rows = super::shard::RangeRows { buffers, hints, partitioner };
        let joined = shared.write(rows, &document, lease_lost.clone()).await?;
        stats.rows_written = joined.rows;
        stats.partitions_written = joined.partitions;
        stats.duplicates_dropped = joined.dups;
        rejected.extend(joined.rejects);
        index = joined.index;
        lake.finish_staging(db, coll).await?;
    } else {
        let (mut parts, spill_guard) = buffers.drain();
        if rewrite_all {
            let existing = lake.list_partitions(db, coll).await?;
            for rel in existing {
                let values = partition_values_of(&rel, &spec);
                if !parts.iter().any(|(v, _)| partitioner.relative_path(v) == rel) {
                    parts.push((values, Part::default()));
                }
            }
        }
        // Which rows are written (newest version per key), and where each key lives now: see [`super::plan`].
        let rels: Vec<Arc<str>> = parts.iter().map(|(v, _)| Arc::from(partitioner.relative_path(v))).collect();
        let phase = std::time::Instant::now();
        let sort_dir = spill_guard.as_ref().map(|d| d.path().to_path_buf());
        let mut attempt = 0;
        let plan = loop {
            let segment_keys = ctx.sync.index_segment_keys;
            let target = if index.is_empty() && !index.changed() && !ctx.dry_run {
                // A first load: nothing can move, and the index is this run's keys, written as they come sorted.
                let writer = state::index::store::SegmentWriter::new(lake, &spec, &ctx.run_id, segment_keys);
                super::plan::IndexTarget::Stream(Box::new(writer), &mut index)
            } else {
                // The index segments the keys fall in, one at a time (see state::index::Updater).
                let prefix = format!("{}-u{attempt}", ctx.run_id);
                let updater = state::index::Updater::new(&mut index, lake, &spec, &prefix, segment_keys, !ctx.dry_run);
                super::plan::IndexTarget::Update(Box::new(updater))
            };
            let run_entries = ctx.memory.sort_run_entries();
            match super::plan::plan(&parts, &rels, &deleted, target, sort_dir.as_deref(), run_entries).await {
                // A lost or corrupt segment: the partition files tell where every key lives; plan again.
                Err(e @ Error::IndexSegment { .. }) if attempt == 0 => {
                    index = state::index::store::rebuild(lake, &spec, &e.to_string(), &ctx.index_rebuild()).await?;
                    attempt += 1;
                }
                result => break result?,
            }
        };
        tracing::debug!(collection = %name, on_disk = plan.sorted_on_disk, dropped = plan.dropped.len(), ms = phase.elapsed().as_millis() as u64, "Phase: write pass planned");
        let super::plan::Plan { dropped, removals, cross_dups, rows_deleted, .. } = plan;
        stats.rows_deleted = rows_deleted;
        for rel in removals.keys() {
            if !parts.iter().any(|(v, _)| partitioner.relative_path(v) == *rel) {
                parts.push((partition_values_of(rel, &spec), Part::default()));
            }
        }
        if ctx.dry_run {
            let mut planned: Vec<String> = parts.iter().map(|(v, _)| partitioner.relative_path(v)).collect();
            planned.sort();
            planned.dedup();
            stats.planned_partitions = planned;
            stats.schema_would_change = document != old_document && !changes.is_empty();
            stats.schema_would_widen = widened;
            stats.schema_changes = changes;
            stats.schema_version = stored.version;
            let would = match (old_watermark, max_ts.map(|m| m.min(read_started))) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            stats.new_watermark = would.map(text::format_millis);
            tracing::info!(collection = %name, docs_read = stats.docs_read, partitions = stats.planned_partitions.len(), widen = widened, "Dry run: nothing written");
            return Ok(stats);
        }
        progress.set_phase(crate::progress::Phase::Writing);
        let phase = std::time::Instant::now();
        let removals = Arc::new(removals);

        let writer = Arc::new(PartitionWriter {
            removals: removals.clone(),
            dropped: Arc::new(dropped),
            ctx: ctx.clone(),
            spec: spec.clone(),
            file_ty,
            hints: hints.clone(),
            in_path: in_path.clone(),
            lease_lost: lease_lost.clone(),
            spill_dir: spill_guard.as_ref().map(|d| d.path().to_path_buf()),
            stage_to: None,
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
        tracing::debug!(collection = %name, partitions = results.len(), ms = phase.elapsed().as_millis() as u64, "Phase: partitions written");
        stats.partitions_unchanged = results.iter().filter(|r| !r.written).count() as u64;
        rejected.extend(results.into_iter().flat_map(|r| r.rejects));
    }
    // (a run whose documents all stayed in their partitions leaves the index as it was: nothing to write)
    if index.needs_save() {
        let phase = std::time::Instant::now();
        state::index::save(lake, &spec, &index, &ctx.run_id, ctx.sync.index_segment_keys).await?;
        tracing::debug!(collection = %name, keys = index.len(), ms = phase.elapsed().as_millis() as u64, "Phase: key index saved");
    }
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

    // Commit: schema, then watermark (only while this run still holds the collection).
    check_lease(&lease_lost, &name)?;
    crate::fault::point("before_schema");
    if schema_dirty || widened {
        stored.rewrite_pending = false;
        lake.put(&schema_path, serde_json::to_vec_pretty(&stored).expect("serialisable").into()).await?;
    }
    crate::fault::point("before_watermark");
    check_lease(&lease_lost, &name)?;
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
            mode: if stats.reconciled {
                "reconcile"
            } else if stats.full_load {
                "full"
            } else {
                "incremental"
            }
            .into(),
            rows_deleted: stats.rows_deleted,
        },
    )
    .await?;
    // The Athena DDL and Glue TableInput next to the schema: derived (rebuilt by `mongolake ddl` at any time),
    // so written after the commit point and never failing the collection. New partitions change enum values
    // and the date range start, so it is refreshed on every run and rewritten only when its text changes.
    match crate::catalog::publish(lake, &spec, &stored, &ctx.catalog).await {
        Ok(changed) => stats.table_definition_changed = changed,
        Err(e) => {
            tracing::warn!(collection = %name, error = %e, "Could not update the table definition next to the schema")
        }
    }
    if let Some(s) = shared {
        s.finish().await;
    }
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

pub(crate) fn check_lease(lost: &AtomicBool, name: &str) -> Result<()> {
    if lost.load(Ordering::SeqCst) {
        return Err(Error::collection(
            name,
            "this run's lease on the collection expired and another run took it over (was this process stalled \
             for longer than [sync] lease_seconds?); stopped before the watermark, the other run completes it",
        ));
    }
    Ok(())
}
