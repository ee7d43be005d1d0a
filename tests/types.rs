//! BSON type mapping and schema harmonisation, checked through the independent lake reader.
//! Needs the servers of scripts/test.sh.
mod common;

use bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use common::*;
use serde_json::{json, Value};

fn base(id: i32, day: &str) -> Document {
    doc! {
        "_id": id,
        "modified_at": DateTime::from_millis(iso_millis(&format!("{day}T06:00:00Z"))),
    }
}

/// 3. One collection holding every BSON type: the sync succeeds and each value arrives as the mapping says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bson_type_maps_as_documented() {
    let p = Project::new("bsontypes");
    let oid = ObjectId::parse_str("65f1a2b3c4d5e6f708192a3b").unwrap();
    let uuid: Vec<u8> = (0u8..16).collect();
    let mut full = base(1, "2025-07-01");
    full.extend(doc! {
        "double": 1.5f64,
        "string": "héllo ज्वर",
        "doc": { "a": 1i32, "b": "x" },
        "array": [1i32, 2i32, 3i32],
        "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, 255] },
        "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: uuid },
        "oid": oid,
        "flag": true,
        "when": DateTime::from_millis(iso_millis("2025-07-01T18:30:00.250Z")),
        "old_date": DateTime::from_millis(iso_millis("1950-06-15T10:20:30.123Z")),
        "nothing": Bson::Null,
        "re": Bson::RegularExpression(bson::Regex {
            pattern: "^ab+c".to_string().try_into().unwrap(),
            options: "i".to_string().try_into().unwrap(),
        }),
        "i32": 42i32,
        "ts": bson::Timestamp { time: 1_700_000_000, increment: 7 },
        "i64": 9_007_199_254_740_993i64,
        "dec": "1234.50".parse::<bson::Decimal128>().unwrap(),
        "min": Bson::MinKey,
        "max": Bson::MaxKey,
        "code": Bson::JavaScriptCode("function () { return 1; }".into()),
        "Patient Name": "Asha",
    });
    // A second document where every field is missing or null, and a negative decimal.
    let mut sparse = base(2, "2025-07-02");
    sparse.extend(doc! { "dec": "-0.05".parse::<bson::Decimal128>().unwrap(), "double": Bson::Null });
    let client = client().await;
    coll(&client, &p.db, "all_types").insert_many(vec![full, sparse]).await.unwrap();
    p.write_collections(&["{db},all_types,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();

    let dump = dump(&lake);
    let t = table(&dump, &p.db, "all_types");
    assert_one_file_per_partition(t);
    let by_id = rows_by_id(t);
    let (r, s) = (by_id["1"], by_id["2"]);
    let expect = |col: &str, ty: &str, value: Value| {
        assert_eq!(column_type(t, col), ty, "type of column `{col}`");
        assert_eq!(r[col], value, "value of column `{col}` in {r}");
    };
    expect("double", "double", json!(1.5));
    expect("string", "string", json!("héllo ज्वर"));
    expect("doc", "struct<a: int64, b: string>", json!({"a": 1, "b": "x"}));
    expect("array", "list<element: int64>", json!([1, 2, 3]));
    expect("bin", "binary", json!("AAEC/w=="));
    expect("uuid", "string", json!("00010203-0405-0607-0809-0a0b0c0d0e0f"));
    expect("oid", "string", json!("65f1a2b3c4d5e6f708192a3b"));
    expect("flag", "bool", json!(true));
    expect("when", "timestamp[ms, tz=UTC]", json!("2025-07-01T18:30:00.250Z"));
    expect("old_date", "timestamp[ms, tz=UTC]", json!("1950-06-15T10:20:30.123Z"));
    expect("re", "struct<pattern: string, options: string>", json!({"pattern": "^ab+c", "options": "i"}));
    expect("i32", "int64", json!(42));
    expect("ts", "struct<t: int64, i: int64>", json!({"t": 1_700_000_000i64, "i": 7}));
    expect("i64", "int64", json!(9_007_199_254_740_993i64));
    expect("dec", "decimal128(6, 2)", json!("1234.50"));
    expect("patient_name", "string", json!("Asha"));
    assert_eq!(s["dec"], json!("-0.05"), "{s}");
    assert!(r["nothing"].is_null(), "{r}");
    for (col, needle) in [("min", "minkey"), ("max", "maxkey"), ("code", "return 1")] {
        assert_eq!(column_type(t, col), "string", "type of column `{col}`");
        let text = r[col].as_str().unwrap_or_else(|| panic!("`{col}` is not text: {r}"));
        assert!(text.to_lowercase().contains(needle), "`{col}` = {text:?}");
    }
    assert!(t["columns"].get("Patient Name").is_none(), "unsanitised column name: {}", t["columns"]);
    assert_eq!(column_type(t, "modified_at"), "timestamp[ms, tz=UTC]");
    // Nothing of the sparse document became a value, nothing of the full one became null.
    for (col, v) in r.as_object().unwrap() {
        if col != "nothing" {
            assert!(!v.is_null(), "column `{col}` of document 1 is null: {r}");
        }
        if !["_id", "modified_at", "dec", "date"].contains(&col.as_str()) {
            assert!(s[col].is_null(), "column `{col}` of document 2 should be null: {s}");
        }
    }
}

/// One harmonisation rule: `first` and `second` are the values of field `x` in two documents. They are synced
/// together (collection `once`) and in two runs, the second widening the first's partition file (`twice`).
/// Both must give `ty` for column `x` and `values` for documents 1 and 2 (under `type_conflicts = "widen"`).
async fn harmonise(name: &str, first: Bson, second: Bson, ty: &str, values: [Value; 2]) {
    let p = Project::new(name);
    let client = client().await;
    let mut d1 = base(1, "2025-07-01");
    d1.insert("x", first);
    let mut d2 = base(2, "2025-07-02");
    d2.insert("x", second);
    coll(&client, &p.db, "once").insert_many(vec![d1.clone(), d2.clone()]).await.unwrap();
    coll(&client, &p.db, "twice").insert_one(d1).await.unwrap();
    p.write_collections(&["{db},once,modified_at,,", "{db},twice,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    // The lattice itself: the widen policy (type-stable columns, the default, are tests/stable_columns.rs's).
    p.set_sync("dev", "type_conflicts = \"widen\"");
    p.sync("dev", &[]).assert_ok();
    d2.insert("modified_at", DateTime::from_millis(now_millis()));
    coll(&client, &p.db, "twice").insert_one(d2).await.unwrap();
    p.sync("dev", &["--only", &format!("{}.twice", p.db)]).assert_ok();

    let dump = dump(&lake); // fails when the two files of `twice` disagree on a column type
    for table_name in ["once", "twice"] {
        let t = table(&dump, &p.db, table_name);
        assert_eq!(t["files"], 2, "{table_name}: {}", t["partitions"]);
        assert_eq!(column_type(t, "x"), ty, "{table_name}: type of x");
        let by_id = rows_by_id(t);
        assert_eq!([by_id["1"]["x"].clone(), by_id["2"]["x"].clone()], values, "{table_name}: values of x");
    }
}

/// 4a. int32 with int64 -> int64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_int32_and_int64() {
    harmonise("h_int", Bson::Int32(5), Bson::Int64(5_000_000_000), "int64", [json!(5), json!(5_000_000_000i64)]).await;
}

/// 4b. int with double -> double.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_int_and_double() {
    harmonise("h_dbl", Bson::Int32(3), Bson::Double(2.5), "double", [json!(3.0), json!(2.5)]).await;
}

/// 4c. int with string -> string ("42" and "42 years").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_int_and_string() {
    harmonise("h_str", Bson::Int32(42), Bson::String("42 years".into()), "string", [json!("42"), json!("42 years")])
        .await;
}

