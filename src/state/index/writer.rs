//! Writing an index sorted by key as it comes, segment by segment ([`SegmentWriter`]), optionally merging in
//! sorted runs of keys that other workers wrote ([`KeyRun`], see [`crate::sync::shard`]).
use super::{decode, encode_arrays, Base, KeyIndex, Segment};
use crate::config::CollectionSpec;
use crate::sink::Lake;
use crate::{Error, Result};
use arrow::array::{Array, ArrayBuilder};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Writes the index of a first load as the run produces it, sorted by key: a segment file for every `target`
/// keys, so the index never has to be held whole (a first load of any size holds one segment). The files stay
/// unlisted until [`super::save`] writes the manifest; a crash before it leaves them for the next save to delete.
pub struct SegmentWriter<'a> {
    lake: &'a Lake,
    /// The folder the segment files go to (the index's, or a worker's staging folder).
    dir: Path,
    prefix: String,
    target: usize,
    keys: arrow::array::StringBuilder,
    parts: arrow::array::StringBuilder,
    first: String,
    last: String,
    written: Vec<Segment>,
    /// Sorted runs merged into the keys pushed (each key must be in exactly one of them, or pushed).
    runs: Vec<KeyRun>,
    /// Writing the collection's index: a small segment is held for the save (see [`super::INLINE_BYTES`]);
    /// None for another folder, whose files are read as files.
    held: Option<crate::FastMap<String, bytes::Bytes>>,
}

/// A segment file a [`SegmentWriter`] wrote: its name in the writer's folder and its key count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentFile {
    pub file: String,
    pub keys: usize,
}

impl<'a> SegmentWriter<'a> {
    /// Writes into the collection's index folder, files named `<run_id>-<n>.parquet`.
    pub fn new(lake: &'a Lake, spec: &CollectionSpec, run_id: &str, target: usize) -> Self {
        let writer = Self::in_dir(lake, lake.index_dir(&spec.database, &spec.collection), run_id, target);
        SegmentWriter { held: Some(Default::default()), ..writer }
    }

    /// Writes into `dir`, files named `<prefix>-<n>.parquet`.
    pub fn in_dir(lake: &'a Lake, dir: Path, prefix: &str, target: usize) -> Self {
        SegmentWriter {
            lake,
            dir,
            prefix: prefix.to_string(),
            target: target.max(1),
            keys: Default::default(),
            parts: Default::default(),
            first: String::new(),
            last: String::new(),
            written: Vec::new(),
            runs: Vec::new(),
            held: None,
        }
    }

    /// Merges these sorted runs into the keys pushed: the index written holds both.
    pub fn merging(mut self, runs: Vec<KeyRun>) -> Self {
        self.runs = runs;
        self
    }

    /// Adds the next key (strictly greater than the last one) and its partition.
    pub async fn push(&mut self, key: &str, rel: &str) -> Result<()> {
        if !self.runs.is_empty() {
            self.drain_runs(Some(key)).await?;
        }
        self.push_own(key, rel).await
    }

    /// Pushes the runs' entries below `bound` (all of them when None), smallest first.
    async fn drain_runs(&mut self, bound: Option<&str>) -> Result<()> {
        loop {
            let mut best: Option<(usize, String, String)> = None;
            for (i, run) in self.runs.iter_mut().enumerate() {
                if let Some((k, p)) = run.peek().await? {
                    if best.as_ref().is_none_or(|(_, b, _)| k < b.as_str()) {
                        best = Some((i, k.to_string(), p.to_string()));
                    }
                }
            }
            let Some((i, key, rel)) = best else { return Ok(()) };
            if bound.is_some_and(|b| key.as_str() > b) {
                return Ok(());
            }
            if bound == Some(key.as_str()) {
                return Err(collision(&key));
            }
            self.runs[i].pos += 1;
            self.push_own(&key, &rel).await?;
        }
    }

