//! End-to-end syncs through the binary: full load, incremental rounds, time-zone partitioning, merge/dedup and
//! local disk vs S3. Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use common::*;
use std::collections::{BTreeMap, BTreeSet};

/// 1. A full load of seeded data: every `_id` exactly once, one file per partition, one ok state row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_load_of_seeded_data() {
    let p = Project::new("full");
    p.seed(2000, 11);
    p.write_collections(&SEEDED_ROWS);
    let lake = p.local_env("dev", "Asia/Kolkata");
    let run = p.sync("dev", &[]);
    run.assert_ok();

    let dump = dump(&lake);
    let client = client().await;
    for name in SEEDED {
        let t = table(&dump, &p.db, name);
        let lake_rows = rows_by_id(t); // panics on a duplicate _id
        let docs = all_docs(&client, &p.db, name).await;
        assert_eq!(docs.len(), 2000, "{name}: seeded count");
        let mongo: BTreeMap<String, &Document> = docs.iter().map(|d| (doc_id(d), d)).collect();
        let lake_ids: BTreeSet<&String> = lake_rows.keys().collect();
        let mongo_ids: BTreeSet<&String> = mongo.keys().collect();
        assert_eq!(lake_ids, mongo_ids, "{name}: _id sets of the lake and MongoDB differ");
        assert_one_file_per_partition(t);
        assert!(column_type(t, "modified_at").starts_with("timestamp[ms"), "{name}: {}", t["columns"]);
        // modified_at holds the same instant as MongoDB, whatever its representation there.
        for (id, row) in &lake_rows {
            let want = bson_millis(mongo[id].get("modified_at").expect("modified_at"));
            let got = iso_millis(row["modified_at"].as_str().expect("modified_at text"));
            assert_eq!(got, want, "{name} {id}: modified_at");
        }

        let (header, state) = state_rows(&lake, &p.db, name);
        assert_eq!(header, STATE_HEADER, "{name}: state header");
        assert_eq!(state.len(), 1, "{name}: one state row after one run: {state:?}");
        assert_eq!(state[0]["status"], "ok", "{name}: {state:?}");
        assert_eq!(state[0]["rows_read"], "2000", "{name}: {state:?}");
        assert!(run.stdout.contains(&format!("{}.{name}", p.db)), "report lacks {name}: {}", run.describe());
    }

    // Partition values agree with the data: facility from the document, date of created_at in Asia/Kolkata.
    let visits = all_docs(&client, &p.db, "visits").await;
    let lake_visits = rows_by_id(table(&dump, &p.db, "visits"));
    for d in &visits {
        let row = lake_visits[&doc_id(d)];
        assert_eq!(row["facility_id"].as_str(), Some(d.get_str("facility_id").unwrap()), "{row}");
        let created = bson_millis(d.get("created_at").unwrap());
        assert_eq!(row["date"].as_str(), Some(date_at_offset(created, 330).as_str()), "{row}");
    }
    let schema_files: Vec<_> = files_under(&std::path::Path::new(&lake).join("_mongolake/schema"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json") && !f.to_string_lossy().ends_with(".glue.json"))
        .collect();
    assert_eq!(schema_files.len(), 5, "one schema file per collection: {schema_files:?}");
    assert_eq!(files_under(&std::path::Path::new(&lake).join("_mongolake/runs")).len(), 1, "one run report");
}

/// A hand-made visit: only the fields these tests look at.
fn visit(id: ObjectId, facility: &str, created_ms: i64, modified_at: Bson, status: &str) -> Document {
    doc! {
        "_id": id, "facility_id": facility, "status": status,
        "created_at": DateTime::from_millis(created_ms), "modified_at": modified_at,
    }
}

/// `_id` -> (status, modified_at in ms, facility_id) for MongoDB and for the lake.
async fn mongo_view(db: &str, coll_name: &str) -> BTreeMap<String, (String, i64, String)> {
    let client = client().await;
    all_docs(&client, db, coll_name)
        .await
        .iter()
        .map(|d| {
            let v = (
                d.get_str("status").unwrap_or_default().to_string(),
                bson_millis(d.get("modified_at").expect("modified_at")),
                d.get_str("facility_id").unwrap_or_default().to_string(),
            );
            (doc_id(d), v)
        })
        .collect()
}

fn lake_view(t: &serde_json::Value) -> BTreeMap<String, (String, i64, String)> {
    rows_by_id(t)
        .into_iter()
        .map(|(id, r)| {
            let v = (
                r["status"].as_str().unwrap_or_default().to_string(),
                iso_millis(r["modified_at"].as_str().unwrap_or_else(|| panic!("no modified_at in {r}"))),
                r["facility_id"].as_str().unwrap_or_default().to_string(),
            );
            (id, v)
        })
        .collect()
}

/// 2. An incremental round: inserts, updates, the three timestamp representations, a write exactly at the
/// watermark and a late write inside the overlap all reach the lake, and nothing else is re-read in bulk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_round_picks_up_every_change() {
    let p = Project::new("incr");
    p.seed(400, 21);
    p.write_collections(&["{db},visits,modified_at,facility_id/date(created_at),"]);
    let lake = p.local_env("dev", "Asia/Kolkata");
    p.sync("dev", &[]).assert_ok();
    let w = watermark(&lake, &p.db, "visits");

    let client = client().await;
    let visits = coll(&client, &p.db, "visits");
    let mut existing: Vec<String> = mongo_view(&p.db, "visits").await.into_keys().collect();
    existing.sort();
    let oid = |hex: &String| ObjectId::parse_str(hex).unwrap();
    let now = now_millis().max(w + 1000);

    // New documents: modified_at as a Date, epoch-ms Int64, ISO string with Z and with +05:30.
    let mut new_docs = Vec::new();
    for i in 0..5 {
        new_docs.push(visit(
            ObjectId::new(),
            "BLR01",
            now - i * 1000,
            Bson::DateTime(DateTime::from_millis(now)),
            "new-date",
        ));
    }
    new_docs.push(visit(ObjectId::new(), "DEL02", now, Bson::Int64(now + 1), "new-epoch-ms"));
    new_docs.push(visit(ObjectId::new(), "MUM03", now, Bson::String(iso(now + 2)), "new-iso-z"));
    let ist = chrono::DateTime::from_timestamp_millis(now + 3)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(19_800).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string();
    new_docs.push(visit(ObjectId::new(), "CHN04", now, Bson::String(ist), "new-iso-ist"));
    visits.insert_many(new_docs).await.expect("insert");

    let set = |status: &str, modified: Bson| doc! { "$set": { "status": status, "modified_at": modified } };
    // Updates with a newer Date.
    for id in &existing[0..5] {
        visits
            .update_one(doc! {"_id": oid(id)}, set("updated", Bson::DateTime(DateTime::from_millis(now))))
            .await
            .unwrap();
    }
    // Updates newer than the watermark stored as epoch-ms and as ISO text.
    visits.update_one(doc! {"_id": oid(&existing[5])}, set("updated-epoch", Bson::Int64(now))).await.unwrap();
    visits.update_one(doc! {"_id": oid(&existing[6])}, set("updated-iso", Bson::String(iso(now)))).await.unwrap();
    // Exactly at the watermark, and late writes inside the overlap (2 minutes before the watermark).
    visits
        .update_one(doc! {"_id": oid(&existing[7])}, set("boundary", Bson::DateTime(DateTime::from_millis(w))))
        .await
        .unwrap();
    let late = w - 120_000;
    visits
        .update_one(doc! {"_id": oid(&existing[8])}, set("late-date", Bson::DateTime(DateTime::from_millis(late))))
        .await
        .unwrap();
    visits.update_one(doc! {"_id": oid(&existing[9])}, set("late-epoch", Bson::Int64(late))).await.unwrap();
    visits.update_one(doc! {"_id": oid(&existing[10])}, set("late-iso", Bson::String(iso(late)))).await.unwrap();
    // A business-only change cannot be seen (its timestamp did not move): not asserted either way.

    p.sync("dev", &[]).assert_ok();
    let dump = dump(&lake);
    let t = table(&dump, &p.db, "visits");
    assert_one_file_per_partition(t);
    assert!(column_type(t, "modified_at").starts_with("timestamp[ms"), "{}", t["columns"]);
    let (lake_now, mongo_now) = (lake_view(t), mongo_view(&p.db, "visits").await);
    assert_eq!(lake_now.len(), 408, "400 seeded + 8 inserted");
    for (id, want) in &mongo_now {
        assert_eq!(lake_now.get(id), Some(want), "visit {id}: lake (left) vs MongoDB (right)");
    }
    assert_eq!(lake_now, mongo_now);

    let (_, state) = state_rows(&lake, &p.db, "visits");
    assert_eq!(state.len(), 2, "{state:?}");
    assert!(state.iter().all(|r| r["status"] == "ok"), "{state:?}");
    let read: u64 = state[1]["rows_read"].parse().unwrap();
    assert!((19..100).contains(&read), "the second run should read the 19 changed documents and little else: {read}");
    assert!(iso_millis(&state[1]["watermark"]) >= now, "watermark moved forward: {state:?}");
}

