//! One very large first load shared by the N workers of `sync --shard K/N`, in `_id` ranges.
//!
//! Collections are dealt to workers by name (see [`crate::config::Shard`]), which cannot help when one
//! collection is most of the night's work. So when the owner of a collection (the worker it is dealt to) finds it
//! is a first load of at least `[sync] shard_ranges_min_docs` documents, it splits it into N `_id` ranges
//! (`$bucketAuto`, as [`super::read::ReadPass::id_ranges`]) and publishes a plan in the lake. Every worker that is
//! done with its own collections helps: it claims a range, reads it and, once the owner has fixed the schema,
//! encodes it. The owner reads whatever range nobody claimed, then joins the pieces:
//!
//! ```text
//!  owner                                         helper (any worker, ranges claimed with a lease each)
//!  plan.json (ranges; renewed while alive)  ──►  claim range k, read it (pass 1)
//!  claim and read unclaimed ranges               range-k/read.json: its type, documents, rejects
//!  wait for every range's read.json         ◄──
//!  final.json: the joined type              ──►  plan, encode to range-k/parts/<partition>/part-0.parquet,
//!  encode its own ranges the same way             its keys as sorted segment files; range-k/done.json
//!  wait for every done.json                 ◄──
//!  per partition: join the ranges' files (row groups copied, not re-encoded) and move it into place;
//!  key index: the ranges' sorted keys merged; then schema and watermark as any run (the commit point)
//! ```
//!
//! Nothing is lost or doubled: `_id` ranges are disjoint and cover the collection, each range is used from
//! exactly one reader (the owner takes the output of a range only from the worker whose `read.json` it waited
//! for, or reads the range itself), and nothing reaches the table before the owner's join. A helper that dies
//! before `read.json` loses its claim (its lease) and the owner reads the range itself; one that dies after it
//! fails the owner's attempt with a transient error, which retries the collection with a new plan. Helpers give
//! up on a plan whose owner stopped renewing it. Everything lives under `_mongolake/shards/` and is deleted by
//! the owner when done.
pub mod helper;
pub mod owner;

use super::context::RunContext;
use super::rejects::Reject;
use super::write::{Destination, FileShape, PartitionWriter};
use crate::config::CollectionSpec;
use crate::schema::{Field, LakeType};
use crate::sink::Lake;
use crate::state::index::store::{SegmentFile, SegmentWriter};
use crate::{Error, Result};

use object_store::path::Path;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// The plan format this version writes and reads.
const FORMAT: u32 = 1;

/// `plan.json`: a collection's first load split into ranges, published by its owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangePlan {
    pub format: u32,
    pub plan_id: String,
    pub owner_run_id: String,
    pub database: String,
    pub collection: String,
    /// The collections.csv row and `[sync]` settings that shape the files: a worker whose configuration
    /// differs does not help.
    pub fingerprint: String,
    /// `_id` filters, as canonical Extended JSON (type-exact).
    pub ranges: Vec<serde_json::Value>,
    /// Documents in the collection (estimate), for memory shares and progress.
    pub docs_estimate: u64,
    /// Epoch milliseconds; the owner renews it. Past it, the owner is gone and helpers drop the plan.
    pub expires_at: i64,
}

impl RangePlan {
    pub fn filter(&self, k: usize) -> Result<bson::Document> {
        let value = self.ranges.get(k).cloned().unwrap_or_default();
        match bson::Bson::try_from(value) {
            Ok(bson::Bson::Document(d)) => Ok(d),
            _ => Err(Error::encode(format!("range plan {}", self.plan_id), format!("range {k} is not a filter"))),
        }
    }

    pub fn alive(&self) -> bool {
        self.expires_at > chrono::Utc::now().timestamp_millis()
    }
}

/// `range-k/read.json`: what reading a range found (pass 1), for the owner to join.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RangeRead {
    pub run_id: String,
    pub fields: Vec<Field>,
    pub docs: u64,
    /// Per partition key, the documents that had a value.
    pub present: Vec<u64>,
    pub max_ts: Option<i64>,
    /// Documents that could not be read (the rejects area keeps them).
    pub rejected: Vec<Reject>,
    pub masked: crate::mask::MaskCounts,
    pub spills: u64,
}

