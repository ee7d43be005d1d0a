//! The morning report at 150 collections says what is unusual: 150 real collections synced twice against the
//! real servers, with 30 nights of history written into the lake before the second night (state rows and run
//! reports, as mongolake writes them). Tonight one collection read nothing, one ten times its usual, one wrote
//! dozens of partitions, one took far longer than usual, one lost rows in the lake, and one failed (a
//! `partition_by` on `_id`). The report (stdout and the mail received by the SMTP server) names them first after
//! the failure, with the usual range beside tonight's number; `mongolake status` shows the same flags; the mail's
//! HTML is rendered in headless Chromium and measured: no horizontal scrolling at 1000 px, one chart per flag,
//! failures above the unusual above the compact table of the rest. Its screenshot is the README's
//! (`MONGOLAKE_UPDATE_SCREENSHOT=1` writes docs/report.png).
mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const OK_COLLECTIONS: usize = 149;
const STALLED: usize = 3;
const BURST: usize = 5;
const SLOW: usize = 7;
const BACKFILL: usize = 9;
const SHRUNK: usize = 11;
const NIGHTS: usize = 30;
const FIRST_DOCS: i64 = 30;
const USUAL_DOCS: u64 = 45;

fn name(i: usize) -> String {
    let kinds = ["visits", "bills", "lab_results", "prescriptions", "admissions", "referrals"];
    format!("{}_{:03}", kinds[i % kinds.len()], i)
}

fn var(n: &str) -> String {
    std::env::var(n).unwrap_or_else(|_| panic!("{n} is not set: run scripts/test.sh"))
}

