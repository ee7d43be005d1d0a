//! Conditional writes on the lake, for leases: create-if-absent and replace-if-unchanged (S3 `If-None-Match` /
//! `If-Match` on the ETag, which AWS S3, MinIO, SeaweedFS and moto honour). Local disk uses an OS file lock
//! instead (see [`crate::state::lease`]), because a lock held by a killed process is released by the kernel.
use super::Lake;
use crate::{Error, Result};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

/// The version of an object a conditional replace must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(UpdateVersion);

impl Version {
    /// The object's ETag, where the store gave one.
    pub fn e_tag(&self) -> Option<&str> {
        self.0.e_tag.as_deref()
    }
}

impl Lake {
    /// The lake's directory when it is on local disk.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// Reads an object and its version; None when absent.
    pub async fn get_versioned(&self, path: &Path) -> Result<Option<(Bytes, Version)>> {
        match self.store.get(path).await {
            Ok(r) => {
                let v = UpdateVersion { e_tag: r.meta.e_tag.clone(), version: r.meta.version.clone() };
                let bytes = r.bytes().await.map_err(|e| Error::store(format!("reading {}", self.display(path)), e))?;
                Ok(Some((bytes, Version(v))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(format!("reading {}", self.display(path)), e)),
        }
    }

    /// Creates the object unless it exists: Some(version) when this call created it, None when it existed.
    pub async fn put_if_absent(&self, path: &Path, bytes: Bytes) -> Result<Option<Version>> {
        self.put_mode(path, bytes, PutMode::Create).await
    }

    /// Replaces the object only if it is still at `version`: Some(new version), or None when it changed.
    pub async fn put_if_version(&self, path: &Path, bytes: Bytes, version: &Version) -> Result<Option<Version>> {
        self.put_mode(path, bytes, PutMode::Update(version.0.clone())).await
    }

    async fn put_mode(&self, path: &Path, bytes: Bytes, mode: PutMode) -> Result<Option<Version>> {
        let opts = PutOptions { mode, ..Default::default() };
        match self.store.put_opts(path, bytes.into(), opts).await {
            Ok(r) => Ok(Some(Version(UpdateVersion { e_tag: r.e_tag, version: r.version }))),
            Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(Error::store(format!("conditional write of {}", self.display(path)), e)),
        }
    }
}
