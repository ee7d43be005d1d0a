//! Between the read pass and the write pass: which buffered rows are written, and where each key lives now.
//!
//! Every buffered row becomes an entry (key, timestamp, read order, partition). Sorted by key and then recency,
//! the last entry of a key is its newest version: older copies read into another partition (an update between
//! two batches of the cursor) are dropped, and the key index learns the newest one's partition, which tells the
//! write pass to remove the key from the partition it lived in before (a moved row).
//!
//! A sort rather than a map per key: the index wants the keys sorted anyway, and a sorted run streams. While the
//! rows are in memory (nothing spilled) they are sorted in memory by reference. Once rows spilled (more than the
//! memory budget holds) the entries are sorted externally ([`crate::sort::Sorter`] over extsort: runs of a
//! bounded number of entries sorted in memory, written to the spill directory and merged), and a first load
//! writes its key index segment by segment as the merge produces it ([`SegmentWriter`]). A first load then holds,
//! besides the budget, one sort run, one index segment and what it drops; a run over an existing index holds one
//! index segment at a time and the one being written ([`Updater`], fed the keys in the same sorted order).
use super::buffer::{Part, SortRow};
use crate::state::index::{store::SegmentWriter, KeyIndex, Updater};
use crate::{Error, FastSet, Result};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the write pass needs from the plan.
#[derive(Debug, Default)]
pub struct Plan {
    /// Read orders of buffered rows not to write: older copies of a key whose newest version was read into
    /// another partition, and documents deleted in MongoDB (reconcile).
    pub dropped: FastSet<u64>,
    /// Partition (relative path) -> keys to remove from its existing rows.
    pub removals: HashMap<String, HashSet<String>>,
    /// Older copies dropped across partitions.
    pub cross_dups: u64,
    /// Keys removed from the index because their documents were deleted.
    pub rows_deleted: u64,
    /// The entries were sorted on disk (they did not fit in memory).
    pub sorted_on_disk: bool,
}

/// Where the plan writes the index to.
pub enum IndexTarget<'a> {
    /// Update the saved index: the keys (read, and deleted) come sorted, so it is updated a segment at a time.
    Update(Box<Updater<'a>>),
    /// A first load: write segments as the keys come, and replace the (empty) index with them.
    Stream(Box<SegmentWriter<'a>>, &'a mut KeyIndex),
}

