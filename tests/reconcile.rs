//! Deletes and documents a timestamp query cannot see: `sync --reconcile` and `[sync] reconcile_every_days`.
//! Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, DateTime, Document};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

fn visit(id: i32, facility: &str, day: &str, modified_ms: Option<i64>, status: &str) -> Document {
    let mut d = doc! {
        "_id": id, "facility_id": facility, "status": status,
        "created_at": DateTime::from_millis(iso_millis(&format!("{day}T06:00:00Z"))),
    };
    if let Some(ms) = modified_ms {
        d.insert("modified_at", DateTime::from_millis(ms));
    }
    d
}

async fn mongo_view(db: &str) -> BTreeMap<String, String> {
    let client = client().await;
    all_docs(&client, db, "visits")
        .await
        .iter()
        .map(|d| (doc_id(d), d.get_str("status").unwrap_or_default().to_string()))
        .collect()
}

fn lake_view(lake: &str, db: &str) -> BTreeMap<String, String> {
    let dump = dump(lake);
    let t = table(&dump, db, "visits");
    assert_one_file_per_partition(t);
    rows_by_id(t)
        .into_iter()
        .map(|(id, r)| (untagged(&id), r["status"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// An integer key's text in a key column stored as text (`_id`s of mixed types), as `doc_id` gives it.
fn untagged(id: &str) -> String {
    id.strip_prefix(r#"{"$number":""#).and_then(|n| n.strip_suffix(r#""}"#)).unwrap_or(id).to_string()
}

/// Hard deletes (one emptying a whole partition), a document without the timestamp field and a late writer
/// beyond the overlap are invisible to an incremental run; `--reconcile` makes the lake equal the collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removes_deleted_rows_and_fetches_unseen_documents() {
    let p = Project::new("recon");
    let client = client().await;
    let visits = coll(&client, &p.db, "visits");
    let t0 = now_millis() - 86_400_000;
    let mut docs = Vec::new();
    for i in 0..30 {
        docs.push(visit(i, ["BLR01", "DEL02"][i as usize % 2], "2025-07-01", Some(t0 + i as i64), "v1"));
    }
    docs.push(visit(100, "MUM03", "2025-07-02", Some(t0), "lonely")); // alone in its partition
    visits.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},visits,modified_at,facility_id/date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    // (without the count check, which would reconcile the incremental run below: see the next test)
    p.set_sync("dev", "reconcile_on_count_mismatch = false");
    // (segments of 4 keys: files of their own, which the end of this test loses; an index of one small segment
    // lives in its manifest)
    p.set_sync("dev", "index_segment_keys = 4");
    p.sync("dev", &[]).assert_ok();
    let lonely = Path::new(&lake).join(&p.db).join("visits/facility_id=MUM03");
    assert!(lonely.exists());

    visits.delete_many(doc! { "_id": { "$in": [3, 4, 5, 100] } }).await.unwrap();
    visits.insert_one(visit(200, "BLR01", "2025-07-01", None, "no-timestamp")).await.unwrap();
    visits.insert_one(visit(201, "DEL02", "2025-07-01", Some(t0 - 3_600_000), "late-writer")).await.unwrap();
    let now = now_millis();
    visits
        .update_one(doc! { "_id": 7 }, doc! { "$set": { "status": "v2", "modified_at": DateTime::from_millis(now) } })
        .await
        .unwrap();

    // An incremental run sees only the update.
    p.sync("dev", &[]).assert_ok();
    let live = mongo_view(&p.db).await;
    let before = lake_view(&lake, &p.db);
    assert_eq!(before["7"], "v2");
    assert!(before.contains_key("3") && before.contains_key("100") && !before.contains_key("200"));

    let run = p.sync("dev", &["--reconcile"]);
    run.assert_ok();
    assert_eq!(lake_view(&lake, &p.db), live, "after --reconcile the lake equals the collection");
    assert!(!lonely.exists(), "the partition whose only document was deleted is gone");
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    let last = rows.last().unwrap();
    assert_eq!((last["mode"].as_str(), last["rows_deleted"].as_str()), ("reconcile", "4"), "{last:?}");
    assert!(run.stdout.contains("deleted 4"), "the report counts deletions:\n{}", run.stdout);

    // Reconcile again with nothing changed: nothing is rewritten or deleted.
    let again = p.sync("dev", &["--reconcile"]);
    again.assert_ok();
    assert_eq!(lake_view(&lake, &p.db), live);
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    let last = rows.last().unwrap();
    assert_eq!((last["rows_deleted"].as_str(), last["rows_written"].as_str()), ("0", "0"), "{last:?}");

    // A lost key index segment: the reconcile (which reads the segments one at a time) rebuilds the index from
    // the partition files and compares again; a deletion made meanwhile is still found.
    let index_dir = Path::new(&lake).join(format!("_mongolake/index/{}/visits", p.db));
    let mut lost_files = 0;
    for f in std::fs::read_dir(&index_dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "parquet") {
            std::fs::remove_file(f).unwrap();
            lost_files += 1;
        }
    }
    assert!(lost_files > 1, "the index is in segment files");
    visits.delete_one(doc! { "_id": 9 }).await.unwrap();
    let lost = p.sync("dev", &["--reconcile"]);
    lost.assert_ok();
    assert!(lost.stderr.contains("rebuilding it from the lake"), "{}", lost.stderr);
    assert_eq!(lake_view(&lake, &p.db), mongo_view(&p.db).await);
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    assert_eq!(rows.last().unwrap()["rows_deleted"].as_str(), "1", "{:?}", rows.last());
}

/// `reconcile_every_days = 1`: the first run reconciles (none before), the next one the same day does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_schedule_from_the_environment() {
    let p = Project::new("reconsched");
    let client = client().await;
    let visits = coll(&client, &p.db, "visits");
    let t0 = now_millis() - 86_400_000;
    visits.insert_many((0..5).map(|i| visit(i, "BLR01", "2025-07-01", Some(t0), "v1"))).await.unwrap();
    p.write_collections(&["{db},visits,modified_at,facility_id/date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    let env_file = p.path().join("environments/dev.toml");
    let toml = std::fs::read_to_string(&env_file).unwrap().replace("[sync]\n", "[sync]\nreconcile_every_days = 1\n");
    std::fs::write(&env_file, toml).unwrap();
    // (the count check would reconcile the delete below: this test is about the schedule)
    p.set_sync("dev", "reconcile_on_count_mismatch = false");
    p.sync("dev", &[]).assert_ok();
    visits.delete_one(doc! { "_id": 2 }).await.unwrap();
    p.sync("dev", &[]).assert_ok();
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str()).collect();
    assert_eq!(modes, vec!["reconcile", "incremental"]);
    assert!(lake_view(&lake, &p.db).contains_key("2"), "not reconciled yet, so the deleted row is still there");
    assert_eq!(mongo_view(&p.db).await.len(), 4);
}

/// Issue 25.3 and 25.8: with ObjectId `_id`s, documents inserted without the timestamp field land the same night
/// (`_id >= ObjectId(watermark - overlap)`), and deletes too: MongoDB's count differs from the lake's rows, so the
/// incremental run reconciles, and the report says why. A night with nothing deleted compares and does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_without_a_timestamp_and_deletes_land_the_same_night() {
    use bson::oid::ObjectId;
    let p = Project::new("samenight");
    let client = client().await;
    let visits = coll(&client, &p.db, "visits");
    let t0 = now_millis() - 86_400_000;
    // Ten documents with the timestamp and, mixed in, three with integer _ids (the ObjectId branch never
    // matches them: MongoDB compares types in separate brackets).
    let mut docs: Vec<Document> = (0..10)
        .map(|i| doc! { "_id": ObjectId::new(), "facility_id": "BLR01", "created_at": DateTime::from_millis(t0), "modified_at": DateTime::from_millis(t0 + i), "status": "v1" })
        .collect();
    docs.extend((1..=3).map(|i| visit(i, "DEL02", "2025-07-01", Some(t0), "int")));
    visits.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},visits,modified_at,facility_id/date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();

    // Tonight: two inserts without modified_at (ObjectId _ids made now), and one delete.
    let no_ts: Vec<Document> = (0..2)
        .map(|_| doc! { "_id": ObjectId::new(), "facility_id": "BLR01", "created_at": DateTime::from_millis(t0), "status": "no-timestamp" })
        .collect();
    visits.insert_many(no_ts).await.unwrap();
    visits.delete_one(doc! { "_id": 2 }).await.unwrap();
    let run = p.sync("dev", &[]);
    run.assert_ok();
    assert_eq!(lake_view(&lake, &p.db), mongo_view(&p.db).await, "the lake equals the collection the same night");
    assert!(
        run.stdout.contains("reconciled with MongoDB (MongoDB counts 14 documents, the lake would hold 15 rows)"),
        "the report says why it reconciled:\n{}",
        run.stdout
    );
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    let last = rows.last().unwrap();
    assert_eq!((last["mode"].as_str(), last["rows_deleted"].as_str()), ("reconcile", "1"), "{last:?}");
    let report = run_report(&lake);
    assert!(report.contains("\"reconcile_reason\""), "the run report has the reason");

    // A night with only inserts without a timestamp: they land, the counts agree, no reconcile.
    visits.insert_one(doc! { "_id": ObjectId::new(), "facility_id": "BLR01", "created_at": DateTime::from_millis(t0), "status": "quiet" }).await.unwrap();
    let quiet = p.sync("dev", &[]);
    quiet.assert_ok();
    assert_eq!(lake_view(&lake, &p.db), mongo_view(&p.db).await);
    assert!(!quiet.stdout.contains("reconciled"), "{}", quiet.stdout);
    let (_, rows) = state_rows(&lake, &p.db, "visits");
    assert_eq!(rows.last().unwrap()["mode"].as_str(), "incremental");
}

/// The newest run report's text.
fn run_report(lake: &str) -> String {
    let dir = Path::new(lake).join("_mongolake/runs");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().path()).collect();
    files.sort();
    std::fs::read_to_string(files.last().unwrap()).unwrap()
}
