//! The report as plain text (terminal, email text part) and HTML (email), laid out for a ten-second read:
//! the verdict (subject line), totals and run duration, then failures first (each with its error chain and
//! likely fix), then one table row per collection with its notes (schema changes, rejects, reconcile, dry-run
//! plan) below it.
use super::{CollectionReport, RunReport, Status};
use crate::sink::layout::Layout;

/// Partitions listed by name in a dry-run plan before "and N more".
const PLAN_SHOWN: usize = 20;

fn status_word(c: &CollectionReport) -> &'static str {
    match c.status {
        Status::Ok => "ok",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
    }
}

fn totals(r: &RunReport) -> String {
    let ok = r.collections_total - r.collections_failed - r.collections_skipped;
    // "skipped" only when there are: scripts grep the report for it.
    let skipped =
        if r.collections_skipped > 0 { format!(", {} skipped", r.collections_skipped) } else { String::new() };
    let memory = match r.peak_memory_mb {
        Some(peak) => {
            let spills = if r.spills > 0 { format!(", {} spills to disk", r.spills) } else { String::new() };
            format!(" | peak memory {peak} MB (budget {} MB{spills})", r.memory_budget_mb)
        }
        None => String::new(),
    };
    format!(
        "{} collections: {ok} ok, {} failed{skipped} | {} documents read | {} rows written | {} partitions \
         written | {} duplicates dropped | {} values rejected | {} rows deleted{memory}",
        r.collections_total,
        r.collections_failed,
        r.docs_read,
        r.rows_written,
        r.partitions_written,
        r.duplicates_dropped,
        r.values_rejected,
        r.rows_deleted
    )
}

/// What to say under a collection's row (schema changes, rejects, reconcile, retries, the dry-run plan).
fn notes(r: &RunReport, c: &CollectionReport) -> Vec<String> {
    let s = &c.stats;
    // `db.coll`: its folders in the lake are `<db>/<coll>`.
    let (db, coll) = c.name.split_once('.').unwrap_or((c.name.as_str(), ""));
    let mut out = Vec::new();
    if c.status == Status::Skipped {
        if let Some(e) = &c.error {
            out.push(format!("skipped: {e}"));
        }
    }
    if c.attempts > 1 {
        out.push(format!("{} attempts; retried after: {}", c.attempts, c.retried_errors.join(" | ")));
    }
    for ch in &s.schema_changes {
        out.push(format!("schema v{}: {ch}", s.schema_version));
    }
    if s.table_definition_changed {
        out.push(format!(
            "table definition changed: re-apply {} (or .glue.json)",
            Layout::default().athena_ddl(db, coll)
        ));
    }
    if let Some(create) = &s.missing_index {
        out.push(format!(
            "no index starts with the timestamp column: incremental runs scan the whole collection; create one: {create}"
        ));
    }
    if s.reconciled {
        let why = s.reconcile_reason.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
        out.push(format!(
            "reconciled with MongoDB{why}: deleted {} rows of deleted documents, fetched {} documents the timestamp query missed",
            s.rows_deleted, s.docs_fetched
        ));
    }
    if s.values_rejected + s.documents_rejected > 0 {
        out.push(format!(
            "REJECTED: {} values (stored as null), {} whole documents: see {}/{}/",
            s.values_rejected,
            s.documents_rejected,
            r.lake.trim_end_matches('/'),
            Layout::default().rejects_dir(db, coll)
        ));
    }
    if r.dry_run && c.status == Status::Ok {
        let n = s.planned_partitions.len();
        let mut shown: Vec<&str> = s.planned_partitions.iter().take(PLAN_SHOWN).map(String::as_str).collect();
        if n > PLAN_SHOWN {
            shown.push("...");
        }
        out.push(format!(
            "would read {} documents ({}) and rewrite {n} partition(s){}{}",
            s.docs_read,
            if s.full_load { "full load" } else { "incremental" },
            if n > 0 { ": " } else { "" },
            shown.join(", ")
        ));
        out.push(if s.schema_would_change {
            format!(
                "schema would change{}",
                if s.schema_would_widen { " and widen a column type (every partition rewritten)" } else { "" }
            )
        } else {
            "schema unchanged".into()
        });
    }
    out
}