fn chromium() -> String {
    let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let ok = Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{bin}` does not run: scripts/install-tools.sh installs Debian's chromium");
    bin
}

fn run_id_days_ago(days: i64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::days(days);
    format!("{}-h{days:03}", t.format("%Y%m%dT020000000Z"))
}

/// 30 nights of history after the real first load: state rows (with the real watermark, so the next run reads
/// from it) and one run report a night, shaped like each collection's usual.
fn write_history(lake: &Path, db: &str) {
    let mut reports: Vec<Vec<serde_json::Value>> = vec![Vec::new(); NIGHTS];
    for i in 0..OK_COLLECTIONS {
        let coll = name(i);
        let state = lake.join("_mongolake/state").join(db).join(format!("{coll}.csv"));
        let mut text = std::fs::read_to_string(&state).unwrap();
        let (_, rows) = state_rows(lake.to_str().unwrap(), db, &coll);
        let watermark = rows[0]["watermark"].clone();
        for (k, night) in reports.iter_mut().enumerate() {
            let days = (NIGHTS - k) as i64;
            let run = run_id_days_ago(days);
            let start = chrono::Utc::now() - chrono::Duration::days(days);
            let docs = USUAL_DOCS - 5 + (k as u64 * 7) % 11;
            let ms: u64 = if i == SLOW { 4 + (k as u64 % 4) } else { 4_000 + (k as u64 * 37) % 900 };
            let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            text.push_str(&format!(
                "{run},{},{},{watermark},{docs},{docs},ok,incremental,0\n",
                iso(start),
                iso(start + chrono::Duration::milliseconds(ms as i64))
            ));
            let rows_in_lake = if i == SHRUNK { 140 } else { FIRST_DOCS as u64 };
            night.push(serde_json::json!({
                "name": format!("{db}.{coll}"), "status": "ok", "docs_read": docs, "rows_written": docs,
                "duration_ms": ms, "partitions_written": 1 + k % 2, "rows_in_lake": rows_in_lake, "full_load": false
            }));
        }
        std::fs::write(&state, text).unwrap();
    }
    for (k, collections) in reports.into_iter().enumerate() {
        let run = run_id_days_ago((NIGHTS - k) as i64);
        let report = serde_json::json!({ "run_id": run, "environment": "env1", "collections": collections });
        std::fs::write(lake.join("_mongolake/runs").join(format!("{run}.json")), report.to_string()).unwrap();
    }
}

/// The HTML and plain-text parts of the message to `rcpt` in the capture's maildir.
fn received(rcpt: &str) -> (String, String, String) {
    let dir = var("MONGOLAKE_TEST_SMTP_DIR");
    let index = std::fs::read_to_string(Path::new(&dir).join("index.jsonl")).unwrap();
    let entry: serde_json::Value = index
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["rcpt_tos"][0] == rcpt)
        .expect("a message to this test's recipient");
    let file = Path::new(&dir).join(entry["file"].as_str().unwrap());
    let script = "import email,sys,json\nm=email.message_from_binary_file(open(sys.argv[1],'rb'))\nparts={}\n\
                  for p in m.walk():\n    t=p.get_content_type()\n    if t in ('text/plain','text/html'):\n        \
                  parts[t]=p.get_payload(decode=True).decode(p.get_content_charset() or 'utf-8')\nprint(json.dumps(parts))";
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", script])
        .arg(&file)
        .output()
        .unwrap();
    let parts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the message's parts");
    (
        entry["subject"].as_str().unwrap().to_string(),
        parts["text/html"].as_str().expect("an HTML part").to_string(),
        parts["text/plain"].as_str().expect("a text part").to_string(),
    )
}

/// Loads `html` in headless Chromium at 1000 px and measures its layout (a script added to a copy).
fn layout(html: &str, dir: &Path) -> serde_json::Value {
    let probe = r#"<script>window.addEventListener('load', () => {
  const top = s => { const e = document.querySelector(s); return e ? e.getBoundingClientRect().top : -1; };
  const svgs = [...document.querySelectorAll('svg')].filter(s => { const b = s.getBoundingClientRect(); return b.width >= 300 && b.height >= 60; });
  const r = { width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    charts: svgs.length, failed: top('.failed'), unusual: top('#unusual'), compact: top('#compact'),
    compact_rows: document.querySelectorAll('#compact tr').length - 1,
    compact_row_px: (document.querySelector('#compact') || {getBoundingClientRect: () => ({height: 0})}).getBoundingClientRect().height / Math.max(1, document.querySelectorAll('#compact tr').length) };
  const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(r); document.body.appendChild(pre);
});</script>"#;
    let page = dir.join("probe.html");
    std::fs::write(&page, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1200", "--virtual-time-budget=3000"])
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let json = dom
        .split("<pre id=\"layout\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no layout from Chromium: {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn the_report_flags_unusual_nights_first_and_reads_well_at_150_collections() {
    let p = Project::new("report");
    let c = client().await;
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    for i in 0..OK_COLLECTIONS {
        let docs: Vec<bson::Document> = (0..FIRST_DOCS)
            .map(|d| {
                let t = bson::DateTime::from_chrono(two_days_ago + chrono::Duration::seconds(d));
                bson::doc! { "_id": d, "modified_at": t, "created_at": t, "amount": d * 10 }
            })
            .collect();
        coll(&c, &p.db, &name(i)).insert_many(docs).await.unwrap();
        // (the index an incremental run wants: without it every collection would carry a note)
        let index = mongodb::IndexModel::builder().keys(bson::doc! { "modified_at": 1 }).build();
        coll(&c, &p.db, &name(i)).create_index(index).await.unwrap();
    }
    let typo: Vec<bson::Document> =
        (0..300).map(|d| bson::doc! { "_id": d, "modified_at": bson::DateTime::now() }).collect();
    coll(&c, &p.db, "discharges").insert_many(typo).await.unwrap();
    let mut rows: Vec<String> =
        (0..OK_COLLECTIONS).map(|i| format!("{{db}},{},modified_at,date(created_at),", name(i))).collect();
    rows.push("{db},discharges,modified_at,_id,".into());
    p.write_collections(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    let lake = p.local_env("env1", "UTC");
    let rcpt = format!("ops-{}@example.org", p.db);
    let env_file = p.path().join("environments/env1.toml");
    let toml = std::fs::read_to_string(&env_file).unwrap().replace("overlap_seconds = 300", "overlap_seconds = 0")
        + &format!(
            "max_new_partitions = 200\n\n[report]\nunusual_min_documents = 10\nunusual_min_partitions = 10\n\
             unusual_min_seconds = 0\n\n[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \
             \"mongolake@example.org\"\nto = [\"{rcpt}\"]\ntls = \"none\"\nattach_json = false\n",
            var("MONGOLAKE_TEST_SMTP_PORT")
        );
    std::fs::write(&env_file, toml).unwrap();

    p.sync("env1", &[]).assert_code(1);
    write_history(Path::new(&lake), &p.db);

    // Tonight.
    let c = client().await;
    for i in 0..OK_COLLECTIONS {
        let n = match i {
            STALLED | SHRUNK => 0,
            BURST => 600,
            _ => USUAL_DOCS as i64,
        };
        if n == 0 {
            continue;
        }
        let docs: Vec<bson::Document> = (0..n)
            .map(|d| {
                let now = chrono::Utc::now();
                let created = if i == BACKFILL { now - chrono::Duration::days(d) } else { now };
                bson::doc! { "_id": 1_000 + d, "modified_at": bson::DateTime::from_chrono(now), "created_at": bson::DateTime::from_chrono(created), "amount": d }
            })
            .collect();
        coll(&c, &p.db, &name(i)).insert_many(docs).await.unwrap();
    }
    let dir = p.path().to_str().unwrap().to_string();
    let night = run_binary(&["sync", "--env", "env1", "--config-dir", &dir], p.path(), &[]);
    night.assert_code(1);
    let text = &night.stdout;

    // The text report: the failure, then what is unusual, each with the usual range and the last nights.
    let db = &p.db;
    let failed_at = text.find(&format!("FAILED {db}.discharges")).expect("the failure first");
    let unusual_at = text.find("UNUSUAL (").unwrap_or_else(|| panic!("no UNUSUAL section:\n{text}"));
    let table_at = text.find("\ncollection ").unwrap();
    assert!(failed_at < unusual_at && unusual_at < table_at, "{text}");
    let section = &text[unusual_at..table_at];
    let expect = [
        (STALLED, "documents read 1 (usual"),
        (SHRUNK, "documents read 1 (usual"),
        (BURST, "documents read 601 (usual"),
        (BACKFILL, "partitions written 45 (usual"),
        (SLOW, "duration "),
        (SHRUNK, "rows in the lake 30 (was 140 the night before: 79% fewer"),
    ];
    for (i, want) in expect {
        let line = format!("  {db}.{}  {want}", name(i));
        assert!(section.contains(&line), "`{line}` missing from:\n{section}");
    }
    assert!(section.contains("    last 30 nights: "), "{section}");
    let flagged: std::collections::BTreeSet<usize> = expect.iter().map(|(i, _)| *i).collect();
    for i in (0..OK_COLLECTIONS).filter(|i| !flagged.contains(i)) {
        assert!(!section.contains(&format!("{db}.{} ", name(i))), "{} flagged:\n{section}", name(i));
    }
    assert!(text.contains(&format!("UNUSUAL ({}):", flagged.len())), "{section}");

    // `mongolake status` shows the same flags.
    let status = run_binary(&["status", "--env", "env1", "--config-dir", &dir, "--json"], p.path(), &[]);
    let rows: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json");
    let mut status_flags = Vec::new();
    for r in rows.as_array().unwrap() {
        for u in r["unusual"].as_array().into_iter().flatten() {
            status_flags.push(format!(
                "  {}  {} {}",
                r["collection"].as_str().unwrap(),
                u["metric"].as_str().unwrap().replace('_', " "),
                u["summary"].as_str().unwrap()
            ));
        }
    }
    assert_eq!(status_flags.len(), expect.len(), "{status_flags:#?}");
    for f in &status_flags {
        let f = f.replace("rows in lake", "rows in the lake");
        assert!(section.contains(&f), "status says `{f}`, the report:\n{section}");
    }

    // The mail: subject, numbers in the plain part, a chart per flag in the HTML.
    let (subject, html, plain) = received(&rcpt);
    assert_eq!(subject, format!("[env1] mongolake: 149/150 collections synced, 1 FAILED, {} unusual", flagged.len()));
    assert!(plain.contains("UNUSUAL (") && plain.contains("last 30 nights: "), "{plain}");
    assert_eq!(html.matches("<svg").count(), expect.len());
    assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("url("), "no external assets");

    // As a person sees it.
    let shots = tempfile::tempdir().unwrap();
    std::fs::write(shots.path().join("report.html"), &html).unwrap();
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::write(target.join("report.html"), &html).unwrap();
    let l = layout(&html, shots.path());
    assert!(l["width"].as_f64().unwrap() <= 1000.0, "horizontal scrolling at 1000 px: {l}");
    assert_eq!(l["charts"].as_u64().unwrap() as usize, expect.len(), "charts drawn at full size: {l}");
    let (f, u, t) = (l["failed"].as_f64().unwrap(), l["unusual"].as_f64().unwrap(), l["compact"].as_f64().unwrap());
    assert!(0.0 < f && f < u && u < t, "failures, then unusual, then the compact table: {l}");
    assert_eq!(l["compact_rows"].as_u64().unwrap() as usize, OK_COLLECTIONS - flagged.len(), "{l}");
    assert!(l["compact_row_px"].as_f64().unwrap() <= 22.0, "the compact table is compact: {l}");
    let png = shots.path().join("report.png");
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,1700"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", shots.path().join("report.html").display()))
        .output()
        .unwrap();
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 30_000, "screenshot of {size} bytes: {}", String::from_utf8_lossy(&out.stderr));
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report.png");
    std::fs::copy(&png, &keep).unwrap();
    if std::env::var("MONGOLAKE_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")).unwrap();
        std::fs::copy(&png, Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.png")).unwrap();
    }
}
