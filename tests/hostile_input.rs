//! Hostile and broken input never crashes the job (issue 7): property tests (proptest) feed the collections.csv
//! and environment TOML parsers arbitrary and mutated text, and the BSON -> Arrow -> Parquet path arbitrary
//! documents (random types, duplicate field names, deep nesting, invalid UTF-8, corrupted bytes). Every case
//! must end in a value or a clear error, never a panic. Pure library code: no servers needed.
use bson::{RawBson, RawBsonRef, RawDocument, RawDocumentBuf};
use mongolake::config::CollectionsFile;
use mongolake::config::Environment;
use mongolake::mask::{self, MaskCounts, MaskRules};
use mongolake::schema::arrow::ColumnBuilder;
use mongolake::schema::LakeType;
use mongolake::sync::read::observe_document;
use proptest::prelude::*;
use std::path::Path;

const VALID_CSV: &str = "database,collection,timestamp_column,partition_by,key,mask\n\
                         hims,visits,modified_at,facility_id/date(created_at),,name=hash;phone=redact\n";
const VALID_TOML: &str = "[mongodb]\nuri = \"mongodb://127.0.0.1:27017\"\npassword = { env = \"P\" }\n\
                          [lake]\nurl = \"s3://b/p\"\n[sync]\ntimezone = \"Asia/Kolkata\"\n[masking]\nhmac_key = { env = \"K\" }\n";

/// Applies byte-level edits (replace, insert, delete) to a valid text: the inputs a typo or a bad merge makes.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..12).prop_map(move |edits| {
        let mut b = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(b.len() + 1);
            match op {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i.min(b.len()), byte),
                _ if i < b.len() => {
                    b.remove(i);
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// Arbitrary BSON values, nested up to `depth`, with field names that repeat, need escaping or are empty.
fn value(depth: u32) -> impl Strategy<Value = RawBson> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(RawBson::Int32),
        any::<i64>().prop_map(RawBson::Int64),
        any::<f64>().prop_map(RawBson::Double),
        ".{0,12}".prop_map(RawBson::String),
        any::<bool>().prop_map(RawBson::Boolean),
        any::<i64>().prop_map(|ms| RawBson::DateTime(bson::DateTime::from_millis(ms))),
        Just(RawBson::Null),
        any::<[u8; 16]>().prop_map(|b| RawBson::Decimal128(bson::Decimal128::from_bytes(b))),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(t, bytes)| {
            RawBson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::from(t), bytes })
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(t, i)| RawBson::Timestamp(bson::Timestamp { time: t, increment: i })),
        Just(RawBson::MinKey),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|vs| {
                let mut a = bson::RawArrayBuf::new();
                for v in vs {
                    a.push(v);
                }
                RawBson::Array(a)
            }),
            prop::collection::vec((field_name(), inner), 0..5).prop_map(|fs| RawBson::Document(doc_of(fs))),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("A".to_string()),
        Just("Patient Name".to_string()),
        "[a-z0-9 .$-]{0,6}",
        "\\PC{0,4}"
    ]
}

fn doc_of(fields: Vec<(String, RawBson)>) -> RawDocumentBuf {
    let mut d = RawDocumentBuf::new();
    for (k, v) in fields {
        if let Ok(k) = bson::raw::CString::try_from(k) {
            d.append(k, v); // duplicates allowed: MongoDB can hold them, the decoder must cope
        }
    }
    d
}

