//! What a sync did, for the run report ([`crate::report`]): plain data, filled by the stages of
//! [`super::collection`] and by a worker's help with shared loads ([`super::shard::helper`]).
use serde::Serialize;

/// What happened to one collection, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectionStats {
    pub docs_read: u64,
    pub rows_written: u64,
    /// Rows in the partition files written (a partition file is rewritten whole).
    pub partitions_written: u64,
    /// Partitions whose merge changed nothing (e.g. documents re-read in the overlap window): left alone.
    pub partitions_unchanged: u64,
    /// Documents re-read as the lake holds them (the digest of the run before knew them): not merged, and their
    /// partitions not read for them.
    pub docs_unchanged: u64,
    pub duplicates_dropped: u64,
    pub rows_replaced: u64,
    /// Rows removed from their old partition because an update moved the document to another one.
    pub rows_moved: u64,
    pub spills: u64,
    pub full_load: bool,
    pub old_watermark: Option<String>,
    pub new_watermark: Option<String>,
    pub schema_version: u64,
    pub schema_changes: Vec<String>,
    /// Values stored as null because their column cannot hold them (kept in the rejects area).
    pub values_rejected: u64,
    /// Documents that could not be decoded at all (kept, as raw BSON, in the rejects area).
    pub documents_rejected: u64,
    /// This run compared key sets with MongoDB (`--reconcile` or the schedule).
    pub reconciled: bool,
    /// Why it did: `--reconcile`, the schedule, or MongoDB's document count differing from the lake's rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile_reason: Option<String>,
    /// Rows removed because their documents were deleted in MongoDB (reconcile).
    pub rows_deleted: u64,
    /// Documents the lake lacked that reconcile fetched by key (no timestamp, or written too late).
    pub docs_fetched: u64,
    /// The Athena/Glue table definition stored next to the schema changed: re-apply it.
    pub table_definition_changed: bool,
    /// Glue mode: what this run applied to the Data Catalog (`table updated, 3 partitions added`); None when it
    /// was already in step, or without Glue mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glue_applied: Option<String>,
    /// Values masked per rule (collections.csv `mask`).
    pub masked: crate::mask::MaskCounts,
    /// No index starts with the timestamp column (incremental runs scan the whole collection): the command that
    /// creates one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_index: Option<String>,
    /// Rows in the collection's table after this run (the key index's count); None when not known (a failed or
    /// dry run, or a report of an older version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_in_lake: Option<u64>,
    /// `sync --dry-run`: the partitions (relative to the table) that would be rewritten.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub planned_partitions: Vec<String>,
    /// `sync --dry-run`: the documents read would change the stored schema ...
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub schema_would_change: bool,
    /// ... and widen a column's file type, which rewrites every partition.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub schema_would_widen: bool,
    /// The table's partitions after this run (relative paths, sorted), when the run knows them without listing
    /// the table again: the report's sparse-partition check reads them (not in the report itself).
    #[serde(skip)]
    pub table_partitions: Option<std::sync::Arc<Vec<String>>>,
    /// The state file as this run committed it (tonight's row appended): the report's history reads it instead
    /// of reading the file again (not in the report itself).
    #[serde(skip)]
    pub committed_state: Option<std::sync::Arc<crate::state::StateFile>>,
}

/// One range this worker read and encoded for another worker's load (for the run report).
#[derive(Debug, Clone, Serialize)]
pub struct HelpedRange {
    pub collection: String,
    pub range: usize,
    pub ranges: usize,
    pub owner_run_id: String,
    pub docs_read: u64,
    pub duration_ms: u64,
    /// Why the range was given up (the owner then reads it itself, or retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
