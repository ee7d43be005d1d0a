//! The key index: which partition each key's row lives in.
//!
//! It lets a run remove a row from its old partition when an update moved the document to another one (a
//! facility change, a corrected creation date) — without it the row would live on in both. It is written after
//! the partition files and before the watermark; when it is missing or unreadable it is rebuilt by reading the
//! key column of every partition file. A stale index (a crash between the data and the index) is harmless: the
//! rerun re-reads the same documents, and removing a key a partition no longer holds changes nothing.
//!
//! On the lake (see [`store`]) the index is split by key range into immutable segment files listed by a manifest,
//! so an incremental run reads and rewrites only the segments holding the keys it read: with `_id`s that grow
//! with time (ObjectIds), a day's changes touch the newest segment or two, whatever the collection's size. It
//! holds one segment at a time ([`Updater`]), so keys spread over every segment (random `_id`s) cost reading
//! and rewriting them, but not holding them.
use crate::{Error, FastMap, Result};
use arrow::array::{Array, AsArray, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

mod rebuild;
pub mod store;
mod update;
mod writer;
pub use store::{fetch, load_or_rebuild, save, Fetched};
pub use update::Updater;

/// Keys per segment file by default (`[sync] index_segment_keys`, a setting of [`crate::config`]). A segment that
/// grows past twice this (new keys land in the last one) is split.
pub use crate::config::environment::INDEX_SEGMENT_KEYS as SEGMENT_KEYS;

/// key -> partition path relative to the table (`facility_id=BLR01/date=2025-07-02`).
///
/// Each loaded segment's rows (sorted by key) stay as two Arrow string arrays and are looked up by binary
/// search; changes made through [`KeyIndex::set`] live in a hash map. A run updates the index with an
/// [`Updater`], which loads one segment at a time and writes the changed ones as it goes; looking up a key whose
/// segment is not loaded is a bug, and panics.
pub struct KeyIndex {
    /// Sorted by `first`; the first one's is "" so every key falls in exactly one.
    segments: Vec<Segment>,
    /// This run's changes: the key's partition now, or `None` when it was removed.
    changes: FastMap<String, Option<Arc<str>>>,
    /// Every segment was written in this run ([`store::SegmentWriter`]) and only the manifest is left to save.
    unlisted: bool,
    /// The versions of recently read documents the lake holds ([`crate::state::digest`]), kept in the manifest.
    digest: Option<crate::state::digest::Digest>,
    /// The digest differs from the saved one: the manifest is saved even if no key changed.
    digest_changed: bool,
    /// Segment files whose bytes are held here rather than on the lake: a small index kept in its manifest
    /// (see [`store`]), and small segments written in this run, put (or kept in the manifest) by the save.
    held: FastMap<String, bytes::Bytes>,
    /// The segment files on the lake that the manifest this index was loaded from lists (None: not loaded from a
    /// manifest): a save that need not look for strays deletes those it no longer lists, without a listing.
    stored: Option<std::collections::HashSet<String>>,
    /// The copy of the schema file its manifest keeps ([`store::SchemaCopy`]).
    schema: Option<store::SchemaCopy>,
    /// The copy differs from the saved one: the manifest is saved even if nothing else changed.
    schema_changed: bool,
}

/// A segment encoded to at most this many bytes is held until the save, which keeps it in the manifest when it
/// is the index's only segment (an index of some tens of thousands of keys).
pub const INLINE_BYTES: usize = 512 * 1024;

/// One key range of the index.
struct Segment {
    /// The smallest key this segment covers (inclusive); it covers keys up to the next segment's `first`.
    first: String,
    /// Its file in the index folder; None when it was made in this run (not saved yet).
    file: Option<String>,
    /// Keys in its file.
    keys: usize,
    /// The file's entries, once loaded.
    base: Option<Base>,
    /// Entries in `base` that a change overrides (set elsewhere, or removed).
    overridden: usize,
    /// The files an [`Updater`] wrote for this segment in this run (none when it emptied it): the save lists
    /// them in its place.
    replaced: Option<Vec<store::ManifestSegment>>,
}

/// A segment's saved entries, strictly increasing by key.
struct Base {
    keys: StringArray,
    parts: StringArray,
}

impl Base {
    fn empty() -> Base {
        Base { keys: StringArray::from(Vec::<&str>::new()), parts: StringArray::from(Vec::<&str>::new()) }
    }

    fn find(&self, key: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.keys.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.keys.value(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex::from_base(Base::empty())
    }
}

impl KeyIndex {
    /// One segment covering every key, loaded, with no file (saving writes it, split as needed).
    fn from_base(base: Base) -> Self {
        let keys = base.keys.len();
        let segment =
            Segment { first: String::new(), file: None, keys, base: Some(base), overridden: 0, replaced: None };
        KeyIndex {
            segments: vec![segment],
            changes: FastMap::default(),
            unlisted: false,
            digest: None,
            digest_changed: false,
            held: FastMap::default(),
            stored: None,
            schema: None,
            schema_changed: false,
        }
    }

    /// Reads segment `file`: from the bytes held here (a manifest's inline segment, or one written in this run),
    /// else from the lake.
    async fn read_segment(
        &self,
        lake: &crate::sink::Lake,
        spec: &crate::config::CollectionSpec,
        file: &str,
    ) -> Result<Base> {
        match self.held.get(file) {
            Some(bytes) => store::decode_segment(lake, spec, file, bytes.clone()).await,
            None => store::read_segment(lake, spec, file).await,
        }
    }

    /// The segment covering `key`.
    fn segment_of(&self, key: &str) -> usize {
        self.segments.partition_point(|s| s.first.as_str() <= key).saturating_sub(1)
    }

    fn base_of(&self, key: &str) -> (usize, &Base) {
        let s = self.segment_of(key);
        let base = self.segments[s].base.as_ref().unwrap_or_else(|| {
            panic!("key index segment {s} is not loaded (an Updater loads segments as the keys come)")
        });
        (s, base)
    }

    /// The partition `key`'s row lives in.
    pub fn get(&self, key: &str) -> Option<&str> {
        match self.changes.get(key) {
            Some(change) => change.as_deref(),
            None => {
                let (_, base) = self.base_of(key);
                base.find(key).map(|i| base.parts.value(i))
            }
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
                let (s, base) = self.base_of(key);
                if base.find(key).is_some() {
                    self.segments[s].overridden += 1;
                }
                self.changes.insert(key.to_string(), to);
            }
        }
    }

    /// The digest saved with the index (None: none, or an index rebuilt or of an older version).
    pub fn digest(&self) -> Option<&crate::state::digest::Digest> {
        self.digest.as_ref()
    }

    /// The copy of the schema file the manifest this index was loaded from keeps.
    pub fn schema_copy(&self) -> Option<&store::SchemaCopy> {
        self.schema.as_ref()
    }

    /// The copy of the schema file the next save keeps in the manifest. A copy of another version of the file
    /// makes the manifest be saved: its copy must never name a tag the file had since (see [`store::SchemaCopy`]).
    pub fn set_schema_copy(&mut self, copy: Option<store::SchemaCopy>) {
        if copy.as_ref().map(|c| &c.tag) != self.schema.as_ref().map(|c| &c.tag) {
            self.schema_changed = true;
        }
        self.schema = copy;
    }

    /// The digest the next save keeps (None: none).
    pub fn set_digest(&mut self, digest: Option<crate::state::digest::Digest>) {
        if digest != self.digest {
            self.digest = digest;
            self.digest_changed = true;
        }
    }

    /// Whether this run changed anything (a new key, a moved or removed one).
    pub fn changed(&self) -> bool {
        !self.changes.is_empty() || self.segments.iter().any(|s| s.replaced.is_some())
    }

    /// Merges the changes to segment `s` (loaded) into its entries; whether there were any.
    fn take_changes_into_base(&mut self, s: usize) -> bool {
        let end = self.segments.get(s + 1).map(|n| n.first.clone());
        let first = self.segments[s].first.clone();
        let in_range = |k: &str| k >= first.as_str() && end.as_deref().is_none_or(|e| k < e);
        let mut mine: Vec<(String, Option<std::sync::Arc<str>>)> = Vec::new();
        self.changes.retain(|k, v| {
            if in_range(k) {
                mine.push((k.clone(), v.take()));
                false
            } else {
                true
            }
        });
        if mine.is_empty() {
            return false;
        }
        mine.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let changed: Vec<(&str, Option<&str>)> = mine.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        let segment = &mut self.segments[s];
        let base = segment.base.as_ref().expect("a segment whose changes are merged is loaded");
        let mut entries = Vec::with_capacity(base.keys.len() + changed.len());
        merge_into(&mut entries, base, &changed);
        let keys = StringArray::from_iter_values(entries.iter().map(|(k, _)| *k));
        let parts = StringArray::from_iter_values(entries.iter().map(|(_, p)| *p));
        segment.keys = keys.len();
        segment.overridden = 0;
        segment.base = Some(Base { keys, parts });
        true
    }

    /// Whether saving would change the lake: a change, or entries not in a segment file yet (a first load, or
    /// an index read from the single file of older versions, which the save turns into segments).
    pub fn needs_save(&self) -> bool {
        self.changed()
            || self.unlisted
            || self.digest_changed
            || self.schema_changed
            || self.segments.iter().any(|s| s.file.is_none() && s.base.as_ref().is_some_and(|b| b.keys.len() > 0))
    }

    /// Room for `n` more changed keys.
    pub fn reserve(&mut self, n: usize) {
        self.changes.reserve(n);
    }

    /// Keys in the index (loaded or not).
    pub fn len(&self) -> usize {
        self.segments.iter().map(|s| s.keys - s.overridden).sum::<usize>()
            + self.changes.values().filter(|c| c.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Segments in the index, and how many of them are loaded.
    pub fn segments_loaded(&self) -> (usize, usize) {
        (self.segments.len(), self.segments.iter().filter(|s| s.base.is_some()).count())
    }

    /// The segment files written in this run by a [`store::SegmentWriter`] (for a worker's key run).
    pub fn segment_files(&self) -> Vec<store::SegmentFile> {
        self.segments.iter().filter_map(|s| Some(store::SegmentFile { file: s.file.clone()?, keys: s.keys })).collect()
    }

    /// Every key with its partition, sorted by key: the saved entries merged with this run's changes. Every
    /// segment must be loaded (tests compare whole indexes with it; [`store::visit_keys`] visits the keys of any
    /// index a segment at a time).
    #[cfg(test)]
    pub fn entries(&self) -> Vec<(&str, &str)> {
        let changed = self.sorted_changes();
        let mut out = Vec::with_capacity(self.len());
        let mut c = 0;
        for (s, seg) in self.segments.iter().enumerate() {
            let end = self.changes_end(s, &changed, c);
            merge_into(&mut out, seg.base.as_ref().expect("every segment loaded"), &changed[c..end]);
            c = end;
        }
        out
    }

    /// This run's changes sorted by key.
    fn sorted_changes(&self) -> Vec<(&str, Option<&str>)> {
        let mut changed: Vec<(&str, Option<&str>)> =
            self.changes.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        changed
    }

    /// Where segment `s`'s changes end in `changed` (sorted), its changes starting at `from`.
    fn changes_end(&self, s: usize, changed: &[(&str, Option<&str>)], from: usize) -> usize {
        match self.segments.get(s + 1) {
            Some(next) => from + changed[from..].partition_point(|(k, _)| *k < next.first.as_str()),
            None => changed.len(),
        }
    }
}

/// Appends `base`'s entries merged with `changed` (sorted; None removes) to `out`, sorted by key.
fn merge_into<'a>(out: &mut Vec<(&'a str, &'a str)>, base: &'a Base, changed: &[(&'a str, Option<&'a str>)]) {
    let (mut b, mut c) = (0, 0);
    while b < base.keys.len() || c < changed.len() {
        let bk = (b < base.keys.len()).then(|| base.keys.value(b));
        match (bk, changed.get(c)) {
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
                out.push((bk, base.parts.value(b)));
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
}

/// A segment (or the pre-segment single file): two string columns, key and partition, sorted by key.
fn encode(entries: &[(&str, &str)]) -> Result<bytes::Bytes> {
    let keys = StringArray::from_iter_values(entries.iter().map(|(k, _)| *k));
    let parts = StringArray::from_iter_values(entries.iter().map(|(_, p)| *p));
    encode_arrays(keys, parts)
}

fn encode_arrays(keys: StringArray, parts: StringArray) -> Result<bytes::Bytes> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(parts)])
        .map_err(|e| Error::encode("key index", e))?;
    crate::sink::parquet::encode(
        schema,
        &[batch],
        &crate::schema::LakeType::String,
        crate::sink::parquet::RowGroups::rows(1 << 20),
        "key index",
    )
}

/// Reads a segment or the pre-segment single file. Files are written sorted by key; one that is not (written by
/// hand, or by a future version that stops sorting) is sorted here, the last entry of a repeated key winning.
fn decode(bytes: bytes::Bytes) -> Result<Base> {
    let enc = |e: arrow::error::ArrowError| Error::encode("key index", e);
    let (batches, _) = crate::sink::parquet::decode(bytes, "key index")?;
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
        return Ok(Base::empty());
    }
    let keys = arrow::compute::concat(&keys).map_err(enc)?.as_string::<i32>().clone();
    let parts = arrow::compute::concat(&parts).map_err(enc)?.as_string::<i32>().clone();
    if keys.null_count() > 0 || parts.null_count() > 0 {
        return Err(Error::encode("key index", "null key or partition"));
    }
    if (1..keys.len()).all(|i| keys.value(i - 1) < keys.value(i)) {
        return Ok(Base { keys, parts });
    }
    let mut sorted: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for i in 0..keys.len() {
        sorted.insert(keys.value(i), parts.value(i));
    }
    let k = StringArray::from_iter_values(sorted.keys().copied());
    let p = StringArray::from_iter_values(sorted.values().copied());
    Ok(Base { keys: k, parts: p })
}

