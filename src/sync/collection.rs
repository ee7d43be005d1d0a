//! Syncing one collection: the commit protocol, as a chain of stages.
//!
//! ```text
//!  0 take the collection's lease (sync::run; state::lease)        ── held by another run: skip, nothing touched
//!  ┌ Prepared::prepare ──────────────────────────────────────────────────────────────────────────────────────┐
//!  1 read the state (on S3 with the key index manifest and a listing of the schema folder, at once; the schema
//!    file only when the listing shows it changed since the copy the manifest keeps, see SchemaSource)
//!  2 the recorded layout vs this run's settings (super::relayout::check; the record is not read when the lease
//!    says the run before ended cleanly and the state row it left holds these settings' hash): changed or
//!    relayout pending: fail. Unless that clean end, clean staging/ and rejects of runs that never committed
//!  3 ──► watermark W (none: full load); key index; stored type S; this collection's share of the memory budget
//!  └──────────────────────────────────────────────────────────────────────────────────────────► Prepared ───┘
//!  ┌ Prepared::read ─────────────────────────────────────────────────────────────────────────────────────────┐
//!  4 PASS 1  find({ts >= W - overlap, in every representation}) as raw batches               ✝ after_batch
//!            per document: key, timestamp, partition values; S := S ⊔ type(doc); raw bytes -> partition buffer,
//!            unless the digest of the run before (state::digest; the table listed first, for its files' tags)
//!            says the lake holds this very version: then it is only recorded for the next digest
//!    RECONCILE (optional) keys of every live document vs the key index: deleted keys marked for removal,
//!            missing documents fetched by key into pass 1
//!  └─────────────────────────────────────────────────────────────────────────────────────────────► Read ────┘
//!  ┌ Read::evolve (super::evolve, pure) ─────────────────────────────────────────────────────────────────────┐
//!  5 if S widened: save S with rewrite_pending (write-ahead), and every partition joins pass 2
//!  └──────────────────────────────────────────────────────────────────────────────────────────► Evolved ────┘
//!  ┌ Evolved::plan (super::plan) ────────────────────────────────────────────────────────────────────────────┐
//!    the partitions to write (touched, every one on a widening, those keys moved out of or were deleted
//!    from), the newest version of each key and where it lives now; a lost index segment rebuilds the index
//!    and plans again (once)                                              ── dry run: Planned::dry_run, stop
//!  └──────────────────────────────────────────────────────────────────────────────────────────► Planned ────┘
//!  ┌ Planned::write (super::write) ──────────────────────────────────────────────────────────────────────────┐
//!  6 PASS 2  for each partition:
//!            existing file rows ∪ buffered documents − moved/deleted keys ─► latest per key ─► Arrow(S) ─► Parquet
//!            local disk: write to staging/ (✝ staged), then move over <table>/<partition>/part-0.parquet;
//!            object store: put at that path (✝ staged before it completes; the table listed once, so a new
//!            partition is not read). Atomic for readers; a partition left with no rows is deleted ✝ after_partition
//!  └──────────────────────────────────────────────────────────────────────────────────────────► Written ────┘
//!  ┌ Written::commit ────────────────────────────────────────────────────────────────────────────────────────┐
//!  7 rejects file                                                                             ✝ before_schema
//!  8 schema S (rewrite_pending cleared); key index (its manifest with the digest of the versions read in the
//!    next window, and the copy of S with its tag); table definitions (catalog::publish: files; in Glue mode
//!    the Data Catalog, whose failure fails the collection here)                              ✝ before_watermark
//!  9 append state row with the new watermark ([`next_watermark`])              ◄── the commit point
//!  └──────────────────────────────────────────────────────────────────────────────────► CollectionStats ────┘
//! 10 release the lease (sync::run; after a commit while the next collection starts, waited for before the report)
//! ```
//! Each stage is a type only the stage before can produce, so none can be skipped or run out of order. A
//! shared first load (`--shard`, [`super::shard`]) plans and writes its ranges with the other workers: its
//! `Planned` joins their files instead of writing partitions here.
//!
//! `sync --dry-run` runs 1-5 without writing (no lease, no cleaning, no spill outside the local temp dir), lists
//! what 6 would rewrite and whether 5 would widen the schema, and stops at `Planned`.
//!
//! A crash anywhere (✝ marks the `MONGOLAKE_FAULT` points the tests kill at) before 9 leaves the old watermark,
//! so the next run re-reads the same documents (and more) and, because merging is idempotent (a re-read document
//! replaces its own earlier copy), lands in the same lake. Readers never see a partial file: staging is outside
//! every table and a move replaces a whole file; an object appears only once its PUT or upload completes. A run that lost its lease stops before 6's next file and 9.
use super::buffer::{Part, PartitionBuffers};
use super::context::RunContext;
use super::evolve::{evolve, Evolution};
use super::read::ReadPass;
use super::rejects::{self, Reject};
use super::shard::owner::Shared;
use super::write::{Destination, FileShape, PartitionWriter};
use crate::config::CollectionSpec;
use crate::schema::registry::StoredSchema;
use crate::schema::{text, LakeType};
use crate::state::digest::Skipper;
use crate::state::index::store::SchemaCopy;
use crate::state::index::KeyIndex;
use crate::state::{self, lease, StateRow};
use crate::transform::partition::Partitioner;
use crate::{Error, FastMap, Result};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use super::stats::CollectionStats;