/// A document for the time-zone and merge tests.
fn event(id: i32, created_at: Bson, extra: Document) -> Document {
    let mut d =
        doc! { "_id": id, "created_at": created_at, "modified_at": DateTime::from_millis(now_millis() - 3_600_000) };
    d.extend(extra);
    d
}

/// 5. Dates partition in the environment's time zone (IANA name or fixed offset), from every representation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn date_partitions_follow_the_environment_time_zone() {
    let p = Project::new("tz");
    let before = iso_millis("2025-07-01T18:29:59.999Z");
    let after = iso_millis("2025-07-01T18:30:00Z");
    let docs = vec![
        event(1, Bson::DateTime(DateTime::from_millis(before)), doc! {}),
        event(2, Bson::DateTime(DateTime::from_millis(after)), doc! {}),
        event(3, Bson::String("2025-07-02T00:00:00+05:30".into()), doc! {}),
        event(4, Bson::Int64(before), doc! {}),
    ];
    let client = client().await;
    coll(&client, &p.db, "events").insert_many(docs.clone()).await.unwrap();
    coll(&client, &p.db, "aliased").insert_many(docs).await.unwrap();
    p.write_collections(&[
        "{db},events,modified_at,date(created_at),",
        "{db},aliased,modified_at,day=date(created_at),",
    ]);

    let cases = [
        ("kolkata", "Asia/Kolkata", ["2025-07-01", "2025-07-02", "2025-07-02", "2025-07-01"]),
        ("fixed", "+05:30", ["2025-07-01", "2025-07-02", "2025-07-02", "2025-07-01"]),
        ("zero", "+00:00", ["2025-07-01"; 4]),
        ("utc", "UTC", ["2025-07-01"; 4]),
    ];
    for (env, tz, want) in cases {
        let lake = p.local_env(env, tz);
        p.sync(env, &[]).assert_ok();
        let dump = dump(&lake);
        for (table_name, key) in [("events", "date"), ("aliased", "day")] {
            let t = table(&dump, &p.db, table_name);
            assert_one_file_per_partition(t);
            let got: Vec<String> = rows(t).iter().map(|r| r[key].as_str().unwrap_or("<null>").to_string()).collect();
            assert_eq!(got, want, "{tz}: {table_name}.{key} of documents 1..4; rows: {}", t["rows"]);
            let mut parts: Vec<String> = want.iter().map(|d| format!("{key}={d}")).collect();
            parts.sort();
            parts.dedup();
            assert_eq!(t["partitions"], serde_json::json!(parts), "{tz}: {table_name}");
        }
    }
}

