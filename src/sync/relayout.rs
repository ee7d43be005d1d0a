//! Layout changes: detected by every sync ([`check`]), applied by `mongolake relayout` ([`run`]) from the lake's
//! own files, never mixed.
//!
//! A table's layout is its `partition_by`, the time zone of its `date(...)` keys, its key and its timestamp
//! column, recorded in the lake ([`crate::state::layout`]). A sync whose collections.csv row or environment
//! differs from the record fails that collection (the others sync) with the old and new values and the
//! command below; a lake without a record adopts the run's settings.
//!
//! ```text
//!  relayout (holding the collection's lease; no MongoDB)
//!  1 record.pending = { to: new settings, phase: writing }                ── write-ahead      ✝ relayout_intent
//!  2 every row of every partition file read back (partition columns from the old path), its new partition
//!    computed with the new spec and zone, its key with the new key; rows buffered per new partition (spilled
//!    past the memory budget) and written by the write path to relayout/<db>/<coll>/<id>/parts/  (outside the
//!    table, which is untouched so far: a crash here starts over)                             ✝ relayout_written
//!  3 record.pending.phase = moving { the new partitions }   ── from here a rerun carries on, never starts over
//!  4 each new file moved over <table>/<partition>/part-0.parquet                              ✝ relayout_moved
//!    then every table file of a partition not in the new set deleted                          ✝ relayout_deleted
//!  5 key index rebuilt from the new files (with the new key); schema history entry; a state row (mode relayout)
//!                                                                                     ✝ relayout_before_record
//!  6 record.settings = new, pending cleared (one write: the commit point); table definition republished
//! ```
//! While `pending` is set, a sync of the collection refuses to run. A relayout that finds one pending (a crash)
//! in the moving phase finishes it with the settings it recorded, whatever collections.csv says now; one still
//! writing (the table untouched) is abandoned when the settings changed since, else started over. A relayout
//! that fails while writing (a row without the new key, say) withdraws its intent.
//!
//! What needs a rewrite: `partition_by`, the time zone (of a table with a `date(...)` key) and the key (files
//! are kept in key order, one row per key: every row needs the new key, and no two may share one; the command
//! refuses before it changes the table otherwise). A `timestamp_column` change alone rewrites nothing: it only decides which documents a
//! run reads, so the command records it with a state row without a watermark, and the next sync re-reads the
//! whole collection (merged, never duplicated).
use super::buffer::{MemoryBudget, Part, PartitionBuffers};
use super::context::RunContext;
use super::write::{Destination, FileShape, PartitionWriter, WriteEnv};
use crate::config::{CollectionSpec, Config, PartitionKey};
use crate::schema::registry::{SchemaChange, StoredSchema};
use crate::schema::{arrow as sarrow, file_type, text, LakeType};
use crate::sink::remote::Existing;
use crate::sink::Lake;
use crate::state::layout::{self, Difference, LayoutRecord, LayoutSettings, Pending, Phase};
use crate::state::{self, lease, StateFile, StateRow};
use crate::transform::partition::{parse_relative_path, Partitioner};
use crate::transform::timezone::LakeTimeZone;
use crate::transform::{get_path, timestamp};
use crate::{Error, Result};
use arrow::array::{Array, StructArray};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// How an operator runs the relayout of `spec` (named in every refusal).
pub fn command(env: &str, config_dir: &std::path::Path, spec: &CollectionSpec) -> String {
    let dir = match config_dir.to_str() {
        Some(".") | Some("") | None => String::new(),
        Some(d) => format!(" --config-dir {d}"),
    };
    format!("mongolake relayout --env {env}{dir} --collection {}", spec.name())
}

