//! `collections.csv`: which collections to sync, their timestamp column and partitioning.
//!
//! ```text
//! database,collection,timestamp_column,partition_by[,key]
//! hims,patients,modified_at,date(created_at)
//! hims,visits,modified_at,facility_id/date(created_at)
//! ```
//! Blank lines and lines starting with `#` are ignored. A malformed row becomes a [`RowError`] carrying its line
//! number: that collection is skipped and reported, the others still run.
use crate::schema::names::sanitize;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The maximum number of partition keys (`a/b/c`).
pub const MAX_PARTITION_KEYS: usize = 3;

/// One partition key, outermost first in [`PartitionSpec::keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionKey {
    /// The value of a field path, as text.
    Field { column: String, path: String },
    /// The calendar date (`YYYY-MM-DD`) of a timestamp field in the environment's time zone.
    Date { column: String, path: String },
}

impl PartitionKey {
    pub fn column(&self) -> &str {
        match self {
            PartitionKey::Field { column, .. } | PartitionKey::Date { column, .. } => column,
        }
    }
    pub fn path(&self) -> &str {
        match self {
            PartitionKey::Field { path, .. } | PartitionKey::Date { path, .. } => path,
        }
    }
}

/// The parsed `partition_by` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    pub keys: Vec<PartitionKey>,
}

impl PartitionSpec {
    /// Parses `facility_id/date(created_at)`, `day=date(ts)`, `address.city`. Empty means `date(<timestamp>)`.
    pub fn parse(text: &str, timestamp_column: &str) -> std::result::Result<PartitionSpec, String> {
        let text = text.trim();
        let text = if text.is_empty() { format!("date({timestamp_column})") } else { text.to_string() };
        let parts: Vec<&str> = text.split('/').map(str::trim).collect();
        if parts.len() > MAX_PARTITION_KEYS {
            return Err(format!(
                "partition_by `{text}` has {} keys; at most {MAX_PARTITION_KEYS} are allowed",
                parts.len()
            ));
        }
        let mut keys = Vec::new();
        for part in parts {
            if part.is_empty() {
                return Err(format!("partition_by `{text}` has an empty key (two `/` in a row?)"));
            }
            let (alias, expr) = match part.split_once('=') {
                Some((a, e)) => (Some(a.trim()), e.trim()),
                None => (None, part),
            };
            let key = if let Some(inner) = expr.strip_prefix("date(").and_then(|r| r.strip_suffix(')')) {
                let path = check_path(inner.trim(), part)?;
                let column = match alias {
                    Some(a) => check_alias(a, part)?,
                    None => "date".to_string(),
                };
                PartitionKey::Date { column, path }
            } else if expr.contains('(') || expr.contains(')') {
                return Err(format!(
                    "partition key `{part}` is not understood: use a field path such as `facility_id` or `date(FIELD)`"
                ));
            } else {
                let path = check_path(expr, part)?;
                let column = match alias {
                    Some(a) => check_alias(a, part)?,
                    None => sanitize(&path.replace('.', "_")),
                };
                PartitionKey::Field { column, path }
            };
            if keys.iter().any(|k: &PartitionKey| k.column() == key.column()) {
                return Err(format!(
                    "partition_by `{text}` uses the column name `{}` twice; alias one as `NAME=...`",
                    key.column()
                ));
            }
            keys.push(key);
        }
        Ok(PartitionSpec { keys })
    }
}

fn check_path(path: &str, part: &str) -> std::result::Result<String, String> {
    if path.is_empty() || path.split('.').any(str::is_empty) || path.starts_with('$') {
        return Err(format!("partition key `{part}` has an invalid field path `{path}`"));
    }
    Ok(path.to_string())
}

fn check_alias(alias: &str, part: &str) -> std::result::Result<String, String> {
    let clean = sanitize(alias);
    if clean != alias {
        return Err(format!(
            "partition key `{part}`: alias `{alias}` is not a valid lake column name (lower-case a-z, 0-9, _); \
             try `{clean}`"
        ));
    }
    Ok(clean)
}

