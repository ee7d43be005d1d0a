//! `mongolake status --env E [--json]`: one line per listed collection from what the lake holds, without
//! touching MongoDB: the last successful run and its watermark (state file), how far that lags behind now,
//! rows in the lake (the key index's row count: one entry per row), the last run's numbers, and the last
//! error (the newest run report in which the collection failed), and what was unusual about its newest night
//! against the ones before ([`crate::report::history`], the same flags as that night's run report).
//!
//! Only the newest [`REPORTS_SCANNED`] run reports are read, so the command stays fast on a lake with years of
//! nightly runs; an error older than that is not shown.
use crate::config::Config;
use crate::sink::Lake;
use crate::Result;
use serde::Serialize;

/// Run reports read, newest first.
pub use crate::report::history::REPORTS_SCANNED;

/// What the lake says about one collection.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CollectionStatus {
    pub collection: String,
    /// `ok`, `failed` or `skipped` in the newest run report naming the collection; `never synced` without any.
    pub last_run_status: String,
    pub last_success_run: Option<String>,
    pub last_success_at: Option<String>,
    pub watermark: Option<String>,
    /// Seconds between the watermark and now.
    pub lag_seconds: Option<i64>,
    /// Rows in the lake's table (None when the collection has no key index yet).
    pub rows: Option<u64>,
    pub last_rows_read: Option<u64>,
    pub last_rows_written: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_run: Option<String>,
    pub last_error_fix: Option<String>,
    /// The newest night's numbers far from the collection's usual (as the run report flags them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unusual: Vec<crate::report::history::Unusual>,
}

/// Collects the status of every listed collection.
pub async fn collect(config: &Config) -> Result<Vec<CollectionStatus>> {
    let env = &config.environment;
    let lake = Lake::open_tuned(&env.lake, &env.sync.store)?;
    let reports =
        crate::report::history::newest_reports(&lake, REPORTS_SCANNED.max(2 * env.report.history_nights)).await?;
    let entries = crate::report::history::entries(&reports);
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = Vec::new();
    for spec in &config.collections.entries {
        let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
        let name = spec.name();
        let state = crate::state::load(&lake, db, coll).await?;
        let mut st = CollectionStatus { collection: name.clone(), ..Default::default() };
        if let Some(row) = state.rows.iter().rev().find(|r| r.status == "ok") {
            st.last_success_run = Some(row.run_id.clone());
            st.last_success_at = Some(crate::schema::text::format_millis(row.finished_at));
            st.last_rows_read = Some(row.rows_read);
            st.last_rows_written = Some(row.rows_written);
        }
        if let Some(w) = state.watermark() {
            st.watermark = Some(crate::schema::text::format_millis(w));
            st.lag_seconds = Some((now - w) / 1000);
        }
        st.rows = crate::state::index::store::saved_keys(&lake, db, coll).await?;
        let nights = crate::report::history::nights(&lake, spec, &entries).await?;
        st.unusual = crate::report::history::flags_of_newest(&nights, &env.report);
        let entry_of = |r: &serde_json::Value| -> Option<serde_json::Value> {
            r["collections"].as_array()?.iter().find(|c| c["name"] == name.as_str()).cloned()
        };
        st.last_run_status = reports
            .iter()
            .find_map(|r| entry_of(r).and_then(|c| c["status"].as_str().map(String::from)))
            .unwrap_or_else(|| if state.rows.is_empty() { "never synced".into() } else { "ok".into() });
        for r in &reports {
            if let Some(c) = entry_of(r).filter(|c| c["status"] == "failed") {
                st.last_error = c["error"].as_str().map(String::from);
                st.last_error_run = r["run_id"].as_str().map(String::from);
                st.last_error_fix = c["fix"].as_str().map(String::from);
                break;
            }
        }
        out.push(st);
    }
    Ok(out)
}

/// The table for people.
pub fn to_text(rows: &[CollectionStatus]) -> String {
    let mut out = format!(
        "{:<32} {:<13} {:<24} {:<24} {:>9} {:>12} {:>17}  {}\n",
        "collection",
        "last run",
        "last success (UTC)",
        "watermark (UTC)",
        "lag",
        "rows",
        "last read/written",
        "last error"
    );
    for r in rows {
        let last = match (r.last_rows_read, r.last_rows_written) {
            (Some(a), Some(b)) => format!("{a}/{b}"),
            _ => "-".into(),
        };
        let err = match (&r.last_error, &r.last_error_run) {
            (Some(e), Some(run)) => format!("[{run}] {e}"),
            (Some(e), None) => e.clone(),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<32} {:<13} {:<24} {:<24} {:>9} {:>12} {:>17}  {}\n",
            r.collection,
            if r.last_run_status == "failed" { "FAILED" } else { r.last_run_status.as_str() },
            r.last_success_at.as_deref().unwrap_or("never"),
            r.watermark.as_deref().unwrap_or("-"),
            r.lag_seconds.map(super::human_duration).unwrap_or_else(|| "-".into()),
            r.rows.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            last,
            err
        ));
        for u in &r.unusual {
            out.push_str(&format!("    UNUSUAL: {u}\n"));
        }
    }
    out
}
