//! The operator commands against the real servers (scripts/servers.sh): `status`, `check`, `sync --dry-run`,
//! per-collection retries of transient failures (a real S3 outage: the lake's port answers only after the
//! first failure), permanent failures not retried, and no secret in any output, log, report or mail.
mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const DAY: i64 = 86_400_000;

/// `n` documents with `_id` from `first`, spread over three creation days.
async fn insert(db: &str, coll_name: &str, first: i64, n: i64) {
    let client = client().await;
    let now = now_millis();
    let docs: Vec<bson::Document> = (first..first + n)
        .map(|i| {
            bson::doc! {
                "_id": i,
                "modified_at": bson::DateTime::from_millis(now - 60_000 - i),
                "created_at": bson::DateTime::from_millis(now - (i % 3) * DAY),
                "v": i,
            }
        })
        .collect();
    coll(&client, db, coll_name).insert_many(docs).await.expect("insert");
}

fn cmd(p: &Project, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let dir = p.path().to_str().unwrap().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["--config-dir", dir.as_str()]);
    run_binary(&all, p.path(), envs)
}

/// The only run report in a local lake.
fn run_reports(lake: &str) -> Vec<Value> {
    let mut out: Vec<Value> = files_under(&Path::new(lake).join("_mongolake/runs"))
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    out.sort_by_key(|r| (r["started_at"].as_str().unwrap().to_string(), r["run_id"].as_str().unwrap().to_string()));
    out
}

fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

#[tokio::test]
async fn status_shows_watermark_lag_rows_and_the_last_error_and_permanent_failures_are_not_retried() {
    let p = Project::new("status");
    insert(&p.db, "good", 0, 30).await;
    insert(&p.db, "bad", 0, 5).await;
    // `nope` exists in no document: a configuration error, permanent.
    p.write_collections(&["{db},good,modified_at,date(created_at),", "{db},bad,modified_at,nope,"]);
    let lake = p.local_env("st", "UTC");
    std::fs::write(
        p.path().join("environments/st.toml"),
        std::fs::read_to_string(p.path().join("environments/st.toml")).unwrap()
            + "retry_attempts = 3\nretry_backoff_ms = 10\n",
    )
    .unwrap();
    let never = cmd(&p, &["status", "--env", "st", "--json"], &[]);
    never.assert_ok();
    let before: Value = serde_json::from_str(&never.stdout).unwrap();
    assert_eq!(before[0]["last_run_status"], "never synced", "{before}");

    let run = p.sync("st", &[]);
    run.assert_code(1);
    assert!(run.stderr.contains("permanent, not retried"), "{}", run.describe());
    assert!(!run.stderr.contains("retrying the collection"), "a permanent error was retried: {}", run.describe());
    let report = &run_reports(&lake)[0];
    let bad = entry(report, &format!("{}.bad", p.db));
    assert_eq!((bad["attempts"].as_u64(), bad["transient"].as_bool()), (Some(1), Some(false)), "{bad}");
    assert!(bad["fix"].as_str().unwrap().contains("partition_by"), "{bad}");
    // Failures first in the printed report, with the likely fix; totals at the top.
    let failed_at = run.stdout.find("FAILED (1):").expect("failures section");
    assert!(failed_at < run.stdout.find("collection ").unwrap(), "{}", run.stdout);
    assert!(run.stdout.contains("likely fix:") && run.stdout.contains("30 documents read"), "{}", run.stdout);

    let st = cmd(&p, &["status", "--env", "st", "--json"], &[]);
    st.assert_code(1); // the last run of `bad` failed
    let rows: Value = serde_json::from_str(&st.stdout).unwrap();
    let good = rows.as_array().unwrap().iter().find(|r| r["collection"] == format!("{}.good", p.db)).unwrap();
    assert_eq!(good["last_run_status"], "ok");
    assert_eq!(good["rows"], 30, "{good}");
    assert_eq!(good["last_rows_read"], 30);
    assert_eq!(good["last_success_run"], report["run_id"]);
    let lag = good["lag_seconds"].as_i64().unwrap();
    assert!((55..600).contains(&lag), "watermark is a minute old: lag {lag}");
    assert!(good["last_error"].is_null());
    let bad = rows.as_array().unwrap().iter().find(|r| r["collection"] == format!("{}.bad", p.db)).unwrap();
    assert_eq!(bad["last_run_status"], "failed");
    assert!(bad["last_error"].as_str().unwrap().contains("nope"), "{bad}");
    assert_eq!(bad["last_error_run"], report["run_id"]);
    assert!(bad["rows"].is_null() && bad["watermark"].is_null());

    let text = cmd(&p, &["status", "--env", "st"], &[]);
    let line = text.stdout.lines().find(|l| l.starts_with(&format!("{}.good", p.db))).unwrap();
    assert!(line.contains(" ok ") && line.contains(" 30 ") && line.contains("30/30"), "{}", text.stdout);
    assert!(text.stdout.contains("FAILED") && text.stdout.contains("nope"), "{}", text.stdout);
}

