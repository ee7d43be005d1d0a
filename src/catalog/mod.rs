//! Table definitions for Athena and the Glue Data Catalog, derived from the lake itself.
//!
//! Athena reads a table through one declared schema: a column declared `bigint` over a file that holds text
//! fails the query (`HIVE_BAD_DATA`), and a column a file has but the table lacks is invisible. The lake's
//! schema is already pinned in `_mongolake/schema/<db>/<coll>.json` (see [`crate::schema::registry`]), and every
//! Parquet file holds exactly the columns of [`crate::schema::file_type`]; this module turns that one source of
//! truth into the table definition, so the declaration and the files can never drift apart:
//!
//! ```text
//!  schema/<db>/<coll>.json ──► TableDef ──► athena::render ──► schema/<db>/<coll>.athena.sql   CREATE EXTERNAL TABLE
//!  list_partitions(db, coll) ──┘        └─► glue::render   ──► schema/<db>/<coll>.glue.json    aws glue create-table
//! ```
//!
//! **Partitions are projected, not registered.** The table carries Athena partition projection properties
//! (`projection.*`): `date(...)` keys are `date` projections from the earliest date in the lake, field keys are
//! `enum` projections listing the values seen (or `injected` when there are too many, see
//! [`CatalogConfig::enum_max_values`]). New partitions are then visible without `MSCK REPAIR TABLE`, crawlers or
//! `ALTER TABLE ADD PARTITION`. A date projection cannot show `__HIVE_DEFAULT_PARTITION__` (documents without a
//! date); the DDL says how many rows that hides.
//!
//! **Deterministic.** The text depends only on the stored schema, the partitions present and the config (no
//! clock), so [`publish`] rewrites the files only when the definition really changed, and an operator can diff
//! them to see what to re-apply. Applying a changed schema is `DROP TABLE` then the new `CREATE`: the table is
//! `EXTERNAL`, so dropping it never touches the data.
pub mod athena;
pub mod glue;
pub mod remote;
pub mod types;
pub mod views;

pub use remote::Glue;

pub use crate::config::CatalogConfig;

use crate::config::{CollectionSpec, PartitionKey};
use crate::schema::names::sanitize;
use crate::schema::registry::StoredSchema;
use crate::schema::{file_type, LakeType};
use crate::sink::Lake;
use crate::transform::partition::HIVE_NULL;
use crate::{Error, Result};
use object_store::path::Path;
use std::collections::BTreeSet;

/// The end of every date projection's range. Projection evaluates `NOW` in UTC, while date partitions are
/// calendar dates in the environment's time zone: east of UTC (Asia/Kolkata), today's partition exists hours
/// before UTC's today does, and a plain `NOW` would hide it. A projected day without data just reads nothing.
pub const DATE_RANGE_END: &str = "NOW+1DAYS";

/// One table, ready to render as Athena DDL ([`athena::render`]) or a Glue `TableInput` ([`glue::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Athena/Glue database.
    pub database: String,
    /// Table name: the sanitised collection name with the configured prefix.
    pub name: String,
    /// `db.coll` of the MongoDB collection.
    pub source: String,
    pub schema_version: u64,
    /// The table's folder (`s3://bucket/prefix/db/coll/`, or `file:///...` for a local lake), ending in `/`.
    pub location: String,
    /// Data columns, in file order.
    pub columns: Vec<Column>,
    /// The column of the collection's key (`_id` by default), when it is a top-level column.
    pub key: Option<String>,
    /// Partition keys, outermost first.
    pub partition_keys: Vec<PartitionColumn>,
    /// Partitions a date projection cannot show (a `date(...)` key is `__HIVE_DEFAULT_PARTITION__`).
    pub hidden: Hidden,
    /// Every partition path of the table (`k1=v1/k2=v2`, escaped as in the lake), sorted.
    pub partitions: Vec<String>,
}

/// A data column: its lake name, the MongoDB field it comes from and its lake type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub source: String,
    pub ty: LakeType,
}

