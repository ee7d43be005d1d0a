//! How a value is written into a column that widened to string. Scalars become their plain text, documents and
//! arrays relaxed Extended JSON, so nothing is lost and the text reads naturally (`42`, `42 years`, `true`).
//! The same rendering is used for fresh documents and for rows read back from an older file, so a rewrite of an
//! unchanged row yields the same text.
use super::decimal::{decode, Decoded};
use super::lattice::is_uuid;
use base64::Engine;
use bson::RawBsonRef;

/// RFC 3339 with milliseconds and `Z`; falls back to the epoch milliseconds outside chrono's range.
pub fn format_millis(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

pub fn format_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{v}")
    }
}

pub fn format_uuid(b: &[u8]) -> String {
    let h = hex(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Lower-case hex of `bytes`. ObjectIds (the usual `_id`) are rendered once per document for the key and once
/// more when their column is built: `ObjectId::to_hex` (a char iterator) cost 2.8% of a full load's
/// instructions under callgrind, this a fraction of that.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        let [hi, lo] = hex_digits(b);
        out.push(hi as char);
        out.push(lo as char);
    }
    out
}

/// 64 bits of the SHA-256 of `text`, in hex: what the state file records of a file or a setting it need not read
/// again (the table definitions, the layout) when the text it would hash is the same.
pub fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(text.as_bytes())[..8])
}

/// An ObjectId's hex text in `buf`, without allocating (for appending straight to a string column).
pub fn object_id_hex<'a>(oid: &bson::oid::ObjectId, buf: &'a mut [u8; 24]) -> &'a str {
    for (i, &b) in oid.bytes().iter().enumerate() {
        [buf[2 * i], buf[2 * i + 1]] = hex_digits(b);
    }
    std::str::from_utf8(buf).expect("hex digits are ASCII")
}

fn hex_digits(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// Renders any BSON value as text for a string column.
pub fn render(value: RawBsonRef<'_>) -> String {
    match value {
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) | RawBsonRef::JavaScriptCode(s) => s.to_string(),
        RawBsonRef::Int32(v) => v.to_string(),
        RawBsonRef::Int64(v) => v.to_string(),
        RawBsonRef::Double(v) => format_f64(v),
        RawBsonRef::Boolean(b) => b.to_string(),
        RawBsonRef::DateTime(d) => format_millis(d.timestamp_millis()),
        RawBsonRef::ObjectId(o) => hex(&o.bytes()),
        RawBsonRef::Decimal128(d) => match decode(&d) {
            Decoded::NaN => "NaN".into(),
            Decoded::Infinity { negative } => if negative { "-Infinity" } else { "Infinity" }.into(),
            Decoded::Finite { .. } => d.to_string(),
        },
        RawBsonRef::Binary(b) if is_uuid(b.subtype, b.bytes) => format_uuid(b.bytes),
        RawBsonRef::Binary(b) => base64::engine::general_purpose::STANDARD.encode(b.bytes),
        RawBsonRef::MinKey => "MinKey".into(),
        RawBsonRef::MaxKey => "MaxKey".into(),
        RawBsonRef::Null | RawBsonRef::Undefined => String::new(),
        RawBsonRef::Timestamp(t) => serde_json::json!({"t": t.time, "i": t.increment}).to_string(),
        RawBsonRef::RegularExpression(r) => {
            serde_json::json!({"pattern": r.pattern.as_str(), "options": r.options.as_str()}).to_string()
        }
        RawBsonRef::JavaScriptCodeWithScope(c) => c.code.to_string(),
        RawBsonRef::DbPointer(_) => to_json(value),
        RawBsonRef::Document(_) | RawBsonRef::Array(_) => to_json(value),
    }
}

