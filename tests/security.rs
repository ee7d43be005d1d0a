//! Issue 7 end to end: masking on first touch, a read-only SCRAM-SHA-256 user over TLS with a private CA, and
//! clear failures when credentials or trust are wrong. Needs the servers of scripts/test.sh (including the
//! `mongosecure` server: --auth and TLS).
mod common;

use bson::{doc, DateTime, Document};
use common::*;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use std::path::Path;

const HMAC_KEY: &str = "test-hmac-key-0123456789";

fn hmac_hex(text: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn day(d: &str) -> DateTime {
    DateTime::from_millis(iso_millis(&format!("{d}T06:00:00Z")))
}

/// Every byte of every non-Parquet file under `dir` (JSON, CSV, JSONL, SQL), as text.
fn text_files(dir: &Path) -> String {
    files_under(dir)
        .into_iter()
        .filter(|f| f.extension().is_none_or(|e| e != "parquet"))
        .map(|f| String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned())
        .collect()
}

/// Identifiers are masked before anything is written: hashed ids are keyed and stable (they join across
/// collections), redacted and dropped values appear nowhere (files, rejects, reports, logs), dates are truncated,
/// and the report counts what each rule masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_rules_apply_before_anything_is_written() {
    let p = Project::new("mask");
    let client = client().await;
    let patients: Vec<Document> = (0..20)
        .map(|i| {
            doc! {
                "_id": i, "modified_at": day("2025-07-01"), "created_at": day("2025-07-01"),
                "mrn": format!("MRN-{i:04}"), "name": format!("Patient Secretname{i}"), "phone": format!("+91-98450-{i:05}"),
                "dob": DateTime::from_millis(iso_millis("1990-08-17T00:00:00Z")), "notes": format!("confidential note {i}"),
                "address": { "city": "Bengaluru", "pin": format!("5600{i:02}") },
                // A value the lake cannot store: its reject must carry no masked field.
                "followup": DateTime::from_millis(300_000_000_000_000),
            }
        })
        .collect();
    coll(&client, &p.db, "patients").insert_many(patients).await.unwrap();
    let visits: Vec<Document> = (0..20)
        .map(|i| doc! { "_id": 100 + i, "modified_at": day("2025-07-02"), "patient_mrn": format!("MRN-{i:04}"), "ward": i % 3 })
        .collect();
    coll(&client, &p.db, "visits").insert_many(visits).await.unwrap();
    p.write_collections_text(&format!(
        "database,collection,timestamp_column,partition_by,key,mask\n\
         {db},patients,modified_at,date(created_at),,\"mrn=hash;name=hash;phone=redact;dob=truncate_date:year;notes=drop;address.pin=redact\"\n\
         {db},visits,modified_at,,,patient_mrn=hash\n",
        db = p.db
    ));
    let lake = p.local_env("dev", "UTC");
    let env_file = p.path().join("environments/dev.toml");
    let toml = std::fs::read_to_string(&env_file).unwrap() + "\n[masking]\nhmac_key = { env = \"TEST_HMAC_KEY\" }\n";
    std::fs::write(&env_file, toml).unwrap();
    let run = p.sync_with("dev", &[], &[("TEST_HMAC_KEY", HMAC_KEY), ("MONGOLAKE_LOG", "debug")]);
    run.assert_ok();

    let dump = dump(&lake);
    let pt = table(&dump, &p.db, "patients");
    let by_id = rows_by_id(pt);
    let r = by_id["7"];
    assert_eq!(r["mrn"], Value::String(hmac_hex("MRN-0007")));
    assert_eq!(r["name"], Value::String(hmac_hex("Patient Secretname7")));
    assert_eq!(r["phone"], "REDACTED");
    assert_eq!(r["dob"], "1990-01-01T00:00:00.000Z");
    assert_eq!(r["address"]["pin"], "REDACTED");
    assert_eq!(r["address"]["city"], "Bengaluru");
    assert!(pt["columns"].get("notes").is_none(), "a dropped field has no column: {}", pt["columns"]);
    // Hashed ids join across collections.
    let visits = rows_by_id(table(&dump, &p.db, "visits"));
    assert_eq!(visits["107"]["patient_mrn"], r["mrn"]);

    // Nothing identifying anywhere: decoded rows, text files of the lake (rejects, reports, schema, DDL,
    // state), and the run's output with debug logging.
    let everything = format!("{dump}{}{}{}", text_files(Path::new(&lake)), run.stdout, run.stderr);
    for secret in ["Secretname", "98450", "confidential", "560007", "MRN-0007", "1990-08-17"] {
        assert!(!everything.contains(secret), "`{secret}` leaked into the lake or the logs");
    }
    let rejects = text_files(&Path::new(&lake).join("_mongolake/rejects"));
    assert_eq!(rejects.lines().count(), 20, "the far follow-up dates are rejected (masked documents): {rejects}");

    // The run report counts masked values per rule.
    let report_file = files_under(&Path::new(&lake).join("_mongolake/runs")).pop().unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(report_file).unwrap()).unwrap();
    let masked =
        &report["collections"].as_array().unwrap().iter().find(|c| c["name"] == format!("{}.patients", p.db)).unwrap()
            ["masked"];
    assert_eq!(masked, &serde_json::json!({"dropped": 20, "hashed": 40, "truncated": 20, "redacted": 40}));
}

