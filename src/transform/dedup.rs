//! Keeping one row per key: the latest version. The rule is [`Version`]'s order, written here once.
//!
//! Candidates for a partition are the rows of its existing file and the documents read in this run. A document
//! read in this run always supersedes the file's row for the same key: it *is* the live version, even if a
//! writer's clock put an older timestamp on it. Among documents read in this run, the greatest timestamp wins,
//! then the one read last (a document returned twice by a cursor was updated in between). The outcome depends
//! only on the candidates, never on hash order, and rows are emitted sorted by key so files are reproducible.
//!
//! Who applies it: [`latest`] (a partition's candidates), the external sorts of buffered rows (ordered by key,
//! then [`Version`]: the last row of a key is its newest, `sync::buffer::SortRow`), and the merges of pass 2
//! (`sync::write`), which keep a file's row only when no document read in this run has its key
//! ([`Version::read`] outranks every [`Version::file_row`]).

/// One version of a key, ordered by the rule: greater wins. A version read in this run (`fresh`) beats any row
/// of the existing file; then the greater timestamp (a missing one is the least); then the later read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub fresh: bool,
    pub timestamp: Option<i64>,
    pub seq: u64,
}

impl Version {
    /// A document read in this run, the `seq`-th.
    pub fn read(timestamp: Option<i64>, seq: u64) -> Version {
        Version { fresh: true, timestamp, seq }
    }

    /// Row `seq` of the partition's existing file.
    pub fn file_row(timestamp: Option<i64>, seq: u64) -> Version {
        Version { fresh: false, timestamp, seq }
    }
}

/// One version of a row. The key is borrowed from the buffered row's metadata when it can be (one allocation
/// and copy less per document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub key: std::borrow::Cow<'a, str>,
    /// Read from MongoDB in this run (as opposed to the existing file).
    pub fresh: bool,
    pub timestamp: Option<i64>,
    /// Order of reading within the run.
    pub seq: u64,
}

impl Candidate<'_> {
    fn rank(&self) -> Version {
        Version { fresh: self.fresh, timestamp: self.timestamp, seq: self.seq }
    }
}

/// Indices of the winning candidates, sorted by key.
pub fn latest(candidates: &[Candidate]) -> Vec<usize> {
    let mut best: crate::FastMap<&str, usize> = crate::FastMap::default();
    best.reserve(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        best.entry(c.key.as_ref())
            .and_modify(|b| {
                if c.rank() > candidates[*b].rank() {
                    *b = i;
                }
            })
            .or_insert(i);
    }
    let mut winners: Vec<usize> = best.into_values().collect();
    winners.sort_by(|a, b| candidates[*a].key.cmp(&candidates[*b].key));
    winners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &str, fresh: bool, ts: Option<i64>, seq: u64) -> Candidate<'_> {
        Candidate { key: key.into(), fresh, timestamp: ts, seq }
    }

    #[test]
    fn fresh_beats_file_and_latest_wins() {
        let cands = vec![
            c("b", false, Some(10), 0),
            c("a", false, Some(5), 1),
            c("b", true, Some(3), 0), // re-read with an older clock: still the live version
            c("a", true, Some(7), 1),
            c("a", true, Some(7), 2), // equal timestamp: read last wins
            c("c", true, None, 3),
        ];
        assert_eq!(latest(&cands), vec![4, 2, 5]);
    }

    #[test]
    fn a_version_read_in_this_run_outranks_every_file_row() {
        let newest_file_row = Version::file_row(Some(i64::MAX), u64::MAX);
        assert!(Version::read(None, 0) > newest_file_row);
        assert!(Version::read(Some(2), 0) > Version::read(Some(1), 9), "the greater timestamp first");
        assert!(Version::read(Some(1), 2) > Version::read(Some(1), 1), "then the later read");
        assert!(Version::read(Some(i64::MIN), 0) > Version::read(None, 5), "a missing timestamp is the least");
    }

    #[test]
    fn deterministic_under_reordering() {
        let mut cands = vec![c("x", true, Some(1), 0), c("x", true, Some(2), 1), c("y", false, None, 0)];
        let first: Vec<String> = latest(&cands).into_iter().map(|i| format!("{:?}", cands[i])).collect();
        cands.reverse();
        let second: Vec<String> = latest(&cands).into_iter().map(|i| format!("{:?}", cands[i])).collect();
        assert_eq!(first, second);
    }
}