    async fn push_own(&mut self, key: &str, rel: &str) -> Result<()> {
        let fresh = self.keys.len() == 0 && self.written.is_empty();
        if !fresh && key <= self.last.as_str() {
            if key == self.last.as_str() && !self.runs.is_empty() {
                return Err(collision(key));
            }
            return Err(Error::encode("key index", format!("keys out of order: {key:?} after {:?}", self.last)));
        }
        if self.keys.len() == 0 {
            // The first segment covers from the start (""), as every index's does.
            self.first = if self.written.is_empty() { String::new() } else { key.to_string() };
        }
        self.keys.append_value(key);
        self.parts.append_value(rel);
        self.last.clear();
        self.last.push_str(key);
        if self.keys.len() >= self.target {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        let (keys, parts) = (self.keys.finish(), self.parts.finish());
        let n = keys.len();
        let bytes = tokio::task::spawn_blocking(move || encode_arrays(keys, parts))
            .await
            .map_err(|e| Error::encode("key index", e))??;
        let file = crate::sink::layout::segment_file_name(&self.prefix, self.written.len());
        // (the first segment, if small, is held for the save; a second one puts it first: one held at most)
        let first = self.written.is_empty() && bytes.len() <= super::INLINE_BYTES;
        match self.held.as_mut() {
            Some(held) if first => {
                held.insert(file.clone(), bytes);
            }
            _ => {
                for (name, b) in self.held.as_mut().map(std::mem::take).unwrap_or_default() {
                    self.lake.put(&self.dir.clone().join(name.as_str()), b.into()).await?;
                }
                self.lake.put(&self.dir.clone().join(file.as_str()), bytes.into()).await?;
            }
        }
        let first = std::mem::take(&mut self.first);
        self.written.push(Segment { first, file: Some(file), keys: n, base: None, overridden: 0, replaced: None });
        Ok(())
    }

    /// Writes the last segment; the index (no segment loaded) whose save writes the manifest.
    pub async fn finish(mut self) -> Result<KeyIndex> {
        self.drain_runs(None).await?;
        if self.keys.len() > 0 {
            self.flush().await?;
        }
        if self.written.is_empty() {
            return Ok(KeyIndex::default());
        }
        Ok(KeyIndex {
            segments: self.written,
            changes: Default::default(),
            unlisted: true,
            digest: None,
            digest_changed: false,
            held: self.held.unwrap_or_default(),
            stored: None,
            schema: None,
            schema_changed: false,
        })
    }
}

fn collision(key: &str) -> Error {
    Error::encode(
        "key index",
        format!(
            "key {key:?} was read in two _id ranges (_id values of different BSON types that render alike); \
             load this collection without ranges: set [sync] shard_ranges_min_docs = 0"
        ),
    )
}

/// Index entries sorted by key, in segment files read one at a time (another worker's keys).
pub struct KeyRun {
    lake: Lake,
    files: VecDeque<Path>,
    current: Option<Base>,
    pos: usize,
}

impl KeyRun {
    /// The run made of these segment files, in key order.
    pub fn new(lake: Lake, files: Vec<Path>) -> KeyRun {
        KeyRun { lake, files: files.into(), current: None, pos: 0 }
    }

    /// The next entry, reading the next file when the current one is used up.
    async fn peek(&mut self) -> Result<Option<(&str, &str)>> {
        while self.current.as_ref().is_none_or(|b| self.pos >= b.keys.len()) {
            let Some(path) = self.files.pop_front() else { return Ok(None) };
            let bytes = self.lake.get_opt(&path).await?.ok_or_else(|| {
                Error::encode("key index", format!("a worker's key file {} is missing", self.lake.display(&path)))
            })?;
            let base = tokio::task::spawn_blocking(move || decode(bytes))
                .await
                .map_err(|e| Error::encode("key index", e))??;
            self.current = Some(base);
            self.pos = 0;
        }
        let b = self.current.as_ref().expect("loaded above");
        Ok(Some((b.keys.value(self.pos), b.parts.value(self.pos))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lake() -> Lake {
        Lake::from_store(Arc::new(object_store::memory::InMemory::new()), Path::default(), "memory://lake")
    }

    /// Writes `keys` (sorted) as a worker's run in `dir`, two keys a file.
    async fn run(lake: &Lake, dir: &str, keys: &[&str]) -> KeyRun {
        let mut w = SegmentWriter::in_dir(lake, Path::from(dir), "r", 2);
        for k in keys {
            w.push(k, &format!("p-{dir}")).await.unwrap();
        }
        let files = w.finish().await.unwrap().segment_files();
        assert_eq!(files.iter().map(|f| f.keys).sum::<usize>(), keys.len());
        KeyRun::new(lake.clone(), files.iter().map(|f| Path::from(dir).join(f.file.as_str())).collect())
    }

    async fn entries(lake: &Lake, index: &KeyIndex) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in &index.segments {
            let bytes = lake.get_opt(&Path::from("idx").join(s.file.as_deref().unwrap())).await.unwrap().unwrap();
            let b = decode(bytes).unwrap();
            out.extend((0..b.keys.len()).map(|i| (b.keys.value(i).to_string(), b.parts.value(i).to_string())));
        }
        out
    }

    #[tokio::test]
    async fn runs_merge_with_the_pushed_keys_in_key_order() {
        let lake = lake();
        let runs = vec![run(&lake, "a", &["b", "e", "f", "k"]).await, run(&lake, "c", &["a", "g"]).await];
        let mut w = SegmentWriter::in_dir(&lake, Path::from("idx"), "own", 3).merging(runs);
        for k in ["c", "d", "h"] {
            w.push(k, "own").await.unwrap();
        }
        let index = w.finish().await.unwrap();
        assert_eq!(index.len(), 9);
        let got = entries(&lake, &index).await;
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e", "f", "g", "h", "k"]);
        assert_eq!(got[0].1, "p-c");
        assert_eq!(got[2].1, "own");
        assert_eq!(index.segments[0].first, "");
        assert_eq!(index.segments[1].first, "d");
    }

    #[tokio::test]
    async fn a_key_in_two_runs_is_refused() {
        let lake = lake();
        let runs = vec![run(&lake, "a", &["b", "e"]).await];
        let mut w = SegmentWriter::in_dir(&lake, Path::from("idx"), "own", 3).merging(runs);
        let err = w.push("e", "own").await.unwrap_err().to_string();
        assert!(err.contains("two _id ranges"), "{err}");
        let runs = vec![run(&lake, "x", &["b", "e"]).await, run(&lake, "y", &["c", "e"]).await];
        let w = SegmentWriter::in_dir(&lake, Path::from("idx"), "own", 3).merging(runs);
        let err = w.finish().await.err().expect("refused").to_string();
        assert!(err.contains("two _id ranges"), "{err}");
    }
}
