//! The lake type lattice: how every BSON value maps to a column type, and how two types combine.
//!
//! Types only ever widen (`join` is commutative, associative and idempotent), so a type that held yesterday's
//! documents holds today's too, and a value is never silently turned into null. The rules, weakest first:
//!
//! | seen together                               | column becomes                                      |
//! |---------------------------------------------|-----------------------------------------------------|
//! | missing / null / undefined with anything X  | X (nullable)                                        |
//! | int32 with int64                            | int64                                               |
//! | int with double                             | double, if every int has at most 15 digits; else string |
//! | int with decimal128                         | decimal(p,s) wide enough for both, if p <= 38; else string |
//! | decimal128 with double                      | double, if every decimal has at most 15 digits; else string |
//! | X with an array of Y                        | array of (X join Y): a lone value is a 1-element array |
//! | document with document                      | struct with the union of fields (each joined)       |
//! | any other mix of scalars / documents        | string: scalars as text, documents and arrays as relaxed Extended JSON |
//!
//! BSON types map to: double -> double; string, ObjectId (24 hex), symbol, code, MinKey/MaxKey, DBPointer -> string;
//! Date -> timestamp (UTC, ms); Decimal128 -> decimal(p,s) (string when NaN/Infinity or beyond 38 digits);
//! binary -> binary, except UUID subtypes 3/4 -> string (canonical UUID); Timestamp -> struct<t,i>;
//! Regex -> struct<pattern,options>; empty arrays and documents stay "unknown" until a later value says more.
use super::names::{sanitize, unique};
use bson::RawBsonRef;
use serde::{Deserialize, Serialize};

/// Integers whose decimal digits exceed this may not be exact in a double.
pub const F64_EXACT_DIGITS: u8 = 15;
/// Arrow/Parquet/Athena decimal precision limit.
pub const MAX_DECIMAL_DIGITS: u8 = 38;

/// A column's type in the lake. Serialised into the schema registry and into every Parquet file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LakeType {
    /// Only missing/null values (or empty arrays' elements) seen so far.
    Null,
    Bool,
    /// 64-bit integer; `digits` is the most decimal digits seen (for lossless widening to double).
    Int {
        digits: u8,
    },
    Float,
    /// decimal(int_digits + scale, scale).
    Decimal {
        int_digits: u8,
        scale: u8,
    },
    String,
    Binary,
    /// BSON Date: UTC timestamp with millisecond precision.
    Timestamp,
    Struct {
        fields: Vec<Field>,
    },
    List {
        item: Box<LakeType>,
    },
}

/// A named member of a struct (a top-level column or a nested struct member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The field name in MongoDB documents.
    pub source: String,
    /// The Athena-safe name in the lake.
    pub column: String,
    #[serde(flatten)]
    pub ty: LakeType,
}

impl LakeType {
    pub fn empty_struct() -> LakeType {
        LakeType::Struct { fields: Vec::new() }
    }

    /// The least type that holds every value of `self` and of `other`.
    pub fn join(&mut self, other: &LakeType) {
        use LakeType::*;
        // Containers widen in place.
        match (&mut *self, other) {
            (_, Null) => return,
            (List { item }, List { item: o }) => return item.join(o),
            (List { item }, o) => return item.join(o),
            (Struct { fields }, Struct { fields: o }) => {
                for f in o {
                    struct_field(fields, &f.source, Some(&f.column)).join(&f.ty);
                }
                return;
            }
            _ => {}
        }
        let joined = match (&*self, other) {
            (Null, o) => o.clone(),
            (s, List { item: o }) => {
                let mut item = Box::new(s.clone());
                item.join(o);
                List { item }
            }
            (a, b) if a == b => return,
            (Int { digits: a }, Int { digits: b }) => Int { digits: (*a).max(*b) },
            (Int { digits }, Float) | (Float, Int { digits }) => {
                if *digits <= F64_EXACT_DIGITS {
                    Float
                } else {
                    String
                }
            }
            (Int { digits }, Decimal { int_digits, scale }) | (Decimal { int_digits, scale }, Int { digits }) => {
                decimal_or_string((*int_digits).max(*digits), *scale)
            }
            (Decimal { int_digits: a, scale: s }, Decimal { int_digits: b, scale: t }) => {
                decimal_or_string((*a).max(*b), (*s).max(*t))
            }
            (Decimal { int_digits, scale }, Float) | (Float, Decimal { int_digits, scale }) => {
                if int_digits.saturating_add(*scale) <= F64_EXACT_DIGITS {
                    Float
                } else {
                    String
                }
            }
            _ => String,
        };
        *self = joined;
    }

