//! The layout a table's files are in: `<lake>/_mongolake/layout/<db>/<coll>.json`.
//!
//! ```json
//! { "format": 1, "database": "hims", "collection": "visits",
//!   "settings": { "partition_by": "facility_id/date(created_at)", "timezone": "Asia/Kolkata",
//!                 "key": "_id", "timestamp_column": "modified_at" },
//!   "recorded_at": "2025-07-01T02:00:09.412Z", "recorded_by": "20250701T020000123Z-3f2a",
//!   "pending": null }
//! ```
//! A public contract like the state file: a newer mongolake reads what an older one wrote (unknown members are
//! ignored, missing ones default), and a lake without the file (written before it existed) adopts the settings
//! of its next run, which records them and says so in the log.
//!
//! Each sync compares the collection's collections.csv row and the environment's time zone with the record
//! ([`differences`]); a difference fails that collection (mixing two layouts in one table doubles or hides rows)
//! until `mongolake relayout` applies it ([`crate::sync::relayout`]). A relayout is written ahead here: `pending`
//! holds the new settings (and, once the new layout's files are all written, their partitions) before the first
//! table file changes, and the settings are replaced and `pending` cleared in one write, last. While `pending` is
//! set a sync of the collection refuses to run.
//!
//! `partition_by` is kept in a canonical spelling ([`canonical_partition_by`]: `date(created_at)` for
//! `date=date(created_at)`, an empty column for `date(<timestamp_column>)`), so two spellings of one layout are
//! one layout. The time zone only matters to a table with a `date(...)` key: a change of zone for a table
//! without one is adopted silently (its files do not depend on it).
//!
//! On S3 the record is not read every night: a committed sync's state row holds [`settings_hash`] of the settings
//! it found here, and the next sync trusts that when its lease says the run before ended cleanly and its own
//! settings hash the same (see `sync::relayout::check`). A relayout's row holds no hash, so the sync after a
//! relayout reads the record.
use crate::config::{CollectionSpec, PartitionKey, PartitionSpec};
use crate::schema::names::sanitize;
use crate::sink::Lake;
use crate::transform::timezone::LakeTimeZone;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

pub const FORMAT: u32 = 1;

/// What decides where a document's row lives and which row is its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutSettings {
    /// Canonical ([`canonical_partition_by`]).
    pub partition_by: String,
    /// As `[sync] timezone` names it (`Asia/Kolkata`, `+05:30`).
    pub timezone: String,
    pub key: String,
    pub timestamp_column: String,
}

/// How far a relayout got (see [`crate::sync::relayout`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// The new layout's files are being written outside the table; the table is untouched. A rerun starts over.
    Writing,
    /// Every new file is written; they are moving into the table and the old layout's files are being removed.
    /// A rerun carries on from here: `partitions` are the new layout's, with the rows read and written.
    Moving { partitions: Vec<String>, rows_read: u64, rows_written: u64 },
}

/// A relayout written ahead of its first change to the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The relayout's id (a run id): its staging folder, its state row, its schema history entry.
    pub id: String,
    pub started_at: String,
    /// The settings the table moves to.
    pub to: LayoutSettings,
    #[serde(flatten)]
    pub phase: Phase,
}

/// The record of one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    pub format: u32,
    pub database: String,
    pub collection: String,
    /// The layout the table's files are in.
    pub settings: LayoutSettings,
    #[serde(default)]
    pub recorded_at: String,
    /// The run (or relayout) that recorded them.
    #[serde(default)]
    pub recorded_by: String,
    #[serde(default)]
    pub pending: Option<Pending>,
}

impl LayoutRecord {
    pub fn new(spec: &CollectionSpec, settings: LayoutSettings, by: &str) -> LayoutRecord {
        LayoutRecord {
            format: FORMAT,
            database: spec.database.clone(),
            collection: spec.collection.clone(),
            settings,
            recorded_at: crate::schema::text::format_millis(chrono::Utc::now().timestamp_millis()),
            recorded_by: by.to_string(),
            pending: None,
        }
    }
}

