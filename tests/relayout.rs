//! Layout changes (issue 22, part 3): a changed `partition_by`, `[sync] timezone` or `key` is refused by the
//! sync with the old and new value and the command; `mongolake relayout` applies it from the lake's own files;
//! afterwards (also after a kill in the middle and a rerun) the lake equals a lake loaded from scratch with the
//! new settings, and every document is in it once. Needs the servers of scripts/test.sh.
mod common;

use common::*;
use std::path::Path;

const SEED: u64 = 11;

fn rows_for(p: &Project, visits: &str, patients_key: &str) -> Vec<String> {
    vec![
        format!("{{db}},patients,modified_at,date(created_at),{patients_key}"),
        format!("{{db}},visits,modified_at,{visits},"),
        "{db},pharmacy_stock,modified_at,facility_id,".to_string(),
    ]
    .into_iter()
    .map(|r| r.replace("{db}", &p.db))
    .collect()
}

fn write_rows(p: &Project, visits: &str, patients_key: &str) {
    let rows = rows_for(p, visits, patients_key);
    p.write_collections(&rows.iter().map(String::as_str).collect::<Vec<_>>());
}

fn relayout(p: &Project, env: &str, collections: &str, envs: &[(&str, &str)]) -> Run {
    let dir = p.path().to_str().expect("utf-8 path");
    run_binary(&["relayout", "--env", env, "--config-dir", dir, "--collection", collections], p.path(), envs)
}

fn state_len(lake: &str, db: &str, coll: &str) -> usize {
    if Path::new(lake).join("_mongolake/state").join(db).join(format!("{coll}.csv")).exists() {
        state_rows(lake, db, coll).1.len()
    } else {
        0
    }
}

/// Every document of the collection is in the table exactly once.
async fn assert_lake_has_each_document_once(lake: &str, db: &str, coll: &str) {
    let client = client().await;
    let want: std::collections::BTreeSet<String> = all_docs(&client, db, coll).await.iter().map(doc_id).collect();
    let d = dump(lake);
    let t = table(&d, db, coll);
    assert_one_file_per_partition(t);
    let got: std::collections::BTreeSet<String> = rows_by_id(t).keys().cloned().collect();
    assert_eq!(got.len(), rows(t).len(), "{coll}: an _id twice");
    assert_eq!(want, got, "{coll}: the lake's ids differ from the collection's");
}

