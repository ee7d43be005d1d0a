//! The owner's side of a shared first load (see [`super`]): the plan, the ranges it reads itself, and the join.
use super::{
    claim_name, data_dir, encode_ranges, final_path, get_json, plan_path, put_json, range_dir, staged_file, FinalType,
    RangeDone, RangePlan, RangeRead, FORMAT,
};
use crate::config::CollectionSpec;
use crate::schema::LakeType;
use crate::sink::layout;
use crate::state::index::store::{KeyRun, SegmentWriter};
use crate::state::index::KeyIndex;
use crate::state::lease::{self, Acquired, Lease};
use crate::sync::context::RunContext;
use crate::sync::read::ReadPass;
use crate::{Error, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the owner looks for what the helpers wrote.
const POLL: Duration = Duration::from_millis(250);

/// A first load this worker owns and shares in ranges. Dropped without [`Shared::finish`] (an error), it
/// deletes its plan so that helpers stop at once.
pub struct Shared {
    ctx: Arc<RunContext>,
    spec: CollectionSpec,
    plan: RangePlan,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Ranges read here, and their claims (held to the end, so no helper reads them too).
    own: Vec<usize>,
    claims: Vec<Lease>,
    /// Ranges read by other workers, with what they read.
    helped: Vec<(usize, RangeRead)>,
    finished: bool,
}

/// What the join wrote.
#[derive(Default)]
pub struct Joined {
    pub rows: u64,
    pub partitions: u64,
    pub dups: u64,
    pub rejects: Vec<super::Reject>,
    pub index: KeyIndex,
}

/// Shares this first load when `--shard K/N` (N > 1) runs and the collection has at least
/// `[sync] shard_ranges_min_docs` documents: splits it into N `_id` ranges and publishes the plan. None: load
/// it alone (too small, not keyed by `_id`, too few distinct `_id`s, or no shard).
pub async fn start(ctx: &Arc<RunContext>, spec: &CollectionSpec, pass: &ReadPass, docs: u64) -> Result<Option<Shared>> {
    let Some(shard) = ctx.shard.filter(|s| s.count > 1) else { return Ok(None) };
    let min = ctx.sync.shard_ranges_min_docs;
    if min == 0 || docs < min || spec.key != "_id" || ctx.dry_run || ctx.reconcile {
        return Ok(None);
    }
    let ranges = pass.id_ranges(shard.count as usize, Some(docs)).await?;
    if ranges.len() < 2 {
        return Ok(None);
    }
    let lake = &ctx.lake;
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    // This worker holds the collection's lease: anything there is left by an owner that stopped.
    lake.remove_tree(&data_dir(lake, db, coll)).await?;
    let ttl = ctx.sync.lease;
    let plan = RangePlan {
        format: FORMAT,
        plan_id: crate::sync::context::new_run_id(),
        owner_run_id: ctx.run_id.clone(),
        database: db.to_string(),
        collection: coll.to_string(),
        fingerprint: super::fingerprint(spec, ctx),
        ranges: ranges.into_iter().map(|f| bson::Bson::Document(f).into_canonical_extjson()).collect(),
        docs_estimate: docs,
        expires_at: chrono::Utc::now().timestamp_millis() + ttl.as_millis() as i64,
    };
    let path = plan_path(lake, db, coll);
    put_json(lake, &path, &plan).await?;
    tracing::info!(collection = %spec.name(), ranges = plan.ranges.len(), plan = %plan.plan_id, "First load shared with the other workers in _id ranges");
    let renewer = tokio::spawn({
        let (lake, mut plan) = (lake.clone(), plan.clone());
        async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                plan.expires_at = chrono::Utc::now().timestamp_millis() + ttl.as_millis() as i64;
                if let Err(e) = put_json(&lake, &path, &plan).await {
                    tracing::warn!(error = %e, "Could not renew the range plan; retrying");
                }
            }
        }
    });
    Ok(Some(Shared {
        ctx: ctx.clone(),
        spec: spec.clone(),
        plan,
        renewer: Some(renewer),
        own: Vec::new(),
        claims: Vec::new(),
        helped: Vec::new(),
        finished: false,
    }))
}

impl Shared {
    /// Documents the other workers read (not in this worker's pass).
    pub fn helped_docs(&self) -> u64 {
        self.helped.iter().map(|(_, r)| r.docs).sum()
    }

    /// Ranges read here and by other workers.
    pub fn ranges(&self) -> (usize, usize) {
        (self.own.len(), self.helped.len())
    }

