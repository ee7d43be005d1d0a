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

/// key -> partition path relative to the table (`facility_id=BLR01/date=2025-07-02`).
///
/// The file's rows (sorted by key) stay as two Arrow string arrays and are looked up by binary search; only
/// this run's changes live in a hash map. An incremental run touching 1% of a million keys thus costs a
/// decode and a merge of sorted runs, not a million hash-map insertions and a sort (about 150 ms saved per
/// 200,000 keys, measured with the phase timings of `MONGOLAKE_LOG=mongolake=debug`).
pub struct KeyIndex {
    /// The saved entries, strictly increasing by key.
    base_keys: StringArray,
    base_parts: StringArray,
    /// Entries in `base_*` that a change overrides (set elsewhere, or removed).
    overridden: usize,
    /// This run's changes: the key's partition now, or `None` when it was removed.
    changes: FastMap<String, Option<Arc<str>>>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self::from_sorted(StringArray::from(Vec::<&str>::new()), StringArray::from(Vec::<&str>::new()))
    }
}

impl KeyIndex {
    fn from_sorted(base_keys: StringArray, base_parts: StringArray) -> Self {
        KeyIndex { base_keys, base_parts, overridden: 0, changes: FastMap::default() }
    }

    fn base_find(&self, key: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.base_keys.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.base_keys.value(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The partition `key`'s row lives in.
    pub fn get(&self, key: &str) -> Option<&str> {
        match self.changes.get(key) {
            Some(change) => change.as_deref(),
            None => self.base_find(key).map(|i| self.base_parts.value(i)),
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Records that `key`'s row now lives in `rel`.
    pub fn set(&mut self, key: &str, rel: Arc<str>) {
        self.change(key, Some(rel));
    }

    /// Forgets `key`; returns the partition it lived in.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let old = self.get(key).map(str::to_string);
        if old.is_some() {
            self.change(key, None);
        }
        old
    }

    fn change(&mut self, key: &str, to: Option<Arc<str>>) {
        match self.changes.get_mut(key) {
            Some(slot) => *slot = to,
            None => {
                if self.base_find(key).is_some() {
                    self.overridden += 1;
                }
                self.changes.insert(key.to_string(), to);
            }
        }
    }

    /// Whether this run changed anything (a new key, a moved or removed one): else there is nothing to save.
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Room for `n` more changed keys.
    pub fn reserve(&mut self, n: usize) {
        self.changes.reserve(n);
    }

    /// Keys in the index.
    pub fn len(&self) -> usize {
        self.base_keys.len() - self.overridden + self.changes.values().filter(|c| c.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key with its partition, sorted by key: the saved entries merged with this run's changes.
    pub fn entries(&self) -> Vec<(&str, &str)> {
        let mut changed: Vec<(&str, Option<&str>)> =
            self.changes.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(self.base_keys.len() + changed.len());
        let (mut b, mut c) = (0, 0);
        while b < self.base_keys.len() || c < changed.len() {
            let base = (b < self.base_keys.len()).then(|| self.base_keys.value(b));
            match (base, changed.get(c)) {
                (Some(bk), Some(&(ck, cv))) if ck <= bk => {
                    if ck == bk {
                        b += 1;
                    }
                    if let Some(p) = cv {
                        out.push((ck, p));
                    }
                    c += 1;
                }
                (Some(bk), _) => {
                    out.push((bk, self.base_parts.value(b)));
                    b += 1;
                }
                (None, Some(&(ck, cv))) => {
                    if let Some(p) = cv {
                        out.push((ck, p));
                    }
                    c += 1;
                }
                (None, None) => unreachable!("the loop condition"),
            }
        }
        out
    }
}

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
                    index.set(&text::render(raw.as_raw_bson_ref()), shared.clone());
                }
            }
        }
    }
    Ok(index)
}

pub async fn save(lake: &Lake, spec: &CollectionSpec, index: &KeyIndex) -> Result<()> {
    let bytes = encode(index.entries())?;
    lake.put(&lake.index_path(&spec.database, &spec.collection), bytes.into()).await
}