/// Before a sync touches a collection: the recorded layout against this run's settings. No record: the current
/// settings are adopted (and recorded, unless a dry run). A relayout pending, or a setting changed, fails the
/// collection with what differs and the command that applies it. Returns the settings' hash for this run's state
/// row ([`layout::settings_hash`]): the record holds them, nothing pending.
///
/// `trust_state`: the run before ended cleanly (the lease says so) and this is not a tidying run. Then a state
/// whose newest row holds the same hash is taken at its word and the record is not read: that row's run found the
/// record so, and a run that changes the record (a relayout) leaves its lease marked and a row without a hash.
pub async fn check(ctx: &RunContext, spec: &CollectionSpec, state: &StateFile, trust_state: bool) -> Result<String> {
    let (lake, name) = (&ctx.lake, spec.name());
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let now = layout::settings_of(spec, ctx.sync.timezone);
    let hash = layout::settings_hash(&now);
    if trust_state && state.layout() == hash {
        return Ok(hash);
    }
    let adopt = |why: &'static str| adopt(ctx, spec, &now, why);
    let Some(record) = layout::load(lake, db, coll).await? else {
        match state.rows.is_empty() {
            true => adopt("Recorded the table's layout").await?,
            false => adopt("The lake had no record of this table's layout (written by an older mongolake): adopted the current settings and recorded them").await?,
        };
        return Ok(hash);
    };
    let cmd = command(&ctx.env_name, &ctx.config_dir, spec);
    if let Some(p) = &record.pending {
        return Err(Error::collection(
            name,
            format!(
                "a relayout of this table (started {} to {}) is unfinished, so the table may hold files of both \
                 layouts; this collection was not synced. Finish it with `{cmd}` (it carries on where it stopped)",
                p.started_at,
                layout::describe(&layout::differences(&record.settings, &p.to)),
            ),
        ));
    }
    let diffs = layout::differences(&record.settings, &now);
    if diffs.is_empty() {
        if record.settings != now {
            // (a new time zone for a table without a date(...) key: its files do not depend on it)
            adopt("Recorded the new time zone (the table has no date(...) key: nothing to re-lay)").await?;
        }
        return Ok(hash);
    }
    // Nothing written yet (a first run that failed before its first file): nothing to mix.
    if state.rows.is_empty() && lake.list_partitions(db, coll).await?.is_empty() {
        adopt("The table is empty: recorded its new layout").await?;
        return Ok(hash);
    }
    Err(Error::collection(name, refusal(spec, &ctx.env_name, &diffs, &cmd)))
}

/// Records `now` as the table's layout (unless a dry run), and says so.
async fn adopt(ctx: &RunContext, spec: &CollectionSpec, now: &LayoutSettings, why: &str) -> Result<()> {
    if !ctx.dry_run {
        layout::save(&ctx.lake, &LayoutRecord::new(spec, now.clone(), &ctx.run_id)).await?;
    }
    tracing::info!(collection = %spec.name(), partition_by = %now.partition_by, timezone = %now.timezone, key = %now.key, timestamp_column = %now.timestamp_column, "{why}");
    Ok(())
}

fn refusal(spec: &CollectionSpec, env: &str, diffs: &[Difference], cmd: &str) -> String {
    let only_timestamp = diffs.iter().all(|d| d.setting == "timestamp_column");
    let effect = if only_timestamp {
        "it rewrites no file: it records the new column, and the next sync re-reads the whole collection"
    } else {
        "it re-lays the table from the lake's own files, no reload from MongoDB"
    };
    let zone = if diffs.iter().any(|d| d.setting == "timezone") {
        format!(" and environments/{env}.toml")
    } else {
        String::new()
    };
    format!(
        "the table's layout differs from collections.csv line {}{zone}: {}. Syncing would mix two layouts in one \
         table, so this collection was not synced. Apply the change with `{cmd}` ({effect}), or put the old value \
         back",
        spec.line,
        layout::describe(diffs)
    )
}

/// What one collection's relayout did, for the command's output.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub name: String,
    /// What changed (empty: nothing to do).
    pub changes: String,
    pub rows_read: u64,
    pub rows_written: u64,
    pub partitions_before: usize,
    pub partitions_after: usize,
    /// A relayout an earlier, interrupted command left pending was finished.
    pub resumed: bool,
    pub note: Option<String>,
}

impl Summary {
    pub fn to_text(&self) -> String {
        if let Some(n) = &self.note {
            return format!("{}: {n}", self.name);
        }
        let resumed = if self.resumed { " (finished an interrupted relayout)" } else { "" };
        format!(
            "{}: re-laid {} rows from {} partitions into {} rows in {} partitions{resumed}: {}",
            self.name, self.rows_read, self.partitions_before, self.rows_written, self.partitions_after, self.changes
        )
    }
}

