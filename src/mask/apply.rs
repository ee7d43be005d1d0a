//! Applying a collection's [`MaskRules`] to one raw document: a new document is built with masked values; fields
//! no rule names are copied byte for byte. Only collections with rules pay for this.
use super::{MaskAction, MaskRules, REDACTED};
use crate::schema::text;
use crate::transform::timestamp::instant_millis;
use bson::{RawArray, RawArrayBuf, RawBson, RawBsonRef, RawDocument, RawDocumentBuf};
use chrono::Datelike;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;

/// How many values each rule masked (for the run report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MaskCounts {
    pub dropped: u64,
    pub hashed: u64,
    pub truncated: u64,
    pub redacted: u64,
}

impl MaskCounts {
    pub fn add(&mut self, o: &MaskCounts) {
        self.dropped += o.dropped;
        self.hashed += o.hashed;
        self.truncated += o.truncated;
        self.redacted += o.redacted;
    }
    pub fn total(&self) -> u64 {
        self.dropped + self.hashed + self.truncated + self.redacted
    }
}

/// A rule below the current level: the remaining path segments.
type Sub<'r> = Vec<(&'r [String], MaskAction)>;

/// Returns the masked copy of `doc`. `hmac_key` is needed when a `hash` rule matches (checked up front by the
/// caller). An error means the document is unreadable BSON.
pub fn apply(
    doc: &RawDocument,
    rules: &MaskRules,
    segments: &[Vec<String>],
    hmac_key: Option<&[u8]>,
    counts: &mut MaskCounts,
) -> Result<RawDocumentBuf, String> {
    let sub: Sub<'_> = segments.iter().zip(&rules.rules).map(|(s, r)| (s.as_slice(), r.action)).collect();
    mask_doc(doc, &sub, hmac_key, counts)
}

/// Splits each rule's path once, for [`apply`].
pub fn split_paths(rules: &MaskRules) -> Vec<Vec<String>> {
    rules.rules.iter().map(|r| r.path.split('.').map(str::to_string).collect()).collect()
}

fn unreadable(e: impl std::fmt::Display) -> String {
    format!("unreadable BSON: {e}")
}

fn mask_doc(
    doc: &RawDocument,
    rules: &Sub<'_>,
    key: Option<&[u8]>,
    counts: &mut MaskCounts,
) -> Result<RawDocumentBuf, String> {
    let mut out = RawDocumentBuf::new();
    for el in doc.iter() {
        let (name, v) = el.map_err(unreadable)?;
        let n = name.as_str();
        if let Some((_, action)) = rules.iter().find(|(segs, _)| segs.len() == 1 && segs[0] == n) {
            if let Some(masked) = mask_value(v, *action, key, counts)? {
                out.append(name, masked);
            }
            continue;
        }
        let below: Sub<'_> =
            rules.iter().filter(|(segs, _)| segs.len() > 1 && segs[0] == n).map(|(s, a)| (&s[1..], *a)).collect();
        if below.is_empty() {
            out.append(name, v);
            continue;
        }
        match v {
            RawBsonRef::Document(d) => out.append(name, RawBson::Document(mask_doc(d, &below, key, counts)?)),
            RawBsonRef::Array(a) => out.append(name, RawBson::Array(mask_array(a, &below, key, counts)?)),
            other => out.append(name, other),
        }
    }
    Ok(out)
}