/// `hash` rules without the HMAC key: that collection fails with the fix named, before reading a document;
/// the others sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_rule_without_its_key_fails_only_that_collection() {
    let p = Project::new("masknokey");
    let client = client().await;
    coll(&client, &p.db, "secret")
        .insert_one(doc! { "_id": 1, "modified_at": day("2025-07-01"), "n": "x" })
        .await
        .unwrap();
    coll(&client, &p.db, "plain")
        .insert_one(doc! { "_id": 1, "modified_at": day("2025-07-01"), "n": "x" })
        .await
        .unwrap();
    p.write_collections_text(&format!(
        "database,collection,timestamp_column,partition_by,key,mask\n{db},secret,modified_at,,,n=hash\n{db},plain,modified_at,,,\n",
        db = p.db
    ));
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_code(1);
    assert!(run.stdout.contains("[masking]") && run.stdout.contains("hmac_key"), "{}", run.describe());
    assert!(!Path::new(&lake).join(&p.db).join("secret").exists(), "nothing of the masked collection was written");
    assert!(Path::new(&lake).join(&p.db).join("plain").exists());
}

/// Creates (once) the secure server's admin through the localhost exception, and returns an admin client.
async fn secure_admin() -> mongodb::Client {
    let host = std::env::var("MONGOLAKE_TEST_SECURE_MONGO_HOST").expect("run under scripts/test.sh (secure server)");
    let ca = std::env::var("MONGOLAKE_TEST_TLS_CA").unwrap();
    let pw = std::env::var("MONGOLAKE_TEST_SECURE_MONGO_ADMIN_PASSWORD").unwrap();
    let client_pem = std::env::var("MONGOLAKE_TEST_TLS_CLIENT_PEM").unwrap();
    let tls = format!(
        "directConnection=true&tls=true&tlsCAFile={ca}&tlsCertificateKeyFile={client_pem}&serverSelectionTimeoutMS=5000"
    );
    let anon = mongodb::Client::with_uri_str(format!("mongodb://{host}/?{tls}")).await.unwrap();
    // Fails harmlessly once an admin exists (another test created it).
    let _ = anon.database("admin").run_command(doc! { "createUser": "admin", "pwd": &pw, "roles": ["root"] }).await;
    mongodb::Client::with_uri_str(format!("mongodb://admin:{pw}@{host}/?{tls}&authSource=admin")).await.unwrap()
}

