//! The run report: what each collection did, written to `<lake>/_mongolake/runs/<run-id>.json`, printed at the
//! end of a run and emailed to the operators.
//!
//! The JSON is a public contract read by `mongolake status` and by operators' scripts: fields are added, never
//! renamed or removed. Rendering (plain text and HTML) lives in [`render`], the likely fixes in [`fix`].
pub mod email;
pub mod fix;
pub mod history;
pub mod render;

use crate::sync::stats::CollectionStats;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Deeper causes of `error`, outermost first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_chain: Vec<String>,
    /// What the operator should most likely do about `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Whether the (last) error was transient (network, stepdown, S3 503): a rerun may well succeed.
    #[serde(default)]
    pub transient: bool,
    /// Passes made over the collection (more than 1 when a transient error was retried).
    pub attempts: u32,
    /// The transient errors that were retried, in order, each with its causes ([`with_causes`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried_errors: Vec<String>,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub stats: CollectionStats,
    /// What is far from the collection's usual night (see [`history`]), with the last nights' values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unusual: Vec<history::Unusual>,
    /// The table holds many tiny partitions (see [`crate::sync::guard`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse: Option<crate::sync::guard::Sparse>,
}

impl CollectionReport {
    pub fn ok(name: String, stats: CollectionStats, duration_ms: u64) -> Self {
        CollectionReport {
            name,
            status: Status::Ok,
            error: None,
            error_chain: Vec::new(),
            fix: None,
            transient: false,
            attempts: 1,
            retried_errors: Vec::new(),
            duration_ms,
            stats,
            unusual: Vec::new(),
            sparse: None,
        }
    }
    pub fn skipped(name: String, reason: String) -> Self {
        CollectionReport { status: Status::Skipped, error: Some(reason), ..Self::ok(name, Default::default(), 0) }
    }
    /// A failure known only as text (a bad collections.csv row).
    pub fn failed(name: String, error: String, duration_ms: u64) -> Self {
        let fix = fix::for_message(&error);
        CollectionReport {
            status: Status::Failed,
            error: Some(error),
            fix,
            ..Self::ok(name, Default::default(), duration_ms)
        }
    }
    /// A failure with its error: the chain, whether it was transient, and the likely fix.
    pub fn failed_with(name: String, error: &crate::Error, duration_ms: u64) -> Self {
        CollectionReport {
            status: Status::Failed,
            error: Some(error.to_string()),
            error_chain: error.chain(),
            fix: fix::for_error(error),
            transient: error.is_transient(),
            ..Self::ok(name, Default::default(), duration_ms)
        }
    }

    /// Documents read per second of the collection's duration.
    pub fn docs_per_second(&self) -> f64 {
        if self.duration_ms == 0 {
            0.0
        } else {
            self.stats.docs_read as f64 * 1000.0 / self.duration_ms as f64
        }
    }
}

/// An error's message and its deeper causes ([`crate::Error::chain`]): `message (caused by: a; b)`. What
/// `retried_errors` records of each failed attempt.
pub fn with_causes(e: &crate::Error) -> String {
    let chain = e.chain();
    if chain.is_empty() {
        e.to_string()
    } else {
        format!("{e} (caused by: {})", chain.join("; "))
    }
}

/// The CPU time this process has used so far, user and system (`getrusage`; None where it is not read).
pub fn process_cpu() -> Option<std::time::Duration> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: getrusage fills the struct it is given; an all-zero rusage is a valid value to pass.
        let mut usage = unsafe { std::mem::zeroed::<libc::rusage>() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let t = |tv: libc::timeval| std::time::Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
            return Some(t(usage.ru_utime) + t(usage.ru_stime));
        }
    }
    None
}

/// The process's peak resident set size so far (`VmHWM` in /proc/self/status; None off Linux).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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
    pub collections_skipped: usize,
    pub docs_read: u64,
    pub rows_written: u64,
    /// Totals over the collections (added with the richer report).
    pub partitions_written: u64,
    /// Partitions read and left as they were: every document of this run in them was already there, the same
    /// (re-read by the `[sync] overlap_seconds` window, or by a rerun soon after a run).
    pub partitions_unchanged: u64,
    /// Documents re-read as the lake holds them, known from the digest the run before left (`state::digest`):
    /// not merged, and no partition read for them.
    #[serde(default)]
    pub docs_unchanged: u64,
    pub duplicates_dropped: u64,
    pub values_rejected: u64,
    pub rows_deleted: u64,
    /// The process's peak resident memory (Linux `VmHWM`), against `[sync] memory_budget_mb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_mb: Option<u64>,
    pub memory_budget_mb: u64,
    /// CPU time of the whole run (user and system, every thread), from its start to the report: shown per
    /// document read and per partition written, what a night costs the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Times a collection spilled its buffered documents to local disk to stay within the budget.
    pub spills: u64,
    /// `sync --dry-run`: nothing was written; `planned_partitions` say what would have been.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    pub collections: Vec<CollectionReport>,
    /// `--shard`: ranges of other workers' first loads this worker read and encoded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges_helped: Vec<crate::sync::stats::HelpedRange>,
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
        let sum = |f: fn(&CollectionReport) -> u64| collections.iter().map(f).sum::<u64>();
        RunReport {
            run_id,
            environment,
            lake,
            started_at: started.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            duration_ms: took.as_millis() as u64,
            collections_total: collections.len(),
            collections_failed: collections.iter().filter(|c| c.status == Status::Failed).count(),
            collections_skipped: collections.iter().filter(|c| c.status == Status::Skipped).count(),
            docs_read: sum(|c| c.stats.docs_read),
            rows_written: sum(|c| c.stats.rows_written),
            partitions_written: sum(|c| c.stats.partitions_written),
            partitions_unchanged: sum(|c| c.stats.partitions_unchanged),
            docs_unchanged: sum(|c| c.stats.docs_unchanged),
            duplicates_dropped: sum(|c| c.stats.duplicates_dropped),
            values_rejected: sum(|c| c.stats.values_rejected + c.stats.documents_rejected),
            rows_deleted: sum(|c| c.stats.rows_deleted),
            peak_memory_mb: peak_memory_bytes().map(|b| b.div_ceil(1024 * 1024)),
            memory_budget_mb: 0,
            cpu_ms: process_cpu().map(|d| d.as_millis() as u64),
            spills: sum(|c| c.stats.spills),
            dry_run: false,
            collections,
            ranges_helped: Vec::new(),
        }
    }

    /// `[env1] mongolake: 148/150 collections synced, 2 FAILED` or `[env1] mongolake: all 150 synced`.
    /// With skipped collections (held by a concurrent run): `[env1] mongolake: 3/5 collections synced, 2 skipped`.
    /// Collections whose night was unusual (against their own history).
    pub fn collections_unusual(&self) -> usize {
        self.collections.iter().filter(|c| !c.unusual.is_empty()).count()
    }

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
        let unusual = self.collections_unusual();
        if unusual > 0 {
            s.push_str(&format!(", {unusual} unusual"));
        }
        if self.dry_run {
            s.push_str(" (dry run: nothing written)");
        }
        s
    }

    /// The plain-text report (terminal and email).
    pub fn to_text(&self) -> String {
        render::text(self)
    }

    /// The HTML report (email).
    pub fn to_html(&self) -> String {
        render::html(self)
    }
}
