//! A sync run over every listed collection: collections run concurrently (bounded by `[sync] concurrency`), and
//! one failing collection is recorded with its cause while the others carry on.
//!
//! **Retries.** A collection that fails with a transient error ([`crate::Error::is_transient`]: network,
//! primary stepdown, S3 503/SlowDown, timeouts) is retried whole, up to `[sync] retry_attempts` passes, after
//! an exponential backoff with jitter (`retry_backoff_ms`, doubled per attempt, capped at
//! `retry_max_backoff_seconds`; the jitter keeps collections that failed together from retrying together).
//! Retrying the whole pass is safe because nothing commits before the watermark (see [`collection`]): a failed
//! pass leaves staging files and uncommitted rejects, which the next pass cleans, and partition files that
//! the next pass rewrites to the same content. Permanent errors fail the collection at once.
//!
//! **Dry run** (`--dry-run`): no lease is taken, nothing is written to the lake (no run report either); each
//! collection reads and plans (see [`collection`]).
mod budget;
pub use budget::{tune_allocator, PURGE_DELAY_OPTION};
pub mod buffer;
pub mod collection;
pub mod context;
mod evolve;
pub mod guard;
mod plan;
pub mod read;
pub mod reconcile;
pub mod rejects;
pub mod relayout;
pub mod shard;
pub mod stats;
pub mod write;

use crate::config::environment::RetryPolicy;
use crate::config::Config;
use crate::progress::{Board, Phase};
use crate::report::{CollectionReport, RunReport, Status};
use crate::sink::Lake;
use crate::state::lease;
use crate::{Error, Result};
use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::progress::Progress;
pub use context::{new_run_id, RunContext};

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub full: bool,
    pub reconcile: bool,
    pub dry_run: bool,
    /// How long to wait for a collection's lease held by another run before skipping it.
    pub lease_wait: std::time::Duration,
    /// `--shard K/N`, and every listed collection (this worker's and the others'), whose shared first loads
    /// this worker helps with once its own collections are done.
    pub shard: Option<(crate::config::Shard, Vec<crate::config::CollectionSpec>)>,
}

/// The pause before retry number `attempt` (1 = the first retry): `backoff * 2^(attempt-1)`, capped, of which
/// a random half is jitter.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let base = policy.backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(policy.max_backoff);
    let half = base / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Runs every collection of `config`; never fails as a whole once started (failures are in the report).
