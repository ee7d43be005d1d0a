//! The helpers' side of a shared first load (see [`super`]): a worker done with its own collections claims
//! ranges of the plans other workers published, reads them, and encodes them once the owner fixed the type.
use super::{
    claim_name, encode_ranges, final_path, fingerprint, get_json, plan_path, plans_dir, put_json, range_dir, FinalType,
    RangePlan, RangeRead, FORMAT,
};
use crate::config::CollectionSpec;
use crate::progress::{Board, Phase};
use crate::sink::layout;
use crate::state::lease::{self, Acquired, Lease};
use crate::sync::context::RunContext;
use crate::sync::read::ReadPass;
pub use crate::sync::stats::HelpedRange;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Helps with the shared loads of other workers' collections in `specs`. Only the other workers' first loads
/// large enough to share can publish a plan: with none of them (an ordinary incremental night) it returns at
/// once. Otherwise it keeps looking until each of them is committed, or `[sync] shard_help_wait_seconds` have
/// passed since `started` and no plan is open (their owners publish plans within seconds of starting them).
pub async fn help(
    base: &RunContext,
    specs: &[CollectionSpec],
    board: &Arc<Board>,
    started: Instant,
) -> Vec<HelpedRange> {
    let mut helped = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut waiting = match candidates(base, specs).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Could not tell which collections other workers may share; not helping");
            Vec::new()
        }
    };
    if waiting.is_empty() {
        return helped;
    }
    tracing::info!(collections = waiting.len(), "Looking for ranges of other workers' first loads to help with");
    // Ranges are helped with `[sync] concurrency` at a time, as collections are: one at a time, a helper would
    // leave most ranges to their owners (measured: 1 range of 10 taken in a 2-worker load).
    let slots = Arc::new(tokio::sync::Semaphore::new(base.sync.concurrency));
    let mut tasks: tokio::task::JoinSet<HelpedRange> = tokio::task::JoinSet::new();
    loop {
        let plans = match open_plans(base).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "Could not list the shared loads to help with");
                Vec::new()
            }
        };
        let mut worked = !tasks.is_empty();
        let open = !plans.is_empty();
        'plans: for plan in plans {
            let Some(spec) = specs.iter().find(|s| s.database == plan.database && s.collection == plan.collection)
            else {
                continue;
            };
            let name = spec.name();
            if fingerprint(spec, base) != plan.fingerprint {
                if !refused.contains(&plan.plan_id) {
                    tracing::warn!(collection = %name, "Not helping with a shared load: this worker's collections.csv row or [sync] settings differ from its owner's");
                    refused.push(plan.plan_id.clone());
                }
                continue;
            }
            for k in (0..plan.ranges.len()).rev() {
                let Ok(slot) = slots.clone().try_acquire_owned() else { break 'plans };
                let progress = board.collection(&format!("{name} [range {}/{}]", k + 1, plan.ranges.len()));
                let ctx = Arc::new(RunContext { progress, ..base.clone() });
                match claim(&ctx, &plan, k).await {
                    Ok(None) => {}
                    Ok(Some(lease)) => {
                        worked = true;
                        let (spec, plan) = (spec.clone(), plan.clone());
                        tasks.spawn(async move {
                            let _slot = slot;
                            let r = help_claimed(&ctx, &spec, &plan, k, lease).await;
                            ctx.progress.set_phase(if r.error.is_some() { Phase::Failed } else { Phase::Done });
                            r
                        });
                    }
                    Err(e) => tracing::warn!(collection = %name, range = k, error = %e, "Could not claim a range"),
                }
            }
        }
        while let Some(done) = tasks.try_join_next() {
            match done {
                Ok(r) => helped.push(r),
                Err(e) => tracing::error!(error = %e, "A range task failed (please report)"),
            }
        }
        if !worked {
            let mut left = Vec::with_capacity(waiting.len());
            for spec in waiting {
                match crate::state::load(&base.lake, &spec.database, &spec.collection).await {
                    Ok(state) if state.watermark().is_some() => {}
                    _ => left.push(spec),
                }
            }
            waiting = left;
            if waiting.is_empty() || (!open && started.elapsed() >= base.sync.shard_help_wait) {
                return helped;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The other workers' collections that may be shared: first loads (no watermark yet) of at least
/// `[sync] shard_ranges_min_docs` documents keyed by `_id`.
async fn candidates(base: &RunContext, specs: &[CollectionSpec]) -> Result<Vec<CollectionSpec>> {
    let (Some(shard), min) = (base.shard, base.sync.shard_ranges_min_docs) else { return Ok(Vec::new()) };
    if min == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for spec in specs.iter().filter(|s| !shard.owns(&s.name()) && s.key == "_id") {
        if crate::state::load(&base.lake, &spec.database, &spec.collection).await?.watermark().is_some() {
            continue;
        }
        let c = base.client.database(&spec.database).collection::<bson::Document>(&spec.collection);
        if c.estimated_document_count().await.is_ok_and(|n| n >= min) {
            out.push(spec.clone());
        }
    }
    Ok(out)
}

/// The live plans in the lake.
async fn open_plans(ctx: &RunContext) -> Result<Vec<RangePlan>> {
    let lake = &ctx.lake;
    let mut plans = Vec::new();
    for path in lake.list(&plans_dir(lake)).await? {
        match get_json::<RangePlan>(lake, &path).await {
            Ok(Some(p)) if p.format == FORMAT && p.alive() && p.owner_run_id != ctx.run_id => plans.push(p),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "Unreadable range plan"),
        }
    }
    Ok(plans)
}

/// Claims range `k` when nobody read or claimed it. None: nothing to do.
async fn claim(ctx: &Arc<RunContext>, plan: &RangePlan, k: usize) -> Result<Option<Lease>> {
    let lake = &ctx.lake;
    let read_path = layout::range_read(&range_dir(lake, plan, Some(k)));
    if lake.get_opt(&read_path).await?.is_some() {
        return Ok(None);
    }
    let claim =
        match lease::try_acquire(lake, &plan.database, &claim_name(plan, k), &ctx.run_id, ctx.sync.lease).await? {
            Acquired::Busy(_) => return Ok(None),
            Acquired::Held(l) => l,
        };
    if lake.get_opt(&read_path).await?.is_some() || !current(ctx, plan).await? {
        claim.let_go().await;
        return Ok(None);
    }
    Ok(Some(claim))
}

/// Reads and encodes a claimed range, then lets the claim go.
async fn help_claimed(
    ctx: &Arc<RunContext>,
    spec: &CollectionSpec,
    plan: &RangePlan,
    k: usize,
    claim: Lease,
) -> HelpedRange {
    let t = Instant::now();
    tracing::info!(collection = %spec.name(), range = k, ranges = plan.ranges.len(), owner = %plan.owner_run_id, "Helping with a shared first load");
    let outcome = help_range(ctx, spec, plan, k, claim.lost_flag()).await;
    // Let go only now: the owner reads a free claim without read.json as "nobody read it", and a free claim
    // without done.json as "its reader stopped".
    claim.let_go().await;
    let mut report = HelpedRange {
        collection: spec.name(),
        range: k,
        ranges: plan.ranges.len(),
        owner_run_id: plan.owner_run_id.clone(),
        docs_read: ctx.progress.docs_read.load(Ordering::Relaxed),
        duration_ms: t.elapsed().as_millis() as u64,
        error: None,
    };
    match outcome {
        Ok(()) => {
            tracing::info!(collection = %spec.name(), range = k, docs = report.docs_read, ms = report.duration_ms, "Range handed to its owner");
        }
        Err(e) => {
            tracing::warn!(collection = %spec.name(), range = k, error = %e, "Gave up a range of a shared load; its owner reads it or retries");
            report.error = Some(e.to_string());
        }
    }
    crate::release_free_memory();
    report
}

/// The plan is still the owner's live one (not finished, abandoned or replaced by a retry).
async fn current(ctx: &RunContext, plan: &RangePlan) -> Result<bool> {
    let now: Option<RangePlan> = get_json(&ctx.lake, &plan_path(&ctx.lake, &plan.database, &plan.collection)).await?;
    Ok(now.is_some_and(|p| p.plan_id == plan.plan_id && p.alive()))
}

async fn help_range(
    ctx: &Arc<RunContext>,
    spec: &CollectionSpec,
    plan: &RangePlan,
    k: usize,
    lost: Arc<AtomicBool>,
) -> Result<()> {
    let lake = &ctx.lake;
    let dir = range_dir(lake, plan, Some(k));
    let share = ctx.memory.share_for(0, plan.docs_estimate / plan.ranges.len().max(1) as u64);
    let _memory = ctx.memory.reserve(share).await;
    ctx.progress.set_phase(Phase::Reading);
    ctx.progress.expected.store(plan.docs_estimate / plan.ranges.len().max(1) as u64, Ordering::Relaxed);
    let mut pass = ReadPass::new(spec, Vec::new(), ctx)?;
    pass.read_all(vec![plan.filter(k)?]).await?;
    let read = RangeRead {
        run_id: ctx.run_id.clone(),
        fields: pass.fields.clone(),
        docs: pass.seq,
        present: pass.present.clone(),
        max_ts: pass.max_ts,
        rejected: std::mem::take(&mut pass.rejected),
        masked: pass.masked.clone(),
        spills: pass.buffers.spills,
    };
    let gone = || Error::RangeWorker { collection: spec.name(), message: "the owner gave the shared load up".into() };
    if !current(ctx, plan).await? || lost.load(Ordering::SeqCst) {
        return Err(gone());
    }
    put_json(lake, &layout::range_read(&dir), &read).await?;
    crate::fault::point("helper_read");
    // The owner fixes the type once every range is read.
    let document = loop {
        if let Some(f) = get_json::<FinalType>(lake, &final_path(lake, plan)).await? {
            break f.document;
        }
        if !current(ctx, plan).await? || lost.load(Ordering::SeqCst) {
            return Err(gone());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    ctx.progress.set_phase(Phase::Writing);
    let done = encode_ranges(ctx, spec, pass.into(), &document, &dir, lost.clone()).await?;
    if !current(ctx, plan).await? || lost.load(Ordering::SeqCst) {
        return Err(gone());
    }
    put_json(lake, &layout::range_done(&dir), &done).await
}