/// 6. Merge: an update lands in its existing partition (still one file, the row once with its new value), and
/// a sync with no changes leaves the lake as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_updates_in_place_and_resync_is_idempotent() {
    let p = Project::new("merge");
    let day = |d: &str| Bson::DateTime(DateTime::from_millis(iso_millis(&format!("{d}T06:00:00Z"))));
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    let mut docs = Vec::new();
    for i in 1..=6 {
        let (fac, d) = if i <= 3 { ("BLR01", "2025-07-01") } else { ("DEL02", "2025-07-02") };
        docs.push(event(i, day(d), doc! { "facility_id": fac, "price": i * 10, "name": format!("item {i}") }));
    }
    items.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},items,modified_at,facility_id/date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();
    let first = dump(&lake);
    let t1 = table(&first, &p.db, "items");
    assert_eq!(t1["files"], 2, "{t1}");

    let now = now_millis();
    items
        .update_one(doc! {"_id": 2}, doc! {"$set": {"price": 99, "modified_at": DateTime::from_millis(now)}})
        .await
        .unwrap();
    p.sync("dev", &[]).assert_ok();
    let second = dump(&lake);
    let t2 = table(&second, &p.db, "items");
    assert_one_file_per_partition(t2);
    assert_eq!(t2["partitions"], t1["partitions"], "no partition added");
    let by_id = rows_by_id(t2);
    assert_eq!(by_id.len(), 6, "{}", t2["rows"]);
    assert_eq!(by_id["2"]["price"], 99, "{}", by_id["2"]);
    assert_eq!(by_id["2"]["modified_at"], iso(now).as_str());
    for id in ["1", "3", "4", "5", "6"] {
        let before = rows_by_id(t1)[id].clone();
        assert_eq!(by_id[id], &before, "untouched row {id} changed");
    }

    // No changes: the overlap re-reads document 2, which must not be duplicated.
    let run = p.sync("dev", &[]);
    run.assert_ok();
    let third = dump(&lake);
    assert_same_lake(&second, &third, "a sync without changes");
    let (_, state) = state_rows(&lake, &p.db, "items");
    assert_eq!(state.len(), 3, "{state:?}");
    assert!(state.iter().all(|r| r["status"] == "ok"), "{state:?}");
    assert!(run.stdout.contains("| 0 partitions written"), "the re-read changed nothing: {}", run.describe());

    // An edit that did not move the timestamp, still inside the overlap window: the re-read document differs from
    // its row, so its partition is rewritten (not mistaken for an unchanged re-read); the other stays as it was.
    items.update_one(doc! {"_id": 2}, doc! {"$set": {"price": 77}}).await.unwrap();
    let run = p.sync("dev", &[]);
    run.assert_ok();
    let fourth = dump(&lake);
    let by_id = rows_by_id(table(&fourth, &p.db, "items"));
    assert_eq!(by_id.len(), 6);
    assert_eq!(by_id["2"]["price"], 77, "{}", by_id["2"]);
    assert_eq!(by_id["4"], rows_by_id(t2)["4"]);
}