/// The reference: the same data loaded from scratch with the new settings.
fn assert_same_as_fresh(p: &Project, lake: &str, reference_tz: &str, what: &str) {
    let reference = p.local_env("reference", reference_tz);
    p.sync("reference", &[]).assert_ok();
    assert_same_lake(&dump(&reference), &dump(lake), &format!("{what}: fresh load (left) vs re-laid lake (right)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_partition_by_is_refused_then_relaid_from_the_lake() {
    let p = Project::new("relayout_spec");
    p.seed(150, SEED);
    write_rows(&p, "facility_id/date(created_at)", "");
    let lake = p.local_env("a", "Asia/Kolkata");
    p.sync("a", &[]).assert_ok();

    // A lake written before layout records adopts the current settings and says so.
    std::fs::remove_dir_all(Path::new(&lake).join("_mongolake/layout")).expect("layout records exist");
    let run = p.sync("a", &[]);
    run.assert_ok();
    assert!(run.stderr.contains("adopted the current settings"), "{}", run.describe());
    assert!(Path::new(&lake).join("_mongolake/layout").join(&p.db).join("visits.json").exists());

    // The spec changes: visits fails with both values, the line and the command; the others sync.
    write_rows(&p, "date(created_at)", "");
    let before = (state_len(&lake, &p.db, "visits"), state_len(&lake, &p.db, "patients"));
    let files_before = files_under(&Path::new(&lake).join(&p.db).join("visits"));
    let run = p.sync("a", &[]);
    run.assert_code(1);
    let text = run.text();
    assert!(text.contains("partition_by was `facility_id/date(created_at)`, now `date(created_at)`"), "{text}");
    assert!(text.contains("collections.csv line 3"), "{text}");
    let cmd = format!("mongolake relayout --env a --config-dir {} --collection {}.visits", p.path().display(), p.db);
    assert!(text.contains(&cmd), "{text}");
    assert_eq!(state_len(&lake, &p.db, "visits"), before.0, "the refused collection committed nothing");
    assert_eq!(state_len(&lake, &p.db, "patients"), before.1 + 1, "the other collections synced");
    assert_eq!(files_under(&Path::new(&lake).join(&p.db).join("visits")), files_before, "no file touched");

    let run = relayout(&p, "a", &format!("{}.visits", p.db), &[]);
    run.assert_ok();
    assert!(run.stdout.contains("re-laid 150 rows") && run.stdout.contains("into 150 rows"), "{}", run.describe());
    // A sync's row holds the hash of the layout it found recorded; the relayout's none (so the next sync reads
    // the record it changed instead of trusting an older row's hash).
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    let [.., synced, relaid] = rows.as_slice() else { panic!("{rows:?}") };
    assert_eq!((relaid["mode"].as_str(), relaid["layout"].as_str()), ("relayout", ""), "{rows:?}");
    assert_eq!(synced["layout"].len(), 16, "{rows:?}");
    assert_lake_has_each_document_once(&lake, &p.db, "visits").await;
    assert!(files_under(&Path::new(&lake).join("_mongolake/relayout")).is_empty(), "relayout staging left");
    let schema = std::fs::read_to_string(Path::new(&lake).join("_mongolake/schema").join(&p.db).join("visits.json"))
        .expect("schema");
    assert!(schema.contains("relayout: partition_by was"), "the schema history names the relayout: {schema}");

    // The next syncs run in the new layout (changes, moves), and the lake is the one a fresh load gives.
    p.sync("a", &[]).assert_ok();
    p.mutate(0.2, SEED);
    p.sync("a", &[]).assert_ok();
    assert_lake_has_each_document_once(&lake, &p.db, "visits").await;
    assert_same_as_fresh(&p, &lake, "Asia/Kolkata", "partition_by");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_time_zone_on_s3_is_refused_then_relaid() {
    let p = Project::new("relayout_tz");
    p.seed(150, SEED);
    write_rows(&p, "facility_id/date(created_at)", "");
    let bucket = unique_bucket("relayout-tz");
    let lake = p.s3_env("s3", &bucket, "lake", "Asia/Kolkata");
    p.sync("s3", &[]).assert_ok();

    let env = p.path().join("environments/s3.toml");
    let toml = std::fs::read_to_string(&env).expect("env").replace("Asia/Kolkata", "-03:00");
    std::fs::write(&env, toml).expect("env");
    let run = p.sync("s3", &[]);
    run.assert_code(1);
    let text = run.text();
    assert!(text.contains("[sync] timezone was `Asia/Kolkata`, now `-03:00`"), "{text}");
    assert!(text.contains("environments/s3.toml"), "{text}");
    // (pharmacy_stock is partitioned by facility only: its files do not depend on the zone, and it synced)
    assert!(!text.contains(&format!("{}.pharmacy_stock: the table's layout", p.db)), "{text}");
    assert!(text.contains("Recorded the new time zone"), "{text}");

    let run = relayout(&p, "s3", &format!("{db}.patients,{db}.visits", db = p.db), &[]);
    run.assert_ok();
    assert!(run.stdout.contains("[sync] timezone was `Asia/Kolkata`, now `-03:00`"), "{}", run.describe());
    // The old zone put back right after the relayout: refused. (The newest state row with a layout hash, the
    // first sync's, holds the old zone's. The relayout leaves its lease marked, and a row holding no hash: either
    // makes the sync read the record.)
    std::fs::write(&env, std::fs::read_to_string(&env).expect("env").replace("-03:00", "Asia/Kolkata")).expect("env");
    let run = p.sync("s3", &[]);
    run.assert_code(1);
    assert!(run.text().contains("[sync] timezone was `-03:00`, now `Asia/Kolkata`"), "{}", run.describe());
    std::fs::write(&env, std::fs::read_to_string(&env).expect("env").replace("Asia/Kolkata", "-03:00")).expect("env");
    p.sync("s3", &[]).assert_ok();
    for coll in ["patients", "visits"] {
        assert_lake_has_each_document_once(&lake, &p.db, coll).await;
    }
    assert_same_as_fresh(&p, &lake, "-03:00", "time zone");
}

/// A key change, with the relayout killed after it moved two files into the table: the sync refuses while it
/// is pending, the rerun finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_is_refused_then_relaid_also_after_a_kill_in_the_middle() {
    let p = Project::new("relayout_key");
    p.seed(150, SEED);
    write_rows(&p, "facility_id/date(created_at)", "");
    let lake = p.local_env("a", "Asia/Kolkata");
    p.sync("a", &[]).assert_ok();

    // A key two documents share is refused before the table changes, and the intent withdrawn.
    let patients = format!("{}.patients", p.db);
    write_rows(&p, "facility_id/date(created_at)", "facility_id");
    let files_before = files_under(&Path::new(&lake).join(&p.db).join("patients"));
    let run = relayout(&p, "a", &patients, &[]);
    run.assert_code(1);
    assert!(run.stdout.contains("the new key `facility_id` is not unique"), "{}", run.describe());
    assert_eq!(files_under(&Path::new(&lake).join(&p.db).join("patients")), files_before);
    let run = p.sync("a", &[]);
    run.assert_code(1);
    assert!(run.text().contains("key was `_id`, now `facility_id`"), "{}", run.describe());

    write_rows(&p, "facility_id/date(created_at)", "mrn");
    let run = p.sync("a", &[]);
    run.assert_code(1);
    assert!(run.text().contains("key was `_id`, now `mrn`"), "{}", run.describe());
    assert!(run.text().contains("collections.csv line 2"), "{}", run.describe());

    let run = relayout(&p, "a", &patients, &[("MONGOLAKE_FAULT", "relayout_moved:2")]);
    assert_ne!(run.code, Some(0), "{}", run.describe());
    assert!(run.stderr.contains("MONGOLAKE_FAULT: aborting at `relayout_moved`"), "{}", run.describe());
    let run = p.sync("a", &[]);
    run.assert_code(1);
    assert!(run.text().contains("is unfinished"), "{}", run.describe());
    assert!(run.text().contains(&format!("--collection {patients}")), "{}", run.describe());

    let run = relayout(&p, "a", &patients, &[]);
    run.assert_ok();
    assert!(run.stdout.contains("finished an interrupted relayout"), "{}", run.describe());
    assert!(run.stdout.contains("into 150 rows"), "{}", run.describe());
    assert_lake_has_each_document_once(&lake, &p.db, "patients").await;
    p.mutate(0.2, SEED);
    p.sync("a", &[]).assert_ok();
    assert_lake_has_each_document_once(&lake, &p.db, "patients").await;
    assert_same_as_fresh(&p, &lake, "Asia/Kolkata", "key");

    // A timestamp column change rewrites nothing; the next sync re-reads the whole collection.
    let rows = rows_for(&p, "facility_id/date(created_at)", "mrn");
    let rows: Vec<String> =
        rows.iter().map(|r| r.replacen(",patients,modified_at,", ",patients,created_at,", 1)).collect();
    p.write_collections(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    let run = p.sync("a", &[]);
    run.assert_code(1);
    assert!(run.text().contains("timestamp_column was `modified_at`, now `created_at`"), "{}", run.describe());
    assert!(run.text().contains("the next sync re-reads the whole collection"), "{}", run.describe());
    let files_before = files_under(&Path::new(&lake).join(&p.db).join("patients"));
    let run = relayout(&p, "a", &patients, &[]);
    run.assert_ok();
    assert!(run.stdout.contains("no file rewritten"), "{}", run.describe());
    assert_eq!(files_under(&Path::new(&lake).join(&p.db).join("patients")), files_before);
    p.sync("a", &[]).assert_ok();
    let (_, state) = state_rows(&lake, &p.db, "patients");
    assert_eq!(state.last().map(|r| r["mode"].as_str()), Some("full"), "{state:?}");
    assert_lake_has_each_document_once(&lake, &p.db, "patients").await;
}

/// Killed while the new layout's files are being written (the table untouched), and just before the record:
/// each rerun finishes, and the lake is a fresh load's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayout_killed_while_writing_or_before_its_record_finishes_on_rerun() {
    let p = Project::new("relayout_crash");
    p.seed(150, SEED);
    write_rows(&p, "facility_id/date(created_at)", "");
    let lake = p.local_env("a", "Asia/Kolkata");
    p.sync("a", &[]).assert_ok();
    let visits = format!("{}.visits", p.db);

    write_rows(&p, "date(created_at)", "");
    let files_before = files_under(&Path::new(&lake).join(&p.db).join("visits"));
    let run = relayout(&p, "a", &visits, &[("MONGOLAKE_FAULT", "relayout_written")]);
    assert!(run.stderr.contains("MONGOLAKE_FAULT: aborting at `relayout_written`"), "{}", run.describe());
    assert_eq!(files_under(&Path::new(&lake).join(&p.db).join("visits")), files_before, "table untouched so far");
    relayout(&p, "a", &visits, &[]).assert_ok();
    assert_lake_has_each_document_once(&lake, &p.db, "visits").await;

    // And back, killed once everything but the record is done.
    write_rows(&p, "facility_id/date(created_at)", "");
    let run = relayout(&p, "a", &visits, &[("MONGOLAKE_FAULT", "relayout_before_record")]);
    assert!(run.stderr.contains("MONGOLAKE_FAULT: aborting at `relayout_before_record`"), "{}", run.describe());
    relayout(&p, "a", &visits, &[]).assert_ok();
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    assert_eq!(rows.iter().filter(|r| r["mode"] == "relayout").count(), 2, "one state row per relayout: {rows:?}");
    p.sync("a", &[]).assert_ok();
    assert_lake_has_each_document_once(&lake, &p.db, "visits").await;
    assert_same_as_fresh(&p, &lake, "Asia/Kolkata", "crashes");
}