#[tokio::test]
async fn check_reports_each_problem_with_its_fix() {
    let p = Project::new("check");
    insert(&p.db, "indexed", 0, 3).await;
    insert(&p.db, "scanned", 0, 3).await;
    let client = client().await;
    coll(&client, &p.db, "indexed")
        .create_index(mongodb::IndexModel::builder().keys(bson::doc! { "modified_at": 1, "_id": 1 }).build())
        .await
        .unwrap();
    p.write_collections(&["{db},indexed,modified_at,,", "{db},scanned,modified_at,,", "{db},missing,modified_at,,"]);
    let lake = p.local_env("ck", "UTC");
    let smtp = format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"m@example.org\"\nto = [\"x@example.org\"]\ntls = \"none\"\n",
        std::env::var("MONGOLAKE_TEST_SMTP_PORT").unwrap()
    );
    let path = p.path().join("environments/ck.toml");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + &smtp).unwrap();
    let mails_before =
        std::fs::read_to_string(Path::new(&std::env::var("MONGOLAKE_TEST_SMTP_DIR").unwrap()).join("index.jsonl"))
            .unwrap_or_default();

    let run = cmd(&p, &["check", "--env", "ck"], &[]);
    run.assert_code(1);
    let line = |what: &str| -> String {
        run.stdout
            .lines()
            .find(|l| l.get(6..).is_some_and(|w| w.starts_with(what)))
            .unwrap_or_else(|| panic!("no line for {what}: {}", run.describe()))
            .to_string()
    };
    assert!(line("mongodb").starts_with("ok"), "{}", run.stdout);
    assert!(line(&format!("collection {}.indexed", p.db)).starts_with("ok"), "{}", run.stdout);
    let scanned = line(&format!("collection {}.scanned", p.db));
    assert!(scanned.starts_with("warn") && scanned.contains("createIndex({\"modified_at\": 1})"), "{scanned}");
    let missing = line(&format!("collection {}.missing", p.db));
    assert!(missing.starts_with("FAIL") && missing.contains("collections.csv"), "{missing}");
    assert!(line("lake").starts_with("ok") && line("lake").contains("probe"), "{}", run.stdout);
    assert!(line("smtp 127.0.0.1").starts_with("ok"), "{}", run.stdout);
    assert!(
        files_under(Path::new(&lake)).is_empty(),
        "the probe object was deleted: {:?}",
        files_under(Path::new(&lake))
    );
    let mails_after =
        std::fs::read_to_string(Path::new(&std::env::var("MONGOLAKE_TEST_SMTP_DIR").unwrap()).join("index.jsonl"))
            .unwrap_or_default();
    assert_eq!(mails_before.lines().count(), mails_after.lines().count(), "check sent no mail");

    // Without the missing collection: warnings only, exit 0.
    p.write_collections(&["{db},indexed,modified_at,,", "{db},scanned,modified_at,,"]);
    cmd(&p, &["check", "--env", "ck"], &[]).assert_ok();
    // A bad secret reference is a FAIL naming the variable.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).unwrap()
            + "username = \"ops\"\npassword = { env = \"OPS_UNSET_SMTP_PASSWORD\" }\n",
    )
    .unwrap();
    let run = cmd(&p, &["check", "--env", "ck"], &[]);
    run.assert_code(1);
    assert!(
        run.stdout.lines().any(|l| l.starts_with("FAIL") && l.contains("OPS_UNSET_SMTP_PASSWORD")),
        "{}",
        run.stdout
    );
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).unwrap();
            (f, b)
        })
        .collect()
}