pub async fn run(config: &Config, options: &SyncOptions, board: Arc<Board>) -> Result<RunReport> {
    let env = &config.environment;
    let lake = Lake::open_tuned(&env.lake, &env.sync.store)?;
    let client = crate::source::connect(&env.mongodb).await?;
    crate::source::ping(&client, &env.mongodb).await?;
    let run_id = new_run_id();
    let started = chrono::Utc::now();
    let clock = Instant::now();
    tracing::info!(run_id = %run_id, env = %config.env_name, lake = %lake.url(), collections = config.collections.entries.len(), dry_run = options.dry_run, "Starting sync");
    let ctx = RunContext {
        run_id: run_id.clone(),
        env_name: config.env_name.clone(),
        config_dir: config.config_dir.clone(),
        lake: lake.clone(),
        client,
        sync: env.sync.clone(),
        batch_size: env.mongodb.batch_size,
        full: options.full,
        reconcile: options.reconcile,
        dry_run: options.dry_run,
        catalog: env.catalog.clone(),
        glue: match &env.catalog.glue {
            Some(g) if !options.dry_run => Some(Arc::new(crate::catalog::Glue::connect(g).await)),
            _ => None,
        },
        masking: env.masking.clone(),
        progress: Arc::new(Progress::default()),
        encode_slots: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        )),
        memory: buffer::MemoryBudget::new(env.sync.memory_budget_bytes),
        shard: options.shard.as_ref().map(|(s, _)| *s).filter(|_| !options.dry_run),
        staged: Default::default(),
        releases: Arc::new(lease::Releases::start(lease::BATCH_WAIT)),
        schema_listing: Default::default(),
    };

    let mut reports: Vec<CollectionReport> = config
        .collections
        .errors
        .iter()
        .map(|e| {
            CollectionReport::failed(
                e.name.clone().unwrap_or_else(|| format!("collections.csv line {}", e.line)),
                format!("{}:{}: {}", config.collections.path.display(), e.line, e.message),
                0,
            )
        })
        .collect();

    let lease_wait = options.lease_wait;
    let results: Vec<CollectionReport> =
        futures::stream::iter(config.collections.entries.iter().cloned().map(|spec| {
            let ctx = Arc::new(RunContext { progress: board.collection(&spec.name()), ..ctx.clone() });
            async move { sync_with_retries(ctx, spec, lease_wait).await }
        }))
        .buffer_unordered(env.sync.concurrency)
        .collect()
        .await;
    reports.extend(results);
    // (the leases of the collections that committed: deleted before the report says the run is done)
    ctx.releases.finish().await;
    // Then this worker's share of the other workers' large first loads.
    let helped = match (&options.shard, ctx.shard) {
        (Some((_, specs)), Some(shard)) if shard.count > 1 => shard::helper::help(&ctx, specs, &board, clock).await,
        _ => Vec::new(),
    };
    reports.sort_by(|a, b| (a.status != Status::Failed, &a.name).cmp(&(b.status != Status::Failed, &b.name)));

    let mut report =
        RunReport::new(run_id, config.env_name.clone(), lake.url().to_string(), started, clock.elapsed(), reports);
    report.dry_run = options.dry_run;
    report.ranges_helped = helped;
    report.memory_budget_mb = env.sync.memory_budget_bytes / (1024 * 1024);
    if let Some(peak) = report.peak_memory_mb.filter(|p| *p > report.memory_budget_mb) {
        tracing::warn!(
            peak_mb = peak,
            budget_mb = report.memory_budget_mb,
            "Peak memory passed [sync] memory_budget_mb: lower [mongodb] batch_size or [sync] concurrency, or raise the budget"
        );
    }
    if !options.dry_run {
        let specs = &config.collections.entries;
        let (collections, run_id) = (&mut report.collections, &report.run_id);
        crate::report::history::annotate(&lake, specs, collections, run_id, &env.report).await;
        if let Err(e) = lake
            .put(
                &lake.run_report_path(&report.run_id),
                serde_json::to_vec_pretty(&report).expect("serialisable").into(),
            )
            .await
        {
            tracing::error!(error = %e, "Could not write the run report to the lake");
        }
    }
    // Close the driver's connections and sessions while the runtime still runs: left to `Drop` at process
    // exit, the driver's cleanup could find its background task gone and panic (seen once in a benchmark).
    let client = ctx.client.clone();
    drop(ctx);
    client.shutdown().immediate(true).await;
    Ok(report)
}

/// One collection: lease, sync, release; retried whole after a transient error (see the module docs).
async fn sync_with_retries(
    ctx: Arc<RunContext>,
    spec: crate::config::CollectionSpec,
    wait: Duration,
) -> CollectionReport {
    let name = spec.name();
    let t = Instant::now();
    let policy = ctx.sync.retry;
    let mut retried: Vec<String> = Vec::new();
    let mut attempt = 1;
    loop {
        let outcome = match attempt_once(&ctx, &spec, wait).await {
            Ok(Attempt::Synced(stats)) => Ok(*stats),
            Ok(Attempt::Busy(holder)) => {
                ctx.progress.set_phase(Phase::Done);
                return CollectionReport::skipped(name, format!("another run holds the collection: {holder}"));
            }
            Err(e) => Err(e),
        };
        let ms = t.elapsed().as_millis() as u64;
        crate::release_free_memory();
        match outcome {
            Ok(stats) => {
                ctx.progress.set_phase(Phase::Done);
                tracing::info!(collection = %name, docs_read = stats.docs_read, rows_written = stats.rows_written, partitions = stats.partitions_written, attempts = attempt, ms, "Collection synced");
                let mut r = CollectionReport::ok(name, stats, ms);
                r.attempts = attempt;
                r.retried_errors = retried;
                return r;
            }
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                let pause = backoff(&policy, attempt);
                tracing::warn!(collection = %name, error = %e, attempt, of = policy.attempts, pause_ms = pause.as_millis() as u64, "Transient failure; retrying the collection");
                ctx.progress.set_phase(Phase::Retrying);
                retried.push(crate::report::with_causes(&e));
                tokio::time::sleep(pause).await;
                ctx.progress.reset();
                attempt += 1;
            }
            Err(e) => {
                ctx.progress.set_phase(Phase::Failed);
                let why = if e.is_transient() { "transient, retries exhausted" } else { "permanent, not retried" };
                tracing::error!(collection = %name, error = %e, attempts = attempt, "Collection failed ({why})");
                let mut r = CollectionReport::failed_with(name, &e, ms);
                r.attempts = attempt;
                r.retried_errors = retried;
                return r;
            }
        }
    }
}