/// The text a key is matched by: in the key index, by the merges (a file's rows and this run's documents), by
/// reconcile, and in a key column stored as text. Written here once; everything that matches keys calls it.
///
/// Strings, ObjectIds (24 hex digits) and UUIDs (canonical text) are their plain text, as before type tags
/// existed, so lakes written then keep their keys. Every other type is tagged, `{"$<kind>":...}`, so values that
/// render alike stay distinct keys (the integer 42 and the string "42"; a document and the string of its JSON):
/// numbers `{"$number":"42"}` (one key space, as in MongoDB, where 42, 42L, 42.0 and Decimal128 42 are one
/// `_id`; the lake's widenings between them keep the text), dates `{"$date":<ms>}`, binary
/// `{"$binary":"<base64>"}`, booleans `{"$bool":true}`, documents `{"$document":{...}}` (members sorted,
/// nulls left out, as the lake's struct column gives them back) and arrays `{"$array":[...]}`; a Timestamp and a
/// Regex as the documents `{t, i}` and `{pattern, options}` their struct columns hold. What stays ambiguous: an
/// ObjectId and the string of its hex, a UUID and the string of its text, and a string that is itself one of
/// the tagged texts (it begins `{"$`) of another key of the same collection.
pub fn key_text(value: RawBsonRef<'_>) -> String {
    match value {
        RawBsonRef::String(s) => s.to_string(),
        RawBsonRef::ObjectId(o) => hex(&o.bytes()),
        RawBsonRef::Binary(b) if is_uuid(b.subtype, b.bytes) => format_uuid(b.bytes),
        other => {
            let mut out = String::new();
            key_json(other, &mut out);
            if !out.starts_with("{\"$") {
                let kind = match other {
                    RawBsonRef::Document(_) | RawBsonRef::Timestamp(_) | RawBsonRef::RegularExpression(_) => "document",
                    RawBsonRef::Array(_) => "array",
                    _ => "text",
                };
                out = format!("{{\"${kind}\":{out}}}");
            }
            out
        }
    }
}

/// A number's value as text, whatever its BSON type: integers and integral doubles as digits, other doubles
/// shortest round-trip, decimals without trailing zeros (`42.50` is `42.5`, `1E+3` is `1000`).
fn number_text(value: RawBsonRef<'_>) -> String {
    match value {
        RawBsonRef::Int32(v) => v.to_string(),
        RawBsonRef::Int64(v) => v.to_string(),
        RawBsonRef::Double(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => (v as i64).to_string(),
        RawBsonRef::Double(v) => format_f64(v),
        RawBsonRef::Decimal128(d) => match decode(&d) {
            Decoded::NaN => "NaN".into(),
            Decoded::Infinity { negative } => if negative { "-Infinity" } else { "Infinity" }.into(),
            Decoded::Finite { negative, mut coefficient, mut exponent } => {
                if coefficient == 0 {
                    return "0".into();
                }
                while coefficient % 10 == 0 && exponent < 0 {
                    coefficient /= 10;
                    exponent += 1;
                }
                let digits = coefficient.to_string();
                let sign = if negative { "-" } else { "" };
                if exponent >= 0 {
                    format!("{sign}{digits}{}", "0".repeat(exponent as usize))
                } else {
                    let point = digits.len() as i64 + exponent as i64;
                    if point > 0 {
                        format!("{sign}{}.{}", &digits[..point as usize], &digits[point as usize..])
                    } else {
                        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
                    }
                }
            }
        },
        other => render(other),
    }
}

/// A value inside a key as JSON text (see [`key_text`]): what the lake's column of it gives back, so a key read
/// from a file has the text of the document it was written from.
fn key_json(value: RawBsonRef<'_>, out: &mut String) {
    let string = |s: &str, out: &mut String| out.push_str(&serde_json::Value::from(s).to_string());
    match value {
        RawBsonRef::Int32(_) | RawBsonRef::Int64(_) | RawBsonRef::Double(_) | RawBsonRef::Decimal128(_) => {
            out.push_str("{\"$number\":");
            string(&number_text(value), out);
            out.push('}');
        }
        RawBsonRef::Boolean(b) => out.push_str(&format!("{{\"$bool\":{b}}}")),
        RawBsonRef::DateTime(d) => out.push_str(&format!("{{\"$date\":{}}}", d.timestamp_millis())),
        RawBsonRef::Null | RawBsonRef::Undefined => out.push_str("null"),
        RawBsonRef::Binary(b) if !is_uuid(b.subtype, b.bytes) => {
            out.push_str("{\"$binary\":");
            string(&base64::engine::general_purpose::STANDARD.encode(b.bytes), out);
            out.push('}');
        }
        RawBsonRef::Timestamp(t) => {
            out.push_str(&format!("{{\"i\":{{\"$number\":\"{}\"}},\"t\":{{\"$number\":\"{}\"}}}}", t.increment, t.time))
        }
        RawBsonRef::RegularExpression(r) => {
            out.push_str("{\"options\":");
            string(r.options.as_str(), out);
            out.push_str(",\"pattern\":");
            string(r.pattern.as_str(), out);
            out.push('}');
        }
        RawBsonRef::Document(d) => {
            let mut members: Vec<(&str, RawBsonRef<'_>)> = d
                .into_iter()
                .filter_map(|el| el.ok())
                .map(|(k, v)| (k.as_str(), v))
                .filter(|(_, v)| !matches!(v, RawBsonRef::Null | RawBsonRef::Undefined))
                .collect();
            members.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                key_json(v, out);
            }
            out.push('}');
        }
        RawBsonRef::Array(a) => {
            out.push('[');
            for (i, v) in a.into_iter().filter_map(|v| v.ok()).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                key_json(v, out);
            }
            out.push(']');
        }
        // Stored as text in the lake (strings, ObjectIds, UUIDs, symbols, code, MinKey/MaxKey).
        other => string(&render(other), out),
    }
}

