//! Columns analysts can build dashboards on (issue 22): one stray value never changes a column's type nor
//! rewrites a file (it goes to a variant column beside it), a first load gives a column to the kind that holds
//! most of its values, every spelling of a field is one column, and every element of a mixed array stays an
//! element. Checked with the lake's independent reader (pyarrow, strict) and with Spark through the generated
//! DDL. Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, Bson, DateTime, Document};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn day(d: &str) -> DateTime {
    DateTime::from_millis(iso_millis(&format!("{d}T06:00:00Z")))
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir).into_iter().map(|f| (f.clone(), std::fs::read(&f).unwrap())).collect()
}

/// One bill whose `amount` (a double everywhere else) arrives as text: `amount` stays a double, the text lands
/// in `amount__v_text` (NULL in `amount`), only that bill's partition is rewritten, the report and `mongolake
/// schema` name the variant column, and Spark reads every file (old ones without the column) through the DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_value_keeps_the_column_type_and_rewrites_no_other_file() {
    let p = Project::new("stable_stray");
    let client = client().await;
    let bills = coll(&client, &p.db, "bills");
    let days = ["2025-07-01", "2025-07-02", "2025-07-03"];
    let bill = |i: i32| -> Document {
        let d = day(days[i as usize % 3]);
        doc! { "_id": i, "amount": 100.5 + f64::from(i), "created_at": d, "modified_at": d }
    };
    bills.insert_many((0..9).map(bill)).await.unwrap();
    p.write_collections(&["{db},bills,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();
    let table_dir = Path::new(&lake).join(&p.db).join("bills");
    let before = files(&table_dir);
    assert_eq!(before.len(), 3);

    let later = DateTime::from_millis(now_millis() - 60_000);
    bills
        .update_one(doc! { "_id": 4 }, doc! { "$set": { "amount": "1,250.00 (see note)", "modified_at": later } })
        .await
        .unwrap();
    let run = p.sync("dev", &[]);
    run.assert_ok();
    assert!(run.text().contains("amount__v_text"), "the report names the variant column:\n{}", run.text());

    let after = files(&table_dir);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>());
    let changed: Vec<&PathBuf> = before.keys().filter(|f| after[*f] != before[*f]).collect();
    assert_eq!(changed.len(), 1, "only the stray bill's partition is rewritten: {changed:?}");
    assert!(changed[0].to_string_lossy().contains("2025-07-02"), "{changed:?}");

    let dump = dump(&lake); // strict: one type per column across files (a file without a column is fine)
    let t = table(&dump, &p.db, "bills");
    assert_eq!(column_type(t, "amount"), "double");
    assert_eq!(column_type(t, "amount__v_text"), "string");
    let rows = rows_by_id(t);
    assert_eq!(rows["4"]["amount"], Value::Null);
    assert_eq!(rows["4"]["amount__v_text"], json!("1,250.00 (see note)"));
    assert_eq!(rows["5"]["amount"], json!(105.5));
    assert_eq!(rows.len(), 9);

    let schema = run_binary(&["schema", "--env", "dev", &format!("{}.bills", p.db)], p.path(), &[]);
    schema.assert_ok();
    assert!(schema.stdout.contains("amount__v_text"), "{}", schema.stdout);
    let ddl_run = ddl(&p, "dev", &[&format!("{}.bills", p.db)]);
    ddl_run.assert_ok();
    assert!(ddl_run.stdout.contains("`amount` double") && ddl_run.stdout.contains("`amount__v_text` string"));
    let file = save(&p, "bills.sql", &ddl_run.stdout);
    let (ok, out, err) = spark_check(&lake, &[&file], &[]);
    assert!(ok, "Spark reads old files (without the variant column) and the new one:\n{out}\n{err}");
    assert_eq!(spark_rows(&lake, &[&file]).get(&format!("{}.bills", p.db)), Some(&9));

    // Widening on purpose: the variant joins the column and the next sync rewrites every file once.
    let widen = run_binary(
        &["widen", "--env", "dev", "--collection", &format!("{}.bills", p.db), "--column", "amount"],
        p.path(),
        &[],
    );
    widen.assert_ok();
    assert!(widen.stdout.contains("double -> string"), "{}", widen.stdout);
    let wrong = run_binary(
        &["widen", "--env", "dev", "--collection", &format!("{}.bills", p.db), "--column", "amount"],
        p.path(),
        &[],
    );
    assert_eq!(wrong.code, Some(2), "nothing left to widen: {}", wrong.describe());
    p.sync("dev", &[]).assert_ok();
    let rewritten = files(&table_dir);
    assert!(rewritten.iter().all(|(f, b)| after[f] != *b), "every file rewritten once");
    let dump = common::dump(&lake);
    let t = table(&dump, &p.db, "bills");
    assert_eq!(column_type(t, "amount"), "string");
    assert!(t["columns"].get("amount__v_text").is_none(), "{}", t["columns"]);
    assert_eq!(rows_by_id(t)["4"]["amount"], json!("1,250.00 (see note)"));
    assert_eq!(rows_by_id(t)["5"]["amount"], json!("105.5"));
    p.sync("dev", &[]).assert_ok();
    assert_eq!(files(&table_dir), rewritten, "once: the next night rewrites nothing");
}