/// `final.json`: the collection's type joined over every range, which every range is encoded with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalType {
    pub document: LakeType,
}

/// `range-k/done.json` (and the owner's own ranges): a range encoded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RangeDone {
    pub run_id: String,
    /// The range's partition files under `parts/`.
    pub partitions: Vec<StagedPartition>,
    /// The range's keys, sorted, as index segment files under `keys/`.
    pub keys: Vec<SegmentFile>,
    /// Older copies of a key dropped (within the range's partitions, and across them).
    pub dups: u64,
    /// Values their columns could not hold.
    pub rejects: Vec<Reject>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedPartition {
    pub rel: String,
    pub rows: u64,
}

/// `_mongolake/shards/plans/<db>/<coll>.json`: few objects, so helpers list them cheaply.
pub fn plans_dir(lake: &Lake) -> Path {
    lake.layout().shard_plans_dir()
}
pub fn plan_path(lake: &Lake, db: &str, coll: &str) -> Path {
    lake.layout().shard_plan(db, coll)
}
/// Everything the workers stage for one collection (deleted by the owner).
pub fn data_dir(lake: &Lake, db: &str, coll: &str) -> Path {
    lake.layout().shard_data_dir(db, coll)
}
pub fn final_path(lake: &Lake, plan: &RangePlan) -> Path {
    lake.layout().shard_final(&plan.database, &plan.collection, &plan.plan_id)
}
/// A range's folder; `k = None` is the owner's own ranges.
pub fn range_dir(lake: &Lake, plan: &RangePlan, k: Option<usize>) -> Path {
    lake.layout().shard_range_dir(&plan.database, &plan.collection, &plan.plan_id, k)
}
/// The name a range's claim is leased under (as if a collection: `<coll>.range-<plan>-<k>`).
pub fn claim_name(plan: &RangePlan, k: usize) -> String {
    crate::sink::layout::claim_name(&plan.collection, &plan.plan_id, k)
}

/// What must agree between the owner and a helper for their files to join: the collections.csv row (not its
/// line number) and the `[sync]` settings that shape rows and files.
pub fn fingerprint(spec: &CollectionSpec, ctx: &RunContext) -> String {
    let text = format!(
        "{:?}|{:?}|{}|{:?}|{}|{:?}|{}",
        spec.database,
        spec.collection,
        spec.timestamp_column,
        spec.partition,
        spec.key,
        spec.mask,
        ctx.sync.row_group_rows,
    ) + &format!("|{:?}|{}", ctx.sync.timezone, ctx.sync.row_group_bytes);
    format!("{:016x}", crate::config::fnv1a(&text))
}

pub async fn get_json<T: serde::de::DeserializeOwned>(lake: &Lake, path: &Path) -> Result<Option<T>> {
    match lake.get_opt(path).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::encode(format!("reading {}", lake.display(path)), e)),
    }
}

pub async fn put_json<T: Serialize>(lake: &Lake, path: &Path, value: &T) -> Result<()> {
    lake.put(path, serde_json::to_vec_pretty(value).expect("serialisable").into()).await
}

/// What pass 2 of a worker's ranges needs from its read pass.
pub struct RangeRows {
    pub buffers: super::buffer::PartitionBuffers,
    pub hints: Vec<String>,
    pub partitioner: crate::transform::partition::Partitioner,
}

impl From<super::read::ReadPass> for RangeRows {
    fn from(pass: super::read::ReadPass) -> Self {
        RangeRows { buffers: pass.buffers, hints: pass.hints, partitioner: pass.partitioner }
    }
}