/// A partition key (always declared `string`: `date(...)` values are `YYYY-MM-DD` text in the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionColumn {
    pub name: String,
    /// The field path it is computed from (`created_at` of `date(created_at)`).
    pub source: String,
    pub projection: Projection,
}

/// How Athena finds the values of one partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Every day from `start` (the earliest date partition, None when there is none yet) to [`DATE_RANGE_END`].
    Date { start: Option<String>, end: Option<String> },
    /// Exactly these values (unescaped, sorted); `__HIVE_DEFAULT_PARTITION__` included when present. Athena
    /// escapes a projected value into the path the way Hive (and mongolake) does, so `DEL/2` finds `DEL%2F2`.
    Enum { values: Vec<String> },
    /// Any value, given by each query (`WHERE key = '...'` is then required); `distinct` values seen.
    Injected { distinct: usize, reason: String },
}

/// Partitions (and the rows in them) that no projection reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hidden {
    /// Relative partition paths (`facility_id=B/date=__HIVE_DEFAULT_PARTITION__`), sorted.
    pub partitions: Vec<String>,
    /// Rows in them, when counted (their files' footers).
    pub rows: Option<u64>,
}

impl TableDef {
    /// Builds the definition from the stored schema and the partition paths present (as
    /// [`Lake::list_partitions`] returns them). Pure: [`describe`] adds the I/O.
    pub fn new(
        spec: &CollectionSpec,
        schema: &StoredSchema,
        catalog: &CatalogConfig,
        lake_url: &str,
        partitions: &[String],
    ) -> TableDef {
        let columns = match file_type(&schema.document, &spec.path_fields()) {
            LakeType::Struct { fields } => {
                fields.into_iter().map(|f| Column { name: f.column, source: f.source, ty: f.ty }).collect()
            }
            _ => Vec::new(),
        };
        let keys = &spec.partition.keys;
        // Values per key level; None is the null partition.
        let mut seen: Vec<BTreeSet<Option<String>>> = vec![BTreeSet::new(); keys.len()];
        let mut hidden = Vec::new();
        let mut present = Vec::new();
        for rel in partitions {
            let Some(values) = crate::transform::partition::parse_relative_path(rel, keys) else { continue };
            present.push(rel.clone());
            for (level, v) in values.iter().enumerate() {
                seen[level].insert(v.clone());
            }
            if keys.iter().zip(&values).any(|(k, v)| matches!(k, PartitionKey::Date { .. }) && v.is_none()) {
                hidden.push(rel.clone());
            }
        }
        hidden.sort();
        let partition_keys = keys
            .iter()
            .zip(seen)
            .map(|(key, values)| PartitionColumn {
                name: key.column().to_string(),
                source: key.path().to_string(),
                projection: projection(key, values, catalog.enum_max_values),
            })
            .collect();
        TableDef {
            database: catalog.database.clone().unwrap_or_else(|| sanitize(&spec.database)),
            name: format!("{}{}", catalog.table_prefix, sanitize(&spec.collection)),
            source: spec.name(),
            schema_version: schema.version,
            location: format!("{}/{}/{}/", lake_url.trim_end_matches('/'), spec.database, spec.collection),
            key: columns.iter().find(|c| c.source == spec.key).map(|c| c.name.clone()),
            columns,
            partition_keys,
            hidden: Hidden { partitions: hidden, rows: None },
            partitions: {
                present.sort();
                present
            },
        }
    }

    /// The Athena DDL (see [`athena::render`]).
    pub fn to_athena_sql(&self) -> String {
        athena::render(self)
    }

    /// The Glue `TableInput` JSON (see [`glue::render`]).
    pub fn to_glue_json(&self) -> String {
        glue::render(self)
    }