/// The first 16 bytes of `key`, zero-padded, big-endian: a < b implies key a < key b, and equal prefixes leave
/// the order to the whole keys.
fn prefix(key: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(16);
    b[..n].copy_from_slice(&key.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Plans the write pass over `parts` (`rels`: their relative paths, by position). When rows were spilled, the
/// entries are sorted on disk in the spill directory `sort_dir`, `run_entries` at a time.
pub async fn plan<P: Sync>(
    parts: &[(P, Part)],
    rels: &[Arc<str>],
    deleted: &HashSet<String>,
    target: IndexTarget<'_>,
    sort_dir: Option<&std::path::Path>,
    run_entries: usize,
) -> Result<Plan> {
    let mut gone: Vec<&str> = deleted.iter().map(String::as_str).collect();
    gone.sort_unstable();
    let mut planner = Planner {
        plan: Plan::default(),
        deleted,
        gone,
        next_gone: 0,
        rels,
        target,
        key: String::new(),
        group: Vec::new(),
    };
    let in_memory: Option<Vec<&[super::buffer::RowMeta]>> = parts.iter().map(|(_, p)| p.rows_if_in_memory()).collect();
    match (in_memory, sort_dir) {
        (Some(rows), _) => {
            let total: usize = rows.iter().map(|r| r.len()).sum();
            // Each key's first 16 bytes as a number lead the sort key: most comparisons end there, without a
            // string comparison (the order is the keys' order: see `prefix`).
            let mut refs: Vec<(u128, &str, Option<i64>, u64, u32)> = Vec::with_capacity(total);
            for (pi, rows) in rows.iter().enumerate() {
                refs.extend(rows.iter().map(|r| (prefix(&r.key), r.key.as_str(), r.timestamp, r.seq, pi as u32)));
            }
            refs.sort_unstable();
            for (_, key, _, seq, pi) in refs {
                planner.next(key, seq, pi).await?;
            }
        }
        (None, None) => {
            return Err(Error::encode("planning the write pass", "rows were spilled without a spill directory"))
        }
        (None, Some(dir)) => {
            let io = |e: std::io::Error| Error::io(format!("sorting row keys in {}", dir.display()), e);
            // (a directory of its own, removed with its runs when the plan is made)
            let runs = tempfile::Builder::new().prefix("plan-").tempdir_in(dir).map_err(io)?;
            let mut sorter = crate::sort::Sorter::new(run_entries, runs.path().to_path_buf());
            let mut pushed = Ok(());
            for (pi, (_, part)) in parts.iter().enumerate() {
                part.visit_rows(|r| {
                    if pushed.is_ok() {
                        pushed = sorter.push(SortRow { row: r.clone(), part: pi as u32 });
                    }
                })?;
            }
            pushed.map_err(io)?;
            planner.plan.sorted_on_disk = true;
            for e in sorter.done().map_err(io)? {
                let e = e.map_err(io)?;
                planner.next(&e.row.key, e.row.seq, e.part).await?;
            }
        }
    }
    planner.finish().await
}

struct Planner<'a, 'b> {
    plan: Plan,
    deleted: &'a HashSet<String>,
    /// The deleted keys sorted, and the next one the index has not seen: they join the index's updates in key
    /// order (keys read and deleted, such as a document deleted after this run read it, are in both).
    gone: Vec<&'a str>,
    next_gone: usize,
    rels: &'a [Arc<str>],
    target: IndexTarget<'b>,
    /// The current key, and its entries so far as (read order, partition), oldest first.
    key: String,
    group: Vec<(u64, u32)>,
}

impl Planner<'_, '_> {
    /// Takes the next entry in sort order.
    async fn next(&mut self, key: &str, seq: u64, part: u32) -> Result<()> {
        if !self.group.is_empty() && self.key != key {
            self.close_group().await?;
        }
        if self.group.is_empty() {
            self.key.clear();
            self.key.push_str(key);
        }
        self.group.push((seq, part));
        Ok(())
    }

    /// Removes the deleted keys up to `upto` (all when None) from an index being updated, in key order.
    async fn remove_deleted(&mut self, upto: Option<&str>) -> Result<()> {
        while let Some(&key) = self.gone.get(self.next_gone) {
            if upto.is_some_and(|u| key > u) {
                break;
            }
            self.next_gone += 1;
            if let IndexTarget::Update(index) = &mut self.target {
                if let Some(old) = index.next(key, None).await? {
                    self.plan.removals.entry(old).or_default().insert(key.to_string());
                    self.plan.rows_deleted += 1;
                }
            }
        }
        Ok(())
    }

    /// The current key is complete: its newest entry wins.
    async fn close_group(&mut self) -> Result<()> {
        let Some(&(_, pi)) = self.group.last() else { return Ok(()) };
        let key = std::mem::take(&mut self.key);
        self.remove_deleted(Some(&key)).await?;
        self.key = key;
        let key = self.key.as_str();
        if self.deleted.contains(key) {
            self.plan.dropped.extend(self.group.iter().map(|(seq, _)| *seq));
        } else {
            // Copies in the winner's partition are deduplicated there (and counted by its writer).
            for &(seq, _) in self.group.iter().filter(|(_, p)| *p != pi) {
                self.plan.dropped.insert(seq);
                self.plan.cross_dups += 1;
            }
            let rel = &self.rels[pi as usize];
            match &mut self.target {
                IndexTarget::Stream(writer, _) => writer.push(key, rel).await?,
                IndexTarget::Update(index) => {
                    if let Some(old) = index.next(key, Some(rel)).await? {
                        self.plan.removals.entry(old).or_default().insert(key.to_string());
                    }
                }
            }
        }
        self.group.clear();
        Ok(())
    }

    async fn finish(mut self) -> Result<Plan> {
        self.close_group().await?;
        self.remove_deleted(None).await?;
        match self.target {
            // (a first load's deleted keys were dropped above and never entered the index)
            IndexTarget::Stream(writer, index) => *index = writer.finish().await?,
            IndexTarget::Update(index) => index.finish().await?,
        }
        Ok(self.plan)
    }
}

#[cfg(test)]
mod tests {
    use super::super::buffer::{MemoryBudget, PartitionBuffers};
    use super::*;

    /// (partition, key, timestamp) in read order; 300 keys, some read twice or three times, in one partition or
    /// across partitions, some with an older timestamp read later.
    fn rows() -> Vec<(u8, String, Option<i64>)> {
        let mut out = Vec::new();
        for i in 0..300u32 {
            out.push(((i % 4) as u8, format!("k{:03}", (i * 7919) % 300), Some(i64::from(i % 10))));
        }
        for i in (0..300u32).step_by(7) {
            out.push(((i % 3) as u8, format!("k{i:03}"), if i % 2 == 0 { Some(100) } else { Some(-1) }));
        }
        out.push((1, "k005".into(), None));
        out
    }

    async fn planned(budget: u64, run_entries: usize) -> (Plan, Vec<(String, String)>, u64) {
        let mut b = PartitionBuffers::new(MemoryBudget::new(budget));
        for (seq, (p, key, ts)) in rows().into_iter().enumerate() {
            b.push(vec![Some(p.to_string())], &[p; 5], key, ts, seq as u64).unwrap();
        }
        let spills = b.spills;
        let (parts, dir) = b.drain();
        let rels: Vec<Arc<str>> =
            parts.iter().map(|(v, _)| Arc::from(format!("p={}", v[0].as_ref().unwrap()))).collect();
        let deleted: HashSet<String> = ["k010", "k011", "nope"].iter().map(|k| k.to_string()).collect();
        // A saved index of segments of 8 keys: k011 lived elsewhere and is deleted now, k012 moved, and the
        // "j" keys are neither read nor deleted (their segments stay as they were).
        let (lake, spec) = crate::state::index::test_lake::setup();
        let mut index = KeyIndex::default();
        index.set("k011", Arc::from("p=9"));
        index.set("k012", Arc::from("p=9"));
        for i in 0..40 {
            index.set(&format!("j{i:02}"), Arc::from("p=7"));
        }
        crate::state::index::save(&lake, &spec, &index, "run0", 8, true).await.unwrap();
        let mut index = crate::state::index::load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        let updater = Updater::new(&mut index, &lake, &spec, "run1-u0", 8, true);
        let sort_dir = dir.as_ref().map(|d| d.path().to_path_buf());
        let plan =
            plan(&parts, &rels, &deleted, IndexTarget::Update(Box::new(updater)), sort_dir.as_deref(), run_entries)
                .await
                .unwrap();
        crate::state::index::save(&lake, &spec, &index, "run1", 8, true).await.unwrap();
        let mut index = crate::state::index::load_or_rebuild(&lake, &spec, &Default::default()).await.unwrap();
        crate::state::index::store::load_all(&mut index, &lake, &spec).await.unwrap();
        let entries = index
            .entries()
            .into_iter()
            .filter(|(k, _)| !k.starts_with('j'))
            .map(|(k, p)| (k.to_string(), p.to_string()))
            .collect();
        assert_eq!(index.len(), 40 + 298, "the j keys, and the 300 keys read but k010 and k011");
        (plan, entries, spills)
    }

    #[test]
    fn the_prefix_orders_as_the_keys_do() {
        let keys =
            ["", "\0", "a", "a\0", "a\0\0b", "ab", "abcdefghijklmnop", "abcdefghijklmnopq", "abcdefghijklmnoq", "é"];
        for a in keys {
            for b in keys {
                let by_prefix = prefix(a).cmp(&prefix(b)).then(a.cmp(b));
                assert_eq!(by_prefix, a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[tokio::test]
    async fn sorting_on_disk_plans_what_sorting_in_memory_plans() {
        let (mem, mem_index, mem_spills) = planned(u64::MAX, 1 << 20).await;
        let (disk, disk_index, disk_spills) = planned(4000, 16).await;
        assert_eq!((mem_spills, mem.sorted_on_disk), (0, false));
        assert!(disk_spills > 0 && disk.sorted_on_disk);
        assert_eq!(mem.dropped, disk.dropped);
        assert_eq!(mem.cross_dups, disk.cross_dups);
        assert_eq!(mem.removals, disk.removals);
        assert_eq!(mem_index, disk_index);
        // And both are what the rules say, worked out directly: the newest (timestamp, then read order) of a
        // key wins; its copies in other partitions are dropped; deleted keys are dropped whole.
        let mut newest: std::collections::BTreeMap<String, (Option<i64>, u64, u8)> = Default::default();
        for (seq, (p, key, ts)) in rows().into_iter().enumerate() {
            let e = newest.entry(key).or_insert((ts, seq as u64, p));
            if (ts, seq as u64) > (e.0, e.1) {
                *e = (ts, seq as u64, p);
            }
        }
        let (mut dropped, mut cross) = (FastSet::default(), 0);
        for (seq, (p, key, _)) in rows().into_iter().enumerate() {
            if key == "k010" || key == "k011" {
                dropped.insert(seq as u64);
            } else if newest[&key].2 != p {
                dropped.insert(seq as u64);
                cross += 1;
            }
        }
        assert_eq!((mem.dropped, mem.cross_dups), (dropped, cross));
        assert!(cross > 10, "the rows make cross-partition copies: {cross}");
        newest.retain(|k, _| k != "k010" && k != "k011");
        let want: Vec<(String, String)> = newest.iter().map(|(k, v)| (k.clone(), format!("p={}", v.2))).collect();
        assert_eq!(mem_index, want);
        assert_eq!(mem.rows_deleted, 1, "k011 was in the index, k010 and nope were not");
        let from_p9: HashSet<String> = ["k011", "k012"].iter().map(|k| k.to_string()).collect();
        assert_eq!(mem.removals, HashMap::from([("p=9".to_string(), from_p9)]));
    }
}
