//! What is unusual tonight: each collection's night against its own history in the lake.
//!
//! A night is a committed run of the collection: its state row (`_mongolake/state/<db>/<coll>.csv`: documents
//! read, start and end, mode) joined by run id with its entry in the run reports (`_mongolake/runs/`: duration,
//! partitions written, rows in the lake). Tonight is compared with the `[report] history_nights` nights before
//! it; full loads are no usual night for what a night reads, takes or writes (they still count for rows in the
//! lake). Per metric ([`Metric`]), with at least `unusual_min_nights` nights of it:
//!
//! - documents read, duration, partitions written: unusual when tonight is outside the usual range (10th to 90th
//!   percentile of the nights) and at least `unusual_factor` times above the median (or, for documents read, at
//!   most the median divided by it: 0 where thousands are usual), past a floor (`unusual_min_documents`,
//!   `unusual_min_seconds`, `unusual_min_partitions`) so small numbers are no news;
//! - rows in the lake: unusual when they fell by more than `rows_drop_percent` since the previous night.
//!
//! The same function computes the flags for the run report (tonight = this run) and for `mongolake status`
//! (tonight = the newest night in the lake), so both show the same flags.
use crate::config::{CollectionSpec, ReportConfig};
use crate::sink::Lake;
use crate::Result;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::HashMap;

/// Run reports read by `status` and by a sync's comparison, newest first (at least).
pub const REPORTS_SCANNED: usize = 60;

/// One committed night of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Night {
    pub run_id: String,
    /// When it finished (epoch ms).
    pub at: i64,
    /// A full load (or `--full`).
    pub full: bool,
    pub docs_read: u64,
    pub duration_ms: u64,
    /// From the night's run report (None: no report found, or one older than these fields).
    pub partitions_written: Option<u64>,
    pub rows_in_lake: Option<u64>,
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    DocumentsRead,
    Duration,
    RowsInLake,
    PartitionsWritten,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::DocumentsRead => "documents read",
            Metric::Duration => "duration",
            Metric::RowsInLake => "rows in the lake",
            Metric::PartitionsWritten => "partitions written",
        }
    }

    /// A value for people: seconds with one decimal, counts with thousands separators.
    pub fn show(self, v: f64) -> String {
        match self {
            Metric::Duration if v < 10.0 => format!("{v:.2}s"),
            Metric::Duration => format!("{v:.1}s"),
            _ => thousands(v.round() as u64),
        }
    }

    fn of(self, n: &Night) -> Option<f64> {
        match self {
            Metric::DocumentsRead => Some(n.docs_read as f64),
            Metric::Duration => Some(n.duration_ms as f64 / 1000.0),
            Metric::RowsInLake => n.rows_in_lake.map(|v| v as f64),
            Metric::PartitionsWritten => n.partitions_written.map(|v| v as f64),
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One metric of tonight far from the usual.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unusual {
    pub metric: Metric,
    pub tonight: f64,
    /// The usual range (10th to 90th percentile of the nights compared) and median.
    pub usual_low: f64,
    pub usual_high: f64,
    pub median: f64,
    /// Nights compared.
    pub nights: usize,
    /// In words: `0 (usual 950 to 1,050, median 1,000 over 30 nights)`.
    pub summary: String,
    /// The metric over the last nights, oldest first, tonight last (None: not known that night): the chart.
    pub history: Vec<Option<f64>>,
    /// The nights' run ids, as `history`.
    pub history_runs: Vec<String>,
}

impl std::fmt::Display for Unusual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.metric.label(), self.summary)
    }
}

