//! # mongolake
//!
//! Keeps a Hive-partitioned Parquet lake (S3 or local disk) in step with MongoDB collections, one night at a time.
//!
//! A run, per collection listed in `collections.csv`:
//!
//! ```text
//!  state/ (watermark) ──► source/ (raw BSON batches, incremental filter)
//!                              │  pass 1: per document
//!                              ▼
//!           schema/ (observe type into the lattice)   transform/ (key, timestamp, partition values)
//!                              │  raw bytes buffered per partition (spilled to disk past the budget)
//!                              ▼  pass 2: per touched partition
//!       sink/ read existing file ─► dedup (latest version per key) ─► Arrow ─► one Parquet file, atomic replace
//!                              │
//!                              ▼
//!           state/ append watermark (only after every partition is written)  ─► report/
//! ```
//!
//! Modules are split by responsibility; see each module's docs for the invariants it keeps.
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod fault;
pub mod generator;
pub mod mask;
pub mod ops;
pub mod progress;
pub mod report;
pub mod schema;
pub mod sink;
pub mod source;
pub mod state;
pub mod sync;
pub mod transform;

pub use error::{Error, Result};

/// A hash map for the per-document maps of a run (keys, partitions): foldhash instead of SipHash, whose
/// denial-of-service resistance buys nothing for keys that come from our own database and cost about 5% of a
/// full load in `perf`.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`FastMap`].
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
