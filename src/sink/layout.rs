//! The lake's layout: every path mongolake reads or writes in the lake, defined here and nowhere else.
//!
//! ```text
//! <lake>/<db>/<coll>/<k1>=<v1>/.../part-0.parquet           one file per partition (the Athena table)
//! <lake>/_mongolake/state/<db>/<coll>.csv                   watermarks, one row per run
//! <lake>/_mongolake/schema/<db>/<coll>.json                 the persisted lake schema
//! <lake>/_mongolake/schema/<db>/<coll>.athena.sql           its Athena DDL
//! <lake>/_mongolake/schema/<db>/<coll>.glue.json            its Glue TableInput
//! <lake>/_mongolake/schema/<db>/<coll>.views.sql            its BI views (Athena SQL)
//! <lake>/_mongolake/catalog/<db>/<coll>.json                what Glue mode last applied to the Data Catalog
//! <lake>/_mongolake/index/<db>/<coll>/manifest.json         key index: the segments, by first key
//! <lake>/_mongolake/index/<db>/<coll>/<prefix>-<n>.parquet  key index segments (key -> partition)
//! <lake>/_mongolake/index/<db>/<coll>.parquet               key index of versions before segments (read)
//! <lake>/_mongolake/rejects/<db>/<coll>/<run-id>.jsonl      what a run could not store
//! <lake>/_mongolake/layout/<db>/<coll>.json                 the table's layout (partition_by, time zone, key,
//!                                                           timestamp column) and a pending relayout
//! <lake>/_mongolake/relayout/<db>/<coll>/<id>/parts/<k1>=<v1>/.../part-0.parquet
//!                                                           `mongolake relayout`: the new layout's files
//!                                                           before they move into the table
//! <lake>/_mongolake/leases/<db>/<coll>.json                 which run holds the collection (object stores)
//! <lake>/_mongolake/leases/<db>/<coll>.lock                 the same on local disk (a file lock)
//! <lake>/_mongolake/runs/<run-id>.json                      run reports
//! <lake>/_mongolake/staging/<run-id>/<db>/<coll>/<k1>=<v1>+<k2>=<v2>.parquet
//!                                                           a partition's new file before it moves into place
//! <lake>/_mongolake/check/probe-<id>.txt                    `mongolake check`'s write probe (deleted)
//! <lake>/_mongolake/shards/plans/<db>/<coll>.json           `--shard`: a first load shared in ranges
//! <lake>/_mongolake/shards/data/<db>/<coll>/<plan-id>/final.json        the joined type
//! <lake>/_mongolake/shards/data/<db>/<coll>/<plan-id>/range-<k>/        a range a helper read (`owner/`: the
//!     read.json, done.json                                              owner's own ranges)
//!     parts/<k1>=<v1>/.../part-0.parquet                                its staged partition files
//!     keys/keys-<n>.parquet                                             its keys, sorted, as index segments
//! ```
//! A range's claim is leased as if it were a collection named `<coll>.range-<plan-id>-<k>` (so its lease is
//! `leases/<db>/<coll>.range-<plan-id>-<k>.json`, or `.lock` on local disk).
//!
//! These names are a public contract: existing lakes must still be read, and readers (Athena, operators'
//! scripts) rely on them. Partition paths (`k1=v1/k2=v2`) arrive already escaped (see
//! [`crate::transform::partition`]): values escape `=` and `/`, so the flat staging name stays unique.
use object_store::path::Path;

/// File name of every partition's single data file.
pub const DATA_FILE: &str = "part-0.parquet";
/// The key index's manifest, in the index folder beside its segments.
pub const INDEX_MANIFEST: &str = "manifest.json";
/// Where every run's staging files live, relative to the lake root.
pub const STAGING_DIR: &str = "_mongolake/staging";
/// Where run reports live, relative to the lake root.
pub const RUNS_DIR: &str = "_mongolake/runs";
/// Where the shared loads' plans live, relative to the lake root.
pub const SHARD_PLANS_DIR: &str = "_mongolake/shards/plans";

/// The paths of one lake: the layout above under the lake's root (a bucket prefix, or none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    root: Path,
}

