//! Rebuilding the key index from the partition files: the first run over a lake without one (written by a
//! version before the index), or one whose index is lost or unreadable.
//!
//! The key column of every partition file is read (a large file a row group at a time, only that column), the
//! keys go through an external sort ([`crate::sort::Sorter`], spilled to local disk past one run of the memory
//! budget), and the sorted keys are written as segment files by a [`SegmentWriter`], unlisted until the run
//! saves the manifest. So a rebuild holds one sort run and one segment, not the index. A dry run, which writes
//! nothing to the lake, rebuilds in memory instead.
use super::writer::SegmentWriter;
use super::KeyIndex;
use crate::config::CollectionSpec;
use crate::schema::{arrow as sarrow, text, LakeType};
use crate::sink::remote::Existing;
use crate::sink::Lake;
use crate::{Error, Result};
use arrow::array::{Array, RecordBatch};
use std::io::{Read, Write};
use std::sync::Arc;

/// How a rebuild may use memory and the lake.
#[derive(Debug, Clone)]
pub struct Rebuild {
    /// Keys the external sort holds in memory at once.
    pub run_entries: usize,
    /// Partition files up to this size are read whole; larger ones a row group at a time.
    pub whole_limit: u64,
    /// Keys per segment file.
    pub segment_keys: usize,
    /// Write segment files (false in a dry run: the index is rebuilt in memory).
    pub write: bool,
}

impl Default for Rebuild {
    fn default() -> Self {
        Rebuild { run_entries: 1 << 20, whole_limit: 64 << 20, segment_keys: super::SEGMENT_KEYS, write: true }
    }
}

/// Rebuilds the index from the key column of every partition file (no index yet, or an unreadable one: `why`).
pub async fn rebuild(lake: &Lake, spec: &CollectionSpec, why: &str, how: &Rebuild) -> Result<KeyIndex> {
    if !why.is_empty() {
        tracing::warn!(collection = %spec.name(), error = %why, "Key index unreadable; rebuilding it from the lake");
    }
    let rels = lake.list_partitions(&spec.database, &spec.collection).await?;
    if why.is_empty() && !rels.is_empty() {
        tracing::info!(collection = %spec.name(), partitions = rels.len(), "No key index; building it from the lake's partition files");
    }
    if !how.write {
        let mut index = KeyIndex::default();
        for (p, rel) in rels.iter().enumerate() {
            let shared: Arc<str> = Arc::from(rel.as_str());
            let keys = partition_keys(lake, spec, rel, p as u32, how, Vec::new(), |v, k| {
                v.push(k.key);
                Ok(())
            });
            for key in keys.await? {
                index.set(&key, shared.clone());
            }
        }
        return Ok(index);
    }
    fn io(e: std::io::Error) -> Error {
        Error::io("sorting the keys of a key index rebuild", e)
    }
    let dir = tempfile::Builder::new().prefix("mongolake-rebuild-").tempdir().map_err(io)?;
    let mut sorter = crate::sort::Sorter::<Keyed>::new(how.run_entries, dir.path().to_path_buf());
    for (p, rel) in rels.iter().enumerate() {
        sorter = partition_keys(lake, spec, rel, p as u32, how, sorter, |s, k| s.push(k).map_err(io)).await?;
    }
    let prefix = format!("rebuild-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ"));
    let mut writer = SegmentWriter::new(lake, spec, &prefix, how.segment_keys);
    // A key in two partitions (a lake written before the index kept them apart) keeps the last partition listed.
    let mut pending: Option<Keyed> = None;
    for next in sorter.done().map_err(io)? {
        let next = next.map_err(io)?;
        if let Some(last) = pending.take().filter(|last| last.key != next.key) {
            writer.push(&last.key, &rels[last.part as usize]).await?;
        }
        pending = Some(next);
    }
    if let Some(last) = pending {
        writer.push(&last.key, &rels[last.part as usize]).await?;
    }
    writer.finish().await
}

/// Feeds every key of partition `rel` (number `part`) to `f` with `acc`, on a blocking thread (decoding, and
/// the sort's writes to disk); returns `acc`. A file without the key column has none.
async fn partition_keys<A: Send + 'static>(
    lake: &Lake,
    spec: &CollectionSpec,
    rel: &str,
    part: u32,
    how: &Rebuild,
    acc: A,
    f: impl Fn(&mut A, Keyed) -> Result<()> + Send + 'static,
) -> Result<A> {
    let file = lake.partition_file(&spec.database, &spec.collection, rel);
    let context = lake.display(&file);
    let Some(existing) = lake.existing(&file, how.whole_limit, &context).await? else { return Ok(acc) };
    let key = spec.key.clone();
    tokio::task::spawn_blocking(move || {
        let mut acc = acc;
        let ty = match &existing {
            Existing::Whole(bytes) => crate::sink::parquet::header(bytes.clone(), &context)?.0,
            Existing::Large(remote) => remote.lake_type()?,
        };
        let LakeType::Struct { fields } = &ty else { return Ok(acc) };
        let Some(col) = fields.iter().position(|f| f.source == key) else { return Ok(acc) };
        let batches: Box<dyn Iterator<Item = Result<RecordBatch>>> = match existing {
            Existing::Whole(bytes) => {
                Box::new(crate::sink::parquet::decode_column(bytes, col, &context)?.into_iter().map(Ok))
            }
            Existing::Large(remote) => remote.batches(Some(col), None)?,
        };
        for batch in batches {
            let batch = batch?;
            let array = batch.column(0);
            for row in 0..array.len() {
                if let Some(v) = sarrow::to_bson(array.as_ref(), row, &fields[col].ty) {
                    let raw = bson::RawBson::try_from(v).map_err(|e| Error::encode("index rebuild", e))?;
                    f(&mut acc, Keyed { key: text::key_text(raw.as_raw_bson_ref()), part })?;
                }
            }
        }
        Ok(acc)
    })
    .await
    .map_err(|e| Error::encode("index rebuild", e))?
}