    /// `projection.*` table properties, in a fixed order (shared by the Athena DDL and the Glue parameters).
    pub fn projection_properties(&self) -> Vec<(String, String)> {
        if self.partition_keys.is_empty() {
            return Vec::new();
        }
        let mut out = vec![("projection.enabled".to_string(), "true".to_string())];
        for k in &self.partition_keys {
            let p = |suffix: &str| format!("projection.{}.{suffix}", k.name);
            match &k.projection {
                Projection::Date { start, .. } => {
                    // With no dated partition yet, start at yesterday: the range must be non-empty and the
                    // definition is rewritten (and worth re-applying) once real dates arrive.
                    let start = start.clone().unwrap_or_else(|| "NOW-1DAYS".to_string());
                    out.push((p("type"), "date".into()));
                    out.push((p("format"), "yyyy-MM-dd".into()));
                    out.push((p("range"), format!("{start},{DATE_RANGE_END}")));
                    out.push((p("interval"), "1".into()));
                    out.push((p("interval.unit"), "DAYS".into()));
                }
                Projection::Enum { values } => {
                    out.push((p("type"), "enum".into()));
                    out.push((p("values"), values.join(",")));
                }
                Projection::Injected { .. } => out.push((p("type"), "injected".into())),
            }
        }
        out
    }
}

fn projection(key: &PartitionKey, values: BTreeSet<Option<String>>, enum_max_values: usize) -> Projection {
    match key {
        PartitionKey::Date { .. } => {
            let dates: Vec<&String> = values.iter().flatten().collect();
            Projection::Date { start: dates.first().map(|d| d.to_string()), end: dates.last().map(|d| d.to_string()) }
        }
        PartitionKey::Field { .. } => {
            // Sorted, the null partition last.
            let has_null = values.contains(&None);
            let mut values: Vec<String> = values.into_iter().flatten().collect();
            if has_null {
                values.push(HIVE_NULL.to_string());
            }
            let unlistable = values.iter().find(|v| v.contains(',') || v.chars().any(char::is_control));
            if let Some(v) = unlistable {
                let reason =
                    format!("the value {v:?} cannot be listed in an enum projection (comma or control character)");
                Projection::Injected { distinct: values.len(), reason }
            } else if values.len() > enum_max_values {
                let reason = format!("{} values seen, more than enum_max_values = {enum_max_values}", values.len());
                Projection::Injected { distinct: values.len(), reason }
            } else {
                Projection::Enum { values }
            }
        }
    }
}

/// Where the Athena DDL is kept: next to the schema, `<lake>/_mongolake/schema/<db>/<coll>.athena.sql`.
pub fn athena_path(lake: &Lake, db: &str, coll: &str) -> Path {
    lake.layout().athena_ddl(db, coll)
}

/// Where the Glue `TableInput` is kept: `<lake>/_mongolake/schema/<db>/<coll>.glue.json`.
pub fn glue_path(lake: &Lake, db: &str, coll: &str) -> Path {
    lake.layout().glue_table(db, coll)
}

/// Builds the table definition of a collection from the lake: its partitions (`partitions`, sorted, when the
/// caller knows them: a sync that just wrote the table; else listed), and the rows of the partitions a date
/// projection cannot show (read from those files' footers only; they hold the documents without a date, usually
/// few).
pub async fn describe(
    lake: &Lake,
    spec: &CollectionSpec,
    schema: &StoredSchema,
    catalog: &CatalogConfig,
    partitions: Option<&[String]>,
) -> Result<TableDef> {
    let partitions = lake.partitions_or_list(&spec.database, &spec.collection, partitions).await?;
    let mut def = TableDef::new(spec, schema, catalog, lake.url(), &partitions);
    let mut rows = 0u64;
    for rel in &def.hidden.partitions {
        let path = lake.partition_file(&spec.database, &spec.collection, rel);
        let Some(bytes) = lake.get_opt(&path).await? else { continue };
        rows +=
            row_count(bytes).map_err(|e| Error::encode(format!("reading the footer of {}", lake.display(&path)), e))?;
    }
    def.hidden.rows = Some(rows);
    Ok(def)
}

