//! Reconcile: find what a timestamp query cannot see, by comparing key sets.
//!
//! A hard delete leaves nothing for `find({ts >= W})` to return, and a document written without the timestamp
//! field, or stamped older than the watermark minus the overlap by a late writer, is never returned either. A
//! reconcile run (`sync --reconcile`, or every `[sync] reconcile_every_days`) therefore, after the usual read
//! pass:
//!
//! ```text
//!  live  := keys of every document in MongoDB     (find({}, {key: 1}), keys only, raw batches)
//!  lake  := keys in the key index ∪ keys read by this run's pass 1
//!  deleted := lake − live   ─► removed from their partitions in this run's write pass
//!  missing := live − lake   ─► fetched by key ({key: {$in: [...]}}, batches of 1,000) into pass 1
//! ```
//! Order matters: the key scan starts after pass 1, so a document deleted in between counts as deleted, and
//! one inserted in between is fetched as missing.
//!
//! Both sets are compared as sorted streams, so memory does not grow with the collection: the live keys go
//! through an external sort ([`crate::sort::Sorter`] over extsort: runs of the memory budget's sort-run size,
//! spilled to local disk past one run), and the lake's keys come from the key index a segment at a time
//! ([`store::visit_keys`]), merged with the keys this run read (a day's changes). What is held is what differs
//! (the deleted keys and the missing keys' values) and one sort run.
use super::read::ReadPass;
use crate::schema::text;
use crate::sort::Sorter;
use crate::state::index::{store, KeyIndex};
use crate::transform::get_path;
use crate::{Error, Result};
use futures::StreamExt;
use std::collections::HashSet;
use std::io::{Read, Write};

/// Keys fetched per `$in` query.
const FETCH_CHUNK: usize = 1_000;

/// What a reconcile found.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Keys in the lake (or read by this run) whose documents no longer exist.
    pub deleted: HashSet<String>,
    /// Documents in MongoDB that the lake lacked, fetched into the read pass.
    pub fetched: u64,
    /// Documents in MongoDB.
    pub live: u64,
    /// The live keys did not fit in one sort run and were sorted on local disk.
    pub sorted_on_disk: bool,
}

/// A live key as the external sort holds it: its text (the index's key) and its BSON value, as a one-field
/// document, to fetch the document by if the lake lacks it.
struct LiveKey {
    key: String,
    value: Vec<u8>,
}

impl extsort::Sortable for LiveKey {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        for bytes in [self.key.as_bytes(), &self.value] {
            w.write_all(&(bytes.len() as u32).to_le_bytes())?;
            w.write_all(bytes)?;
        }
        Ok(())
    }

    fn decode<R: Read>(r: &mut R) -> std::io::Result<LiveKey> {
        // (an end of file on the first length ends the run, as extsort expects)
        let read = |r: &mut R| -> std::io::Result<Vec<u8>> {
            let mut len = [0u8; 4];
            r.read_exact(&mut len)?;
            let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
            r.read_exact(&mut bytes)?;
            Ok(bytes)
        };
        let key = String::from_utf8(read(r)?).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(LiveKey { key, value: read(r)? })
    }
}

/// Why this run compares key sets, if it does: `--reconcile`, the schedule (`[sync] reconcile_every_days`), or,
/// after an incremental pass, MongoDB's document count differing from the lake's rows ([`count_mismatch`]).
/// `last` is when the collection last reconciled; a first load (which read every document) is never counted.
pub async fn reason(
    pass: &ReadPass,
    index: &mut KeyIndex,
    last: Option<i64>,
    read_started: i64,
    full_load: bool,
) -> Option<String> {
    let ctx = pass.ctx();
    if ctx.reconcile {
        return Some("--reconcile".into());
    }
    if let Some(days) = ctx.sync.reconcile_every_days {
        match last {
            None => return Some(format!("scheduled: never reconciled (reconcile_every_days = {days})")),
            Some(at) if read_started - at >= days as i64 * 86_400_000 => {
                let ago = (read_started - at) / 86_400_000;
                return Some(format!("scheduled: last reconciled {ago} days ago (reconcile_every_days = {days})"));
            }
            Some(_) => {}
        }
    }
    if full_load || !ctx.sync.reconcile_on_count_mismatch {
        return None;
    }
    match count_mismatch(pass, index).await {
        Ok(why) => why,
        Err(e) => {
            tracing::warn!(collection = %pass.name, error = %e, "Could not compare document counts; no reconcile tonight");
            None
        }
    }
}

