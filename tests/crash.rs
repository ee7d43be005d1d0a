//! Crash safety: a run aborted by `MONGOLAKE_FAULT` (like kill -9) and then rerun gives exactly the lake a run
//! without a crash gives, with one file per partition and nothing left in staging/. Needs the servers of
//! scripts/test.sh.
mod common;

use common::*;
use std::path::Path;

const SEED: u64 = 3;

/// Seeds a database, optionally syncs both lakes and mutates (`incremental`), then syncs a reference lake
/// normally and the other lake with `fault`, reruns that one without it, and compares the two lakes.
async fn crash_and_recover(name: &str, fault: &str, incremental: bool) {
    let p = Project::new(name);
    p.seed(200, SEED);
    p.write_collections(&SEEDED_ROWS);
    let reference = p.local_env("reference", "Asia/Kolkata");
    let crashed = p.local_env("crashed", "Asia/Kolkata");
    if incremental {
        p.sync("reference", &[]).assert_ok();
        p.sync("crashed", &[]).assert_ok();
        p.mutate(0.1, SEED);
    }
    p.sync("reference", &[]).assert_ok();

    let run = p.sync_with("crashed", &[], &[("MONGOLAKE_FAULT", fault)]);
    assert_ne!(run.code, Some(0), "the crashed run must not exit 0: {}", run.describe());
    assert!(
        run.stderr.contains("MONGOLAKE_FAULT: aborting"),
        "the fault point `{fault}` was never reached: {}",
        run.describe()
    );
    let runs_before = state_rows_total(&p, &crashed);

    let rerun = p.sync("crashed", &[]);
    rerun.assert_ok();
    assert_eq!(state_rows_total(&p, &crashed), runs_before + SEEDED.len(), "one new state row per collection");

    let (want, got) = (dump(&reference), dump(&crashed));
    for coll in SEEDED {
        assert_one_file_per_partition(table(&got, &p.db, coll));
        rows_by_id(table(&got, &p.db, coll)); // each _id once
    }
    assert_same_lake(&want, &got, &format!("{fault}: never-crashed lake (left) vs crashed and rerun lake (right)"));
    let left = files_under(&Path::new(&crashed).join("_mongolake/staging"));
    assert!(left.is_empty(), "{fault}: files left under staging/ after the successful rerun: {left:?}");
    for coll in SEEDED {
        let (_, rows) = state_rows(&crashed, &p.db, coll);
        assert_eq!(rows.last().map(|r| r["status"].as_str()), Some("ok"), "{coll}: {rows:?}");
    }
}

/// State rows of every collection of the lake (0 for a collection without a state file).
fn state_rows_total(p: &Project, lake: &str) -> usize {
    SEEDED
        .iter()
        .map(|c| {
            let path = Path::new(lake).join("_mongolake/state").join(&p.db).join(format!("{c}.csv"));
            if path.exists() {
                state_rows(lake, &p.db, c).1.len()
            } else {
                0
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_first_partition_then_rerun() {
    crash_and_recover("crash_p1", "after_partition:1", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_partition_7_then_rerun() {
    crash_and_recover("crash_p7", "after_partition:7", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_partition_40_then_rerun() {
    crash_and_recover("crash_p40", "after_partition:40", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_watermark_then_rerun() {
    crash_and_recover("crash_wm", "before_watermark", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_incremental_run_then_rerun() {
    crash_and_recover("crash_incr_p3", "after_partition:3", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_watermark_of_incremental_run_then_rerun() {
    crash_and_recover("crash_incr_wm", "before_watermark", true).await;
}

/// A crash in the middle of a run that widens a column (int -> string) rewrites some partition files with the
/// wider type before the schema records it. If the document that widened it changes back to an int before the
/// rerun, the rerun must still end with the lake a never-crashed history gives: the column stays string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_while_widening_a_column_then_value_changes_back() {
    use bson::{doc, DateTime};
    let p = Project::new("crash_widen");
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    // An hour apart: a rerun re-reads (overlap 300 s) only the newest of them plus what changed.
    let old = |i: i32| DateTime::from_millis(now_millis() - 86_400_000 * 3 - i as i64 * 3_600_000);
    let docs: Vec<bson::Document> = (1..=6)
        .map(|i| {
            // Documents 3 and 4 share a partition.
            let day = if i == 4 { 3 } else { i };
            let created = DateTime::from_millis(iso_millis(&format!("2025-07-0{day}T06:00:00Z")));
            doc! { "_id": i, "x": i, "created_at": created, "modified_at": old(i) }
        })
        .collect();
    items.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},items,modified_at,date(created_at),"]);
    let reference = p.local_env("reference", "UTC");
    let crashed = p.local_env("crashed", "UTC");
    // The widen policy (type-stable columns put the text in a variant column and rewrite nothing).
    p.set_sync("reference", "type_conflicts = \"widen\"");
    p.set_sync("crashed", "type_conflicts = \"widen\"");
    p.sync("reference", &[]).assert_ok();
    p.sync("crashed", &[]).assert_ok();

    // Widen x to string: every partition file is rewritten; the crash stops after the first.
    let set = |x: bson::Bson| doc! { "$set": { "x": x, "modified_at": DateTime::from_millis(now_millis()) } };
    items.update_one(doc! {"_id": 3}, set("42 years".into())).await.unwrap();
    p.sync("reference", &[]).assert_ok();
    let run = p.sync_with("crashed", &[], &[("MONGOLAKE_FAULT", "after_partition:1")]);
    assert_ne!(run.code, Some(0), "{}", run.describe());

    // The value goes back to an int before the next night's runs.
    std::thread::sleep(std::time::Duration::from_millis(5));
    items.update_one(doc! {"_id": 3}, set(43.into())).await.unwrap();
    p.sync("reference", &[]).assert_ok();
    let rerun = p.sync("crashed", &[]);
    rerun.assert_ok();

    let (want, got) = (dump(&reference), dump(&crashed));
    assert_eq!(column_type(table(&want, &p.db, "items"), "x"), "string", "types only widen");
    assert_same_lake(&want, &got, "never-crashed lake (left) vs crashed and rerun lake (right)");
}

/// A process killed in the middle of writing a staging file on local disk leaves the half-written temporary
/// `part-0.parquet#<n>` of the object store's put (seen in the crash tests above when another partition was
/// being written at the moment of the abort). The next successful run must leave nothing under staging/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_leftovers_of_an_interrupted_write_are_cleaned() {
    let p = Project::new("crash_tmp");
    p.seed(50, SEED);
    p.write_collections(&SEEDED_ROWS[..1]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();
    // What a kill -9 during `put` leaves: the finished staging file and the temporary of another one.
    let dir = Path::new(&lake).join("_mongolake/staging/20250701T020000Z-dead").join(&p.db).join("patients");
    for (part, file) in [("date=2025-07-01", "part-0.parquet"), ("date=2025-07-02", "part-0.parquet#1")] {
        std::fs::create_dir_all(dir.join(part)).unwrap();
        std::fs::write(dir.join(part).join(file), b"PAR1 half written").unwrap();
    }
    p.sync("dev", &[]).assert_ok();
    let left = files_under(&Path::new(&lake).join("_mongolake/staging"));
    assert!(left.is_empty(), "files left under staging/ after a successful run: {left:?}");
    dump(&lake);
}
