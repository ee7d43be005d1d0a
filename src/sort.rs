//! The run's external sorts (row keys for the plan, spilled rows of a partition, live keys of a reconcile,
//! the keys of a key index rebuild):
//! [`extsort`]'s push sorter, with a guard against a loss in it.
//!
//! extsort 0.5.0 (the latest release; `PushExternalSorter::done` in src/push.rs) writes a sorted run to disk
//! whenever its buffer grows past the run size, and at the end sorts what is left in the buffer into one last
//! run, or, when nothing was written, iterates the buffer in memory. When the number of items pushed is an
//! exact multiple of the run size + 1, the last push leaves the buffer empty after writing a run; `done` then
//! takes the empty buffer for "nothing was written" and returns an empty iterator: every item is lost. Here
//! [`Sorter::done`] sees that case coming (it counts the pushes) and pushes an end marker first, so the buffer
//! is never empty when runs are on disk; the marker sorts last and is not returned.
use std::cmp::Ordering;
use std::io::{Read, Write};
use std::path::PathBuf;

/// An item of an external sort, with the order it is sorted in.
pub(crate) trait SortItem: extsort::Sortable {
    fn order(&self, other: &Self) -> Ordering;
}

/// What the inner sorter holds: an item, or the end marker (see the module docs).
enum Entry<T> {
    Item(T),
    End,
}

impl<T: SortItem> extsort::Sortable for Entry<T> {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        match self {
            Entry::Item(item) => {
                w.write_all(&[0])?;
                item.encode(w)
            }
            Entry::End => w.write_all(&[1]),
        }
    }

    fn decode<R: Read>(r: &mut R) -> std::io::Result<Self> {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?; // an end of file here ends the run, as extsort expects
        match tag[0] {
            0 => Ok(Entry::Item(T::decode(r)?)),
            1 => Ok(Entry::End),
            t => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("sort run entry tag {t}"))),
        }
    }
}

fn entry_order<T: SortItem>(a: &Entry<T>, b: &Entry<T>) -> Ordering {
    match (a, b) {
        (Entry::Item(a), Entry::Item(b)) => a.order(b),
        (Entry::Item(_), Entry::End) => Ordering::Less,
        (Entry::End, Entry::Item(_)) => Ordering::Greater,
        (Entry::End, Entry::End) => Ordering::Equal,
    }
}

type Order<T> = fn(&Entry<T>, &Entry<T>) -> Ordering;

/// An external sort: runs of `run` items sorted in memory, written under `dir` once there is more than one.
pub(crate) struct Sorter<T: SortItem> {
    inner: extsort::PushExternalSorter<Entry<T>, Order<T>>,
    run: u64,
    pushed: u64,
}

impl<T: SortItem + Send> Sorter<T> {
    pub fn new(run: usize, dir: PathBuf) -> Self {
        let run = run.max(1);
        let inner = extsort::ExternalSorter::new()
            .with_segment_size(run)
            .with_sort_dir(dir)
            .pushed_by(entry_order::<T> as Order<T>);
        Sorter { inner, run: run as u64, pushed: 0 }
    }

    pub fn push(&mut self, item: T) -> std::io::Result<()> {
        self.pushed += 1;
        self.inner.push(Entry::Item(item))
    }

    /// Whether the items went beyond one run (some were written to disk).
    pub fn spilled(&self) -> bool {
        self.pushed > self.run
    }

    /// Every item pushed, in order.
    pub fn done(mut self) -> std::io::Result<impl Iterator<Item = std::io::Result<T>> + Send> {
        // The inner buffer holds `pushed mod (run + 1)` items: a run is written when it reaches run + 1.
        if self.pushed > 0 && self.pushed.is_multiple_of(self.run + 1) {
            self.inner.push(Entry::End)?;
        }
        Ok(self.inner.done()?.filter_map(|entry| match entry {
            Ok(Entry::Item(item)) => Some(Ok(item)),
            Ok(Entry::End) => None,
            Err(e) => Some(Err(e)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct N(u32);

    impl extsort::Sortable for N {
        fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
            w.write_all(&self.0.to_le_bytes())
        }

        fn decode<R: Read>(r: &mut R) -> std::io::Result<N> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            Ok(N(u32::from_le_bytes(b)))
        }
    }

    impl SortItem for N {
        fn order(&self, other: &Self) -> Ordering {
            self.0.cmp(&other.0)
        }
    }

    #[test]
    fn every_item_comes_back_sorted_whatever_the_count_and_run_size() {
        // Counts that are multiples of run + 1 are the ones extsort alone returns empty (6 with runs of 2, ...).
        for run in 1..5 {
            for count in 0..24u32 {
                let dir = tempfile::tempdir().unwrap();
                let mut sorter = Sorter::new(run, dir.path().to_path_buf());
                for i in (0..count).rev() {
                    sorter.push(N(i)).unwrap();
                }
                assert_eq!(sorter.spilled(), count as usize > run);
                let back: Vec<u32> = sorter.done().unwrap().map(|n| n.unwrap().0).collect();
                assert_eq!(back, (0..count).collect::<Vec<_>>(), "run {run}, {count} items");
            }
        }
    }

    #[test]
    fn the_extsort_loss_this_guards_against_is_still_there() {
        // If this fails, extsort returns every item on its own and the end marker can go.
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = extsort::ExternalSorter::new()
            .with_segment_size(2)
            .with_sort_dir(dir.path().to_path_buf())
            .pushed_by(|a: &N, b: &N| a.0.cmp(&b.0));
        (0..3).for_each(|i| sorter.push(N(i)).unwrap());
        assert_eq!(sorter.done().unwrap().count(), 0, "3 items pushed, runs of 2: all lost");
    }
}
