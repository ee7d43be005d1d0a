//! The report as plain text (terminal, email text part) and HTML (email), laid out for a ten-second read:
//! the verdict (subject line), totals and run duration, then failures first (each with its error chain and
//! likely fix), then what is unusual tonight against each collection's own history ([`super::history`]: the
//! text lists the last nights' numbers, the HTML draws them), the many-tiny-partitions warnings, then the
//! collections: in the text one row each with its notes below it; in the HTML a full row with notes for the
//! collections with something to say, and one compact table for the rest (readable at 150 collections).
use super::{CollectionReport, RunReport, Status};
use crate::sink::layout::Layout;

/// How the note of a changed Athena/Glue table definition starts.
const TABLE_DEFINITION_CHANGED: &str = "table definition changed";

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
    // (a night's re-read documents cost their partitions' reads: said, so a slow rerun that wrote nothing explains
    // itself; after the fields scripts split on, like the CPU and memory ones)
    let unchanged = match r.partitions_unchanged {
        0 => String::new(),
        n => format!(" | {n} partitions read and left as they were (their documents re-read, the same)"),
    };
    let known = match r.docs_unchanged {
        0 => String::new(),
        n => format!(" | {n} documents re-read as the lake holds them (their partitions not read)"),
    };
    format!(
        "{} collections: {ok} ok, {} failed{skipped} | {} documents read | {} rows written | {} partitions \
         written | {} duplicates dropped | {} values rejected | {} rows deleted{unchanged}{known}{}{memory}",
        r.collections_total,
        r.collections_failed,
        r.docs_read,
        r.rows_written,
        r.partitions_written,
        r.duplicates_dropped,
        r.values_rejected,
        r.rows_deleted,
        cpu(r),
    )
}

