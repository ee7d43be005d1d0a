//! Configuration: `collections.csv` and `environments/<name>.toml`, parsed and validated into [`Config`] before
//! anything touches MongoDB or the lake.
//!
//! Both files are a public contract (schedulers and operators' scripts depend on them): keys may be added, never
//! silently changed. Invalid input is reported with the file, line and the fix; a bad *row* of
//! `collections.csv` only skips that collection (it is reported as failed), a bad *environment* stops the run.
pub mod collections;
pub mod environment;

pub use collections::{CollectionSpec, CollectionsFile, PartitionKey, PartitionSpec};
pub use environment::{
    CatalogConfig, EmailConfig, Environment, LakeConfig, MaskingConfig, MongoConfig, SecretRef, SyncConfig,
};

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
}
