//! The write path (pass 2 of the commit protocol in [`super::collection`]): one partition's existing file and
//! this run's documents for it in, one Parquet file out, replaced atomically.
//!
//! ```text
//!                       ┌──────────────────── PartitionWriter::write (this module: the dispatcher) ───────────┐
//!  Part (buffered rows) │ existing file?                                                                    │
//!  + Destination ──────►│   none, rows in memory ─────────────► new::build          (winners, in key order)  │
//!                       │   none, rows spilled ───────────────► spilled::build      (external sort of rows)  │
//!                       │   held whole ───────────────────────► in_memory::build    (Arrow merge; BSON when  │
//!                       │                                                             the type widened)      │
//!                       │   too large to hold, in key order ──► streamed::merge / streamed::widen           │
//!                       │   too large to hold, not in order ──► unsorted::merge_unsorted (rows sorted on    │
//!                       │                                                             disk, then joined)     │
//!                       └──── Built { bytes, rows, dups, replaced, rejects } ──► place it ──► PartitionOutcome
//! ```
//! Every strategy gives the same bytes for the same rows (the conformance test below says so), so which one
//! ran never shows in the lake. What they share ([`encode`]: the job, the fresh rows, the encoder, the BSON
//! merge) has a module of its own; the strategies never import each other or this dispatcher. Which version of
//! a key wins is [`crate::transform::dedup`]'s rule.
//!
//! The write path knows only what it uses ([`WriteEnv`]): the lake, the memory budget, the encode slots, the
//! progress counters, the run id and the row-group settings; no MongoDB client, no secrets. Where the file goes
//! is a [`Destination`]: a table's partition (replaced atomically: staged and moved on local disk, put in place
//! on an object store) or a shared load's range folder (written where the owner joins it).
//!
//! Encoding is deterministic, so a merge that changes nothing yields identical bytes and the file is left alone:
//! a rerun with no changes rewrites nothing.
#[cfg(test)]
mod conformance;
mod encode;
mod in_memory;
mod new;
mod spilled;
mod streamed;
mod unsorted;

use super::buffer::{MemoryBudget, Part};
use super::rejects::Reject;
use crate::config::CollectionSpec;
use crate::progress::Progress;
use crate::sink::parquet::{Encoded, RowGroups};
use crate::sink::remote::{Existing, RemoteFile};
use crate::sink::upload::{settle, ChunkSink};
use crate::sink::Lake;
use crate::{Error, Result};
pub use encode::FileShape;
use encode::{fresh_rows, Built, FreshRows, Job};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the write path uses of a run, and nothing else.
#[derive(Clone)]
pub struct WriteEnv {
    pub lake: Lake,
    pub run_id: String,
    /// `[sync] memory_budget_mb`, shared by every collection.
    pub memory: Arc<MemoryBudget>,
    /// Partition encodes (CPU-bound, on blocking threads) running at once, across all collections.
    pub encode_slots: Arc<tokio::sync::Semaphore>,
    pub progress: Arc<Progress>,
    pub row_groups: RowGroups,
    /// Partitions of one collection written at once (`[sync] partition_concurrency`).
    pub partition_concurrency: usize,
}

/// Where a partition's new file goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// The table: the existing file (if any) is merged, and the new one replaces it atomically at
    /// `<table>/<partition>/part-0.parquet` (staged and moved on local disk; put in place on an object store,
    /// see [`Lake::stages_writes`]).
    Table {
        /// The partitions that have a file, listed once for the collection (an object store: one LIST a
        /// thousand files instead of a GET a partition). A partition not in it is new and is not read. None:
        /// each partition's file is looked for when it is written (the conformance test's writes).
        listed: Option<Arc<HashSet<String>>>,
    },
    /// A worker's range of a shared first load ([`super::shard`]): no existing file; the file is written under
    /// the range's folder (`parts/<partition>/part-0.parquet`), where the owner joins it.
    Range(Path),
}

/// Where one partition's file is read from, written to first, and ends up.
struct Placement {
    /// The final file.
    target: Path,
    /// Where the new file is written first when it then moves over the target (a table's partition on local
    /// disk); None: written at the target.
    staging: Option<Path>,
    /// The existing file is read and merged.
    merges: bool,
    /// The file is a table's partition (not a range folder's): counted, and a crash point follows it.
    table: bool,
}

impl Placement {
    /// Where the file is streamed or put.
    fn upload_to(&self) -> &Path {
        self.staging.as_ref().unwrap_or(&self.target)
    }
}

