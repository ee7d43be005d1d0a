//! The key index: which partition each key's row lives in, at `<lake>/_mongolake/index/<db>/<coll>.parquet`.
//!
//! It lets a run remove a row from its old partition when an update moved the document to another one (a
//! facility change, a corrected creation date) — without it the row would live on in both. It is written after
//! the partition files and before the watermark; when it is missing or unreadable it is rebuilt by reading the
//! key column of every partition file. A stale index (a crash between the data and the index) is harmless: the
//! rerun re-reads the same documents, and removing a key a partition no longer holds changes nothing.
use crate::config::CollectionSpec;
use crate::schema::{arrow as sarrow, text, LakeType};
use crate::sink::{parquet, Lake};
use crate::{Error, FastMap, Result};
use arrow::array::{Array, AsArray, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

/// key -> partition path relative to the table (`facility_id=BLR01/date=2025-07-02`). The paths are shared:
/// a million keys point at a few hundred partitions.
pub type KeyIndex = FastMap<String, Arc<str>>;

pub async fn load_or_rebuild(lake: &Lake, spec: &CollectionSpec) -> Result<KeyIndex> {
    let path = lake.index_path(&spec.database, &spec.collection);
    if let Some(bytes) = lake.get_opt(&path).await? {
        match decode(bytes) {
            Ok(index) => return Ok(index),
            Err(e) => {
                tracing::warn!(collection = %spec.name(), error = %e, "Key index unreadable; rebuilding it from the lake")
            }
        }
    }
    let mut index = KeyIndex::default();
    for rel in lake.list_partitions(&spec.database, &spec.collection).await? {
        let shared: Arc<str> = Arc::from(rel.as_str());
        let file = lake.partition_file(&spec.database, &spec.collection, &rel);
        let Some(bytes) = lake.get_opt(&file).await? else { continue };
        let context = lake.display(&file);
        let (batches, ty) = tokio::task::spawn_blocking(move || parquet::decode(bytes, &context))
            .await
            .map_err(|e| Error::encode("index rebuild", e))??;
        let LakeType::Struct { fields } = &ty else { continue };
        let Some(col) = fields.iter().position(|f| f.source == spec.key) else { continue };
        for batch in batches {
            let array = batch.column(col);
            for row in 0..array.len() {
                if let Some(v) = sarrow::to_bson(array.as_ref(), row, &fields[col].ty) {
                    let raw = bson::RawBson::try_from(v).map_err(|e| Error::encode("index rebuild", e))?;
                    index.insert(text::render(raw.as_raw_bson_ref()), shared.clone());
                }
            }
        }
    }
    Ok(index)
}

pub async fn save(lake: &Lake, spec: &CollectionSpec, index: &KeyIndex) -> Result<()> {
    let mut entries: Vec<(&String, &Arc<str>)> = index.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let keys = StringArray::from_iter_values(entries.iter().map(|(k, _)| k.as_str()));
    let parts = StringArray::from_iter_values(entries.iter().map(|(_, p)| &***p));
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(parts)])
        .map_err(|e| Error::encode("key index", e))?;
    let bytes = parquet::encode(schema, &[batch], &LakeType::String, 1 << 20, "key index")?;
    lake.put(&lake.index_path(&spec.database, &spec.collection), bytes.into()).await
}

fn decode(bytes: bytes::Bytes) -> Result<KeyIndex> {
    let (batches, _) = parquet::decode(bytes, "key index")?;
    let mut index = KeyIndex::default();
    let mut shared: FastMap<String, Arc<str>> = FastMap::default();
    for b in batches {
        let s = StructArray::from(b);
        let (keys, parts) = (s.column(0).as_string::<i32>(), s.column(1).as_string::<i32>());
        index.reserve(s.len());
        for i in 0..s.len() {
            let part = match shared.get(parts.value(i)) {
                Some(p) => p.clone(),
                None => {
                    let p: Arc<str> = Arc::from(parts.value(i));
                    shared.insert(parts.value(i).to_string(), p.clone());
                    p
                }
            };
            index.insert(keys.value(i).to_string(), part);
        }
    }
    Ok(index)
}
