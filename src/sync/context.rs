//! What every stage of a collection's sync may take from the run ([`RunContext`]), and the narrower
//! environments built from it for the stages that need less (the write path's [`super::write::WriteEnv`]).
use super::buffer;
use super::write;
use crate::config::SyncConfig;
use crate::progress::Progress;
use crate::sink::Lake;
use std::sync::Arc;

/// What every collection's sync shares (each collection gets its own copy with its own progress counters).
#[derive(Clone)]
pub struct RunContext {
    pub run_id: String,
    /// The environment's name and the config directory, for the commands messages suggest.
    pub env_name: String,
    pub config_dir: std::path::PathBuf,
    pub lake: Lake,
    pub client: mongodb::Client,
    pub sync: SyncConfig,
    pub batch_size: u32,
    /// Ignore watermarks (`--full`).
    pub full: bool,
    /// Compare key sets with MongoDB and remove deleted documents (`--reconcile`).
    pub reconcile: bool,
    /// Read and plan only; write nothing (`--dry-run`).
    pub dry_run: bool,
    /// Names and projection limits for the table definitions written next to each schema.
    pub catalog: crate::config::CatalogConfig,
    /// Glue mode's Data Catalog client (`[catalog] glue = true`), shared by the collections.
    pub glue: Option<Arc<crate::catalog::Glue>>,
    /// Secrets of the masking rules.
    pub masking: crate::config::MaskingConfig,
    pub progress: Arc<Progress>,
    /// Partition encodes (CPU-bound, on blocking threads) running at once, across all collections: one per core.
    /// More only adds working sets (builders, pages, output) that compete for the same cores and memory.
    pub encode_slots: Arc<tokio::sync::Semaphore>,
    /// `[sync] memory_budget_mb`, shared by every collection: buffered documents and per-document metadata.
    pub memory: Arc<buffer::MemoryBudget>,
    /// `--shard K/N`: large first loads are shared with the other workers ([`shard`]).
    pub shard: Option<crate::config::Shard>,
    /// An object store's `staging/`, listed by the first collection that cleans it ([`Lake::list_staging`]).
    pub staged: Arc<tokio::sync::OnceCell<Vec<object_store::path::Path>>>,
    /// Leases of collections that committed, deleted together while the next collections run; the run deletes
    /// what is left before its report ([`super::run`], [`crate::state::lease::Releases`]).
    pub releases: Arc<crate::state::lease::Releases>,
    /// The schema files' tags, as the last listing of the schema folder gave them, and when it was made
    /// ([`RunContext::schema_tags`]).
    pub schema_listing: Arc<tokio::sync::Mutex<Option<SchemaListing>>>,
}

/// A listing of the schema folder, and when it was made.
pub type SchemaListing = (std::time::Instant, Arc<SchemaTags>);

/// Schema file path -> its tag (None: the listing gave none).
pub type SchemaTags = crate::FastMap<String, Option<String>>;

/// How long one listing of the schema folder serves the collections that start after it. A schema file
/// written meanwhile by a run or command holding the collection's lease is seen anyway (its lease is then not
/// found free); this bounds how long one edited by hand goes unseen.
pub const SCHEMA_LISTING_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl RunContext {
    /// The tags of the schema files (on an object store one listing for every collection starting within
    /// [`SCHEMA_LISTING_FOR`] of it, instead of a GET of each file; see [`crate::state::index::store::SchemaCopy`]).
    pub async fn schema_tags(&self) -> crate::Result<Arc<SchemaTags>> {
        let mut held = self.schema_listing.lock().await;
        if let Some((_, tags)) = held.as_ref().filter(|(at, _)| at.elapsed() < SCHEMA_LISTING_FOR) {
            return Ok(tags.clone());
        }
        let at = std::time::Instant::now();
        let tags = Arc::new(self.lake.list_tags(&self.lake.schema_dir()).await?);
        *held = Some((at, tags.clone()));
        Ok(tags)
    }

    /// What the write path takes of the run ([`write`]).
    pub fn write_env(&self) -> write::WriteEnv {
        write::WriteEnv {
            lake: self.lake.clone(),
            run_id: self.run_id.clone(),
            memory: self.memory.clone(),
            encode_slots: self.encode_slots.clone(),
            progress: self.progress.clone(),
            row_groups: self.sync.row_groups(),
            partition_concurrency: self.sync.partition_concurrency,
        }
    }

    /// How a key index rebuild uses the memory budget and the lake (a dry run rebuilds in memory).
    pub fn index_rebuild(&self) -> crate::state::index::store::Rebuild {
        crate::state::index::store::Rebuild {
            run_entries: self.memory.sort_run_entries(),
            whole_limit: self.memory.whole_file_limit(),
            segment_keys: self.sync.index_segment_keys,
            write: !self.dry_run,
        }
    }
}

/// A new run id: sortable UTC time (to the millisecond) plus a random suffix (`20250701T020000123Z-3f2a`).
pub fn new_run_id() -> String {
    // Milliseconds in the time: run ids (and report file names) sort by start even for runs in the same second.
    format!("{}-{:04x}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"), rand::random::<u16>())
}
