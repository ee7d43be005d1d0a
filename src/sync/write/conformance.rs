//! Every write strategy gives the same file: the same existing file and the same documents through each
//! strategy the dispatcher can choose (the in-memory merge, the streamed merge of a file too large to hold,
//! that file out of key order, and for a new partition: rows held or spilled), on object_store's `InMemory`, and
//! a group of [`PartitionWriter::write_all`] on local disk,
//! with replacements, keys moved out or deleted, duplicates, rows the plan dropped, and a widened column. The
//! bytes must be identical, and the rows those a model of the rule ([`crate::transform::dedup`]) keeps.
use super::*;
use crate::config::collections::CollectionsFile;
use crate::schema::arrow as sarrow;
use crate::schema::LakeType;
use crate::sink::parquet;
use crate::sync::buffer::PartitionBuffers;
use arrow::array::{Array, StructArray};
use object_store::memory::InMemory;
use proptest::prelude::{any, ProptestConfig};
use proptest::proptest;
use proptest::strategy::Strategy as _;
use std::collections::BTreeMap;

const REL: &str = "p=a";
/// `v` of the existing file's rows (plus 1000 times the key) and of this run's documents (plus the read order).
const OLD_V: i64 = 1_000_000;
const FRESH_V: i64 = 2_000_000;

fn spec() -> CollectionSpec {
    let text = "database,collection,key,timestamp_column,partition_by\ndb,c,_id,ts,p\n";
    CollectionsFile::parse(std::path::Path::new("collections.csv"), text).expect("valid").entries[0].clone()
}

fn lake() -> Lake {
    Lake::from_store(Arc::new(InMemory::new()), Path::from("lake"), "memory://lake")
}

/// A run's environment: `budget` bytes of memory (a small one makes every existing file "too large to hold").
fn env(lake: Lake, budget: u64) -> WriteEnv {
    WriteEnv {
        lake,
        run_id: "20261201T000000000Z-0001".into(),
        memory: MemoryBudget::new(budget),
        encode_slots: Arc::new(tokio::sync::Semaphore::new(1)),
        progress: Arc::new(Progress::default()),
        row_groups: RowGroups { rows: 3, bytes: usize::MAX },
        partition_concurrency: 1,
    }
}

/// A document; `ts` and `v` keep as many digits as each other's kind (the lattice records integers' digits, so a
/// value with more would widen the column: `text` does that on purpose).
fn doc(key: u8, ts: i64, v: i64, text: bool) -> bson::RawDocumentBuf {
    let v = if text { bson::Bson::String(format!("t{v}")) } else { bson::Bson::Int64(v) };
    let d = bson::doc! { "_id": format!("k{key:02}"), "p": "a", "ts": 1000 + ts, "v": v };
    bson::RawDocumentBuf::try_from(&d).expect("encodable")
}

fn observe(ty: &mut LakeType, docs: &[bson::RawDocumentBuf]) {
    for d in docs {
        ty.observe(bson::RawBsonRef::Document(d)).expect("readable");
    }
}