/// After an incremental pass: MongoDB's document count against the rows the lake will hold (the key index's
/// keys plus this run's new ones); Some(why) when they differ, so deletes (and documents the timestamp query
/// cannot see) land the same night. What it cannot see: a night whose deletes and unseen inserts cancel out.
///
/// The count is `estimatedDocumentCount`: collection metadata on MongoDB (no scan), where `countDocuments({})`
/// scans every document or `_id` key. After an unclean shutdown the metadata can be off until `validate`: the
/// counts then differ every night and every night reconciles (correct, at the price of a key scan, and the
/// report says why). On SecantusDB both count (see README, "Deletes the same night").
pub async fn count_mismatch(pass: &ReadPass, index: &mut KeyIndex) -> Result<Option<String>> {
    let (ctx, spec) = (pass.ctx(), &pass.spec);
    let collection = ctx.client.database(&spec.database).collection::<bson::Document>(&spec.collection);
    let started = std::time::Instant::now();
    let live = collection
        .estimated_document_count()
        .await
        .map_err(|e| Error::mongo(format!("{}: counting documents", pass.name), e))?;
    let before = index.len() as u64;
    // (the lake holds at least the index's keys, at most those and every document read: outside, no lookup)
    let lake = if live < before || live > before + pass.seq {
        None
    } else {
        let mut read: Vec<String> = Vec::new();
        pass.buffers.for_each_key(|k| read.push(k.to_string()))?;
        read.sort_unstable();
        read.dedup();
        Some(before + store::count_absent(index, &ctx.lake, spec, &read).await? as u64)
    };
    tracing::debug!(collection = %pass.name, live, lake = ?lake, ms = started.elapsed().as_millis() as u64, "Phase: counts compared");
    Ok(match lake {
        Some(rows) if rows == live => None,
        Some(rows) => Some(format!("MongoDB counts {live} documents, the lake would hold {rows} rows")),
        None => Some(format!(
            "MongoDB counts {live} documents, the lake would hold {} rows",
            if live < before { format!("at least {before}") } else { format!("at most {}", before + pass.seq) }
        )),
    })
}

