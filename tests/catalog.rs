//! The Athena/Glue table definitions (`mongolake ddl`, the files next to each schema) against the real files:
//! Spark reads every table through the DDL as printed (adapted to its dialect by `tests/py/spark_check.py`), and
//! a DDL older than a widening provably fails on the rewritten files. Needs the servers of scripts/test.sh and
//! pyspark (scripts/install-tools.sh).
mod common;

use bson::{doc, Bson, DateTime, Document};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `CREATE` statement of one table in `ddl` output (from its comment block to the `;`).
fn statement<'a>(sql: &'a str, table: &str) -> &'a str {
    let create = format!("CREATE EXTERNAL TABLE IF NOT EXISTS {table} (");
    let at = sql.find(&create).unwrap_or_else(|| panic!("no {create} in:\n{sql}"));
    let start = sql[..at].rfind("\n\n").map(|i| i + 2).unwrap_or(0);
    let end = at + sql[at..].find(";\n").expect("statement end") + 2;
    &sql[start..end]
}

/// The column list of a statement (between `(` and `)` of the CREATE).
fn columns_block(stmt: &str) -> &str {
    let start = stmt.find("` (\n").expect("column list") + 4;
    &stmt[start..start + stmt[start..].find("\n)\n").expect("column list end")]
}

fn schema_version(lake: &str, db: &str, coll: &str) -> u64 {
    let path = Path::new(lake).join("_mongolake/schema").join(db).join(format!("{coll}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str::<Value>(&text).expect("schema JSON")["version"].as_u64().expect("version")
}

fn day(d: &str) -> DateTime {
    DateTime::from_millis(iso_millis(&format!("{d}T06:00:00Z")))
}

/// A. Seeded hospital data: Spark reads all five tables through `mongolake ddl` output, every row of every file,
/// and counts what MongoDB and pyarrow count. Rows a date projection cannot show are announced in the DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_reads_every_seeded_table_through_its_ddl() {
    let p = Project::new("cat_seed");
    p.seed(300, 31);
    let client = client().await;
    let now = DateTime::from_millis(now_millis() - 60_000);
    // No creation date: partition date=__HIVE_DEFAULT_PARTITION__, which a date projection cannot show.
    coll(&client, &p.db, "patients").insert_one(doc! { "_id": "no-date", "modified_at": now }).await.unwrap();
    // No facility: facility_id=__HIVE_DEFAULT_PARTITION__, listed in the enum projection.
    coll(&client, &p.db, "pharmacy_stock").insert_one(doc! { "_id": "no-facility", "modified_at": now }).await.unwrap();
    p.write_collections(&SEEDED_ROWS);
    let lake = p.local_env("dev", "Asia/Kolkata");
    p.sync("dev", &[]).assert_ok();

    let run = ddl(&p, "dev", &[]);
    run.assert_ok();
    let sql = run.stdout.clone();
    assert_eq!(sql.matches("CREATE EXTERNAL TABLE IF NOT EXISTS").count(), 5, "{sql}");
    let file = save(&p, "all.sql", &sql);
    let spark = spark_rows(&lake, &[&file]);

    let dump = dump(&lake); // check_lake.py: one schema per table (pa.unify_schemas over every file), layout
    for name in SEEDED {
        let in_mongo = coll(&client, &p.db, name).count_documents(doc! {}).await.unwrap();
        let in_lake = rows(table(&dump, &p.db, name)).len() as u64;
        let by_spark = spark.get(&format!("{}.{name}", p.db)).copied();
        assert_eq!((by_spark, in_lake), (Some(in_mongo), in_mongo), "{name}: Spark, pyarrow vs MongoDB rows");
    }

    let patients = statement(&sql, &format!("`{}`.`patients`", p.db));
    assert!(
        patients
            .contains("-- NOT VISIBLE through the date projection: 1 row in 1 __HIVE_DEFAULT_PARTITION__ partition"),
        "{patients}"
    );
    assert!(patients.contains("  `patient_name` string COMMENT 'MongoDB field Patient Name',\n"), "{patients}");
    let stock = statement(&sql, &format!("`{}`.`pharmacy_stock`", p.db));
    let mut facilities: Vec<String> = table(&dump, &p.db, "pharmacy_stock")["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|v| v.as_str().unwrap().strip_prefix("facility_id=").expect("facility_id=...").to_string())
        .filter(|v| v != "__HIVE_DEFAULT_PARTITION__")
        .collect();
    facilities.sort();
    facilities.push("__HIVE_DEFAULT_PARTITION__".into());
    assert!(stock.contains("  'projection.facility_id.type'='enum',\n"), "{stock}");
    let values = format!("  'projection.facility_id.values'='{}'\n", facilities.join(","));
    assert!(stock.contains(&values), "expected {values} in:\n{stock}");
    assert!(!columns_block(stock).contains("`facility_id`"), "facility_id is a partition key, not a data column");
    let visits = statement(&sql, &format!("`{}`.`visits`", p.db));
    let dates: Vec<String> = table(&dump, &p.db, "visits")["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().rsplit_once("date=").unwrap().1.to_string())
        .collect();
    let earliest = dates.iter().min().unwrap();
    assert!(visits.contains(&format!("'projection.date.range'='{earliest},NOW+1DAYS'")), "{visits}");
    assert!(visits.contains(&format!("LOCATION 'file://{lake}/{}/visits/'", p.db)), "{visits}");
}

fn person(id: i32, created: &str, age: Bson) -> Document {
    doc! { "_id": id, "name": format!("p{id}"), "age": age, "created_at": day(created), "modified_at": day(created) }
}

/// B. A widening round: `age` is int64 until some documents say "42 years". Every partition file is rewritten
/// with `age` string, the schema version rises, the new DDL declares `age string` and reads the files; the DDL
/// of before fails on them, in the exact check and in Spark itself (the proof is strict and can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widening_rewrites_every_file_and_only_the_new_ddl_reads_them() {
    let p = Project::new("cat_widen");
    let client = client().await;
    let people = coll(&client, &p.db, "people");
    let days = ["2025-07-01", "2025-07-02", "2025-07-03"];
    people.insert_many((0..6).map(|i| person(i, days[i as usize % 3], Bson::Int64(20 + i as i64)))).await.unwrap();
    p.write_collections(&["{db},people,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    // The widening policy (type-stable variant columns are the default, see tests/stable_columns.rs).
    p.set_sync("dev", "type_conflicts = \"widen\"");
    p.sync("dev", &[]).assert_ok();

    let v1 = ddl(&p, "dev", &[&format!("{}.people", p.db)]);
    v1.assert_ok();
    assert!(v1.stdout.contains("  `age` bigint,\n"), "{}", v1.stdout);
    let v1_file = save(&p, "people.v1.sql", &v1.stdout);
    assert_eq!(spark_rows(&lake, &[&v1_file]).get(&format!("{}.people", p.db)), Some(&6), "v1 reads the v1 files");
    let version1 = schema_version(&lake, &p.db, "people");
    let table_dir = Path::new(&lake).join(&p.db).join("people");
    let before: BTreeMap<PathBuf, Vec<u8>> =
        files_under(&table_dir).into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect();
    assert_eq!(before.len(), 3, "{before:?}");

    // Two documents now say "42 years"; a new one keeps an integer.
    let later = DateTime::from_millis(now_millis() - 60_000);
    for id in [1, 2] {
        people
            .update_one(doc! { "_id": id }, doc! { "$set": { "age": "42 years", "modified_at": later } })
            .await
            .unwrap();
    }
    people
        .insert_one(doc! { "_id": 6, "age": 30i64, "created_at": day("2025-07-01"), "modified_at": later })
        .await
        .unwrap();
    p.sync("dev", &[]).assert_ok();

    let after: BTreeMap<PathBuf, Vec<u8>> =
        files_under(&table_dir).into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect();
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "same partitions");
    for (f, bytes) in &before {
        assert_ne!(&after[f], bytes, "{} was not rewritten", f.display());
    }
    let dump = dump(&lake); // fails if any file still holds age as int64 (one schema per table)
    let t = table(&dump, &p.db, "people");
    assert_eq!(column_type(t, "age"), "string");
    assert_eq!(rows_by_id(t)["1"]["age"], "42 years");
    let version2 = schema_version(&lake, &p.db, "people");
    assert!(version2 > version1, "schema version {version1} -> {version2}");

    let v2 = ddl(&p, "dev", &[&format!("{}.people", p.db)]);
    v2.assert_ok();
    assert!(v2.stdout.contains("  `age` string,\n") && !v2.stdout.contains("`age` bigint"), "{}", v2.stdout);
    assert!(v2.stdout.contains(&format!("lake schema version {version2}")), "{}", v2.stdout);
    let v2_file = save(&p, "people.v2.sql", &v2.stdout);
    assert_eq!(spark_rows(&lake, &[&v2_file]).get(&format!("{}.people", p.db)), Some(&7), "v2 reads every row");

    let (ok, _, err) = spark_check(&lake, &[&v1_file], &[]);
    assert!(!ok, "the exact check accepted the old DDL");
    assert!(err.contains("column `age` is string in the file but declared bigint"), "{err}");
    let (ok, _, err) = spark_check(&lake, &[&v1_file], &["--skip-arrow-check"]);
    assert!(!ok, "Spark read string files through `age bigint`");
    assert!(
        err.contains("PARQUET_COLUMN_DATA_TYPE_MISMATCH") || err.contains("SchemaColumnConvertNotSupported"),
        "Spark failed for another reason:\n{err}"
    );
    assert!(err.contains("age"), "{err}");
}

/// C. `ddl --format glue` is a Glue TableInput with the files' columns and the partition keys; names follow the
/// environment's `[catalog]` section; a collection not synced yet is said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_table_input_and_catalog_names() {
    let p = Project::new("cat_glue");
    let client = client().await;
    let facility = |i: i32| ["BLR01", "DEL02"][i as usize % 2];
    let docs: Vec<Document> = (0..4)
        .map(|i| {
            doc! {
                "_id": i, "facility_id": facility(i), "created_at": day("2025-07-01"),
                "modified_at": day(&format!("2025-07-0{}", i + 1)), "Ward Name": "w", "vitals": { "spo2": 97.5 },
                "amount": "12.50".parse::<bson::Decimal128>().unwrap(), "tags": ["a"],
            }
        })
        .collect();
    coll(&client, &p.db, "visits").insert_many(docs).await.unwrap();
    // `later` exists but holds no document yet (a listed collection missing from MongoDB fails its sync).
    client.database(&p.db).create_collection("later").await.unwrap();
    p.write_collections(&["{db},visits,modified_at,facility_id/date(modified_at),", "{db},later,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    let env_file = p.path().join("environments/dev.toml");
    let mut env = std::fs::read_to_string(&env_file).unwrap();
    env.push_str("\n[catalog]\ndatabase = \"lakehouse\"\ntable_prefix = \"raw_\"\n");
    std::fs::write(&env_file, env).unwrap();

    let before = ddl(&p, "dev", &[]);
    before.assert_ok();
    for coll_name in ["visits", "later"] {
        let line = format!("-- {}.{coll_name}: not synced yet", p.db);
        assert!(before.stdout.contains(&line), "{line} missing: {}", before.describe());
    }
    p.sync("dev", &[]).assert_ok();

    let run = ddl(&p, "dev", &[&format!("{}.visits", p.db), "--format", "glue"]);
    run.assert_ok();
    let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout));
    assert_eq!(v["Name"], "raw_visits");
    assert_eq!(v["TableType"], "EXTERNAL_TABLE");
    assert_eq!(v["Parameters"]["projection.facility_id.values"], "BLR01,DEL02");
    assert_eq!(v["Parameters"]["projection.date.range"], "2025-07-01,NOW+1DAYS");
    let keys: Vec<(&str, &str)> = v["PartitionKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["Name"].as_str().unwrap(), k["Type"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, [("facility_id", "string"), ("date", "string")]);
    let sd = &v["StorageDescriptor"];
    assert_eq!(sd["Location"], format!("file://{lake}/{}/visits/", p.db));
    assert_eq!(sd["SerdeInfo"]["SerializationLibrary"], "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe");
    let columns: BTreeMap<&str, &str> = sd["Columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["Name"].as_str().unwrap(), c["Type"].as_str().unwrap()))
        .collect();
    let dump = dump(&lake);
    let in_files: Vec<&String> = table(&dump, &p.db, "visits")["columns"].as_object().unwrap().keys().collect();
    assert_eq!(columns.keys().collect::<Vec<_>>(), in_files, "declared columns = the files' columns");
    let want = [
        ("_id", "bigint"),
        ("amount", "decimal(4,2)"),
        ("created_at", "timestamp"),
        ("modified_at", "timestamp"),
        ("tags", "array<string>"),
        ("vitals", "struct<spo2:double>"),
        ("ward_name", "string"),
    ];
    assert_eq!(columns, want.into_iter().collect::<BTreeMap<_, _>>());

    let sql = ddl(&p, "dev", &[]);
    sql.assert_ok();
    assert!(sql.stdout.contains("CREATE EXTERNAL TABLE IF NOT EXISTS `lakehouse`.`raw_visits` ("), "{}", sql.stdout);
    assert!(sql.stdout.contains(&format!("-- {}.later: not synced yet", p.db)), "{}", sql.stdout);
    let (ok, out, err) = spark_check(&lake, &[&save(&p, "visits.sql", &sql.stdout)], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("\"lakehouse.raw_visits\": {\"files\": 4, \"partitions\": 4, \"rows\": 4}"), "{out}");
}

/// D. A sync keeps the table definition next to the schema, identical to `mongolake ddl`, and rewrites it only
/// when it changes. Needs the sync to call `mongolake::catalog::publish` after saving the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_publishes_the_table_definition_next_to_the_schema() {
    let p = Project::new("cat_publish");
    let client = client().await;
    let items = coll(&client, &p.db, "items");
    items.insert_many((0..3).map(|i| person(i, "2025-07-02", Bson::Int32(i)))).await.unwrap();
    p.write_collections(&["{db},items,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();

    let dir = Path::new(&lake).join("_mongolake/schema").join(&p.db);
    let (sql_file, glue_file) = (dir.join("items.athena.sql"), dir.join("items.glue.json"));
    assert!(
        sql_file.exists(),
        "no {} after a sync: the sync must call mongolake::catalog::publish after saving the schema",
        sql_file.display()
    );
    let read = |f: &Path| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{} after a sync: {e}", f.display()));
    let name = format!("{}.items", p.db);
    let check_same = || {
        let sql = ddl(&p, "dev", &[&name]);
        sql.assert_ok();
        assert_eq!(sql.stdout, read(&sql_file) + "\n", "the lake's .athena.sql differs from `mongolake ddl`");
        let glue = ddl(&p, "dev", &[&name, "--format", "glue"]);
        glue.assert_ok();
        assert_eq!(glue.stdout, read(&glue_file), "the lake's .glue.json differs from `mongolake ddl --format glue`");
        let views = ddl(&p, "dev", &[&name, "--format", "views"]);
        views.assert_ok();
        let views_file = dir.join("items.views.sql");
        assert!(views.stdout.contains("CREATE OR REPLACE VIEW"), "{}", views.stdout);
        assert_eq!(
            views.stdout,
            read(&views_file),
            "the lake's .views.sql differs from `mongolake ddl --format views`"
        );
    };
    check_same();
    assert!(read(&sql_file).contains("'projection.date.range'='2025-07-02,NOW+1DAYS'"));
    let modified = |f: &Path| std::fs::metadata(f).unwrap().modified().unwrap();
    let stamps = (modified(&sql_file), modified(&glue_file));

    p.sync("dev", &["--full"]).assert_ok();
    assert_eq!((modified(&sql_file), modified(&glue_file)), stamps, "rewritten although nothing changed");

    // An earlier date moves the projection's start: both files follow.
    let now = DateTime::from_millis(now_millis() - 60_000);
    items.insert_one(doc! { "_id": 9, "created_at": day("2025-06-01"), "modified_at": now }).await.unwrap();
    p.sync("dev", &[]).assert_ok();
    assert!(read(&sql_file).contains("'projection.date.range'='2025-06-01,NOW+1DAYS'"), "{}", read(&sql_file));
    check_same();
}
