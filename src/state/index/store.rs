//! The key index on the lake: `<lake>/_mongolake/index/<db>/<coll>/manifest.json` lists the segment files
//! (`<run-id>-<n>.parquet` beside it) with the first key each covers and its key count.
//!
//! ```json
//! {"format": 2, "segments": [{"first": "", "file": "20250701T020000123Z-3f2a-00000.parquet", "keys": 131072}, ...]}
//! ```
//! Segment files are never modified: a save writes the segments that changed under new names, then the
//! manifest (the switch, one atomic put), then deletes what the manifest no longer lists. A crash before the
//! manifest leaves the old index whole (and unlisted files that the next save deletes).
//!
//! An index of one small segment (encoded to at most [`super::INLINE_BYTES`]: some tens of thousands of keys)
//! is kept in the manifest itself, its file's bytes in base64 under `inline`, so a night reads and writes one
//! object instead of four (the segment's GET and PUT, the old one's delete). It is the same Parquet file, only
//! stored there; it becomes a file of its own when the index grows past one segment. (Versions before find no
//! such file, and rebuild the index from the partition files once.)
//!
//! The manifest also keeps a copy of the collection's schema file with the ETag the store gave it
//! ([`SchemaCopy`]): a sync on S3 lists the schema folder once for every collection and reads a schema file
//! only when the listing shows it with another tag. (Versions before ignore the copy, and drop it when they
//! save: the next run reads the file.)
//!
//! Stale files are found by listing the index folder when the save is asked to tidy (the run before may have
//! stopped between its segments and its manifest: see [`save`]); otherwise the save deletes the files of the
//! manifest it loaded that it no longer lists, with no listing.
//!
//! Versions before segments kept the whole index in `<lake>/_mongolake/index/<db>/<coll>.parquet` (same two
//! columns). That file is still read, and preferred when present: a save deletes it after writing the
//! manifest, so if it exists, either an older mongolake wrote it after this one (it is the newer), or a save
//! crashed between the manifest and the delete, before the watermark (stale, which is harmless, see the
//! module docs of [`super`]). Its next save turns it into segments.
pub use super::rebuild::{rebuild, Rebuild};
pub use super::writer::{KeyRun, SegmentFile, SegmentWriter};
use super::{decode, encode, merge_into, Base, KeyIndex, Segment};
use crate::config::CollectionSpec;
use crate::sink::Lake;
use crate::{Error, Result};
use arrow::array::Array;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::sink::layout::{segment_file_name, INDEX_MANIFEST as MANIFEST};
/// 3: keys are [`crate::schema::text::key_text`]s (type-tagged except strings, ObjectIds and UUIDs); 2 and
/// the single file before segments held untagged texts (the integer 42 and the string "42" were one key), so
/// such an index is rebuilt once from the partition files, whose key columns hold the typed values.
const FORMAT: u32 = 3;
const OLD_KEY_TEXTS: &str = "written by an older mongolake (key texts before type tags, format 2); rebuilt once";

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    segments: Vec<ManifestSegment>,
    /// Added after format 3 without a new format: older versions ignore it (and drop it when they save, which
    /// only costs the next run the reads it would have saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<crate::state::digest::Digest>,
    /// Segment files kept here rather than beside it: file name -> its bytes in base64 (see the module docs).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    inline: std::collections::BTreeMap<String, String>,
    /// The collection's schema file as the run that saved this manifest last knew it (added like `digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schema: Option<SchemaCopy>,
}

/// A copy of the collection's schema file (`_mongolake/schema/<db>/<coll>.json`) and the tag (ETag) the object
/// store gave that file when the copy was made. The file itself is the truth: a sync uses the copy only when
/// a listing of the schema folder shows the file with this very tag (on S3 one listing for every collection
/// instead of a GET each), and reads the file whenever it shows another (written since, by anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaCopy {
    pub tag: String,
    pub text: String,
}

/// A segment as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ManifestSegment {
    pub(super) first: String,
    pub(super) file: String,
    pub(super) keys: usize,
}

fn manifest_path(lake: &Lake, spec: &CollectionSpec) -> Path {
    lake.layout().index_manifest(&spec.database, &spec.collection)
}

pub(super) fn segment_path(lake: &Lake, spec: &CollectionSpec, file: &str) -> Path {
    lake.layout().index_segment(&spec.database, &spec.collection, file)
}

/// The collection's index with no segment loaded yet (the pre-segment file is loaded whole), or, when there is
/// none or it cannot be read, rebuilt from the partition files.
pub async fn load_or_rebuild(lake: &Lake, spec: &CollectionSpec, how: &Rebuild) -> Result<KeyIndex> {
    fetch(lake, spec).await?.open(lake, spec, how).await
}