/// Compares key sets and feeds missing documents into `pass`; see the module docs. The live keys are sorted in
/// runs of `run_entries`.
pub async fn reconcile(pass: &mut ReadPass, index: &mut KeyIndex, run_entries: usize) -> Result<Reconciled> {
    let name = pass.name.clone();
    let mut read: Vec<String> = Vec::new();
    pass.buffers.for_each_key(|k| read.push(k.to_string()))?;
    read.sort_unstable();
    read.dedup();

    let mut attempt = 0;
    let (mut out, missing) = loop {
        attempt += 1;
        let scratch = tempfile::Builder::new()
            .prefix("mongolake-reconcile-")
            .tempdir()
            .map_err(|e| Error::io(format!("{name}: creating a directory to sort live keys in"), e))?;
        let io = |e: std::io::Error| Error::io(format!("{name}: sorting live keys in {}", scratch.path().display()), e);
        let (sorter, live) = scan_live_keys(pass, run_entries, scratch.path()).await?;
        let sorted_on_disk = sorter.spilled();
        let mut compare = Compare::new(sorter.done().map_err(io)?);
        let mut r = 0;
        // (the comparison's own errors are kept apart from the visit's, which are the index's)
        let mut compared: Result<()> = Ok(());
        let visited = store::visit_keys(index, &pass.ctx().lake, &pass.spec, |key| {
            if compared.is_ok() {
                compared = (|| {
                    while r < read.len() && read[r].as_str() < key {
                        compare.lake_key(&read[r])?;
                        r += 1;
                    }
                    if read.get(r).is_some_and(|k| k == key) {
                        r += 1;
                    }
                    compare.lake_key(key)
                })();
            }
        })
        .await;
        compared?;
        match visited {
            Ok(()) => {}
            // An index segment that cannot be read: rebuild the index from the partition files (as loading
            // does) and compare again; nothing was fetched or changed yet.
            Err(e) if attempt == 1 && !index.changed() => {
                *index =
                    store::rebuild(&pass.ctx().lake, &pass.spec, &e.to_string(), &pass.ctx().index_rebuild()).await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        read[r..].iter().try_for_each(|k| compare.lake_key(k))?;
        let (deleted, missing) = compare.finish()?;
        break (Reconciled { deleted, live, sorted_on_disk, ..Default::default() }, missing);
    };

    let key_field = pass.spec.key.clone();
    for chunk in missing.chunks(FETCH_CHUNK) {
        let filter = bson::doc! { key_field.as_str(): { "$in": chunk.to_vec() } };
        let before = pass.seq;
        pass.read(filter).await?;
        out.fetched += pass.seq - before;
    }
    if out.fetched > 0 || !out.deleted.is_empty() {
        tracing::info!(
            collection = %name,
            live = out.live,
            deleted = out.deleted.len(),
            fetched = out.fetched,
            on_disk = out.sorted_on_disk,
            "Reconciled key sets"
        );
    }
    Ok(out)
}

impl crate::sort::SortItem for LiveKey {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// Reads the key of every document in MongoDB (keys only) into an external sort under `dir`; also returns how
/// many were read.
async fn scan_live_keys(pass: &ReadPass, run_entries: usize, dir: &std::path::Path) -> Result<(Sorter<LiveKey>, u64)> {
    let name = &pass.name;
    let key_field = &pass.spec.key;
    let collection =
        pass.ctx().client.database(&pass.spec.database).collection::<bson::Document>(&pass.spec.collection);
    let mut projection = bson::doc! { key_field.as_str(): 1 };
    if key_field != "_id" {
        projection.insert("_id", 0);
    }
    let mut sorter = Sorter::new(run_entries, dir.to_path_buf());
    let mut live = 0u64;
    let mut cursor = collection
        .find(bson::Document::new())
        .projection(projection)
        .batch_size(pass.ctx().batch_size.max(10_000))
        .batch()
        .await
        .map_err(|e| Error::mongo(format!("{name}: reconcile key scan"), e))?;
    while let Some(batch) = cursor.next().await {
        let batch = batch.map_err(|e| Error::mongo(format!("{name}: reconcile key scan"), e))?;
        let docs = batch.doc_slices().map_err(|e| Error::mongo(format!("{name}: reconcile key scan"), e))?;
        for raw in docs.into_iter().flatten() {
            let Some(doc) = raw.as_document() else { continue };
            // A document without the key is reported by the read pass; here it can neither be live nor missing.
            let Some(v) = get_path(doc, key_field) else { continue };
            let value = bson::rawdoc! { "k": bson::RawBson::from(v) }.into_bytes();
            sorter
                .push(LiveKey { key: text::key_text(v), value })
                .map_err(|e| Error::io(format!("{name}: sorting live keys in {}", dir.display()), e))?;
            live += 1;
        }
    }
    Ok((sorter, live))
}

/// The merge of the sorted live keys with the lake's keys (given in increasing order to [`Compare::lake_key`]).
struct Compare<I: Iterator<Item = std::io::Result<LiveKey>>> {
    live: std::iter::Peekable<I>,
    deleted: HashSet<String>,
    /// Values of the live keys the lake lacks.
    missing: Vec<bson::Bson>,
}

impl<I: Iterator<Item = std::io::Result<LiveKey>>> Compare<I> {
    fn new(live: I) -> Self {
        Compare { live: live.peekable(), deleted: HashSet::new(), missing: Vec::new() }
    }

    /// The next live key, when it sorts before `bound` (any, without one); a key repeated in MongoDB (a key
    /// field that is not unique) counts once.
    fn next_live_before(&mut self, bound: Option<&str>) -> Result<Option<LiveKey>> {
        let io = |e: std::io::Error| Error::io("reading back sorted live keys", e);
        match self.live.peek() {
            None => return Ok(None),
            Some(Ok(next)) if bound.is_some_and(|b| next.key.as_str() >= b) => return Ok(None),
            Some(Ok(_)) => {}
            Some(Err(_)) => {
                let Some(Err(e)) = self.live.next() else { unreachable!("peeked an error") };
                return Err(io(e));
            }
        }
        let key = self.live.next().expect("peeked").map_err(io)?;
        while self.live.peek().is_some_and(|n| n.as_ref().is_ok_and(|n| n.key == key.key)) {
            self.live.next();
        }
        Ok(Some(key))
    }

    fn lake_key(&mut self, key: &str) -> Result<()> {
        while let Some(live) = self.next_live_before(Some(key))? {
            self.missing.push(value_of(&live)?);
        }
        match self.live.peek() {
            Some(Ok(live)) if live.key == key => {
                self.next_live_before(None)?;
            }
            _ => {
                self.deleted.insert(key.to_string());
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(HashSet<String>, Vec<bson::Bson>)> {
        while let Some(live) = self.next_live_before(None)? {
            self.missing.push(value_of(&live)?);
        }
        Ok((self.deleted, self.missing))
    }
}

fn value_of(live: &LiveKey) -> Result<bson::Bson> {
    let bad = |e: bson::error::Error| Error::encode(format!("reconcile: the live key {}", live.key), e);
    let doc = bson::RawDocument::from_bytes(&live.value).map_err(bad)?;
    let value =
        doc.get("k").map_err(bad)?.ok_or_else(|| Error::encode("reconcile", "a sorted live key lost its value"))?;
    bson::Bson::try_from(value).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(keys: &[&str]) -> impl Iterator<Item = std::io::Result<LiveKey>> {
        let keys: Vec<LiveKey> = keys
            .iter()
            .map(|k| LiveKey { key: k.to_string(), value: bson::rawdoc! { "k": *k }.into_bytes() })
            .collect();
        keys.into_iter().map(Ok)
    }

    fn compare(live_keys: &[&str], lake: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut c = Compare::new(live(live_keys));
        lake.iter().for_each(|k| c.lake_key(k).unwrap());
        let (deleted, missing) = c.finish().unwrap();
        let mut deleted: Vec<String> = deleted.into_iter().collect();
        deleted.sort();
        (deleted, missing.into_iter().map(|b| b.as_str().unwrap().to_string()).collect())
    }

    #[test]
    fn the_sorted_merge_finds_deleted_and_missing_keys() {
        let s = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        // a and d only live (missing), c only in the lake (deleted), b in both (repeated live: counted once).
        assert_eq!(compare(&["a", "b", "b", "d"], &["b", "c"]), (s(&["c"]), s(&["a", "d"])));
        assert_eq!(compare(&[], &["x", "y"]), (s(&["x", "y"]), s(&[])));
        assert_eq!(compare(&["x", "y"], &[]), (s(&[]), s(&["x", "y"])));
        assert_eq!(compare(&["a", "b"], &["a", "b"]), (s(&[]), s(&[])));
        // Keys compare as the index sorts them: bytes ("10" before "9").
        assert_eq!(compare(&["10", "9"], &["9"]), (s(&[]), s(&["10"])));
    }

    #[test]
    fn a_live_key_survives_the_on_disk_sort_with_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = Sorter::new(2, dir.path().to_path_buf());
        let oid = bson::oid::ObjectId::from_bytes([7; 12]);
        let values = [bson::Bson::Int32(9), bson::Bson::ObjectId(oid), bson::Bson::String("é".into())];
        for v in &values {
            let raw = bson::RawBson::try_from(v.clone()).unwrap();
            let key = text::key_text(raw.as_raw_bson_ref());
            sorter.push(LiveKey { key, value: bson::rawdoc! { "k": raw }.into_bytes() }).unwrap();
        }
        let back: Vec<bson::Bson> = sorter.done().unwrap().map(|k| value_of(&k.unwrap()).unwrap()).collect();
        assert_eq!(back, [values[1].clone(), values[0].clone(), values[2].clone()], "by key text: hex, 9, é");
    }
}