/// A first load of messy patients: `age` an integer in 90% of documents and text in the rest, `address` a
/// document in most and a string in one, names spelt `Patient Name` and `patient_name` (one document holding
/// both, with different values), `diagnoses` strings in older documents and documents in newer ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_gives_each_column_to_its_majority_kind_and_one_column_per_spelling() {
    let p = Project::new("stable_first");
    let client = client().await;
    let patients = coll(&client, &p.db, "patients");
    let d = day("2025-07-01");
    let mut docs: Vec<Document> = Vec::new();
    for i in 0..20i32 {
        let mut doc = doc! { "_id": i, "created_at": d, "modified_at": d };
        doc.insert("age", if i % 10 == 3 { Bson::String("42".into()) } else { Bson::Int64(30 + i64::from(i)) });
        doc.insert(
            "address",
            if i == 7 { Bson::String("12 MG Road".into()) } else { Bson::Document(doc! { "city": format!("C{i}") }) },
        );
        doc.insert(if i % 2 == 0 { "Patient Name" } else { "patient_name" }, format!("n{i}"));
        let diagnoses =
            if i < 10 { bson::bson!(["fever", "cough"]) } else { bson::bson!([{ "code": "J10" }, "headache"]) };
        doc.insert("diagnoses", diagnoses);
        docs.push(doc);
    }
    docs[19].insert("Patient Name", "Ravi Kumar"); // this one also has `patient_name` n19
    patients.insert_many(docs.clone()).await.unwrap();
    p.write_collections(&["{db},patients,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();

    let dump = dump(&lake);
    let t = table(&dump, &p.db, "patients");
    let cols: Vec<&String> = t["columns"].as_object().unwrap().keys().collect();
    assert_eq!(column_type(t, "age"), "int64", "{cols:?}");
    assert_eq!(column_type(t, "age__v_text"), "string");
    assert!(column_type(t, "address").starts_with("struct<city"), "{}", column_type(t, "address"));
    assert_eq!(column_type(t, "address__v_text"), "string");
    assert_eq!(column_type(t, "patient_name"), "string");
    assert_eq!(column_type(t, "patient_name_1"), "string", "the second spelling of the one document with both");
    assert!(column_type(t, "diagnoses").starts_with("list<element: struct<"), "{}", column_type(t, "diagnoses"));
    let rows = rows_by_id(t);
    assert_eq!((&rows["3"]["age"], &rows["3"]["age__v_text"]), (&Value::Null, &json!("42")));
    assert_eq!(rows["4"]["age"], json!(34));
    assert_eq!(rows["7"]["address__v_text"], json!("12 MG Road"));
    assert_eq!(rows["8"]["address"]["city"], json!("C8"));
    for i in 0..19 {
        assert_eq!(rows[&i.to_string()]["patient_name"], json!(format!("n{i}")), "one column for both spellings");
    }
    assert_eq!((&rows["19"]["patient_name"], &rows["19"]["patient_name_1"]), (&json!("n19"), &json!("Ravi Kumar")));
    // Every element stays an element: strings in `__v_text`, documents in their members.
    let elements = |id: &str| -> Vec<(Value, Value)> {
        rows[id]["diagnoses"].as_array().unwrap().iter().map(|e| (e["__v_text"].clone(), e["code"].clone())).collect()
    };
    assert_eq!(elements("1"), vec![(json!("fever"), Value::Null), (json!("cough"), Value::Null)]);
    assert_eq!(elements("12"), vec![(Value::Null, json!("J10")), (json!("headache"), Value::Null)]);

    let ddl_run = ddl(&p, "dev", &[&format!("{}.patients", p.db)]);
    ddl_run.assert_ok();
    let file = save(&p, "patients.sql", &ddl_run.stdout);
    let (ok, out, err) = spark_check(&lake, &[&file], &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(spark_rows(&lake, &[&file]).get(&format!("{}.patients", p.db)), Some(&20));
}

/// `[sync] type_conflicts = "widen"` keeps the behaviour of before: the column widens to text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widen_policy_widens_and_is_kept_by_the_schema() {
    let p = Project::new("stable_widen");
    let client = client().await;
    let people = coll(&client, &p.db, "people");
    let d = day("2025-07-01");
    people
        .insert_many((0..4).map(|i| doc! { "_id": i, "age": i64::from(i), "created_at": d, "modified_at": d }))
        .await
        .unwrap();
    p.write_collections(&["{db},people,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.set_sync("dev", "type_conflicts = \"widen\"");
    p.sync("dev", &[]).assert_ok();
    let later = DateTime::from_millis(now_millis() - 60_000);
    people.update_one(doc! { "_id": 1 }, doc! { "$set": { "age": "42 years", "modified_at": later } }).await.unwrap();
    // The schema keeps its policy even when the environment's default is back to `variant`.
    p.write_env(
        "dev",
        &std::fs::read_to_string(p.path().join("environments/dev.toml"))
            .unwrap()
            .replace("type_conflicts = \"widen\"\n", ""),
    );
    p.sync("dev", &[]).assert_ok();
    let dump = dump(&lake);
    let t = table(&dump, &p.db, "people");
    assert_eq!(column_type(t, "age"), "string");
    assert!(t["columns"].get("age__v_text").is_none(), "{}", t["columns"]);
    assert_eq!(rows_by_id(t)["1"]["age"], json!("42 years"));
}

/// A stray value inside a struct (`vitals.bp`, text in one visit) adds a member beside it, `bp` keeping its
/// type; a struct that gains a member rewrites every file (not every engine reads a struct lacking a member), and
/// Spark reads them all through the DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_nested_value_adds_a_member_beside_it() {
    let p = Project::new("stable_nested");
    let client = client().await;
    let visits = coll(&client, &p.db, "visits");
    let days = ["2025-07-01", "2025-07-02"];
    let visit = |i: i32| -> Document {
        let d = day(days[i as usize % 2]);
        doc! { "_id": i, "vitals": { "bp": 120 + i, "spo2": 97.5 }, "created_at": d, "modified_at": d }
    };
    visits.insert_many((0..6).map(visit)).await.unwrap();
    p.write_collections(&["{db},visits,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();
    let table_dir = Path::new(&lake).join(&p.db).join("visits");
    let before = files(&table_dir);
    let later = DateTime::from_millis(now_millis() - 60_000);
    visits
        .update_one(doc! { "_id": 3 }, doc! { "$set": { "vitals.bp": "120/80", "modified_at": later } })
        .await
        .unwrap();
    p.sync("dev", &[]).assert_ok();
    let after = files(&table_dir);
    assert!(before.iter().all(|(f, b)| after[f] != *b), "every file gets the member");
    let dump = dump(&lake); // strict: every file has the same struct
    let t = table(&dump, &p.db, "visits");
    let rows = rows_by_id(t);
    assert_eq!((&rows["3"]["vitals"]["bp"], &rows["3"]["vitals"]["bp__v_text"]), (&Value::Null, &json!("120/80")));
    assert_eq!(rows["2"]["vitals"]["bp"], json!(122));
    let ddl_run = ddl(&p, "dev", &[&format!("{}.visits", p.db)]);
    ddl_run.assert_ok();
    let file = save(&p, "visits.sql", &ddl_run.stdout);
    let (ok, out, err) = spark_check(&lake, &[&file], &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(spark_rows(&lake, &[&file]).get(&format!("{}.visits", p.db)), Some(&6));
}