/// The p-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The flags of `tonight` against the nights before it (`previous`, oldest first).
pub fn flags(previous: &[Night], tonight: &Night, cfg: &ReportConfig) -> Vec<Unusual> {
    let previous = &previous[previous.len().saturating_sub(cfg.history_nights)..];
    let mut out = Vec::new();
    for metric in [Metric::DocumentsRead, Metric::Duration, Metric::PartitionsWritten, Metric::RowsInLake] {
        let Some(now) = metric.of(tonight) else { continue };
        // Full loads read, take and write everything: no usual night for those three (rows in the lake stay).
        let usual_nights: Vec<&Night> = previous.iter().filter(|n| metric == Metric::RowsInLake || !n.full).collect();
        if metric != Metric::RowsInLake && tonight.full {
            continue;
        }
        let mut values: Vec<f64> = usual_nights.iter().filter_map(|n| metric.of(n)).collect();
        if values.len() < cfg.unusual_min_nights {
            continue;
        }
        let last = *values.last().expect("at least one night");
        values.sort_by(f64::total_cmp);
        let (low, high, median) = (percentile(&values, 10.0), percentile(&values, 90.0), percentile(&values, 50.0));
        let k = cfg.unusual_factor;
        let unusual = match metric {
            Metric::DocumentsRead => {
                let floor = cfg.unusual_min_documents as f64;
                (now > high && now >= median * k && now >= floor) || (now < low && now <= median / k && median >= floor)
            }
            Metric::Duration => now > high && now >= median * k && now >= cfg.unusual_min_seconds,
            Metric::PartitionsWritten => now > high && now >= median * k && now >= cfg.unusual_min_partitions as f64,
            Metric::RowsInLake => last > 0.0 && (last - now) / last * 100.0 > cfg.rows_drop_percent,
        };
        if !unusual {
            continue;
        }
        let nights = values.len();
        let summary = match metric {
            Metric::RowsInLake => format!(
                "{} (was {} the night before: {:.0}% fewer; usual {} to {} over {nights} nights)",
                metric.show(now),
                metric.show(last),
                (last - now) / last * 100.0,
                metric.show(low),
                metric.show(high)
            ),
            _ => format!(
                "{} (usual {} to {}, median {} over {nights} nights)",
                metric.show(now),
                metric.show(low),
                metric.show(high),
                metric.show(median)
            ),
        };
        let chart: Vec<&Night> = previous.iter().chain(std::iter::once(tonight)).collect();
        out.push(Unusual {
            metric,
            tonight: now,
            usual_low: low,
            usual_high: high,
            median,
            nights,
            summary,
            history: chart.iter().map(|n| metric.of(n)).collect(),
            history_runs: chart.iter().map(|n| n.run_id.clone()).collect(),
        });
    }
    out
}

/// The newest `n` run reports (parsed loosely: older mongolake versions wrote fewer fields), newest first.
pub async fn newest_reports(lake: &Lake, n: usize) -> Result<Vec<serde_json::Value>> {
    let mut paths = lake.list(&lake.layout().runs_dir()).await?;
    paths.retain(|p| p.extension() == Some("json"));
    // Run ids start with their UTC time, so names sort by age.
    paths.sort_by(|a, b| b.as_ref().cmp(a.as_ref()));
    paths.truncate(n);
    read_reports(lake, paths).await
}

/// The run reports at `paths`, in that order: one missing is skipped, one unreadable logged and skipped.
async fn read_reports(lake: &Lake, paths: Vec<object_store::path::Path>) -> Result<Vec<serde_json::Value>> {
    // (on S3 several at a time: sixty reports one after the other were sixty round trips)
    let read = futures::stream::iter(paths)
        .map(|p| async move { lake.get_opt(&p).await.map(|b| (p, b)) })
        .buffered(lake.reads_at_once())
        .try_collect::<Vec<_>>()
        .await?;
    let mut out = Vec::new();
    for (p, bytes) in read {
        if let Some(bytes) = bytes {
            match serde_json::from_slice(&bytes) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(report = %lake.display(&p), error = %e, "Unreadable run report skipped"),
            }
        }
    }
    Ok(out)
}

/// The run reports of `run_ids` (parsed loosely), read by name: no listing of the runs folder, and only the
/// nights a comparison uses (a sync's: the `[report] history_nights` newest of each collection's state file,
/// most of them the same runs). A report missing (a run that could not write it) or unreadable is skipped.
pub async fn reports_of(lake: &Lake, run_ids: std::collections::BTreeSet<String>) -> Result<Vec<serde_json::Value>> {
    read_reports(lake, run_ids.into_iter().rev().map(|id| lake.run_report_path(&id)).collect()).await
}

/// What a run report says about one collection's night.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    duration_ms: Option<u64>,
    partitions_written: Option<u64>,
    rows_in_lake: Option<u64>,
    full_load: bool,
}

/// Each collection's entries in the run reports, by (collection, run id).
pub type ReportEntries = HashMap<(String, String), Entry>;