/// How one pass over a collection ended (errors aside).
enum Attempt {
    Synced(Box<stats::CollectionStats>),
    /// Another run holds the lease (named): skipped, never retried.
    Busy(String),
}

/// One pass: lease, sync, release.
async fn attempt_once(ctx: &Arc<RunContext>, spec: &crate::config::CollectionSpec, wait: Duration) -> Result<Attempt> {
    let name = spec.name();
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let lease = if ctx.dry_run {
        None
    } else {
        match lease::acquire(&ctx.lake, db, coll, &ctx.run_id, ctx.sync.lease, wait).await {
            Ok(lease::Acquired::Held(l)) => Some(l),
            Ok(lease::Acquired::Busy(holder)) => {
                let by = holder.map(|h| h.to_string()).unwrap_or_else(|| "another run".into());
                tracing::warn!(collection = %name, holder = %by, "Skipped: another run holds the collection's lease");
                return Ok(Attempt::Busy(by));
            }
            Err(e) => return Err(prefix(e, "taking the collection's lease")),
        }
    };
    crate::fault::delay("after_lease").await;
    let lost = lease.as_ref().map(|l| l.lost_flag()).unwrap_or_default();
    let after_clean = lease.as_ref().is_some_and(|l| l.after_clean_end());
    // A task of its own: a panic or error in one collection cannot take the others down.
    let handle = tokio::spawn(collection::sync_collection(ctx.clone(), spec.clone(), lost, after_clean));
    let outcome = match handle.await {
        Ok(r) => r,
        Err(join) => Err(Error::collection(&name, format!("internal error (please report): {join}"))),
    };
    match lease {
        // Committed: the lease is deleted with those of the collections committing about then (on S3 one
        // request for them all, which the slot does not wait for; the run waits for it before its report).
        Some(l) if outcome.is_ok() => ctx.releases.release(l).await,
        // (a failed sync may have left rejects or index segments: the next run looks for them, see state::lease;
        // its retry takes the lease again, so the marker is written first)
        Some(l) => l.release(false).await,
        None => {}
    }
    outcome.map(|s| Attempt::Synced(Box::new(s)))
}

/// Adds what was being done to a lake error's context (keeping its variant, so it stays classifiable).
fn prefix(e: Error, what: &str) -> Error {
    match e {
        Error::Store { context, source } => Error::Store { context: format!("{what}: {context}"), source },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy { attempts: 5, backoff: Duration::from_millis(1000), max_backoff: Duration::from_secs(3) };
        for _ in 0..50 {
            let b1 = backoff(&p, 1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_millis(1000), "{b1:?}");
            let b2 = backoff(&p, 2);
            assert!(b2 >= Duration::from_millis(1000) && b2 <= Duration::from_millis(2000), "{b2:?}");
            let b9 = backoff(&p, 9);
            assert!(b9 >= Duration::from_millis(1500) && b9 <= Duration::from_secs(3), "{b9:?}");
        }
    }
}
