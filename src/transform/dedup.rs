//! Keeping one row per key: the latest version.
//!
//! Candidates for a partition are the rows of its existing file and the documents read in this run. A document
//! read in this run always supersedes the file's row for the same key: it *is* the live version, even if a
//! writer's clock put an older timestamp on it. Among documents read in this run, the greatest timestamp wins,
//! then the one read last (a document returned twice by a cursor was updated in between). The outcome depends
//! only on the candidates, never on hash order, and rows are emitted sorted by key so files are reproducible.

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
    fn rank(&self) -> (bool, Option<i64>, u64) {
        (self.fresh, self.timestamp, self.seq)
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
    fn deterministic_under_reordering() {
        let mut cands = vec![c("x", true, Some(1), 0), c("x", true, Some(2), 1), c("y", false, None, 0)];
        let first: Vec<String> = latest(&cands).into_iter().map(|i| format!("{:?}", cands[i])).collect();
        cands.reverse();
        let second: Vec<String> = latest(&cands).into_iter().map(|i| format!("{:?}", cands[i])).collect();
        assert_eq!(first, second);
    }
}