/// Relaxed Extended JSON of a value (documents and arrays), compact.
pub fn to_json(value: RawBsonRef<'_>) -> String {
    match bson::Bson::try_from(value) {
        Ok(b) => relaxed(b).to_string(),
        Err(e) => format!("\"<unreadable BSON: {e}>\""),
    }
}

/// Relaxed Extended JSON, except that dates after year 9999 keep their exact milliseconds (`$numberLong`, as the
/// Extended JSON spec asks): the bson crate would print them clamped to 9999-12-31, losing the value.
fn relaxed(b: bson::Bson) -> serde_json::Value {
    match b {
        bson::Bson::DateTime(d) if d.timestamp_millis() > crate::transform::timestamp::MAX_LAKE_MILLIS => {
            serde_json::json!({ "$date": { "$numberLong": d.timestamp_millis().to_string() } })
        }
        bson::Bson::Document(doc) => serde_json::Value::Object(doc.into_iter().map(|(k, v)| (k, relaxed(v))).collect()),
        bson::Bson::Array(a) => serde_json::Value::Array(a.into_iter().map(relaxed).collect()),
        other => other.into_relaxed_extjson(),
    }
}

/// Canonical Extended JSON of a value: type-exact and lossless (dates as `$numberLong` milliseconds, so even a
/// date beyond year 9999 is kept exactly). Used for the rejects area.
pub fn to_canonical_json(value: RawBsonRef<'_>) -> String {
    match bson::Bson::try_from(value) {
        Ok(b) => b.into_canonical_extjson().to_string(),
        Err(e) => format!("\"<unreadable BSON: {e}>\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;
    use std::str::FromStr;

    #[test]
    fn renders_scalars_plainly_and_documents_as_json() {
        let d = rawdoc! { "n": 42, "s": "42 years", "f": 0.1, "b": true, "o": { "a": 1, "b": [1, "x"] }, "t": bson::DateTime::from_millis(1_751_394_600_000) };
        let get = |k: &str| render(d.get(k).unwrap().unwrap());
        assert_eq!(get("n"), "42");
        assert_eq!(get("s"), "42 years");
        assert_eq!(get("f"), "0.1");
        assert_eq!(get("b"), "true");
        assert_eq!(get("o"), r#"{"a":1,"b":[1,"x"]}"#);
        assert_eq!(get("t"), "2025-07-01T18:30:00.000Z");
        assert_eq!(format_f64(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(format_uuid(&[0xab; 16]), "abababab-abab-abab-abab-abababababab");
        let oid = bson::oid::ObjectId::parse_str("6ab2fcb8d78878000007cdf2").unwrap();
        assert_eq!(render(bson::RawBsonRef::ObjectId(oid)), oid.to_hex());
        assert_eq!(object_id_hex(&oid, &mut [0; 24]), oid.to_hex());
    }

    #[test]
    fn keys_of_different_types_that_render_alike_have_different_texts() {
        let uuid = bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: (0u8..16).collect() };
        let bin = bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0x69, 0xb7, 0x1d] };
        let oid = bson::oid::ObjectId::parse_str("6ab2fcb8d78878000007cdf2").unwrap();
        let d = rawdoc! {
            "int": 42, "long": 42i64, "double": 42.0, "dec": bson::Decimal128::from_str("42.00").unwrap(),
            "half": 42.5, "dec_half": bson::Decimal128::from_str("4.250E+1").unwrap(), "s": "42",
            "oid": oid, "uuid": uuid, "bin": bin, "doc": { "b": "x", "a": 1, "n": null }, "arr": [1, "1"],
            "date": bson::DateTime::from_millis(5), "t": true, "thousand": bson::Decimal128::from_str("1E+3").unwrap(),
            "ts": bson::Timestamp { time: 9, increment: 2 }, "small": bson::Decimal128::from_str("0.0012").unwrap(),
        };
        let key = |k: &str| key_text(d.get(k).unwrap().unwrap());
        // Strings, ObjectIds and UUIDs keep the plain text lakes already hold.
        assert_eq!(key("s"), "42");
        assert_eq!(key("oid"), "6ab2fcb8d78878000007cdf2");
        assert_eq!(key("uuid"), "00010203-0405-0607-0809-0a0b0c0d0e0f");
        // Numbers are one key space, by value, as in MongoDB (and as the lake widens them).
        for k in ["int", "long", "double", "dec"] {
            assert_eq!(key(k), r#"{"$number":"42"}"#, "{k}");
        }
        assert_eq!(key("half"), r#"{"$number":"42.5"}"#);
        assert_eq!(key("dec_half"), key("half"));
        assert_eq!(key("thousand"), r#"{"$number":"1000"}"#);
        assert_eq!(key("small"), r#"{"$number":"0.0012"}"#);
        assert_eq!(key("bin"), r#"{"$binary":"abcd"}"#);
        assert_eq!(render(d.get("bin").unwrap().unwrap()), "abcd", "renders alike the string abcd");
        // Members sorted, nulls out: the text a struct column gives back.
        assert_eq!(key("doc"), r#"{"$document":{"a":{"$number":"1"},"b":"x"}}"#);
        assert_eq!(key("arr"), r#"{"$array":[{"$number":"1"},"1"]}"#);
        assert_eq!(key("date"), r#"{"$date":5}"#);
        assert_eq!(key("t"), r#"{"$bool":true}"#);
        assert_eq!(key("ts"), r#"{"$document":{"i":{"$number":"2"},"t":{"$number":"9"}}}"#);
    }

    #[test]
    fn far_dates_keep_their_exact_value_in_json() {
        let d = rawdoc! { "a": [bson::DateTime::from_millis(300_000_000_000_000), bson::DateTime::from_millis(-1)] };
        assert_eq!(
            to_json(d.get("a").unwrap().unwrap()),
            r#"[{"$date":{"$numberLong":"300000000000000"}},{"$date":{"$numberLong":"-1"}}]"#
        );
    }
}