/// The record of a collection; None when the lake has none (never synced, or written before records existed).
pub async fn load(lake: &Lake, db: &str, coll: &str) -> Result<Option<LayoutRecord>> {
    let path = lake.layout().layout_record(db, coll);
    match lake.get_opt(&path).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::encode(
                format!("layout record {}", lake.display(&path)),
                format!("{e}; removing the file makes the next sync adopt the current settings"),
            )
        }),
    }
}

/// Writes the record whole (one PUT: readers see the old record or the new one).
pub async fn save(lake: &Lake, record: &LayoutRecord) -> Result<()> {
    let path = lake.layout().layout_record(&record.database, &record.collection);
    lake.put(&path, serde_json::to_vec_pretty(record).expect("serialisable").into()).await
}

/// The settings of a collections.csv row in an environment's time zone.
pub fn settings_of(spec: &CollectionSpec, tz: LakeTimeZone) -> LayoutSettings {
    LayoutSettings {
        partition_by: canonical_partition_by(&spec.partition),
        timezone: tz.to_string(),
        key: spec.key.clone(),
        timestamp_column: spec.timestamp_column.clone(),
    }
}

/// What a state row records of the settings a run found in the record ([`crate::state::StateRow::layout`]):
/// their JSON's [`short_hash`](crate::schema::text::short_hash).
pub fn settings_hash(settings: &LayoutSettings) -> String {
    crate::schema::text::short_hash(&serde_json::to_string(settings).expect("serialisable"))
}