    /// Pass 1: reads into `pass` every range no other worker claimed, waits until each claimed one is read,
    /// and joins what the others read into `pass` (type, partition-field counts, greatest timestamp, rejects).
    pub async fn read(&mut self, pass: &mut ReadPass) -> Result<()> {
        let mut pending: Vec<usize> = Vec::new();
        for k in 0..self.plan.ranges.len() {
            if !self.take(k, pass).await? {
                pending.push(k);
            }
        }
        while !pending.is_empty() {
            tokio::time::sleep(POLL).await;
            let mut still = Vec::new();
            for k in pending {
                if !self.take(k, pass).await? {
                    still.push(k);
                }
            }
            pending = still;
        }
        let mut document = LakeType::Struct { fields: std::mem::take(&mut pass.fields) };
        for (_, r) in &self.helped {
            document.join(&LakeType::Struct { fields: r.fields.clone() });
            for (p, n) in pass.present.iter_mut().zip(&r.present) {
                *p += n;
            }
            pass.max_ts = pass.max_ts.max(r.max_ts);
            pass.rejected.extend(r.rejected.iter().cloned());
            pass.masked.add(&r.masked);
        }
        if let LakeType::Struct { fields } = document {
            pass.fields = fields;
        }
        Ok(())
    }

    /// Settles range `k` if it can: another worker reported reading it, or it is unclaimed and read here.
    /// False while another worker holds it without having reported.
    async fn take(&mut self, k: usize, pass: &mut ReadPass) -> Result<bool> {
        let lake = &self.ctx.lake;
        let read_path = layout::range_read(&range_dir(lake, &self.plan, Some(k)));
        if let Some(r) = get_json::<RangeRead>(lake, &read_path).await? {
            self.helped.push((k, r));
            return Ok(true);
        }
        let (db, ttl) = (self.spec.database.as_str(), self.ctx.sync.lease);
        let claim = match lease::try_acquire(lake, db, &claim_name(&self.plan, k), &self.ctx.run_id, ttl).await? {
            Acquired::Busy(_) => return Ok(false),
            Acquired::Held(l) => l,
        };
        // (its reader may have reported and let go between the two looks)
        if let Some(r) = get_json::<RangeRead>(lake, &read_path).await? {
            claim.let_go().await;
            self.helped.push((k, r));
            return Ok(true);
        }
        tracing::debug!(collection = %self.spec.name(), range = k, "Reading a range of the shared load here");
        pass.read_all(vec![self.plan.filter(k)?]).await?;
        self.own.push(k);
        self.claims.push(claim);
        crate::fault::delay("shard_owner_range").await;
        Ok(true)
    }

    /// Pass 2: publishes the joined type, encodes the ranges read here, waits for the others', then joins each
    /// partition's files into the table and the ranges' keys into the key index (unlisted until it is saved).
    pub async fn write(
        &self,
        rows: super::RangeRows,
        document: &LakeType,
        lease_lost: Arc<AtomicBool>,
    ) -> Result<Joined> {
        let lake = &self.ctx.lake;
        put_json(lake, &final_path(lake, &self.plan), &FinalType { document: document.clone() }).await?;
        let own_dir = range_dir(lake, &self.plan, None);
        let own = if self.own.is_empty() {
            RangeDone::default()
        } else {
            encode_ranges(&self.ctx, &self.spec, rows, document, &own_dir, lease_lost.clone()).await?
        };
        let mut dones = vec![(own_dir, own)];
        for (k, _) in &self.helped {
            dones.push((range_dir(lake, &self.plan, Some(*k)), self.wait_done(*k, &lease_lost).await?));
        }
        let mut joined = Joined::default();
        let mut by_rel: BTreeMap<String, Vec<(Path, u64)>> = BTreeMap::new();
        for (dir, done) in &mut dones {
            joined.dups += done.dups;
            joined.rejects.append(&mut done.rejects);
            for p in &done.partitions {
                by_rel.entry(p.rel.clone()).or_default().push((staged_file(dir, &p.rel), p.rows));
            }
        }
        let rows: Vec<u64> = futures::stream::iter(by_rel.into_iter().map(|(rel, files)| {
            let lost = lease_lost.clone();
            async move { self.join_partition(rel, files, &lost).await }
        }))
        .buffer_unordered(self.ctx.sync.partition_concurrency)
        .try_collect()
        .await?;
        joined.partitions = rows.len() as u64;
        joined.rows = rows.iter().sum();
        let runs = dones
            .iter()
            .map(|(dir, d)| {
                let files = d.keys.iter().map(|f| layout::range_keys_file(dir, &f.file)).collect();
                KeyRun::new(lake.clone(), files)
            })
            .collect();
        let segment_keys = self.ctx.sync.index_segment_keys;
        joined.index =
            SegmentWriter::new(lake, &self.spec, &self.ctx.run_id, segment_keys).merging(runs).finish().await?;
        Ok(joined)
    }