#[tokio::test]
async fn dry_run_plans_partitions_and_widening_and_writes_nothing() {
    let p = Project::new("dryrun");
    insert(&p.db, "things", 0, 30).await;
    p.write_collections(&["{db},things,modified_at,date(created_at),"]);
    let lake = p.local_env("dr", "UTC");
    // (the plan's widening is the widen policy's; type-stable columns would add a variant column instead)
    p.set_sync("dr", "type_conflicts = \"widen\"");
    // No overlap: the next run re-reads only document 0 (the newest), in today's partition.
    let path = p.path().join("environments/dr.toml");
    std::fs::write(
        &path,
        std::fs::read_to_string(&path).unwrap().replace("overlap_seconds = 300", "overlap_seconds = 0"),
    )
    .unwrap();
    p.sync("dr", &[]).assert_ok();
    // New documents in one existing partition (ids 30..36 -> creation days 0,1,2,...) and one that turns `v`
    // from int into string (a widening: every partition is rewritten).
    let client = client().await;
    let now = now_millis();
    coll(&client, &p.db, "things")
        .insert_one(bson::doc! { "_id": 100, "modified_at": bson::DateTime::from_millis(now), "created_at": bson::DateTime::from_millis(now), "v": 1 })
        .await
        .unwrap();
    // An email section: a dry run must not mail.
    let rcpt = format!("dry-{}@example.org", p.db);
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap() + &format!(
        "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nfrom = \"m@example.org\"\nto = [\"{rcpt}\"]\ntls = \"none\"\n",
        std::env::var("MONGOLAKE_TEST_SMTP_PORT").unwrap()
    )).unwrap();
    let before = snapshot(Path::new(&lake));
    let dir = p.path().to_str().unwrap().to_string();
    let run = run_binary(&["sync", "--env", "dr", "--config-dir", &dir, "--dry-run"], p.path(), &[]);
    run.assert_ok();
    assert!(run.stdout.contains("dry run: nothing written"), "{}", run.stdout);
    assert!(
        run.stdout.contains("would read 2 documents (incremental) and rewrite 1 partition(s): date="),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("schema unchanged"), "{}", run.stdout);
    assert_eq!(before, snapshot(Path::new(&lake)), "the lake is byte-identical after a dry run");

    coll(&client, &p.db, "things")
        .insert_one(bson::doc! { "_id": 101, "modified_at": bson::DateTime::from_millis(now), "created_at": bson::DateTime::from_millis(now - 5 * DAY), "v": "many" })
        .await
        .unwrap();
    let run = run_binary(&["sync", "--env", "dr", "--config-dir", &dir, "--dry-run"], p.path(), &[]);
    run.assert_ok();
    assert!(run.stdout.contains("rewrite 4 partition(s)") && run.stdout.contains("widen"), "{}", run.stdout);
    assert_eq!(before, snapshot(Path::new(&lake)), "the lake is byte-identical after a dry run");
    std::thread::sleep(Duration::from_millis(300));
    let mails =
        std::fs::read_to_string(Path::new(&std::env::var("MONGOLAKE_TEST_SMTP_DIR").unwrap()).join("index.jsonl"))
            .unwrap_or_default();
    assert!(!mails.contains(&rcpt), "a dry run sent mail");
    // The real run does what the dry run said.
    let real = p.sync("dr", &[]);
    real.assert_ok();
    let report = run_reports(&lake).pop().unwrap();
    assert_eq!(entry(&report, &format!("{}.things", p.db))["partitions_written"], 4, "{report}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Forwards every connection on `port` to the test S3 server (raw TCP: HTTP passes through untouched).
async fn forward(listener: tokio::net::TcpListener) {
    let target = s3_endpoint().trim_start_matches("http://").to_string();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { return };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_s3_outage_is_retried_with_backoff_and_the_run_completes() {
    let p = Project::new("retry");
    insert(&p.db, "things", 0, 20).await;
    p.write_collections(&["{db},things,modified_at,date(created_at),"]);
    let bucket = unique_bucket("retry");
    create_bucket(&bucket);
    // The lake's endpoint is a port nothing listens on yet: every request is refused (a transient network
    // error) until the test starts forwarding it to the S3 server, right after the first failure is logged.
    let port = free_port();
    p.write_env(
        "rt",
        &format!(
            "[mongodb]\nuri = \"{}\"\n[lake]\nurl = \"s3://{bucket}/lake\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             region = \"us-east-1\"\nallow_http = true\n[sync]\nstore_retries = 0\nstore_connect_timeout_seconds = 2\n\
             retry_attempts = 5\nretry_backoff_ms = 2000\n",
            mongo_uri()
        ),
    );
    let err = tempfile::NamedTempFile::new().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let dir = p.path().to_str().unwrap().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mongolake"))
        .args(["sync", "--env", "rt", "--config-dir", &dir, "--no-email"])
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let log = strip_ansi(&std::fs::read_to_string(err.path()).unwrap());
        if log.contains("Transient failure; retrying the collection") {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "mongolake ended before retrying:\n{log}");
        assert!(started.elapsed() < Duration::from_secs(90), "no retry logged:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let proxy = tokio::spawn(forward(tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap()));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "mongolake did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    proxy.abort();
    let (stdout, stderr) =
        (std::fs::read_to_string(out.path()).unwrap(), strip_ansi(&std::fs::read_to_string(err.path()).unwrap()));
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let run_id = stdout.lines().nth(1).and_then(|l| l.strip_prefix("run ")).and_then(|l| l.split(' ').next()).unwrap();
    let report: Value = serde_json::from_slice(
        &s3_get(&bucket, &format!("lake/_mongolake/runs/{run_id}.json")).await.expect("run report"),
    )
    .unwrap();
    let c = entry(&report, &format!("{}.things", p.db));
    assert_eq!(c["status"], "ok", "{c}");
    assert!(c["attempts"].as_u64().unwrap() >= 2, "{c}");
    assert!(!c["retried_errors"].as_array().unwrap().is_empty(), "{c}");
    assert_eq!(c["docs_read"], 20, "a retried pass counts its documents once: {c}");
    let state = s3_get(&bucket, &format!("lake/_mongolake/state/{}/things.csv", p.db)).await.expect("state file");
    assert_eq!(String::from_utf8(state).unwrap().lines().count(), 2, "one committed run");
}

/// An incremental run whose query no index serves says so, with the command that creates the index; once the
/// index exists the note goes. (A full load reads everything anyway and does not ask.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_without_a_timestamp_index_says_how_to_create_one() {
    let p = Project::new("noindex");
    insert(&p.db, "visits", 0, 50).await;
    p.write_collections(&["{db},visits,modified_at,date(created_at),"]);
    let lake = p.local_env("env1", "UTC");
    let note = "no index starts with the timestamp column";
    let full = p.sync("env1", &[]);
    full.assert_ok();
    assert!(!full.stdout.contains(note), "a full load does not ask: {}", full.stdout);
    let incremental = p.sync("env1", &[]);
    incremental.assert_ok();
    let hint = format!("db.getSiblingDB(\"{}\").getCollection(\"visits\").createIndex({{\"modified_at\": 1}})", p.db);
    assert!(incremental.stdout.contains(note) && incremental.stdout.contains(&hint), "{}", incremental.stdout);
    let report = run_reports(&lake).into_iter().last().expect("a run report");
    assert_eq!(entry(&report, &format!("{}.visits", p.db))["missing_index"], Value::String(hint));

    let client = client().await;
    let index = mongodb::IndexModel::builder().keys(bson::doc! { "modified_at": 1 }).build();
    coll(&client, &p.db, "visits").create_index(index).await.expect("create index");
    let indexed = p.sync("env1", &[]);
    indexed.assert_ok();
    assert!(!indexed.stdout.contains(note), "the index serves the query: {}", indexed.stdout);
}
