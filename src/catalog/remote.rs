//! Glue mode (`[catalog] glue = true`): the table, its partitions and its BI views kept in the Glue Data Catalog
//! by API, in the run that changes the files.
//!
//! ```text
//!  Written::commit: ... schema saved ─► publish ─► apply (this module) ─► watermark (the commit point)
//!
//!  desired  = TableDef + views (from the stored schema and the partitions in the lake)
//!  last     = _mongolake/catalog/<db>/<coll>.json   (what the last successful apply left in Glue)
//!             missing (first run, or lost): read from Glue itself (GetTable, GetPartitions)
//!  database   GetDatabase, CreateDatabase when missing                          (only without a record)
//!  table      CreateTable when missing, else UpdateTable when its input differs (Glue keeps the old version)
//!  partitions BatchCreatePartition (new paths), BatchDeletePartition (paths gone),
//!             BatchUpdatePartition (all, when the table's columns changed: a partition keeps its own copy)
//!  views      CreateTable / UpdateTable (VIRTUAL_VIEW), DeleteTable for a view no longer generated
//!  record     written last; any failure above fails the collection before its watermark
//! ```
//! **Partitions are registered, not projected**, in Glue mode: Athena then lists them from the catalog, so a
//! field key of any cardinality needs no equality filter (an `injected` projection does) and a new value is
//! visible as soon as its partition is registered (an `enum` projection lists values in one table parameter,
//! which is bounded in size and must be rewritten for every new value). Every step is idempotent (an existing
//! partition or table is updated, a missing one on delete is fine), so a run that failed halfway is finished by
//! the next, which starts from the old watermark and the old record.
use super::views::View;
use super::TableDef;
use crate::config::GlueConfig;
use crate::sink::Lake;
use crate::transform::partition::HIVE_NULL;
use crate::{Error, Result};
use aws_sdk_glue::types as gt;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// Glue's limits per call.
const CREATE_BATCH: usize = 100;
const DELETE_BATCH: usize = 25;
const UPDATE_BATCH: usize = 100;

/// A Glue Data Catalog client (one per run, shared by the collections).
#[derive(Clone, Debug)]
pub struct Glue {
    client: aws_sdk_glue::Client,
    catalog_id: Option<String>,
}

fn glue_err<E, R>(context: String) -> impl FnOnce(aws_sdk_glue::error::SdkError<E, R>) -> Error
where
    aws_sdk_glue::Error: From<aws_sdk_glue::error::SdkError<E, R>>,
{
    move |e| Error::Glue { context, source: Box::new(aws_sdk_glue::Error::from(e)) }
}

fn build_err(e: aws_sdk_glue::error::BuildError) -> Error {
    Error::encode("building a Glue request", e)
}

/// A data column or partition key as Glue stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlueColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The table as applied: what `CreateTable`/`UpdateTable` were given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlueTable {
    pub name: String,
    pub description: String,
    pub columns: Vec<GlueColumn>,
    pub partition_keys: Vec<String>,
    pub location: String,
    pub parameters: BTreeMap<String, String>,
}

/// A view as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlueView {
    pub name: String,
    pub sql: String,
    pub columns: Vec<GlueColumn>,
    /// `/* Presto View: <base64 of {originalSql, catalog, schema, columns}> */`, as Athena stores its views.
    pub original_text: String,
}

/// Everything Glue mode keeps in the catalog for one collection; the lake keeps the last applied one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub database: String,
    pub table: GlueTable,
    /// Partition paths relative to the table (`facility_id=BLR01/date=2025-07-01`), sorted.
    pub partitions: Vec<String>,
    pub views: Vec<GlueView>,
}

/// What one apply did, for the log and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub table: Option<&'static str>,
    pub partitions_added: usize,
    pub partitions_deleted: usize,
    pub partitions_updated: usize,
    pub views: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }
}

/// For the report: `table updated, 3 partitions added, 2 views` (what is zero is left out).
impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self.table.map(|t| format!("table {t}")).into_iter().collect();
        for (n, what) in [
            (self.partitions_added, "added"),
            (self.partitions_deleted, "deleted"),
            (self.partitions_updated, "updated"),
        ] {
            if n > 0 {
                parts.push(format!("{n} partition{} {what}", if n == 1 { "" } else { "s" }));
            }
        }
        if self.views > 0 {
            parts.push(format!("{} view{} applied", self.views, if self.views == 1 { "" } else { "s" }));
        }
        match parts.is_empty() {
            true => write!(f, "nothing to change"),
            false => write!(f, "{}", parts.join(", ")),
        }
    }
}

