//! Updating a saved index with a run's keys in key order, a segment at a time ([`Updater`]).
//!
//! A run over an existing lake looks up where each key it read lived, and records where it lives now. Its keys
//! may fall in every segment (random `_id`s such as UUIDs, or a day's updates spread over years of documents),
//! so loading the segments they fall in could mean loading the whole index. The write pass's plan visits the
//! keys sorted (see [`crate::sync::plan`]), so the updater holds one segment at a time instead: it loads the
//! segment the next key falls in, and when the keys move past it, writes its merged entries as new segment
//! files (only if something in it changed) and drops it. What it holds is one segment and the new files being
//! filled, whatever the size of the index or of the run.
//!
//! The new files stay unlisted until [`super::save`] writes the manifest after the partition files (a crash
//! before leaves the old index whole, and the next save deletes them), as a first load's do.
use super::store::{segment_path, ManifestSegment};
use super::{encode_arrays, Base, KeyIndex};
use crate::config::CollectionSpec;
use crate::sink::Lake;
use crate::{Error, Result};
use arrow::array::{Array, ArrayBuilder, StringBuilder};

/// Applies a run's changes to `index` in key order, one segment loaded at a time; see the module docs.
pub struct Updater<'a> {
    index: &'a mut KeyIndex,
    lake: &'a Lake,
    spec: &'a CollectionSpec,
    /// New files are named `<prefix>-<n>.parquet`.
    prefix: String,
    target: usize,
    /// False in a dry run: segments are merged and counted, nothing is written.
    write: bool,
    /// The segment the last key fell in.
    at: Option<usize>,
    /// The current segment's entries before this one were passed (and, once it changed, copied to `out`).
    pos: usize,
    /// The current segment's merged entries, from its first change on.
    out: Option<Output>,
    /// Files written so far (numbers the next one).
    files: usize,
    last: Option<String>,
    /// Segments read from the lake, and rewritten (for the debug log).
    read: usize,
    rewritten: usize,
}

/// A changed segment's entries as they are merged: files of `target` keys are cut from the front while more
/// than twice that are buffered, so the last file holds between one and two targets (as a save splits).
struct Output {
    first: String,
    keys: StringBuilder,
    parts: StringBuilder,
    written: Vec<ManifestSegment>,
    total: usize,
}

impl<'a> Updater<'a> {
    /// An updater writing new segment files named `<prefix>-<n>.parquet`, splitting them at `target` keys;
    /// with `write` false (a dry run) nothing is written.
    pub fn new(
        index: &'a mut KeyIndex,
        lake: &'a Lake,
        spec: &'a CollectionSpec,
        prefix: &str,
        target: usize,
        write: bool,
    ) -> Self {
        Updater {
            index,
            lake,
            spec,
            prefix: prefix.to_string(),
            target: target.max(1),
            write,
            at: None,
            pos: 0,
            out: None,
            files: 0,
            last: None,
            read: 0,
            rewritten: 0,
        }
    }

    /// Takes the next key (strictly greater than the last one): its partition is now `new` (None removes it).
    /// Returns the partition it lived in when that differs from `new` (a moved or removed row).
    pub async fn next(&mut self, key: &str, new: Option<&str>) -> Result<Option<String>> {
        if self.last.as_deref().is_some_and(|last| key <= last) {
            return Err(Error::encode("key index", format!("keys out of order: {key:?} after {:?}", self.last)));
        }
        self.last = Some(key.to_string());
        self.seek(key).await?;
        let s = self.at.expect("seek sets it");
        let base = self.index.segments[s].base.as_ref().expect("seek loads the segment");
        let i = self.pos + lower_bound(base, self.pos, key);
        let old = (i < base.keys.len() && base.keys.value(i) == key).then(|| base.parts.value(i));
        if old == new {
            return Ok(None);
        }
        let found = old.is_some();
        let moved = old.map(str::to_string);
        let from = if self.out.is_none() {
            self.out = Some(Output::new(self.index.segments[s].first.clone()));
            0
        } else {
            self.pos
        };
        self.copy(s, from, i).await?;
        if let Some(new) = new {
            self.push(key, new).await?;
        }
        self.pos = i + usize::from(found);
        Ok(moved)
    }

    /// Writes (or drops) the segment still open. The index is then ready for [`super::save`].
    pub async fn finish(mut self) -> Result<()> {
        if let Some(s) = self.at.take() {
            self.release(s).await?;
        }
        let segments = self.index.segments.len();
        let (read, rewritten) = (self.read, self.rewritten);
        tracing::debug!(collection = %self.spec.name(), segments, read, rewritten, "Phase: key index updated");
        Ok(())
    }

