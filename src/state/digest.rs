//! The versions of recently read documents that the lake holds: what lets a run skip a document it re-reads
//! unchanged in its overlap window, and with it the partition file it would have read only to find that.
//!
//! A run reads from its watermark minus `overlap_seconds`, so it re-reads the documents the run before it wrote
//! last. Merging such a document changes nothing (the file is left as it was), but finding that out costs a
//! read of its partition file: on S3 a GET, and a decode, a file. A rerun right after a night re-read 2,232
//! documents and read 2,001 files to write none (`scripts/bench.sh --small`).
//!
//! ```text
//!  commit of run R ──► Digest { fingerprint, partitions: [{ rel, tag (the file's ETag), docs: [(key, hash)] }] }
//!                      (the documents R read that the next run's query matches again; in the index manifest)
//!  next run, before pass 1: the table listed ──► Digest::known: the entries whose partition file still has
//!                      the tag R saw (nothing rewrote it since) ──► Known
//!  pass 1: a document whose key is known with the hash of its (masked) raw bytes is the version the lake holds:
//!          it is not buffered, so its partition is not read unless another document needs it
//! ```
//! Why that is exact. A hash names a document's bytes, timestamp included; every change to a document moves its
//! timestamp (the watermark relies on the same), so a document read with the hash R recorded is the version R
//! wrote, and the fresh version would have replaced the file's row with itself. The partition's tag (an S3
//! ETag: a hash of the content; on local disk inode, modification time and size) proves the file is the one R
//! wrote or saw: a run that failed after rewriting it, a relayout, or a hand edit changes it, and the entries
//! of that partition are ignored. A digest written by another mongolake version, or for other collection
//! settings (the key, the timestamp column, the partitioning, the masking rules), is ignored whole. Missing
//! entries only cost the reads they would have saved; so the digest keeps at most [`MAX_ENTRIES`] documents and
//! is dropped beyond.
//!
//! A key read twice in one run (a cursor that met it before and after an update) keeps every version only if
//! one of them was buffered: the read pass puts a skipped version back then (see `sync::read`), so which version
//! wins is still [`crate::transform::dedup`]'s rule.
use crate::config::CollectionSpec;
use crate::schema::text::hex;
use crate::transform::dedup::Version;
use crate::FastMap;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::sync::Arc;

/// Documents a digest holds at most (about 100 bytes each in the manifest). A window with more (a bulk update
/// within the overlap) saves no digest: the next run reads their partitions, as it would without one.
pub const MAX_ENTRIES: usize = 200_000;

/// A document version's hash: the first 128 bits of the SHA-256 of its raw BSON (after masking: the bytes the
/// lake's row is made of).
pub type VersionHash = [u8; 16];

pub fn version_hash(raw: &[u8]) -> VersionHash {
    let full = sha2::Sha256::digest(raw);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// What a digest is valid for: this mongolake version and the collection's settings that shape a row.
pub fn fingerprint(spec: &CollectionSpec) -> String {
    let settings = format!(
        "{}\n{}\n{}\n{:?}\n{:?}",
        env!("CARGO_PKG_VERSION"),
        spec.key,
        spec.timestamp_column,
        spec.partition,
        spec.mask
    );
    hex(&sha2::Sha256::digest(settings.as_bytes())[..16])
}

fn unhex(text: &str) -> Option<VersionHash> {
    let mut out = [0u8; 16];
    if text.len() != 32 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The digest as the index manifest keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub fingerprint: String,
    pub partitions: Vec<DigestPartition>,
}

/// One partition's file, as its tag, and the documents in it that the digest knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestPartition {
    pub rel: String,
    pub tag: String,
    /// (key text, version hash in hex), sorted by key.
    pub docs: Vec<(String, String)>,
}

/// The documents whose version the lake holds now, by key: their hash and partition.
pub type Known = FastMap<String, (VersionHash, Arc<str>)>;