    /// Waits for range `k`'s encoded files. Its reader holds its claim until they are written: a claim let go
    /// without them means the reader stopped, and this attempt fails (retried with a new plan).
    async fn wait_done(&self, k: usize, lease_lost: &AtomicBool) -> Result<RangeDone> {
        let lake = &self.ctx.lake;
        let done_path = layout::range_done(&range_dir(lake, &self.plan, Some(k)));
        loop {
            if let Some(d) = get_json::<RangeDone>(lake, &done_path).await? {
                return Ok(d);
            }
            crate::state::lease::check(lease_lost, &self.spec.name())?;
            let (db, ttl) = (self.spec.database.as_str(), self.ctx.sync.lease);
            if let Acquired::Held(l) =
                lease::try_acquire(lake, db, &claim_name(&self.plan, k), &self.ctx.run_id, ttl).await?
            {
                let late = get_json::<RangeDone>(lake, &done_path).await?;
                l.let_go().await;
                if let Some(d) = late {
                    return Ok(d);
                }
                return Err(Error::RangeWorker {
                    collection: self.spec.name(),
                    message: format!(
                        "the worker that read _id range {k} of the shared first load stopped before encoding it; \
                         the collection is retried with a new plan"
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Puts one partition's file in place: a range's file moves there; the files of several ranges are joined
    /// (row groups copied) and the result moves there through staging.
    async fn join_partition(&self, rel: String, files: Vec<(Path, u64)>, lease_lost: &AtomicBool) -> Result<u64> {
        crate::state::lease::check(lease_lost, &self.spec.name())?;
        let lake = &self.ctx.lake;
        let (db, coll) = (self.spec.database.as_str(), self.spec.collection.as_str());
        let target = lake.partition_file(db, coll, &rel);
        let rows = files.iter().map(|(_, r)| r).sum();
        if let [(only, _)] = files.as_slice() {
            lake.rename(only, &target).await?;
        } else {
            let mut inputs = Vec::with_capacity(files.len());
            for (path, _) in &files {
                let bytes = lake.get_opt(path).await?.ok_or_else(|| {
                    Error::encode(format!("{db}.{coll} partition {rel}"), format!("{} is missing", lake.display(path)))
                })?;
                inputs.push(bytes);
            }
            let context = format!("{db}.{coll} partition {rel}");
            let slot = self.ctx.encode_slots.clone().acquire_owned().await.expect("never closed");
            let bytes = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                crate::sink::parquet::concat(&inputs, &context)
            })
            .await
            .map_err(|e| Error::encode("joining ranges", e))??;
            let staging = lake.staging_path(&self.ctx.run_id, db, coll, &rel);
            lake.replace(&staging, &target, bytes).await?;
        }
        crate::fault::point("after_partition");
        self.ctx.progress.rows_written.fetch_add(rows, Ordering::Relaxed);
        Ok(rows)
    }

    /// Done (the watermark is committed): the plan and everything staged for it go.
    pub async fn finish(mut self) {
        self.finished = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let lake = self.ctx.lake.clone();
        let (db, coll) = (self.spec.database.clone(), self.spec.collection.clone());
        if let Err(e) = lake.delete(&plan_path(&lake, &db, &coll)).await {
            tracing::warn!(error = %e, "Could not delete the range plan");
        }
        for claim in std::mem::take(&mut self.claims) {
            claim.let_go().await;
        }
        if let Err(e) = lake.remove_tree(&data_dir(&lake, &db, &coll)).await {
            tracing::warn!(error = %e, "Could not delete the files staged for the shared load");
        }
        if let Some(dir) = lake.local_dir() {
            // Local claims are lock files that outlive their locks.
            for k in 0..self.plan.ranges.len() {
                let _ = std::fs::remove_file(
                    dir.join(layout::local_lock_dir(&db)).join(layout::local_lock_file(&claim_name(&self.plan, k))),
                );
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if !self.finished {
            let lake = self.ctx.lake.clone();
            let path = plan_path(&lake, &self.spec.database, &self.spec.collection);
            let id = self.plan.plan_id.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    // (only this plan: a retry may have published the next one already)
                    if let Ok(Some(p)) = get_json::<RangePlan>(&lake, &path).await {
                        if p.plan_id == id {
                            let _ = lake.delete(&path).await;
                        }
                    }
                });
            }
        }
    }
}
