//! Configuration: `collections.csv` and `environments/<name>.toml`, parsed and validated into [`Config`] before
//! anything touches MongoDB or the lake.
//!
//! Both files are a public contract (schedulers and operators' scripts depend on them): keys may be added, never
//! silently changed. Invalid input is reported with the file, line and the fix; a bad *row* of
//! `collections.csv` only skips that collection (it is reported as failed), a bad *environment* stops the run.
pub mod collections;
pub mod environment;
pub mod masking;
mod raw;
pub mod secret;
pub mod timezone;

pub use collections::{CollectionSpec, CollectionsFile, PartitionKey, PartitionSpec};
pub use environment::{
    CatalogConfig, EmailConfig, Environment, GlueConfig, LakeConfig, MaskingConfig, MongoConfig, ReportConfig,
    SyncConfig,
};
pub use secret::{SecretRef, ValueOrRef};

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub config_dir: PathBuf,
    pub env_name: String,
    pub environment: Environment,
    pub collections: CollectionsFile,
}

impl Config {
    /// Loads `<dir>/environments/<env>.toml` and `<dir>/collections.csv`.
    pub fn load(config_dir: &Path, env_name: &str) -> Result<Config> {
        let environment = Environment::load(config_dir, env_name)?;
        let csv_path = config_dir.join("collections.csv");
        let collections = CollectionsFile::load(&csv_path)?;
        Ok(Config { config_dir: config_dir.to_path_buf(), env_name: env_name.to_string(), environment, collections })
    }

    /// Keeps only the collections named in `only` (`db.coll`), erroring on names that are not listed.
    pub fn restrict_to(&mut self, only: &[String]) -> Result<()> {
        if only.is_empty() {
            return Ok(());
        }
        let known: Vec<String> = self.collections.entries.iter().map(|e| e.name()).collect();
        for name in only {
            if !known.iter().any(|k| k == name) {
                return Err(Error::config(
                    &self.collections.path,
                    None,
                    format!("--only names `{name}`, which is not listed; listed collections: {}", known.join(", ")),
                ));
            }
        }
        self.collections.entries.retain(|e| only.iter().any(|o| *o == e.name()));
        Ok(())
    }

    /// Keeps this worker's share of the collections for `--shard K/N` (K in 0..N, as Kubernetes' Indexed Job
    /// `JOB_COMPLETION_INDEX`): a collection belongs to worker `fnv1a("db.coll") mod N`. Deterministic across
    /// runs and machines, independent of the order in collections.csv; rows that failed to parse stay with
    /// worker 0 so their errors are reported exactly once. Leases still keep two workers off one collection.
    pub fn restrict_to_shard(&mut self, shard: Shard) {
        self.collections.entries.retain(|e| shard.owns(&e.name()));
        if shard.index != 0 {
            self.collections.errors.clear();
        }
    }
}

/// `--shard K/N`: this worker is K of N (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(text: &str) -> std::result::Result<Shard, String> {
        let (k, n) = text.split_once('/').ok_or_else(|| format!("--shard `{text}`: write K/N, e.g. 0/4"))?;
        let (index, count): (u32, u32) = match (k.trim().parse(), n.trim().parse()) {
            (Ok(k), Ok(n)) if n >= 1 && k < n => (k, n),
            _ => {
                return Err(format!("--shard `{text}`: K/N with 0 <= K < N (K is 0-based, like JOB_COMPLETION_INDEX)"))
            }
        };
        Ok(Shard { index, count })
    }

    /// True when the collection `db.coll` is this worker's.
    pub fn owns(&self, name: &str) -> bool {
        (fnv1a(name) % self.count as u64) as u32 == self.index
    }
}

/// FNV-1a: stable across Rust versions and platforms, unlike the std hasher (shard dealing, fingerprints).
pub fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_collections_exactly_once() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/2", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let names: Vec<String> = (0..200).map(|i| format!("hims.coll_{i}")).collect();
        let shards: Vec<Shard> = (0..4).map(|k| Shard { index: k, count: 4 }).collect();
        for n in &names {
            assert_eq!(shards.iter().filter(|s| s.owns(n)).count(), 1, "{n}");
        }
        for s in &shards {
            let mine = names.iter().filter(|n| s.owns(n)).count();
            assert!((25..=75).contains(&mine), "shard {s:?} got {mine} of 200");
        }
    }
}