fn row_count(bytes: bytes::Bytes) -> std::result::Result<u64, parquet::errors::ParquetError> {
    use parquet::file::reader::FileReader;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(bytes)?;
    Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
}

/// Keeps the collection's table definitions in step with the lake: the Athena DDL, Glue `TableInput` and BI
/// views next to its schema (each rewritten only when it differs from what is stored there, or from what
/// `recorded` says the last committed run left there: see [`Published::definitions`]) and, in Glue mode,
/// the Data Catalog itself ([`remote`]). Call it after the schema is saved and before the watermark, so the
/// definition never names a type the files lack and a catalog failure leaves the watermark where it was.
///
/// Returns what changed: the definition files while there is no Glue mode (the table then needs re-applying by
/// hand), and in Glue mode what was applied to the Data Catalog. Without Glue mode nothing here fails the collection: the files are derived (`mongolake ddl` rebuilds
/// them) and a failure only warns. In Glue mode a failure to read the lake or to apply the catalog is returned,
/// so the collection fails loudly and the next run (from the old watermark) applies it again. A collection
/// without columns yet has no valid table definition: nothing is written.
pub async fn publish(
    lake: &Lake,
    spec: &CollectionSpec,
    schema: &StoredSchema,
    catalog: &CatalogConfig,
    glue: Option<&Glue>,
    partitions: Option<&[String]>,
    recorded: &str,
) -> Result<Published> {
    let def = match describe(lake, spec, schema, catalog, partitions).await {
        Ok(def) => def,
        Err(e) if glue.is_none() => {
            tracing::warn!(collection = %spec.name(), error = %e, "Could not update the table definition next to the schema");
            return Ok(Published::default());
        }
        Err(e) => return Err(e),
    };
    if def.columns.is_empty() {
        return Ok(Published::default());
    }
    let mut applied = None;
    let views = views::views(&def);
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    if let Some(glue) = glue {
        let desired = remote::Applied::desired(&def, &views);
        let last = remote::last_applied(lake, db, coll).await?;
        if last.as_ref() != Some(&desired) {
            let changes = glue.apply(&def, &spec.partition.keys, &desired, last.as_ref()).await?;
            remote::record_applied(lake, db, coll, &desired).await?;
            tracing::info!(
                collection = %spec.name(),
                table = %format!("{}.{}", def.database, def.name),
                table_change = changes.table.unwrap_or("none"),
                partitions_added = changes.partitions_added,
                partitions_deleted = changes.partitions_deleted,
                partitions_updated = changes.partitions_updated,
                views = changes.views,
                "Glue Data Catalog updated"
            );
            applied = Some(changes);
        }
    }
    let files = [
        ("athena", athena_path(lake, db, coll), def.to_athena_sql()),
        ("glue", glue_path(lake, db, coll), def.to_glue_json()),
        ("views", lake.layout().views_sql(db, coll), views::render(&def, &views)),
    ];
    let mut changed = false;
    let mut left = Vec::with_capacity(files.len());
    for (kind, path, text) in files {
        let hash = crate::schema::text::short_hash(&text);
        let write = async {
            match recorded_hash(recorded, kind) {
                // as the last committed run left it: neither read nor written
                Some(h) if h == hash => return Ok::<bool, Error>(false),
                // changed since: written without reading the old text first
                Some(_) => {}
                None => {
                    if lake.get_opt(&path).await?.as_deref() == Some(text.as_bytes()) {
                        return Ok(false);
                    }
                }
            }
            lake.put(&path, text.into_bytes().into()).await?;
            Ok(true)
        };
        match write.await {
            Ok(c) => {
                changed |= c;
                left.push(format!("{kind}:{hash}"));
            }
            // (not recorded: the next run reads the file and compares)
            Err(e) => {
                tracing::warn!(collection = %spec.name(), error = %e, "Could not update the table definition next to the schema");
            }
        }
    }
    if changed && glue.is_none() {
        tracing::info!(
            collection = %spec.name(),
            table = %format!("{}.{}", def.database, def.name),
            file = %lake.display(&athena_path(lake, db, coll)),
            "Table definition changed; re-apply it in Athena (DROP TABLE, then the new CREATE)"
        );
    }
    Ok(Published {
        files_changed: changed && glue.is_none(),
        glue: applied.filter(|c| !c.is_empty()),
        definitions: left.join(" "),
    })
}