/// One valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    pub database: String,
    pub collection: String,
    pub timestamp_column: String,
    pub partition: PartitionSpec,
    /// The field that identifies a document across versions (default `_id`).
    pub key: String,
    /// Masking rules applied to every document as it is read (the optional `mask` column).
    pub mask: super::masking::MaskRules,
    /// 1-based line in collections.csv, for messages.
    pub line: usize,
}

impl CollectionSpec {
    /// `database.collection`, the name used by `--only`, logs and reports.
    pub fn name(&self) -> String {
        format!("{}.{}", self.database, self.collection)
    }

    /// Top-level fields that live in the partition path instead of the files (`facility_id` of
    /// `partition_by = facility_id/...`). Nested paths and `date(...)` keys stay in the files too.
    pub fn path_fields(&self) -> Vec<String> {
        self.partition
            .keys
            .iter()
            .filter_map(|k| match k {
                PartitionKey::Field { path, .. } if !path.contains('.') => Some(path.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A row that could not be used: reported, its collection skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: usize,
    /// `db.coll` when the row got that far, for the report.
    pub name: Option<String>,
    pub message: String,
}

/// The whole file: valid rows and rejected rows.
#[derive(Debug, Clone)]
pub struct CollectionsFile {
    pub path: PathBuf,
    pub entries: Vec<CollectionSpec>,
    pub errors: Vec<RowError>,
}

const REQUIRED: [&str; 4] = ["database", "collection", "timestamp_column", "partition_by"];
const OPTIONAL: [&str; 2] = ["key", "mask"];

impl CollectionsFile {
    pub fn load(path: &Path) -> Result<CollectionsFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                path,
                None,
                format!("cannot read the collections list ({e}); create it with the header `{}`", REQUIRED.join(",")),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of collections.csv. A bad header is fatal (nothing could be trusted); bad rows are not.
    pub fn parse(path: &Path, text: &str) -> Result<CollectionsFile> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .comment(Some(b'#'))
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut header: Option<Vec<String>> = None;
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| line_of(text, p.byte())).unwrap_or(0);
                    errors.push(RowError { line, name: None, message: format!("unreadable CSV row: {e}") });
                    continue;
                }
            };
            let line = record.position().map(|p| line_of(text, p.byte())).unwrap_or(0);
            if record.iter().all(str::is_empty) {
                continue;
            }
            let Some(cols) = &header else {
                let cols: Vec<String> = record.iter().map(|c| c.to_ascii_lowercase()).collect();
                for req in REQUIRED {
                    if !cols.iter().any(|c| c == req) {
                        return Err(Error::config(
                            path,
                            Some(line),
                            format!(
                                "header lacks the column `{req}`; expected `{}` (optional: {})",
                                REQUIRED.join(","),
                                OPTIONAL.join(",")
                            ),
                        ));
                    }
                }
                if let Some(bad) =
                    cols.iter().find(|c| !REQUIRED.contains(&c.as_str()) && !OPTIONAL.contains(&c.as_str()))
                {
                    return Err(Error::config(
                        path,
                        Some(line),
                        format!(
                            "unknown column `{bad}` in the header; known columns: {}, {}",
                            REQUIRED.join(", "),
                            OPTIONAL.join(", ")
                        ),
                    ));
                }
                header = Some(cols);
                continue;
            };
            match parse_row(cols, &record, line) {
                Ok(spec) => {
                    if let Some(prev) = entries.iter().find(|e: &&CollectionSpec| e.name() == spec.name()) {
                        errors.push(RowError {
                            line,
                            name: Some(spec.name()),
                            message: format!(
                                "`{}` is listed twice (first on line {}); remove one row",
                                spec.name(),
                                prev.line
                            ),
                        });
                    } else {
                        entries.push(spec);
                    }
                }
                Err(err) => errors.push(err),
            }
        }
        if header.is_none() {
            return Err(Error::config(
                path,
                None,
                format!("the file is empty; it needs the header `{}`", REQUIRED.join(",")),
            ));
        }
        Ok(CollectionsFile { path: path.to_path_buf(), entries, errors })
    }
}

/// 1-based line of the record starting at a byte offset. The csv crate's own line count skips comments and
/// blank lines, and a record's offset is where reading began (before any comments it skipped), so step over those.
fn line_of(text: &str, byte: u64) -> usize {
    let end = (byte as usize).min(text.len());
    let first = text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count();
    text.lines()
        .enumerate()
        .skip(first)
        .find(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, _)| i + 1)
        .unwrap_or(first + 1)
}

