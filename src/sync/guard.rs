//! Runaway partition counts: `partition_by` on a field with a value per document (a typo: `_id`) makes one
//! partition, one file and one S3 PUT per document, and a table Athena lists for ever.
//!
//! Two guards: before anything is written, a run that would create more than `[sync] max_new_partitions` new
//! partitions in one collection fails that collection (the others sync) naming the key with the most distinct
//! values, the collections.csv line and the fix ([`new_partitions`], called between the read and the schema's
//! write-ahead); and after a run (and in `mongolake check`), a table of thousands of partitions averaging under a
//! couple of rows is warned about ([`sparse`]). Counting is free while a run touches no more partitions than the
//! limit; past it, the table is listed once to tell new partitions from existing ones.
use super::buffer::PartitionBuffers;
use super::context::RunContext;
use crate::config::CollectionSpec;
use crate::transform::partition::Partitioner;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashSet;

/// Fails the collection when this run's documents would create more new partitions than the limit.
pub async fn new_partitions(
    ctx: &RunContext,
    spec: &CollectionSpec,
    buffers: &PartitionBuffers,
    partitioner: &Partitioner,
) -> Result<()> {
    let limit = ctx.sync.max_new_partitions;
    if limit == 0 || buffers.len() as u64 <= limit {
        return Ok(());
    }
    let existing: HashSet<String> =
        ctx.lake.list_partitions(&spec.database, &spec.collection).await?.into_iter().collect();
    let mut new = Vec::new();
    let mut docs = 0;
    for (values, rows) in buffers.partitions() {
        let rel = partitioner.relative_path(values);
        if !existing.contains(&rel) {
            new.push(rel);
            docs += rows;
        }
    }
    match too_many(spec, &new, docs, limit) {
        Some(message) => Err(Error::collection(spec.name(), message)),
        None => Ok(()),
    }
}

/// The message when `new` (relative partition paths) holds more than `limit` partitions.
fn too_many(spec: &CollectionSpec, new: &[String], docs: u64, limit: u64) -> Option<String> {
    if new.len() as u64 <= limit {
        return None;
    }
    let (key, distinct) = widest_key(new.iter().map(String::as_str)).unwrap_or_default();
    Some(format!(
        "this run would create {} new partitions ({docs} documents, {:.1} a partition), more than [sync] \
         max_new_partitions = {limit}; partition key `{key}` has {distinct} distinct values among them. A \
         partition_by on a field with a value per document (such as `_id`) makes a file per document: fix \
         partition_by on line {} of collections.csv (a date(...) or a field with few values); if this many \
         partitions is intended (a first load of many years), raise [sync] max_new_partitions (0: no limit). \
         Nothing was written",
        new.len(),
        docs as f64 / new.len() as f64,
        spec.line
    ))
}

/// The partition key (column) with the most distinct values among `paths` (`k1=v1/k2=v2`), and that count.
pub fn widest_key<'a>(paths: impl IntoIterator<Item = &'a str>) -> Option<(String, usize)> {
    let mut values: Vec<(String, HashSet<&'a str>)> = Vec::new();
    for path in paths {
        for (i, segment) in path.split('/').enumerate() {
            let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
            if values.len() <= i {
                values.push((k.to_string(), HashSet::new()));
            }
            values[i].1.insert(v);
        }
    }
    // (the outermost of equals: its folders are the ones that multiply)
    values.into_iter().map(|(k, v)| (k, v.len())).rev().max_by_key(|(_, n)| *n)
}

/// A table of many tiny partitions (the report's and `check`'s warning).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sparse {
    pub partitions: u64,
    pub rows: u64,
    /// The partition key with the most distinct values, and their number.
    pub key: String,
    pub distinct: usize,
    /// collections.csv line of the collection.
    pub line: usize,
}