/// `mongolake relayout`: each named collection in turn; a failure is reported and the others still run.
pub async fn run(config: &Config) -> Vec<(String, Result<Summary>)> {
    let env = &config.environment;
    let lake = match Lake::open_tuned(&env.lake, &env.sync.store) {
        Ok(l) => l,
        Err(e) => return vec![("lake".into(), Err(e))],
    };
    let mut out = Vec::new();
    for spec in &config.collections.entries {
        let result = relayout_leased(config, &lake, spec).await;
        out.push((spec.name(), result));
        crate::release_free_memory();
    }
    out
}

async fn relayout_leased(config: &Config, lake: &Lake, spec: &CollectionSpec) -> Result<Summary> {
    let sync = &config.environment.sync;
    let id = super::new_run_id();
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let held = lease::take_for_command(lake, db, coll, &id, sync.lease, "the relayout").await?;
    let outcome = relayout(config, lake, spec, &id, held.lost_flag()).await;
    // (a relayout leaves the marker whatever its outcome: the next sync reads the layout record again)
    held.release(false).await;
    outcome
}

async fn relayout(
    config: &Config,
    lake: &Lake,
    spec: &CollectionSpec,
    id: &str,
    lost: Arc<AtomicBool>,
) -> Result<Summary> {
    let sync = &config.environment.sync;
    let name = spec.name();
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let now = layout::settings_of(spec, sync.timezone);
    let mut summary = Summary { name: name.clone(), ..Summary::default() };
    let Some(mut record) = layout::load(lake, db, coll).await? else {
        layout::save(lake, &LayoutRecord::new(spec, now, id)).await?;
        summary.note = Some(
            "no layout was recorded (a lake written before layout records, or not synced yet): recorded the \
             current settings; nothing to re-lay"
                .into(),
        );
        return Ok(summary);
    };
    // An intent whose new files were not all written left the table untouched: abandoned for the settings of now.
    if let Some(p) = record.pending.clone().filter(|p| p.phase == Phase::Writing && p.to != now) {
        tracing::warn!(collection = %name, relayout = %p.id, pending = %layout::describe(&layout::differences(&record.settings, &p.to)), "Abandoning an interrupted relayout to other settings (its files were not all written; the table is untouched)");
        lake.remove_tree(&lake.layout().relayout_root(db, coll)).await?;
        record.pending = None;
        layout::save(lake, &record).await?;
    }
    let pending = match record.pending.clone() {
        Some(p) => {
            if p.to != now {
                tracing::warn!(collection = %name, pending = %layout::describe(&layout::differences(&record.settings, &p.to)), "A relayout is pending with other settings than collections.csv and the environment now give: finishing it first (run the command again for the new ones)");
            }
            tracing::info!(collection = %name, relayout = %p.id, "Finishing an interrupted relayout");
            summary.resumed = true;
            p
        }
        None => {
            if layout::differences(&record.settings, &now).is_empty() {
                if record.settings != now {
                    record.settings = now;
                    layout::save(lake, &record).await?;
                }
                summary.note = Some(
                    "the table is already in the layout collections.csv and the environment give; nothing to do".into(),
                );
                return Ok(summary);
            }
            let p = Pending {
                id: id.to_string(),
                started_at: text::format_millis(chrono::Utc::now().timestamp_millis()),
                to: now,
                phase: Phase::Writing,
            };
            record.pending = Some(p.clone());
            layout::save(lake, &record).await?;
            crate::fault::point("relayout_intent");
            p
        }
    };
    let from = record.settings.clone();
    let diffs = layout::differences(&from, &pending.to);
    summary.changes = layout::describe(&diffs);
    let (old_spec, new_spec) = (layout::spec_with(spec, &from)?, layout::spec_with(spec, &pending.to)?);
    let new_tz = layout::timezone_of(&name, &pending.to)?;
    let rewrite = diffs.iter().any(|d| d.setting != "timestamp_column");
    let stored = crate::schema::registry::load(lake, db, coll).await?.unwrap_or_else(|| StoredSchema::new(db, coll));
    let memory = MemoryBudget::new(sync.memory_budget_bytes);
    let dir = lake.layout().relayout_dir(db, coll, &pending.id);
    summary.partitions_before = lake.list_partitions(db, coll).await?.len();
    if rewrite {
        let (partitions, rows_read, rows_written) = match &pending.phase {
            Phase::Moving { partitions, rows_read, rows_written } => (partitions.clone(), *rows_read, *rows_written),
            Phase::Writing => {
                // (what an interrupted attempt staged: this one starts over from the untouched table)
                lake.remove_tree(&lake.layout().relayout_root(db, coll)).await?;
                let env = WriteEnv {
                    lake: lake.clone(),
                    run_id: pending.id.clone(),
                    memory: memory.clone(),
                    encode_slots: Arc::new(tokio::sync::Semaphore::new(
                        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
                    )),
                    progress: Arc::new(super::Progress::default()),
                    row_groups: sync.row_groups(),
                    partition_concurrency: sync.partition_concurrency,
                };
                let written = write_new_layout(&env, &old_spec, &new_spec, new_tz, &stored, dir.clone(), lost.clone());
                let relaid = match written.await {
                    Ok(r) => r,
                    Err(e) => {
                        // Nothing of the table changed: the intent is withdrawn, so syncs name the change again.
                        lake.remove_tree(&lake.layout().relayout_root(db, coll)).await?;
                        record.pending = None;
                        layout::save(lake, &record).await?;
                        return Err(e);
                    }
                };
                crate::fault::point("relayout_written");
                let phase = Phase::Moving {
                    partitions: relaid.partitions.clone(),
                    rows_read: relaid.rows_read,
                    rows_written: relaid.rows_written,
                };
                record.pending = Some(Pending { phase, ..pending.clone() });
                layout::save(lake, &record).await?;
                (relaid.partitions, relaid.rows_read, relaid.rows_written)
            }
        };
        (summary.rows_read, summary.rows_written, summary.partitions_after) =
            (rows_read, rows_written, partitions.len());
        move_into_table(lake, &new_spec, &dir, &partitions, &lost).await?;
        let how = crate::state::index::store::Rebuild {
            run_entries: memory.sort_run_entries(),
            whole_limit: memory.whole_file_limit(),
            segment_keys: sync.index_segment_keys,
            write: true,
        };
        let index = crate::state::index::store::rebuild(lake, &new_spec, "", &how).await?;
        state::index::save(lake, &new_spec, &index, &pending.id, sync.index_segment_keys, true).await?;
        lake.remove_tree(&lake.layout().relayout_root(db, coll)).await?;
    } else {
        summary.partitions_after = summary.partitions_before;
    }
    let stored = record_in_schema(lake, stored, &pending, &summary.changes).await?;
    record_in_state(lake, spec, &pending, &diffs, &summary).await?;
    lease::check(&lost, &name)?;
    crate::fault::point("relayout_before_record");
    record.settings = pending.to.clone();
    record.pending = None;
    record.recorded_at = text::format_millis(chrono::Utc::now().timestamp_millis());
    record.recorded_by = pending.id.clone();
    layout::save(lake, &record).await?;
    // (the table definition files; in Glue mode the next sync applies the new layout to the Data Catalog)
    if let Err(e) = crate::catalog::publish(lake, &new_spec, &stored, &config.environment.catalog, None, None, "").await
    {
        tracing::warn!(collection = %name, error = %e, "Could not update the table definition next to the schema");
    }
    if !rewrite {
        summary.note =
            Some(format!("{}; no file rewritten: the next sync re-reads the whole collection", summary.changes));
    }
    Ok(summary)
}