/// Runs the whole decode path on documents: masking, type inference, Arrow builders, Parquet encoding.
/// Returns the number of documents that were readable.
fn decode_all(docs: &[Vec<u8>]) -> usize {
    let rules = MaskRules::parse("a=hash;b.c=redact;d=truncate_date", "_id", "ts").unwrap();
    let paths = mask::apply::split_paths(&rules);
    let mut fields = Vec::new();
    let mut readable = Vec::new();
    for bytes in docs {
        let Ok(doc) = RawDocument::from_bytes(bytes) else { continue };
        let Ok(masked) = mask::apply(doc, &rules, &paths, Some(b"0123456789abcdef"), &mut MaskCounts::default()) else {
            continue;
        };
        if observe_document(&mut fields, &masked, &["ts".to_string()], &[]).is_ok() {
            readable.push(masked);
        }
    }
    let ty = LakeType::Struct { fields };
    let mut builder = ColumnBuilder::for_document(&ty);
    let mut rejects = Vec::new();
    let mut ok = 0;
    for d in &readable {
        builder.append_document(d, &|_, v: RawBsonRef<'_>| Some(v), &mut rejects).expect("a readable document appends");
        ok += 1;
    }
    let array = builder.finish();
    assert_eq!(arrow::array::Array::len(array.as_ref()), ok);
    let s = array.as_any().downcast_ref::<arrow::array::StructArray>().expect("a struct");
    if s.num_columns() > 0 {
        let batch = arrow::array::RecordBatch::from(s.clone());
        mongolake::sink::parquet::encode(
            batch.schema(),
            &[batch],
            &ty,
            mongolake::sink::parquet::RowGroups::rows(1024),
            "fuzz",
        )
        .expect("encodes");
    }
    ok
}

proptest! {
    // 1,000 cases each (a few seconds); failures print the minimal input. No persistence file: CI starts clean.
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn csv_parser_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        let _ = CollectionsFile::parse(Path::new("collections.csv"), &text);
    }

    #[test]
    fn csv_parser_never_panics_on_mutated_files(text in mutated(VALID_CSV)) {
        if let Ok(f) = CollectionsFile::parse(Path::new("collections.csv"), &text) {
            for e in &f.errors {
                prop_assert!(e.line >= 1, "a row error without a line: {e:?}");
            }
        }
    }

    #[test]
    fn toml_parser_never_panics(text in prop_oneof![mutated(VALID_TOML), "\\PC{0,200}"]) {
        let _ = Environment::parse(Path::new("env.toml"), Path::new("."), &text);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_documents(
        docs in prop::collection::vec(prop::collection::vec((field_name(), value(6)), 0..8), 1..6)
    ) {
        let raw: Vec<Vec<u8>> = docs.into_iter().map(|fs| doc_of(fs).into_bytes()).collect();
        prop_assert_eq!(decode_all(&raw), raw.len());
    }

    #[test]
    fn decoder_never_panics_on_corrupted_bytes(
        fields in prop::collection::vec((field_name(), value(3)), 1..6),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = doc_of(fields).into_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            if i >= 4 && i + 1 < bytes.len() {
                bytes[i] = b; // keep the length prefix and terminator: framing valid, content hostile
            }
        }
        decode_all(&[bytes]);
    }
}

/// Invalid UTF-8 in a string value and in a field name: the document is refused as unreadable, not a panic.
#[test]
fn invalid_utf8_in_values_and_names_is_an_error() {
    for (name, value) in [(b"s".as_slice(), b"\xff\xfe".as_slice()), (b"\xc3(".as_slice(), b"ok".as_slice())] {
        let mut body = vec![0x02];
        body.extend_from_slice(name);
        body.push(0);
        body.extend_from_slice(&((value.len() + 1) as i32).to_le_bytes());
        body.extend_from_slice(value);
        body.push(0);
        let mut bytes = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        bytes.push(0);
        let doc = RawDocument::from_bytes(&bytes).unwrap();
        let err = observe_document(&mut Vec::new(), doc, &[], &[]).unwrap_err();
        assert!(err.contains("unreadable"), "{err}");
    }
}

/// Nesting to BSON's limit (100 levels, documents in arrays in documents) decodes and encodes.
#[test]
fn maximum_nesting_decodes() {
    let mut v = RawBson::Int32(1);
    for i in 0..99 {
        v = if i % 2 == 0 {
            let mut d = RawDocumentBuf::new();
            d.append(bson::raw::cstr!("x"), v);
            RawBson::Document(d)
        } else {
            let mut a = bson::RawArrayBuf::new();
            a.push(v);
            RawBson::Array(a)
        };
    }
    let mut top = RawDocumentBuf::new();
    top.append(bson::raw::cstr!("deep"), v);
    assert_eq!(decode_all(&[top.into_bytes()]), 1);
}