/// Pass 2 of one worker's ranges: plans its rows (dedup across its partitions), encodes each partition into
/// `dir/parts/`, and writes its keys, sorted, into `dir/keys/`. The caller publishes the result.
pub async fn encode_ranges(
    ctx: &Arc<RunContext>,
    spec: &CollectionSpec,
    rows: RangeRows,
    document: &LakeType,
    dir: &Path,
    lease_lost: Arc<std::sync::atomic::AtomicBool>,
) -> Result<RangeDone> {
    let lake = &ctx.lake;
    let in_path = spec.path_fields();
    let file = Arc::new(FileShape::new(crate::schema::file_type(document, &in_path), &spec.key));
    let RangeRows { mut buffers, hints, partitioner } = rows;
    let (parts, spill_guard) = buffers.drain();
    let rels: Vec<Arc<str>> = parts.iter().map(|(v, _)| Arc::from(partitioner.relative_path(v))).collect();
    let mut index = crate::state::index::KeyIndex::default();
    let keys_dir = crate::sink::layout::range_keys_dir(dir);
    let writer = SegmentWriter::in_dir(lake, keys_dir, "keys", ctx.sync.index_segment_keys);
    let target = super::plan::IndexTarget::Stream(Box::new(writer), &mut index);
    let sort_dir = spill_guard.as_ref().map(|d| d.path().to_path_buf());
    let plan =
        super::plan::plan(&parts, &rels, &HashSet::new(), target, sort_dir.as_deref(), ctx.memory.sort_run_entries())
            .await?;
    let writer = Arc::new(PartitionWriter {
        env: ctx.write_env(),
        spec: spec.clone(),
        destination: Destination::Range(dir.clone()),
        removals: Arc::new(plan.removals),
        dropped: Arc::new(plan.dropped),
        file,
        hints,
        in_path,
        lease_lost,
        spill_dir: sort_dir.clone(),
    });
    let parts = parts.into_iter().map(|(values, part)| (partitioner.relative_path(&values), part)).collect();
    let results = writer.write_all(parts).await?;
    drop(spill_guard);
    let mut done = RangeDone { run_id: ctx.run_id.clone(), keys: index.segment_files(), ..Default::default() };
    done.dups = plan.cross_dups;
    for (rel, r) in results {
        done.dups += r.dups;
        done.rejects.extend(r.rejects);
        if r.rows > 0 {
            done.partitions.push(StagedPartition { rel, rows: r.rows });
        }
    }
    done.partitions.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(done)
}

/// Where a range's partition file was staged.
pub fn staged_file(dir: &Path, rel: &str) -> Path {
    crate::sink::layout::range_staged_file(dir, rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ranges: Vec<bson::Document>) -> RangePlan {
        RangePlan {
            format: FORMAT,
            plan_id: "p".into(),
            owner_run_id: "r".into(),
            database: "db".into(),
            collection: "c".into(),
            fingerprint: String::new(),
            ranges: ranges.into_iter().map(|f| bson::Bson::Document(f).into_canonical_extjson()).collect(),
            docs_estimate: 0,
            expires_at: 0,
        }
    }

    #[test]
    fn range_filters_survive_the_plan_file_with_their_bson_types() {
        let oid = bson::oid::ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let filters = vec![
            bson::doc! { "_id": { "$not": { "$gte": oid } } },
            bson::doc! { "_id": { "$gte": oid, "$lt": 5_i64 } },
            bson::doc! { "_id": { "$gte": "text", "$lt": 2.5 } },
        ];
        let text = serde_json::to_string(&plan(filters.clone())).unwrap();
        let back: RangePlan = serde_json::from_str(&text).unwrap();
        for (k, f) in filters.iter().enumerate() {
            assert_eq!(&back.filter(k).unwrap(), f, "range {k}");
        }
        assert!(back.filter(9).is_err());
        assert!(!back.alive(), "a plan past expires_at is dead");
    }

    #[test]
    fn staged_files_sit_under_the_range_folder_by_partition() {
        let dir = Path::from("_mongolake/shards/data/db/c/p/range-1");
        assert_eq!(
            staged_file(&dir, "facility_id=BLR01/date=2025-07-02").as_ref(),
            "_mongolake/shards/data/db/c/p/range-1/parts/facility_id=BLR01/date=2025-07-02/part-0.parquet"
        );
        assert_eq!(staged_file(&dir, "").as_ref(), "_mongolake/shards/data/db/c/p/range-1/parts/part-0.parquet");
    }
}
