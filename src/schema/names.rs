//! Athena-safe column names: lower-case `[a-z0-9_]`, never empty, never starting with a digit, unique.
//!
//! `Patient Name` becomes `patient_name`; when two source fields map to the same name (`Name` and `name`), the
//! one seen later gets a suffix (`name_1`). Once assigned, a name is pinned by the schema stored in the lake, so it
//! never moves between runs.

/// Maps a source field name to a column name (not yet made unique).
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_underscore = false;
    for c in name.chars() {
        let mapped = match c {
            'a'..='z' | '0'..='9' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            '_' => Some('_'),
            _ => None,
        };
        match mapped {
            Some('_') | None => {
                // Keep a leading underscore (`_id`), collapse runs of separators.
                if !last_underscore {
                    out.push('_');
                }
                last_underscore = true;
            }
            Some(c) => {
                out.push(c);
                last_underscore = false;
            }
        }
    }
    let trimmed = out.trim_end_matches('_');
    let mut out = if trimmed.is_empty() || trimmed.chars().all(|c| c == '_') {
        // `_` alone or only punctuation/non-ASCII: keep something stable and readable.
        if name.starts_with('_') && trimmed.len() > 1 {
            trimmed.to_string()
        } else {
            "col".to_string()
        }
    } else {
        trimmed.to_string()
    };
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "c_");
    }
    out
}

/// Returns `base`, or `base_1`, `base_2`, ... whichever is not taken.
pub fn unique(base: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(base) {
        return base.to_string();
    }
    (1..).map(|i| format!("{base}_{i}")).find(|c| !taken(c)).expect("an unused name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes() {
        assert_eq!(sanitize("Patient Name"), "patient_name");
        assert_eq!(sanitize("_id"), "_id");
        assert_eq!(sanitize("a.b-c  d"), "a_b_c_d");
        assert_eq!(sanitize("1st visit"), "c_1st_visit");
        assert_eq!(sanitize("ज्वर"), "col");
        assert_eq!(sanitize("ज्वर_x"), "_x");
        assert_eq!(sanitize(""), "col");
        assert_eq!(sanitize("CamelCase"), "camelcase");
        assert_eq!(sanitize("trailing__"), "trailing");
    }

    #[test]
    fn uniques() {
        let taken = ["name", "name_1"];
        assert_eq!(unique("name", |c| taken.contains(&c)), "name_2");
        assert_eq!(unique("other", |c| taken.contains(&c)), "other");
    }
}