impl Applied {
    /// The catalog state a table definition and its views call for. Partitions are registered (no projection).
    pub fn desired(def: &TableDef, views: &[View]) -> Applied {
        let mut parameters = BTreeMap::new();
        parameters.insert("classification".to_string(), "parquet".to_string());
        parameters.insert("EXTERNAL".to_string(), "TRUE".to_string());
        let columns = def
            .columns
            .iter()
            .map(|c| GlueColumn {
                name: c.name.clone(),
                ty: super::types::hive_type(&c.ty, super::types::Quoting::Catalog),
                comment: (c.source != c.name).then(|| format!("MongoDB field {}", c.source)),
            })
            .collect();
        let table = GlueTable {
            name: def.name.clone(),
            description: format!(
                "MongoDB collection {}, lake schema version {}, kept by mongolake",
                def.source, def.schema_version
            ),
            columns,
            partition_keys: def.partition_keys.iter().map(|k| k.name.clone()).collect(),
            location: def.location.clone(),
            parameters,
        };
        let mut partitions = def.partitions.clone();
        partitions.sort();
        let views = views.iter().map(|v| glue_view(&def.database, v)).collect();
        Applied { database: def.database.clone(), table, partitions, views }
    }
}

/// Athena's own form of a view in the Glue catalog.
fn glue_view(database: &str, v: &View) -> GlueView {
    let columns: Vec<serde_json::Value> =
        v.columns.iter().map(|c| serde_json::json!({"name": c.name, "type": c.trino})).collect();
    let presto = serde_json::json!({
        "originalSql": v.sql,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": columns,
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(presto.to_string());
    GlueView {
        name: v.name.clone(),
        sql: v.sql.clone(),
        columns: v
            .columns
            .iter()
            .map(|c| GlueColumn { name: c.name.clone(), ty: c.hive.clone(), comment: None })
            .collect(),
        original_text: format!("/* Presto View: {encoded} */"),
    }
}

fn sdk_columns(cols: &[GlueColumn]) -> Result<Vec<gt::Column>> {
    cols.iter()
        .map(|c| {
            gt::Column::builder().name(&c.name).r#type(&c.ty).set_comment(c.comment.clone()).build().map_err(build_err)
        })
        .collect()
}

fn storage(table: &GlueTable, location: &str) -> Result<gt::StorageDescriptor> {
    Ok(gt::StorageDescriptor::builder()
        .set_columns(Some(sdk_columns(&table.columns)?))
        .location(location)
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .serde_info(gt::SerDeInfo::builder().serialization_library(SERDE).build())
        .build())
}

fn table_input(t: &GlueTable) -> Result<gt::TableInput> {
    let keys: Vec<GlueColumn> =
        t.partition_keys.iter().map(|k| GlueColumn { name: k.clone(), ty: "string".into(), comment: None }).collect();
    gt::TableInput::builder()
        .name(&t.name)
        .description(&t.description)
        .table_type("EXTERNAL_TABLE")
        .set_parameters(Some(t.parameters.clone().into_iter().collect()))
        .set_partition_keys(Some(sdk_columns(&keys)?))
        .storage_descriptor(storage(t, &t.location)?)
        .build()
        .map_err(build_err)
}

fn view_input(v: &GlueView) -> Result<gt::TableInput> {
    gt::TableInput::builder()
        .name(&v.name)
        .table_type("VIRTUAL_VIEW")
        .view_original_text(&v.original_text)
        .view_expanded_text("/* Presto View */")
        .parameters("presto_view", "true")
        .parameters("comment", "Presto View")
        .storage_descriptor(
            gt::StorageDescriptor::builder()
                .set_columns(Some(sdk_columns(&v.columns)?))
                .serde_info(gt::SerDeInfo::builder().build())
                .build(),
        )
        .build()
        .map_err(build_err)
}

/// A partition's values as Glue keys them: unescaped, the null partition as `__HIVE_DEFAULT_PARTITION__`.
fn values(def_keys: &[crate::config::PartitionKey], rel: &str) -> Option<Vec<String>> {
    crate::transform::partition::parse_relative_path(rel, def_keys)
        .map(|vs| vs.into_iter().map(|v| v.unwrap_or_else(|| HIVE_NULL.to_string())).collect())
}

fn is_not_found(e: &Error) -> bool {
    matches!(e, Error::Glue { source, .. } if matches!(**source, aws_sdk_glue::Error::EntityNotFoundException(_)))
}

impl Glue {
    /// A client from the AWS SDK's standard chain (environment, profile, web identity, ECS/EC2 role), with the
    /// configured region and endpoint when given. Nothing is sent until the first call.
    pub async fn connect(cfg: &GlueConfig) -> Glue {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &cfg.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(e) = &cfg.endpoint {
            loader = loader.endpoint_url(e);
        }
        let sdk = loader.load().await;
        Glue { client: aws_sdk_glue::Client::new(&sdk), catalog_id: cfg.catalog_id.clone() }
    }

    /// `mongolake check`: whether `database` can be read (Ok(true)), is missing (Ok(false): a run creates it).
    pub async fn database_exists(&self, database: &str) -> Result<bool> {
        let r = self
            .client
            .get_database()
            .set_catalog_id(self.catalog_id.clone())
            .name(database)
            .send()
            .await
            .map_err(glue_err(format!("GetDatabase {database}")));
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn ensure_database(&self, database: &str) -> Result<()> {
        if self.database_exists(database).await? {
            return Ok(());
        }
        let input = gt::DatabaseInput::builder()
            .name(database)
            .description("Tables of MongoDB collections kept by mongolake")
            .build()
            .map_err(build_err)?;
        let r = self
            .client
            .create_database()
            .set_catalog_id(self.catalog_id.clone())
            .database_input(input)
            .send()
            .await
            .map_err(glue_err(format!("CreateDatabase {database}")));
        match r {
            Err(Error::Glue { source, .. }) if matches!(*source, aws_sdk_glue::Error::AlreadyExistsException(_)) => {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Creates the table (or view), or updates it in place when it exists.
    async fn put_table(&self, database: &str, input: gt::TableInput, exists: Option<bool>) -> Result<&'static str> {
        let name = input.name().to_string();
        let create = |input: gt::TableInput| {
            self.client
                .create_table()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(database)
                .table_input(input)
                .send()
        };
        let update = |input: gt::TableInput| {
            self.client
                .update_table()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(database)
                .table_input(input)
                .send()
        };
        if exists != Some(true) {
            match create(input.clone()).await {
                Ok(_) => return Ok("created"),
                Err(e) => {
                    let e = aws_sdk_glue::Error::from(e);
                    if !matches!(e, aws_sdk_glue::Error::AlreadyExistsException(_)) {
                        return Err(Error::Glue {
                            context: format!("CreateTable {database}.{name}"),
                            source: Box::new(e),
                        });
                    }
                }
            }
        }
        match update(input.clone()).await.map_err(glue_err(format!("UpdateTable {database}.{name}"))) {
            Ok(_) => Ok("updated"),
            // Dropped by hand since the last run: create it again.
            Err(e) if is_not_found(&e) => {
                create(input).await.map_err(glue_err(format!("CreateTable {database}.{name}")))?;
                Ok("created")
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_table(&self, database: &str, name: &str) -> Result<()> {
        let r = self
            .client
            .delete_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(database)
            .name(name)
            .send()
            .await
            .map_err(glue_err(format!("DeleteTable {database}.{name}")));
        match r {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The partitions Glue holds for a table (when the lake has no record of them), as paths like the lake's.
    async fn registered(&self, database: &str, def: &TableDef) -> Result<Option<BTreeSet<String>>> {
        let mut out = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .client
                .get_partitions()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(database)
                .table_name(&def.name)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(glue_err(format!("GetPartitions {database}.{}", def.name)));
            let page = match r {
                Ok(p) => p,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            for p in page.partitions() {
                let segs: Vec<String> = def
                    .partition_keys
                    .iter()
                    .zip(p.values())
                    .map(|(k, v)| {
                        let v = if v == HIVE_NULL { v.clone() } else { crate::transform::partition::escape(v) };
                        format!("{}={v}", k.name)
                    })
                    .collect();
                out.insert(segs.join("/"));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(Some(out));
            }
        }
    }

    /// Makes the catalog hold `desired` (see the module docs); `last` is the lake's record of the last apply.
    pub async fn apply(
        &self,
        def: &TableDef,
        keys: &[crate::config::PartitionKey],
        desired: &Applied,
        last: Option<&Applied>,
    ) -> Result<Changes> {
        let db = desired.database.as_str();
        let last = last.filter(|l| l.database == desired.database && l.table.name == desired.table.name);
        let mut changes = Changes::default();
        // The table.
        let (known, exists): (BTreeSet<String>, Option<bool>) = match last {
            Some(l) => (l.partitions.iter().cloned().collect(), Some(true)),
            None => {
                self.ensure_database(db).await?;
                match self.registered(db, def).await? {
                    Some(parts) => (parts, Some(true)),
                    None => (BTreeSet::new(), Some(false)),
                }
            }
        };
        if last.map(|l| &l.table) != Some(&desired.table) {
            changes.table = Some(self.put_table(db, table_input(&desired.table)?, exists).await?);
        }
        // Partitions.
        let want: BTreeSet<String> = desired.partitions.iter().cloned().collect();
        let columns_changed =
            last.is_none_or(|l| l.table.columns != desired.table.columns || l.table.location != desired.table.location);
        let added: Vec<&String> = want.difference(&known).collect();
        let gone: Vec<&String> = known.difference(&want).collect();
        let table = &desired.table;
        let name = &table.name;
        let partition_input = |rel: &str| -> Result<Option<gt::PartitionInput>> {
            let Some(vals) = values(keys, rel) else { return Ok(None) };
            let sd = storage(table, &format!("{}{rel}/", table.location))?;
            Ok(Some(gt::PartitionInput::builder().set_values(Some(vals)).storage_descriptor(sd).build()))
        };
        for chunk in added.chunks(CREATE_BATCH) {
            let inputs: Vec<gt::PartitionInput> =
                chunk.iter().map(|r| partition_input(r)).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
            let out = self
                .client
                .batch_create_partition()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(db)
                .table_name(name)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(glue_err(format!("BatchCreatePartition {db}.{name}")))?;
            let failed: Vec<String> = out
                .errors()
                .iter()
                .filter(|e| e.error_detail().and_then(|d| d.error_code()) != Some("AlreadyExistsException"))
                .map(|e| entry_error(e.partition_values(), e.error_detail()))
                .collect();
            entries_ok(&failed, "BatchCreatePartition", db, name)?;
            changes.partitions_added += chunk.len();
        }
        for chunk in gone.chunks(DELETE_BATCH) {
            let lists: Vec<gt::PartitionValueList> = chunk
                .iter()
                .filter_map(|r| values(keys, r))
                .map(|v| gt::PartitionValueList::builder().set_values(Some(v)).build().map_err(build_err))
                .collect::<Result<_>>()?;
            let out = self
                .client
                .batch_delete_partition()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(db)
                .table_name(name)
                .set_partitions_to_delete(Some(lists))
                .send()
                .await
                .map_err(glue_err(format!("BatchDeletePartition {db}.{name}")))?;
            let failed: Vec<String> = out
                .errors()
                .iter()
                .filter(|e| e.error_detail().and_then(|d| d.error_code()) != Some("EntityNotFoundException"))
                .map(|e| entry_error(e.partition_values(), e.error_detail()))
                .collect();
            entries_ok(&failed, "BatchDeletePartition", db, name)?;
            changes.partitions_deleted += chunk.len();
        }
        if columns_changed {
            // Partitions that existed before this run carry the old columns: each keeps its own copy, and Athena
            // fails a query when a partition's column type disagrees with the table's.
            let stale: Vec<&String> = known.intersection(&want).collect();
            for chunk in stale.chunks(UPDATE_BATCH) {
                let mut entries = Vec::new();
                for rel in chunk {
                    let (Some(vals), Some(input)) = (values(keys, rel), partition_input(rel)?) else { continue };
                    entries.push(
                        gt::BatchUpdatePartitionRequestEntry::builder()
                            .set_partition_value_list(Some(vals))
                            .partition_input(input)
                            .build()
                            .map_err(build_err)?,
                    );
                }
                let out = self
                    .client
                    .batch_update_partition()
                    .set_catalog_id(self.catalog_id.clone())
                    .database_name(db)
                    .table_name(name)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(glue_err(format!("BatchUpdatePartition {db}.{name}")))?;
                let failed: Vec<String> =
                    out.errors().iter().map(|e| entry_error(e.partition_value_list(), e.error_detail())).collect();
                entries_ok(&failed, "BatchUpdatePartition", db, name)?;
                changes.partitions_updated += chunk.len();
            }
        }
        // Views.
        let old_views: BTreeMap<&str, &GlueView> =
            last.map(|l| l.views.iter().map(|v| (v.name.as_str(), v)).collect()).unwrap_or_default();
        for v in &desired.views {
            if old_views.get(v.name.as_str()) != Some(&v) {
                let exists = old_views.contains_key(v.name.as_str()).then_some(true);
                self.put_table(db, view_input(v)?, exists).await?;
                changes.views += 1;
            }
        }
        for name in old_views.keys() {
            if !desired.views.iter().any(|v| v.name == *name) {
                self.delete_table(db, name).await?;
                changes.views += 1;
            }
        }
        Ok(changes)
    }
}

fn entry_error(values: &[String], detail: Option<&gt::ErrorDetail>) -> String {
    let code = detail.and_then(|d| d.error_code()).unwrap_or("error");
    let msg = detail.and_then(|d| d.error_message()).unwrap_or("");
    format!("partition {values:?}: {code}: {msg}")
}

fn entries_ok(failed: &[String], op: &str, db: &str, table: &str) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    Err(Error::GlueEntries {
        context: format!("{op} {db}.{table}"),
        message: format!("{} of the entries failed, e.g. {}", failed.len(), failed[0]),
    })
}

/// The lake's record of the last apply (None when absent or unreadable: the catalog is then read instead).
pub async fn last_applied(lake: &Lake, db: &str, coll: &str) -> Result<Option<Applied>> {
    let path = lake.layout().glue_applied(db, coll);
    Ok(lake.get_opt(&path).await?.and_then(|b| serde_json::from_slice(&b).ok()))
}

pub async fn record_applied(lake: &Lake, db: &str, coll: &str, applied: &Applied) -> Result<()> {
    let path = lake.layout().glue_applied(db, coll);
    lake.put(&path, serde_json::to_vec_pretty(applied).expect("serialisable").into()).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_an_apply_did_reads_as_a_sentence() {
        assert_eq!(Changes::default().to_string(), "nothing to change");
        let c = Changes {
            table: Some("updated"),
            partitions_added: 3,
            partitions_deleted: 1,
            views: 2,
            ..Default::default()
        };
        assert_eq!(c.to_string(), "table updated, 3 partitions added, 1 partition deleted, 2 views applied");
        assert_eq!(Changes { partitions_updated: 1, ..Default::default() }.to_string(), "1 partition updated");
    }

    use super::super::tests::sample;
    use super::super::views::views;
    use super::*;

    #[test]
    fn desired_state_registers_partitions_and_stores_views_as_athena_does() {
        let def = sample();
        let a = Applied::desired(&def, &views(&def));
        assert_eq!(a.database, "hims");
        assert!(a.table.parameters.keys().all(|k| !k.starts_with("projection.")), "{:?}", a.table.parameters);
        assert_eq!(a.table.partition_keys, ["facility_id", "date"]);
        assert_eq!(a.partitions.len(), 4);
        let keys = &super::super::tests::spec("facility_id/date(created_at)").partition.keys;
        assert_eq!(
            values(keys, "facility_id=DEL%2F2/date=__HIVE_DEFAULT_PARTITION__"),
            Some(vec!["DEL/2".to_string(), HIVE_NULL.to_string()])
        );
        let flat = &a.views[0];
        assert_eq!(flat.name, "lab_results__flat");
        let b64 = flat.original_text.strip_prefix("/* Presto View: ").unwrap().strip_suffix(" */").unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
        assert_eq!(json["catalog"], "awsdatacatalog");
        assert_eq!(json["schema"], "hims");
        assert_eq!(json["originalSql"], flat.sql.as_str());
        assert_eq!(json["columns"][1], serde_json::json!({"name": "created_at", "type": "timestamp(3)"}));
        let input = view_input(flat).unwrap();
        assert_eq!(input.table_type(), Some("VIRTUAL_VIEW"));
        assert_eq!(input.view_expanded_text(), Some("/* Presto View */"));
        assert_eq!(input.parameters().unwrap()["presto_view"], "true");
        assert_eq!(input.parameters().unwrap()["comment"], "Presto View");
    }
}