    /// Makes the segment `key` falls in the current one, loaded.
    async fn seek(&mut self, key: &str) -> Result<()> {
        let s = self.index.segment_of(key);
        if self.at == Some(s) {
            return Ok(());
        }
        if let Some(done) = self.at.take() {
            self.release(done).await?;
        } else {
            // The first key: a segment left loaded by the night's count (store::count_absent) is taken as it is
            // when the key falls in it, and dropped otherwise (one segment is held at a time).
            for (i, other) in self.index.segments.iter_mut().enumerate() {
                if i != s && other.file.is_some() && other.replaced.is_none() {
                    other.base = None;
                }
            }
        }
        let segment = &mut self.index.segments[s];
        if segment.replaced.is_some() {
            return Err(Error::encode(
                "key index",
                format!("keys out of order: {key:?} falls in a segment already written"),
            ));
        }
        if segment.base.is_none() {
            let file = segment.file.clone().expect("an unloaded segment has a file");
            let base = self.index.read_segment(self.lake, self.spec, &file).await?;
            self.index.segments[s].base = Some(base);
            self.read += 1;
        }
        // Changes made before the updater (a rebuilt index holds its keys as changes) are merged in first; the
        // segment is then written even if this run changes nothing in it.
        let dirty = self.index.take_changes_into_base(s) || self.index.segments[s].file.is_none();
        self.at = Some(s);
        self.pos = 0;
        self.out = dirty.then(|| Output::new(self.index.segments[s].first.clone()));
        Ok(())
    }

    /// Done with segment `s`: if it changed, its merged entries become new files; it is dropped either way.
    async fn release(&mut self, s: usize) -> Result<()> {
        if self.out.is_some() {
            let len = self.index.segments[s].base.as_ref().map_or(0, |b| b.keys.len());
            self.copy(s, self.pos, len).await?;
            let mut out = self.out.take().expect("checked above");
            if out.keys.len() > 0 {
                let n = out.keys.len();
                self.write_file(&mut out, n).await?;
            }
            let segment = &mut self.index.segments[s];
            segment.keys = out.total;
            segment.overridden = 0;
            segment.replaced = Some(out.written);
            self.rewritten += 1;
        }
        let segment = &mut self.index.segments[s];
        if segment.file.is_some() || segment.replaced.is_some() {
            segment.base = None;
        }
        Ok(())
    }

    /// Copies the current segment's entries `from..to` to the output.
    async fn copy(&mut self, s: usize, from: usize, to: usize) -> Result<()> {
        for i in from..to {
            let base = self.index.segments[s].base.as_ref().expect("the current segment is loaded");
            let out = self.out.as_mut().expect("copying into an output");
            if out.append(base.keys.value(i), base.parts.value(i), self.target) {
                self.cut().await?;
            }
        }
        Ok(())
    }

    async fn push(&mut self, key: &str, part: &str) -> Result<()> {
        if self.out.as_mut().expect("pushing into an output").append(key, part, self.target) {
            self.cut().await?;
        }
        Ok(())
    }

    /// Writes the first `target` buffered entries as a file.
    async fn cut(&mut self) -> Result<()> {
        let mut out = self.out.take().expect("cutting an output");
        let n = self.target;
        let result = self.write_file(&mut out, n).await;
        self.out = Some(out);
        result
    }

    /// Writes the first `n` buffered entries of `out` as a file (in a dry run, only counts them).
    async fn write_file(&mut self, out: &mut Output, n: usize) -> Result<()> {
        let (keys, parts) = (out.keys.finish(), out.parts.finish());
        let first = if out.written.is_empty() { out.first.clone() } else { keys.value(0).to_string() };
        for i in n..keys.len() {
            out.keys.append_value(keys.value(i));
            out.parts.append_value(parts.value(i));
        }
        let file = crate::sink::layout::segment_file_name(&self.prefix, self.files);
        self.files += 1;
        if self.write {
            // (a slice: the writer encodes only the rows it covers)
            let (keys, parts) = (keys.slice(0, n), parts.slice(0, n));
            let bytes = tokio::task::spawn_blocking(move || encode_arrays(keys, parts))
                .await
                .map_err(|e| Error::encode("key index", e))??;
            // The first file of an index of one segment, if small, is held for the save (kept in the manifest if
            // it stays the only segment; see super::INLINE_BYTES); one more file puts it first (one held at most).
            let first_of_one = self.index.segments.len() == 1 && out.written.is_empty();
            if first_of_one && bytes.len() <= super::INLINE_BYTES {
                self.index.held.insert(file.clone(), bytes);
            } else {
                if let Some(earlier) = out.written.first().filter(|_| self.index.segments.len() == 1) {
                    if let Some(b) = self.index.held.remove(&earlier.file) {
                        self.lake.put(&segment_path(self.lake, self.spec, &earlier.file), b.into()).await?;
                    }
                }
                self.lake.put(&segment_path(self.lake, self.spec, &file), bytes.into()).await?;
            }
        }
        out.written.push(ManifestSegment { first, file, keys: n });
        Ok(())
    }
}