impl std::fmt::Display for Sparse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} partitions average {:.1} rows: partition key `{}` has {} distinct values; partition_by on line {} \
             of collections.csv is probably too fine (each partition is a file Athena opens): partition by a \
             date(...) or a field with few values",
            self.partitions,
            self.rows as f64 / self.partitions.max(1) as f64,
            self.key,
            self.distinct,
            self.line
        )
    }
}

/// Whether `rows` rows in these partitions are too thin: at least `min_partitions` partitions averaging under
/// `min_rows` rows.
pub fn sparse_of(
    spec: &CollectionSpec,
    partitions: &[String],
    rows: u64,
    min_partitions: u64,
    min_rows: f64,
) -> Option<Sparse> {
    let n = partitions.len() as u64;
    if n == 0 || n < min_partitions || rows as f64 / n as f64 >= min_rows {
        return None;
    }
    let (key, distinct) = widest_key(partitions.iter().map(String::as_str))?;
    Some(Sparse { partitions: n, rows, key, distinct, line: spec.line })
}

/// The warning about the table's partitions: `known` (a sync's list of the table after its write) or, None, the
/// table listed (only when it holds enough rows for the warning to be possible: a sparse table of
/// `min_partitions` partitions holds at least that many rows).
pub async fn sparse(
    lake: &crate::sink::Lake,
    spec: &CollectionSpec,
    rows: u64,
    cfg: &crate::config::ReportConfig,
    known: Option<&[String]>,
) -> Result<Option<Sparse>> {
    if rows < cfg.sparse_partitions || cfg.sparse_partitions == 0 {
        return Ok(None);
    }
    let parts = lake.partitions_or_list(&spec.database, &spec.collection, known).await?;
    Ok(sparse_of(spec, &parts, rows, cfg.sparse_partitions, cfg.sparse_rows_per_partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CollectionSpec {
        let text = "database,collection,timestamp_column,partition_by\n\nhims,visits,modified_at,facility_id/_id\n";
        crate::config::collections::CollectionsFile::parse(std::path::Path::new("collections.csv"), text)
            .expect("valid")
            .entries[0]
            .clone()
    }

    #[test]
    fn the_key_with_most_values_is_named() {
        let paths: Vec<String> = (0..50).map(|i| format!("facility_id=F{}/id={i}", i % 3)).collect();
        assert_eq!(widest_key(paths.iter().map(String::as_str)), Some(("id".into(), 50)));
        assert_eq!(widest_key(["a=1/b=1", "a=2/b=1"]), Some(("a".into(), 2)));
        assert_eq!(widest_key(Vec::<&str>::new()), None);
    }

    #[test]
    fn too_many_new_partitions_names_the_key_line_and_fix() {
        let new: Vec<String> = (0..11).map(|i| format!("facility_id=F1/id={i}")).collect();
        assert!(too_many(&spec(), &new, 11, 11).is_none());
        let m = too_many(&spec(), &new, 11, 10).expect("over the limit");
        for want in
            ["11 new partitions", "max_new_partitions = 10", "`id` has 11 distinct", "line 3 of collections.csv"]
        {
            assert!(m.contains(want), "{want}: {m}");
        }
    }

    #[test]
    fn sparse_tables_are_found_past_the_thresholds() {
        let parts: Vec<String> = (0..1000).map(|i| format!("facility_id=F1/id={i}")).collect();
        let s = sparse_of(&spec(), &parts, 1500, 1000, 2.0).expect("1.5 rows a partition");
        assert_eq!((s.partitions, s.key.as_str(), s.distinct, s.line), (1000, "id", 1000, 3));
        assert!(s.to_string().starts_with("1000 partitions average 1.5 rows"), "{s}");
        assert!(sparse_of(&spec(), &parts, 2000, 1000, 2.0).is_none(), "2 rows a partition is fine");
        assert!(sparse_of(&spec(), &parts[..999], 999, 1000, 2.0).is_none(), "fewer than 1000 partitions");
    }
}