/// 6b. A document whose partition value changed appears once, in its new partition only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_moves_a_document_to_its_new_partition() {
    let p = Project::new("move");
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    let created = Bson::DateTime(DateTime::from_millis(iso_millis("2025-07-01T06:00:00Z")));
    let docs: Vec<Document> = (1..=4)
        .map(|i| event(i, created.clone(), doc! { "facility_id": if i % 2 == 0 { "A" } else { "B" } }))
        .collect();
    items.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},items,modified_at,facility_id,"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();

    items
        .update_one(
            doc! {"_id": 2},
            doc! {"$set": {"facility_id": "B", "modified_at": DateTime::from_millis(now_millis())}},
        )
        .await
        .unwrap();
    p.sync("dev", &[]).assert_ok();
    let dump = dump(&lake);
    let t = table(&dump, &p.db, "items");
    let ids: Vec<String> = rows(t).iter().map(|r| r["_id"].to_string()).collect();
    let by_id = rows_by_id(t); // panics when _id 2 is still in facility_id=A as well
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(by_id["2"]["facility_id"], "B");
}

/// 7. The same database synced into a local lake and into an S3 lake gives identical lakes, after a full load
/// and after an incremental round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_s3_lakes_are_identical() {
    let p = Project::new("s3");
    p.seed(150, 5);
    p.write_collections(&SEEDED_ROWS);
    let local = p.local_env("local", "Asia/Kolkata");
    let s3 = p.s3_env("cloud", &unique_bucket("s3"), "lake/raw", "Asia/Kolkata");
    for round in 0..2 {
        if round == 1 {
            p.mutate(0.05, 5);
        }
        p.sync("local", &[]).assert_ok();
        p.sync("cloud", &[]).assert_ok();
        let (a, b) = (dump(&local), dump(&s3));
        assert_eq!(a["tables"].as_object().unwrap().len(), 5, "{}", a["tables"].as_object().unwrap().len());
        for name in SEEDED {
            let t = table(&b, &p.db, name);
            assert_one_file_per_partition(t);
            assert_eq!(rows_by_id(t).len(), rows(table(&a, &p.db, name)).len());
        }
        assert_same_lake(&a, &b, &format!("round {round}: local (left) vs S3 (right)"));
    }
    let client = client().await;
    let dump = dump(&s3);
    for name in SEEDED {
        let mongo: BTreeSet<String> = all_docs(&client, &p.db, name).await.iter().map(doc_id).collect();
        let lake: BTreeSet<String> = rows_by_id(table(&dump, &p.db, name)).into_keys().collect();
        assert_eq!(lake, mongo, "{name}: S3 lake vs MongoDB");
    }
}

