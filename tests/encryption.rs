//! `[lake] server_side_encryption`: every object mongolake writes to S3 carries the SSE-KMS headers, checked on
//! the S3 server (moto records them and returns them on HEAD) by an independent boto3 script after a full load,
//! an incremental night and a run killed after writing a file (that file and its lease left behind), with
//! partition files large enough for multipart uploads and a rejected value; `mongolake check` reports it.
mod common;

use common::*;
use std::process::Command;

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/0b7e2a52-mongolake-test";

/// Runs tests/py/check_sse.py on `url`; returns (passed, its JSON summary, stderr).
fn check_sse(url: &str) -> (bool, serde_json::Value, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/check_sse.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(script)
        .arg(url)
        .args(["--sse", "aws:kms", "--kms-key-id", KEY, "--bucket-key"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} check_sse.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("check_sse.py printed no JSON ({e}): {stdout}"));
    (out.status.success(), summary, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_encrypted(url: &str, after: &str) -> serde_json::Value {
    let (ok, summary, err) = check_sse(url);
    assert!(ok, "after {after}: objects without the SSE-KMS headers:\n{summary:#}\n{err}");
    summary
}

#[tokio::test]
async fn every_object_written_to_s3_carries_the_kms_encryption_headers() {
    let p = Project::new("sse");
    p.seed(100, 11);
    // A partition of over 5 MiB of noise: a new partition's file streams as a multipart upload (parts of 5 MiB);
    // and a date no column can hold (year 11,000): a reject file.
    let c = client().await;
    let now = bson::DateTime::now();
    let docs: Vec<bson::Document> = (0..1_600)
        .map(|i| {
            bson::doc! { "_id": i, "batch": 1, "modified_at": now, "blob": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: noise(i as u64, 4096) } }
        })
        .collect();
    coll(&c, &p.db, "blobs").insert_many(docs).await.unwrap();
    coll(&c, &p.db, "blobs")
        .insert_one(
            bson::doc! { "_id": 99_999, "modified_at": now, "when": bson::DateTime::from_millis(285_000_000_000_000) },
        )
        .await
        .unwrap();
    let mut rows: Vec<&str> = SEEDED_ROWS.to_vec();
    rows.push("{db},blobs,modified_at,batch,");
    p.write_collections(&rows);
    let bucket = unique_bucket("sse");
    let url = p.s3_env("env1", &bucket, "lake", "UTC");
    let env_file = p.path().join("environments/env1.toml");
    let toml = std::fs::read_to_string(&env_file).unwrap().replace(
        "allow_http = true\n",
        &format!(
            "allow_http = true\nserver_side_encryption = \"aws:kms\"\nsse_kms_key_id = \"{KEY}\"\nsse_bucket_key = true\n"
        ),
    );
    std::fs::write(&env_file, toml).unwrap();
    p.set_sync("env1", "upload_part_mb = 5");

    // `mongolake check` says what is sent.
    let dir = p.path().to_str().unwrap().to_string();
    let check = run_binary(&["check", "--env", "env1", "--config-dir", &dir], p.path(), &[]);
    assert!(
        check.stdout.lines().any(|l| l.starts_with("ok")
            && l.contains("lake encryption")
            && l.contains(&format!("SSE-KMS (aws:kms) with key {KEY}, S3 Bucket Key on"))),
        "{}",
        check.describe()
    );

    // A full load.
    let first = p.sync("env1", &[]);
    first.assert_ok();
    assert!(first.stdout.contains("REJECTED"), "a value was rejected: {}", first.describe());
    let full = assert_encrypted(&url, "the full load");
    for kind in ["data", "state", "schema", "index", "runs", "rejects"] {
        assert!(full["kinds"][kind].as_u64().unwrap_or(0) > 0, "no {kind} object to check: {full:#}");
    }

    // An incremental night: partition files merged and replaced (put in place: an S3 PUT replaces atomically).
    p.mutate(0.05, 11);
    // (a fresh client: the runs above blocked this runtime longer than the driver's monitor waits)
    let c = client().await;
    coll(&c, &p.db, "blobs")
        .update_many(
            bson::doc! { "_id": { "$lt": 10 } },
            bson::doc! { "$set": { "modified_at": bson::DateTime::now(), "v": 2 } },
        )
        .await
        .unwrap();
    p.sync("env1", &[]).assert_ok();
    assert_encrypted(&url, "an incremental night");

    // A run killed right after a new partition's file (a completed multipart upload, put in place) is written:
    // that file and the collection's lease (a conditional PUT) stay behind. (Before files were put in place
    // this killed the run at `staged`, leaving the upload in staging/; on S3 nothing is staged any more.)
    let more: Vec<bson::Document> = (0..1_400)
        .map(|i| {
            bson::doc! { "_id": 10_000 + i, "batch": 2, "modified_at": bson::DateTime::now(), "blob": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: noise(10_000 + i as u64, 4096) } }
        })
        .collect();
    coll(&c, &p.db, "blobs").insert_many(more).await.unwrap();
    let only = format!("{}.blobs", p.db);
    let killed = p.sync_with("env1", &["--only", &only], &[("MONGOLAKE_FAULT", "after_partition")]);
    assert_eq!(killed.code, None, "the run aborted: {}", killed.describe());
    let all = assert_encrypted(&url, "a run killed after a file was written");
    for kind in ["leases", "data"] {
        assert!(all["kinds"][kind].as_u64().unwrap_or(0) > 0, "no {kind} object to check: {all:#}");
    }
    assert!(all["multipart"].as_u64().unwrap() > 0, "no object came from a multipart upload: {all:#}");
    // And the rerun cleans up after it, still encrypted.
    p.sync("env1", &[]).assert_ok();
    assert_encrypted(&url, "the rerun");

    // The check itself sees a missing header: an object written without them is named.
    s3_put(&bucket, "control/plain.txt", b"no encryption headers").await;
    let (ok, summary, _) = check_sse(&format!("s3://{bucket}/control"));
    assert!(!ok && summary["bad"][0].as_str().unwrap().contains("control/plain.txt"), "{summary:#}");
}