fn parse_row(
    cols: &[String],
    record: &csv::StringRecord,
    line: usize,
) -> std::result::Result<CollectionSpec, RowError> {
    let get = |name: &str| cols.iter().position(|c| c == name).and_then(|i| record.get(i)).unwrap_or("").to_string();
    let database = get("database");
    let collection = get("collection");
    let name = (!database.is_empty() && !collection.is_empty()).then(|| format!("{database}.{collection}"));
    let fail = |message: String| RowError { line, name: name.clone(), message };
    if record.len() > cols.len() {
        return Err(fail(format!(
            "row has {} fields but the header has {}; quote values that contain commas",
            record.len(),
            cols.len()
        )));
    }
    if database.is_empty() || collection.is_empty() {
        return Err(fail("`database` and `collection` must not be empty".into()));
    }
    for (what, v) in [("database", &database), ("collection", &collection)] {
        if v.contains('/') || v.contains('\0') || v.starts_with('$') {
            return Err(fail(format!("{what} name `{v}` is not a valid MongoDB name")));
        }
    }
    let timestamp_column = get("timestamp_column");
    if timestamp_column.is_empty() {
        return Err(fail(
            "`timestamp_column` is empty; name the field that records when a document last changed".into(),
        ));
    }
    let partition = PartitionSpec::parse(&get("partition_by"), &timestamp_column).map_err(fail)?;
    let key = get("key");
    let key = if key.is_empty() { "_id".to_string() } else { key };
    let mask = super::masking::MaskRules::parse(&get("mask"), &key, &timestamp_column).map_err(fail)?;
    Ok(CollectionSpec { database, collection, timestamp_column, partition, key, mask, line })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> CollectionsFile {
        CollectionsFile::parse(Path::new("collections.csv"), text).unwrap()
    }

    #[test]
    fn parses_rows_comments_and_defaults() {
        let f = parse("database,collection,timestamp_column,partition_by\n# comment\n\nhims,patients,modified_at,\nhims,visits,modified_at,facility_id/day=date(created_at)\n");
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.entries.len(), 2);
        assert_eq!(
            f.entries[0].partition.keys,
            vec![PartitionKey::Date { column: "date".into(), path: "modified_at".into() }]
        );
        assert_eq!(f.entries[0].line, 4);
        assert_eq!(
            f.entries[1].partition.keys[0],
            PartitionKey::Field { column: "facility_id".into(), path: "facility_id".into() }
        );
        assert_eq!(
            f.entries[1].partition.keys[1],
            PartitionKey::Date { column: "day".into(), path: "created_at".into() }
        );
        assert_eq!(f.entries[1].key, "_id");
    }

    #[test]
    fn bad_rows_are_reported_with_line_and_skipped() {
        let f = parse("database,collection,timestamp_column,partition_by,key\nhims,a,ts,a/b/c/d\nhims,b,,x\nhims,c,ts,date(\nhims,d,ts,x,y,z\nhims,ok,ts,address.city,mrn\nhims,ok,ts,\n");
        let lines: Vec<usize> = f.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 7], "{:?}", f.errors);
        assert!(f.errors[0].message.contains("at most 3"));
        assert!(f.errors[4].message.contains("listed twice"));
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries[0].key, "mrn");
        assert_eq!(f.entries[0].partition.keys[0].column(), "address_city");
    }

    #[test]
    fn bad_header_is_fatal() {
        let err = CollectionsFile::parse(Path::new("c.csv"), "database,collection,partition_by\n").unwrap_err();
        assert!(err.to_string().contains("timestamp_column"), "{err}");
        let err =
            CollectionsFile::parse(Path::new("c.csv"), "database,collection,timestamp_column,partition_by,colour\n")
                .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn duplicate_partition_columns_are_rejected() {
        assert!(PartitionSpec::parse("date(a)/date(b)", "ts").unwrap_err().contains("twice"));
        assert!(PartitionSpec::parse("date(a)/d2=date(b)", "ts").is_ok());
        assert!(PartitionSpec::parse("Bad Name=date(a)", "ts").unwrap_err().contains("bad_name"));
    }
}