impl Output {
    fn new(first: String) -> Output {
        Output { first, keys: StringBuilder::new(), parts: StringBuilder::new(), written: Vec::new(), total: 0 }
    }

    /// Appends an entry; whether a file of `target` keys is due (twice that are buffered).
    fn append(&mut self, key: &str, part: &str, target: usize) -> bool {
        self.keys.append_value(key);
        self.parts.append_value(part);
        self.total += 1;
        self.keys.len() >= 2 * target
    }
}

/// How many of `base`'s entries from `from` on are below `key`.
fn lower_bound(base: &Base, from: usize, key: &str) -> usize {
    let (mut lo, mut hi) = (from, base.keys.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if base.keys.value(mid) < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo - from
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::index::store::{load_all, load_or_rebuild};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::state::index::test_lake::{files, setup};

    /// A saved index of keys k0000, k0002, ... k0398 (200 keys) in segments of 10.
    async fn saved(lake: &Lake, spec: &CollectionSpec) -> BTreeMap<String, String> {
        let mut index = KeyIndex::default();
        let mut model = BTreeMap::new();
        for i in (0..400).step_by(2) {
            let (k, p) = (format!("k{i:04}"), format!("p{}", i % 3));
            index.set(&k, Arc::from(p.as_str()));
            model.insert(k, p);
        }
        crate::state::index::save(lake, spec, &index, "run0", 10, true).await.unwrap();
        model
    }

    /// The saved index, loaded whole, after checking that it holds exactly `model`.
    async fn saved_entries(lake: &Lake, spec: &CollectionSpec, model: &BTreeMap<String, String>) -> KeyIndex {
        let mut index = load_or_rebuild(lake, spec, &Default::default()).await.unwrap();
        load_all(&mut index, lake, spec).await.unwrap();
        let got: BTreeMap<String, String> =
            index.entries().into_iter().map(|(k, p)| (k.to_string(), p.to_string())).collect();
        assert_eq!(&got, model);
        index
    }

    #[tokio::test]
    async fn keys_spread_over_every_segment_are_merged_one_segment_at_a_time() {
        let (lake, spec) = setup();
        let mut model = saved(&lake, &spec).await;
        let before = files(&lake, &spec).await;
        assert_eq!(before.len(), 21, "20 segments and the manifest");
        let mut index = load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        let mut updater = Updater::new(&mut index, &lake, &spec, "run1-u0", 10, true);
        // Every 7th key: odd ones are new, of the even ones (saved) a third are removed, a third move and a third
        // stay. None in segments 5 to 8 (keys 100..180), and in segment 10 (200..220) every key stays. Keys 10
        // and 300 also get 25 new keys after them each (two segments grow past twice the target).
        let mut keys: Vec<(String, Option<String>)> = Vec::new();
        for i in (0..400).step_by(7).filter(|i| !(100..180).contains(i)) {
            let new = match (i % 2, i % 3) {
                _ if (200..220).contains(&i) => model.get(&format!("k{i:04}")).cloned(),
                (1, _) => Some("new".to_string()),
                (_, 0) => None,
                (_, 1) => Some("moved".to_string()),
                _ => Some(format!("p{}", i % 3)),
            };
            keys.push((format!("k{i:04}"), new));
        }
        for i in 0..25 {
            keys.push((format!("k0010-{i:02}"), Some("burst".into())));
            keys.push((format!("k0300-{i:02}"), Some("burst".into())));
        }
        keys.sort();
        let mut moved = BTreeMap::new();
        for (k, new) in &keys {
            if let Some(old) = updater.next(k, new.as_deref()).await.unwrap() {
                moved.insert(k.clone(), old);
            }
            let (_, loaded) = updater.index.segments_loaded();
            assert!(loaded <= 1, "one segment loaded at a time, not {loaded}");
            match new {
                Some(p) => {
                    if let Some(old) = model.insert(k.clone(), p.clone()).filter(|old| old != p) {
                        assert_eq!(moved.get(k), Some(&old), "{k}: the partition it moved from");
                    }
                }
                None => assert_eq!(moved.get(k), model.remove(k).as_ref(), "{k}: the partition it was removed from"),
            }
        }
        let err = updater.next("k0001", Some("x")).await.unwrap_err().to_string();
        assert!(err.contains("out of order"), "{err}");
        updater.finish().await.unwrap();
        assert_eq!(index.len(), model.len());
        crate::state::index::save(&lake, &spec, &index, "run1", 10, true).await.unwrap();

        let index = saved_entries(&lake, &spec, &model).await;
        let after = files(&lake, &spec).await;
        let kept = after.iter().filter(|f| before.contains(f) && f.as_str() != "manifest.json").count();
        assert_eq!(kept, 5, "only segments with a change are rewritten: {after:?}");
        for s in index.segments.iter() {
            assert!((1..=20).contains(&s.keys), "segments of 1 to 2 targets: {}", s.keys);
        }
    }

    #[tokio::test]
    async fn the_segment_a_nights_count_read_is_not_read_again() {
        let (lake, spec) = setup();
        let mut model = saved(&lake, &spec).await;
        let mut index = load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        // A night's keys: two new ones after the last saved key, in the last segment.
        let keys = ["k0399".to_string(), "k0401".to_string()];
        let absent = crate::state::index::store::count_absent(&mut index, &lake, &spec, &keys).await.unwrap();
        assert_eq!((absent, index.segments_loaded().1), (2, 1));
        let mut updater = Updater::new(&mut index, &lake, &spec, "run1-u0", 10, true);
        for k in &keys {
            assert_eq!(updater.next(k, Some("new")).await.unwrap(), None);
            model.insert(k.clone(), "new".into());
        }
        assert_eq!(updater.read, 0, "the counted segment was taken as it was");
        updater.finish().await.unwrap();
        crate::state::index::save(&lake, &spec, &index, "run1", 10, true).await.unwrap();

        // Counted in the last segment, the first key elsewhere: the counted one is dropped, one is held at a time.
        let mut index = load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        crate::state::index::store::count_absent(&mut index, &lake, &spec, &["k0403".to_string()]).await.unwrap();
        let mut updater = Updater::new(&mut index, &lake, &spec, "run2-u0", 10, true);
        assert_eq!(updater.next("k0000", None).await.unwrap().as_deref(), Some("p0"));
        model.remove("k0000");
        assert_eq!((updater.read, updater.index.segments_loaded().1), (1, 1));
        updater.finish().await.unwrap();
        crate::state::index::save(&lake, &spec, &index, "run2", 10, true).await.unwrap();
        saved_entries(&lake, &spec, &model).await;
    }

    #[tokio::test]
    async fn a_dry_run_merges_and_counts_but_writes_nothing() {
        let (lake, spec) = setup();
        let model = saved(&lake, &spec).await;
        let before = files(&lake, &spec).await;
        let mut index = load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        let mut updater = Updater::new(&mut index, &lake, &spec, "run1-u0", 10, false);
        assert_eq!(updater.next("k0000", None).await.unwrap().as_deref(), Some("p0"));
        assert_eq!(updater.next("k0001", Some("n")).await.unwrap(), None);
        assert_eq!(updater.next("k0398", Some("p2")).await.unwrap(), None, "unchanged");
        updater.finish().await.unwrap();
        assert_eq!(index.len(), model.len());
        assert_eq!(files(&lake, &spec).await, before);
    }

    #[tokio::test]
    async fn a_missing_segment_is_an_index_segment_error() {
        let (lake, spec) = setup();
        saved(&lake, &spec).await;
        let mut index = load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        let victim = index.segments[3].file.clone().unwrap();
        lake.delete(&segment_path(&lake, &spec, &victim)).await.unwrap();
        let mut updater = Updater::new(&mut index, &lake, &spec, "run1-u0", 10, true);
        updater.next("k0001", Some("n")).await.unwrap();
        let err = updater.next("k0061", Some("n")).await.unwrap_err();
        assert!(matches!(&err, Error::IndexSegment { path, .. } if path.contains(&victim)), "{err}");
        assert!(err.to_string().contains("is missing"), "{err}");
    }
}