impl Layout {
    pub fn new(root: Path) -> Layout {
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path under the lake root, from `/`-separated relative text (already escaped).
    pub fn path(&self, relative: &str) -> Path {
        let root = self.root.as_ref();
        let joined = if root.is_empty() { relative.to_string() } else { format!("{root}/{relative}") };
        Path::parse(joined.trim_matches('/')).unwrap_or_else(|_| Path::from(joined.as_str()))
    }

    /// A collection's table: its partition folders.
    pub fn table(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("{db}/{coll}"))
    }
    /// A partition's data file; `partition` is `k1=v1/k2=v2`, relative to the table.
    pub fn partition_file(&self, db: &str, coll: &str, partition: &str) -> Path {
        self.path(&format!("{db}/{coll}/{partition}/{DATA_FILE}"))
    }
    /// Watermarks, one row per run.
    pub fn state(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/state/{db}/{coll}.csv"))
    }
    /// The folder of every collection's schema and table definitions.
    pub fn schema_dir(&self) -> Path {
        self.path("_mongolake/schema")
    }
    /// The persisted lake schema.
    pub fn schema(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/schema/{db}/{coll}.json"))
    }
    /// The Athena DDL, next to the schema.
    pub fn athena_ddl(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/schema/{db}/{coll}.athena.sql"))
    }
    /// The Glue `TableInput`, next to the schema.
    pub fn glue_table(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/schema/{db}/{coll}.glue.json"))
    }
    /// The BI views over the table (Athena SQL), next to the schema.
    pub fn views_sql(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/schema/{db}/{coll}.views.sql"))
    }
    /// What Glue mode last applied to the Data Catalog for this collection (table, partitions, views).
    pub fn glue_applied(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/catalog/{db}/{coll}.json"))
    }
    /// The key index as versions before segments kept it, one file.
    pub fn legacy_index(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/index/{db}/{coll}.parquet"))
    }
    /// The key index's folder: its manifest and segment files.
    pub fn index_dir(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/index/{db}/{coll}"))
    }
    pub fn index_manifest(&self, db: &str, coll: &str) -> Path {
        self.index_dir(db, coll).join(INDEX_MANIFEST)
    }
    /// A key index segment, `file` as [`segment_file_name`] names it.
    pub fn index_segment(&self, db: &str, coll: &str, file: &str) -> Path {
        self.index_dir(db, coll).join(file)
    }
    pub fn rejects_dir(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/rejects/{db}/{coll}"))
    }
    pub fn rejects_file(&self, db: &str, coll: &str, run_id: &str) -> Path {
        self.path(&format!("_mongolake/rejects/{db}/{coll}/{run_id}.jsonl"))
    }
    /// The layout the table's files are in, and a relayout in progress ([`crate::state::layout`]).
    pub fn layout_record(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/layout/{db}/{coll}.json"))
    }
    /// Everything `mongolake relayout` stages for a collection.
    pub fn relayout_root(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/relayout/{db}/{coll}"))
    }
    /// One relayout's folder: its partition files go to `parts/<partition>/part-0.parquet` under it (as a
    /// range's do, [`range_staged_file`]).
    pub fn relayout_dir(&self, db: &str, coll: &str, id: &str) -> Path {
        self.relayout_root(db, coll).join(id)
    }
    /// A collection's lease on an object store (a range claim's too, `coll` being its [`claim_name`]).
    pub fn lease(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/leases/{db}/{coll}.json"))
    }
    pub fn runs_dir(&self) -> Path {
        self.path(RUNS_DIR)
    }
    pub fn run_report(&self, run_id: &str) -> Path {
        self.path(&format!("{RUNS_DIR}/{run_id}.json"))
    }
    pub fn staging_dir(&self) -> Path {
        self.path(STAGING_DIR)
    }
    /// Where a partition's new file is written before it moves into place: one flat folder per run and
    /// collection, `k1=v1/k2=v2` becoming `k1=v1+k2=v2.parquet` (the unpartitioned table's file is
    /// `part-0.parquet`).
    pub fn staging_file(&self, run_id: &str, db: &str, coll: &str, partition: &str) -> Path {
        let name = if partition.is_empty() {
            DATA_FILE.to_string()
        } else {
            format!("{}.parquet", partition.replace('/', "+"))
        };
        self.path(&format!("{STAGING_DIR}/{run_id}/{db}/{coll}/{name}"))
    }
    /// `mongolake check`'s probe object.
    pub fn check_probe(&self, id: &str) -> Path {
        self.path(&format!("_mongolake/check/probe-{id}.txt"))
    }
    pub fn shard_plans_dir(&self) -> Path {
        self.path(SHARD_PLANS_DIR)
    }
    pub fn shard_plan(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("{SHARD_PLANS_DIR}/{db}/{coll}.json"))
    }
    /// Everything the workers stage for one collection's shared load.
    pub fn shard_data_dir(&self, db: &str, coll: &str) -> Path {
        self.path(&format!("_mongolake/shards/data/{db}/{coll}"))
    }
    pub fn shard_final(&self, db: &str, coll: &str, plan_id: &str) -> Path {
        self.shard_data_dir(db, coll).join(plan_id).join("final.json")
    }
    /// A range's folder; `k = None` is the owner's own ranges.
    pub fn shard_range_dir(&self, db: &str, coll: &str, plan_id: &str, k: Option<usize>) -> Path {
        let name = k.map_or_else(|| "owner".to_string(), |k| format!("range-{k}"));
        self.shard_data_dir(db, coll).join(plan_id).join(name.as_str())
    }
}