/// Syncs one collection. `lease_lost` is raised if this run's lease on the collection was taken over; the
/// collection then stops before its next partition write and before its watermark. `after_clean`: the lease says
/// the run before ended cleanly ([`lease::Lease::after_clean_end`]), so its leftovers need not be looked for.
///
/// Leftovers of a run that did not commit (its rejects file, staged objects, index segments no manifest lists) are looked for
/// unless `after_clean`, and every [`TIDY_EVERY`]th run of the collection anyway, so that what no lease shows
/// (an older mongolake's failed run deletes its lease) does not outlive a week of nightly runs.
pub async fn sync_collection(
    ctx: Arc<RunContext>,
    spec: CollectionSpec,
    lease_lost: Arc<AtomicBool>,
    after_clean: bool,
) -> Result<CollectionStats> {
    let read = Prepared::prepare(ctx, spec, lease_lost, after_clean).await?.read().await?;
    let planned = read.evolve().await?.plan().await?;
    if planned.base.ctx.dry_run {
        return Ok(planned.dry_run());
    }
    planned.write().await?.commit().await
}

/// Every this many runs of a collection (state rows), its leftovers are looked for even after a clean end.
pub const TIDY_EVERY: usize = 7;

/// The new watermark: the newest timestamp read (never past the moment the read started, so a writer's clock
/// ahead of ours cannot hide later documents), and never behind the old one. The run and the dry run alike.
pub fn next_watermark(old: Option<i64>, max_read: Option<i64>, read_started: i64) -> Option<i64> {
    match (old, max_read.map(|m| m.min(read_started))) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// What every stage carries from the preparation to the commit.
struct Base {
    ctx: Arc<RunContext>,
    spec: CollectionSpec,
    name: String,
    lease_lost: Arc<AtomicBool>,
    stats: CollectionStats,
    /// None: a full load.
    old_watermark: Option<i64>,
    /// The stored schema (its document type is moved into pass 1 and back by the evolution).
    stored: StoredSchema,
    index: KeyIndex,
    /// The schema file as this run last read or wrote it, with its tag, for the key index manifest (object
    /// stores only; see [`state::index::store::SchemaCopy`]).
    schema_copy: Option<SchemaCopy>,
    /// The state file as read (this run's row is appended to it: the lease keeps other runs from writing it).
    state: state::StateFile,
    /// This collection's share of the memory budget, held to the end.
    _memory: tokio::sync::OwnedSemaphorePermit,
    /// Memory freed goes back to the OS at once while a collection holding a large share runs.
    _prompt: Option<super::budget::PromptReturn>,
    /// Look for leftovers of runs that did not commit (see [`sync_collection`]), and read the layout record.
    tidy: bool,
    /// The hash of the layout settings found recorded, for the state row ([`super::relayout::check`]).
    layout: String,
}

/// Stage 1: the lake's state of the collection, read, and staging cleaned.
pub struct Prepared {
    base: Base,
    /// `estimatedDocumentCount` on a full load.
    estimate: Option<u64>,
}

impl Prepared {
    pub async fn prepare(
        ctx: Arc<RunContext>,
        spec: CollectionSpec,
        lease_lost: Arc<AtomicBool>,
        after_clean: bool,
    ) -> Result<Prepared> {
        let name = spec.name();
        let lake = &ctx.lake;
        let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
        let mut stats = CollectionStats::default();
        ctx.progress.set_phase(crate::progress::Phase::Reading);
        // (a listed collection missing from MongoDB fails here, with the closest names; a view reads as one)
        crate::source::find_collection(&ctx.client, &spec).await?;
        // The state; on an object store the key index manifest and the schema folder's listing with it, at once
        // (one round trip, not three; the listing, shared by the collections starting about then, says whether
        // the manifest's copy of the schema is the file: see SchemaCopy). On local disk the manifest and the
        // schema are read where they are used, one after the other (Lake::reads_at_once).
        let (state, prefetched) = match lake.reads_at_once() {
            1 => (state::load(lake, db, coll).await?, None),
            _ => {
                let (state, manifest, tags) = futures::try_join!(
                    state::load(lake, db, coll),
                    state::index::fetch(lake, &spec),
                    ctx.schema_tags(),
                )?;
                (state, Some((manifest, tags)))
            }
        };
        let (manifest, schema_tags) = prefetched.unzip();
        let tidy = !after_clean || state.rows.len() % TIDY_EVERY == 0;
        // Staging: only a run holding the lease writes there, so after a clean end nothing of this collection's
        // is (on S3 the listing of staging/, once a run, is then made only if some other collection needs it).
        if !ctx.dry_run && tidy {
            let staged = ctx.staged.get_or_try_init(|| lake.list_staging()).await?;
            let cleaned = lake.clean_staging(db, coll, staged).await?;
            if cleaned > 0 {
                tracing::warn!(collection = %name, cleaned, "Removed staging objects left by an interrupted run");
            }
        }
        // The table's recorded layout against this row and environment: a change fails here, before any write.
        // (a clean end before and no tidying: the newest state row's word for it, no read of the record)
        let layout = super::relayout::check(&ctx, &spec, &state, !tidy).await?;
        if !ctx.dry_run && tidy {
            let committed = state.rows.iter().map(|r| r.run_id.clone()).collect();
            let stale = rejects::clean_uncommitted(lake, db, coll, &committed).await?;
            if stale > 0 {
                tracing::info!(collection = %name, files = stale, "Removed rejects of runs that did not commit (this run re-reads them)");
            }
        }
        let old_watermark = if ctx.full { None } else { state.watermark() };
        stats.full_load = old_watermark.is_none();
        stats.old_watermark = state.watermark().map(text::format_millis);
        // This collection's share of the memory budget's metadata half (what cannot spill, see MemoryBudget): a
        // run over an existing lake holds key index segments; a first load holds one external sort run at most
        // (sized by estimatedDocumentCount, also the progress bar's ETA). The index is read first (its manifest,
        // or the single file of older versions) to count its keys.
        // (estimatedDocumentCount is collection metadata on MongoDB, but SecantusDB counts: 1.4 s per 1M docs.)
        let phase = std::time::Instant::now();
        // (its size is not known before it is read, and a rebuild reads the table's key columns: memory freed
        // meanwhile goes back at once, see PromptReturn)
        let loading = super::budget::PromptReturn::start();
        let manifest = match manifest {
            Some(m) => m,
            None => state::index::fetch(lake, &spec).await?,
        };
        let index = manifest.open(lake, &spec, &ctx.index_rebuild()).await?;
        tracing::debug!(collection = %name, keys = index.len(), ms = phase.elapsed().as_millis() as u64, "Phase: key index loaded");
        let estimate = if stats.full_load {
            let c = ctx.client.database(db).collection::<bson::Document>(coll);
            let estimate = c.estimated_document_count().await.ok();
            ctx.progress.expected.store(estimate.unwrap_or(0), Ordering::Relaxed);
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
        let memory = ctx.memory.reserve(share).await;
        let prompt = super::budget::PromptReturn::if_large(share);
        drop(loading);
        let (stored, schema_copy) = match schema_tags {
            Some(tags) => {
                let copy = index.schema_copy();
                match schema_source(&tags, &lake.schema_path(db, coll), copy, after_clean) {
                    SchemaSource::Copy(c) => match crate::schema::registry::parse(lake, db, coll, c.text.as_bytes()) {
                        Ok(stored) => (Some(stored), Some(c.clone())),
                        Err(_) => load_tagged(lake, db, coll).await?,
                    },
                    SchemaSource::Absent => (None, None),
                    SchemaSource::Read => load_tagged(lake, db, coll).await?,
                }
            }
            None => (crate::schema::registry::load(lake, db, coll).await?, None),
        };
        let stored = stored.unwrap_or_else(|| {
            // A new schema takes `[sync] type_conflicts`; a stored one keeps the policy it was created with.
            StoredSchema { type_conflicts: ctx.sync.type_conflicts.into(), ..StoredSchema::new(db, coll) }
        });
        let base = Base {
            ctx,
            spec,
            name,
            lease_lost,
            stats,
            old_watermark,
            stored,
            index,
            schema_copy,
            state,
            _memory: memory,
            _prompt: prompt,
            tidy,
            layout,
        };
        Ok(Prepared { base, estimate })
    }

    /// Pass 1 (and a reconcile when one is asked for or due).
    pub async fn read(self) -> Result<Read> {
        let Prepared { mut base, estimate } = self;
        let (ctx, spec, name) = (base.ctx.clone(), base.spec.clone(), base.name.clone());
        let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
        let old_document = base.stored.document.clone();
        let fields = match std::mem::replace(&mut base.stored.document, LakeType::Null) {
            LakeType::Struct { fields } => fields,
            _ => Vec::new(),
        };
        let mut pass = ReadPass::new(&spec, fields, &ctx)?;
        pass.conflicts = base.stored.type_conflicts;
        let phase = std::time::Instant::now();
        let filter = match base.old_watermark {
            Some(w) => {
                crate::source::incremental_query(&spec.timestamp_column, w - ctx.sync.overlap.num_milliseconds())
            }
            None => bson::Document::new(),
        };
        if base.old_watermark.is_some() {
            base.stats.missing_index = missing_index(&ctx, &spec).await;
        }
        // The digest of the run before (see state::digest): the documents it wrote last whose partition files are
        // unchanged since, so that re-reading them costs no read of those files. It needs the table's tags, so the
        // table is listed now instead of at the plan (still once). Not on `--full` (which rewrites from MongoDB
        // whatever the lake holds) nor while a widening's rewrite is pending.
        let digest = base.index.digest().filter(|d| !d.is_empty() && !ctx.full && !base.stored.rewrite_pending);
        let (listing, tags) = match digest {
            Some(digest) => {
                let listing = lake_listing(&ctx, &spec).await?;
                let mut tags = tags_of(&listing);
                let named = digest.partitions.iter().map(|p| p.rel.as_str());
                add_tags(&ctx.lake, &spec, listed_only(&listing, named), &mut tags).await?;
                pass.known = Skipper::new(digest.known(&crate::state::digest::fingerprint(&spec), &tags));
                tracing::debug!(collection = %name, known = pass.known.len(), of = digest.len(), "Digest of the run before");
                (Some(listing), tags)
            }
            None => (None, FastMap::default()),
        };
        let read_started = chrono::Utc::now().timestamp_millis();
        pass.recent.read_started(read_started);
        if let Some(w) = base.old_watermark {
            pass.recent.incremental(w - ctx.sync.overlap.num_milliseconds());
        }
        // A large first load with `--shard`: shared with the other workers in `_id` ranges (see super::shard).
        let first_load = base.stats.full_load && base.index.is_empty() && !base.stored.rewrite_pending;
        let mut shared = match (first_load, estimate) {
            (true, Some(docs)) => super::shard::owner::start(&ctx, &spec, &pass, docs).await?,
            _ => None,
        };
        if let Some(s) = shared.as_mut() {
            s.read(&mut pass).await?;
            let (here, helped) = s.ranges();
            tracing::info!(collection = %name, ranges_here = here, ranges_helped = helped, "Shared first load read");
        } else if base.old_watermark.is_none() && ctx.sync.read_ranges > 1 && spec.key == "_id" {
            // A full load: several cursors over `_id` ranges (see ReadPass::id_ranges).
            let ranges = pass.id_ranges(ctx.sync.read_ranges, estimate).await?;
            tracing::debug!(collection = %name, ranges = ranges.len(), "Full load in _id ranges");
            pass.read_all(ranges).await?;
        } else {
            pass.read(filter).await?;
        }
        tracing::debug!(collection = %name, docs = pass.seq, ms = phase.elapsed().as_millis() as u64, "Phase: read");
        // (`--reconcile`, the schedule, or MongoDB's count differing from the lake's after this pass)
        let why = super::reconcile::reason(
            &pass,
            &mut base.index,
            base.state.last_reconcile(),
            read_started,
            base.stats.full_load,
        )
        .await;
        // A first load read every document: it is the reconcile the schedule asks for, without comparing key
        // sets (a second scan of every key). `--reconcile` still compares.
        let compare_keys = why.is_some() && (ctx.reconcile || !(base.stats.full_load && base.index.is_empty()));
        base.stats.reconciled = why.is_some();
        base.stats.reconcile_reason = why;
        let deleted = if compare_keys {
            // (it visits the index a segment at a time, and fetches what the lake lacks into this pass)
            let r = super::reconcile::reconcile(&mut pass, &mut base.index, ctx.memory.sort_run_entries()).await?;
            base.stats.docs_fetched = r.fetched;
            r.deleted
        } else {
            HashSet::new()
        };
        pass.recent.forget(&deleted);
        let ReadPass {
            fields,
            buffers,
            present,
            max_ts,
            seq,
            rejected,
            hints,
            partitioner,
            masked,
            recent,
            unchanged,
            ..
        } = pass;
        base.stats.masked = masked;
        base.stats.docs_unchanged = unchanged;
        base.stats.docs_read = seq + shared.as_ref().map_or(0, |s| s.helped_docs());
        base.stats.spills = buffers.spills;
        if base.stats.docs_read > 0 {
            check_partition_fields(&spec, &present, &old_document, base.stats.docs_read)?;
        }
        let _ = (db, coll);
        Ok(Read {
            base,
            old_document,
            document: LakeType::Struct { fields },
            rows: ReadRows { buffers, hints, partitioner, listing },
            shared,
            deleted,
            read: ReadMarks { read_started, max_ts, rejected, recent, tags },
        })
    }
}

/// What pass 1 leaves for pass 2: the buffered documents and how to place and encode them.
struct ReadRows {
    buffers: PartitionBuffers,
    hints: Vec<String>,
    partitioner: Partitioner,
    /// The table as listed before pass 1 (when there was a digest to check), which the plan takes.
    listing: Option<Listing>,
}

/// The table's partitions with their files' tags, as listed.
type Listing = Vec<(String, Option<String>)>;

async fn lake_listing(ctx: &RunContext, spec: &CollectionSpec) -> Result<Listing> {
    ctx.lake.list_partition_tags(&spec.database, &spec.collection).await
}

fn tags_of(listing: &Listing) -> FastMap<String, String> {
    listing.iter().filter_map(|(rel, tag)| Some((rel.clone(), tag.clone()?))).collect()
}

/// The partitions of `wanted` that the listing holds without a tag (local disk's).
fn listed_only<'a>(listing: &'a Listing, wanted: impl Iterator<Item = &'a str>) -> Vec<String> {
    let untagged: HashSet<&str> = listing.iter().filter(|(_, t)| t.is_none()).map(|(rel, _)| rel.as_str()).collect();
    wanted.filter(|rel| untagged.contains(rel)).map(str::to_string).collect()
}

/// Reads the tags of `rels`' files on local disk (a stat each) into `tags`; a file not there has none, nor any on
/// an object store (whose tags come from the listing and the PUTs).
async fn add_tags(
    lake: &crate::sink::Lake,
    spec: &CollectionSpec,
    rels: Vec<String>,
    tags: &mut FastMap<String, String>,
) -> Result<()> {
    if rels.is_empty() {
        return Ok(());
    }
    for (rel, tag) in lake.local_tags(&spec.database, &spec.collection, rels).await? {
        match tag {
            Some(tag) => tags.insert(rel, tag),
            None => tags.remove(&rel),
        };
    }
    Ok(())
}

/// What pass 1 leaves for the commit.
struct ReadMarks {
    read_started: i64,
    /// The newest timestamp read.
    max_ts: Option<i64>,
    rejected: Vec<Reject>,
    /// The versions read that the next run may re-read, for its digest.
    recent: crate::state::digest::Recorder,
    /// The table's files' tags: as listed, then as written.
    tags: FastMap<String, String>,
}

/// Stage 2: this run's documents read (and the keys reconcile found deleted).
pub struct Read {
    base: Base,
    /// The stored document type before this run.
    old_document: LakeType,
    /// ... and joined with every document read.
    document: LakeType,
    rows: ReadRows,
    shared: Option<Shared>,
    deleted: HashSet<String>,
    read: ReadMarks,
}

impl Read {
    /// Schema evolution ([`evolve`]), and the write-ahead of a widened schema before any file changes.
    pub async fn evolve(self) -> Result<Evolved> {
        let Read { mut base, old_document, document, rows, shared, deleted, read } = self;
        // Before anything is written (the widened schema's write-ahead below): too many new partitions fail here.
        super::guard::new_partitions(&base.ctx, &base.spec, &rows.buffers, &rows.partitioner).await?;
        let in_path = base.spec.path_fields();
        let mut document = document;
        if base.stored.type_conflicts == crate::schema::Conflicts::Variant {
            crate::schema::lattice::resolve_majorities(&mut document);
        }
        let evolution = evolve(&old_document, document, &in_path, base.stored.rewrite_pending);
        // (pass 1 moved the stored document type out; the evolved one goes back in every case)
        evolution.apply(&mut base.stored, &base.ctx.run_id, text::format_millis(read.read_started));
        if evolution.widened && !base.ctx.dry_run {
            // Write-ahead: the widened schema and the intent to rewrite every file, before the first file changes.
            base.stored.rewrite_pending = true;
            save_schema(&mut base).await?;
        }
        Ok(Evolved { base, evolution, rows, shared, deleted, read })
    }
}

/// Stage 3: the schema this run writes under.
pub struct Evolved {
    base: Base,
    evolution: Evolution,
    rows: ReadRows,
    shared: Option<Shared>,
    deleted: HashSet<String>,
    read: ReadMarks,
}

impl Evolved {
    /// Which partitions pass 2 writes, and which rows (see [`super::plan`]).
    pub async fn plan(self) -> Result<Planned> {
        let Evolved { mut base, evolution, rows, shared, deleted, mut read } = self;
        let ReadRows { mut buffers, hints, partitioner, listing } = rows;
        if let Some(shared) = shared {
            // A shared first load: the ranges read here are encoded like the helpers' and all are joined.
            let rows = super::shard::RangeRows { buffers, hints, partitioner };
            return Ok(Planned { base, evolution, read, write: PlannedWrite::Shared { shared, rows } });
        }
        let (ctx, spec) = (base.ctx.clone(), base.spec.clone());
        let (buffered, spill_guard) = buffers.drain();
        let mut parts: Vec<(String, Part)> =
            buffered.into_iter().map(|(v, part)| (partitioner.relative_path(&v), part)).collect();
        // The table's files are listed once (on an object store a request a thousand files): a partition not
        // listed is new and is not looked for (a GET, or a failed open, a partition), a widening rewrites every
        // listed one, and after the write the list (with what was written and deleted) is the table's, which its
        // definition and the report's sparse check then read instead of listing the table twice more.
        let listing = match listing {
            Some(listing) => listing,
            None => lake_listing(&ctx, &spec).await?,
        };
        read.tags.extend(tags_of(&listing));
        let existing: Vec<String> = listing.into_iter().map(|(rel, _)| rel).collect();
        if evolution.rewrite_all {
            let known: HashSet<String> = parts.iter().map(|(rel, _)| rel.clone()).collect();
            parts.extend(existing.iter().filter(|rel| !known.contains(*rel)).map(|rel| (rel.clone(), Part::default())));
        }
        let listed: Arc<HashSet<String>> = Arc::new(existing.into_iter().collect());
        let phase = std::time::Instant::now();
        let sort_dir = spill_guard.as_ref().map(|d| d.path().to_path_buf());
        let plan = plan_rows(&mut base, &parts, &deleted, sort_dir.as_deref()).await?;
        tracing::debug!(collection = %base.name, on_disk = plan.sorted_on_disk, dropped = plan.dropped.len(), ms = phase.elapsed().as_millis() as u64, "Phase: write pass planned");
        let super::plan::Plan { dropped, removals, cross_dups, rows_deleted, .. } = plan;
        base.stats.rows_deleted = rows_deleted;
        // Partitions that only lose rows (keys moved out, or deleted) are rewritten too.
        let known: HashSet<String> = parts.iter().map(|(rel, _)| rel.clone()).collect();
        let mut emptied: Vec<String> = removals.keys().filter(|rel| !known.contains(*rel)).cloned().collect();
        emptied.sort();
        parts.extend(emptied.into_iter().map(|rel| (rel, Part::default())));
        let rows_moved = removals.values().map(|k| k.len() as u64).sum();
        let writer = PartitionWriter {
            env: ctx.write_env(),
            spec: spec.clone(),
            destination: Destination::Table { listed: Some(listed.clone()) },
            removals: Arc::new(removals),
            dropped: Arc::new(dropped),
            file: Arc::new(FileShape::new(evolution.file_ty.clone(), &spec.key)),
            hints,
            in_path: spec.path_fields(),
            lease_lost: base.lease_lost.clone(),
            spill_dir: sort_dir,
        };
        let write = PlannedWrite::Table { writer, parts, spill_guard, cross_dups, rows_moved, listed };
        Ok(Planned { base, evolution, read, write })
    }
}

/// Plans the rows of `parts` into the key index; a lost or corrupt index segment rebuilds the index from the
/// partition files (they tell where every key lives) and plans again, once.
async fn plan_rows(
    base: &mut Base,
    parts: &[(String, Part)],
    deleted: &HashSet<String>,
    sort_dir: Option<&std::path::Path>,
) -> Result<super::plan::Plan> {
    let ctx = base.ctx.clone();
    let (lake, spec) = (&ctx.lake, &base.spec);
    let rels: Vec<Arc<str>> = parts.iter().map(|(rel, _)| Arc::from(rel.as_str())).collect();
    let segment_keys = ctx.sync.index_segment_keys;
    let mut attempt = 0;
    loop {
        let index = &mut base.index;
        let target = if index.is_empty() && !index.changed() && !ctx.dry_run {
            // A first load: nothing can move, and the index is this run's keys, written as they come sorted.
            let writer = state::index::store::SegmentWriter::new(lake, spec, &ctx.run_id, segment_keys);
            super::plan::IndexTarget::Stream(Box::new(writer), index)
        } else {
            // The index segments the keys fall in, one at a time (see state::index::Updater).
            let prefix = format!("{}-u{attempt}", ctx.run_id);
            let updater = state::index::Updater::new(index, lake, spec, &prefix, segment_keys, !ctx.dry_run);
            super::plan::IndexTarget::Update(Box::new(updater))
        };
        let run_entries = ctx.memory.sort_run_entries();
        match super::plan::plan(parts, &rels, deleted, target, sort_dir, run_entries).await {
            Err(e @ Error::IndexSegment { .. }) if attempt == 0 => {
                base.index = state::index::store::rebuild(lake, spec, &e.to_string(), &ctx.index_rebuild()).await?;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// How pass 2 will write.
enum PlannedWrite {
    /// A shared first load: this worker's ranges encoded into their folder, then every range's files joined.
    Shared { shared: Shared, rows: super::shard::RangeRows },
    /// Each partition merged and replaced in the table.
    Table {
        writer: PartitionWriter,
        parts: Vec<(String, Part)>,
        /// The collection's spill directory (removed once pass 2 is done).
        spill_guard: Option<tempfile::TempDir>,
        cross_dups: u64,
        rows_moved: u64,
        /// The table's partitions before the write.
        listed: Arc<HashSet<String>>,
    },
}

/// Stage 4: what pass 2 will write.
pub struct Planned {
    base: Base,
    evolution: Evolution,
    read: ReadMarks,
    write: PlannedWrite,
}

impl Planned {
    /// `--dry-run`: what would be written, and nothing written.
    pub fn dry_run(self) -> CollectionStats {
        let Planned { base, evolution, read, write } = self;
        let mut stats = base.stats;
        if let PlannedWrite::Table { parts, .. } = &write {
            let mut planned: Vec<String> = parts.iter().map(|(rel, _)| rel.clone()).collect();
            planned.sort();
            planned.dedup();
            stats.planned_partitions = planned;
        }
        stats.schema_would_change = evolution.new_version;
        stats.schema_would_widen = evolution.widened;
        stats.schema_changes = evolution.changes;
        stats.schema_version = base.stored.version;
        let would = next_watermark(base.old_watermark, read.max_ts, read.read_started);
        stats.new_watermark = would.map(text::format_millis);
        tracing::info!(collection = %base.name, docs_read = stats.docs_read, partitions = stats.planned_partitions.len(), widen = evolution.widened, "Dry run: nothing written");
        stats
    }

    /// Pass 2.
    pub async fn write(self) -> Result<Written> {
        let Planned { mut base, evolution, mut read, write } = self;
        let ctx = base.ctx.clone();
        let (lake, spec) = (&ctx.lake, base.spec.clone());
        ctx.progress.set_phase(crate::progress::Phase::Writing);
        let (shared, partitions) = match write {
            PlannedWrite::Shared { shared, rows } => {
                let joined = shared.write(rows, &evolution.document, base.lease_lost.clone()).await?;
                base.stats.rows_written = joined.rows;
                base.stats.partitions_written = joined.partitions;
                base.stats.duplicates_dropped = joined.dups;
                read.rejected.extend(joined.rejects);
                base.index = joined.index;
                (Some(shared), None)
            }
            PlannedWrite::Table { writer, parts, spill_guard, cross_dups, rows_moved, listed } => {
                let phase = std::time::Instant::now();
                let results = Arc::new(writer).write_all(parts).await?;
                drop(spill_guard);
                update_tags(lake, &spec, &mut read, &results).await?;
                // The table now: what was listed, with the partitions written and without those emptied.
                let mut after = Arc::unwrap_or_clone(listed);
                for (rel, r) in &results {
                    match r.rows {
                        0 => after.remove(rel),
                        _ => after.insert(rel.clone()),
                    };
                }
                let mut after: Vec<String> = after.into_iter().collect();
                after.sort();
                let stats = &mut base.stats;
                for (_, r) in results.iter().filter(|(_, r)| r.written) {
                    stats.rows_written += r.rows;
                    stats.rows_replaced += r.replaced;
                    stats.partitions_written += 1;
                }
                stats.duplicates_dropped = cross_dups + results.iter().map(|(_, r)| r.dups).sum::<u64>();
                stats.rows_moved = rows_moved;
                stats.partitions_unchanged = results.iter().filter(|(_, r)| !r.written).count() as u64;
                tracing::debug!(collection = %base.name, partitions = results.len(), ms = phase.elapsed().as_millis() as u64, "Phase: partitions written");
                read.rejected.extend(results.into_iter().flat_map(|(_, r)| r.rejects));
                (None, Some(Arc::new(after)))
            }
        };
        lake.finish_staging(&spec.database, &spec.collection).await?;
        base.stats.table_partitions = partitions;
        Ok(Written { base, evolution, read, shared })
    }
}

/// Stage 5: every partition file written; nothing committed yet.
pub struct Written {
    base: Base,
    evolution: Evolution,
    read: ReadMarks,
    shared: Option<Shared>,
}

impl Written {
    /// Rejects, key index, schema, table definitions, then the watermark (the commit point), while this run
    /// holds the lease.
    pub async fn commit(self) -> Result<CollectionStats> {
        let Written { mut base, evolution, mut read, shared } = self;
        let ctx = base.ctx.clone();
        let (lake, spec, name) = (&ctx.lake, base.spec.clone(), base.name.clone());
        let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
        // The digest for the next run: the versions read in the window it re-reads, in files whose tags are known.
        let next_from = next_watermark(base.old_watermark, read.max_ts, read.read_started)
            .map(|w| w - ctx.sync.overlap.num_milliseconds());
        let recent = std::mem::take(&mut read.recent);
        let digest = next_from.and_then(|from| {
            let tags = &read.tags;
            recent.finish(crate::state::digest::fingerprint(&spec), from, |rel| tags.get(rel).cloned())
        });
        base.index.set_digest(digest.filter(|d| !d.is_empty()));
        let rejected = &read.rejected;
        let stats = &mut base.stats;
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
        rejects::write(lake, db, coll, &ctx.run_id, rejected).await?;

        // Commit: schema, key index, then watermark (only while this run still holds the collection).
        lease::check(&base.lease_lost, &name)?;
        crate::fault::point("before_schema");
        if evolution.dirty || evolution.widened {
            base.stored.rewrite_pending = false;
            save_schema(&mut base).await?;
        }
        // The index's manifest after the schema, so that the copy of the schema it keeps is the file's.
        base.index.set_schema_copy(base.schema_copy.take());
        // (a run whose documents all stayed in their partitions leaves the index as it was: nothing to write)
        if base.index.needs_save() {
            let phase = std::time::Instant::now();
            let segment_keys = ctx.sync.index_segment_keys;
            state::index::save(lake, &spec, &base.index, &ctx.run_id, segment_keys, base.tidy).await?;
            tracing::debug!(collection = %name, keys = base.index.len(), ms = phase.elapsed().as_millis() as u64, "Phase: key index saved");
        }
        // Table definitions (files next to the schema; in Glue mode the Data Catalog, whose failure fails the
        // collection here, before its watermark, so the next run applies it again).
        let partitions = base.stats.table_partitions.clone();
        let published = crate::catalog::publish(
            lake,
            &spec,
            &base.stored,
            &ctx.catalog,
            ctx.glue.as_deref(),
            partitions.as_deref().map(Vec::as_slice),
            // (a full load and a reconcile run read and compare the files: one gone by hand comes back)
            match base.stats.full_load || base.stats.reconciled {
                true => "",
                false => base.state.definitions(),
            },
        )
        .await?;
        base.stats.table_definition_changed = published.files_changed;
        base.stats.glue_applied = published.glue.map(|c| c.to_string());
        crate::fault::point("before_watermark");
        crate::fault::failure("before_watermark", &name)?;
        lease::check(&base.lease_lost, &name)?;
        let stats = &mut base.stats;
        stats.schema_version = base.stored.version;
        stats.schema_changes = evolution.changes;
        let new_watermark = next_watermark(base.old_watermark, read.max_ts, read.read_started);
        stats.new_watermark = new_watermark.map(text::format_millis);
        stats.rows_in_lake = Some(base.index.len() as u64);
        let mode = match (stats.reconciled, stats.full_load) {
            (true, _) => "reconcile",
            (false, true) => "full",
            (false, false) => "incremental",
        };
        let row = StateRow {
            run_id: ctx.run_id.clone(),
            started_at: read.read_started,
            finished_at: chrono::Utc::now().timestamp_millis(),
            watermark: new_watermark,
            rows_read: stats.docs_read,
            rows_written: stats.rows_written,
            status: "ok".into(),
            mode: mode.into(),
            rows_deleted: stats.rows_deleted,
            definitions: published.definitions,
            layout: std::mem::take(&mut base.layout),
        };
        let committed = state::append_to(lake, db, coll, std::mem::take(&mut base.state), row).await?;
        base.stats.committed_state = Some(Arc::new(committed));
        if let Some(s) = shared {
            s.finish().await;
        }
        Ok(base.stats)
    }
}

/// The tags of the files this run wrote, for the digest: from the object store's answers, and on local disk read
/// back (a stat) for the partitions the digest will name. Emptied partitions have none, nor those with rejects.
async fn update_tags(
    lake: &crate::sink::Lake,
    spec: &CollectionSpec,
    read: &mut ReadMarks,
    results: &[(String, super::write::PartitionOutcome)],
) -> Result<()> {
    let named = read.recent.partitions();
    let mut unknown = Vec::new();
    for (rel, r) in results.iter().filter(|(_, r)| r.written) {
        read.tags.remove(rel);
        match (&r.tag, r.rows) {
            (_, 0) => {}
            (Some(tag), _) => {
                read.tags.insert(rel.clone(), tag.clone());
            }
            (None, _) => unknown.push(rel.clone()),
        }
    }
    // (and those the digest names that this run left alone and the listing gave no tag: local disk's)
    let written: HashSet<&str> = results.iter().filter(|(_, r)| r.written).map(|(rel, _)| rel.as_str()).collect();
    unknown.extend(
        named
            .iter()
            .filter(|rel| !written.contains(&***rel) && !read.tags.contains_key(&***rel))
            .map(|r| r.to_string()),
    );
    unknown.retain(|rel| named.contains(rel.as_str()));
    add_tags(lake, spec, unknown, &mut read.tags).await?;
    // A partition whose documents had values rejected keeps no digest entries: a rerun processes them again and
    // lists their rejects under its own run, as without a digest.
    for (rel, _) in results.iter().filter(|(_, r)| !r.rejects.is_empty()) {
        read.tags.remove(rel);
    }
    Ok(())
}

/// Saves the schema, and on an object store keeps the copy of it the key index manifest takes.
async fn save_schema(base: &mut Base) -> Result<()> {
    let lake = &base.ctx.lake;
    let path = lake.schema_path(&base.spec.database, &base.spec.collection);
    let json = crate::schema::registry::to_json(&base.stored);
    let text = String::from_utf8(json.clone()).expect("JSON is UTF-8");
    let tag = lake.put_tagged(&path, json.into()).await?;
    base.schema_copy = tag.filter(|_| lake.local_dir().is_none()).map(|tag| SchemaCopy { tag, text });
    Ok(())
}

/// The schema file read (see [`crate::schema::registry::load_tagged`]), and the copy of it to keep.
async fn load_tagged(
    lake: &crate::sink::Lake,
    db: &str,
    coll: &str,
) -> Result<(Option<StoredSchema>, Option<SchemaCopy>)> {
    Ok(match crate::schema::registry::load_tagged(lake, db, coll).await? {
        None => (None, None),
        Some((stored, text, tag)) => (Some(stored), tag.map(|tag| SchemaCopy { tag, text })),
    })
}

/// Where a sync on an object store takes the stored schema from.
#[derive(Debug, PartialEq)]
enum SchemaSource<'a> {
    /// The key index manifest's copy: the listing shows the file with the copy's tag.
    Copy(&'a SchemaCopy),
    /// None yet: the listing shows no file.
    Absent,
    /// The file, read.
    Read,
}

/// The one rule for trusting a copy of the schema file: the listing (`tags`, made before this collection's
/// state was read) shows the file with the copy's tag, and the lease was found free (`after_clean`: no run or
/// command took the collection since its last committed sync, so none can have written the file after the
/// listing). A file edited by hand is seen by the next listing ([`super::context::SCHEMA_LISTING_FOR`]).
fn schema_source<'a>(
    tags: &super::context::SchemaTags,
    path: &object_store::path::Path,
    copy: Option<&'a SchemaCopy>,
    after_clean: bool,
) -> SchemaSource<'a> {
    if !after_clean {
        return SchemaSource::Read;
    }
    match (tags.get(path.as_ref()), copy) {
        (None, _) => SchemaSource::Absent,
        (Some(Some(tag)), Some(c)) if c.tag == *tag => SchemaSource::Copy(c),
        _ => SchemaSource::Read,
    }
}

/// The command that creates the index an incremental query needs, when no index starts with the timestamp
/// column (the run then scans the whole collection).
async fn missing_index(ctx: &RunContext, spec: &CollectionSpec) -> Option<String> {
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let c = ctx.client.database(db).collection::<bson::Document>(coll);
    match crate::source::timestamp_index(&c, &spec.timestamp_column).await {
        Ok(Some(_)) => None,
        Ok(None) => {
            let hint = crate::source::create_index_hint(db, coll, &spec.timestamp_column);
            tracing::warn!(collection = %spec.name(), create = %hint, "No index starts with the timestamp column: this incremental run scans the whole collection");
            Some(hint)
        }
        Err(e) => {
            tracing::debug!(collection = %spec.name(), error = %e, "Could not list indexes");
            None
        }
    }
}

/// Fails when a partition field is in none of the documents read (nor in the stored schema): a typo in
/// `partition_by`.
fn check_partition_fields(spec: &CollectionSpec, present: &[u64], old_document: &LakeType, docs: u64) -> Result<()> {
    let missing: Vec<&str> = spec
        .partition
        .keys
        .iter()
        .zip(present)
        .filter(|(k, n)| **n == 0 && !old_document_has(old_document, k.path()))
        .map(|(k, _)| k.path())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::collection(
        spec.name(),
        format!(
            "partition field(s) {} exist in none of the {docs} documents read; fix `partition_by` on line {} of collections.csv",
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            spec.line
        ),
    ))
}

fn old_document_has(doc: &LakeType, path: &str) -> bool {
    let first = path.split('.').next().unwrap_or(path);
    matches!(doc, LakeType::Struct { fields } if fields.iter().any(|f| f.source == first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_copy_is_used_only_when_listed_with_its_tag_after_a_clean_end() {
        let path = object_store::path::Path::from("_mongolake/schema/hims/visits.json");
        let copy = SchemaCopy { tag: "\"a\"".into(), text: "{}".into() };
        let listed = |tag: Option<&str>| -> super::super::context::SchemaTags {
            [(path.to_string(), tag.map(str::to_string))].into_iter().collect()
        };
        let none = super::super::context::SchemaTags::default();
        assert_eq!(schema_source(&listed(Some("\"a\"")), &path, Some(&copy), true), SchemaSource::Copy(&copy));
        // Written since the copy (by a sync whose manifest lost the copy, a command, a hand): read.
        assert_eq!(schema_source(&listed(Some("\"b\"")), &path, Some(&copy), true), SchemaSource::Read);
        // No copy (a manifest of an older version), or a listing without tags: read.
        assert_eq!(schema_source(&listed(Some("\"a\"")), &path, None, true), SchemaSource::Read);
        assert_eq!(schema_source(&listed(None), &path, Some(&copy), true), SchemaSource::Read);
        // The lease not found free: something may have written the file after the listing.
        assert_eq!(schema_source(&listed(Some("\"a\"")), &path, Some(&copy), false), SchemaSource::Read);
        assert_eq!(schema_source(&none, &path, Some(&copy), false), SchemaSource::Read);
        // No file listed after a clean end: none yet (a first load reads nothing).
        assert_eq!(schema_source(&none, &path, Some(&copy), true), SchemaSource::Absent);
    }

    #[test]
    fn the_watermark_is_the_newest_read_never_ahead_of_the_read_nor_behind_the_old_one() {
        // A first load: the newest timestamp read.
        assert_eq!(next_watermark(None, Some(100), 1_000), Some(100));
        // Nothing read, nothing known.
        assert_eq!(next_watermark(None, None, 1_000), None);
        // Nothing read: the old watermark stays.
        assert_eq!(next_watermark(Some(50), None, 1_000), Some(50));
        // Newer documents move it on.
        assert_eq!(next_watermark(Some(50), Some(80), 1_000), Some(80));
        // Documents re-read in the overlap window never move it back.
        assert_eq!(next_watermark(Some(50), Some(40), 1_000), Some(50));
        // A writer's clock ahead of ours: capped at the moment the read started.
        assert_eq!(next_watermark(Some(50), Some(5_000), 1_000), Some(1_000));
        assert_eq!(next_watermark(None, Some(5_000), 1_000), Some(1_000));
    }

    #[test]
    fn a_partition_field_in_no_document_names_the_line_to_fix() {
        let text = "database,collection,key,timestamp_column,partition_by\n\n\n\n\n\nhims,visits,_id,modified_at,facility_id/date(created_at)\n";
        let file = crate::config::collections::CollectionsFile::parse(std::path::Path::new("collections.csv"), text)
            .expect("a valid file");
        let spec = file.entries[0].clone();
        assert_eq!(spec.line, 7);
        let e = check_partition_fields(&spec, &[0, 3], &LakeType::empty_struct(), 3).unwrap_err().to_string();
        assert!(e.contains("`facility_id`") && e.contains("line 7 of collections.csv"), "{e}");
        assert!(check_partition_fields(&spec, &[2, 3], &LakeType::empty_struct(), 3).is_ok());
    }
}