/// 6c. The key index is split by key range: an incremental run reads and rewrites only the segments holding the
/// keys it read (here the first, for a moved document, and the last, for an update and a new key), and the
/// move still leaves the document in its new partition only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_index_loads_and_rewrites_only_the_segments_a_round_touches() {
    let p = Project::new("segments");
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    // Ten minutes apart: of these, the next run's overlap (five minutes) re-reads only the newest.
    let old = |i: i64| DateTime::from_millis(now_millis() - 3_600_000 - (40 - i) * 600_000);
    let docs: Vec<Document> = (1..=40)
        .map(|i| doc! { "_id": format!("k{i:03}"), "facility_id": if i % 2 == 0 { "A" } else { "B" }, "modified_at": old(i) })
        .collect();
    items.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},items,modified_at,facility_id,"]);
    let lake = p.local_env("dev", "UTC");
    let env_file = p.path().join("environments/dev.toml");
    let toml = std::fs::read_to_string(&env_file).unwrap() + "index_segment_keys = 4\n";
    std::fs::write(&env_file, toml).unwrap();
    p.sync("dev", &[]).assert_ok();
    let index_dir = std::path::Path::new(&lake).join("_mongolake/index").join(&p.db).join("items");
    let before = files_under(&index_dir);
    assert_eq!(before.len(), 11, "40 keys in segments of 4, and the manifest: {before:?}");

    let now = DateTime::from_millis(now_millis());
    items.update_one(doc! {"_id": "k002"}, doc! {"$set": {"facility_id": "B", "modified_at": now}}).await.unwrap();
    items.update_one(doc! {"_id": "k039"}, doc! {"$set": {"facility_id": "A", "modified_at": now}}).await.unwrap();
    items.insert_one(doc! { "_id": "k041", "facility_id": "A", "modified_at": now }).await.unwrap();
    let run = p.sync_with("dev", &[], &[("MONGOLAKE_LOG", "mongolake=debug"), ("NO_COLOR", "1")]);
    run.assert_ok();
    let updated = run.stderr.lines().find(|l| l.contains("Phase: key index updated")).unwrap_or_default();
    let counts = ["segments=10", "read=2", "rewritten=2"];
    assert!(counts.iter().all(|c| updated.contains(c)), "{updated}\n{}", run.describe());
    let after = files_under(&index_dir);
    let kept = before.iter().filter(|f| after.contains(f)).count();
    assert_eq!(
        (after.len(), kept),
        (11, 9),
        "two segments rewritten; eight, and the manifest path, kept: {before:?} -> {after:?}"
    );

    let dump = dump(&lake);
    let t = table(&dump, &p.db, "items");
    let by_id = rows_by_id(t); // panics when a moved key is still in its old partition as well
    assert_eq!(by_id.len(), 41);
    assert_eq!((&by_id["k002"]["facility_id"], &by_id["k039"]["facility_id"]), (&"B".into(), &"A".into()));

    // A lost segment (the first, where the next round moves k001): the run meets it while updating the index,
    // rebuilds the index from the partition files, and plans again.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_dir.join("manifest.json")).unwrap()).unwrap();
    std::fs::remove_file(index_dir.join(manifest["segments"][0]["file"].as_str().unwrap())).unwrap();
    items.update_one(doc! {"_id": "k001"}, doc! {"$set": {"facility_id": "A", "modified_at": now}}).await.unwrap();
    let run = p.sync_with("dev", &[], &[("NO_COLOR", "1")]);
    run.assert_ok();
    assert!(
        run.stderr.contains("rebuilding it from the lake") && run.stderr.contains("is missing"),
        "{}",
        run.describe()
    );
    let by_id = rows_by_id(table(&common::dump(&lake), &p.db, "items"))
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect::<Vec<_>>();
    assert_eq!(by_id.len(), 41, "k001 moved, and is in its new partition only");
    assert_eq!(by_id[0].1["facility_id"], "A");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_dir.join("manifest.json")).unwrap()).unwrap();
    let keys: u64 = manifest["segments"].as_array().unwrap().iter().map(|s| s["keys"].as_u64().unwrap()).sum();
    assert_eq!((keys, files_under(&index_dir).len()), (41, 12), "the rebuilt index saved whole: 10 x 4 + 1 keys");
}