/// ` | CPU 12.3 s (0.12 ms a document read, 0.84 ms a partition written)`, when the CPU time is known.
fn cpu(r: &RunReport) -> String {
    let Some(ms) = r.cpu_ms else { return String::new() };
    let per = |n: u64, what: &str| (n > 0).then(|| format!("{:.3} ms a {what}", ms as f64 / n as f64));
    let each: Vec<String> = [per(r.docs_read, "document read"), per(r.partitions_written, "partition written")]
        .into_iter()
        .flatten()
        .collect();
    let each = if each.is_empty() { String::new() } else { format!(" ({})", each.join(", ")) };
    format!(" | CPU {:.1} s{each}", ms as f64 / 1000.0)
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
            "{TABLE_DEFINITION_CHANGED}: re-apply {} (or .glue.json)",
            Layout::default().athena_ddl(db, coll)
        ));
    }
    if let Some(applied) = &s.glue_applied {
        out.push(format!("Glue Data Catalog: {applied}"));
    }
    if let Some(sp) = &c.sparse {
        out.push(format!("WARNING: {sp}"));
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
    let unusual: Vec<&CollectionReport> = r.collections.iter().filter(|c| !c.unusual.is_empty()).collect();
    if !unusual.is_empty() {
        out.push_str(&format!("\nUNUSUAL ({}): tonight against the collection's own last nights\n", unusual.len()));
        for c in unusual {
            for u in &c.unusual {
                out.push_str(&format!("  {}  {u}\n", c.name));
                let (before, tonight) = u.history.split_at(u.history.len().saturating_sub(1));
                let shown: Vec<String> =
                    before.iter().map(|v| v.map(|v| u.metric.show(v)).unwrap_or_else(|| "-".into())).collect();
                out.push_str(&format!(
                    "    last {} nights: {} | tonight {}\n",
                    before.len(),
                    shown.join(" "),
                    tonight.first().copied().flatten().map(|v| u.metric.show(v)).unwrap_or_else(|| "-".into())
                ));
            }
        }
    }
    let sparse: Vec<&CollectionReport> = r.collections.iter().filter(|c| c.sparse.is_some()).collect();
    if !sparse.is_empty() {
        out.push_str(&format!("\nWARNINGS ({}):\n", sparse.len()));
        for c in sparse {
            out.push_str(&format!("  {}  {}\n", c.name, c.sparse.as_ref().expect("filtered")));
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

/// The HTML report: the same content as [`text`], laid out for 150 collections: the verdict and totals, the
/// failures in red boxes, then the unusual collections in amber boxes, each flagged number with a chart of its
/// last nights (inline SVG: no external assets), the many-tiny-partitions warnings, a table of the collections
/// with something to say (notes, skipped, failed), and every other collection in one compact table.
pub fn html(r: &RunReport) -> String {
    let verdict = if r.collections_failed > 0 { "#b00020" } else { "#1b5e20" };
    let mut out = format!(
        "<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif;\
         font-size:14px;max-width:960px;margin:8px\">\n<h2 style=\"color:{verdict};margin:4px 0\">{}</h2>\n\
         <p style=\"margin:4px 0;color:#444\">run <code>{}</code> | lake <code>{}</code> | started {} | took {:.1}s</p>\n\
         <p style=\"margin:4px 0 12px\"><b>{}</b></p>\n",
        esc(&r.subject()),
        esc(&r.subject()),
        esc(&r.run_id),
        esc(&r.lake),
        esc(&r.started_at),
        r.duration_ms as f64 / 1000.0,
        esc(&totals(r))
    );
    for c in r.collections.iter().filter(|c| c.status == Status::Failed) {
        out.push_str(&format!(
            "<div class=\"failed\" style=\"border:2px solid #b00020;padding:8px;margin:8px 0\"><b>FAILED: {}</b> (after {} attempt(s), \
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
    let unusual: Vec<&CollectionReport> = r.collections.iter().filter(|c| !c.unusual.is_empty()).collect();
    if !unusual.is_empty() {
        out.push_str(&format!(
            "<h3 id=\"unusual\" style=\"margin:16px 0 4px\">Unusual tonight ({}): against each collection's own last nights</h3>\n",
            unusual.len()
        ));
        for c in unusual {
            out.push_str(&format!(
                "<div class=\"unusual\" style=\"border:2px solid #e65100;padding:6px 8px;margin:6px 0\"><b>{}</b> \
                 <span style=\"color:#666\">({}, {} read, {} written, {:.1}s)</span>\n",
                esc(&c.name),
                status_word(c),
                c.stats.docs_read,
                c.stats.rows_written,
                c.duration_ms as f64 / 1000.0
            ));
            for u in &c.unusual {
                out.push_str(&format!(
                    "<table style=\"border-collapse:collapse;margin:4px 0\"><tr><td style=\"padding:0 12px 0 0\">{}</td>\
                     <td style=\"vertical-align:middle\"><b style=\"color:#e65100\">{}</b>: {}</td></tr></table>\n",
                    chart(u),
                    esc(u.metric.label()),
                    esc(&u.summary)
                ));
            }
            out.push_str("</div>\n");
        }
    }
    let sparse: Vec<&CollectionReport> = r.collections.iter().filter(|c| c.sparse.is_some()).collect();
    if !sparse.is_empty() {
        out.push_str("<div id=\"warnings\" style=\"border:2px solid #8d6e00;padding:6px 8px;margin:8px 0\"><b>Many tiny partitions</b><ul style=\"margin:4px 0\">");
        for c in sparse {
            out.push_str(&format!(
                "<li><b>{}</b>: {}</li>",
                esc(&c.name),
                esc(&c.sparse.as_ref().expect("filtered").to_string())
            ));
        }
        out.push_str("</ul></div>\n");
    }
    // Collections with something to say get the full row and their notes; the rest one compact table.
    // (a changed table definition alone is no reason: a new date partition changes its comment every night; the
    // compact table marks it)
    let remarkable = |c: &CollectionReport| {
        c.status != Status::Ok
            || !c.unusual.is_empty()
            || notes(r, c).iter().any(|n| !n.starts_with(TABLE_DEFINITION_CHANGED))
    };
    let (noted, plain): (Vec<&CollectionReport>, Vec<&CollectionReport>) =
        r.collections.iter().partition(|c| remarkable(c));
    if !noted.is_empty() {
        out.push_str(
            "<h3 style=\"margin:16px 0 4px\">Collections with notes</h3>\n<table id=\"noted\" style=\"border-collapse:collapse;\
             font-size:12px\" border=\"1\" cellpadding=\"3\">\n<tr><th>collection</th><th>status</th><th>read</th>\
             <th>written</th><th>parts</th><th>dups</th><th>rejected</th><th>deleted</th><th>s</th><th>docs/s</th>\
             <th>watermark old / new</th></tr>\n",
        );
        for c in noted {
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
                 <td align=\"right\">{:.0}</td><td>{}<br>{}</td></tr>\n",
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
                out.push_str(&format!(
                    "<tr><td></td><td colspan=\"10\"><ul style=\"margin:2px 0;overflow-wrap:anywhere\">{}</ul></td></tr>\n",
                    items.join("")
                ));
            }
        }
        out.push_str("</table>\n");
    }
    if !plain.is_empty() {
        out.push_str(&format!(
            "<h3 style=\"margin:16px 0 4px\">{} other collection(s): ok, nothing unusual</h3>\n<table id=\"compact\" \
             style=\"border-collapse:collapse;font-size:12px\" cellpadding=\"2\">\n<tr style=\"background:#eee\">\
             <th align=\"left\">collection</th><th align=\"right\">read</th><th align=\"right\">written</th>\
             <th align=\"right\">parts</th><th align=\"right\">rows in lake</th><th align=\"right\">s</th>\
             <th align=\"left\">watermark</th><th align=\"left\">table definition</th></tr>\n",
            plain.len()
        ));
        for (i, c) in plain.iter().enumerate() {
            let s = &c.stats;
            let shade = if i % 2 == 1 { " style=\"background:#f6f6f6\"" } else { "" };
            out.push_str(&format!(
                "<tr{shade}><td>{}</td><td align=\"right\">{}</td><td align=\"right\">{}</td><td align=\"right\">{}</td>\
                 <td align=\"right\">{}</td><td align=\"right\">{:.1}</td><td>{}</td><td>{}</td></tr>\n",
                esc(&c.name),
                s.docs_read,
                s.rows_written,
                s.partitions_written,
                s.rows_in_lake.map(super::history::thousands).unwrap_or_else(|| "-".into()),
                c.duration_ms as f64 / 1000.0,
                esc(s.new_watermark.as_deref().unwrap_or("-")),
                esc(&match (&s.glue_applied, s.table_definition_changed) {
                    (Some(applied), _) => format!("Glue: {applied}"),
                    (None, true) => "changed: re-apply its .athena.sql".to_string(),
                    (None, false) => String::new(),
                })
            ));
        }
        out.push_str("</table>\n");
    }
    for h in &r.ranges_helped {
        out.push_str(&format!(
            "<p style=\"font-size:12px\">helped: {} _id range {} of {} (owner run {}): {} documents in {:.1}s</p>\n",
            esc(&h.collection),
            h.range + 1,
            h.ranges,
            esc(&h.owner_run_id),
            h.docs_read,
            h.duration_ms as f64 / 1000.0
        ));
    }
    out.push_str("</body></html>\n");
    out
}

/// A bar chart of one metric over the last nights (tonight last, in the flag's colour) with the usual range
/// shaded: inline SVG, 320 x 64, with the numbers in its `<title>` (and in the plain-text part).
fn chart(u: &super::history::Unusual) -> String {
    const W: f64 = 320.0;
    const H: f64 = 64.0;
    const TOP: f64 = 12.0;
    let n = u.history.len().max(1);
    let max = u.history.iter().flatten().copied().fold(u.usual_high, f64::max).max(1e-9);
    let y = |v: f64| TOP + (H - TOP) * (1.0 - v / max);
    let slot = W / n as f64;
    let bar = (slot * 0.75).max(1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{}\" viewBox=\"0 0 {W} {}\" role=\"img\">\
         <title>{}: {} over the last {} nights, tonight last</title>",
        H + 12.0,
        H + 12.0,
        esc(u.metric.label()),
        esc(&u
            .history
            .iter()
            .map(|v| v.map(|v| u.metric.show(v)).unwrap_or_else(|| "-".into()))
            .collect::<Vec<_>>()
            .join(", ")),
        n.saturating_sub(1)
    );
    // The usual range, shaded, and the median.
    svg.push_str(&format!(
        "<rect x=\"0\" y=\"{:.1}\" width=\"{W}\" height=\"{:.1}\" fill=\"#e3f2fd\"/>\
         <line x1=\"0\" x2=\"{W}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#64b5f6\" stroke-dasharray=\"3,2\"/>",
        y(u.usual_high),
        (y(u.usual_low) - y(u.usual_high)).max(1.0),
        y(u.median),
        y(u.median)
    ));
    for (i, v) in u.history.iter().enumerate() {
        let Some(v) = v else { continue };
        let tonight = i + 1 == n;
        let top = y(*v).min(H - 1.0);
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
            i as f64 * slot + (slot - bar) / 2.0,
            H - top,
            if tonight { "#e65100" } else { "#90a4ae" }
        ));
    }
    svg.push_str(&format!(
        "<line x1=\"0\" x2=\"{W}\" y1=\"{H}\" y2=\"{H}\" stroke=\"#999\"/>\
         <text x=\"0\" y=\"9\" font-size=\"9\" fill=\"#666\">{}</text>\
         <text x=\"0\" y=\"{}\" font-size=\"9\" fill=\"#666\">{} nights ago</text>\
         <text x=\"{W}\" y=\"{}\" font-size=\"9\" fill=\"#e65100\" text-anchor=\"end\">tonight {}</text></svg>",
        esc(&u.metric.show(max)),
        H + 10.0,
        n.saturating_sub(1),
        H + 10.0,
        esc(&u.metric.show(u.tonight))
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::history::{Metric, Unusual};

    fn report() -> RunReport {
        let mut cs: Vec<CollectionReport> =
            (0..150).map(|i| CollectionReport::ok(format!("hims.c{i:03}"), Default::default(), 1_000)).collect();
        cs[7].unusual.push(Unusual {
            metric: Metric::DocumentsRead,
            tonight: 0.0,
            usual_low: 950.0,
            usual_high: 1_050.0,
            median: 1_000.0,
            nights: 30,
            summary: "0 (usual 950 to 1,050, median 1,000 over 30 nights)".into(),
            history: (0..30).map(|i| Some(950.0 + i as f64 * 3.0)).chain([Some(0.0)]).collect(),
            history_runs: (0..31).map(|i| format!("r{i}")).collect(),
        });
        let took = std::time::Duration::from_secs(60);
        RunReport::new("r".into(), "env1".into(), "s3://b/l".into(), chrono::Utc::now(), took, cs)
    }

    #[test]
    fn the_unusual_come_first_with_numbers_and_a_chart_and_the_rest_share_a_compact_table() {
        let r = report();
        assert_eq!(r.subject(), "[env1] mongolake: all 150 synced, 1 unusual");
        let text = r.to_text();
        let unusual = text.find("UNUSUAL (1):").expect("the section");
        assert!(unusual < text.find("\ncollection ").unwrap());
        assert!(text.contains("  hims.c007  documents read 0 (usual 950 to 1,050, median 1,000 over 30 nights)\n"));
        assert!(text.contains("    last 30 nights: 950 953 956 "), "{text}");
        let html = r.to_html();
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(html.contains("149 other collection(s): ok, nothing unusual"));
        assert_eq!(
            html.matches("<tr").count(),
            1 + 1 + 1 + 1 + 149,
            "the flag, noted header, c007, compact header, the rest"
        );
        assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("url("), "no external assets");
    }

    #[test]
    fn partitions_read_and_left_as_they_were_are_counted_beside_those_written() {
        let mut r = report();
        assert!(r.to_text().contains("| 0 partitions written | 0 duplicates dropped"), "none: nothing said");
        r.collections[3].stats.partitions_unchanged = 40;
        r.collections[9].stats.partitions_unchanged = 2;
        r.collections[9].stats.docs_unchanged = 7;
        let r = RunReport::new(
            "r".into(),
            "env1".into(),
            "l".into(),
            chrono::Utc::now(),
            Default::default(),
            r.collections,
        );
        assert_eq!(r.partitions_unchanged, 42);
        assert!(
            r.to_text().contains(
                "| 0 partitions written | 0 duplicates dropped | 0 values rejected | 0 rows deleted | 42 partitions \
                 read and left as they were (their documents re-read, the same) | 7 documents re-read as the lake holds \
                 them (their partitions not read)"
            ),
            "{}",
            r.to_text()
        );
        assert_eq!(serde_json::to_value(&r).unwrap()["partitions_unchanged"], 42);
        assert_eq!(serde_json::to_value(&r).unwrap()["docs_unchanged"], 7);
    }
}