/// Rules below an array apply to each element (documents), and through nested arrays.
fn mask_array(
    arr: &RawArray,
    rules: &Sub<'_>,
    key: Option<&[u8]>,
    counts: &mut MaskCounts,
) -> Result<RawArrayBuf, String> {
    let mut out = RawArrayBuf::new();
    for v in arr {
        match v.map_err(unreadable)? {
            RawBsonRef::Document(d) => out.push(RawBson::Document(mask_doc(d, rules, key, counts)?)),
            RawBsonRef::Array(a) => out.push(RawBson::Array(mask_array(a, rules, key, counts)?)),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The masked value, or None to drop the field.
fn mask_value(
    v: RawBsonRef<'_>,
    action: MaskAction,
    key: Option<&[u8]>,
    counts: &mut MaskCounts,
) -> Result<Option<RawBson>, String> {
    if matches!(v, RawBsonRef::Null | RawBsonRef::Undefined) && action != MaskAction::Drop {
        return Ok(Some(RawBson::Null)); // nothing to hide
    }
    Ok(match action {
        MaskAction::Keep => {
            crate::schema::lattice::check_readable(v)?;
            Some(RawBson::from(v))
        }
        MaskAction::Drop => {
            counts.dropped += 1;
            None
        }
        MaskAction::Redact => {
            counts.redacted += 1;
            Some(RawBson::String(REDACTED.into()))
        }
        MaskAction::Hash => {
            crate::schema::lattice::check_readable(v)?;
            let key = key.ok_or("a `hash` rule matched but no [masking] hmac_key is available")?;
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(text::render(v).as_bytes());
            counts.hashed += 1;
            let digest = mac.finalize().into_bytes();
            Some(RawBson::String(digest.iter().map(|b| format!("{b:02x}")).collect()))
        }
        MaskAction::TruncateMonth | MaskAction::TruncateYear => {
            match instant_millis(v).and_then(|ms| truncate(ms, action)) {
                Some(ms) => {
                    counts.truncated += 1;
                    Some(RawBson::DateTime(bson::DateTime::from_millis(ms)))
                }
                None => {
                    counts.redacted += 1;
                    Some(RawBson::String(REDACTED.into()))
                }
            }
        }
    })
}

fn truncate(ms: i64, action: MaskAction) -> Option<i64> {
    let t = chrono::DateTime::from_timestamp_millis(ms)?.date_naive();
    let month = if action == MaskAction::TruncateYear { 1 } else { t.month() };
    let first = chrono::NaiveDate::from_ymd_opt(t.year(), month, 1)?;
    Some(first.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn run(rules: &str, doc: RawDocumentBuf) -> (bson::Document, MaskCounts) {
        let rules = MaskRules::parse(rules, "_id", "ts").unwrap();
        let mut counts = MaskCounts::default();
        let out = apply(&doc, &rules, &split_paths(&rules), Some(b"0123456789abcdef"), &mut counts).unwrap();
        (bson::Document::try_from(out.as_ref()).unwrap(), counts)
    }

    #[test]
    fn masks_nested_paths_and_array_elements_and_nothing_else() {
        let dob = bson::DateTime::from_millis(631_152_000_000 + 40 * 86_400_000); // 1990-02-10
        let (d, counts) = run(
            "name=hash;contact.phone=redact;dob=truncate_date:year;visits.doctor=drop;seen=truncate_date;bad=truncate_date",
            rawdoc! {
                "_id": 1, "name": "Asha Rao", "contact": { "phone": "98450", "city": "BLR" }, "dob": dob,
                "visits": [{ "doctor": "Dr X", "ward": 3 }, { "ward": 4 }, [{ "doctor": "Dr Y" }]],
                "seen": "2025-07-19T10:00:00Z", "bad": "not a date", "other": { "phone": "kept" },
            },
        );
        let name = d.get_str("name").unwrap();
        assert_eq!(name.len(), 64);
        assert!(!name.contains("Asha"));
        assert_eq!(d.get_document("contact").unwrap(), &bson::doc! { "phone": "REDACTED", "city": "BLR" });
        assert_eq!(d.get_datetime("dob").unwrap().timestamp_millis(), 631_152_000_000); // 1990-01-01
        let visits = d.get_array("visits").unwrap();
        assert_eq!(visits[0].as_document().unwrap(), &bson::doc! { "ward": 3 });
        assert_eq!(visits[2].as_array().unwrap()[0].as_document().unwrap(), &bson::doc! {});
        assert_eq!(d.get_datetime("seen").unwrap().to_string(), "2025-07-01 0:00:00.0 +00:00:00");
        assert_eq!(d.get_str("bad").unwrap(), "REDACTED");
        assert_eq!(d.get_document("other").unwrap(), &bson::doc! { "phone": "kept" });
        assert_eq!(counts, MaskCounts { dropped: 2, hashed: 1, truncated: 2, redacted: 2 });
    }

    #[test]
    fn hashing_is_stable_and_keyed_so_joins_still_work() {
        let h = |doc: RawDocumentBuf, key: &[u8]| {
            let rules = MaskRules::parse("pid=hash", "_id", "ts").unwrap();
            let out = apply(&doc, &rules, &split_paths(&rules), Some(key), &mut MaskCounts::default()).unwrap();
            bson::Document::try_from(out.as_ref()).unwrap().get_str("pid").unwrap().to_string()
        };
        let oid = bson::oid::ObjectId::parse_str("65f1a2b3c4d5e6f708192a3b").unwrap();
        let a = h(rawdoc! { "pid": "65f1a2b3c4d5e6f708192a3b" }, b"key-one-0123456789");
        assert_eq!(a, h(rawdoc! { "pid": oid }, b"key-one-0123456789"), "an ObjectId and its hex text join");
        assert_ne!(a, h(rawdoc! { "pid": "65f1a2b3c4d5e6f708192a3b" }, b"key-two-0123456789"));
    }
}