/// Indexes `reports` by (collection, run id).
pub fn entries(reports: &[serde_json::Value]) -> ReportEntries {
    let mut out = HashMap::new();
    for r in reports {
        let Some(run) = r["run_id"].as_str() else { continue };
        for c in r["collections"].as_array().into_iter().flatten() {
            if let Some(name) = c["name"].as_str() {
                out.entry((name.to_string(), run.to_string())).or_insert(Entry {
                    duration_ms: c["duration_ms"].as_u64(),
                    partitions_written: c["partitions_written"].as_u64(),
                    rows_in_lake: c["rows_in_lake"].as_u64(),
                    full_load: c["full_load"].as_bool().unwrap_or(false),
                });
            }
        }
    }
    out
}

/// The collection's committed nights, oldest first: its state file joined with the run reports' entries.
pub async fn nights(lake: &Lake, spec: &CollectionSpec, entries: &ReportEntries) -> Result<Vec<Night>> {
    let state = crate::state::load(lake, &spec.database, &spec.collection).await?;
    Ok(nights_of(&state, spec, entries))
}

/// [`nights`] of a state file already read.
pub fn nights_of(state: &crate::state::StateFile, spec: &CollectionSpec, entries: &ReportEntries) -> Vec<Night> {
    let name = spec.name();
    state
        .rows
        .iter()
        .filter(|r| r.status == "ok")
        .map(|r| {
            let e = entries.get(&(name.clone(), r.run_id.clone())).cloned().unwrap_or_default();
            Night {
                run_id: r.run_id.clone(),
                at: r.finished_at,
                // (a first load that was also the scheduled reconcile is `reconcile` in the state file)
                full: r.mode == "full" || e.full_load,
                docs_read: r.rows_read,
                duration_ms: e.duration_ms.unwrap_or_else(|| (r.finished_at - r.started_at).max(0) as u64),
                partitions_written: e.partitions_written,
                rows_in_lake: e.rows_in_lake,
            }
        })
        .collect()
}

/// The flags of the collection's newest night against the ones before it (`mongolake status`).
pub fn flags_of_newest(nights: &[Night], cfg: &ReportConfig) -> Vec<Unusual> {
    match nights.split_last() {
        Some((newest, before)) => flags(before, newest, cfg),
        None => Vec::new(),
    }
}

