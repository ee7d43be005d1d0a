//! Glue mode against a real Glue API (moto_server, which scripts/test.sh starts for S3 and which serves Glue on the
//! same port): the tables, partitions and views read back with boto3 match what the lake's files hold, through a
//! full load and an incremental night with a new facility, a widening and a deleted partition; the views' SQL runs,
//! transpiled by sqlglot, in DuckDB and Spark (tests/py/check_views.py) with one row per document or element; and
//! a Glue failure fails the collection before its watermark, the next run applying what was missed.
mod common;

use bson::{doc, Bson, DateTime, Document};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn py(script: &str, args: &[&str]) -> (bool, String, String) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(script);
    let out = Command::new(&python).arg(&path).args(args).output().unwrap_or_else(|e| panic!("{script}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The Glue database as boto3 reads it (tests/py/glue_dump.py).
fn glue_dump(database: &str) -> Value {
    let (ok, out, err) = py("glue_dump.py", &["--endpoint", &s3_endpoint(), "--database", database]);
    assert!(ok, "glue_dump.py failed:\n{err}");
    serde_json::from_str::<Value>(&out).expect("glue_dump JSON")["tables"].clone()
}

fn with_glue(p: &Project, env: &str, endpoint: &str) {
    let file = p.path().join("environments").join(format!("{env}.toml"));
    let mut toml = std::fs::read_to_string(&file).unwrap();
    toml.push_str(&format!("\n[catalog]\nglue = true\nglue_region = \"us-east-1\"\nglue_endpoint = \"{endpoint}\"\n"));
    std::fs::write(&file, toml).unwrap();
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// A dump's partition paths as Glue keys them (unescaped values).
fn partition_values(t: &Value) -> BTreeSet<Vec<String>> {
    t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().split('/').map(|seg| percent_decode(seg.split_once('=').unwrap().1)).collect())
        .collect()
}

fn names_types(cols: &Value) -> Vec<(String, String)> {
    cols.as_array()
        .unwrap()
        .iter()
        .map(|c| (c["Name"].as_str().unwrap().to_string(), c["Type"].as_str().unwrap().to_string()))
        .collect()
}

fn schema_dir(lake: &str, db: &str) -> PathBuf {
    Path::new(lake).join("_mongolake/schema").join(db)
}

/// Every table in Glue matches the lake: its columns are the files' (as the lake's .glue.json, which Spark checks
/// in tests/catalog.rs, declares them), its partitions are the lake's partition folders, each partition carries
/// the table's columns and its own folder, and every view of the .views.sql file exists as Athena stores views.
fn assert_glue_matches_lake(lake: &str, db: &str, glue: &Value, dump: &Value) {
    for coll in SEEDED {
        let entry = &glue[coll];
        let t = &entry["table"];
        assert_eq!(t["TableType"], "EXTERNAL_TABLE", "{coll}");
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(schema_dir(lake, db).join(format!("{coll}.glue.json"))).unwrap(),
        )
        .unwrap();
        let columns = names_types(&t["StorageDescriptor"]["Columns"]);
        assert_eq!(columns, names_types(&file["StorageDescriptor"]["Columns"]), "{coll}: Glue columns vs the files");
        let in_files: BTreeSet<&String> = table(dump, db, coll)["columns"].as_object().unwrap().keys().collect();
        assert_eq!(columns.iter().map(|(n, _)| n).collect::<BTreeSet<_>>(), in_files, "{coll}: column names");
        assert_eq!(names_types(&t["PartitionKeys"]), names_types(&file["PartitionKeys"]), "{coll}: partition keys");
        assert!(
            t["Parameters"].as_object().unwrap().keys().all(|k| !k.starts_with("projection.")),
            "{coll}: registered partitions, no projection"
        );
        let location = t["StorageDescriptor"]["Location"].as_str().unwrap();
        assert_eq!(location, format!("file://{lake}/{db}/{coll}/"));
        let parts = entry["partitions"].as_array().unwrap();
        let got: BTreeSet<Vec<String>> = parts
            .iter()
            .map(|p| p["Values"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .collect();
        assert_eq!(got, partition_values(table(dump, db, coll)), "{coll}: Glue partitions vs the lake's folders");
        let folders: BTreeSet<String> = table(dump, db, coll)["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{location}{}/", p.as_str().unwrap()))
            .collect();
        for p in parts {
            assert!(folders.contains(p["StorageDescriptor"]["Location"].as_str().unwrap()), "{coll}: {p}");
            assert_eq!(names_types(&p["StorageDescriptor"]["Columns"]), columns, "{coll}: partition columns");
        }
        // Views: one per statement of the lake's .views.sql, each a VIRTUAL_VIEW in Athena's form.
        let sql = std::fs::read_to_string(schema_dir(lake, db).join(format!("{coll}.views.sql"))).unwrap();
        let views: Vec<&str> = sql
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("CREATE OR REPLACE VIEW \"{db}\".\"")))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        assert!(views.contains(&format!("{coll}__flat").as_str()), "{coll}: {views:?}");
        for v in views {
            let t = &glue[v]["table"];
            assert_eq!(t["TableType"], "VIRTUAL_VIEW", "{v}");
            assert_eq!(t["ViewExpandedText"], "/* Presto View */", "{v}");
            assert_eq!(t["Parameters"]["presto_view"], "true", "{v}");
            let original = t["ViewOriginalText"].as_str().unwrap();
            let b64 = original.strip_prefix("/* Presto View: ").and_then(|s| s.strip_suffix(" */")).expect(original);
            use base64::Engine as _;
            let json: Value =
                serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
            assert_eq!(json["catalog"], "awsdatacatalog");
            assert_eq!(json["schema"], db);
            let body = json["originalSql"].as_str().unwrap();
            assert!(sql.contains(&format!("AS\n{body};\n")), "{v}: the catalog's SQL is the file's");
            let cols: Vec<&str> =
                json["columns"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
            assert!(
                cols.iter().all(|c| ["varchar", "bigint", "double", "boolean", "timestamp(3)"].contains(c)
                    || c.starts_with("decimal(")),
                "{v}: only scalar types: {cols:?}"
            );
        }
    }
}

fn diagnoses_in_mongo(docs: &[Document]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for d in docs {
        if let Ok(list) = d.get_array("diagnoses") {
            for (i, e) in list.iter().enumerate() {
                let e = e.as_document().expect("a diagnosis is a document");
                let s = |k: &str| e.get_str(k).map(str::to_string).unwrap_or_default();
                out.insert((id_text(d.get("_id").unwrap()), (i + 1).to_string(), s("icd10"), s("description")));
            }
        }
    }
    out
}

fn diagnoses_count(docs: &[Document]) -> usize {
    docs.iter().map(|d| d.get_array("diagnoses").map(|a| a.len()).unwrap_or(0)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_tables_partitions_and_views_follow_the_lake() {
    let p = Project::new("glue_night");
    p.seed(120, 23);
    p.write_collections(&SEEDED_ROWS);
    let lake = p.local_env("dev", "UTC");
    with_glue(&p, "dev", &s3_endpoint());
    let db = p.db.clone(); // the Glue database: the MongoDB name, already Athena-safe

    let check = run_binary(&["check", "--env", "dev", "--config-dir", p.path().to_str().unwrap()], p.path(), &[]);
    assert!(check.stdout.contains(&format!("database {db} does not exist yet")), "{}", check.describe());

    // Night 1: full load.
    let started = std::time::Instant::now();
    let night1 = p.sync("dev", &[]);
    night1.assert_ok();
    eprintln!("full load with Glue mode: {:?}", started.elapsed());
    // The report says what was applied to the catalog (and asks nobody to re-apply a file).
    let applied_line = |run: &Run, coll: &str| -> Option<String> {
        let at = run.stdout.find(&format!("{db}.{coll}"))?;
        run.stdout[at..].lines().find(|l| l.contains("Glue Data Catalog:")).map(str::to_string)
    };
    let line = applied_line(&night1, "visits").unwrap_or_else(|| panic!("no Glue line: {}", night1.stdout));
    assert!(line.contains("table created") && line.contains("added"), "{line}");
    assert!(!night1.stdout.contains("re-apply"), "{}", night1.stdout);
    let dump1 = dump(&lake);
    let glue1 = glue_dump(&db);
    assert_glue_matches_lake(&lake, &db, &glue1, &dump1);
    let check = run_binary(&["check", "--env", "dev", "--config-dir", p.path().to_str().unwrap()], p.path(), &[]);
    assert!(check.stdout.contains(&format!("database {db} is readable")), "{}", check.describe());

    // Night 2: a new facility, a stray value (vitals.pulse as text: a variant member) and a partition whose documents are deleted.
    let client = client().await;
    let visits = coll(&client, &db, "visits");
    let now = DateTime::from_millis(now_millis() - 60_000);
    let mut new_visit = all_docs(&client, &db, "visits").await[0].clone();
    new_visit.insert("_id", bson::oid::ObjectId::new());
    new_visit.insert("facility_id", "ZZZ99/new");
    new_visit.insert("created_at", now);
    new_visit.insert("modified_at", now);
    new_visit.insert("vitals", doc! { "bp": "120/80", "pulse": "not recorded" });
    new_visit.insert("diagnoses", vec![Bson::Document(doc! { "icd10": "Z00.0", "description": "New facility check" })]);
    visits.insert_one(new_visit).await.unwrap();
    let t1 = table(&dump1, &db, "visits");
    let counts: BTreeMap<String, usize> = rows(t1).iter().fold(BTreeMap::new(), |mut m, r| {
        let key = format!(
            "facility_id={}/date={}",
            r["facility_id"].as_str().unwrap_or(""),
            r["date"].as_str().unwrap_or("")
        );
        *m.entry(key).or_default() += 1;
        m
    });
    let (gone, _) =
        counts.iter().filter(|(k, _)| !k.contains("=/") && !k.ends_with('=')).min_by_key(|(_, n)| **n).unwrap();
    let (gone_fac, gone_date) = gone.strip_prefix("facility_id=").unwrap().split_once("/date=").unwrap();
    let in_gone: BTreeSet<String> = rows(t1)
        .iter()
        .filter(|r| r["facility_id"] == gone_fac && r["date"] == gone_date)
        .map(|r| r["_id"].as_str().map(str::to_string).unwrap_or_else(|| r["_id"].to_string()))
        .collect();
    let ids: Vec<Bson> = all_docs(&client, &db, "visits")
        .await
        .iter()
        .map(|d| d.get("_id").unwrap().clone())
        .filter(|id| in_gone.contains(&id_text(id)))
        .collect();
    let deleted = visits.delete_many(doc! { "_id": { "$in": ids } }).await.unwrap().deleted_count;
    assert!(deleted > 0);
    let night2 = p.sync("dev", &["--reconcile"]);
    night2.assert_ok();
    let line = applied_line(&night2, "visits").unwrap_or_else(|| panic!("no Glue line: {}", night2.stdout));
    assert!(line.contains("table updated") && line.contains("added") && line.contains("deleted"), "{line}");

    let dump2 = dump(&lake);
    let glue2 = glue_dump(&db);
    assert_glue_matches_lake(&lake, &db, &glue2, &dump2);
    let v = &glue2["visits"];
    let vitals =
        names_types(&v["table"]["StorageDescriptor"]["Columns"]).into_iter().find(|(n, _)| n == "vitals").unwrap().1;
    // (type-stable columns: `pulse` keeps its type and the text goes to the member `pulse__v_text`)
    assert!(
        vitals.contains("pulse:double") && vitals.contains("pulse__v_text:string"),
        "the variant reached Glue: {vitals}"
    );
    assert!(v["versions"].as_u64().unwrap() >= 2, "UpdateTable in place keeps versions: {}", v["versions"]);
    let values: BTreeSet<Vec<String>> = v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["Values"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .collect();
    assert!(values.iter().any(|v| v[0] == "ZZZ99/new"), "the new facility is registered: {values:?}");
    assert!(!values.contains(&vec![gone_fac.to_string(), gone_date.to_string()]), "the deleted partition is gone");
    let applied = Path::new(&lake).join("_mongolake/catalog").join(&db).join("visits.json");
    assert!(applied.exists(), "the lake records what was applied");

    // The views, run by engines mongolake does not contain.
    let dir = schema_dir(&lake, &db);
    let ddl: Vec<String> =
        SEEDED.iter().map(|c| dir.join(format!("{c}.athena.sql")).to_str().unwrap().to_string()).collect();
    let views: Vec<String> =
        SEEDED.iter().map(|c| dir.join(format!("{c}.views.sql")).to_str().unwrap().to_string()).collect();
    let child = format!("{db}.visits__diagnoses");
    let mut args: Vec<&str> = vec!["--lake", &lake, "--ddl"];
    args.extend(ddl.iter().map(String::as_str));
    args.push("--views");
    args.extend(views.iter().map(String::as_str));
    args.extend(["--dump", &child]);
    let started = std::time::Instant::now();
    let (ok, out, err) = py("check_views.py", &args);
    eprintln!("check_views.py: {:?}", started.elapsed());
    assert!(ok, "check_views.py failed:\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    for coll in SEEDED {
        let docs = coll_count(&client, &db, coll).await;
        let flat = &report["views"][format!("{db}.{coll}__flat")];
        assert_eq!(
            (flat["duckdb"].as_u64(), flat["spark"].as_u64()),
            (Some(docs), Some(docs)),
            "{coll}: one row per document"
        );
    }
    let docs = all_docs(&client, &db, "visits").await;
    let entry = &report["views"][&child];
    let n = diagnoses_count(&docs) as u64;
    assert_eq!((entry["duckdb"].as_u64(), entry["spark"].as_u64()), (Some(n), Some(n)), "one row per diagnosis");
    let got: BTreeSet<(String, String, String, String)> = report["rows"][&child]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("_id"), s("diagnoses_pos"), s("icd10"), s("description"))
        })
        .collect();
    assert_eq!(got.len() as u64, n, "rows are distinct by (_id, position)");
    assert_eq!(got, diagnoses_in_mongo(&docs), "the same values as MongoDB");
}

async fn coll_count(client: &mongodb::Client, db: &str, name: &str) -> u64 {
    coll(client, db, name).count_documents(doc! {}).await.unwrap()
}

/// A Glue outage fails the collection loudly (exit 1, the error names Glue) without moving its watermark or
/// touching the files written; the next run, with Glue back, applies the table and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glue_failure_fails_the_collection_before_its_watermark_and_the_next_run_applies_it() {
    let p = Project::new("glue_down");
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    let now = DateTime::from_millis(now_millis() - 60_000);
    items
        .insert_many((0..4).map(|i| {
            let ward = ["A", "B"][i as usize % 2];
            doc! { "_id": i, "ward": ward, "tags": ["x"], "modified_at": now }
        }))
        .await
        .unwrap();
    p.write_collections(&["{db},items,modified_at,ward,"]);
    let lake = p.local_env("dev", "UTC");
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    with_glue(&p, "dev", &dead);
    let run = p.sync("dev", &[]);
    run.assert_code(1);
    assert!(run.text().contains("Glue"), "{}", run.describe());
    let state = Path::new(&lake).join("_mongolake/state").join(&p.db).join("items.csv");
    assert!(!state.exists() || std::fs::read_to_string(&state).unwrap().lines().count() <= 1, "no watermark");
    assert_eq!(rows(table(&dump(&lake), &p.db, "items")).len(), 4, "the files are written and left alone");
    let check = run_binary(&["check", "--env", "dev", "--config-dir", p.path().to_str().unwrap()], p.path(), &[]);
    assert!(check.stdout.lines().any(|l| l.contains("FAIL") && l.contains("glue")), "{}", check.describe());

    // Glue is back.
    let file = p.path().join("environments/dev.toml");
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace(&dead, &s3_endpoint())).unwrap();
    p.sync("dev", &[]).assert_ok();
    let glue = glue_dump(&p.db);
    let parts = glue["items"]["partitions"].as_array().unwrap().len();
    assert_eq!(parts, 2, "{}", glue["items"]);
    assert_eq!(glue["items__tags"]["table"]["TableType"], "VIRTUAL_VIEW");
    assert!(watermark(&lake, &p.db, "items") > 0);
}
