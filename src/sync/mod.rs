//! A sync run over every listed collection: collections run concurrently (bounded by `[sync] concurrency`), and
//! one failing collection is recorded with its cause while the others carry on.
pub mod buffer;
pub mod collection;
pub mod partition;
pub mod read;
pub mod reconcile;
pub mod rejects;

use crate::config::{Config, SyncConfig};
use crate::report::{CollectionReport, RunReport, Status};
use crate::sink::Lake;
use crate::state::lease;
use crate::Result;
use futures::StreamExt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

/// Live counters for the progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub docs_read: AtomicU64,
    pub rows_written: AtomicU64,
}

/// What every collection's sync shares.
pub struct RunContext {
    pub run_id: String,
    pub lake: Lake,
    pub client: mongodb::Client,
    pub sync: SyncConfig,
    pub batch_size: u32,
    /// Ignore watermarks (`--full`).
    pub full: bool,
    /// Compare key sets with MongoDB and remove deleted documents (`--reconcile`).
    pub reconcile: bool,
    /// Names and projection limits for the table definitions written next to each schema.
    pub catalog: crate::config::CatalogConfig,
    /// Secrets of the masking rules.
    pub masking: crate::config::MaskingConfig,
    pub progress: Arc<Progress>,
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub full: bool,
    pub reconcile: bool,
    /// How long to wait for a collection's lease held by another run before skipping it.
    pub lease_wait: std::time::Duration,
}

/// A new run id: sortable UTC time plus a random suffix (`20250701T020000Z-3f2a`).
pub fn new_run_id() -> String {
    format!("{}-{:04x}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), rand::random::<u16>())
}

/// Runs every collection of `config`; never fails as a whole once started (failures are in the report).
pub async fn run(config: &Config, options: &SyncOptions, progress: Arc<Progress>) -> Result<RunReport> {
    let env = &config.environment;
    let lake = Lake::open(&env.lake)?;
    let client = crate::source::connect(&env.mongodb).await?;
    crate::source::ping(&client, &env.mongodb).await?;
    let run_id = new_run_id();
    let started = chrono::Utc::now();
    let clock = Instant::now();
    tracing::info!(run_id = %run_id, env = %config.env_name, lake = %lake.url(), collections = config.collections.entries.len(), "Starting sync");
    let ctx = Arc::new(RunContext {
        run_id: run_id.clone(),
        lake: lake.clone(),
        client,
        sync: env.sync.clone(),
        batch_size: env.mongodb.batch_size,
        full: options.full,
        reconcile: options.reconcile,
        catalog: env.catalog.clone(),
        masking: env.masking.clone(),
        progress,
    });

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
    let results: Vec<CollectionReport> = futures::stream::iter(config.collections.entries.iter().cloned().map(|spec| {
        let ctx = ctx.clone();
        async move {
            let name = spec.name();
            let t = Instant::now();
            let (db, coll) = (spec.database.clone(), spec.collection.clone());
            let lease = match lease::acquire(&ctx.lake, &db, &coll, &ctx.run_id, ctx.sync.lease, lease_wait).await {
                Ok(lease::Acquired::Held(l)) => l,
                Ok(lease::Acquired::Busy(holder)) => {
                    let by = holder.map(|h| h.to_string()).unwrap_or_else(|| "another run".into());
                    tracing::warn!(collection = %name, holder = %by, "Skipped: another run holds the collection's lease");
                    return CollectionReport::skipped(name, format!("another run holds the collection: {by}"));
                }
                Err(e) => return CollectionReport::failed(name, format!("taking the collection's lease: {e}"), 0),
            };
            crate::fault::delay("after_lease").await;
            // A task of its own: a panic or error in one collection cannot take the others down.
            let handle = tokio::spawn(collection::sync_collection(ctx, spec, lease.lost_flag()));
            let outcome = match handle.await {
                Ok(r) => r.map_err(|e| format!("{e}")),
                Err(join) => Err(format!("internal error (please report): {join}")),
            };
            lease.release().await;
            let ms = t.elapsed().as_millis() as u64;
            match outcome {
                Ok(stats) => {
                    tracing::info!(collection = %name, docs_read = stats.docs_read, rows_written = stats.rows_written, partitions = stats.partitions_written, ms, "Collection synced");
                    CollectionReport::ok(name, stats, ms)
                }
                Err(message) => {
                    tracing::error!(collection = %name, error = %message, "Collection failed");
                    CollectionReport::failed(name, message, ms)
                }
            }
        }
    }))
    .buffer_unordered(env.sync.concurrency)
    .collect()
    .await;
    reports.extend(results);
    reports.sort_by(|a, b| (a.status != Status::Failed, &a.name).cmp(&(b.status != Status::Failed, &b.name)));

    let report =
        RunReport::new(run_id, config.env_name.clone(), lake.url().to_string(), started, clock.elapsed(), reports);
    if let Err(e) = lake
        .put(&lake.run_report_path(&report.run_id), serde_json::to_vec_pretty(&report).expect("serialisable").into())
        .await
    {
        tracing::error!(error = %e, "Could not write the run report to the lake");
    }
    Ok(report)
}