/// A file of the collection's own type is read as the shape's Arrow schema, not decoded from the footer's copy
/// (nested documents, arrays of documents and of texts, dates, ids included: the reader accepts it as the
/// file's); a file whose footer names another type is not, and the footer's copy is the same schema.
#[tokio::test]
async fn a_file_of_the_collections_type_is_read_as_its_shape() {
    let d = bson::doc! {
        "_id": "k01", "p": "a", "ts": 1001_i64, "v": 1_i64, "score": 1.5, "oid": bson::oid::ObjectId::new(),
        "visit": { "at": bson::DateTime::from_millis(1_700_000_000_000), "ward": "w1", "codes": ["a", "b"] },
        "bills": [{ "amount": 12.5, "paid": true }, { "amount": 3, "paid": false, "note": null }],
    };
    let raw = bson::RawDocumentBuf::try_from(&d).expect("encodable");
    let mut ty = LakeType::Null;
    observe(&mut ty, std::slice::from_ref(&raw));
    let lake = lake();
    let (part, _dir) = buffered(&[(1, 1, raw)], false);
    let writer = writer(env(lake.clone(), 1 << 30), &ty, Default::default(), Default::default(), None);
    writer.write(REL.into(), part).await.expect("written");
    let bytes = lake.get_opt(&lake.partition_file("db", "c", REL)).await.expect("readable").expect("written");
    let shape = &writer.file;
    let file = parquet::WholeFile::open_as(bytes.clone(), "t", &shape.text, &shape.schema).expect("opens");
    assert!(Arc::ptr_eq(file.schema(), &shape.schema), "read as the shape's schema");
    assert_eq!(file.decode("t").expect("decodes")[0].num_rows(), 1);
    let other = parquet::WholeFile::open_as(bytes, "t", "another type", &shape.schema).expect("opens");
    assert!(!Arc::ptr_eq(other.schema(), &shape.schema), "another type's file: its footer's schema");
    assert_eq!(other.schema().fields(), shape.schema.fields(), "the footer's copy is the shape's schema");
}

/// This run's documents for the partition, buffered as pass 1 buffers them (`spill`: under a budget so small
/// that every push spills to disk).
fn buffered(docs: &[(u8, i64, bson::RawDocumentBuf)], spill: bool) -> (Part, Option<tempfile::TempDir>) {
    if docs.is_empty() {
        return (Part::default(), None);
    }
    // (a budget of a few bytes: every push spills)
    let budget = MemoryBudget::new(if spill { 8 } else { 1 << 30 });
    let mut buffers = PartitionBuffers::new(budget);
    for (seq, (key, ts, d)) in docs.iter().enumerate() {
        buffers
            .push(vec![Some("a".into())], d.as_bytes(), format!("k{key:02}"), Some(1000 + *ts), seq as u64)
            .expect("push");
    }
    let (mut parts, dir) = buffers.drain();
    assert!(spill == parts[0].1.rows_if_in_memory().is_none(), "spilled as asked");
    (parts.remove(0).1, dir)
}

/// What one strategy was given.
#[derive(Debug, Clone)]
struct Case {
    /// The existing file's rows: key -> timestamp (None: a new partition).
    old: Option<BTreeMap<u8, i64>>,
    /// This run's documents, in read order: (key, timestamp).
    fresh: Vec<(u8, i64)>,
    /// Keys whose rows leave the existing file (moved out, or deleted).
    removed: Vec<u8>,
    /// Read orders the plan dropped (their key's newest version is elsewhere).
    dropped: Vec<u64>,
    /// This run's documents hold `v` as text: the column widens from bigint to string.
    widen: bool,
    /// The collection gained a column since the file was written (in a document of another partition): the
    /// file's type is extended, not widened.
    extend: bool,
}

/// The file's bytes before the run: encoded by the write path itself; `reversed`: its rows in the opposite order
/// (a file written by other means).
async fn existing_file(case: &Case, old_ty: &LakeType, reversed: bool) -> Option<bytes::Bytes> {
    let old = case.old.as_ref()?;
    let docs: Vec<_> = old.iter().map(|(k, ts)| (*k, *ts, doc(*k, *ts, OLD_V + i64::from(*k) * 1000, false))).collect();
    let lake = lake();
    let (part, _dir) = buffered(&docs, false);
    let writer = writer(env(lake.clone(), 1 << 30), old_ty, Default::default(), Default::default(), None);
    writer.write(REL.into(), part).await.expect("existing file written");
    let bytes = lake.get_opt(&lake.partition_file("db", "c", REL)).await.expect("readable").expect("written");
    if !reversed {
        return Some(bytes);
    }
    let (batches, ty) = parquet::decode(bytes, "test").expect("decodes");
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("one batch");
    let order = arrow::array::UInt32Array::from_iter_values((0..all.num_rows() as u32).rev());
    let rev = arrow::compute::take_record_batch(&all, &order).expect("reversed");
    Some(parquet::encode(rev.schema(), &[rev], &ty, RowGroups::rows(3), "test").expect("encodes"))
}

