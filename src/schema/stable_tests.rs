//! Type-stable columns and one column per spelling (see [`super::lattice::Conflicts::Variant`]): inference
//! (which column a value goes to) and the builders (the value lands there, and reads back as it was).
use super::arrow::{to_bson, ColumnBuilder};
use super::lattice::{resolve_majorities, Conflicts, Field, Kind, LakeType, Observe, Role};
use bson::{doc, rawdoc, Bson, RawBsonRef, RawDocumentBuf};

const VARIANT: Observe = Observe { conflicts: Conflicts::Variant, established: true };

/// The type after observing `docs` (each a top-level document) over `start`, as pass 1 and the evolve step do.
fn infer(start: LakeType, docs: &[RawDocumentBuf]) -> LakeType {
    let mut t = start;
    for d in docs {
        t.observe_with(RawBsonRef::Document(d), VARIANT).expect("readable");
    }
    resolve_majorities(&mut t);
    t
}

fn fields(t: &LakeType) -> &[Field] {
    match t {
        LakeType::Struct { fields } => fields,
        other => panic!("not a struct: {other:?}"),
    }
}

fn column<'a>(t: &'a LakeType, name: &str) -> &'a Field {
    fields(t).iter().find(|f| f.column == name).unwrap_or_else(|| panic!("no column {name} in {t:?}"))
}

/// Builds the documents under `t` and reads every row back as BSON.
fn round_trip(t: &LakeType, docs: &[RawDocumentBuf]) -> Vec<Bson> {
    let mut b = ColumnBuilder::for_document(t);
    let mut rejects = Vec::new();
    for d in docs {
        b.append_document(d, &|_, v| Some(v), &mut rejects).expect("appended");
    }
    assert!(rejects.is_empty(), "{rejects:?}");
    let array = b.finish();
    (0..array.len()).map(|row| to_bson(array.as_ref(), row, t).expect("a row")).collect()
}

fn as_bson(docs: &[RawDocumentBuf]) -> Vec<Bson> {
    docs.iter().map(|d| Bson::Document(bson::Document::try_from(d.as_ref()).expect("valid"))).collect()
}

/// A stored (established) type, as a schema read from the lake gives it.
fn stored(t: LakeType) -> LakeType {
    let json = serde_json::to_string(&t).expect("serialisable");
    serde_json::from_str(&json).expect("readable")
}

#[test]
fn a_stray_value_in_a_stored_column_goes_to_a_variant_and_the_column_keeps_its_type() {
    let first = infer(LakeType::empty_struct(), &[rawdoc! { "amount": 12.5 }, rawdoc! { "amount": 7.0 }]);
    let lake = stored(first);
    let docs = [rawdoc! { "amount": 3.25 }, rawdoc! { "amount": "1,250.00 (see note)" }, rawdoc! { "amount": 4 }];
    let t = infer(lake, &docs);
    assert_eq!(column(&t, "amount").ty, LakeType::Float, "the column keeps its type");
    let v = column(&t, "amount__v_text");
    assert_eq!(v.role, Role::Variant { of: "amount".into(), kind: Kind::Text });
    assert_eq!((v.ty.clone(), v.seen), (LakeType::String, 1));
    assert_eq!(
        round_trip(&t, &docs),
        as_bson(&docs[..2]).into_iter().chain([Bson::Document(doc! { "amount": 4.0 })]).collect::<Vec<_>>()
    );
}

#[test]
fn at_a_first_load_the_kind_holding_most_values_owns_the_column() {
    // `"42"` first, then integers: the integers own `age`.
    let mut docs = vec![rawdoc! { "age": "42" }];
    docs.extend((0..9i64).map(|i| rawdoc! { "age": 30 + i }));
    docs.push(rawdoc! { "age": "unknown" });
    let t = infer(LakeType::empty_struct(), &docs);
    assert_eq!(column(&t, "age").ty, LakeType::Int { digits: 2 });
    assert_eq!(column(&t, "age__v_text").role, Role::Variant { of: "age".into(), kind: Kind::Text });
    assert_eq!(fields(&t).len(), 2);
    assert_eq!(round_trip(&t, &docs), as_bson(&docs));
    // A document in 99% of the documents, a string in 1%: `address.city` stays queryable.
    let mut docs: Vec<_> = (0..99).map(|i| rawdoc! { "address": { "city": format!("C{i}") } }).collect();
    docs.push(rawdoc! { "address": "12 MG Road, Bengaluru" });
    let t = infer(LakeType::empty_struct(), &docs);
    assert!(matches!(column(&t, "address").ty, LakeType::Struct { .. }));
    assert_eq!(column(&t, "address__v_text").ty, LakeType::String);
    assert_eq!(round_trip(&t, &docs), as_bson(&docs));
}

#[test]
fn text_holding_most_values_takes_them_all() {
    let docs = [rawdoc! { "code": "A1" }, rawdoc! { "code": 7 }, rawdoc! { "code": "B2" }];
    let t = infer(LakeType::empty_struct(), &docs);
    assert_eq!(fields(&t).len(), 1, "{t:?}");
    assert_eq!(column(&t, "code").ty, LakeType::String);
}