/// The collection's index manifest as read, not yet opened: a sync reads it beside the state and schema files
/// (on S3 one round trip for the three instead of three).
pub struct Fetched(Option<bytes::Bytes>);

/// Reads the manifest (the first half of [`load_or_rebuild`]).
pub async fn fetch(lake: &Lake, spec: &CollectionSpec) -> Result<Fetched> {
    Ok(Fetched(lake.get_opt(&manifest_path(lake, spec)).await?))
}

impl Fetched {
    /// The index the manifest describes (the second half of [`load_or_rebuild`]).
    pub async fn open(self, lake: &Lake, spec: &CollectionSpec, how: &Rebuild) -> Result<KeyIndex> {
        let Fetched(manifest) = self;
        // The manifest first: a lake of this version has one, and the single file of older versions is then looked
        // for no more (a request a collection a night on S3). A manifest beside that file was written by a rebuild
        // from it whose save stopped before deleting it: the manifest holds the index, and the next save deletes it.
        let Some(bytes) = manifest else {
            if lake.get_opt(&lake.index_path(&spec.database, &spec.collection)).await?.is_some() {
                // (its keys are texts of the format before 3: rebuilt once; the next save deletes the file)
                return rebuild(lake, spec, OLD_KEY_TEXTS, how).await;
            }
            return rebuild(lake, spec, "", how).await;
        };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return rebuild(lake, spec, &format!("unreadable manifest: {e}"), how).await,
        };
        if manifest.format > FORMAT {
            return Err(Error::collection(
                spec.name(),
                format!(
                    "the key index {} has format {}, newer than this mongolake reads ({FORMAT}); upgrade mongolake",
                    lake.display(&manifest_path(lake, spec)),
                    manifest.format
                ),
            ));
        }
        if manifest.format < FORMAT {
            return rebuild(lake, spec, OLD_KEY_TEXTS, how).await;
        }
        let ordered = manifest.segments.windows(2).all(|w| w[0].first < w[1].first);
        if !ordered || manifest.segments.first().is_some_and(|s| !s.first.is_empty()) {
            return rebuild(lake, spec, "manifest segments out of order", how).await;
        }
        if manifest.segments.is_empty() {
            return Ok(KeyIndex { stored: Some(Default::default()), schema: manifest.schema, ..KeyIndex::default() });
        }
        let mut held = crate::FastMap::default();
        for (file, text) in &manifest.inline {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => {
                    held.insert(file.clone(), bytes::Bytes::from(bytes));
                }
                Err(e) => return rebuild(lake, spec, &format!("unreadable inline segment {file}: {e}"), how).await,
            }
        }
        let stored = manifest.segments.iter().filter(|s| !held.contains_key(&s.file)).map(|s| s.file.clone()).collect();
        let segments = manifest
            .segments
            .into_iter()
            .map(|s| Segment {
                first: s.first,
                file: Some(s.file),
                keys: s.keys,
                base: None,
                overridden: 0,
                replaced: None,
            })
            .collect();
        Ok(KeyIndex {
            segments,
            changes: Default::default(),
            unlisted: false,
            digest: manifest.digest,
            digest_changed: false,
            held,
            stored: Some(stored),
            schema: manifest.schema,
            schema_changed: false,
        })
    }
}

/// Loads the segments covering the keys that `keys` visits and are not loaded yet (tests look keys up with it;
/// a run updates the index a segment at a time with an [`super::Updater`]).
#[cfg(test)]
pub async fn load_for(
    index: &mut KeyIndex,
    lake: &Lake,
    spec: &CollectionSpec,
    keys: impl FnOnce(&mut dyn FnMut(&str)) -> Result<()>,
) -> Result<()> {
    if index.segments.iter().all(|s| s.base.is_some()) {
        return Ok(()); // (a first load's empty index, or the single file of older versions)
    }
    let mut wanted = std::collections::BTreeSet::new();
    keys(&mut |k| {
        let s = index.segment_of(k);
        if index.segments[s].base.is_none() {
            wanted.insert(s);
        }
    })?;
    load_segments(index, lake, spec, wanted.into_iter().collect()).await
}

/// Loads every segment (tests compare whole indexes; a run visits them with [`visit_keys`]).
#[cfg(test)]
pub async fn load_all(index: &mut KeyIndex, lake: &Lake, spec: &CollectionSpec) -> Result<()> {
    let wanted = (0..index.segments.len()).filter(|s| index.segments[*s].base.is_none()).collect();
    load_segments(index, lake, spec, wanted).await
}