fn writer(
    env: WriteEnv,
    file_ty: &LakeType,
    removals: HashMap<String, HashSet<String>>,
    dropped: crate::FastSet<u64>,
    spill_dir: Option<std::path::PathBuf>,
) -> PartitionWriter {
    let spec = spec();
    let file = Arc::new(FileShape::new(sarrow_file_type(file_ty), &spec.key));
    PartitionWriter {
        env,
        in_path: spec.path_fields(),
        spec,
        destination: Destination::Table { listed: None },
        removals: Arc::new(removals),
        dropped: Arc::new(dropped),
        file,
        hints: Vec::new(),
        lease_lost: Arc::new(AtomicBool::new(false)),
        spill_dir,
    }
}

fn sarrow_file_type(document: &LakeType) -> LakeType {
    crate::schema::file_type(document, &spec().path_fields())
}

/// How the dispatcher is steered to each strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Steer {
    /// The existing file held whole (in-memory merge), or a new partition's rows in memory.
    Held,
    /// The existing file too large to hold (streamed merge), or a new partition's rows spilled.
    Large,
    /// As `Large`, with the existing file's rows out of key order (sorted on disk first).
    LargeUnsorted,
    /// As `Held`, with the existing file out of key order.
    HeldUnsorted,
    /// As `Held`, through [`PartitionWriter::write_all`]'s groups (the table listed first), on a local disk lake
    /// (where a group reads its files, merges and places them on blocking threads).
    Grouped,
    /// As `Grouped`, with the existing file too large for a group (it leaves the group for the streamed merge).
    GroupedLarge,
}

/// Runs `case` through one strategy: the partition's file afterwards (None: no file), the outcome's rows, and
/// whether the strategy wrote the file (false: left as it was, the merge changing no row).
async fn run(case: &Case, steer: Steer) -> (Option<bytes::Bytes>, u64, bool) {
    let fresh_docs: Vec<_> = case
        .fresh
        .iter()
        .enumerate()
        .map(|(seq, (k, ts))| (*k, *ts, doc(*k, *ts, FRESH_V + seq as i64, case.widen)))
        .collect();
    let mut old_ty = LakeType::empty_struct();
    if let Some(old) = &case.old {
        let docs: Vec<_> = old.iter().map(|(k, ts)| doc(*k, *ts, OLD_V, false)).collect();
        observe(&mut old_ty, &docs);
    }
    let mut new_ty = old_ty.clone();
    observe(&mut new_ty, &fresh_docs.iter().map(|(_, _, d)| d.clone()).collect::<Vec<_>>());
    if case.extend {
        let elsewhere = bson::rawdoc! { "_id": "zz", "p": "b", "ts": 1000i64, "w": { "x": true } };
        observe(&mut new_ty, &[elsewhere]);
    }
    let reversed = matches!(steer, Steer::LargeUnsorted | Steer::HeldUnsorted);
    let before = existing_file(case, &old_ty, reversed).await;
    let local_dir = tempfile::tempdir().expect("a temporary folder");
    let grouped = matches!(steer, Steer::Grouped | Steer::GroupedLarge);
    let lake = match grouped {
        true => Lake::local_in(local_dir.path()),
        false => lake(),
    };
    let target = lake.partition_file("db", "c", REL);
    if let Some(b) = &before {
        lake.put(&target, b.clone().into()).await.expect("seeded");
    }
    let large = matches!(steer, Steer::Large | Steer::LargeUnsorted | Steer::GroupedLarge);
    // A new partition is steered by spilling its rows; an existing file by the budget's whole-file limit.
    let spill = large && case.old.is_none();
    let (part, dir) = buffered(&fresh_docs, spill);
    let budget = if large && case.old.is_some() { 16 << 10 } else { 1 << 30 };
    let env = env(lake.clone(), budget);
    if let Some(b) = &before {
        assert_eq!(large, b.len() as u64 > env.memory.whole_file_limit(), "steered to the strategy asked for");
    }
    let removals = if case.removed.is_empty() {
        HashMap::new()
    } else {
        HashMap::from([(REL.to_string(), case.removed.iter().map(|k| format!("k{k:02}")).collect())])
    };
    let dropped = case.dropped.iter().copied().collect();
    let w = writer(env, &new_ty, removals, dropped, dir.as_ref().map(|d| d.path().to_path_buf()));
    let outcome = match grouped {
        true => {
            let listed: HashSet<String> = before.iter().map(|_| REL.to_string()).collect();
            let w = PartitionWriter { destination: Destination::Table { listed: Some(Arc::new(listed)) }, ..w };
            assert!(w.groups(REL, &part), "steered to a group");
            let mut out = Arc::new(w).write_all(vec![(REL.into(), part)]).await.expect("written");
            out.pop().expect("one partition").1
        }
        false => w.write(REL.into(), part).await.expect("written"),
    };
    (lake.get_opt(&target).await.expect("readable"), outcome.rows, outcome.written)
}

