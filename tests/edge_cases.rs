//! Issue 3's edge cases, end to end against the real server: awkward values either land exactly, widen along
//! the documented lattice, or go to the rejects area with the document id and reason; the collection still
//! syncs, the lake stays readable, and nothing is silently lost. Needs the servers of scripts/test.sh.
//!
//! Undecodable BSON (invalid UTF-8) cannot be tested here: SecantusDB refuses to store it (InternalError,
//! "utf-8 encoding error"); the read pass's handling of it is a unit test in `sync::collection`.
mod common;

use bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128, Document};
use common::*;
use serde_json::{json, Value};
use std::path::Path;

fn dec(s: &str) -> Bson {
    Bson::Decimal128(s.parse::<Decimal128>().unwrap_or_else(|e| panic!("decimal {s}: {e:?}")))
}

fn day(d: &str) -> DateTime {
    DateTime::from_millis(iso_millis(&format!("{d}T06:00:00Z")))
}

/// Every reject line of a collection, across runs.
fn rejects(lake: &str, db: &str, coll: &str) -> Vec<Value> {
    let dir = Path::new(lake).join("_mongolake/rejects").join(db).join(coll);
    let mut out = Vec::new();
    for f in files_under(&dir) {
        let text = std::fs::read_to_string(&f).unwrap();
        out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))));
    }
    out
}

fn edge_documents() -> Vec<Document> {
    let bin = |subtype, bytes: Vec<u8>| Bson::Binary(Binary { subtype, bytes });
    vec![
        doc! {
            "_id": 1, "modified_at": day("2025-07-01"), "created_at": day("2025-07-01"),
            "dec_scale": dec("1.5"), "dec_huge": dec("1E+6000"), "dec_nan": dec("NaN"),
            "uuid4": bin(BinarySubtype::Uuid, (0u8..16).collect()),
            "uuid3": bin(BinarySubtype::UuidOld, vec![0xab; 16]),
            "md5": bin(BinarySubtype::Md5, vec![7; 16]),
            "user_bin": bin(BinarySubtype::UserDefined(0x80), vec![1, 2, 3]),
            "ts": bson::Timestamp { time: 1_700_000_000, increment: 3 },
            "old": DateTime::from_millis(iso_millis("1900-01-01T00:00:00Z")),
            "far": DateTime::from_millis(253_402_300_800_000), // 10000-01-01: beyond what Athena reads
            "f": f64::NAN,
            "empty_arr": [], "empty_doc": {}, "later_arr": [],
            "doc_or_arr": { "a": 1 },
            "nested": [[[1, 2], [3]], [[4]]],
            "Name": "A", "name": "b", "NAME": "c", "first name": "Asha", "x-ray": "ok", "ज्वर": "fever",
            "1st": "one", "date": "not the partition",
        },
        doc! {
            "_id": 2, "modified_at": day("2025-07-02"), "created_at": day("2025-07-02"),
            "dec_scale": dec("2.345"), "dec_huge": dec("-1.5E-6100"), "dec_nan": dec("-Infinity"),
            "far": DateTime::from_millis(iso_millis("2099-12-31T23:59:59.999Z")),
            "huge": DateTime::from_millis(i64::MAX),
            "f": f64::INFINITY,
            "empty_arr": [], "empty_doc": {}, "later_arr": [1, 2],
            "doc_or_arr": [{ "a": 2 }, { "b": "x" }],
        },
        doc! {
            "_id": 3, "modified_at": day("2025-07-03"),
            "created_at": DateTime::from_millis(600_000_000_000_000), // year ~20983: null partition, rejected
            "dec_scale": dec("100"), "f": f64::NEG_INFINITY, "empty_arr": [], "empty_doc": {},
        },
    ]
}