/// 4d. a scalar with an array of the same -> array; the lone value becomes a 1-element array.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_scalar_and_array() {
    let arr = Bson::Array(vec!["b".into(), "c".into()]);
    harmonise("h_arr", Bson::String("a".into()), arr, "list<element: string>", [json!(["a"]), json!(["b", "c"])]).await;
}

/// 4e. array of strings with array of documents -> array of strings, documents as compact JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_string_array_and_document_array() {
    let strings = Bson::Array(vec!["penicillin".into()]);
    // Keys in alphabetical order: the text is compact JSON, whose key order JSON leaves open.
    let docs = Bson::Array(vec![Bson::Document(doc! { "severity": 2i32, "substance": "dust" })]);
    harmonise(
        "h_arrdoc",
        strings,
        docs,
        "list<element: string>",
        [json!(["penicillin"]), json!([r#"{"severity":2,"substance":"dust"}"#])],
    )
    .await;
}

/// 4f. document with document -> struct with the union of the fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_document_and_document() {
    harmonise(
        "h_struct",
        Bson::Document(doc! { "a": 1i32 }),
        Bson::Document(doc! { "b": "x" }),
        "struct<a: int64, b: string>",
        [json!({"a": 1, "b": null}), json!({"a": null, "b": "x"})],
    )
    .await;
}

/// 4g. document with number -> string (the document as JSON text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmonise_document_and_number() {
    harmonise(
        "h_docnum",
        Bson::Document(doc! { "a": 1i32 }),
        Bson::Int32(3),
        "string",
        [json!(r#"{"a":1}"#), json!("3")],
    )
    .await;
}

/// Issue 25.2: a timestamp column stored as a BSON Timestamp (`$currentDate: {$type: "timestamp"}`) drives
/// incremental runs like the other representations: the column is a timestamp, the watermark its seconds, and
/// later updates and inserts are read by the next run (and nothing else is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bson_timestamp_column_drives_incremental_runs() {
    let p = Project::new("bsonts");
    let client = client().await;
    let c = coll(&client, &p.db, "events");
    let old = (now_millis() / 1000 - 86_400) as u32;
    let docs: Vec<Document> = (1..=5)
        .map(|i| doc! { "_id": i, "status": "v1", "modified_at": bson::Timestamp { time: old + 1000 * i as u32, increment: 1 } })
        .collect();
    c.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},events,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();
    assert_eq!(watermark(&lake, &p.db, "events"), (old as i64 + 5000) * 1000, "the newest Timestamp's seconds");
    let t = dump(&lake);
    assert_eq!(column_type(table(&t, &p.db, "events"), "modified_at"), "timestamp[ms, tz=UTC]");

    // What `$currentDate: {$type: "timestamp"}` writes (the server's clock), and an insert stamped the same way.
    let set = doc! { "$set": { "status": "v2" }, "$currentDate": { "modified_at": { "$type": "timestamp" } } };
    c.update_one(doc! { "_id": 2 }, set).await.unwrap();
    c.insert_one(doc! { "_id": 6, "status": "new", "modified_at": bson::Timestamp { time: (now_millis() / 1000) as u32, increment: 3 } })
        .await
        .unwrap();
    let run = p.sync("dev", &[]);
    run.assert_ok();
    let by_id = |lake: &str| -> std::collections::BTreeMap<String, String> {
        let d = dump(lake);
        rows_by_id(table(&d, &p.db, "events"))
            .into_iter()
            .map(|(k, r)| (k, r["status"].as_str().unwrap().to_string()))
            .collect()
    };
    let got = by_id(&lake);
    assert_eq!((got["2"].as_str(), got["6"].as_str(), got["1"].as_str(), got.len()), ("v2", "new", "v1", 6), "{got:?}");
    let line = run.stdout.lines().find(|l| l.contains(".events")).unwrap().to_string();
    let read: u64 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(read, 3, "the two changed documents and the one inside the overlap are read: {line}");
}