/// The rows the rule keeps: (key, timestamp, whether the row is this run's).
fn model(case: &Case) -> BTreeMap<String, (i64, bool)> {
    let mut rows: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    for (k, ts) in case.old.iter().flatten() {
        if !case.removed.contains(k) {
            rows.insert(format!("k{k:02}"), (*ts, false));
        }
    }
    let mut best: BTreeMap<String, crate::transform::dedup::Version> = BTreeMap::new();
    for (seq, (k, ts)) in case.fresh.iter().enumerate() {
        if case.dropped.contains(&(seq as u64)) {
            continue;
        }
        let v = crate::transform::dedup::Version::read(Some(*ts), seq as u64);
        let key = format!("k{k:02}");
        if best.get(&key).is_none_or(|b| v > *b) {
            best.insert(key.clone(), v);
            rows.insert(key, (*ts, true));
        }
    }
    rows
}

/// The rows of a lake file, as the model gives them.
fn rows_of(bytes: &bytes::Bytes) -> BTreeMap<String, (i64, bool)> {
    let (batches, ty) = parquet::decode(bytes.clone(), "test").expect("decodes");
    let mut out = BTreeMap::new();
    for batch in batches {
        let s = StructArray::from(batch);
        for row in 0..s.len() {
            let Some(bson::Bson::Document(d)) = sarrow::to_bson(&s, row, &ty) else { panic!("a row is a document") };
            let key = d.get_str("_id").expect("key").to_string();
            let ts = d.get_i64("ts").expect("ts") - 1000;
            let fresh = match d.get("v") {
                Some(bson::Bson::Int64(v)) => *v >= FRESH_V,
                Some(bson::Bson::String(t)) => t.starts_with("t2"),
                other => panic!("v is {other:?}"),
            };
            assert!(out.insert(key, (ts, fresh)).is_none(), "one row per key");
        }
    }
    out
}

fn check(case: &Case) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let steers: &[Steer] = match case.old {
        Some(_) => {
            &[Steer::Held, Steer::Large, Steer::LargeUnsorted, Steer::HeldUnsorted, Steer::Grouped, Steer::GroupedLarge]
        }
        None => &[Steer::Held, Steer::Large, Steer::Grouped],
    };
    let results: Vec<_> = steers.iter().map(|s| (*s, rt.block_on(run(case, *s)))).collect();
    let want = model(case);
    // Every file written holds the same bytes; a strategy may instead leave a file whose rows did not change as
    // it was (a file out of key order then stays so), and its rows are checked all the same.
    let written: Vec<_> = results.iter().filter(|(_, (_, _, w))| *w).collect();
    for (steer, (bytes, rows, _)) in &results {
        assert_eq!(*rows, want.len() as u64, "{steer:?}: rows reported");
        match bytes {
            None => assert!(want.is_empty(), "{steer:?}: no file left, but the rule keeps {want:?}"),
            Some(b) => assert_eq!(rows_of(b), want, "{steer:?}: the rows the rule keeps"),
        }
    }
    if let Some((first, (first_bytes, _, _))) = written.first() {
        for (steer, (bytes, _, _)) in &written {
            assert!(bytes == first_bytes, "{steer:?} and {first:?} wrote different bytes for {case:?}");
        }
    }
    // Files in key order are left alone, or rewritten, by every strategy alike.
    let sorted: Vec<_> = results.iter().filter(|(s, _)| matches!(s, Steer::Held | Steer::Large)).collect();
    assert!(sorted.windows(2).all(|w| w[0].1 == w[1].1), "{case:?}: {sorted:?}");
}

