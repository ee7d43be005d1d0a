//! What a night costs in S3 requests (issue 24): every request mongolake's S3 client sends is seen by a proxy in
//! front of the test S3 server ([`common::proxy`]). A partition file is put in place (an S3 PUT replaces an
//! object atomically: no staging, copy or delete), a new partition is not read (the table is listed once), and a
//! rewritten one is read once and put once. The lake then equals one written to local disk. Needs the servers
//! of scripts/test.sh.
mod common;

use bson::{doc, DateTime, Document};
use common::proxy::{Proxy, Request};
use common::*;
use std::collections::BTreeMap;

const WARDS: i64 = 120;

fn ward(i: i64) -> String {
    format!("w{:03}", i % WARDS)
}

/// Requests by kind, for keys under `prefix` (None: every request).
fn by_kind(requests: &[Request], bucket: &str, prefix: Option<&str>) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for r in requests.iter().filter(|r| prefix.is_none_or(|p| r.key(bucket).starts_with(p))) {
        *out.entry(r.kind()).or_insert(0) += 1;
    }
    out
}

fn shown(requests: &[Request], bucket: &str) -> String {
    requests
        .iter()
        .map(|r| format!("{} {} {} ?{}", r.kind(), r.method, r.key(bucket), r.query()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `visits` partitioned by `ward`, synced to a local lake (env `local`) and to an S3 lake behind a counting
/// proxy (env `s3`, prefix `lake`), both in UTC.
struct Lakes {
    local: String,
    bucket: String,
    proxy: Proxy,
    url: String,
}

async fn lakes(p: &Project, name: &str) -> Lakes {
    p.write_collections(&[&format!("{},visits,modified_at,ward,", p.db)]);
    let local = p.local_env("local", "UTC");
    let bucket = unique_bucket(name);
    let proxy = Proxy::counting().await;
    let url = p.s3_env_at("s3", &bucket, "lake", "UTC", &proxy.endpoint);
    Lakes { local, bucket, proxy, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_partition_costs_one_put_and_a_rewritten_one_a_get_and_a_put() {
    let p = Project::new("s3requests");
    let client = client().await;
    let c = coll(&client, &p.db, "visits");
    let when = DateTime::from_millis(iso_millis("2025-07-01T06:00:00Z"));
    // An hour apart, the newest first: a night's overlap window re-reads only document 0, which it changes anyway.
    let docs: Vec<Document> = (0..2 * WARDS)
        .map(|i| {
            let at = DateTime::from_millis(when.timestamp_millis() - i * 3_600_000);
            doc! { "_id": i, "ward": ward(i), "n": i, "modified_at": at }
        })
        .collect();
    c.insert_many(docs).await.unwrap();
    let Lakes { local, bucket, proxy, url } = lakes(&p, "s3requests").await;
    let table_prefix = format!("lake/{}/visits/", p.db);

    // A full load: one PUT per partition file, nothing read, copied or deleted in the table or in staging.
    p.sync("s3", &[]).assert_ok();
    let full = proxy.take();
    let in_table = by_kind(&full, &bucket, Some(&table_prefix));
    let all = by_kind(&full, &bucket, None);
    let listing = shown(&full, &bucket);
    assert_eq!(in_table.get("PUT"), Some(&(WARDS as usize)), "{in_table:?}\n{listing}");
    assert_eq!(in_table.len(), 2, "only PUTs and the table's listing: {in_table:?}\n{listing}");
    for kind in ["COPY", "MULTIPART"] {
        assert_eq!(all.get(kind), None, "{kind}: {all:?}\n{listing}");
    }
    let staged = by_kind(&full, &bucket, Some("lake/_mongolake/staging/"));
    assert!(staged.keys().all(|k| *k == "LIST"), "nothing staged on S3: {staged:?}\n{listing}");
    // What a collection costs whatever its size (lease, state, schema, index, definitions, report): printed, and
    // bounded so that at 1,000 files a collection it stays under 0.05 a file.
    let fixed = full.len() - WARDS as usize;
    eprintln!("full load: {} requests for {WARDS} files, {fixed} per collection: {all:?}", full.len());
    assert!(fixed <= 50, "{fixed} requests besides the partition files: {all:?}\n{listing}");

    // A night: 10 documents changed in 10 partitions, 5 new documents in 5 new partitions.
    for i in 0..10 {
        c.update_one(doc! { "_id": i }, doc! { "$set": { "n": -i, "modified_at": DateTime::now() } }).await.unwrap();
    }
    let new: Vec<Document> = (0..5)
        .map(|i| doc! { "_id": 1_000 + i, "ward": format!("new{i}"), "n": i, "modified_at": DateTime::now() })
        .collect();
    c.insert_many(new).await.unwrap();
    p.sync("s3", &[]).assert_ok();
    let night = proxy.take();
    let in_table = by_kind(&night, &bucket, Some(&table_prefix));
    let all = by_kind(&night, &bucket, None);
    let listing = shown(&night, &bucket);
    eprintln!("{listing}");
    assert_eq!(in_table.get("GET"), Some(&10), "each rewritten partition read once: {in_table:?}\n{listing}");
    assert_eq!(in_table.get("PUT"), Some(&15), "each written partition put once: {in_table:?}\n{listing}");
    assert_eq!(in_table.len(), 3, "{in_table:?}\n{listing}");
    assert_eq!(all.get("COPY"), None, "{all:?}\n{listing}");
    // Besides the 25 file requests, 13: the lease's PUT, the state and key index manifest GETs and the schema
    // folder's LIST (once a run: the manifest keeps a copy of the schema file, used while the listing shows the
    // file with the copy's tag; not the layout record's GET: the lease says the run before ended cleanly, and
    // the state row it left holds the hash of these very settings), the table's LIST, the schema and its two
    // table definitions' PUTs (the new wards changed them; unchanged ones are neither read nor written: the
    // state records their hashes), the manifest's PUT (the index, one small segment, lives in it), the state's
    // PUT, the lease's delete (a DeleteObjects request, with the leases of the collections committing about
    // then) and the run report (the GET of the report of the night before, by name, and the PUT). The run before
    // ended cleanly (its lease was deleted), so neither staging/, nor the rejects, nor the index folder is listed
    // for leftovers (see the next test).
    // 15 before the schema's GET became a listing for all, staging/ was listed only when some collection needs
    // it and the reports compared with were read by name (no LIST of runs/), 16 before the state row held the
    // layout's hash, 21 before the index moved into its manifest (the segment's GET and PUT, the old one's
    // delete) and the lease said how the run before ended (the rejects and index LISTs); 24 before the
    // definitions' hashes (three GETs comparing them before writing), 28 before the night's second read of the
    // index segment, the report's read of the state, the read of the lease before its delete and the separate
    // delete of the pre-segment index file went.
    let fixed = night.len() - 25;
    eprintln!("night: {} requests for 15 files, {fixed} besides them: {all:?}", night.len());
    assert!(fixed <= 13, "{fixed} requests besides the partition files: {all:?}\n{listing}");
    assert_eq!(listings(&night, &bucket, "lake/_mongolake/runs"), 0, "{listing}");
    assert_eq!(listings(&night, &bucket, "lake/_mongolake/staging"), 0, "{listing}");
    let layout_record = format!("lake/_mongolake/layout/{}/visits.json", p.db);
    assert!(night.iter().all(|r| r.key(&bucket) != layout_record), "the layout record is not read:\n{listing}");

    // The lake is the one a local-disk run writes.
    p.sync("local", &[]).assert_ok();
    let (want, got) = (dump(&local), dump(&url));
    let t = table(&got, &p.db, "visits");
    assert_one_file_per_partition(t);
    assert_eq!(rows(t).len(), 2 * WARDS as usize + 5);
    assert_same_lake(&want, &got, "S3 lake vs local lake");
}

/// A rerun soon after a run re-reads the documents that run wrote last (the overlap window). The digest it left
/// says the lake holds them as they are, so no partition file is read for them, on S3 and on local disk alike. A
/// changed document still has its partition read and rewritten; a partition file that went behind the digest's
/// back (deleted here by hand) is not trusted: its documents are merged again and the file comes back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_reads_no_partition_for_documents_the_lake_holds_as_they_are() {
    let p = Project::new("digest");
    let client = client().await;
    let c = coll(&client, &p.db, "visits");
    let now = now_millis();
    // 60 documents in 12 wards, stamped within the last minute: all in the next run's overlap window
    let docs: Vec<Document> = (0..60)
        .map(|i| doc! { "_id": i, "ward": format!("w{:02}", i % 12), "n": i, "modified_at": DateTime::from_millis(now - i * 1_000) })
        .collect();
    c.insert_many(docs).await.unwrap();
    let Lakes { local, bucket, proxy, url } = lakes(&p, "digest").await;
    let table_prefix = format!("lake/{}/visits/", p.db);
    p.sync("s3", &[]).assert_ok();
    proxy.take();

    let out = p.sync("s3", &[]).assert_ok().text();
    let rerun = proxy.take();
    let in_table = by_kind(&rerun, &bucket, Some(&table_prefix));
    assert_eq!(in_table.get("GET"), None, "no partition file read: {in_table:?}\n{}", shown(&rerun, &bucket));
    assert_eq!(in_table.get("PUT"), None, "{in_table:?}");
    assert!(out.contains("| 60 documents read |"), "{out}");
    assert!(out.contains("| 60 documents re-read as the lake holds them (their partitions not read)"), "{out}");

    // One document changed: its partition alone is read and rewritten.
    c.update_one(doc! { "_id": 3 }, doc! { "$set": { "n": -3, "modified_at": DateTime::now() } }).await.unwrap();
    let out = p.sync("s3", &[]).assert_ok().text();
    let night = proxy.take();
    let in_table = by_kind(&night, &bucket, Some(&table_prefix));
    assert_eq!(in_table.get("GET"), Some(&1), "{in_table:?}\n{}", shown(&night, &bucket));
    assert_eq!(in_table.get("PUT"), Some(&1), "{in_table:?}");
    assert!(out.contains("| 59 documents re-read as the lake holds them"), "{out}");

    // A partition file deleted behind the digest's back: its five documents are merged again, the file is back.
    let gone = format!("{table_prefix}ward=w05/part-0.parquet");
    {
        #[allow(unused_imports)]
        use object_store::{ObjectStore, ObjectStoreExt};
        common::s3_store(&bucket).delete(&object_store::path::Path::parse(&gone).unwrap()).await.unwrap();
    }
    let out = p.sync("s3", &[]).assert_ok().text();
    assert!(out.contains("| 55 documents re-read as the lake holds them"), "{out}");
    let got = dump(&url);
    let t = table(&got, &p.db, "visits");
    assert_one_file_per_partition(t);
    assert_eq!(rows(t).len(), 60);
    assert_eq!(rows_by_id(t)["3"]["n"], -3);

    // Local disk: the same, its files' tags read back after each write.
    p.sync("local", &[]).assert_ok();
    let out = p.sync("local", &[]).assert_ok().text();
    assert!(out.contains("| 60 documents re-read as the lake holds them"), "{out}");
    let file = p.path().join("lake-local").join(&p.db).join("visits/ward=w07/part-0.parquet");
    assert!(file.exists(), "{}", file.display());
    std::fs::remove_file(&file).unwrap();
    let out = p.sync("local", &[]).assert_ok().text();
    assert!(out.contains("| 55 documents re-read as the lake holds them"), "{out}");
    assert!(file.exists(), "the deleted partition is written again");
    assert_same_lake(&dump(&url), &dump(&local), "S3 lake vs local lake");
}

/// A committed collection's lease is deleted while the next collection starts, and the run waits for it: with
/// the deletion held back 1.5 s the lease is still gone when the run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_collections_lease_is_gone_when_the_run_ends() {
    let p = Project::new("s3release");
    let client = client().await;
    let docs: Vec<Document> =
        (0..6).map(|i| doc! { "_id": i, "ward": ward(i), "modified_at": DateTime::now() }).collect();
    coll(&client, &p.db, "visits").insert_many(docs).await.unwrap();
    let Lakes { bucket, .. } = lakes(&p, "s3release").await;
    let run = p.sync_with("s3", &[], &[("MONGOLAKE_DELAY", "before_release:1500")]);
    run.assert_ok();
    let lease = format!("lake/_mongolake/leases/{}/visits.json", p.db);
    assert_eq!(s3_get(&bucket, &lease).await, None, "the lease outlived the run:\n{}", run.describe());
}

/// The keys under `prefix` in `bucket`, sorted, without the prefix.
async fn keys_under(bucket: &str, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let listed: Vec<object_store::ObjectMeta> =
        common::s3_store(bucket).list(Some(&prefix.into())).try_collect().await.unwrap();
    let mut keys: Vec<String> =
        listed.into_iter().map(|m| m.location.to_string().trim_start_matches(prefix).to_string()).collect();
    keys.sort();
    keys
}

/// Listings of `prefix` among `requests`.
fn listings(requests: &[Request], bucket: &str, prefix: &str) -> usize {
    requests.iter().filter(|r| r.kind() == "LIST" && r.key(bucket).starts_with(prefix)).count()
}

/// A night that fails before its watermark, or crashes, leaves the collection's lease behind (marked released,
/// or as it was), so the next run looks for what it left: the failed run's rejects file and the crashed run's
/// unlisted key index segments go (and what was left staged), and the lake is the one a local-disk run writes.
/// After a night that ended cleanly (the lease deleted) the next one lists neither the rejects, nor the index
/// folder, nor staging/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_or_crashed_night_the_next_run_cleans_up_and_after_a_clean_one_it_does_not_look() {
    let p = Project::new("s3leftovers");
    let client = client().await;
    let c = coll(&client, &p.db, "visits");
    let when = iso_millis("2025-07-01T06:00:00Z");
    let docs: Vec<Document> = (0..40)
        .map(
            |i| doc! { "_id": i, "ward": ward(i % 8), "n": i, "modified_at": DateTime::from_millis(when - i * 60_000) },
        )
        .collect();
    c.insert_many(docs).await.unwrap();
    let Lakes { local, bucket, proxy, url } = lakes(&p, "s3leftovers").await;
    // (segments of 4 keys: files of their own, which a crashed run can leave unlisted)
    p.set_sync("s3", "index_segment_keys = 4");
    let rejects = format!("lake/_mongolake/rejects/{}/visits/", p.db);
    let index = format!("lake/_mongolake/index/{}/visits/", p.db);
    let lease = format!("lake/_mongolake/leases/{}/visits.json", p.db);
    // (the local lake follows each committed night, so that both have the same files)
    let both = || {
        p.sync("s3", &[]).assert_ok();
        p.sync("local", &[]).assert_ok();
    };
    both();
    proxy.take();
    // A date no lake type holds: rejected (the document stays, that value null), in this run's rejects file.
    let far = DateTime::from_millis(600_000_000_000_000);
    let change = |i: i64, n: i64| {
        let c = c.clone();
        async move {
            let set = doc! { "n": n, "seen": far, "modified_at": DateTime::now() };
            c.update_one(doc! { "_id": i }, doc! { "$set": set }).await.unwrap();
        }
    };

    // 1. A night that fails before its watermark: its rejects file stays, and the lease, marked released.
    change(1, -1).await;
    let failed = p.sync_with("s3", &[], &[("MONGOLAKE_FAIL", "before_watermark")]);
    assert_ne!(failed.code, Some(0), "{}", failed.describe());
    let failed_rejects = keys_under(&bucket, &rejects).await;
    assert_eq!(failed_rejects.len(), 1, "the failed run's rejects");
    let marker = s3_get(&bucket, &lease).await.expect("the failed run leaves its lease");
    assert!(String::from_utf8_lossy(&marker).contains("\"released\":true"), "{}", String::from_utf8_lossy(&marker));
    // (and what a run staging a shared load's partition leaves when it stops between its PUT and its copy)
    let staged = format!("lake/_mongolake/staging/{}-gone/{}/visits/ward=w001.parquet", "20250701T020000Z", p.db);
    s3_put(&bucket, &staged, b"half done").await;
    proxy.take();
    // The next run takes it at once, looks for leftovers and removes the failed run's rejects (and writes its
    // own: it re-reads the same document) and the staged object.
    both();
    let next = proxy.take();
    assert_eq!(listings(&next, &bucket, &rejects), 1, "{}", shown(&next, &bucket));
    assert_eq!(listings(&next, &bucket, "lake/_mongolake/staging"), 1, "{}", shown(&next, &bucket));
    assert_eq!(s3_get(&bucket, &staged).await, None, "the staged leftover is removed");
    let left = keys_under(&bucket, &rejects).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left, failed_rejects, "only this run's rejects are left");
    assert_eq!(s3_get(&bucket, &lease).await, None, "a clean end deletes the lease");

    // 2. A crash after the key index's new segments are written, before its manifest: they are unlisted.
    let listed_files = || async {
        let bytes = s3_get(&bucket, &format!("{index}manifest.json")).await.unwrap();
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut files: Vec<String> =
            m["segments"].as_array().unwrap().iter().map(|s| s["file"].as_str().unwrap().to_string()).collect();
        files.push("manifest.json".into());
        files.sort();
        files
    };
    assert_eq!(keys_under(&bucket, &index).await, listed_files().await);
    for i in 0..5 {
        c.update_one(doc! { "_id": i }, doc! { "$set": { "ward": "moved", "modified_at": DateTime::now() } })
            .await
            .unwrap();
    }
    let crashed = p.sync_with("s3", &[], &[("MONGOLAKE_FAULT", "after_partition:1")]);
    assert!(crashed.stderr.contains("MONGOLAKE_FAULT: aborting"), "{}", crashed.describe());
    let strays = keys_under(&bucket, &index).await;
    assert!(strays.len() > listed_files().await.len(), "the crashed run's segments: {strays:?}");
    assert!(s3_get(&bucket, &lease).await.is_some(), "a crash leaves the lease");
    proxy.take();
    both();
    let next = proxy.take();
    assert_eq!(listings(&next, &bucket, &index), 1, "{}", shown(&next, &bucket));
    assert_eq!(keys_under(&bucket, &index).await, listed_files().await, "only what the manifest lists");

    // 3. After that clean end, a night looks for nothing.
    change(2, -2).await;
    both();
    let clean = proxy.take();
    let listing = shown(&clean, &bucket);
    assert_eq!(listings(&clean, &bucket, &rejects), 0, "{listing}");
    assert_eq!(listings(&clean, &bucket, &index), 0, "{listing}");
    assert_eq!(listings(&clean, &bucket, "lake/_mongolake/staging"), 0, "{listing}");
    assert_eq!(keys_under(&bucket, &index).await, listed_files().await, "the replaced segment deleted unlisted");
    // Each committed night re-read the rejected value (the overlap window): a rejects file each, no other.
    let state = s3_get(&bucket, &format!("lake/_mongolake/state/{}/visits.csv", p.db)).await.unwrap();
    let committed: Vec<String> = String::from_utf8_lossy(&state)
        .lines()
        .skip(2) // (the header, and the first load, which read no rejected value)
        .map(|l| format!("{}.jsonl", l.split(',').next().unwrap()))
        .collect();
    assert_eq!(keys_under(&bucket, &rejects).await, committed);

    assert_same_lake(&dump(&local), &dump(&url), "local lake vs S3 lake");
}

/// A night reads no schema file: one listing of the schema folder shows each collection's file with the tag of
/// the copy its key index manifest keeps, and the leases of collections committing together go in one request.
/// A file changed since is read, and what it says holds: edited by hand (here its conflict policy, from variant
/// columns to widening), or by `mongolake widen` (which holds the lease meanwhile and leaves it marked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_reads_no_schema_file_unless_it_changed_since_the_run_before() {
    use serde_json::Value;
    let p = Project::new("s3schema");
    let client = client().await;
    let names = ["visits", "bills", "labs"];
    let rows: Vec<String> = names.iter().map(|n| format!("{},{n},modified_at,ward,", p.db)).collect();
    p.write_collections(&rows.iter().map(String::as_str).collect::<Vec<_>>());
    let bucket = unique_bucket("s3schema");
    let proxy = Proxy::counting().await;
    let url = p.s3_env_at("s3", &bucket, "lake", "UTC", &proxy.endpoint);
    let at = DateTime::from_millis(iso_millis("2025-07-01T06:00:00Z"));
    for name in names {
        let docs: Vec<Document> =
            (0..8).map(|i| doc! { "_id": i, "ward": ward(i % 4), "n": i, "modified_at": at }).collect();
        coll(&client, &p.db, name).insert_many(docs).await.unwrap();
    }
    p.sync("s3", &[]).assert_ok();
    proxy.take();
    let set = |name: &'static str, i: i64, n: bson::Bson| {
        let c = coll(&client, &p.db, name);
        async move {
            c.update_one(doc! { "_id": i }, doc! { "$set": { "n": n, "modified_at": DateTime::now() } }).await.unwrap();
        }
    };
    let schema_key = |name: &str| format!("lake/_mongolake/schema/{}/{name}.json", p.db);
    let schema_gets = |requests: &[Request]| -> Vec<String> {
        let mut got: Vec<String> = requests
            .iter()
            .filter(|r| r.kind() == "GET" && names.iter().any(|n| r.key(&bucket) == schema_key(n)))
            .map(|r| r.key(&bucket).rsplit('/').next().unwrap().to_string())
            .collect();
        got.sort();
        got
    };

    // 1. A night changing a document of each: no schema file read, one listing of the folder; the three
    // leases deleted in one DeleteObjects request.
    for name in names {
        set(name, 1, bson::Bson::Int64(-1)).await;
    }
    p.sync("s3", &[]).assert_ok();
    let night = proxy.take();
    let listing = shown(&night, &bucket);
    assert_eq!(schema_gets(&night), Vec::<String>::new(), "{listing}");
    assert_eq!(listings(&night, &bucket, "lake/_mongolake/schema"), 1, "{listing}");
    let lease_deletes = night.iter().filter(|r| r.kind() == "DELETE" && r.key(&bucket).contains("/leases/")).count();
    assert_eq!(lease_deletes, 0, "{listing}");
    assert_eq!(night.iter().filter(|r| r.kind() == "POST" && r.query().contains("delete")).count(), 1, "{listing}");
    for name in names {
        let lease = format!("lake/_mongolake/leases/{}/{name}.json", p.db);
        assert_eq!(s3_get(&bucket, &lease).await, None, "{name}'s lease outlived the run");
    }

    // 2. visits' schema edited by hand to widen on conflicts; bills keeps variant columns.
    let key = schema_key("visits");
    let mut schema: Value = serde_json::from_slice(&s3_get(&bucket, &key).await.unwrap()).unwrap();
    assert_eq!(schema["type_conflicts"], "variant", "{schema}");
    schema["type_conflicts"] = "widen".into();
    s3_put(&bucket, &key, &serde_json::to_vec_pretty(&schema).unwrap()).await;
    set("visits", 2, "two".into()).await;
    set("bills", 2, "two".into()).await;
    p.sync("s3", &[]).assert_ok();
    let night = proxy.take();
    assert_eq!(schema_gets(&night), ["visits.json"], "only the edited file is read:\n{}", shown(&night, &bucket));
    let lake = dump(&url);
    assert_eq!(column_type(table(&lake, &p.db, "visits"), "n"), "string", "the hand edit holds");
    assert_eq!(column_type(table(&lake, &p.db, "bills"), "n__v_text"), "string");

    // 3. `mongolake widen` on bills: the next night reads its schema and rewrites every partition file.
    let collection = format!("{}.bills", p.db);
    let widen = run_binary(&["widen", "--env", "s3", "--collection", &collection, "--column", "n"], p.path(), &[]);
    widen.assert_ok();
    let lease = s3_get(&bucket, &format!("lake/_mongolake/leases/{}/bills.json", p.db)).await;
    let lease = String::from_utf8(lease.expect("widen leaves the lease marked")).unwrap();
    assert!(lease.contains("\"released\":true"), "{lease}");
    proxy.take();
    p.sync("s3", &[]).assert_ok();
    let night = proxy.take();
    assert_eq!(schema_gets(&night), ["bills.json"], "{}", shown(&night, &bucket));
    let bills = format!("lake/{}/bills/", p.db);
    assert_eq!(by_kind(&night, &bucket, Some(&bills)).get("PUT"), Some(&4), "every bills partition rewritten");
    let lake = dump(&url);
    let t = table(&lake, &p.db, "bills");
    assert_eq!(column_type(t, "n"), "string");
    assert!(t["columns"].get("n__v_text").is_none(), "{}", t["columns"]);
    assert_eq!(rows_by_id(t)["2"]["n"], "two");
}

