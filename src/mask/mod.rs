//! Masking on first touch: per-collection rules that drop, hash, truncate or redact identifying fields while a
//! document is decoded, before anything derived from it exists anywhere (spill files, Parquet, rejects, logs).
//!
//! Rules live in the optional `mask` column of collections.csv, `;`-separated `path=rule` pairs:
//!
//! ```text
//! database,collection,timestamp_column,partition_by,key,mask
//! hims,patients,modified_at,date(created_at),,name=hash;phone=redact;dob=truncate_date:year;notes=drop
//! ```
//! | rule | effect |
//! |------|--------|
//! | `drop` | the field is removed |
//! | `hash` | HMAC-SHA-256 of the value's text with `[masking] hmac_key` (hex): stable, so joins across collections on a hashed id still work, and not reversible without the key |
//! | `truncate_date[:month\|:year]` | a date (Date, epoch ms or ISO string) becomes the first instant of its month (default) or year, UTC; a value that is not a date is redacted |
//! | `redact` | the value becomes the text `REDACTED` |
//! | `keep` | unchanged (states a reviewed decision) |
//!
//! A path is dotted (`contact.phone`); through an array it applies to every element (`visits.doctor`). The
//! key column and the timestamp column cannot be masked: dedup, reconcile and the watermark need them as they are.
pub mod apply;

pub use apply::{apply, MaskCounts};

// The rules are configuration data, parsed with collections.csv (see [`crate::config::masking`]).
pub use crate::config::masking::{MaskAction, MaskRule, MaskRules};

/// The text that stands in for a redacted value.
pub const REDACTED: &str = "REDACTED";

/// Names every collection whose `hash` rules need `[masking] hmac_key` when it is not configured or cannot be
/// resolved (for `mongolake check` and for failing exactly those collections at run time).
pub fn check_secrets(config: &crate::config::Config) -> Vec<String> {
    let needing: Vec<String> =
        config.collections.entries.iter().filter(|s| s.mask.needs_hmac_key()).map(|s| s.name()).collect();
    if needing.is_empty() {
        return Vec::new();
    }
    let problem = match &config.environment.masking.hmac_key {
        None => "[masking] hmac_key is not configured".to_string(),
        Some(r) => match r.resolve("masking.hmac_key") {
            Ok(k) if k.len() >= 16 => return Vec::new(),
            Ok(_) => "[masking] hmac_key is shorter than 16 characters".to_string(),
            Err(e) => e.to_string(),
        },
    };
    needing.into_iter().map(|n| format!("{n}: `hash` masking rules need the HMAC key, but {problem}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_refuses_bad_ones() {
        let r = MaskRules::parse(
            "name=hash; phone = redact;dob=truncate_date:year;notes=drop;a.b=truncate_date",
            "_id",
            "modified_at",
        )
        .unwrap();
        let got: Vec<(&str, MaskAction)> = r.rules.iter().map(|r| (r.path.as_str(), r.action)).collect();
        assert_eq!(
            got,
            vec![
                ("name", MaskAction::Hash),
                ("phone", MaskAction::Redact),
                ("dob", MaskAction::TruncateYear),
                ("notes", MaskAction::Drop),
                ("a.b", MaskAction::TruncateMonth)
            ]
        );
        assert!(r.needs_hmac_key());
        for (bad, needle) in [
            ("name", "field=rule"),
            ("name=scramble", "unknown rule"),
            ("_id=hash", "key"),
            ("modified_at=drop", "timestamp_column"),
            ("a=drop;a=hash", "two rules"),
            ("a=drop;a.b=hash", "overlap"),
            ("a..b=drop", "not a field path"),
        ] {
            let e = MaskRules::parse(bad, "_id", "modified_at").unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        assert!(MaskRules::parse("", "_id", "ts").unwrap().is_empty());
        assert!(MaskRules::parse("meta=hash", "meta.id", "ts").unwrap_err().contains("key"));
    }
}