/// 6d. Two versions of one key read in the same run into different partitions (here: two documents sharing a
/// `key` column value, as an update between two batches of the cursor would give): only the newest stays, in
/// its partition, and the report counts the other as a dropped duplicate; two in one partition dedup there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_version_of_a_key_read_twice_wins_across_partitions() {
    let p = Project::new("crossdup");
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    let t = |ms: i64| DateTime::from_millis(now_millis() - 3_600_000 + ms);
    items
        .insert_many(vec![
            doc! { "_id": 1, "code": "X", "facility_id": "A", "modified_at": t(0), "v": "old" },
            doc! { "_id": 2, "code": "X", "facility_id": "B", "modified_at": t(1000), "v": "new" },
            doc! { "_id": 3, "code": "Y", "facility_id": "B", "modified_at": t(2000), "v": "new" },
            doc! { "_id": 4, "code": "Y", "facility_id": "B", "modified_at": t(0), "v": "old" },
            doc! { "_id": 5, "code": "Z", "facility_id": "A", "modified_at": t(0), "v": "only" },
        ])
        .await
        .unwrap();
    p.write_collections(&["{db},items,modified_at,facility_id,code"]);
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_ok();
    let line = run.stdout.lines().find(|l| l.contains(".items")).unwrap().to_string();
    let dups: u64 = line.split_whitespace().nth(5).unwrap().parse().unwrap();
    assert_eq!(dups, 2, "X's copy in A and Y's older copy in B: {line}");
    let dump = dump(&lake);
    let t = table(&dump, &p.db, "items");
    let mut got: Vec<(String, String, String)> =
        rows(t).iter().map(|r| (r["code"].to_string(), r["facility_id"].to_string(), r["v"].to_string())).collect();
    got.sort();
    let want: Vec<(String, String, String)> = [("X", "B", "new"), ("Y", "B", "new"), ("Z", "A", "only")]
        .iter()
        .map(|(c, f, v)| (format!("\"{c}\""), format!("\"{f}\""), format!("\"{v}\"")))
        .collect();
    assert_eq!(got, want);
}