/// Fills each synced collection's `unusual` (against its history: its state file's nights, joined with their
/// run reports, [`reports_of`]) and `sparse` (many tiny partitions) in a run's reports. Never fails the run: a
/// lake that cannot be read for this is logged, and tonight is then not compared with the usual.
pub async fn annotate(
    lake: &Lake,
    specs: &[CollectionSpec],
    reports: &mut [super::CollectionReport],
    run_id: &str,
    cfg: &ReportConfig,
) {
    // Each synced collection's state file (a sync holds the one it committed: not read again).
    let synced: Vec<(&mut super::CollectionReport, &CollectionSpec)> = reports
        .iter_mut()
        .filter(|c| c.status == super::Status::Ok)
        .filter_map(|c| {
            let spec = specs.iter().find(|s| s.name() == c.name)?;
            Some((c, spec))
        })
        .collect();
    let states: Vec<Option<std::sync::Arc<crate::state::StateFile>>> =
        futures::stream::iter(synced.iter().map(|(c, spec)| async move {
            if let Some(state) = c.stats.committed_state.clone() {
                return Some(state);
            }
            match crate::state::load(lake, &spec.database, &spec.collection).await {
                Ok(state) => Some(std::sync::Arc::new(state)),
                Err(e) => {
                    tracing::warn!(collection = %c.name, error = %e, "Could not read the collection's history");
                    None
                }
            }
        }))
        .buffered(lake.reads_at_once())
        .collect()
        .await;
    // The run reports of the nights compared with: the newest `history_nights` before tonight of each.
    let wanted = states
        .iter()
        .flatten()
        .flat_map(|s| {
            let ok = s.rows.iter().rev().filter(|r| r.status == "ok" && r.run_id != run_id);
            ok.take(cfg.history_nights).map(|r| r.run_id.clone())
        })
        .collect();
    let past = reports_of(lake, wanted).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "Could not read earlier run reports: tonight is not compared with the usual");
        Vec::new()
    });
    let entries = entries(&past);
    let jobs = synced.into_iter().zip(states).map(|((c, spec), state)| {
        let entries = &entries;
        async move {
            let nights = state.map(|s| nights_of(&s, spec, entries)).unwrap_or_default();
            let previous = nights.into_iter().filter(|n| n.run_id != run_id).collect::<Vec<_>>();
            let tonight = Night {
                run_id: run_id.to_string(),
                at: chrono::Utc::now().timestamp_millis(),
                full: c.stats.full_load,
                docs_read: c.stats.docs_read,
                duration_ms: c.duration_ms,
                partitions_written: Some(c.stats.partitions_written),
                rows_in_lake: c.stats.rows_in_lake,
            };
            c.unusual = flags(&previous, &tonight, cfg);
            if let Some(rows) = c.stats.rows_in_lake {
                let known = c.stats.table_partitions.clone();
                match crate::sync::guard::sparse(lake, spec, rows, cfg, known.as_deref().map(Vec::as_slice)).await {
                    Ok(s) => c.sparse = s,
                    Err(e) => tracing::warn!(collection = %c.name, error = %e, "Could not count the partitions"),
                }
            }
            for u in &c.unusual {
                tracing::warn!(collection = %c.name, unusual = %u, "Unusual night");
            }
            if let Some(s) = &c.sparse {
                tracing::warn!(collection = %c.name, warning = %s, "Many tiny partitions");
            }
        }
    });
    futures::stream::iter(jobs).buffer_unordered(8).collect::<Vec<()>>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night(i: usize, docs: u64, secs: f64, parts: u64, rows: u64) -> Night {
        Night {
            run_id: format!("r{i:02}"),
            at: i as i64,
            full: false,
            docs_read: docs,
            duration_ms: (secs * 1000.0) as u64,
            partitions_written: Some(parts),
            rows_in_lake: Some(rows),
        }
    }

    fn usual() -> Vec<Night> {
        (0..30)
            .map(|i| {
                night(i, 1000 + (i as u64 % 7) * 20, 100.0 + (i % 5) as f64, 40 + i as u64 % 3, 50_000 + 10 * i as u64)
            })
            .collect()
    }

    fn cfg() -> ReportConfig {
        ReportConfig::default()
    }

    #[test]
    fn a_usual_night_is_not_flagged() {
        assert!(flags(&usual(), &night(30, 1050, 103.0, 41, 50_300), &cfg()).is_empty());
    }

    #[test]
    fn nothing_read_where_thousands_are_usual() {
        let f = flags(&usual(), &night(30, 0, 101.0, 0, 50_300), &cfg());
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].metric, Metric::DocumentsRead);
        assert_eq!(f[0].to_string(), "documents read 0 (usual 1,000 to 1,120, median 1,060 over 30 nights)");
        assert_eq!(f[0].history.len(), 31);
        assert_eq!(f[0].history.last(), Some(&Some(0.0)));
    }

    #[test]
    fn slow_many_partitions_and_falling_rows() {
        let f = flags(&usual(), &night(30, 1050, 520.0, 400, 40_000), &cfg());
        let metrics: Vec<Metric> = f.iter().map(|u| u.metric).collect();
        assert_eq!(metrics, [Metric::Duration, Metric::PartitionsWritten, Metric::RowsInLake]);
        assert!(f[2].summary.contains("was 50,290 the night before: 20% fewer"), "{}", f[2].summary);
    }

    #[test]
    fn floors_history_length_and_full_loads() {
        // Small numbers are no news.
        let small: Vec<Night> = (0..30).map(|i| night(i, 3, 0.2, 1, 100)).collect();
        assert!(flags(&small, &night(30, 40, 2.0, 10, 100), &cfg()).is_empty());
        // Too few nights.
        assert!(flags(&usual()[..4], &night(30, 0, 101.0, 0, 50_300), &cfg()).is_empty());
        // A full load tonight: only the rows in the lake are compared.
        let mut full = night(30, 900_000, 9_000.0, 4_000, 50_300);
        full.full = true;
        assert!(flags(&usual(), &full, &cfg()).is_empty());
        // Full loads in the history are no usual night.
        let mut h = usual();
        h[29].full = true;
        h[29].docs_read = 5_000_000;
        assert!(flags(&h, &night(30, 1050, 103.0, 41, 50_300), &cfg()).is_empty());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
