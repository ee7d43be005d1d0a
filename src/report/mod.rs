//! The run report: what each collection did, written to `<lake>/_mongolake/runs/<run-id>.json`, printed at the
//! end of a run and emailed to the operators.
pub mod email;

use crate::sync::collection::CollectionStats;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    /// Another run held the collection's lease (it is syncing it); not an error.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct CollectionReport {
    pub name: String,
    pub status: Status,
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub stats: CollectionStats,
}

impl CollectionReport {
    pub fn ok(name: String, stats: CollectionStats, duration_ms: u64) -> Self {
        CollectionReport { name, status: Status::Ok, error: None, duration_ms, stats }
    }
    pub fn skipped(name: String, reason: String) -> Self {
        CollectionReport {
            name,
            status: Status::Skipped,
            error: Some(reason),
            duration_ms: 0,
            stats: CollectionStats::default(),
        }
    }
    pub fn failed(name: String, error: String, duration_ms: u64) -> Self {
        CollectionReport {
            name,
            status: Status::Failed,
            error: Some(error),
            duration_ms,
            stats: CollectionStats::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub environment: String,
    pub lake: String,
    pub started_at: String,
    pub duration_ms: u64,
    pub collections_total: usize,
    pub collections_failed: usize,
    #[serde(default)]
    pub collections_skipped: usize,
    pub docs_read: u64,
    pub rows_written: u64,
    pub collections: Vec<CollectionReport>,
}

impl RunReport {
    pub fn new(
        run_id: String,
        environment: String,
        lake: String,
        started: chrono::DateTime<chrono::Utc>,
        took: std::time::Duration,
        collections: Vec<CollectionReport>,
    ) -> Self {
        RunReport {
            run_id,
            environment,
            lake,
            started_at: started.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            duration_ms: took.as_millis() as u64,
            collections_total: collections.len(),
            collections_failed: collections.iter().filter(|c| c.status == Status::Failed).count(),
            collections_skipped: collections.iter().filter(|c| c.status == Status::Skipped).count(),
            docs_read: collections.iter().map(|c| c.stats.docs_read).sum(),
            rows_written: collections.iter().map(|c| c.stats.rows_written).sum(),
            collections,
        }
    }

    /// `[env1] mongolake: 148/150 collections synced, 2 FAILED` or `[env1] mongolake: all 150 synced`.
    /// With skipped collections (held by a concurrent run): `[env1] mongolake: 3/5 collections synced, 2 skipped`.
    pub fn subject(&self) -> String {
        let synced = self.collections_total - self.collections_failed - self.collections_skipped;
        let mut s = if self.collections_failed == 0 && self.collections_skipped == 0 {
            format!("[{}] mongolake: all {} synced", self.environment, self.collections_total)
        } else {
            format!("[{}] mongolake: {synced}/{} collections synced", self.environment, self.collections_total)
        };
        if self.collections_failed > 0 {
            s.push_str(&format!(", {} FAILED", self.collections_failed));
        }
        if self.collections_skipped > 0 {
            s.push_str(&format!(", {} skipped (held by another run)", self.collections_skipped));
        }
        s
    }

    /// The plain-text report (terminal and email).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\nrun {} | lake {} | started {} | {:.1}s | {} documents read, {} rows written\n\n",
            self.subject(),
            self.run_id,
            self.lake,
            self.started_at,
            self.duration_ms as f64 / 1000.0,
            self.docs_read,
            self.rows_written
        );
        out.push_str(&format!(
            "{:<32} {:>7} {:>10} {:>10} {:>6} {:>6} {:>8}  {}\n",
            "collection", "status", "read", "written", "parts", "dups", "seconds", "watermark (old -> new)"
        ));
        for c in &self.collections {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            out.push_str(&format!(
                "{:<32} {:>7} {:>10} {:>10} {:>6} {:>6} {:>8.1}  {} -> {}\n",
                c.name,
                status,
                c.stats.docs_read,
                c.stats.rows_written,
                c.stats.partitions_written,
                c.stats.duplicates_dropped,
                c.duration_ms as f64 / 1000.0,
                c.stats.old_watermark.as_deref().unwrap_or("-"),
                c.stats.new_watermark.as_deref().unwrap_or("-")
            ));
            if let Some(e) = &c.error {
                let label = if c.status == Status::Skipped { "skipped" } else { "error" };
                out.push_str(&format!("    {label}: {e}\n"));
            }
            for ch in &c.stats.schema_changes {
                out.push_str(&format!("    schema v{}: {ch}\n", c.stats.schema_version));
            }
            if c.stats.table_definition_changed {
                out.push_str(&format!(
                    "    table definition changed: re-apply _mongolake/schema/{}.athena.sql (or .glue.json)\n",
                    c.name.replacen('.', "/", 1)
                ));
            }
            if c.stats.reconciled {
                out.push_str(&format!(
                    "    reconciled with MongoDB: deleted {} rows of deleted documents, fetched {} documents the timestamp query missed\n",
                    c.stats.rows_deleted, c.stats.docs_fetched
                ));
            }
            if c.stats.values_rejected + c.stats.documents_rejected > 0 {
                out.push_str(&format!(
                    "    REJECTED: {} values (stored as null), {} whole documents: see {}/_mongolake/rejects/{}/\n",
                    c.stats.values_rejected,
                    c.stats.documents_rejected,
                    self.lake.trim_end_matches('/'),
                    c.name.replacen('.', "/", 1)
                ));
            }
        }
        out
    }
}