/// The schema's history says when and how the table was re-laid (the partition columns changed; the document
/// type did not). Once per relayout, also when it is finished by a rerun.
async fn record_in_schema(lake: &Lake, mut stored: StoredSchema, p: &Pending, changes: &str) -> Result<StoredSchema> {
    if stored.version == 0 || stored.history.last().is_some_and(|h| h.run_id == p.id) {
        return Ok(stored);
    }
    stored.version += 1;
    stored.history.push(SchemaChange {
        version: stored.version,
        run_id: p.id.clone(),
        changed_at: text::format_millis(chrono::Utc::now().timestamp_millis()),
        changes: vec![format!("relayout: {changes}")],
    });
    let path = lake.schema_path(&stored.database, &stored.collection);
    lake.put(&path, crate::schema::registry::to_json(&stored).into()).await?;
    Ok(stored)
}

/// A state row for the relayout (mode `relayout`), once. It keeps the watermark, except after a timestamp
/// column change: then it has none, and the next sync reads everything (the old column's watermark says nothing
/// about the new one).
async fn record_in_state(
    lake: &Lake,
    spec: &CollectionSpec,
    p: &Pending,
    diffs: &[Difference],
    s: &Summary,
) -> Result<()> {
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let st = state::load(lake, db, coll).await?;
    if st.rows.last().is_some_and(|r| r.run_id == p.id) {
        return Ok(());
    }
    let watermark = match diffs.iter().any(|d| d.setting == "timestamp_column") {
        true => None,
        false => st.watermark(),
    };
    let started = timestamp::parse_iso(&p.started_at).unwrap_or(0);
    let row = StateRow {
        run_id: p.id.clone(),
        started_at: started,
        finished_at: chrono::Utc::now().timestamp_millis(),
        watermark,
        rows_read: s.rows_read,
        rows_written: s.rows_written,
        status: "ok".into(),
        mode: "relayout".into(),
        rows_deleted: 0,
        // (this run's definitions are not recorded: the next sync reads the files and compares; nor is the
        // layout: the next sync reads the record this relayout changed, see `check`)
        definitions: String::new(),
        layout: String::new(),
    };
    state::append(lake, db, coll, row).await
}