/// Decimal scales, odd exponents, UUIDs and other binaries, BSON Timestamps, dates before 1970 and after 9999,
/// NaN and infinities, empty arrays/documents, document-or-array, nested arrays and hostile field names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_values_land_exactly_or_are_rejected_with_their_id() {
    let p = Project::new("edge");
    let client = client().await;
    coll(&client, &p.db, "edge").insert_many(edge_documents()).await.unwrap();
    p.write_collections(&["{db},edge,modified_at,date(created_at),"]);
    let lake = p.local_env("dev", "UTC");
    let run = p.sync("dev", &[]);
    run.assert_ok();
    assert!(run.stdout.contains("REJECTED: 3 values"), "the report names the rejects: {}", run.describe());

    let dump = dump(&lake);
    let t = table(&dump, &p.db, "edge");
    assert_one_file_per_partition(t);
    let by_id = rows_by_id(t);
    assert_eq!(by_id.len(), 3, "every document is in the lake, rejected values or not");
    let col = |id: &str, c: &str| by_id[id][c].clone();
    let expect_type = |c: &str, ty: &str| assert_eq!(column_type(t, c), ty, "type of column `{c}`");

    expect_type("dec_scale", "decimal128(6, 3)");
    assert_eq!(
        [col("1", "dec_scale"), col("2", "dec_scale"), col("3", "dec_scale")],
        [json!("1.500"), json!("2.345"), json!("100.000")]
    );
    expect_type("dec_huge", "string");
    assert_eq!([col("1", "dec_huge"), col("2", "dec_huge")], [json!("1E+6000"), json!("-1.5E-6100")]);
    expect_type("dec_nan", "string");
    assert_eq!([col("1", "dec_nan"), col("2", "dec_nan")], [json!("NaN"), json!("-Infinity")]);
    expect_type("uuid4", "string");
    assert_eq!(col("1", "uuid4"), json!("00010203-0405-0607-0809-0a0b0c0d0e0f"));
    assert_eq!(col("1", "uuid3"), json!("abababab-abab-abab-abab-abababababab"));
    expect_type("md5", "binary");
    expect_type("user_bin", "binary");
    assert_eq!(col("1", "user_bin"), json!("AQID"));
    expect_type("ts", "struct<t: int64, i: int64>");
    assert_eq!(col("1", "ts"), json!({"t": 1_700_000_000i64, "i": 3}));
    expect_type("old", "timestamp[ms, tz=UTC]");
    assert_eq!(col("1", "old"), json!("1900-01-01T00:00:00.000Z"));
    expect_type("far", "timestamp[ms, tz=UTC]");
    assert_eq!([col("1", "far"), col("2", "far")], [Value::Null, json!("2099-12-31T23:59:59.999Z")]);
    assert!(col("2", "huge").is_null());
    expect_type("f", "double");
    assert_eq!([col("1", "f"), col("2", "f"), col("3", "f")], [json!("NaN"), json!("Infinity"), json!("-Infinity")]);
    expect_type("empty_arr", "list<element: string>");
    assert_eq!(col("3", "empty_arr"), json!([]));
    expect_type("empty_doc", "string");
    assert_eq!(col("1", "empty_doc"), json!("{}"));
    expect_type("later_arr", "list<element: int64>");
    assert_eq!([col("1", "later_arr"), col("2", "later_arr")], [json!([]), json!([1, 2])]);
    expect_type("doc_or_arr", "list<element: struct<a: int64, b: string>>");
    assert_eq!(col("1", "doc_or_arr"), json!([{"a": 1, "b": null}]));
    assert_eq!(col("2", "doc_or_arr"), json!([{"a": 2, "b": null}, {"a": null, "b": "x"}]));
    expect_type("nested", "list<element: list<element: list<element: int64>>>");
    assert_eq!(col("1", "nested"), json!([[[1, 2], [3]], [[4]]]));
    for (c, v) in [
        ("name", "A"),
        ("name_1", "b"),
        ("name_2", "c"),
        ("first_name", "Asha"),
        ("x_ray", "ok"),
        ("col", "fever"),
        ("c_1st", "one"),
        ("date_1", "not the partition"),
    ] {
        assert_eq!(col("1", c), json!(v), "column `{c}`");
    }
    // The year-20983 creation date cannot name a day: the document is in the null partition.
    let parts: Vec<String> =
        t["partitions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert!(parts.contains(&"date=__HIVE_DEFAULT_PARTITION__".to_string()), "{parts:?}");

    // Spark reads every row through the generated Athena DDL (types exactly as declared).
    let sql = ddl(&p, "dev", &[&format!("{}.edge", p.db)]);
    sql.assert_ok();
    let file = save(&p, "edge.sql", &sql.stdout);
    let counts = spark_rows(&lake, &[file.as_path()]);
    assert_eq!(counts.values().copied().collect::<Vec<u64>>(), vec![3], "{counts:?}\n{}", sql.stdout);

    // The schema maps every odd source name to its column.
    let schema = run_binary(&["schema", "--env", "dev", &format!("{}.edge", p.db)], p.path(), &[]);
    schema.assert_ok();
    for (column, source) in [("first_name", "first name"), ("col", "ज्वर"), ("date_1", "date"), ("name_2", "NAME")]
    {
        assert!(
            schema.stdout.lines().any(|l| l.split_whitespace().take(2).eq([column, source].into_iter())
                || (l.contains(column) && l.contains(source))),
            "`{column}` from `{source}` in:\n{}",
            schema.stdout
        );
    }

    // Each value that could not be stored is in the rejects area, with the document id, path and exact value.
    let mut got: Vec<(String, String, String)> = rejects(&lake, &p.db, "edge")
        .iter()
        .map(|r| {
            (r["key"].as_str().unwrap().into(), r["path"].as_str().unwrap().into(), r["value"].as_str().unwrap().into())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("1".into(), "far".into(), r#"{"$date":{"$numberLong":"253402300800000"}}"#.into()),
            ("2".into(), "huge".into(), format!(r#"{{"$date":{{"$numberLong":"{}"}}}}"#, i64::MAX)),
            ("3".into(), "created_at".into(), r#"{"$date":{"$numberLong":"600000000000000"}}"#.into()),
        ]
    );
    for r in rejects(&lake, &p.db, "edge") {
        assert!(r["reason"].as_str().unwrap().contains("9999"), "reason names the range: {r}");
    }

    // A rerun re-reads only the newest document (the overlap window): the lake is unchanged and that document's
    // reject is listed again under the new run, nothing else.
    let again = p.sync("dev", &[]);
    again.assert_ok();
    assert!(again.stdout.contains("REJECTED: 1 values"), "{}", again.describe());
    assert_same_lake(&dump, &common::dump(&lake), "rerun");
    let all = rejects(&lake, &p.db, "edge");
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().filter(|r| r["key"] == json!("3")).count(), 2);
}

/// A document with 10,000 fields becomes a 10,002-column table that pyarrow reads back; a later document with a
/// few of the fields merges into the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_with_ten_thousand_fields() {
    let p = Project::new("wide");
    let client = client().await;
    let mut wide = doc! { "_id": 1, "modified_at": day("2025-07-01") };
    for i in 0..10_000 {
        wide.insert(format!("Field {i}"), i);
    }
    let narrow = doc! { "_id": 2, "modified_at": day("2025-07-01"), "Field 9999": "text now" };
    coll(&client, &p.db, "wide").insert_many(vec![wide, narrow]).await.unwrap();
    p.write_collections(&["{db},wide,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    // (`Field 9999` widens to text: the widen policy; type-stable columns are tests/stable_columns.rs's)
    p.set_sync("dev", "type_conflicts = \"widen\"");
    p.sync("dev", &[]).assert_ok();
    let dump = dump(&lake);
    let t = table(&dump, &p.db, "wide");
    assert_eq!(t["columns"].as_object().unwrap().len(), 10_002);
    let by_id = rows_by_id(t);
    assert_eq!(by_id["1"]["field_0"], json!(0));
    assert_eq!(by_id["1"]["field_9999"], json!("9999"));
    assert_eq!(by_id["2"]["field_9999"], json!("text now"));
    assert!(by_id["2"]["field_5000"].is_null());
}

/// A document near MongoDB's 16 MB limit (one 15.5 MB string, plus a nested array of 100,000 numbers) syncs
/// intact next to small ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_near_the_16_mb_limit() {
    let p = Project::new("huge");
    let client = client().await;
    let big = "ज्वर-fever ".repeat(15_500_000 / "ज्वर-fever ".len());
    let numbers: Vec<i32> = (0..100_000).collect();
    let docs = vec![
        doc! { "_id": 1, "modified_at": day("2025-07-01"), "text": &big, "numbers": numbers },
        doc! { "_id": 2, "modified_at": day("2025-07-01"), "text": "small" },
    ];
    coll(&client, &p.db, "huge").insert_many(docs).await.unwrap();
    p.write_collections(&["{db},huge,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    p.sync("dev", &[]).assert_ok();
    let dump = dump(&lake);
    let by_id = rows_by_id(table(&dump, &p.db, "huge"));
    assert_eq!(by_id["1"]["text"].as_str().unwrap(), big);
    assert_eq!(by_id["1"]["numbers"].as_array().unwrap().len(), 100_000);
    assert_eq!(by_id["2"]["text"], json!("small"));
}

/// Issue 25.6: `_id`s of different BSON types that render alike (the integer 42 and the string "42", a binary
/// and the string of its base64, a document and the string of its JSON, ...) stay distinct rows through a first
/// load, an incremental run updating every one of them, and a reconcile deleting some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_every_type_that_render_alike_stay_distinct_rows() {
    let p = Project::new("keytypes");
    let client = client().await;
    let c = coll(&client, &p.db, "mixed");
    let uuid = Binary { subtype: BinarySubtype::Uuid, bytes: (0u8..16).collect() };
    let bin = Binary { subtype: BinarySubtype::Generic, bytes: vec![0x69, 0xb7, 0x1d] }; // base64 "abcd"
                                                                                         // (MongoDB holds 42, 42L and 42.0 as one _id: each number type gets its own value, with its string twin)
    let ids: Vec<Bson> = vec![
        Bson::Int32(42),
        Bson::String("42".into()),
        Bson::Int64(4_200_000_000),
        Bson::String("4200000000".into()),
        Bson::Double(44.5),
        Bson::String("44.5".into()),
        Bson::ObjectId(bson::oid::ObjectId::parse_str("65f1a2b3c4d5e6f708192a3b").unwrap()),
        Bson::Binary(uuid),
        Bson::Binary(bin),
        Bson::String("abcd".into()),
        Bson::Document(doc! { "a": 1 }),
        Bson::String(r#"{"a":1}"#.into()),
    ];
    let t0 = now_millis() - 3_600_000;
    let docs: Vec<Document> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| doc! { "_id": id.clone(), "n": i as i64, "status": "v1", "modified_at": DateTime::from_millis(t0) })
        .collect();
    c.insert_many(docs).await.unwrap();
    p.write_collections(&["{db},mixed,modified_at,,"]);
    let lake = p.local_env("dev", "UTC");
    let statuses = |lake: &str| -> std::collections::BTreeMap<i64, String> {
        let d = dump(lake);
        let t = table(&d, &p.db, "mixed");
        rows_by_id(t); // every _id once
        let mut out = std::collections::BTreeMap::new();
        for r in rows(t) {
            let n = r["n"].as_i64().unwrap();
            assert!(out.insert(n, r["status"].as_str().unwrap().to_string()).is_none(), "document {n} twice: {r}");
        }
        out
    };
    p.sync("dev", &[]).assert_ok();
    assert_eq!(statuses(&lake).len(), ids.len(), "one row per document after the first load");
    let d = dump(&lake);
    let t = table(&d, &p.db, "mixed");
    assert_eq!(column_type(t, "_id"), "string");
    let texts: Vec<&str> = rows(t).iter().map(|r| r["_id"].as_str().unwrap()).collect();
    for plain in ["42", "65f1a2b3c4d5e6f708192a3b", "00010203-0405-0607-0809-0a0b0c0d0e0f", "abcd", r#"{"a":1}"#] {
        assert!(texts.contains(&plain), "{plain} keeps its plain text: {texts:?}");
    }
    assert!(texts.contains(&r#"{"$number":"42"}"#), "the integer's text is tagged: {texts:?}");

    // Every document updated: each row replaced, none doubled.
    let now = now_millis();
    c.update_many(doc! {}, doc! { "$set": { "status": "v2", "modified_at": DateTime::from_millis(now) } })
        .await
        .unwrap();
    p.sync("dev", &[]).assert_ok();
    let after = statuses(&lake);
    assert!(after.len() == ids.len() && after.values().all(|s| s == "v2"), "{after:?}");

    // Deleting the integer 42 and the binary removes those rows only, not their string twins.
    c.delete_many(doc! { "_id": { "$in": [ids[0].clone(), ids[8].clone()] } }).await.unwrap();
    p.sync("dev", &["--reconcile"]).assert_ok();
    let after = statuses(&lake);
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 9, 10, 11], "{after:?}");
}