/// `partition_by` spelled one way: keys outermost first, `/`-separated; a `date(...)` key named `date` and a
/// field key named after its path carry no alias.
pub fn canonical_partition_by(spec: &PartitionSpec) -> String {
    spec.keys
        .iter()
        .map(|k| match k {
            PartitionKey::Date { column, path } if column == "date" => format!("date({path})"),
            PartitionKey::Date { column, path } => format!("{column}=date({path})"),
            PartitionKey::Field { column, path } if *column == sanitize(&path.replace('.', "_")) => path.clone(),
            PartitionKey::Field { column, path } => format!("{column}={path}"),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `spec` with the layout of `settings` (its partition spec, key and timestamp column).
pub fn spec_with(spec: &CollectionSpec, settings: &LayoutSettings) -> Result<CollectionSpec> {
    let partition = PartitionSpec::parse(&settings.partition_by, &settings.timestamp_column)
        .map_err(|m| Error::collection(spec.name(), format!("recorded partition_by: {m}")))?;
    Ok(CollectionSpec {
        partition,
        key: settings.key.clone(),
        timestamp_column: settings.timestamp_column.clone(),
        ..spec.clone()
    })
}

/// The time zone of recorded settings.
pub fn timezone_of(name: &str, settings: &LayoutSettings) -> Result<LakeTimeZone> {
    LakeTimeZone::parse(&settings.timezone).map_err(|m| Error::collection(name, format!("recorded timezone: {m}")))
}

/// One setting that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `partition_by`, `timezone`, `key` or `timestamp_column`.
    pub setting: &'static str,
    pub old: String,
    pub new: String,
}

fn has_date_key(partition_by: &str) -> bool {
    partition_by.split('/').any(|k| k.contains("date("))
}

/// What differs from `old` (the record) to `new` (this run's settings). The time zone counts only when one of
/// the two layouts has a `date(...)` key.
pub fn differences(old: &LayoutSettings, new: &LayoutSettings) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |setting, a: &str, b: &str| {
        if a != b {
            out.push(Difference { setting, old: a.to_string(), new: b.to_string() });
        }
    };
    push("partition_by", &old.partition_by, &new.partition_by);
    if has_date_key(&old.partition_by) || has_date_key(&new.partition_by) {
        push("timezone", &old.timezone, &new.timezone);
    }
    push("key", &old.key, &new.key);
    push("timestamp_column", &old.timestamp_column, &new.timestamp_column);
    out
}

/// `partition_by was `a`, now `b`; timezone was ...`: the differences for a message.
pub fn describe(diffs: &[Difference]) -> String {
    diffs
        .iter()
        .map(|d| {
            let where_ = if d.setting == "timezone" { "[sync] timezone" } else { d.setting };
            format!("{where_} was `{}`, now `{}`", d.old, d.new)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(partition_by: &str, key: &str) -> CollectionSpec {
        let text = format!(
            "database,collection,timestamp_column,partition_by,key\nhims,visits,modified_at,{partition_by},{key}\n"
        );
        let file = crate::config::collections::CollectionsFile::parse(std::path::Path::new("collections.csv"), &text)
            .expect("a valid file");
        file.entries[0].clone()
    }

    #[test]
    fn spellings_of_one_layout_are_one_layout() {
        let tz = LakeTimeZone::parse("Asia/Kolkata").unwrap();
        let a = settings_of(&spec("facility_id/date(created_at)", ""), tz);
        let b = settings_of(&spec("facility_id=facility_id/date=date(created_at)", "_id"), tz);
        assert_eq!(a, b);
        assert_eq!(a.partition_by, "facility_id/date(created_at)");
        assert_eq!(settings_of(&spec("", ""), tz).partition_by, "date(modified_at)");
        assert_eq!(
            settings_of(&spec("day=date(created_at)/address.city", ""), tz).partition_by,
            "day=date(created_at)/address.city"
        );
        assert_eq!(settings_of(&spec("city=address.city", ""), tz).partition_by, "city=address.city");
        // The canonical text parses back to the same spec.
        for text in ["day=date(created_at)/address.city", "city=address.city/date(created_at)", "facility_id"] {
            let s = spec(text, "");
            let back = spec_with(&s, &settings_of(&s, tz)).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn differences_name_old_and_new_and_ignore_a_zone_no_key_uses() {
        let (ist, utc) = (LakeTimeZone::parse("Asia/Kolkata").unwrap(), LakeTimeZone::parse("UTC").unwrap());
        let old = settings_of(&spec("facility_id/date(created_at)", ""), ist);
        assert!(differences(&old, &old).is_empty());
        let new = settings_of(&spec("date(created_at)", "mrn"), utc);
        let d = differences(&old, &new);
        assert_eq!(d.iter().map(|d| d.setting).collect::<Vec<_>>(), ["partition_by", "timezone", "key"]);
        assert_eq!(
            describe(&d),
            "partition_by was `facility_id/date(created_at)`, now `date(created_at)`; [sync] timezone was \
             `Asia/Kolkata`, now `UTC`; key was `_id`, now `mrn`"
        );
        // A table partitioned by facility only does not depend on the zone.
        let a = settings_of(&spec("facility_id", ""), ist);
        assert!(differences(&a, &settings_of(&spec("facility_id", ""), utc)).is_empty());
    }

    #[test]
    fn the_record_round_trips_and_older_or_newer_files_read() {
        let tz = LakeTimeZone::parse("+05:30").unwrap();
        let s = spec("date(created_at)", "");
        let mut r = LayoutRecord::new(&s, settings_of(&s, tz), "run1");
        assert_eq!(r.settings.timezone, "+05:30");
        r.pending = Some(Pending {
            id: "r2".into(),
            started_at: "t".into(),
            to: settings_of(&s, LakeTimeZone::parse("UTC").unwrap()),
            phase: Phase::Moving { partitions: vec!["date=2025-07-01".into()], rows_read: 3, rows_written: 3 },
        });
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"phase\":\"moving\""), "{json}");
        assert_eq!(serde_json::from_str::<LayoutRecord>(&json).unwrap(), r);
        let minimal = r#"{"format":1,"database":"hims","collection":"visits","future":true,
            "settings":{"partition_by":"date(created_at)","timezone":"UTC","key":"_id","timestamp_column":"ts"}}"#;
        let m: LayoutRecord = serde_json::from_str(minimal).unwrap();
        assert_eq!((m.pending, m.settings.timestamp_column.as_str()), (None, "ts"));
    }
}
