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

/// What a rule does to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskAction {
    Drop,
    Hash,
    TruncateMonth,
    TruncateYear,
    Redact,
    Keep,
}

impl MaskAction {
    pub fn name(self) -> &'static str {
        match self {
            MaskAction::Drop => "drop",
            MaskAction::Hash => "hash",
            MaskAction::TruncateMonth | MaskAction::TruncateYear => "truncate_date",
            MaskAction::Redact => "redact",
            MaskAction::Keep => "keep",
        }
    }
}

/// One `path=rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskRule {
    pub path: String,
    pub action: MaskAction,
}

/// A collection's rules (empty: nothing masked, documents pass through untouched).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskRules {
    pub rules: Vec<MaskRule>,
}

/// The text that stands in for a redacted value.
pub const REDACTED: &str = "REDACTED";

impl MaskRules {
    /// Parses the `mask` column. `key` and `timestamp` are the collection's key and timestamp fields.
    pub fn parse(text: &str, key: &str, timestamp: &str) -> Result<MaskRules, String> {
        let mut rules: Vec<MaskRule> = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((path, rule)) = part.split_once('=') else {
                return Err(format!(
                    "mask `{part}`: write `field=rule` (rules: drop, hash, truncate_date, redact, keep)"
                ));
            };
            let (path, rule) = (path.trim(), rule.trim());
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!("mask `{part}`: `{path}` is not a field path"));
            }
            let action = match rule {
                "drop" => MaskAction::Drop,
                "hash" => MaskAction::Hash,
                "truncate_date" | "truncate_date:month" => MaskAction::TruncateMonth,
                "truncate_date:year" => MaskAction::TruncateYear,
                "redact" => MaskAction::Redact,
                "keep" => MaskAction::Keep,
                other => {
                    return Err(format!(
                        "mask `{part}`: unknown rule `{other}`; use drop, hash, truncate_date[:month|:year], redact or keep"
                    ))
                }
            };
            for (field, what) in [(key, "key"), (timestamp, "timestamp_column")] {
                if path == field || field.starts_with(&format!("{path}.")) {
                    return Err(format!(
                        "mask `{part}`: `{field}` is the collection's {what}; it cannot be masked (dedup and the \
                         watermark need it); mask another field or choose another {what}"
                    ));
                }
            }
            if rules.iter().any(|r| r.path == path) {
                return Err(format!("mask: `{path}` has two rules; keep one"));
            }
            if let Some(r) = rules
                .iter()
                .find(|r| path.starts_with(&format!("{}.", r.path)) || r.path.starts_with(&format!("{path}.")))
            {
                return Err(format!(
                    "mask: `{path}` and `{}` overlap; a rule covers everything below its path",
                    r.path
                ));
            }
            rules.push(MaskRule { path: path.to_string(), action });
        }
        Ok(MaskRules { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.iter().all(|r| r.action == MaskAction::Keep)
    }

    pub fn needs_hmac_key(&self) -> bool {
        self.rules.iter().any(|r| r.action == MaskAction::Hash)
    }
}

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