/// An environment on the secure server: TLS trusting the test CA (`with_ca`) and presenting the client
/// certificate (`with_client_cert`).
fn secure_env(p: &Project, name: &str, with_ca: bool, with_client_cert: bool) -> String {
    let host = std::env::var("MONGOLAKE_TEST_SECURE_MONGO_HOST").unwrap();
    let lake = p.path().join(format!("lake-{name}")).to_str().unwrap().to_string();
    let mut ca = "tls = true\n".to_string();
    if with_ca {
        ca.push_str(&format!("tls_ca_file = \"{}\"\n", std::env::var("MONGOLAKE_TEST_TLS_CA").unwrap()));
    }
    if with_client_cert {
        let pem = std::env::var("MONGOLAKE_TEST_TLS_CLIENT_PEM").unwrap();
        ca.push_str(&format!("tls_certificate_key_file = \"{pem}\"\n"));
    }
    p.write_env(
        name,
        &format!(
            "[mongodb]\nuri = \"mongodb://{host}/?directConnection=true\"\nusername = {{ env = \"TEST_MONGO_USER\" }}\n\
             password = {{ env = \"TEST_MONGO_PASSWORD\" }}\nauth_source = \"admin\"\nconnect_timeout_seconds = 5\n{ca}\n\
             [lake]\nurl = \"{lake}\"\n\n[sync]\ntimezone = \"UTC\"\n"
        ),
    );
    lake
}

/// The documented least privilege: a user with only the `read` role on the database, over mutual TLS (the server
/// verified with a private CA, mongolake presenting a client certificate), syncs; a wrong password, a missing
/// client certificate and a server certificate nobody vouches for fail clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_scram_user_over_tls_is_enough() {
    let admin = secure_admin().await;
    let p = Project::new("readonly");
    let user = format!("reader_{}", p.db);
    let password = "reader-pw-0d9f8a7b";
    admin
        .database("admin")
        .run_command(doc! { "createUser": &user, "pwd": password, "roles": [{ "role": "read", "db": &p.db }] })
        .await
        .unwrap();
    let docs: Vec<Document> = (0..50).map(|i| doc! { "_id": i, "modified_at": day("2025-07-01"), "v": i }).collect();
    admin.database(&p.db).collection::<Document>("notes").insert_many(docs).await.unwrap();
    p.write_collections(&["{db},notes,modified_at,,"]);

    let lake = secure_env(&p, "sec", true, true);
    let creds = [("TEST_MONGO_USER", user.as_str()), ("TEST_MONGO_PASSWORD", password)];
    p.sync_with("sec", &[], &creds).assert_ok();
    assert_eq!(rows(table(&dump(&lake), &p.db, "notes")).len(), 50);
    // The same user cannot write: the role really is read-only.
    let ca = std::env::var("MONGOLAKE_TEST_TLS_CA").unwrap();
    let host = std::env::var("MONGOLAKE_TEST_SECURE_MONGO_HOST").unwrap();
    let pem = std::env::var("MONGOLAKE_TEST_TLS_CLIENT_PEM").unwrap();
    let reader = mongodb::Client::with_uri_str(format!(
        "mongodb://{user}:{password}@{host}/?directConnection=true&tls=true&tlsCAFile={ca}&tlsCertificateKeyFile={pem}&authSource=admin"
    ))
    .await
    .unwrap();
    let denied = reader.database(&p.db).collection::<Document>("notes").insert_one(doc! { "x": 1 }).await;
    assert!(denied.is_err(), "the read role allowed a write");

    let wrong =
        p.sync_with("sec", &[], &[("TEST_MONGO_USER", user.as_str()), ("TEST_MONGO_PASSWORD", "not-the-password")]);
    wrong.assert_code(2);
    assert!(wrong.text().to_lowercase().contains("auth"), "the failure names authentication: {}", wrong.describe());
    assert!(!wrong.text().contains("not-the-password"), "the password was echoed");

    // The server requires a client certificate (mutual TLS): without it, no connection.
    secure_env(&p, "nocert", true, false);
    let nocert = p.sync_with("nocert", &[], &creds);
    nocert.assert_code(2);
    assert!(!nocert.text().contains(password), "the password was echoed");

    secure_env(&p, "untrusted", false, true);
    let untrusted = p.sync_with("untrusted", &[], &creds);
    untrusted.assert_code(2);
    assert!(
        untrusted.text().to_lowercase().contains("certificate"),
        "the failure names the certificate: {}",
        untrusted.describe()
    );
}
