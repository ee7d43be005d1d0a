//! Partition files are streamed to the lake while they are encoded (`src/sink/upload.rs`): a file larger than
//! `[sync] upload_part_mb` goes up in parts (an S3 multipart upload; on local disk object_store's multipart
//! write), so no encoded file is held whole. Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, spec::BinarySubtype, Binary, DateTime, Document};
use common::*;
use mongolake::sink::Lake;
use object_store::ObjectStoreExt;
use std::io::Write;
use std::sync::Arc;

/// Streams `total` bytes through a sink on a blocking thread, as the encoder does.
async fn stream(lake: &Lake, key: &str, data: Vec<u8>, finish: bool) -> Option<u64> {
    let (mut sink, upload) = lake.upload(&key.into());
    tokio::task::spawn_blocking(move || {
        // In uneven writes, as Parquet's writer makes them.
        for chunk in data.chunks(70_001) {
            sink.write_all(chunk).unwrap();
        }
        if finish {
            sink.finish().unwrap();
        }
    })
    .await
    .unwrap();
    upload.await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_larger_than_a_part_is_one_multipart_object_on_s3_and_a_dropped_one_leaves_nothing() {
    let bucket = unique_bucket("upload");
    create_bucket(&bucket);
    let store = Arc::new(s3_store(&bucket));
    let lake = Lake::from_store(store.clone(), Default::default(), &format!("s3://{bucket}")).with_part_bytes(5 << 20);

    let data = noise(1, 11 << 20);
    assert_eq!(stream(&lake, "big", data.clone(), true).await, Some(11 << 20));
    let head = store.head(&"big".into()).await.unwrap();
    // S3 (and moto) give a multipart object the ETag `<md5 of the parts' md5s>-<parts>`: 5 + 5 + 1 MiB.
    assert!(head.e_tag.as_deref().unwrap_or("").trim_matches('"').ends_with("-3"), "{head:?}");
    assert_eq!(store.get(&"big".into()).await.unwrap().bytes().await.unwrap().as_ref(), &data[..]);

    // Smaller than a part: a single PUT, no multipart ETag.
    let small = noise(2, 300_000);
    assert_eq!(stream(&lake, "small", small.clone(), true).await, Some(300_000));
    let head = store.head(&"small".into()).await.unwrap();
    assert!(!head.e_tag.as_deref().unwrap_or("").contains('-'), "{head:?}");
    assert_eq!(store.get(&"small".into()).await.unwrap().bytes().await.unwrap().as_ref(), &small[..]);

    // An encoder that stops without finishing (an error, a panic) aborts the upload: nothing appears.
    assert_eq!(stream(&lake, "dropped", noise(3, 12 << 20), false).await, None);
    assert!(matches!(store.head(&"dropped".into()).await, Err(object_store::Error::NotFound { .. })));
}

/// A partition of one ward holding 2,600 documents of 4 KB of noise (a file of about 10 MB) and a small one.
async fn seed_noisy(p: &Project) {
    let client = client().await;
    let c = coll(&client, &p.db, "scans");
    let when = DateTime::from_millis(iso_millis("2025-07-01T06:00:00Z"));
    let docs: Vec<Document> = (0..2_600u64)
        .map(|i| {
            let ward = if i % 100 == 0 { "W02" } else { "W01" };
            let image = Binary { subtype: BinarySubtype::Generic, bytes: noise(i + 10, 4096) };
            doc! { "_id": i as i64, "ward": ward, "modified_at": when, "image": image }
        })
        .collect();
    c.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},scans,modified_at,ward,"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_file_larger_than_an_upload_part_is_streamed_in_parts_and_equals_one_written_whole() {
    let p = Project::new("upload");
    seed_noisy(&p).await;
    let whole = p.local_env("whole", "UTC");
    p.set_sync("whole", "upload_part_mb = 64");
    let parts = p.local_env("parts", "UTC");
    // ... and row groups of about 1 MB, so the writer never holds the partition's rows either.
    p.set_sync("parts", "upload_part_mb = 1\nrow_group_mb = 1");
    let bucket = unique_bucket("uploadsync");
    let s3 = p.s3_env("s3", &bucket, "lake", "UTC");
    p.set_sync("s3", "upload_part_mb = 5");

    for env in ["whole", "parts", "s3"] {
        p.sync(env, &[]).assert_ok();
    }
    // The big partition's file is several parts long (so the parts path ran), and every lake has the same rows.
    let file = std::path::Path::new(&parts).join(&p.db).join("scans/ward=W01/part-0.parquet");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 6 << 20, "{} is {size} bytes: expected several 1 MB parts", file.display());
    let small = std::path::Path::new(&parts).join(&p.db).join("scans/ward=W02/part-0.parquet");
    assert!(std::fs::metadata(&small).unwrap().len() < 1 << 20);
    let reference = dump(&whole);
    let t = table(&reference, &p.db, "scans");
    assert_eq!(rows(t).len(), 2_600);
    assert_one_file_per_partition(t);
    assert_same_lake(&reference, &dump(&parts), "streamed in 1 MB parts vs whole");
    assert_same_lake(&reference, &dump(&s3), "streamed to S3 in 5 MB parts vs whole");
    // The big file has a row group per 1,024 rows (each past 1 MB) with row_group_mb = 1, one without.
    assert_eq!(row_groups(&file), 3);
    assert_eq!(row_groups(&file_in(&whole, &p.db)), 1);
    for lake in [&whole, &parts] {
        let staged = files_under(&std::path::Path::new(lake).join("_mongolake/staging"));
        assert!(staged.is_empty(), "left in staging: {staged:?}");
    }

    // An incremental round into the 10 MB file: merged whole in memory on `whole`; a row group at a time,
    // streamed, on `parts` and on S3 (ranged GETs), whose 16 MB budget reads at most 256 KB files whole.
    for env in ["parts", "s3"] {
        p.set_sync(env, "memory_budget_mb = 16");
    }
    let c = coll(&client().await, &p.db, "scans");
    let later = DateTime::from_millis(iso_millis("2025-07-02T06:00:00Z"));
    for i in (1..2_600u64).step_by(100) {
        let image = Binary { subtype: BinarySubtype::Generic, bytes: noise(i + 5_000, 4096) };
        let ward = if i % 500 == 1 { "W02" } else { "W01" };
        let set = doc! { "modified_at": later, "image": image, "ward": ward };
        c.update_one(doc! { "_id": i as i64 }, doc! { "$set": set }).await.unwrap();
    }
    for env in ["whole", "parts", "s3"] {
        p.sync(env, &[]).assert_ok();
    }
    let reference = dump(&whole);
    let t = table(&reference, &p.db, "scans");
    assert_eq!(rows(t).len(), 2_600);
    assert_eq!(rows(t).iter().filter(|r| r["ward"] == "W02").count(), 26 + 6);
    assert_same_lake(&reference, &dump(&parts), "merged a row group at a time vs whole");
    assert_same_lake(&reference, &dump(&s3), "merged a row group at a time from S3 vs whole");

    // A file not in key order (not one mongolake wrote: here the same rows, reversed): merged in memory on
    // `whole`; on `parts`, too large to read whole, its rows are sorted on local disk first (runs of about
    // 4 MB: the file's 10 MB spill), then merged as a widening is. Both sorted, nothing lost, the same rows.
    for lake in [&whole, &parts] {
        let file = file_in(lake, &p.db);
        let (batches, ty) = mongolake::sink::parquet::decode(std::fs::read(&file).unwrap().into(), "test").unwrap();
        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let n = all.num_rows() as u32;
        // ... and rows 7 and 8 twice (a key held twice: the in-memory merge keeps both copies of 8, and the
        // fresh document of 7, updated below, replaces both of its copies).
        let ids = all.column_by_name("_id").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
        let twice = (0..n).filter(|&r| [7, 8].contains(&ids.value(r as usize)));
        let order = arrow::array::UInt32Array::from_iter_values((0..n).rev().chain(twice));
        let reversed = arrow::compute::take_record_batch(&all, &order).unwrap();
        let rg = mongolake::sink::parquet::RowGroups::rows(1 << 20);
        let bytes = mongolake::sink::parquet::encode(reversed.schema(), &[reversed], &ty, rg, "test").unwrap();
        std::fs::write(&file, &bytes).unwrap();
    }
    let even_later = DateTime::from_millis(iso_millis("2025-07-03T06:00:00Z"));
    c.update_one(doc! { "_id": 7i64 }, doc! { "$set": { "modified_at": even_later, "ward": "W01" } }).await.unwrap();
    p.sync("whole", &[]).assert_ok();
    let run = p.sync("parts", &[]);
    run.assert_ok();
    assert!(run.stderr.contains("not in key order: sorting its rows on local disk"), "{}", run.describe());
    let reference = dump(&whole);
    let t = rows(table(&reference, &p.db, "scans"));
    assert_eq!(t.len(), 2_601);
    assert_eq!((t.iter().filter(|r| r["_id"] == 7).count(), t.iter().filter(|r| r["_id"] == 8).count()), (1, 2));
    assert_same_lake(&reference, &dump(&parts), "a file out of key order, sorted on disk vs in memory");
    let (batches, _) =
        mongolake::sink::parquet::decode(std::fs::read(file_in(&parts, &p.db)).unwrap().into(), "test").unwrap();
    let keys: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("_id").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
            ids.values().iter().map(|v| v.to_string()).collect::<Vec<_>>()
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "the merged file is in key order again");
}