/// The plain-text report.
pub fn text(r: &RunReport) -> String {
    let mut out = format!(
        "{}\nrun {} | lake {} | started {} | took {:.1}s\n{}\n",
        r.subject(),
        r.run_id,
        r.lake,
        r.started_at,
        r.duration_ms as f64 / 1000.0,
        totals(r)
    );
    let failed: Vec<&CollectionReport> = r.collections.iter().filter(|c| c.status == Status::Failed).collect();
    if !failed.is_empty() {
        out.push_str(&format!("\nFAILED ({}):\n", failed.len()));
        for c in failed {
            out.push_str(&format!(
                "  FAILED {}  (after {} attempt{}, {:.1}s{})\n    error: {}\n",
                c.name,
                c.attempts,
                if c.attempts == 1 { "" } else { "s" },
                c.duration_ms as f64 / 1000.0,
                if c.transient { ", transient" } else { "" },
                c.error.as_deref().unwrap_or("?")
            ));
            for cause in &c.error_chain {
                out.push_str(&format!("    caused by: {cause}\n"));
            }
            if let Some(fix) = &c.fix {
                out.push_str(&format!("    likely fix: {fix}\n"));
            }
        }
    }
    out.push_str(&format!(
        "\n{:<32} {:>7} {:>10} {:>10} {:>6} {:>6} {:>6} {:>7} {:>8} {:>9}  {}\n",
        "collection",
        "status",
        "read",
        "written",
        "parts",
        "dups",
        "rejct",
        "deleted",
        "seconds",
        "docs/s",
        "watermark (old -> new)"
    ));
    for c in &r.collections {
        let s = &c.stats;
        out.push_str(&format!(
            "{:<32} {:>7} {:>10} {:>10} {:>6} {:>6} {:>6} {:>7} {:>8.1} {:>9.0}  {} -> {}\n",
            c.name,
            status_word(c),
            s.docs_read,
            s.rows_written,
            s.partitions_written,
            s.duplicates_dropped,
            s.values_rejected + s.documents_rejected,
            s.rows_deleted,
            c.duration_ms as f64 / 1000.0,
            c.docs_per_second(),
            s.old_watermark.as_deref().unwrap_or("-"),
            s.new_watermark.as_deref().unwrap_or("-")
        ));
        for n in notes(r, c) {
            out.push_str(&format!("    {n}\n"));
        }
    }
    for h in &r.ranges_helped {
        out.push_str(&format!(
            "helped: {} _id range {} of {} (owner run {}): {} documents in {:.1}s{}\n",
            h.collection,
            h.range + 1,
            h.ranges,
            h.owner_run_id,
            h.docs_read,
            h.duration_ms as f64 / 1000.0,
            h.error.as_deref().map(|e| format!(", GIVEN UP: {e}")).unwrap_or_default()
        ));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The HTML report: the same content as [`text`], as a table with the failures in a red box at the top.
pub fn html(r: &RunReport) -> String {
    let verdict = if r.collections_failed > 0 { "#b00020" } else { "#1b5e20" };
    let mut out = format!(
        "<html><body style=\"font-family:sans-serif;font-size:14px\">\n<h2 style=\"color:{verdict}\">{}</h2>\n\
         <p>run <code>{}</code> | lake <code>{}</code> | started {} | took {:.1}s</p>\n<p><b>{}</b></p>\n",
        esc(&r.subject()),
        esc(&r.run_id),
        esc(&r.lake),
        esc(&r.started_at),
        r.duration_ms as f64 / 1000.0,
        esc(&totals(r))
    );
    for c in r.collections.iter().filter(|c| c.status == Status::Failed) {
        out.push_str(&format!(
            "<div style=\"border:2px solid #b00020;padding:8px;margin:8px 0\"><b>FAILED: {}</b> (after {} attempt(s), \
             {:.1}s{})<br><code>{}</code>",
            esc(&c.name),
            c.attempts,
            c.duration_ms as f64 / 1000.0,
            if c.transient { ", transient" } else { "" },
            esc(c.error.as_deref().unwrap_or("?"))
        ));
        for cause in &c.error_chain {
            out.push_str(&format!("<br>caused by: <code>{}</code>", esc(cause)));
        }
        if let Some(fix) = &c.fix {
            out.push_str(&format!("<br><b>Likely fix:</b> {}", esc(fix)));
        }
        out.push_str("</div>\n");
    }
    out.push_str(
        "<table style=\"border-collapse:collapse\" border=\"1\" cellpadding=\"4\">\n<tr><th>collection</th>\
         <th>status</th><th>documents read</th><th>rows written</th><th>partitions</th><th>duplicates dropped</th>\
         <th>values rejected</th><th>rows deleted</th><th>seconds</th><th>docs/s</th><th>watermark old</th>\
         <th>watermark new</th></tr>\n",
    );
    for c in &r.collections {
        let s = &c.stats;
        let color = match c.status {
            Status::Ok => "#1b5e20",
            Status::Failed => "#b00020",
            Status::Skipped => "#8d6e00",
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td style=\"color:{color}\"><b>{}</b></td><td align=\"right\">{}</td>\
             <td align=\"right\">{}</td><td align=\"right\">{}</td><td align=\"right\">{}</td>\
             <td align=\"right\">{}</td><td align=\"right\">{}</td><td align=\"right\">{:.1}</td>\
             <td align=\"right\">{:.0}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&c.name),
            status_word(c),
            s.docs_read,
            s.rows_written,
            s.partitions_written,
            s.duplicates_dropped,
            s.values_rejected + s.documents_rejected,
            s.rows_deleted,
            c.duration_ms as f64 / 1000.0,
            c.docs_per_second(),
            esc(s.old_watermark.as_deref().unwrap_or("-")),
            esc(s.new_watermark.as_deref().unwrap_or("-"))
        ));
        let n = notes(r, c);
        if !n.is_empty() {
            let items: Vec<String> = n.iter().map(|x| format!("<li>{}</li>", esc(x))).collect();
            out.push_str(&format!("<tr><td></td><td colspan=\"11\"><ul>{}</ul></td></tr>\n", items.join("")));
        }
    }
    out.push_str("</table>\n</body></html>\n");
    out
}