/// A key and the number of the partition it was read from, sorted by both.
struct Keyed {
    key: String,
    part: u32,
}

impl extsort::Sortable for Keyed {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&(self.key.len() as u32).to_le_bytes())?;
        w.write_all(self.key.as_bytes())?;
        w.write_all(&self.part.to_le_bytes())
    }

    fn decode<R: Read>(r: &mut R) -> std::io::Result<Keyed> {
        let mut n = [0u8; 4];
        r.read_exact(&mut n)?; // (an end of file here ends the run, as extsort expects)
        let mut key = vec![0u8; u32::from_le_bytes(n) as usize];
        r.read_exact(&mut key)?;
        r.read_exact(&mut n)?;
        let key = String::from_utf8(key).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Keyed { key, part: u32::from_le_bytes(n) })
    }
}

impl crate::sort::SortItem for Keyed {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key).then(self.part.cmp(&other.part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field as ArrowField, Schema};

    use crate::state::index::test_lake::setup;

    /// Writes partition `rel` with `_id`s `ids` (or, with `ids` None, a file without an `_id` column), in row
    /// groups of 3.
    async fn partition(lake: &Lake, rel: &str, ids: Option<&[&str]>) {
        let field = |source: &str, ty: LakeType| Field::new(source, source, ty);
        let (fields, columns): (Vec<Field>, Vec<arrow::array::ArrayRef>) = match ids {
            Some(ids) => (
                vec![field("_id", LakeType::String), field("v", LakeType::Int { digits: 1 })],
                vec![Arc::new(StringArray::from(ids.to_vec())), Arc::new(Int64Array::from(vec![1; ids.len()]))],
            ),
            None => (vec![field("v", LakeType::Int { digits: 1 })], vec![Arc::new(Int64Array::from(vec![1, 2]))]),
        };
        let schema = Arc::new(Schema::new(
            fields.iter().map(|f| ArrowField::new(&f.column, sarrow::data_type(&f.ty), true)).collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let ty = LakeType::Struct { fields };
        let rows = crate::sink::parquet::RowGroups::rows(3);
        let bytes = crate::sink::parquet::encode(schema, &[batch], &ty, rows, "test").unwrap();
        lake.put(&lake.partition_file("hims", "visits", rel), bytes.into()).await.unwrap();
    }

    async fn entries(lake: &Lake, spec: &CollectionSpec, mut index: KeyIndex) -> Vec<(String, String)> {
        if index.needs_save() {
            crate::state::index::save(lake, spec, &index, "run1", 3, true).await.unwrap();
            index = super::super::load_or_rebuild(lake, spec, &Rebuild::default()).await.unwrap();
        }
        super::super::store::load_all(&mut index, lake, spec).await.unwrap();
        index.entries().into_iter().map(|(k, p)| (k.to_string(), p.to_string())).collect()
    }

    #[tokio::test]
    async fn a_rebuild_sorts_the_keys_on_disk_and_writes_segments_as_it_goes() {
        let (lake, spec) = setup();
        let ids: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
        let ids: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        partition(&lake, "ward=A", Some(&ids)).await;
        partition(&lake, "ward=B", Some(&["k05", "k20", "k15"])).await; // k05 in two partitions: the last wins
        partition(&lake, "ward=C", None).await; // no key column: skipped
        let mut want: Vec<(String, String)> = (0..10).map(|i| (format!("k{i:02}"), "ward=A".to_string())).collect();
        want[5].1 = "ward=B".into();
        want.extend([("k15".into(), "ward=B".into()), ("k20".into(), "ward=B".into())]);

        let in_memory = Rebuild { write: false, ..Rebuild::default() };
        let index = rebuild(&lake, &spec, "", &in_memory).await.unwrap();
        assert!(lake.list(&lake.index_dir("hims", "visits")).await.unwrap().is_empty(), "a dry run writes nothing");
        assert_eq!(entries(&lake, &spec, index).await, want);
        lake.delete(&lake.index_dir("hims", "visits").join("manifest.json")).await.unwrap();

        // Runs of 4 keys (the 13 read spill), segments of 3, every file read a row group at a time (whole_limit 0).
        for whole_limit in [0, 64 << 20] {
            let how = Rebuild { run_entries: 4, whole_limit, segment_keys: 3, write: true };
            let index = rebuild(&lake, &spec, "", &how).await.unwrap();
            assert_eq!((index.segments_loaded(), index.len()), ((4, 0), 12), "written, nothing held");
            assert_eq!(entries(&lake, &spec, index).await, want, "whole_limit {whole_limit}");
        }
    }
}