    /// Widens `self` to hold `value` (a value of a document being read), without building a temporary type.
    /// An error means the BSON is unreadable (a truncated element, invalid UTF-8): the caller rejects the whole
    /// document. The type may already have widened for the readable part; that only ever adds room.
    pub fn observe(&mut self, value: RawBsonRef<'_>) -> Result<(), String> {
        match value {
            RawBsonRef::Document(doc) => {
                if matches!(self, LakeType::Null) {
                    *self = LakeType::empty_struct();
                }
                match self {
                    LakeType::Struct { fields } => {
                        let mut hint = 0;
                        for el in doc.iter() {
                            let (name, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
                            let i = find_field(fields, name.as_str(), hint).unwrap_or_else(|| {
                                push_field(fields, name.as_str(), None);
                                fields.len() - 1
                            });
                            hint = i + 1;
                            fields[i].ty.observe(v)?;
                        }
                    }
                    LakeType::List { item } => item.observe(value)?,
                    _ => {
                        check_readable(value)?;
                        self.join(&LakeType::empty_struct())
                    }
                }
            }
            RawBsonRef::Array(arr) => {
                if !matches!(self, LakeType::List { .. }) {
                    let mut list = LakeType::List { item: Box::new(LakeType::Null) };
                    list.join(self);
                    *self = list;
                }
                if let LakeType::List { item } = self {
                    for v in arr.into_iter() {
                        item.observe(v.map_err(|e| format!("unreadable BSON: {e}"))?)?;
                    }
                }
            }
            other => {
                // The usual case once a collection's first documents are seen: a value of the type's own kind,
                // which changes nothing (checked before building and comparing a type for it).
                let unchanged = match (&*self, other) {
                    (LakeType::String, RawBsonRef::String(_) | RawBsonRef::ObjectId(_))
                    | (LakeType::Timestamp, RawBsonRef::DateTime(_))
                    | (LakeType::Float, RawBsonRef::Double(_))
                    | (LakeType::Bool, RawBsonRef::Boolean(_)) => true,
                    (LakeType::Int { digits }, RawBsonRef::Int32(v)) => int_digits(i64::from(v)) <= *digits,
                    (LakeType::Int { digits }, RawBsonRef::Int64(v)) => int_digits(v) <= *digits,
                    _ => false,
                };
                if unchanged {
                    return Ok(());
                }
                let t = scalar_type(other);
                match (&mut *self, &t) {
                    (a, b) if a == b => {}
                    (LakeType::Int { digits }, LakeType::Int { digits: d }) => *digits = (*digits).max(*d),
                    _ => self.join(&t),
                }
            }
        }
        Ok(())
    }

    /// True when no value has told us anything yet (Null, or a struct of such).
    pub fn is_unknown(&self) -> bool {
        matches!(self, LakeType::Null)
    }
}

/// Walks a value whose type is already string (so its members need no observing) to find unreadable BSON.
pub fn check_readable(value: RawBsonRef<'_>) -> Result<(), String> {
    let walk = |v: Result<RawBsonRef<'_>, bson::error::Error>| {
        v.map_err(|e| format!("unreadable BSON: {e}")).and_then(check_readable)
    };
    match value {
        RawBsonRef::Document(d) => d.iter().try_for_each(|el| walk(el.map(|(_, v)| v))),
        RawBsonRef::Array(a) => a.into_iter().try_for_each(walk),
        _ => Ok(()),
    }
}

fn decimal_or_string(int_digits: u8, scale: u8) -> LakeType {
    if int_digits.saturating_add(scale) <= MAX_DECIMAL_DIGITS {
        LakeType::Decimal { int_digits, scale }
    } else {
        LakeType::String
    }
}

/// Finds a field by source name, trying `hint` first (documents usually repeat the same field order).
pub fn find_field(fields: &[Field], source: &str, hint: usize) -> Option<usize> {
    if fields.get(hint).is_some_and(|f| f.source == source) {
        return Some(hint);
    }
    fields.iter().position(|f| f.source == source)
}