#[cfg(test)]
async fn load_segments(index: &mut KeyIndex, lake: &Lake, spec: &CollectionSpec, wanted: Vec<usize>) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let files: Vec<(usize, String)> = wanted
        .into_iter()
        .map(|s| (s, index.segments[s].file.clone().expect("an unloaded segment has a file")))
        .collect();
    let loaded: Result<Vec<(usize, Base)>> = futures::stream::iter(files.into_iter().map(|(s, file)| {
        let index = &*index;
        async move { Ok((s, index.read_segment(lake, spec, &file).await?)) }
    }))
    .buffer_unordered(8)
    .try_collect()
    .await;
    match loaded {
        Ok(bases) => {
            for (s, base) in bases {
                index.segments[s].base = Some(base);
            }
            Ok(())
        }
        // Only before this run changed anything (changes are made after loading, by every caller).
        Err(e) if !index.changed() => {
            *index = rebuild(lake, spec, &e.to_string(), &Rebuild::default()).await?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Reads segment `file`. A missing or undecodable file is an [`Error::IndexSegment`] (the index can be rebuilt);
/// a failed read of the lake stays a store error (it may be transient, and rebuilding would not help).
pub(super) async fn read_segment(lake: &Lake, spec: &CollectionSpec, file: &str) -> Result<Base> {
    let path = segment_path(lake, spec, file);
    let missing = || Error::IndexSegment { path: lake.display(&path), message: "is missing".into(), source: None };
    let bytes = lake.get_opt(&path).await?.ok_or_else(missing)?;
    decode_segment(lake, spec, file, bytes).await
}

/// Decodes segment `file`'s bytes (read from the lake, or held: see [`KeyIndex::read_segment`]); undecodable is an
/// [`Error::IndexSegment`].
pub(super) async fn decode_segment(
    lake: &Lake,
    spec: &CollectionSpec,
    file: &str,
    bytes: bytes::Bytes,
) -> Result<Base> {
    tokio::task::spawn_blocking(move || decode(bytes)).await.map_err(|e| Error::encode("key index", e))?.map_err(|e| {
        Error::IndexSegment {
            path: lake.display(&segment_path(lake, spec, file)),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    })
}

/// Reads a segment that is not loaded (a segment made in this run is always loaded).
async fn read_unloaded(index: &KeyIndex, lake: &Lake, spec: &CollectionSpec, segment: &super::Segment) -> Result<Base> {
    let file = segment.file.as_deref().expect("a segment without a file is made loaded");
    index.read_segment(lake, spec, file).await
}

/// Calls `f` with every key of the index in key order, this run's changes applied, a segment at a time: a
/// segment that is not loaded is read for the visit and dropped after it, so visiting an index of any size
/// holds one segment besides those loaded (which stay as they were). A segment that cannot be read is an error
/// (the only one); the caller may [`rebuild`] the index and visit again.
pub async fn visit_keys(index: &KeyIndex, lake: &Lake, spec: &CollectionSpec, mut f: impl FnMut(&str)) -> Result<()> {
    let changed = index.sorted_changes();
    let mut c = 0;
    for (s, segment) in index.segments.iter().enumerate() {
        let end = index.changes_end(s, &changed, c);
        let read;
        let base = match &segment.base {
            Some(base) => base,
            None => {
                read = read_unloaded(index, lake, spec, segment).await?;
                &read
            }
        };
        let mut entries = Vec::with_capacity(base.keys.len() + end - c);
        merge_into(&mut entries, base, &changed[c..end]);
        entries.into_iter().for_each(|(key, _)| f(key));
        c = end;
    }
    Ok(())
}

/// How many of `keys` (sorted, distinct) the index does not hold, this run's changes applied: a run's new keys.
/// Only the segments the keys fall in are read, one at a time (loaded ones are used as they are). The last one
/// read stays loaded: a night's keys often fall in one segment, which the [`super::Updater`] then takes as it is
/// instead of reading it again (and drops, if its first key falls elsewhere).
pub async fn count_absent(index: &mut KeyIndex, lake: &Lake, spec: &CollectionSpec, keys: &[String]) -> Result<usize> {
    let mut absent = 0;
    let mut i = 0;
    let mut last_read: Option<(usize, Base)> = None;
    while i < keys.len() {
        let s = index.segment_of(&keys[i]);
        let end = index.segments.get(s + 1).map(|n| n.first.as_str());
        let j = i + keys[i..].partition_point(|k| end.is_none_or(|e| k.as_str() < e));
        let segment = &index.segments[s];
        if segment.base.is_none() {
            last_read = Some((s, read_unloaded(index, lake, spec, segment).await?));
        }
        let base = match &segment.base {
            Some(base) => base,
            None => &last_read.as_ref().expect("read above").1,
        };
        absent += keys[i..j]
            .iter()
            .filter(|k| match index.changes.get(k.as_str()) {
                Some(change) => change.is_none(),
                None => base.find(k).is_none(),
            })
            .count();
        i = j.max(i + 1);
    }
    if let Some((s, base)) = last_read {
        index.segments[s].base = Some(base);
    }
    Ok(absent)
}

/// Saves what this run changed: the segments holding changed keys are written anew (split into `target` keys
/// each when they grew past twice that, dropped when emptied), then the manifest, then stale files go.
///
/// `tidy`: list the index folder for files no manifest lists (a run that stopped between its segment files and
/// its manifest left them). Without it, only the files of the manifest the index was loaded from that it no
/// longer lists are deleted (the folder is listed anyway for an index not loaded from a manifest: a first load,
/// a rebuild, the single file of older versions). The caller asks for it unless the run before ended cleanly.
pub async fn save(
    lake: &Lake,
    spec: &CollectionSpec,
    index: &KeyIndex,
    run_id: &str,
    target: usize,
    tidy: bool,
) -> Result<()> {
    let changed = index.sorted_changes();
    let mut listed: Vec<ManifestSegment> = Vec::new();
    // (segment files written now, by the Updater or the SegmentWriter before or here: small ones are held)
    let mut made: crate::FastMap<String, bytes::Bytes> = crate::FastMap::default();
    let mut c = 0;
    for (s, seg) in index.segments.iter().enumerate() {
        let end = index.changes_end(s, &changed, c);
        let mine = &changed[c..end];
        c = end;
        if let Some(replaced) = &seg.replaced {
            // (an Updater wrote this segment's files already; its changes were merged into them)
            listed.extend(replaced.iter().cloned());
            continue;
        }
        if let (true, Some(file)) = (mine.is_empty(), &seg.file) {
            listed.push(ManifestSegment { first: seg.first.clone(), file: file.clone(), keys: seg.keys });
            continue;
        }
        let base = seg.base.as_ref().expect("a segment with changes, or made in this run, is loaded");
        let mut entries = Vec::with_capacity(base.keys.len() + mine.len());
        merge_into(&mut entries, base, mine);
        let chunk = if entries.len() > 2 * target { target } else { entries.len().max(1) };
        for (i, part) in entries.chunks(chunk).enumerate() {
            let file = segment_file_name(run_id, listed.len());
            let first = if i == 0 { seg.first.clone() } else { part[0].0.to_string() };
            made.insert(file.clone(), encode(part)?);
            listed.push(ManifestSegment { first, file, keys: part.len() });
        }
    }
    // (an emptied first segment leaves the next one covering from the start)
    if let Some(first) = listed.first_mut() {
        first.first.clear();
    }
    let bytes_of = |file: &str| made.get(file).or_else(|| index.held.get(file));
    // One small segment is kept in the manifest; any other listed segment whose bytes are held becomes a file.
    let mut inline = std::collections::BTreeMap::new();
    if let [only] = listed.as_slice() {
        if let Some(b) = bytes_of(&only.file).filter(|b| b.len() <= super::INLINE_BYTES) {
            inline.insert(only.file.clone(), base64::engine::general_purpose::STANDARD.encode(b));
        }
    }
    let writes: Vec<(Path, bytes::Bytes)> = listed
        .iter()
        .filter(|s| !inline.contains_key(&s.file))
        .filter_map(|s| Some((segment_path(lake, spec, &s.file), bytes_of(&s.file)?.clone())))
        .collect();
    // (a save for the digest alone writes the manifest and nothing else: no file goes stale)
    let keys_saved = !made.is_empty() || index.changed() || index.unlisted;
    futures::stream::iter(writes.into_iter().map(|(path, bytes)| async move { lake.put(&path, bytes.into()).await }))
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    let keep: std::collections::HashSet<String> =
        listed.iter().filter(|s| !inline.contains_key(&s.file)).map(|s| s.file.clone()).collect();
    let manifest = Manifest {
        format: FORMAT,
        segments: listed,
        digest: index.digest.clone(),
        inline,
        schema: index.schema.clone(),
    };
    lake.put(&manifest_path(lake, spec), serde_json::to_vec(&manifest).expect("serialisable").into()).await?;
    if !keys_saved {
        return Ok(());
    }
    let stale = match (&index.stored, tidy) {
        (Some(stored), false) => {
            stored.iter().filter(|f| !keep.contains(*f)).map(|f| segment_path(lake, spec, f)).collect()
        }
        _ => {
            // The single file of older versions and the segments no longer listed, in one request on S3.
            let mut stale = vec![lake.index_path(&spec.database, &spec.collection)];
            for path in lake.list(&lake.index_dir(&spec.database, &spec.collection)).await? {
                match path.filename() {
                    Some(MANIFEST) => {}
                    Some(name) if keep.contains(name) => {}
                    _ => stale.push(path),
                }
            }
            stale
        }
    };
    lake.delete_all(stale).await
}

/// Keys in the saved index (rows in the table), without loading a segment; None when there is no index.
pub async fn saved_keys(lake: &Lake, db: &str, coll: &str) -> Result<Option<u64>> {
    // (the manifest first, as in load_or_rebuild)
    let path = lake.layout().index_manifest(db, coll);
    let Some(bytes) = lake.get_opt(&path).await? else {
        let legacy = lake.index_path(db, coll);
        let Some(bytes) = lake.get_opt(&legacy).await? else { return Ok(None) };
        let (_, _, rows) = crate::sink::parquet::header(bytes, &format!("key index {}", lake.display(&legacy)))?;
        return Ok(Some(rows));
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| Error::encode(format!("key index {}", lake.display(&path)), e))?;
    Ok(Some(manifest.segments.iter().map(|s| s.keys as u64).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::index::SEGMENT_KEYS;
    use std::sync::Arc;

    use crate::state::index::test_lake::{files, setup};

    /// The keys, as `load_for` visits a run's keys.
    fn visit<'a>(keys: &'a [&'a str]) -> impl FnOnce(&mut dyn FnMut(&str)) -> Result<()> + 'a {
        move |f| {
            keys.iter().for_each(|k| f(k));
            Ok(())
        }
    }

    fn key(i: usize) -> String {
        format!("k{i:02}")
    }

    #[tokio::test]
    async fn a_first_load_streams_its_segments_and_lists_them_on_save() {
        let (lake, spec) = setup();
        // A stray file from a first load that crashed before its manifest.
        lake.put(&segment_path(&lake, &spec, "run0-00000.parquet"), bytes::Bytes::from_static(b"x").into())
            .await
            .unwrap();
        let mut writer = SegmentWriter::new(&lake, &spec, "run1", 3);
        for i in 0..7 {
            writer.push(&key(i), &format!("p{}", i % 2)).await.unwrap();
        }
        let err = writer.push("k03", "p0").await.unwrap_err().to_string();
        assert!(err.contains("out of order"), "{err}");
        assert_eq!(files(&lake, &spec).await.len(), 3, "two full segments written as they filled, and the stray");
        let index = writer.finish().await.unwrap();
        assert_eq!((index.len(), index.segments_loaded(), index.needs_save()), (7, (3, 0), true));
        assert!(
            load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap().is_empty(),
            "unlisted until the manifest"
        );
        save(&lake, &spec, &index, "run1", 3, true).await.unwrap();
        let listed = files(&lake, &spec).await;
        assert_eq!(listed, ["manifest.json", "run1-00000.parquet", "run1-00001.parquet", "run1-00002.parquet"]);
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_all(&mut index, &lake, &spec).await.unwrap();
        let want: Vec<(String, String)> = (0..7).map(|i| (key(i), format!("p{}", i % 2))).collect();
        let got: Vec<(String, String)> = index.entries().iter().map(|(k, p)| (k.to_string(), p.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(index.get(""), None, "the first segment covers from the start");

        let empty = SegmentWriter::new(&lake, &spec, "run2", 3).finish().await.unwrap();
        assert!(empty.is_empty() && !empty.needs_save(), "no keys: nothing to save");
    }

    #[tokio::test]
    async fn the_manifest_keeps_the_schema_copy_and_a_new_copy_saves_it() {
        let (lake, spec) = setup();
        let mut index = KeyIndex::default();
        index.set(&key(1), Arc::from("p0"));
        let copy = SchemaCopy { tag: "\"etag-1\"".into(), text: "{\"format\": 1}".into() };
        index.set_schema_copy(Some(copy.clone()));
        save(&lake, &spec, &index, "run1", 8, true).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        assert_eq!(index.schema_copy(), Some(&copy));
        index.set_schema_copy(Some(copy.clone()));
        assert!(!index.needs_save(), "the same copy: nothing to save");
        let newer = SchemaCopy { tag: "\"etag-2\"".into(), ..copy };
        index.set_schema_copy(Some(newer.clone()));
        assert!(index.needs_save(), "a manifest never keeps a copy older than the file it saw");
        save(&lake, &spec, &index, "run2", 8, false).await.unwrap();
        let index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        assert_eq!(index.schema_copy(), Some(&newer));
        assert_eq!(index.len(), 1);
        // A manifest without one (older versions, local disk) reads as none.
        let bytes = lake.get_opt(&manifest_path(&lake, &spec)).await.unwrap().unwrap();
        let mut m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        m.as_object_mut().unwrap().remove("schema");
        lake.put(&manifest_path(&lake, &spec), serde_json::to_vec(&m).unwrap().into()).await.unwrap();
        assert_eq!(load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap().schema_copy(), None);
    }

    #[tokio::test]
    async fn counting_a_runs_new_keys_reads_only_their_segments() {
        let (lake, spec) = setup();
        let mut index = KeyIndex::default();
        for i in (0..20).step_by(2) {
            index.set(&key(i), Arc::from("p0"));
        }
        save(&lake, &spec, &index, "run1", 2, true).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        let keys: Vec<String> = [0, 1, 2, 3, 17, 18, 19, 25].iter().map(|&i| key(i)).collect();
        assert_eq!(count_absent(&mut index, &lake, &spec, &keys).await.unwrap(), 5, "1, 3, 17, 19 and 25 are new");
        let last = index.segments.len() - 1;
        let loaded: Vec<usize> = (0..index.segments.len()).filter(|&s| index.segments[s].base.is_some()).collect();
        assert_eq!(loaded, [last], "segments are read for the count and dropped, but the last one read");
        assert_eq!(count_absent(&mut index, &lake, &spec, &[]).await.unwrap(), 0);
        let mut changed = index;
        changed.segments.iter_mut().for_each(|s| s.base = Some(Base::empty()));
        changed.set(&key(1), Arc::from("p1"));
        assert_eq!(count_absent(&mut changed, &lake, &spec, &[key(1), key(3)]).await.unwrap(), 1, "a change counts");
    }

    #[tokio::test]
    async fn segments_load_on_demand_and_only_changed_ones_are_rewritten() {
        let (lake, spec) = setup();
        let mut index = KeyIndex::default();
        for i in 0..10 {
            index.set(&key(i), Arc::from(format!("p{}", i % 3).as_str()));
        }
        save(&lake, &spec, &index, "run1", 2, true).await.unwrap();
        assert_eq!(files(&lake, &spec).await.len(), 6, "ten keys past twice the target of 2: five segments");
        assert_eq!(saved_keys(&lake, "hims", "visits").await.unwrap(), Some(10));

        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        assert_eq!((index.segments_loaded(), index.len()), ((5, 0), 10));
        load_for(&mut index, &lake, &spec, visit(&["k09", "k10"])).await.unwrap();
        assert_eq!(index.segments_loaded(), (5, 1), "the newest keys live in the last segment");
        assert_eq!(index.get("k09"), Some("p0"));
        index.set("k09", Arc::from("p7"));
        index.set("k10", Arc::from("p1"));
        let before = files(&lake, &spec).await;
        save(&lake, &spec, &index, "run2", 2, true).await.unwrap();
        let after = files(&lake, &spec).await;
        assert_eq!(before[..5], after[..5], "the manifest, and untouched segments keep their files");
        assert!(after[5].starts_with("run2-") && after.len() == 6, "{after:?}");

        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_all(&mut index, &lake, &spec).await.unwrap();
        let mut want: Vec<(String, String)> = (0..9).map(|i| (key(i), format!("p{}", i % 3))).collect();
        want.extend([("k09".into(), "p7".into()), ("k10".into(), "p1".into())]);
        let got: Vec<(String, String)> = index.entries().iter().map(|(k, p)| (k.to_string(), p.to_string())).collect();
        assert_eq!(got, want);

        // Visiting every key reads the unloaded segments one at a time and leaves them unloaded; the keys come
        // in order, this run's changes applied (k03 removed, k11 added: in a loaded segment and the last one).
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_for(&mut index, &lake, &spec, visit(&["k03", "k11"])).await.unwrap();
        index.remove("k03");
        index.set("k11", Arc::from("p2"));
        let mut visited = Vec::new();
        visit_keys(&index, &lake, &spec, |k| visited.push(k.to_string())).await.unwrap();
        assert_eq!(visited, (0..12).filter(|i| *i != 3).map(key).collect::<Vec<_>>());
        assert_eq!(index.segments_loaded(), (5, 2), "the visit kept nothing loaded");
        // A lost segment is an error for the caller (reconcile rebuilds the index), not a panic.
        lake.delete(&segment_path(&lake, &spec, &after[1])).await.unwrap();
        let err = visit_keys(&index, &lake, &spec, |_| {}).await.unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
    }

    /// Updates `index` with `changes` (sorted) as a run's write pass does, then saves it as `run`.
    async fn night(lake: &Lake, spec: &CollectionSpec, run: &str, changes: &[(String, Option<&str>)], tidy: bool) {
        let mut index = load_or_rebuild(lake, spec, &Rebuild::default()).await.unwrap();
        let mut updater = super::super::Updater::new(&mut index, lake, spec, &format!("{run}-u"), 4, true);
        for (k, p) in changes {
            updater.next(k, *p).await.unwrap();
        }
        updater.finish().await.unwrap();
        save(lake, spec, &index, run, 4, tidy).await.unwrap();
    }

    async fn whole(lake: &Lake, spec: &CollectionSpec) -> Vec<(String, String)> {
        let mut index = load_or_rebuild(lake, spec, &Rebuild::default()).await.unwrap();
        load_all(&mut index, lake, spec).await.unwrap();
        index.entries().iter().map(|(k, p)| (k.to_string(), p.to_string())).collect()
    }

    #[tokio::test]
    async fn a_small_index_lives_in_its_manifest_and_leaves_it_when_it_grows() {
        let (lake, spec) = setup();
        let stray = lake.index_dir("hims", "visits").join("crashed-00000.parquet");
        lake.put(&stray, vec![1u8].into()).await.unwrap();
        let mut index = KeyIndex::default();
        let mut model = std::collections::BTreeMap::new();
        for i in 0..5 {
            index.set(&key(i), Arc::from("p0"));
            model.insert(key(i), "p0".to_string());
        }
        // A first save lists the folder (the index was not loaded from a manifest): the stray goes.
        save(&lake, &spec, &index, "run1", 4, false).await.unwrap();
        assert_eq!(files(&lake, &spec).await, ["manifest.json"], "one small segment: kept in the manifest");
        assert_eq!(saved_keys(&lake, "hims", "visits").await.unwrap(), Some(5));
        let as_model = |m: &std::collections::BTreeMap<String, String>| {
            m.iter().map(|(k, p)| (k.clone(), p.clone())).collect::<Vec<_>>()
        };
        assert_eq!(whole(&lake, &spec).await, as_model(&model));

        // A night that is not asked to tidy leaves what it did not write alone (and lists nothing); the
        // inline segment is replaced in the manifest.
        lake.put(&stray, vec![1u8].into()).await.unwrap();
        night(&lake, &spec, "run2", &[(key(1), Some("p1")), (key(5), Some("p1"))], false).await;
        model.insert(key(1), "p1".into());
        model.insert(key(5), "p1".into());
        assert_eq!(files(&lake, &spec).await, ["crashed-00000.parquet", "manifest.json"]);
        assert_eq!(whole(&lake, &spec).await, as_model(&model));

        // Past twice the target it splits: the segments become files (the held first one too).
        let more: Vec<(String, Option<&str>)> = (6..12).map(|i| (key(i), Some("p2"))).collect();
        night(&lake, &spec, "run3", &more, false).await;
        for i in 6..12 {
            model.insert(key(i), "p2".into());
        }
        let listed = files(&lake, &spec).await;
        assert!(listed.len() >= 4 && listed.contains(&"crashed-00000.parquet".to_string()), "{listed:?}");
        let manifest = lake.get_opt(&manifest_path(&lake, &spec)).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&manifest).contains("inline"), "no segment in the manifest now");
        assert_eq!(whole(&lake, &spec).await, as_model(&model));

        // A night rewriting one segment deletes the file it replaced without listing; a tidy one finds the stray.
        let before = files(&lake, &spec).await;
        night(&lake, &spec, "run4", &[(key(11), None)], false).await;
        model.remove(&key(11));
        let after = files(&lake, &spec).await;
        assert_eq!(after.len(), before.len(), "one file replaced by one: {before:?} -> {after:?}");
        assert_eq!(whole(&lake, &spec).await, as_model(&model));
        night(&lake, &spec, "run5", &[(key(10), Some("p3"))], true).await;
        model.insert(key(10), "p3".into());
        assert!(!files(&lake, &spec).await.contains(&"crashed-00000.parquet".to_string()), "tidied");
        assert_eq!(whole(&lake, &spec).await, as_model(&model));
    }

    #[tokio::test]
    async fn an_emptied_first_segment_hands_its_range_to_the_next() {
        let (lake, spec) = setup();
        let mut index = KeyIndex::default();
        for i in 0..6 {
            index.set(&key(i), Arc::from("p"));
        }
        save(&lake, &spec, &index, "run1", 2, true).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_for(&mut index, &lake, &spec, visit(&["k00", "k01"])).await.unwrap();
        index.remove("k00");
        index.remove("k01");
        save(&lake, &spec, &index, "run2", 2, true).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        assert_eq!((index.segments_loaded().0, index.len()), (2, 4));
        load_for(&mut index, &lake, &spec, visit(&["a", "k00"])).await.unwrap();
        assert_eq!((index.get("a"), index.get("k00")), (None, None));
        index.set("a", Arc::from("q"));
        save(&lake, &spec, &index, "run3", 2, true).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_all(&mut index, &lake, &spec).await.unwrap();
        let keys: Vec<&str> = index.entries().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["a", "k02", "k03", "k04", "k05"]);
    }

    #[tokio::test]
    async fn an_index_of_older_versions_is_rebuilt_once_then_replaced_by_segments() {
        // Its key texts predate type tags: it is rebuilt from the partition files (none here), not read.
        let (lake, spec) = setup();
        let legacy = lake.index_path("hims", "visits");
        lake.put(&legacy, encode(&[("a", "p1"), ("b", "p2")]).unwrap().into()).await.unwrap();
        // A stray file of a save that crashed before its manifest.
        lake.put(&lake.index_dir("hims", "visits").join("crashed-00000.parquet"), vec![1u8].into()).await.unwrap();
        assert_eq!(saved_keys(&lake, "hims", "visits").await.unwrap(), Some(2));
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        assert_eq!(index.get("b"), None, "rebuilt from the lake's files, not read");
        index.set("c", Arc::from("p3"));
        save(&lake, &spec, &index, "run1", SEGMENT_KEYS, true).await.unwrap();
        assert_eq!(lake.get_opt(&legacy).await.unwrap(), None, "the old file goes once the manifest is written");
        assert!(files(&lake, &spec).await.iter().all(|f| !f.starts_with("crashed")), "stray files go too");
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_all(&mut index, &lake, &spec).await.unwrap();
        assert_eq!(index.entries(), [("c", "p3")]);
        // A save that stopped between its manifest and the old file's deletion: the manifest holds the index.
        lake.put(&legacy, encode(&[("a", "p1"), ("b", "p2")]).unwrap().into()).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_all(&mut index, &lake, &spec).await.unwrap();
        assert_eq!(index.entries(), [("c", "p3")], "the manifest wins over the old file beside it");
        assert_eq!(saved_keys(&lake, "hims", "visits").await.unwrap(), Some(1));
        lake.delete(&legacy).await.unwrap();
        // A manifest of format 2 (segments of untagged key texts) is rebuilt too.
        let old = br#"{"format": 2, "segments": [{"first": "", "file": "x.parquet", "keys": 9}]}"#.to_vec();
        lake.put(&lake.index_dir("hims", "visits").join(MANIFEST), old.into()).await.unwrap();
        let index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        assert_eq!(index.len(), 0, "rebuilt from the (empty) lake");
    }

    #[tokio::test]
    async fn a_lost_segment_rebuilds_the_index_from_the_lake_and_a_newer_format_is_refused() {
        let (lake, spec) = setup();
        let mut index = KeyIndex::default();
        // (three keys in segments of one: files of their own, not kept in the manifest)
        for k in ["a", "b", "c"] {
            index.set(k, Arc::from("p1"));
        }
        save(&lake, &spec, &index, "run1", 1, true).await.unwrap();
        lake.delete(&lake.index_dir("hims", "visits").join("run1-00000.parquet")).await.unwrap();
        let mut index = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.unwrap();
        load_for(&mut index, &lake, &spec, visit(&["a"])).await.unwrap();
        assert_eq!((index.get("a"), index.len()), (None, 0), "rebuilt from the (empty) lake, not a panic");

        let newer = br#"{"format": 4, "segments": []}"#.to_vec();
        lake.put(&lake.index_dir("hims", "visits").join(MANIFEST), newer.into()).await.unwrap();
        let err = load_or_rebuild(&lake, &spec, &Rebuild::default()).await.err().expect("refused").to_string();
        assert!(err.contains("upgrade mongolake"), "{err}");
    }
}