/// The new layout's files moved into the table, then the old layout's files that no new one replaced deleted.
/// Idempotent: a file already moved is skipped, so a rerun after a crash carries on.
async fn move_into_table(
    lake: &Lake,
    spec: &CollectionSpec,
    dir: &object_store::path::Path,
    partitions: &[String],
    lost: &AtomicBool,
) -> Result<()> {
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    for rel in partitions {
        lease::check(lost, &spec.name())?;
        let staged = crate::sink::layout::range_staged_file(dir, rel);
        match lake.rename(&staged, &lake.partition_file(db, coll, rel)).await {
            Ok(()) => crate::fault::point("relayout_moved"),
            Err(Error::Store { source: object_store::Error::NotFound { .. }, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let keep: std::collections::HashSet<&str> = partitions.iter().map(String::as_str).collect();
    for rel in lake.list_partitions(db, coll).await? {
        if !keep.contains(rel.as_str()) {
            lease::check(lost, &spec.name())?;
            lake.delete(&lake.partition_file(db, coll, &rel)).await?;
            crate::fault::point("relayout_deleted");
        }
    }
    Ok(())
}

/// What step 2 wrote.
struct Relaid {
    /// The new layout's partitions, sorted.
    partitions: Vec<String>,
    rows_read: u64,
    rows_written: u64,
}

/// A top-level partition field of the old layout: its key's position and the document type's field.
#[derive(Clone)]
struct PathField {
    key: usize,
    path: String,
    ty: LakeType,
}

/// Step 2: every row of the table read back and written, in the new layout, under `dir` (see the module docs).
async fn write_new_layout(
    env: &WriteEnv,
    from: &CollectionSpec,
    to: &CollectionSpec,
    tz: LakeTimeZone,
    stored: &StoredSchema,
    dir: object_store::path::Path,
    lost: Arc<AtomicBool>,
) -> Result<Relaid> {
    let (lake, name) = (&env.lake, to.name());
    let (db, coll) = (to.database.as_str(), to.collection.as_str());
    let fields = match &stored.document {
        LakeType::Struct { fields } => fields.clone(),
        _ => Vec::new(),
    };
    let in_path = to.path_fields();
    let file_ty = file_type(&stored.document, &in_path);
    if let LakeType::Struct { fields: files } = &file_ty {
        if let Some(k) = to.partition.keys.iter().find(|k| files.iter().any(|f| f.column == k.column())) {
            return Err(Error::collection(
                &name,
                format!(
                    "the new partition column `{}` is also a column of the files; alias it (`NAME=...`)",
                    k.column()
                ),
            ));
        }
    }
    // The old layout's partition fields live in its paths, not its files: put back into each row from there.
    let restore: Vec<PathField> = from
        .partition
        .keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| match k {
            PartitionKey::Field { path, .. } if !path.contains('.') => Some(PathField {
                key: i,
                path: path.clone(),
                ty: fields.iter().find(|f| f.source == *path).map_or(LakeType::String, |f| f.ty.clone()),
            }),
            _ => None,
        })
        .collect();
    let partitioner = Partitioner::new(&to.partition, tz);
    let mut buffers = PartitionBuffers::new(env.memory.clone());
    let mut seq = 0u64;
    // A new key must be unique: the old index kept the old one so, nothing vouches for the new one (the keys are
    // held to check, about 60 B each).
    let mut seen = (from.key != to.key).then(crate::FastSet::<String>::default);
    let rels = lake.list_partitions(db, coll).await?;
    for rel in &rels {
        let values = parse_relative_path(rel, &from.partition.keys).ok_or_else(|| {
            Error::collection(
                &name,
                format!(
                    "partition folder `{rel}` does not follow the recorded partition_by `{}`; nothing was changed",
                    layout::canonical_partition_by(&from.partition)
                ),
            )
        })?;
        let fill: Vec<(String, Option<bson::Bson>)> =
            restore.iter().map(|f| (f.path.clone(), values[f.key].as_deref().map(|t| typed(t, &f.ty)))).collect();
        let context = format!("{name} partition {rel}");
        let Some(existing) =
            lake.existing(&lake.partition_file(db, coll, rel), env.memory.whole_file_limit(), &context).await?
        else {
            continue;
        };
        let (partitioner, to) = (partitioner.clone(), to.clone());
        (buffers, seq, seen) = tokio::task::spawn_blocking(move || {
            let mut rows = Rows { buffers, seq, seen };
            read_rows(existing, &fill, &partitioner, &to, &mut rows, &context)
                .map(|()| (rows.buffers, rows.seq, rows.seen))
        })
        .await
        .map_err(|e| Error::encode("relayout task", e))??;
    }
    let (drained, guard) = buffers.drain();
    let parts: Vec<(String, Part)> = drained.into_iter().map(|(v, p)| (partitioner.relative_path(&v), p)).collect();
    let writer = PartitionWriter {
        env: env.clone(),
        spec: to.clone(),
        destination: Destination::Range(dir),
        removals: Arc::default(),
        dropped: Arc::default(),
        file: Arc::new(FileShape::new(file_ty, &to.key)),
        // (values read back from the files already have the lake's types: nothing to normalise)
        hints: Vec::new(),
        in_path,
        lease_lost: lost,
        spill_dir: guard.as_ref().map(|d| d.path().to_path_buf()),
    };
    let results = Arc::new(writer).write_all(parts).await?;
    drop(guard);
    let rejects: usize = results.iter().map(|(_, r)| r.rejects.len()).sum();
    if rejects > 0 {
        return Err(Error::collection(
            &name,
            format!("{rejects} values of the lake's files would not fit their columns in the new layout; the table was not changed"),
        ));
    }
    let mut partitions: Vec<String> = results.iter().filter(|(_, r)| r.rows > 0).map(|(rel, _)| rel.clone()).collect();
    partitions.sort();
    let rows_written = results.iter().map(|(_, r)| r.rows).sum();
    if rows_written < seq {
        // (only a lake that already held a key twice, as layouts mixed by an older mongolake do)
        tracing::warn!(collection = %name, rows = seq, kept = rows_written, "Rows sharing a key: the newest of each kept");
    }
    Ok(Relaid { partitions, rows_read: seq, rows_written })
}

/// Where step 2 puts the rows it reads back.
struct Rows {
    buffers: PartitionBuffers,
    /// Rows read so far (also their read order).
    seq: u64,
    /// The new keys seen, when the key changes.
    seen: Option<crate::FastSet<String>>,
}

/// Every row of one partition file, with its old partition fields put back, into `rows` by new partition.
fn read_rows(
    existing: Existing,
    fill: &[(String, Option<bson::Bson>)],
    partitioner: &Partitioner,
    to: &CollectionSpec,
    rows: &mut Rows,
    context: &str,
) -> Result<()> {
    let (batches, ty): (crate::sink::remote::Batches, LakeType) = match existing {
        Existing::Whole(bytes) => {
            let (batches, ty) = crate::sink::parquet::decode(bytes, context)?;
            (Box::new(batches.into_iter().map(Ok)), ty)
        }
        Existing::Large(file) => (file.batches(None, None)?, file.lake_type()?),
    };
    for batch in batches {
        let s = StructArray::from(batch?);
        for row in 0..s.len() {
            let mut doc = match sarrow::to_bson(&s, row, &ty) {
                Some(bson::Bson::Document(d)) => d,
                _ => bson::Document::new(),
            };
            for (path, v) in fill {
                match v {
                    Some(v) => doc.insert(path.clone(), v.clone()),
                    None => doc.remove(path),
                };
            }
            let raw = bson::RawDocumentBuf::try_from(&doc).map_err(|e| Error::encode(context, e))?;
            let key = get_path(&raw, &to.key).map(text::render).ok_or_else(|| {
                Error::collection(
                    to.name(),
                    format!(
                        "a row of {context} has no `{}` (the new key): every document needs one; the table was not changed",
                        to.key
                    ),
                )
            })?;
            if let Some(seen) = rows.seen.as_mut() {
                if !seen.insert(key.clone()) {
                    return Err(Error::collection(
                        to.name(),
                        format!(
                            "the new key `{}` is not unique: two rows have `{key}` (one in {context}); the table was \
                             not changed",
                            to.key
                        ),
                    ));
                }
            }
            let ts = get_path(&raw, &to.timestamp_column).and_then(timestamp::instant_millis);
            rows.buffers.push(partitioner.values(&raw), raw.as_bytes(), key, ts, rows.seq)?;
            rows.seq += 1;
        }
    }
    Ok(())
}

/// A partition value (text in the path) as the document type's value: what the file would hold had the field
/// not been in the path.
fn typed(text: &str, ty: &LakeType) -> bson::Bson {
    use bson::Bson;
    let parsed = match ty {
        LakeType::Int { .. } => text.parse::<i64>().ok().map(Bson::Int64),
        LakeType::Float => text.parse::<f64>().ok().map(Bson::Double),
        LakeType::Bool => text.parse::<bool>().ok().map(Bson::Boolean),
        LakeType::Timestamp => timestamp::parse_iso(text).map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
        _ => None,
    };
    parsed.unwrap_or_else(|| Bson::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_get_the_columns_type_back() {
        assert_eq!(typed("42", &LakeType::Int { digits: 2 }), bson::Bson::Int64(42));
        assert_eq!(typed("BLR01", &LakeType::String), bson::Bson::String("BLR01".into()));
        assert_eq!(typed("x", &LakeType::Int { digits: 2 }), bson::Bson::String("x".into()));
        assert_eq!(typed("true", &LakeType::Bool), bson::Bson::Boolean(true));
        assert_eq!(
            typed("2025-07-01T00:00:00.000Z", &LakeType::Timestamp),
            bson::Bson::DateTime(bson::DateTime::from_millis(1_751_328_000_000))
        );
    }

    #[test]
    fn the_command_names_the_environment_and_the_config_dir() {
        let text = "database,collection,timestamp_column,partition_by\nhims,visits,modified_at,date(created_at)\n";
        let file = crate::config::collections::CollectionsFile::parse(std::path::Path::new("c.csv"), text).unwrap();
        let spec = &file.entries[0];
        assert_eq!(
            command("env1", std::path::Path::new("."), spec),
            "mongolake relayout --env env1 --collection hims.visits"
        );
        assert_eq!(
            command("env1", std::path::Path::new("/etc/mongolake"), spec),
            "mongolake relayout --env env1 --config-dir /etc/mongolake --collection hims.visits"
        );
        let diffs = [Difference { setting: "timezone", old: "Asia/Kolkata".into(), new: "UTC".into() }];
        let m = refusal(spec, "env1", &diffs, "CMD");
        assert!(m.contains("line 2 and environments/env1.toml") && m.contains("`Asia/Kolkata`, now `UTC`"), "{m}");
        assert!(m.contains("`CMD`") && m.contains("lake's own files"), "{m}");
    }
}