impl Digest {
    /// The entries still true of the lake: the digest is for `fingerprint`, and each partition's file has the
    /// tag in `tags` (the table as listed now) that the digest recorded.
    pub fn known(&self, fingerprint: &str, tags: &FastMap<String, String>) -> Known {
        let mut known = Known::default();
        if self.fingerprint != fingerprint {
            return known;
        }
        for p in &self.partitions {
            if tags.get(&p.rel) != Some(&p.tag) {
                continue;
            }
            let rel: Arc<str> = Arc::from(p.rel.as_str());
            for (key, hash) in &p.docs {
                if let Some(h) = unhex(hash) {
                    known.insert(key.clone(), (h, rel.clone()));
                }
            }
        }
        known
    }

    pub fn len(&self) -> usize {
        self.partitions.iter().map(|p| p.docs.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Pass 1's decision, document by document: skip a version the lake holds, unless another version of its key
/// was buffered (then every later one is too, and the dedup rule picks among them as without a digest).
#[derive(Debug, Default)]
pub struct Skipper {
    known: Known,
    /// Known keys skipped, with the greatest version skipped: a later-read version that loses to it is skipped too.
    skipped: FastMap<String, Version>,
    /// Known keys with a version buffered.
    buffered: crate::FastSet<String>,
}

impl Skipper {
    pub fn new(known: Known) -> Skipper {
        Skipper { known, ..Skipper::default() }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Whether `key` is known (worth hashing the document for).
    pub fn knows(&self, key: &str) -> bool {
        self.known.contains_key(key)
    }

    /// The partition the lake holds `key` in when this version (`hash`, `version`) is not to be buffered: it is
    /// the version the lake holds and nothing buffered outranks it (`Skip::Held`), or it loses to a version
    /// skipped before (`Skip::Outranked`). None: buffer it.
    pub fn skip(&mut self, key: &str, hash: &VersionHash, version: Version) -> Option<Skip> {
        let (held, rel) = self.known.get(key)?;
        if self.buffered.contains(key) {
            return None;
        }
        if held == hash {
            let skipped = self.skipped.entry(key.to_string()).or_insert(version);
            *skipped = (*skipped).max(version);
            return Some(Skip::Held(rel.clone()));
        }
        if self.skipped.get(key).is_some_and(|skipped| *skipped > version) {
            return Some(Skip::Outranked);
        }
        self.buffered.insert(key.to_string());
        None
    }
}

/// Why a version is not buffered ([`Skipper::skip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The lake holds this very version, in this partition.
    Held(Arc<str>),
    /// An older version read after the one the lake holds: that one still wins, as it would have.
    Outranked,
}

/// One recorded version: the newest of its key read in this run, by the dedup rule.
#[derive(Debug, Clone)]
struct Recent {
    version: Version,
    /// When the next run's query re-reads it (see [`Recorder::record`]).
    at: Option<i64>,
    /// The next run's query matches it whatever `at` (see [`Recorder::sticky`]): kept by every prune.
    sticky: bool,
    hash: VersionHash,
    rel: Arc<str>,
}

/// The versions a run reads that the next run may re-read: every document whose timestamp (or ObjectId `_id`'s
/// creation time) is within the overlap of the newest timestamp read so far, capped at the read's start (older
/// ones are pruned as the newest moves on), and every document the next run's query matches another way
/// ([`Recorder::sticky`]).
#[derive(Debug, Default)]
pub struct Recorder {
    overlap_ms: i64,
    /// The newest timestamp read, capped at `read_started` (the next watermark is, see `sync::collection`).
    newest: Option<i64>,
    read_started: Option<i64>,
    /// An incremental run's query bound (its watermark minus the overlap). A document it read from before that
    /// bound, or without a timestamp, matched by another way (an `_id` created in the window, a timestamp
    /// stored as a string that compares after the bound, see `source::incremental_query`), and the next run's
    /// query matches it the same way: it is recorded whatever its timestamp.
    query_since: Option<i64>,
    entries: FastMap<String, Recent>,
    /// Entries held after the last prune: the next prune waits for twice as many.
    pruned_at: usize,
    /// More than [`MAX_ENTRIES`] were in the window: no digest.
    overflowed: bool,
}

impl Recorder {
    pub fn new(overlap_ms: i64) -> Recorder {
        Recorder { overlap_ms, ..Recorder::default() }
    }

    /// The moment the read started: a document stamped later (a writer's clock ahead) moves the window no
    /// further, as it moves the watermark no further.
    pub fn read_started(&mut self, at: i64) {
        self.read_started = Some(at);
    }

    /// An incremental run from `since`: what it reads from before that (or without a timestamp) is recorded too
    /// (a full load reads every document, and records only the window).
    pub fn incremental(&mut self, since: i64) {
        self.query_since = Some(since);
    }

    /// Whether the next run's query matches a document whatever its time `at`: its timestamp is stored as text
    /// (the query's text branch compares strings, `>=` the day before its bound, so an ISO date matches for a
    /// day and a text of another shape may match every night), or an incremental run read it from before its
    /// bound or without a timestamp (it matched another way, and will again).
    fn sticky(&self, at: Option<i64>, stamped_as_text: bool) -> bool {
        stamped_as_text
            || match (at, self.query_since) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(t), Some(since)) => t < since,
            }
    }

    /// Whether a document the next run re-reads at `at` would be recorded (so its hash and partition are worth
    /// computing); `stamped_as_text`: its timestamp field holds a string.
    pub fn wants(&self, ts: Option<i64>, stamped_as_text: bool) -> bool {
        !self.overflowed
            && (self.sticky(ts, stamped_as_text)
                || match (ts, self.newest) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(t), Some(n)) => t >= n - self.overlap_ms,
                })
    }

    /// Records a version read (`wants` said yes for `at`); the newest of a key by the dedup rule stays. `ts` is
    /// its timestamp, `at` when the next run's query re-reads it: the timestamp, or the creation time of an
    /// ObjectId `_id` when that is later (the query's `_id` branch re-reads documents created in the window
    /// whatever their timestamp).
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        key: &str,
        ts: Option<i64>,
        at: Option<i64>,
        stamped_as_text: bool,
        seq: u64,
        hash: VersionHash,
        rel: Arc<str>,
    ) {
        if self.overflowed {
            return;
        }
        let sticky = self.sticky(at, stamped_as_text);
        if let Some(ts) = ts {
            let capped = self.read_started.map_or(ts, |at| ts.min(at));
            self.newest = Some(self.newest.map_or(capped, |n| n.max(capped)));
        }
        let version = Version::read(ts, seq);
        match self.entries.get_mut(key) {
            Some(e) if e.version >= version => {}
            Some(e) => *e = Recent { version, at, sticky, hash, rel },
            None => {
                self.entries.insert(key.to_string(), Recent { version, at, sticky, hash, rel });
            }
        }
        let len = self.entries.len();
        if len > (2 * self.pruned_at).max(4096) || len > MAX_ENTRIES {
            self.prune(self.newest.unwrap_or(i64::MIN / 2) - self.overlap_ms);
            // (past the cap, or so near it that every few documents would prune again)
            if len > MAX_ENTRIES && self.entries.len() > MAX_ENTRIES / 4 * 3 {
                self.overflowed = true;
                self.entries = FastMap::default();
            }
        }
    }

    fn prune(&mut self, from: i64) {
        self.entries.retain(|_, e| e.sticky || e.at.is_some_and(|t| t >= from));
        self.pruned_at = self.entries.len();
    }

    /// Forgets keys (those reconcile found deleted: the lake will not hold them).
    pub fn forget<'a>(&mut self, keys: impl IntoIterator<Item = &'a String>) {
        for k in keys {
            self.entries.remove(k);
        }
    }

    /// The partitions the recorded documents live in.
    pub fn partitions(&self) -> std::collections::HashSet<Arc<str>> {
        self.entries.values().map(|e| e.rel.clone()).collect()
    }

    /// The digest the next run reads: the versions with a timestamp at or after `from` (the new watermark minus
    /// the overlap) in partitions whose file's tag `tag_of` knows. None when the window overflowed.
    pub fn finish(mut self, fingerprint: String, from: i64, tag_of: impl Fn(&str) -> Option<String>) -> Option<Digest> {
        if self.overflowed {
            return None;
        }
        self.prune(from);
        let mut by_rel: std::collections::BTreeMap<Arc<str>, Vec<(String, String)>> = Default::default();
        for (key, e) in self.entries {
            by_rel.entry(e.rel).or_default().push((key, hex(&e.hash)));
        }
        let partitions = by_rel
            .into_iter()
            .filter_map(|(rel, mut docs)| {
                let tag = tag_of(&rel)?;
                docs.sort();
                Some(DigestPartition { rel: rel.to_string(), tag, docs })
            })
            .collect();
        Some(Digest { fingerprint, partitions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn a_version_the_lake_holds_is_skipped_unless_another_of_its_key_is_buffered() {
        let (a, b) = (version_hash(b"a"), version_hash(b"b"));
        let known = |k: &str| Known::from_iter([(k.to_string(), (a, rel("p=1")))]);
        let v = |ts: i64, seq: u64| Version::read(Some(ts), seq);
        // the held version alone: skipped; an unknown key or another version: buffered
        let mut s = Skipper::new(known("k"));
        assert_eq!(s.skip("k", &a, v(10, 1)), Some(Skip::Held(rel("p=1"))));
        assert_eq!(s.skip("other", &a, v(10, 2)), None);
        // then a newer different version: buffered (it wins over the file's row, as it would have)
        assert_eq!(s.skip("k", &b, v(11, 3)), None);
        // and once one is buffered, every later one is, the held version too: the dedup rule decides
        assert_eq!(s.skip("k", &a, v(10, 4)), None);
        // skipped, then an older different version read later: skipped too (the held one outranks it)
        let mut s = Skipper::new(known("k"));
        assert!(s.skip("k", &a, v(10, 1)).is_some());
        assert_eq!(s.skip("k", &b, v(9, 2)), Some(Skip::Outranked));
        // a different version first: buffered, and the held one read after it is buffered as well
        let mut s = Skipper::new(known("k"));
        assert_eq!(s.skip("k", &b, v(9, 1)), None);
        assert_eq!(s.skip("k", &a, v(10, 2)), None);
    }

    #[test]
    fn hashes_round_trip_through_their_text() {
        let h = version_hash(b"some bson");
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex("zz"), None);
        assert_ne!(version_hash(b"a"), version_hash(b"b"));
    }

    #[test]
    fn the_newest_version_of_a_key_is_kept_by_the_dedup_rule() {
        let mut r = Recorder::new(1_000);
        r.record("k", Some(5_000), Some(5_000), false, 1, version_hash(b"new"), rel("p=1"));
        // read later, but older: the first stays (the greater timestamp wins)
        r.record("k", Some(4_500), Some(4_500), false, 2, version_hash(b"old"), rel("p=2"));
        // the same timestamp read later wins
        r.record("j", Some(5_000), Some(5_000), false, 3, version_hash(b"j1"), rel("p=1"));
        r.record("j", Some(5_000), Some(5_000), false, 4, version_hash(b"j2"), rel("p=3"));
        let d = r.finish("f".into(), 0, |rel| Some(format!("tag-{rel}"))).unwrap();
        let known = d.known(
            "f",
            &[("p=1", "tag-p=1"), ("p=3", "tag-p=3")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        );
        assert_eq!(known.get("k"), Some(&(version_hash(b"new"), rel("p=1"))));
        assert_eq!(known.get("j"), Some(&(version_hash(b"j2"), rel("p=3"))));
    }

    #[test]
    fn only_partitions_with_the_recorded_tag_and_the_same_settings_are_known() {
        let mut r = Recorder::new(1_000);
        r.record("a", Some(5_000), Some(5_000), false, 1, version_hash(b"a"), rel("p=1"));
        r.record("b", Some(5_000), Some(5_000), false, 2, version_hash(b"b"), rel("p=2"));
        r.record("c", Some(5_000), Some(5_000), false, 3, version_hash(b"c"), rel("p=3"));
        // p=3's file has no tag known (written by a path that does not tell it): not in the digest
        let d = r.finish("f".into(), 0, |rel| (rel != "p=3").then(|| format!("t{rel}"))).unwrap();
        assert_eq!(d.len(), 2);
        let now: FastMap<String, String> =
            [("p=1", "tp=1"), ("p=2", "rewritten since")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let known = d.known("f", &now);
        assert_eq!(known.keys().collect::<Vec<_>>(), vec!["a"]);
        assert!(d.known("other settings", &now).is_empty());
    }

    #[test]
    fn versions_older_than_the_window_are_left_out_and_deleted_keys_forgotten() {
        let mut r = Recorder::new(1_000);
        assert!(r.wants(Some(1), false) && !r.wants(None, false));
        r.record("old", Some(1_000), Some(1_000), false, 1, version_hash(b"o"), rel("p=1"));
        r.record("new", Some(9_000), Some(9_000), false, 2, version_hash(b"n"), rel("p=1"));
        r.record("gone", Some(9_000), Some(9_000), false, 3, version_hash(b"g"), rel("p=1"));
        assert!(!r.wants(Some(7_999), false) && r.wants(Some(8_000), false));
        // a document stamped ahead of the read's start moves the window only as far as that start
        let mut ahead = Recorder::new(1_000);
        ahead.read_started(5_000);
        ahead.record("early", Some(4_200), Some(4_200), false, 1, version_hash(b"e"), rel("p=1"));
        ahead.record("future", Some(60_000), Some(60_000), false, 2, version_hash(b"f"), rel("p=1"));
        assert!(ahead.wants(Some(4_000), false) && !ahead.wants(Some(3_999), false));
        // an incremental run's documents from before its query's bound, or without a timestamp, matched another
        // way: recorded and never pruned (a full load's are not)
        assert!(!ahead.wants(None, false) && !ahead.wants(Some(10), false));
        ahead.incremental(2_000);
        assert!(ahead.wants(None, false) && ahead.wants(Some(10), false) && !ahead.wants(Some(2_500), false));
        ahead.record("untimed", None, None, false, 3, version_hash(b"u"), rel("p=2"));
        ahead.record("old-stamped", Some(10), Some(10), false, 4, version_hash(b"s"), rel("p=2"));
        // a timestamp stored as text: recorded in a full load too
        let mut full = Recorder::new(1_000);
        full.record("iso", Some(9_000), Some(9_000), false, 1, version_hash(b"i"), rel("p=1"));
        assert!(!full.wants(Some(10), false) && full.wants(Some(10), true));
        full.record("text", Some(10), Some(10), true, 2, version_hash(b"t"), rel("p=1"));
        let d = full.finish("f".into(), 8_000, |_| Some("t".into())).unwrap();
        assert_eq!(d.len(), 2);
        let d = ahead.finish("f".into(), 4_000, |_| Some("t".into())).unwrap();
        let keys: Vec<&str> = d.partitions.iter().flat_map(|p| p.docs.iter().map(|(k, _)| k.as_str())).collect();
        assert_eq!(keys, vec!["early", "future", "old-stamped", "untimed"]);
        r.forget([&"gone".to_string()]);
        let d = r.finish("f".into(), 8_000, |_| Some("t".into())).unwrap();
        assert_eq!(d.partitions[0].docs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), vec!["new"]);
    }

    #[test]
    fn a_window_too_large_keeps_no_digest() {
        let mut r = Recorder::new(i64::MAX / 4);
        for i in 0..=MAX_ENTRIES as u64 {
            r.record(&format!("k{i}"), Some(1_000), Some(1_000), false, i, [0; 16], rel("p"));
        }
        assert!(!r.wants(Some(1_000), false));
        assert!(r.finish("f".into(), 0, |_| Some("t".into())).is_none());
    }
}