/// The hash `recorded` (`kind:hash` pairs, space-separated) gives for `kind`.
fn recorded_hash<'a>(recorded: &'a str, kind: &str) -> Option<&'a str> {
    recorded.split(' ').find_map(|pair| pair.strip_prefix(kind)?.strip_prefix(':'))
}

/// What [`publish`] did.
#[derive(Debug, Default)]
pub struct Published {
    /// The definition files next to the schema changed and there is no Glue mode: re-apply them by hand.
    pub files_changed: bool,
    /// Glue mode: what this run applied to the Data Catalog (None: it was already in step).
    pub glue: Option<remote::Changes>,
    /// What the definition files hold now, for the state row's `definitions` column: `kind:hash` for each file
    /// written or found as it should be, space-separated (one that could not be written is left out, so the
    /// next run reads it and compares). With `recorded`, the value the last committed run left, [`publish`]
    /// neither reads nor writes a file whose new text hashes the same, and writes a changed one without reading
    /// it first: three requests a collection a night fewer on S3. Empty `recorded` (an older state file, a
    /// relayout's row; a sync passes it on a full load and a reconcile run, so a file deleted by hand comes
    /// back then): each file is read and compared.
    pub definitions: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::PartitionSpec;
    use crate::schema::Field;

    pub(crate) fn field(name: &str, ty: LakeType) -> Field {
        Field::new(name, name, ty)
    }

    pub(crate) fn spec(partition_by: &str) -> CollectionSpec {
        CollectionSpec {
            database: "hims".into(),
            collection: "Lab Results".into(),
            timestamp_column: "modified_at".into(),
            partition: PartitionSpec::parse(partition_by, "modified_at").unwrap(),
            key: "_id".into(),
            mask: Default::default(),
            line: 2,
        }
    }

    pub(crate) fn schema(fields: Vec<Field>) -> StoredSchema {
        let mut s = StoredSchema::new("hims", "Lab Results");
        s.version = 3;
        s.document = LakeType::Struct { fields };
        s
    }

    pub(crate) fn sample() -> TableDef {
        let fields = vec![
            field("_id", LakeType::String),
            field("facility_id", LakeType::String),
            field("created_at", LakeType::Timestamp),
            field("age", LakeType::Int { digits: 2 }),
        ];
        let parts: Vec<String> = [
            "facility_id=BLR01/date=2025-07-02",
            "facility_id=BLR01/date=2025-06-30",
            "facility_id=DEL%2F2/date=__HIVE_DEFAULT_PARTITION__",
            "facility_id=__HIVE_DEFAULT_PARTITION__/date=2025-07-01",
        ]
        .map(String::from)
        .to_vec();
        TableDef::new(
            &spec("facility_id/date(created_at)"),
            &schema(fields),
            &CatalogConfig::default(),
            "s3://bucket/raw/",
            &parts,
        )
    }

