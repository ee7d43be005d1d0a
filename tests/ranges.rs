//! Full loads split into `_id` ranges read by concurrent cursors (`[sync] read_ranges`): every document exactly
//! once, whatever the BSON types of the `_id`s. Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use common::*;

fn with_ranges(p: &Project, env: &str, ranges: usize) -> String {
    let lake = p.local_env(env, "UTC");
    let file = p.path().join(format!("environments/{env}.toml"));
    let toml =
        std::fs::read_to_string(&file).unwrap().replace("[sync]\n", &format!("[sync]\nread_ranges = {ranges}\n"));
    std::fs::write(&file, toml).unwrap();
    lake
}

/// ObjectIds (most), then ints, strings and a document as `_id`: the ranges cover all of them, disjointly, and
/// the lake equals a one-cursor load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_ranges_cover_every_document_once() {
    let p = Project::new("ranges");
    let client = client().await;
    let when = DateTime::from_millis(iso_millis("2025-07-01T06:00:00Z"));
    let mut docs: Vec<Document> =
        (0..3000).map(|i| doc! { "_id": ObjectId::new(), "modified_at": when, "n": i }).collect();
    docs.extend((0..50).map(|i| doc! { "_id": i, "modified_at": when, "n": 10_000 + i }));
    docs.extend((0..50).map(|i| doc! { "_id": format!("s{i}"), "modified_at": when, "n": 20_000 + i }));
    docs.push(doc! { "_id": { "site": "BLR", "seq": 1 }, "modified_at": when, "n": 30_000 });
    docs.push(doc! { "_id": Bson::Boolean(true), "modified_at": when, "n": 30_001 });
    coll(&client, &p.db, "mixed").insert_many(docs).await.unwrap();
    p.write_collections(&["{db},mixed,modified_at,,"]);
    let one = with_ranges(&p, "one", 1);
    let four = with_ranges(&p, "four", 4);
    p.sync("one", &[]).assert_ok();
    let run = p.sync_with("four", &[], &[("MONGOLAKE_LOG", "mongolake=debug")]);
    run.assert_ok();
    assert!(run.stderr.contains("ranges=4"), "the load was split: {}", run.stderr);
    let (a, b) = (dump(&one), dump(&four));
    assert_eq!(rows(table(&b, &p.db, "mixed")).len(), 3102);
    rows_by_id(table(&b, &p.db, "mixed")); // panics on a duplicate _id
    assert_same_lake(&a, &b, "4 ranges vs 1 cursor");
}