impl Destination {
    fn place(&self, env: &WriteEnv, spec: &CollectionSpec, rel: &str) -> Placement {
        let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
        match self {
            Destination::Table { listed } => Placement {
                target: env.lake.partition_file(db, coll, rel),
                staging: env.lake.stages_writes().then(|| env.lake.staging_path(&env.run_id, db, coll, rel)),
                merges: listed.as_ref().is_none_or(|files| files.contains(rel)),
                table: true,
            },
            Destination::Range(dir) => Placement {
                target: crate::sink::layout::range_staged_file(dir, rel),
                staging: None,
                merges: false,
                table: false,
            },
        }
    }
}

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
    /// The new file's tag when the store answered it (an object store's PUT; see [`Lake::list_partition_tags`]).
    pub tag: Option<String>,
}

/// Writes the partitions of one collection: merge, dedup, encode, atomic replace.
pub struct PartitionWriter {
    pub env: WriteEnv,
    pub spec: CollectionSpec,
    pub destination: Destination,
    /// Keys to drop from a partition's existing rows (their newest version lives in another partition).
    pub removals: Arc<HashMap<String, HashSet<String>>>,
    /// Read orders of buffered rows not to write (see [`super::plan::Plan::dropped`]).
    pub dropped: Arc<crate::FastSet<u64>>,
    /// The collection's file type ([`FileShape::new`]).
    pub file: Arc<FileShape>,
    pub hints: Vec<String>,
    pub in_path: Vec<String>,
    /// Raised when this run lost the collection's lease: stop before touching another file.
    pub lease_lost: Arc<AtomicBool>,
    /// The collection's spill directory, when its buffers spilled: a new partition whose rows spilled is sorted
    /// there ([`spilled`]) instead of held.
    pub spill_dir: Option<std::path::PathBuf>,
}

/// A partition of a group ([`PartitionWriter::write_group`]).
struct GroupItem {
    rel: String,
    place: Placement,
    part: Part,
    /// On local disk, where the thread that builds the file stages and moves it.
    local: Option<crate::sink::LocalReplace>,
    context: String,
    /// The existing file, read whole.
    existing: Option<bytes::Bytes>,
}

/// See [`PartitionWriter::inputs`].
struct Inputs {
    dropped: Arc<crate::FastSet<u64>>,
    file: Arc<FileShape>,
    hints: Vec<String>,
    in_path: Vec<String>,
    spec: CollectionSpec,
    row_groups: RowGroups,
    lease_lost: Arc<AtomicBool>,
    /// The collection's name, for errors.
    name: String,
}

impl Inputs {
    fn job<'a>(&'a self, remove: &'a HashSet<String>, context: &'a str) -> Job<'a> {
        Job {
            remove,
            dropped: &self.dropped,
            file_ty: &self.file.ty,
            shape: &self.file,
            hints: &self.hints,
            in_path: &self.in_path,
            spec: &self.spec,
            row_groups: self.row_groups,
            context,
        }
    }
}

/// Small new partitions written by one blocking thread at most ([`PartitionWriter::write_all`]).
const GROUP_MAX: usize = 16;

/// The strategy a partition is written by (see the module docs).
enum Strategy {
    New,
    Spilled(std::path::PathBuf),
    Whole(bytes::Bytes),
    Large(RemoteFile),
}

impl PartitionWriter {
    /// Writes every partition, `partition_concurrency` at once; the outcomes with each partition's path.
    ///
    /// Small partitions (a first load's thousands of files of a few rows, a night's rewrites of them on local
    /// disk) go in groups of up to [`GROUP_MAX`] ([`PartitionWriter::groups`], [`PartitionWriter::write_group`]):
    /// one blocking thread builds the group's files one after the other, so a file costs no hand-off between
    /// threads of its own.
    pub async fn write_all(self: Arc<Self>, parts: Vec<(String, Part)>) -> Result<Vec<(String, PartitionOutcome)>> {
        let concurrency = self.env.partition_concurrency;
        let (grouped, single): (Vec<_>, Vec<_>) = parts.into_iter().partition(|(rel, part)| self.groups(rel, part));
        // (groups small enough that every slot still has work: a table of 40 such partitions writes 5 at a time)
        let size = GROUP_MAX.min(grouped.len().div_ceil(concurrency)).max(1);
        let mut groups: Vec<Vec<(String, Part)>> = Vec::with_capacity(grouped.len().div_ceil(size));
        for item in grouped {
            match groups.last_mut() {
                Some(g) if g.len() < size => g.push(item),
                _ => groups.push(vec![item]),
            }
        }
        // (on an object store a group's requests are in flight together: as many files in flight as before)
        let groups_at_once = match self.env.lake.stages_writes() {
            true => concurrency,
            false => (concurrency / size).max(1),
        };
        let grouped = futures::stream::iter(groups.into_iter().map(|group| {
            let writer = self.clone();
            async move { writer.write_group(group).await }
        }))
        .buffer_unordered(groups_at_once)
        .try_concat();
        let single = futures::stream::iter(single.into_iter().map(|(rel, part)| {
            let writer = self.clone();
            async move { writer.write(rel.clone(), part).await.map(|o| (rel, o)) }
        }))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>();
        let (mut outcomes, single) = futures::future::try_join(grouped, single).await?;
        outcomes.extend(single);
        Ok(outcomes)
    }