/// A lake in memory and the collection `hims.visits`, for the index's tests.
#[cfg(test)]
pub(crate) mod test_lake {
    use crate::config::CollectionSpec;
    use crate::sink::Lake;

    pub fn setup() -> (Lake, CollectionSpec) {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let lake = Lake::from_store(store, object_store::path::Path::default(), "memory://lake");
        let text = "database,collection,timestamp_column,partition_by\nhims,visits,modified_at,\n";
        let file = crate::config::CollectionsFile::parse(std::path::Path::new("collections.csv"), text).unwrap();
        (lake, file.entries.into_iter().next().unwrap())
    }

    /// The index folder's file names, sorted.
    pub async fn files(lake: &Lake, spec: &CollectionSpec) -> Vec<String> {
        let dir = lake.index_dir(&spec.database, &spec.collection);
        let mut v: Vec<String> =
            lake.list(&dir).await.unwrap().into_iter().map(|p| p.filename().unwrap().to_string()).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn loaded(entries: &[(&str, &str)]) -> KeyIndex {
        KeyIndex::from_base(decode(encode(entries).unwrap()).unwrap())
    }

    #[test]
    fn changes_overlay_the_saved_entries_and_merge_back_sorted() {
        let mut index = loaded(&[("a", "p1"), ("c", "p1"), ("e", "p2")]);
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
        assert_eq!(loaded(&entries).entries(), vec![("a", "p1"), ("b", "p3"), ("c", "p2")]);
    }

    #[test]
    fn an_unsorted_file_is_sorted_on_load() {
        let mut index = loaded(&[("b", "p2"), ("a", "p1"), ("b", "p3")]);
        assert_eq!(index.entries(), vec![("a", "p1"), ("b", "p3")]);
        assert_eq!(index.get("b"), Some("p3"));
        index.set("a", rel("p9"));
        assert_eq!(index.entries(), vec![("a", "p9"), ("b", "p3")]);
    }

    #[test]
    fn an_empty_index_round_trips() {
        let index = KeyIndex::default();
        assert!(index.is_empty());
        assert!(loaded(&index.entries()).is_empty());
    }

    #[test]
    #[should_panic(expected = "not loaded")]
    fn looking_up_a_key_of_an_unloaded_segment_is_a_bug() {
        let mut index = loaded(&[("a", "p1")]);
        index.segments.push(Segment {
            first: "m".into(),
            file: Some("s.parquet".into()),
            keys: 5,
            base: None,
            overridden: 0,
            replaced: None,
        });
        assert_eq!(index.get("b"), None, "the loaded segment answers");
        assert_eq!(index.len(), 6, "an unloaded segment counts its keys");
        index.get("n");
    }
}