fn case() -> impl proptest::strategy::Strategy<Value = Case> {
    let old = proptest::option::weighted(0.75, proptest::collection::btree_map(0u8..24, 0i64..50, 0..20));
    let fresh = proptest::collection::vec((0u8..24, 0i64..80), 0..24);
    (old, fresh, any::<bool>(), any::<u64>()).prop_map(|(old, fresh, widen, pick)| {
        // Keys that leave the file have no version here but dropped ones (their newest lives elsewhere).
        let removed: Vec<u8> = match &old {
            Some(o) => o.keys().copied().filter(|k| (pick >> (k % 64)) & 1 == 1).collect(),
            None => Vec::new(),
        };
        let dropped = fresh
            .iter()
            .enumerate()
            .filter(|(seq, (k, _))| removed.contains(k) || (pick.rotate_left(*seq as u32) & 0b111) == 0)
            .map(|(seq, _)| seq as u64)
            .collect();
        let old = old.filter(|o| !o.is_empty());
        Case { old, fresh, removed, dropped, widen: widen && pick % 3 == 0, extend: pick % 5 == 1 }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn every_strategy_writes_the_same_file(case in case()) {
        check(&case);
    }
}

#[test]
fn replacements_moves_duplicates_and_a_widening_agree() {
    let old: BTreeMap<u8, i64> = (0..12).map(|k| (k, i64::from(k))).collect();
    let fresh = vec![(3, 60), (3, 70), (3, 65), (20, 1), (5, 2), (5, 2), (9, 40)];
    for widen in [false, true] {
        let case = Case {
            old: Some(old.clone()),
            fresh: fresh.clone(),
            removed: vec![1, 7],
            dropped: vec![6],
            widen,
            extend: false,
        };
        check(&case);
        assert_eq!(model(&case).get("k03"), Some(&(70, true)), "the greatest timestamp wins");
        assert_eq!(model(&case).get("k09"), Some(&(9, false)), "a dropped row leaves the file's row");
    }
    // Every row leaves: no file.
    check(&Case {
        old: Some(old.clone()),
        fresh: vec![],
        removed: (0..12).collect(),
        dropped: vec![],
        widen: false,
        extend: false,
    });
    // A new partition.
    check(&Case { old: None, fresh: fresh.clone(), removed: vec![], dropped: vec![1], widen: false, extend: false });
}

/// A file written before the collection gained a column: re-reads of its rows leave it alone (every strategy),
/// a changed row rewrites it under the new type (every strategy, the same bytes).
#[test]
fn a_file_of_an_extended_type_is_left_alone_when_nothing_changed() {
    let old: BTreeMap<u8, i64> = (0..6).map(|k| (k, i64::from(k))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let reread =
        Case { old: Some(old.clone()), fresh: vec![], removed: vec![], dropped: vec![], widen: false, extend: true };
    let before = rt.block_on(existing_file(
        &reread,
        &{
            let mut t = LakeType::empty_struct();
            observe(&mut t, &old.iter().map(|(k, ts)| doc(*k, *ts, OLD_V, false)).collect::<Vec<_>>());
            t
        },
        false,
    ));
    for steer in [Steer::Held, Steer::Large] {
        let (after, _, written) = rt.block_on(run(&reread, steer));
        assert!(!written, "{steer:?}");
        assert_eq!(after, before, "{steer:?}: an unchanged file of an extended type is left as it was");
    }
    check(&reread);
    check(&Case { fresh: vec![(2, 30)], ..reread });
}
