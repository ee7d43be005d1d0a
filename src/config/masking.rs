//! The `mask` column of collections.csv, parsed: which fields a collection masks and how. The rules are plain
//! configuration data; applying them to documents (and what each rule means) is [`crate::mask`]'s.
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