fn encode(entries: Vec<(&str, &str)>) -> Result<bytes::Bytes> {
    let keys = StringArray::from_iter_values(entries.iter().map(|(k, _)| *k));
    let parts = StringArray::from_iter_values(entries.iter().map(|(_, p)| *p));
    drop(entries);
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(parts)])
        .map_err(|e| Error::encode("key index", e))?;
    parquet::encode(schema, &[batch], &LakeType::String, 1 << 20, "key index")
}

/// Reads a saved index. Files are written sorted by key; one that is not (written by hand, or by a future
/// version that stops sorting) is sorted here, the last entry of a repeated key winning.
fn decode(bytes: bytes::Bytes) -> Result<KeyIndex> {
    let enc = |e: arrow::error::ArrowError| Error::encode("key index", e);
    let (batches, _) = parquet::decode(bytes, "key index")?;
    let (mut keys, mut parts): (Vec<&dyn Array>, Vec<&dyn Array>) = (Vec::new(), Vec::new());
    let structs: Vec<StructArray> = batches.into_iter().map(StructArray::from).collect();
    for s in &structs {
        if s.num_columns() < 2
            || s.column(0).data_type() != &DataType::Utf8
            || s.column(1).data_type() != &DataType::Utf8
        {
            return Err(Error::encode("key index", "expected two string columns (key, partition)"));
        }
        keys.push(s.column(0).as_ref());
        parts.push(s.column(1).as_ref());
    }
    if keys.is_empty() {
        return Ok(KeyIndex::default());
    }
    let keys = arrow::compute::concat(&keys).map_err(enc)?.as_string::<i32>().clone();
    let parts = arrow::compute::concat(&parts).map_err(enc)?.as_string::<i32>().clone();
    if keys.null_count() > 0 || parts.null_count() > 0 {
        return Err(Error::encode("key index", "null key or partition"));
    }
    if (1..keys.len()).all(|i| keys.value(i - 1) < keys.value(i)) {
        return Ok(KeyIndex::from_sorted(keys, parts));
    }
    let mut sorted: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for i in 0..keys.len() {
        sorted.insert(keys.value(i), parts.value(i));
    }
    let k = StringArray::from_iter_values(sorted.keys().copied());
    let p = StringArray::from_iter_values(sorted.values().copied());
    Ok(KeyIndex::from_sorted(k, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn changes_overlay_the_saved_entries_and_merge_back_sorted() {
        let saved = encode(vec![("a", "p1"), ("c", "p1"), ("e", "p2")]).unwrap();
        let mut index = decode(saved).unwrap();
        assert_eq!((index.get("a"), index.get("b"), index.len()), (Some("p1"), None, 3));
        assert!(!index.changed(), "nothing to save after a load");
        index.set("c", rel("p2")); // moved
        assert!(index.changed());
        index.set("b", rel("p3")); // new
        assert_eq!(index.remove("e").as_deref(), Some("p2"));
        assert_eq!(index.remove("zz"), None);
        index.set("f", rel("p1"));
        assert_eq!(index.remove("f").as_deref(), Some("p1")); // added, then removed in the same run
        assert_eq!(index.get("c"), Some("p2"));
        assert!(!index.contains_key("e"));
        assert_eq!(index.len(), 3);
        let entries = index.entries();
        assert_eq!(entries, vec![("a", "p1"), ("b", "p3"), ("c", "p2")]);
        let again = decode(encode(entries).unwrap()).unwrap();
        assert_eq!(again.entries(), vec![("a", "p1"), ("b", "p3"), ("c", "p2")]);
    }

    #[test]
    fn an_unsorted_file_is_sorted_on_load() {
        let mut index = decode(encode(vec![("b", "p2"), ("a", "p1"), ("b", "p3")]).unwrap()).unwrap();
        assert_eq!(index.entries(), vec![("a", "p1"), ("b", "p3")]);
        assert_eq!(index.get("b"), Some("p3"));
        index.set("a", rel("p9"));
        assert_eq!(index.entries(), vec![("a", "p9"), ("b", "p3")]);
    }

    #[test]
    fn an_empty_index_round_trips() {
        let index = KeyIndex::default();
        assert!(index.is_empty());
        assert!(decode(encode(index.entries()).unwrap()).unwrap().is_empty());
    }
}