/// Returns the field for `source`, adding it (with a unique column name) when new.
pub fn struct_field<'a>(fields: &'a mut Vec<Field>, source: &str, preferred: Option<&str>) -> &'a mut LakeType {
    let i = match find_field(fields, source, 0) {
        Some(i) => i,
        None => {
            push_field(fields, source, preferred);
            fields.len() - 1
        }
    };
    &mut fields[i].ty
}

fn push_field(fields: &mut Vec<Field>, source: &str, preferred: Option<&str>) {
    let base = match preferred {
        Some(p) if !fields.iter().any(|f| f.column == p) => p.to_string(),
        _ => sanitize(source),
    };
    let column = unique(&base, |c| fields.iter().any(|f| f.column == c));
    fields.push(Field { source: source.to_string(), column, ty: LakeType::Null });
}

/// The type of one non-container BSON value.
pub fn scalar_type(value: RawBsonRef<'_>) -> LakeType {
    match value {
        RawBsonRef::Double(_) => LakeType::Float,
        RawBsonRef::Int32(v) => LakeType::Int { digits: int_digits(v as i64) },
        RawBsonRef::Int64(v) => LakeType::Int { digits: int_digits(v) },
        RawBsonRef::Boolean(_) => LakeType::Bool,
        RawBsonRef::DateTime(_) => LakeType::Timestamp,
        RawBsonRef::Null | RawBsonRef::Undefined => LakeType::Null,
        RawBsonRef::Decimal128(d) => match super::decimal::decode(&d) {
            super::decimal::Decoded::Finite { coefficient, exponent, .. } => {
                let digits = super::decimal::digits(coefficient) as i32;
                let scale = (-exponent).max(0);
                let int_digits = (digits + exponent).max(0);
                if scale + int_digits > MAX_DECIMAL_DIGITS as i32 {
                    LakeType::String
                } else {
                    LakeType::Decimal { int_digits: int_digits as u8, scale: scale as u8 }
                }
            }
            _ => LakeType::String,
        },
        RawBsonRef::Binary(b) if is_uuid(b.subtype, b.bytes) => LakeType::String,
        RawBsonRef::Binary(_) => LakeType::Binary,
        RawBsonRef::Timestamp(_) => LakeType::Struct {
            fields: vec![
                Field { source: "t".into(), column: "t".into(), ty: LakeType::Int { digits: 10 } },
                Field { source: "i".into(), column: "i".into(), ty: LakeType::Int { digits: 10 } },
            ],
        },
        RawBsonRef::RegularExpression(_) => LakeType::Struct {
            fields: vec![
                Field { source: "pattern".into(), column: "pattern".into(), ty: LakeType::String },
                Field { source: "options".into(), column: "options".into(), ty: LakeType::String },
            ],
        },
        RawBsonRef::Document(_) => LakeType::empty_struct(),
        RawBsonRef::Array(_) => LakeType::List { item: Box::new(LakeType::Null) },
        _ => LakeType::String,
    }
}

/// UUIDs (subtype 4, and the legacy subtype 3) of 16 bytes are stored as their canonical text.
pub fn is_uuid(subtype: bson::spec::BinarySubtype, bytes: &[u8]) -> bool {
    use bson::spec::BinarySubtype::{Uuid, UuidOld};
    matches!(subtype, Uuid | UuidOld) && bytes.len() == 16
}