#[test]
fn numbers_still_widen_as_the_lattice_says_at_a_first_load() {
    let t = infer(LakeType::empty_struct(), &[rawdoc! { "n": 1 }, rawdoc! { "n": 2.5 }]);
    assert_eq!(fields(&t).len(), 1);
    assert_eq!(column(&t, "n").ty, LakeType::Float);
    // ... but a stored bigint column keeps its type.
    let lake = stored(infer(LakeType::empty_struct(), &[rawdoc! { "n": 1 }]));
    let t = infer(lake, &[rawdoc! { "n": 2.5 }]);
    assert_eq!(column(&t, "n").ty, LakeType::Int { digits: 1 });
    assert_eq!(column(&t, "n__v_double").ty, LakeType::Float);
    // A stored double column takes a decimal of at most 15 digits, as the lattice would have joined them.
    let lake = stored(infer(LakeType::empty_struct(), &[rawdoc! { "p": 2.5 }]));
    let docs = [rawdoc! { "p": "12.50".parse::<bson::Decimal128>().unwrap() }];
    let t = infer(lake, &docs);
    assert_eq!(fields(&t).len(), 1, "{t:?}");
    assert_eq!(round_trip(&t, &docs), vec![Bson::Document(doc! { "p": 12.5 })]);
}

#[test]
fn spellings_of_one_field_are_one_column() {
    let docs = [
        rawdoc! { "Patient Name": "Asha" },
        rawdoc! { "patient_name": "Ravi" },
        rawdoc! { "PATIENT-NAME": "Meena" },
        rawdoc! { "labCode": "X", "LabCode": "X" },
    ];
    let t = infer(LakeType::empty_struct(), &docs);
    let cols: Vec<&str> = fields(&t).iter().map(|f| f.column.as_str()).collect();
    assert_eq!(cols, vec!["patient_name", "labcode"], "{t:?}");
    assert_eq!(column(&t, "patient_name").aliases, vec!["patient_name".to_string(), "PATIENT-NAME".to_string()]);
    let back = round_trip(&t, &docs);
    let name = |b: &Bson| b.as_document().and_then(|d| d.get_str("Patient Name").ok()).map(str::to_string);
    assert_eq!(
        back.iter().take(3).map(name).collect::<Vec<_>>(),
        vec![Some("Asha".into()), Some("Ravi".into()), Some("Meena".into())]
    );
    assert_eq!(back[3], Bson::Document(doc! { "labCode": "X" }), "the same value twice is one value");
}

#[test]
fn two_spellings_with_different_values_in_one_document_keep_both() {
    let docs = [rawdoc! { "patient_name": "Ravi" }, rawdoc! { "patient_name": "Ravi K", "Patient Name": "Ravi Kumar" }];
    let t = infer(LakeType::empty_struct(), &docs);
    let second = column(&t, "patient_name_1");
    assert_eq!(
        (second.source.as_str(), &second.role),
        ("Patient Name", &Role::Collision { of: "patient_name".into() })
    );
    assert_eq!(round_trip(&t, &docs), as_bson(&docs));
}

#[test]
fn every_element_of_a_mixed_array_stays_an_element() {
    // Older documents list diagnoses as strings, newer ones as documents.
    let docs = [
        rawdoc! { "diagnoses": ["fever", "cough"] },
        rawdoc! { "diagnoses": [{ "code": "J10", "name": "flu" }, "headache"] },
    ];
    let t = infer(LakeType::empty_struct(), &docs);
    let LakeType::List { item } = &column(&t, "diagnoses").ty else { panic!("{t:?}") };
    let members: Vec<(&str, &Role)> = fields(item).iter().map(|f| (f.column.as_str(), &f.role)).collect();
    assert_eq!(
        members,
        vec![("__v_text", &Role::Element { kind: Kind::Text }), ("code", &Role::Main), ("name", &Role::Main)]
    );
    assert_eq!(round_trip(&t, &docs), as_bson(&docs));
    // The same, documents first; and on a stored type.
    let rev = [docs[1].clone(), docs[0].clone()];
    let t = infer(LakeType::empty_struct(), &rev);
    assert_eq!(round_trip(&t, &rev), as_bson(&rev));
    let t = infer(stored(t), &[rawdoc! { "diagnoses": [7, { "code": "A" }] }]);
    let LakeType::List { item } = &column(&t, "diagnoses").ty else { panic!("{t:?}") };
    assert!(fields(item).iter().any(|f| f.role == Role::Element { kind: Kind::Bigint }), "{item:?}");
}

#[test]
fn the_widen_policy_keeps_todays_lattice() {
    let mut t = LakeType::empty_struct();
    for d in [rawdoc! { "age": 42 }, rawdoc! { "age": "42" }] {
        t.observe(RawBsonRef::Document(&d)).expect("readable");
    }
    assert_eq!(column(&t, "age").ty, LakeType::String);
    assert_eq!(fields(&t).len(), 1);
}