/// A key index segment's file name: `<prefix>-<n>.parquet` (the prefix is a run id, `rebuild-<time>`, or `keys`).
pub fn segment_file_name(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n:05}.parquet")
}

/// A range's `read.json`, in its folder ([`Layout::shard_range_dir`]).
pub fn range_read(range_dir: &Path) -> Path {
    range_dir.clone().join("read.json")
}
/// A range's `done.json`.
pub fn range_done(range_dir: &Path) -> Path {
    range_dir.clone().join("done.json")
}
/// The folder of a range's keys (index segment files).
pub fn range_keys_dir(range_dir: &Path) -> Path {
    range_dir.clone().join("keys")
}
/// A range's key segment file.
pub fn range_keys_file(range_dir: &Path, file: &str) -> Path {
    range_keys_dir(range_dir).join(file)
}
/// Where a range's partition file is staged: `parts/<partition>/part-0.parquet` under its folder.
pub fn range_staged_file(range_dir: &Path, partition: &str) -> Path {
    let text = format!("{}/parts/{}/{}", range_dir.as_ref(), partition.trim_matches('/'), DATA_FILE);
    Path::parse(text.replace("//", "/")).unwrap_or_else(|_| Path::from(text.as_str()))
}

/// The name a range's claim is leased under (as if a collection: `<coll>.range-<plan>-<k>`).
pub fn claim_name(coll: &str, plan_id: &str, k: usize) -> String {
    format!("{coll}.range-{plan_id}-{k}")
}