fn file_in(lake: &str, db: &str) -> std::path::PathBuf {
    std::path::Path::new(lake).join(db).join("scans/ward=W01/part-0.parquet")
}

fn row_groups(file: &std::path::Path) -> usize {
    let bytes = bytes::Bytes::from(std::fs::read(file).unwrap());
    parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&bytes).unwrap().num_row_groups()
}

/// What the fault proxy does to an upload part it fails.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Answers `503 Slow Down` with S3's XML error body, as S3 does when throttling.
    SlowDown,
    /// Reads the request and closes the connection without an answer.
    Drop,
}

/// Faults to inject, and what was injected (`<fault> <request line>`).
#[derive(Default)]
struct Faults {
    /// One per multipart upload, in the order uploads send their first part.
    planned: std::collections::VecDeque<Fault>,
    uploads_seen: std::collections::HashSet<String>,
    injected: Vec<String>,
}

/// A proxy in front of the S3 server ([`common::proxy`]) that fails the first UploadPart
/// (`PUT ...?partNumber=N&uploadId=U`) of each of the first multipart uploads, one planned fault each, and
/// forwards every other request as it is. Returns its endpoint.
async fn fault_proxy(faults: Arc<std::sync::Mutex<Faults>>) -> String {
    use common::proxy::{Action, Proxy};
    let hook = move |r: &common::proxy::Request| {
        let upload_id = (r.method == "PUT" && r.query().contains("partNumber="))
            .then(|| r.query().split('&').find_map(|kv| kv.strip_prefix("uploadId=")).map(str::to_string))
            .flatten();
        let Some(id) = upload_id else { return Action::Forward };
        let mut f = faults.lock().unwrap();
        if !f.uploads_seen.insert(id) {
            return Action::Forward;
        }
        let Some(fault) = f.planned.pop_front() else { return Action::Forward };
        f.injected.push(format!("{fault:?} {} {}", r.method, r.target));
        match fault {
            Fault::SlowDown => {
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                            <Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>";
                Action::Answer(format!(
                    "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                ))
            }
            Fault::Drop => Action::Drop,
        }
    };
    Proxy::start(Arc::new(hook)).await.endpoint
}

/// A streamed partition upload that S3 throttles (503 SlowDown) on one attempt and whose connection drops on
/// the next: the store errors reach the collection as store errors (not as encoding errors), so the collection
/// is retried whole and the lake ends as a clean run leaves it; the run report records both retried causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_and_a_dropped_connection_during_a_streamed_upload_retry_the_collection_with_the_cause_reported() {
    let p = Project::new("uploadfault");
    seed_noisy(&p).await;
    let whole = p.local_env("whole", "UTC");
    let bucket = unique_bucket("uploadfault");
    let faults = Arc::new(std::sync::Mutex::new(Faults {
        planned: [Fault::SlowDown, Fault::Drop].into(),
        ..Default::default()
    }));
    let proxy = fault_proxy(faults.clone()).await;
    p.s3_env_at("s3", &bucket, "lake", "UTC", &proxy);
    // object_store retries no request itself (so the fault reaches mongolake); the collection may be retried.
    // Parts of 6 MB: the 10 MB file is two parts, and the failed first part is met when the upload completes
    // (object_store's `AsyncWrite` shutdown, whose error is an I/O error carrying the store's).
    p.set_sync("s3", "upload_part_mb = 6\nstore_retries = 0\nretry_attempts = 4\nretry_backoff_ms = 100");

    p.sync("whole", &[]).assert_ok();
    let dir = p.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let d = dir.to_str().unwrap();
        run_binary(&["sync", "--env", "s3", "--config-dir", d, "--no-email"], &dir, &[])
    })
    .await
    .unwrap();
    run.assert_ok();
    let injected = faults.lock().unwrap().injected.clone();
    assert_eq!(injected.len(), 2, "both faults were injected: {injected:?}\n{}", run.describe());
    assert!(injected.iter().all(|i| i.contains("partNumber=")), "{injected:?}");

    // The lake holds exactly what a clean run writes.
    let lake = format!("s3://{bucket}/lake");
    let reference = dump(&whole);
    assert_eq!(rows(table(&reference, &p.db, "scans")).len(), 2_600);
    assert_same_lake(&reference, &dump(&lake), "retried after upload faults vs a clean local run");
    assert_one_file_per_partition(table(&dump(&lake), &p.db, "scans"));

    // The run report: ok after three attempts, each retried one with its cause.
    let run_id = run.stdout.lines().nth(1).and_then(|l| l.strip_prefix("run ")).and_then(|l| l.split(' ').next());
    let run_id = run_id.unwrap_or_else(|| panic!("no run id in {}", run.describe()));
    let report: serde_json::Value = serde_json::from_slice(
        &s3_get(&bucket, &format!("lake/_mongolake/runs/{run_id}.json")).await.expect("run report"),
    )
    .unwrap();
    let name = format!("{}.scans", p.db);
    let c = report["collections"].as_array().unwrap().iter().find(|c| c["name"] == name.as_str()).unwrap();
    assert_eq!((c["status"].as_str(), c["attempts"].as_u64()), (Some("ok"), Some(3)), "{c}");
    assert_eq!(c["docs_read"], 2_600, "a retried pass counts its documents once: {c}");
    let retried: Vec<&str> = c["retried_errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(retried.len(), 2, "{c}");
    assert!(retried[0].contains("503") && retried[0].contains("SlowDown"), "the throttled attempt: {}", retried[0]);
    assert!(retried.iter().all(|e| e.starts_with("lake ") && e.contains("partNumber=")), "store errors: {retried:?}");
    // ... and the printed (and emailed) report says it too.
    assert!(run.stdout.contains("3 attempts; retried after: lake "), "{}", run.stdout);
    assert!(run.stdout.contains("SlowDown"), "{}", run.stdout);
}