/// `mongolake widen` takes the collection's lease: while a sync holds it, it changes nothing and says who does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widen_waits_for_no_sync_it_names_the_holder_and_changes_nothing() {
    let p = Project::new("widenlease");
    let client = client().await;
    let docs: Vec<Document> = (0..4)
        .map(|i| doc! { "_id": i, "ward": ward(i), "n": if i == 3 { bson::Bson::from("x") } else { bson::Bson::from(i) }, "modified_at": DateTime::now() })
        .collect();
    coll(&client, &p.db, "visits").insert_many(docs).await.unwrap();
    let Lakes { bucket, .. } = lakes(&p, "widenlease").await;
    p.sync("s3", &[]).assert_ok();
    let schema_key = format!("lake/_mongolake/schema/{}/visits.json", p.db);
    let before = s3_get(&bucket, &schema_key).await.unwrap();
    let dir = p.path().to_str().unwrap().to_string();
    let sync = std::thread::spawn(move || {
        let args = ["sync", "--env", "s3", "--config-dir", dir.as_str(), "--no-email"];
        run_binary(&args, std::path::Path::new(&dir), &[("MONGOLAKE_DELAY", "after_lease:6000")])
    });
    // (until the sync holds the lease: it then waits 6 s before syncing)
    let lease = format!("lake/_mongolake/leases/{}/visits.json", p.db);
    let since = std::time::Instant::now();
    while s3_get(&bucket, &lease).await.is_none() {
        assert!(since.elapsed() < std::time::Duration::from_secs(60), "the sync never took the lease");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let collection = format!("{}.visits", p.db);
    let widen = run_binary(&["widen", "--env", "s3", "--collection", &collection, "--column", "n"], p.path(), &[]);
    assert_eq!(widen.code, Some(2), "{}", widen.describe());
    assert!(widen.stderr.contains("holds the collection; run `mongolake widen` again"), "{}", widen.describe());
    sync.join().unwrap().assert_ok();
    assert_eq!(s3_get(&bucket, &schema_key).await.unwrap(), before, "the schema is as the sync left it");
    run_binary(&["widen", "--env", "s3", "--collection", &collection, "--column", "n"], p.path(), &[]).assert_ok();
}