/// On local disk a lease is a locked file: the folder of a database's lock files, relative to the lake's
/// directory.
pub fn local_lock_dir(db: &str) -> String {
    format!("_mongolake/leases/{db}")
}
/// A lock file's name in [`local_lock_dir`] (`coll` a collection or a [`claim_name`]).
pub fn local_lock_file(coll: &str) -> String {
    format!("{coll}.lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path of the lake, as text. A failure here is a change to the lake's public layout: existing lakes
    /// would no longer be read.
    #[test]
    fn every_path_of_the_lake() {
        for (root, pre) in [("", ""), ("bucket-prefix/lake", "bucket-prefix/lake/")] {
            let l = Layout::new(Path::from(root));
            let p = |path: Path| path.as_ref().strip_prefix(pre).expect("under the root").to_string();
            assert_eq!(l.root().as_ref(), root);
            assert_eq!(p(l.path("a/b")), "a/b");
            assert_eq!(p(l.table("hims", "visits")), "hims/visits");
            assert_eq!(
                p(l.partition_file("hims", "visits", "facility_id=BLR01/date=2025-07-02")),
                "hims/visits/facility_id=BLR01/date=2025-07-02/part-0.parquet"
            );
            assert_eq!(p(l.partition_file("hims", "visits", "")), "hims/visits/part-0.parquet");
            assert_eq!(p(l.state("hims", "visits")), "_mongolake/state/hims/visits.csv");
            assert_eq!(p(l.schema("hims", "visits")), "_mongolake/schema/hims/visits.json");
            assert_eq!(p(l.athena_ddl("hims", "visits")), "_mongolake/schema/hims/visits.athena.sql");
            assert_eq!(p(l.glue_table("hims", "visits")), "_mongolake/schema/hims/visits.glue.json");
            assert_eq!(p(l.views_sql("hims", "visits")), "_mongolake/schema/hims/visits.views.sql");
            assert_eq!(p(l.glue_applied("hims", "visits")), "_mongolake/catalog/hims/visits.json");
            assert_eq!(p(l.legacy_index("hims", "visits")), "_mongolake/index/hims/visits.parquet");
            assert_eq!(p(l.index_dir("hims", "visits")), "_mongolake/index/hims/visits");
            assert_eq!(p(l.index_manifest("hims", "visits")), "_mongolake/index/hims/visits/manifest.json");
            assert_eq!(
                p(l.index_segment("hims", "visits", &segment_file_name("20250701T020000123Z-3f2a", 3))),
                "_mongolake/index/hims/visits/20250701T020000123Z-3f2a-00003.parquet"
            );
            assert_eq!(p(l.rejects_dir("hims", "visits")), "_mongolake/rejects/hims/visits");
            assert_eq!(p(l.rejects_file("hims", "visits", "run1")), "_mongolake/rejects/hims/visits/run1.jsonl");
            assert_eq!(p(l.lease("hims", "visits")), "_mongolake/leases/hims/visits.json");
            assert_eq!(p(l.layout_record("hims", "visits")), "_mongolake/layout/hims/visits.json");
            assert_eq!(p(l.relayout_root("hims", "visits")), "_mongolake/relayout/hims/visits");
            let relayout = l.relayout_dir("hims", "visits", "r1");
            assert_eq!(p(relayout.clone()), "_mongolake/relayout/hims/visits/r1");
            assert_eq!(
                p(range_staged_file(&relayout, "date=2025-07-02")),
                "_mongolake/relayout/hims/visits/r1/parts/date=2025-07-02/part-0.parquet"
            );
            assert_eq!(p(l.runs_dir()), "_mongolake/runs");
            assert_eq!(p(l.run_report("run1")), "_mongolake/runs/run1.json");
            assert_eq!(p(l.staging_dir()), "_mongolake/staging");
            assert_eq!(
                p(l.staging_file("run1", "hims", "visits", "facility_id=BLR01/date=2025-07-02")),
                "_mongolake/staging/run1/hims/visits/facility_id=BLR01+date=2025-07-02.parquet"
            );
            assert_eq!(
                p(l.staging_file("run1", "hims", "visits", "")),
                "_mongolake/staging/run1/hims/visits/part-0.parquet"
            );
            assert_eq!(p(l.check_probe("run1")), "_mongolake/check/probe-run1.txt");
            assert_eq!(p(l.shard_plans_dir()), "_mongolake/shards/plans");
            assert_eq!(p(l.shard_plan("hims", "visits")), "_mongolake/shards/plans/hims/visits.json");
            assert_eq!(p(l.shard_data_dir("hims", "visits")), "_mongolake/shards/data/hims/visits");
            assert_eq!(p(l.shard_final("hims", "visits", "p1")), "_mongolake/shards/data/hims/visits/p1/final.json");
            let range = l.shard_range_dir("hims", "visits", "p1", Some(2));
            assert_eq!(p(range.clone()), "_mongolake/shards/data/hims/visits/p1/range-2");
            assert_eq!(
                p(l.shard_range_dir("hims", "visits", "p1", None)),
                "_mongolake/shards/data/hims/visits/p1/owner"
            );
            assert_eq!(p(range_read(&range)), "_mongolake/shards/data/hims/visits/p1/range-2/read.json");
            assert_eq!(p(range_done(&range)), "_mongolake/shards/data/hims/visits/p1/range-2/done.json");
            assert_eq!(p(range_keys_dir(&range)), "_mongolake/shards/data/hims/visits/p1/range-2/keys");
            assert_eq!(
                p(range_keys_file(&range, &segment_file_name("keys", 0))),
                "_mongolake/shards/data/hims/visits/p1/range-2/keys/keys-00000.parquet"
            );
            assert_eq!(
                p(range_staged_file(&range, "facility_id=BLR01/date=2025-07-02")),
                "_mongolake/shards/data/hims/visits/p1/range-2/parts/facility_id=BLR01/date=2025-07-02/part-0.parquet"
            );
            assert_eq!(
                p(range_staged_file(&range, "")),
                "_mongolake/shards/data/hims/visits/p1/range-2/parts/part-0.parquet"
            );
            assert_eq!(
                p(l.lease("hims", &claim_name("visits", "p1", 2))),
                "_mongolake/leases/hims/visits.range-p1-2.json"
            );
        }
        assert_eq!(claim_name("visits", "p1", 2), "visits.range-p1-2");
        assert_eq!(local_lock_dir("hims"), "_mongolake/leases/hims");
        assert_eq!(local_lock_file("visits"), "visits.lock");
        assert_eq!((DATA_FILE, INDEX_MANIFEST), ("part-0.parquet", "manifest.json"));
        assert_eq!(
            (STAGING_DIR, RUNS_DIR, SHARD_PLANS_DIR),
            ("_mongolake/staging", "_mongolake/runs", "_mongolake/shards/plans")
        );
    }
}