pub fn int_digits(v: i64) -> u8 {
    let mut n = v.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::LakeType::*;
    use super::*;
    use bson::{doc, rawdoc};

    fn of(doc: bson::RawDocumentBuf) -> LakeType {
        let mut t = LakeType::empty_struct();
        t.observe(RawBsonRef::Document(&doc)).unwrap();
        t
    }
    fn field<'a>(t: &'a LakeType, name: &str) -> &'a LakeType {
        let LakeType::Struct { fields } = t else { panic!("not a struct: {t:?}") };
        &fields.iter().find(|f| f.source == name).unwrap_or_else(|| panic!("no {name} in {t:?}")).ty
    }
    fn observe_all(values: Vec<bson::Bson>) -> LakeType {
        let mut t = LakeType::empty_struct();
        for v in values {
            let raw = bson::RawDocumentBuf::try_from(&doc! { "x": v }).unwrap();
            t.observe(RawBsonRef::Document(&raw)).unwrap();
        }
        field(&t, "x").clone()
    }

    #[test]
    fn numeric_rules() {
        assert_eq!(observe_all(vec![1i32.into(), 2i64.into()]), Int { digits: 1 });
        assert_eq!(observe_all(vec![1i32.into(), 2.5f64.into()]), Float);
        assert_eq!(observe_all(vec![9_007_199_254_740_993i64.into(), 2.5f64.into()]), String);
        let dec = |s: &str| bson::Bson::Decimal128(s.parse().unwrap());
        assert_eq!(observe_all(vec![dec("1234.50"), 7i32.into()]), Decimal { int_digits: 4, scale: 2 });
        assert_eq!(observe_all(vec![dec("1234.50"), 1.5f64.into()]), Float);
        assert_eq!(observe_all(vec![dec("12345678901234567.5"), 1.5f64.into()]), String);
        assert_eq!(observe_all(vec![dec("NaN")]), String);
        assert_eq!(observe_all(vec![dec("1E+40")]), String);
    }

    #[test]
    fn mixed_kinds_widen_to_string_or_list() {
        assert_eq!(observe_all(vec![42i32.into(), "42 years".into()]), String);
        assert_eq!(observe_all(vec![true.into(), 1i32.into()]), String);
        assert_eq!(observe_all(vec![bson::Bson::Null, 1i32.into()]), Int { digits: 1 });
        assert_eq!(observe_all(vec!["a".into(), bson::bson!(["b"])]), List { item: Box::new(String) });
        assert_eq!(observe_all(vec![bson::bson!(["a"]), bson::bson!([{"s": 1}])]), List { item: Box::new(String) });
        let t = observe_all(vec![bson::bson!({"a": 1}), bson::bson!([{"b": "x"}])]);
        let List { item } = t else { panic!() };
        assert_eq!(field(&item, "a"), &Int { digits: 1 });
        assert_eq!(field(&item, "b"), &String);
        assert_eq!(observe_all(vec![bson::bson!({"a": 1}), 3i32.into()]), String);
        assert_eq!(
            observe_all(vec![bson::bson!([]), bson::bson!([[1]])]),
            List { item: Box::new(List { item: Box::new(Int { digits: 1 }) }) }
        );
    }

    #[test]
    fn bson_types() {
        let oid = bson::oid::ObjectId::new();
        let t = of(bson::RawDocumentBuf::try_from(&doc! {
            "_id": oid, "d": bson::DateTime::from_millis(0), "u": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0; 16] },
            "b": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1] },
            "ts": bson::Timestamp { time: 1, increment: 2 }, "re": bson::Regex { pattern: "^a".to_string().try_into().unwrap(), options: "i".to_string().try_into().unwrap() },
            "e": {}, "n": bson::Bson::Null, "mk": bson::Bson::MinKey,
        }).unwrap());
        assert_eq!(field(&t, "_id"), &String);
        assert_eq!(field(&t, "d"), &Timestamp);
        assert_eq!(field(&t, "u"), &String);
        assert_eq!(field(&t, "b"), &Binary);
        assert_eq!(field(field(&t, "ts"), "t"), &Int { digits: 10 });
        assert_eq!(field(field(&t, "re"), "options"), &String);
        assert_eq!(field(&t, "e"), &LakeType::empty_struct());
        assert_eq!(field(&t, "n"), &Null);
        assert_eq!(field(&t, "mk"), &String);
    }

    #[test]
    fn names_are_unique_and_stable() {
        let t = of(rawdoc! { "Name": 1, "name": "x", "Patient Name": "p" });
        let LakeType::Struct { fields } = &t else { panic!() };
        let cols: Vec<_> = fields.iter().map(|f| (f.source.as_str(), f.column.as_str())).collect();
        assert_eq!(cols, vec![("Name", "name"), ("name", "name_1"), ("Patient Name", "patient_name")]);
    }

    #[test]
    fn join_is_commutative_on_samples() {
        let samples = vec![
            Null,
            Bool,
            Int { digits: 3 },
            Int { digits: 17 },
            Float,
            Decimal { int_digits: 4, scale: 2 },
            String,
            Timestamp,
            LakeType::empty_struct(),
            List { item: Box::new(Float) },
        ];
        for a in &samples {
            for b in &samples {
                let mut ab = a.clone();
                ab.join(b);
                let mut ba = b.clone();
                ba.join(a);
                assert_eq!(ab, ba, "{a:?} join {b:?}");
                let mut again = ab.clone();
                again.join(b);
                assert_eq!(again, ab, "idempotent");
            }
        }
    }
}
