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
    fn far_dates_keep_their_exact_value_in_json() {
        let d = rawdoc! { "a": [bson::DateTime::from_millis(300_000_000_000_000), bson::DateTime::from_millis(-1)] };
        assert_eq!(
            to_json(d.get("a").unwrap().unwrap()),
            r#"[{"$date":{"$numberLong":"300000000000000"}},{"$date":{"$numberLong":"-1"}}]"#
        );
    }
}