    #[test]
    fn columns_exclude_path_fields_and_names_follow_the_config() {
        let def = sample();
        let names: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["_id", "created_at", "age"], "facility_id lives only in the path");
        assert_eq!((def.database.as_str(), def.name.as_str()), ("hims", "lab_results"));
        assert_eq!(def.location, "s3://bucket/raw/hims/Lab Results/");
        let catalog = CatalogConfig {
            database: Some("lake".into()),
            table_prefix: "raw_".into(),
            enum_max_values: 9,
            glue: None,
        };
        let other = TableDef::new(&spec("date(created_at)"), &schema(vec![]), &catalog, "file:///l", &[]);
        assert_eq!((other.database.as_str(), other.name.as_str()), ("lake", "raw_lab_results"));
        assert_eq!(other.location, "file:///l/hims/Lab Results/");
    }

    #[test]
    fn projections_are_chosen_from_the_partitions_seen() {
        let def = sample();
        assert_eq!(
            def.partition_keys[0].projection,
            Projection::Enum { values: vec!["BLR01".into(), "DEL/2".into(), HIVE_NULL.into()] }
        );
        assert_eq!(
            def.partition_keys[1].projection,
            Projection::Date { start: Some("2025-06-30".into()), end: Some("2025-07-02".into()) }
        );
        assert_eq!(def.hidden.partitions, ["facility_id=DEL%2F2/date=__HIVE_DEFAULT_PARTITION__"]);
        let props = def.projection_properties();
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("projection.enabled"), Some("true"));
        assert_eq!(get("projection.facility_id.type"), Some("enum"));
        assert_eq!(get("projection.facility_id.values"), Some("BLR01,DEL/2,__HIVE_DEFAULT_PARTITION__"));
        assert_eq!(get("projection.date.type"), Some("date"));
        assert_eq!(get("projection.date.format"), Some("yyyy-MM-dd"));
        assert_eq!(get("projection.date.range"), Some("2025-06-30,NOW+1DAYS"));
        assert_eq!(get("projection.date.interval"), Some("1"));
        assert_eq!(get("projection.date.interval.unit"), Some("DAYS"));
    }

    #[test]
    fn too_many_or_unlistable_values_are_injected() {
        let fields = vec![field("ward", LakeType::String)];
        let parts: Vec<String> = (0..5).map(|i| format!("ward=w{i}")).collect();
        let limited = CatalogConfig { enum_max_values: 4, ..CatalogConfig::default() };
        let def = TableDef::new(&spec("ward"), &schema(fields.clone()), &limited, "s3://b", &parts);
        assert!(
            matches!(&def.partition_keys[0].projection, Projection::Injected { distinct: 5, reason } if reason.contains("enum_max_values = 4"))
        );
        assert!(def.projection_properties().contains(&("projection.ward.type".into(), "injected".into())));
        let at_limit = CatalogConfig { enum_max_values: 5, ..CatalogConfig::default() };
        let def = TableDef::new(&spec("ward"), &schema(fields.clone()), &at_limit, "s3://b", &parts);
        assert!(matches!(&def.partition_keys[0].projection, Projection::Enum { values } if values.len() == 5));
        let comma = vec!["ward=a,b".to_string(), "ward=c".to_string()];
        let def = TableDef::new(&spec("ward"), &schema(fields), &CatalogConfig::default(), "s3://b", &comma);
        assert!(
            matches!(&def.partition_keys[0].projection, Projection::Injected { reason, .. } if reason.contains("\"a,b\""))
        );
    }

    #[test]
    fn a_date_key_without_dates_still_has_a_valid_range_and_odd_paths_are_ignored() {
        let fields = vec![field("x", LakeType::Bool)];
        let parts = vec!["date=__HIVE_DEFAULT_PARTITION__".to_string(), "other=1".to_string(), "a/b".to_string()];
        let def =
            TableDef::new(&spec("date(created_at)"), &schema(fields), &CatalogConfig::default(), "s3://b", &parts);
        assert_eq!(def.partition_keys[0].projection, Projection::Date { start: None, end: None });
        assert_eq!(def.hidden.partitions, ["date=__HIVE_DEFAULT_PARTITION__"]);
        assert!(def.projection_properties().contains(&("projection.date.range".into(), "NOW-1DAYS,NOW+1DAYS".into())));
    }

    /// An in-memory lake, a collection partitioned by `date(created_at)` and its two-column schema.
    fn publish_setup() -> (Lake, CollectionSpec, StoredSchema) {
        let lake = Lake::from_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            Path::default(),
            "s3://bucket/raw",
        );
        let s = schema(vec![field("_id", LakeType::String), field("created_at", LakeType::Timestamp)]);
        (lake, spec("date(created_at)"), s)
    }

    #[tokio::test]
    async fn publish_writes_only_when_the_definition_changes() {
        let (lake, spec, s) = publish_setup();
        let catalog = CatalogConfig::default();
        assert!(
            !publish(&lake, &spec, &schema(vec![]), &catalog, None, None, "").await.unwrap().files_changed,
            "no columns, no table"
        );
        lake.put(&lake.partition_file("hims", "Lab Results", "date=2025-07-01"), vec![0u8].into()).await.unwrap();
        assert!(publish(&lake, &spec, &s, &catalog, None, None, "").await.unwrap().files_changed, "first definition");
        assert!(
            !publish(&lake, &spec, &s, &catalog, None, None, "").await.unwrap().files_changed,
            "same inputs, same bytes"
        );
        let sql = lake.get_opt(&athena_path(&lake, "hims", "Lab Results")).await.unwrap().unwrap();
        assert!(std::str::from_utf8(&sql).unwrap().contains("'2025-07-01,NOW+1DAYS'"));
        lake.put(&lake.partition_file("hims", "Lab Results", "date=2025-06-01"), vec![0u8].into()).await.unwrap();
        assert!(
            publish(&lake, &spec, &s, &catalog, None, None, "").await.unwrap().files_changed,
            "an earlier date moves the range start"
        );
        let json = lake.get_opt(&glue_path(&lake, "hims", "Lab Results")).await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["Parameters"]["projection.date.range"], "2025-06-01,NOW+1DAYS");
    }

    #[tokio::test]
    async fn publish_trusts_what_the_last_run_recorded_and_reads_without_it() {
        let (lake, spec, s) = publish_setup();
        let catalog = CatalogConfig::default();
        lake.put(&lake.partition_file("hims", "Lab Results", "date=2025-07-01"), vec![0u8].into()).await.unwrap();
        let first = publish(&lake, &spec, &s, &catalog, None, None, "").await.unwrap();
        let kinds: Vec<&str> = first.definitions.split(' ').map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(kinds, ["athena", "glue", "views"], "{}", first.definitions);
        assert_eq!(recorded_hash(&first.definitions, "glue").map(str::len), Some(16));
        // The recorded hashes are trusted: a file gone behind mongolake's back is not even looked at...
        let sql = athena_path(&lake, "hims", "Lab Results");
        lake.delete(&sql).await.unwrap();
        let again = publish(&lake, &spec, &s, &catalog, None, None, &first.definitions).await.unwrap();
        assert!(!again.files_changed);
        assert_eq!(again.definitions, first.definitions);
        assert_eq!(lake.get_opt(&sql).await.unwrap(), None, "neither read nor written");
        // ...without them each file is read and compared, and the missing one comes back.
        assert!(publish(&lake, &spec, &s, &catalog, None, None, "").await.unwrap().files_changed);
        assert!(lake.get_opt(&sql).await.unwrap().is_some());
        // A changed definition is written (without a read) and recorded anew.
        lake.put(&lake.partition_file("hims", "Lab Results", "date=2025-06-01"), vec![0u8].into()).await.unwrap();
        let moved = publish(&lake, &spec, &s, &catalog, None, None, &first.definitions).await.unwrap();
        assert!(moved.files_changed);
        assert_ne!(recorded_hash(&moved.definitions, "athena"), recorded_hash(&first.definitions, "athena"));
        let text = String::from_utf8(lake.get_opt(&sql).await.unwrap().unwrap().to_vec()).unwrap();
        assert!(text.contains("'2025-06-01,NOW+1DAYS'"), "{text}");
        assert_eq!(recorded_hash("athena:01 glue:02", "views"), None);
        assert_eq!(recorded_hash("athena:01 glue:02", "glue"), Some("02"));
    }
}