    /// Whether partition `rel` is written in a group ([`PartitionWriter::write_all`]): a table's, its rows held
    /// in memory and at most [`SMALL_NEW_BYTES`]; on local disk a new partition's file or a rewritten one's (if
    /// its existing file turns out small enough to hold with the group's), on an object store a new one's only.
    /// (There a rewrite waits for its GET: grouped, a group's files waited for its slowest GET, and the bench's
    /// S3 nights took 3.01-4.11 s against 2.96-3.05 one by one, for the same CPU; `bench/results/
    /// 2026-12-04-small-100000-f3f3a4d*.md` against `...-eccb708.md`.)
    fn groups(&self, rel: &str, part: &Part) -> bool {
        let Destination::Table { listed: Some(files) } = &self.destination else { return false };
        (self.env.lake.stages_writes() || !files.contains(rel))
            && part.byte_size() <= SMALL_NEW_BYTES
            && part.rows_if_in_memory().is_some()
    }

    /// Writes a group of partitions ([`PartitionWriter::groups`]) on one blocking thread: on local disk the
    /// existing files of those the table has read first by one blocking thread, then each partition merged
    /// (or, new, built) in memory by one blocking thread, under one memory reservation (the sum of theirs) and
    /// one encode slot; on local disk that thread also stages and moves each file into place, on an object
    /// store the new files are then put at once. A partition whose file is larger than a [`GROUP_MAX`]th of
    /// what a merge reads whole is written as [`PartitionWriter::write`] writes it (a group holds its files
    /// at once: together no more than one such file).
    async fn write_group(&self, group: Vec<(String, Part)>) -> Result<Vec<(String, PartitionOutcome)>> {
        let env = &self.env;
        let lake = &env.lake;
        let (db, coll) = (self.spec.database.as_str(), self.spec.collection.as_str());
        if !lake.stages_writes() {
            // (a file put in place is visible once complete: a run that lost its lease starts none)
            self.stop_if_lease_lost()?;
        }
        let mut items = Vec::with_capacity(group.len());
        let mut reads = Vec::new();
        for (rel, part) in group {
            let place = self.destination.place(env, &self.spec, &rel);
            let local = match &place.staging {
                Some(staging) => lake.local_replace(staging, &place.target, !place.merges).transpose()?,
                None => None,
            };
            if place.merges {
                let file = lake.local_file(&place.target).transpose()?;
                let file =
                    file.ok_or_else(|| Error::encode(&rel, "a rewritten partition in a group is on local disk"))?;
                reads.push((items.len(), file));
            }
            let context = format!("{db}.{coll} partition {rel}");
            items.push(GroupItem { context, rel, place, part, local, existing: None });
        }
        if reads.is_empty() {
            return self.write_items(items).await;
        }
        let limit = env.memory.whole_file_limit() / GROUP_MAX as u64;
        let read = tokio::task::spawn_blocking(move || {
            reads.into_iter().map(|(i, file)| file.read(limit).map(|r| (i, r))).collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Error::encode("partition task", e))??;
        let mut large = HashSet::new();
        for (i, r) in read {
            match r {
                Some(Ok(bytes)) => items[i].existing = Some(bytes),
                Some(Err(_)) => {
                    large.insert(i);
                }
                None => {}
            }
        }
        let mut outcomes = Vec::with_capacity(large.len());
        let mut kept = Vec::with_capacity(items.len() - large.len());
        for (i, item) in items.into_iter().enumerate() {
            match large.contains(&i) {
                true => outcomes.push((item.rel.clone(), self.write(item.rel, item.part).await?)),
                false => kept.push(item),
            }
        }
        outcomes.extend(self.write_items(kept).await?);
        Ok(outcomes)
    }

    async fn write_items(&self, items: Vec<GroupItem>) -> Result<Vec<(String, PartitionOutcome)>> {
        let env = &self.env;
        let need: u64 = items
            .iter()
            .map(|it| {
                let file = it.existing.as_ref().map_or(0, |b| b.len() as u64 * 4);
                it.part.row_count() * super::budget::WRITE_BYTES_PER_ROW + file
            })
            .sum();
        let memory = env.memory.reserve_write(need).await;
        let slot = env.encode_slots.clone().acquire_owned().await.expect("never closed");
        let prompt = super::budget::PromptReturn::if_large(need);
        let inputs = self.inputs();
        let removals = self.removals.clone();
        let built = tokio::task::spawn_blocking(move || {
            let (_slot, _memory, _prompt) = (slot, memory, prompt);
            let none = HashSet::new();
            let mut out = Vec::with_capacity(items.len());
            for GroupItem { rel, place, part, local, context, existing } in items {
                let job = inputs.job(removals.get(&rel).unwrap_or(&none), &context);
                let mut built = match &existing {
                    Some(bytes) => in_memory::build(Some(bytes.clone()), part, &job, None)?,
                    None => new::build(part, &job, None)?,
                };
                if let (Some(local), Encoded::Memory(bytes)) = (local, &built.bytes) {
                    if built.rows > 0 && !same_bytes(existing.as_ref(), &built.bytes) {
                        stop_if_lease_lost(&inputs.lease_lost, &inputs.name)?;
                        local.write(bytes)?;
                        built.bytes = Encoded::Placed;
                    }
                }
                out.push((rel, place, built, existing));
            }
            Ok::<_, Error>(out)
        })
        .await
        .map_err(|e| Error::encode("partition task", e))??;
        // (placed already on local disk; put at once on an object store)
        futures::future::try_join_all(built.into_iter().map(|(rel, place, built, existing)| async move {
            if place.staging.is_none() {
                self.stop_if_lease_lost()?;
            }
            let outcome = self.place(built, &place, existing.is_some(), existing.as_ref()).await?;
            Ok::<_, Error>((rel, outcome))
        }))
        .await
    }

    /// What a partition's blocking work takes of the writer, owned (for a blocking thread).
    fn inputs(&self) -> Inputs {
        Inputs {
            dropped: self.dropped.clone(),
            file: self.file.clone(),
            hints: self.hints.clone(),
            in_path: self.in_path.clone(),
            spec: self.spec.clone(),
            row_groups: self.env.row_groups,
            lease_lost: self.lease_lost.clone(),
            name: self.spec.name(),
        }
    }

    pub async fn write(&self, rel: String, part: Part) -> Result<PartitionOutcome> {
        let env = &self.env;
        let lake = &env.lake;
        let (db, coll) = (self.spec.database.as_str(), self.spec.collection.as_str());
        let place = self.destination.place(env, &self.spec, &rel);
        let context = format!("{}.{} partition {rel}", db, coll);
        // A file written in place (on an object store, or a range folder's) is visible once complete: a run that
        // lost its lease stops before it starts one; a staged file is checked again before its move.
        if place.staging.is_none() {
            self.stop_if_lease_lost()?;
        }
        // A file too large to hold is merged a row group at a time ([`streamed`]).
        let existing = match place.merges {
            true => lake.existing(&place.target, env.memory.whole_file_limit(), &context).await?,
            false => None,
        };
        let had_file = existing.is_some();
        let before = match &existing {
            Some(Existing::Whole(b)) => Some(b.clone()),
            _ => None,
        };
        // A new partition (nothing to merge with, nothing to compare) and a large file's merge stream their file
        // to the lake as it is encoded instead of holding it ([`crate::sink::upload`]).
        // A small new partition is encoded in memory and put whole (one request, no upload task).
        let small = existing.is_none() && part.byte_size() <= SMALL_NEW_BYTES;
        let (sink, upload) = match existing {
            None | Some(Existing::Large(_)) if !small => {
                let (sink, upload) = match place.staging.is_none() && place.table {
                    true => lake.upload_in_place(&place.target),
                    false => lake.upload(place.upload_to()),
                };
                (Some(sink), Some(upload))
            }
            _ => (None, None),
        };
        let run_rows = env.memory.sort_run_entries();
        let strategy = match (self.spill_dir.clone(), existing) {
            (Some(dir), None) if part.rows_if_in_memory().is_none() => Strategy::Spilled(dir),
            (_, None) => Strategy::New,
            (_, Some(Existing::Whole(bytes))) => Strategy::Whole(bytes),
            (_, Some(Existing::Large(file))) => Strategy::Large(file),
        };
        // Memory first, then a core: a write waiting for memory holds no core. A new partition whose rows
        // spilled streams them from an external sort (one sort run in memory); any other holds its rows. An
        // existing file decoded takes about four times its size; a large one's merge holds a row group of it and
        // the encoder's (about `row_group_mb` each) and a batch of each side.
        let existing_need = match &strategy {
            Strategy::New | Strategy::Spilled(_) => 0,
            Strategy::Whole(b) => b.len() as u64 * 4,
            Strategy::Large(_) => env.row_groups.bytes.min(1 << 40) as u64 * 2 + (16 << 20),
        };
        let mut need = part.row_count() * super::budget::WRITE_BYTES_PER_ROW + existing_need;
        if matches!(strategy, Strategy::Spilled(_)) {
            need = need.min(run_rows as u64 * super::budget::SORT_ENTRY_BYTES + (16 << 20));
        }
        let memory = env.memory.reserve_write(need).await;
        let slot = env.encode_slots.clone().acquire_owned().await.expect("never closed");
        let remove = self.removals.get(&rel).cloned().unwrap_or_default();
        let inputs = self.inputs();
        let spill_dir = self.spill_dir.clone();
        // On local disk a file built in memory is staged and moved into place by the thread that encoded it.
        let local = match (&place.staging, &sink) {
            (Some(staging), None) if place.table => {
                lake.local_replace(staging, &place.target, !place.merges).transpose()?
            }
            _ => None,
        };
        let compare = before.clone();
        let prompt = super::budget::PromptReturn::if_large(need);
        let built = tokio::task::spawn_blocking(move || {
            let (_slot, _memory, _prompt) = (slot, memory, prompt);
            let job = inputs.job(&remove, &context);
            let mut built = match strategy {
                Strategy::New => new::build(part, &job, sink),
                Strategy::Spilled(dir) => spilled::build(part, &job, &dir, run_rows, sink),
                Strategy::Whole(bytes) => in_memory::build(Some(bytes), part, &job, sink),
                Strategy::Large(file) => {
                    build_large(&file, part, &job, sink.expect("opened above"), spill_dir.as_deref())
                }
            }?;
            if let (Some(local), Encoded::Memory(bytes)) = (local, &built.bytes) {
                if built.rows > 0 && !same_bytes(compare.as_ref(), &built.bytes) {
                    stop_if_lease_lost(&inputs.lease_lost, &inputs.name)?;
                    local.write(bytes)?;
                    built.bytes = Encoded::Placed;
                }
            }
            Ok(built)
        })
        .await
        .map_err(|e| Error::encode("partition task", e))
        .and_then(|built| built);
        let built = match upload {
            Some(upload) => settle(upload, built).await?.0,
            None => built?,
        };
        self.place(built, &place, had_file, before.as_ref()).await
    }

    /// Puts a built file where it goes. Encoding is deterministic: identical bytes mean the merge changed
    /// nothing (documents re-read in the overlap window), and the file is left alone.
    async fn place(
        &self,
        built: Built,
        place: &Placement,
        had_file: bool,
        before: Option<&bytes::Bytes>,
    ) -> Result<PartitionOutcome> {
        let lake = &self.env.lake;
        let Built { bytes, rows, dups, replaced, rejects } = built;
        if rows == 0 {
            // Every row left (deleted documents, or all moved elsewhere): the partition goes, file and folder.
            if had_file {
                lake.delete(&place.target).await?;
                crate::fault::point("after_partition");
            }
            return Ok(PartitionOutcome { rows, dups, replaced, written: had_file, rejects, tag: None });
        }
        if same_bytes(before, &bytes) || matches!(bytes, Encoded::Unchanged) {
            return Ok(PartitionOutcome { rows, dups, replaced, written: false, rejects, tag: None });
        }
        let placed = matches!(bytes, Encoded::Placed);
        if let (Some(staging), false, Err(e)) = (&place.staging, placed, self.stop_if_lease_lost()) {
            if matches!(bytes, Encoded::Streamed(_)) {
                lake.delete(staging).await?;
            }
            return Err(e);
        }
        let tag = match (bytes, &place.staging) {
            // Placed by the thread that encoded it.
            (Encoded::Placed, _) => None,
            // Streamed: already complete where it was uploaded.
            (Encoded::Streamed(_), Some(staging)) => {
                lake.move_into_place(staging, &place.target).await.map(|_| None)?
            }
            (Encoded::Streamed(_), None) => None,
            (Encoded::Memory(bytes), _) if place.table => {
                let staging = place.staging.as_ref().unwrap_or(&place.target);
                lake.replace(staging, &place.target, bytes).await?
            }
            (Encoded::Memory(bytes), _) => lake.put_tagged(&place.target, bytes.into()).await?,
            (Encoded::Unchanged, _) => unreachable!("returned above"),
        };
        if place.table {
            crate::fault::point("after_partition");
            self.env.progress.rows_written.fetch_add(rows, Ordering::Relaxed);
        }
        Ok(PartitionOutcome { rows, dups, replaced, written: true, rejects, tag })
    }
}

impl PartitionWriter {
    /// Fails when this run lost the collection's lease to another run: no further file is touched.
    fn stop_if_lease_lost(&self) -> Result<()> {
        stop_if_lease_lost(&self.lease_lost, &self.spec.name())
    }
}

/// A file built in memory with the existing file's own bytes: the merge changed nothing (encoding is
/// deterministic), and the file is left alone.
fn same_bytes(before: Option<&bytes::Bytes>, built: &Encoded) -> bool {
    matches!((before, built), (Some(old), Encoded::Memory(new)) if old == new)
}

fn stop_if_lease_lost(lease_lost: &AtomicBool, collection: &str) -> Result<()> {
    match lease_lost.load(Ordering::SeqCst) {
        false => Ok(()),
        true => {
            Err(Error::collection(collection, "lease lost to another run; stopped before rewriting another partition"))
        }
    }
}

/// A new partition whose buffered documents are at most this large is encoded in memory and put in one request;
/// a larger one streams to the lake as it is encoded ([`crate::sink::upload`]).
const SMALL_NEW_BYTES: u64 = 1 << 20;

/// A partition whose existing file is too large to hold: merged a row group at a time, at the Arrow level when
/// the file has the collection's type, else (a widening) through BSON as a small file's widening is. A file not
/// in key order (written by other means) has its rows sorted on disk first ([`unsorted`]), in `spill_dir` when
/// the collection has one.
fn build_large(
    file: &RemoteFile,
    part: Part,
    job: &Job<'_>,
    sink: ChunkSink,
    spill_dir: Option<&std::path::Path>,
) -> Result<Built> {
    let (fresh_bytes, rows) = fresh_rows(part, job.dropped)?;
    let ty = file.lake_type()?;
    let fresh = FreshRows::new(&fresh_bytes, &rows);
    if !unsorted::in_key_order(file, &ty, &job.spec.key)? {
        tracing::info!(file = %job.context, "The partition file is not in key order: sorting its rows on local disk to merge them");
        // (its rows sorted held at once: about a row group's bytes, as the streamed merges hold)
        let run_bytes = (job.row_groups.bytes as u64).clamp(4 << 20, 256 << 20);
        return unsorted::merge_unsorted(file, &ty, &fresh, job, sink, spill_dir, run_bytes);
    }
    let streamed = if &ty == job.file_ty && encode::arrow_mergeable(&file.schema(), job.file_ty, job) {
        streamed::merge(file, &fresh, job, sink)?
    } else {
        // A file of an older type that the collection's only extends: left alone when this run re-read its rows.
        let extends =
            !crate::schema::needs_rewrite(&ty, job.file_ty) && encode::arrow_mergeable(&file.schema(), &ty, job);
        if job.remove.is_empty() && extends {
            if let Some(built) = streamed::unchanged_file(file, &fresh, &Job { file_ty: &ty, ..*job })? {
                return Ok(built);
            }
        }
        streamed::widen(file, &ty, &fresh, job, sink)?
    };
    if let Some(built) = streamed {
        return Ok(built);
    }
    // Found out of order while streaming: the in-memory merge decides.
    drop(fresh);
    in_memory::build_from(Some(file.whole()?), &fresh_bytes, rows, job, None)
}
