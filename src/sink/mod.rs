//! The lake: one [`ObjectStore`] for S3 and local disk alike, and the layout on it ([`layout`], where every path
//! is defined):
//!
//! ```text
//! <lake>/<db>/<coll>/<k1>=<v1>/.../part-0.parquet          one file per partition (the Athena table)
//! <lake>/_mongolake/state/<db>/<coll>.csv                  watermarks, one row per run
//! <lake>/_mongolake/schema/<db>/<coll>.json                the persisted lake schema
//!                                 <coll>.athena.sql, .glue.json   its table definitions
//! <lake>/_mongolake/index/<db>/<coll>/manifest.json        the key index (key -> partition, to move updated
//! <lake>/_mongolake/index/<db>/<coll>/<prefix>-<n>.parquet  rows): its segments, listed by the manifest
//!                                                          (which also keeps the digest: `state::digest`)
//! <lake>/_mongolake/index/<db>/<coll>.parquet              the single index file of older versions (read)
//! <lake>/_mongolake/rejects/<db>/<coll>/<run-id>.jsonl     what a run could not store
//! <lake>/_mongolake/leases/<db>/<coll>.json                which run holds the collection (`.lock` on disk)
//! <lake>/_mongolake/runs/<run-id>.json                     run reports
//! <lake>/_mongolake/staging/<run-id>/<db>/<coll>/<k1>=<v1>+<k2>=<v2>.parquet   files being written
//! <lake>/_mongolake/check/probe-<id>.txt                   `mongolake check`'s write probe
//! <lake>/_mongolake/shards/plans/<db>/<coll>.json          `--shard`: a first load shared in _id ranges,
//! <lake>/_mongolake/shards/data/<db>/<coll>/<plan-id>/...  and what the workers staged for it
//! ```
//! A partition file is replaced atomically, so a reader listing a partition at any moment sees exactly one
//! complete file. On local disk the new file is written in full under `staging/` and then moved over the old one
//! (`rename(2)`). On an object store it is put at its path: an S3 PUT, and a completed multipart upload, replace
//! an object atomically for readers, so staging it, copying it into place and deleting the staged copy would buy
//! nothing and cost three requests a file ([`Lake::stages_writes`]).
pub mod conditional;
pub mod layout;
mod listing;
pub mod parquet;
pub mod remote;
pub mod upload;

use crate::config::environment::StoreTuning;
use crate::config::LakeConfig;
use crate::{Error, Result};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

use layout::Layout;
pub use layout::DATA_FILE;

/// A handle on the lake.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// Every path of the lake, under its root.
    layout: Layout,
    url: String,
    /// The lake's directory when it is on local disk.
    local_dir: Option<std::path::PathBuf>,
    /// The same store as `store` when it is local disk: where a lake path is on the file system.
    local_fs: Option<Arc<object_store::local::LocalFileSystem>>,
    /// The directory `local_fs` maps the lake's root to (see [`Lake::local_path`]).
    local_root: Option<std::path::PathBuf>,
    /// Part size of streamed uploads ([`upload`]), from `[sync] upload_part_mb`.
    part_bytes: usize,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lake({})", self.url)
    }
}

impl Lake {
    /// Opens the lake named by `[lake]` with the default S3 client timeouts and retries.
    pub fn open(cfg: &LakeConfig) -> Result<Lake> {
        Self::open_tuned(cfg, &StoreTuning::default())
    }

    /// Opens the lake named by `[lake]`. S3 credentials come from `access_key_id`/`secret_access_key` when
    /// given, else from the usual AWS environment (variables, profile, instance role).
    ///
    /// `tuning` bounds every S3 request (`[sync] store_timeout_seconds`, `store_connect_timeout_seconds`) and
    /// sets how often object_store itself retries one request (5xx, SlowDown, connection errors, with
    /// exponential backoff and jitter) before the error reaches the collection-level retry in [`crate::sync`].
    pub fn open_tuned(cfg: &LakeConfig, tuning: &StoreTuning) -> Result<Lake> {
        let url = cfg.url.clone();
        let shown = url.to_string();
        match url.scheme() {
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|_| Error::config("[lake]", None, format!("url {shown} is not a local path")))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("creating lake directory {}", dir.display()), e))?;
                // Automatic cleanup: deleting a partition's last file also removes its now-empty folders, as on
                // S3, so a deleted partition does not linger as an empty directory for Spark or Hive to list.
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| Error::store(format!("opening {shown}"), e))?
                    .with_automatic_cleanup(true);
                let store = Arc::new(store);
                let local_root = store
                    .path_to_filesystem(&Path::from("root"))
                    .ok()
                    .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
                Ok(Lake {
                    store: store.clone(),
                    layout: Layout::default(),
                    url: shown,
                    local_dir: Some(dir),
                    local_fs: Some(store),
                    local_root,
                    part_bytes: tuning.part_bytes,
                })
            }
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
                // An S3-compatible store has no instance role: without explicit credentials the AWS client would
                // fall back to the cloud metadata endpoint, which does not exist there. Say so instead.
                let has_keys = cfg.access_key_id.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
                if cfg.endpoint.is_some() && !has_keys {
                    return Err(Error::config("[lake]", None, format!(
                        "{shown} uses a custom endpoint but no credentials: set access_key_id/secret_access_key = {{ env = ... }} in [lake] or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                    )));
                }
                if let Some(ep) = &cfg.endpoint {
                    b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
                }
                if let Some(r) = &cfg.region {
                    b = b.with_region(r);
                }
                let mut client = object_store::ClientOptions::new()
                    .with_timeout(tuning.timeout)
                    .with_connect_timeout(tuning.connect_timeout);
                if cfg.allow_http {
                    client = client.with_allow_http(true);
                }
                b = b.with_client_options(client).with_retry(object_store::RetryConfig {
                    backoff: object_store::BackoffConfig::default(),
                    max_retries: tuning.retries,
                    // Long enough for `retries` backoffs; a stuck request is bounded by the timeout above.
                    retry_timeout: tuning.timeout.max(std::time::Duration::from_secs(30)),
                });
                if let Some(k) = &cfg.access_key_id {
                    b = b.with_access_key_id(k.resolve("[lake] access_key_id")?);
                }
                if let Some(s) = &cfg.secret_access_key {
                    b = b.with_secret_access_key(s.resolve("[lake] secret_access_key")?);
                }
                if let Some(e) = &cfg.encryption {
                    b = with_encryption(b, e);
                }
                let store = b.build().map_err(|e| Error::store(format!("opening {shown}"), e))?;
                let root =
                    Path::parse(url.path()).map_err(|e| Error::config("[lake]", None, format!("url {shown}: {e}")))?;
                Ok(Lake {
                    store: Arc::new(store),
                    layout: Layout::new(root),
                    url: shown,
                    local_dir: None,
                    local_fs: None,
                    local_root: None,
                    part_bytes: tuning.part_bytes,
                })
            }
            other => Err(Error::config("[lake]", None, format!("unsupported scheme {other}"))),
        }
    }

    /// A lake on local disk in `dir` (tests).
    #[cfg(test)]
    pub fn local_in(dir: &std::path::Path) -> Lake {
        let cfg = LakeConfig {
            url: url::Url::from_directory_path(dir).expect("an absolute path"),
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            encryption: None,
        };
        Lake::open(&cfg).expect("a local lake")
    }

    /// A lake over any store (used by tests with the in-memory store).
    pub fn from_store(store: Arc<dyn ObjectStore>, root: Path, url: &str) -> Lake {
        Lake {
            store,
            layout: Layout::new(root),
            url: url.into(),
            local_dir: None,
            local_fs: None,
            local_root: None,
            part_bytes: StoreTuning::default().part_bytes,
        }
    }

    /// The same lake with streamed uploads in parts of `bytes` (see [`upload`]).
    pub fn with_part_bytes(mut self, bytes: usize) -> Lake {
        self.part_bytes = bytes;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every path of the lake.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A path under the lake root, from `/`-separated relative text (already escaped).
    pub fn path(&self, relative: &str) -> Path {
        self.layout.path(relative)
    }

    /// The path as the user would type it (for messages).
    pub fn display(&self, path: &Path) -> String {
        let rel =
            path.as_ref().strip_prefix(self.layout.root().as_ref()).unwrap_or(path.as_ref()).trim_start_matches('/');
        format!("{}/{}", self.url.trim_end_matches('/'), rel)
    }

    pub fn table_path(&self, db: &str, coll: &str) -> Path {
        self.layout.table(db, coll)
    }
    pub fn partition_file(&self, db: &str, coll: &str, partition: &str) -> Path {
        self.layout.partition_file(db, coll, partition)
    }
    pub fn state_path(&self, db: &str, coll: &str) -> Path {
        self.layout.state(db, coll)
    }
    pub fn schema_path(&self, db: &str, coll: &str) -> Path {
        self.layout.schema(db, coll)
    }
    pub fn schema_dir(&self) -> Path {
        self.layout.schema_dir()
    }
    /// The key index as versions before segments kept it, one file (read, then replaced by [`Lake::index_dir`]).
    pub fn index_path(&self, db: &str, coll: &str) -> Path {
        self.layout.legacy_index(db, coll)
    }
    /// The key index's manifest and segment files (`state::index::store`).
    pub fn index_dir(&self, db: &str, coll: &str) -> Path {
        self.layout.index_dir(db, coll)
    }
    pub fn rejects_dir(&self, db: &str, coll: &str) -> Path {
        self.layout.rejects_dir(db, coll)
    }
    pub fn rejects_path(&self, db: &str, coll: &str, run_id: &str) -> Path {
        self.layout.rejects_file(db, coll, run_id)
    }
    pub fn lease_path(&self, db: &str, coll: &str) -> Path {
        self.layout.lease(db, coll)
    }
    pub fn run_report_path(&self, run_id: &str) -> Path {
        self.layout.run_report(run_id)
    }
    /// Where a partition's new file is written before it moves into place: one flat folder per run and
    /// collection (`k1=v1/k2=v2` becomes `k1=v1+k2=v2.parquet`; values escape `=`, so this stays unique), because
    /// on local disk a folder per partition cost a `mkdir`, a failed open and an `rmdir` per file (about 5% of a
    /// first load's CPU). Cleaning goes by the `<run>/<db>/<coll>` prefix, so an older version's nested leftovers
    /// are removed the same way.
    pub fn staging_path(&self, run_id: &str, db: &str, coll: &str, partition: &str) -> Path {
        self.layout.staging_file(run_id, db, coll, partition)
    }

    /// Reads an object, None when it does not exist.
    pub async fn get_opt(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| Error::store(format!("reading {}", self.display(path)), e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Error::store(format!("reading {}", self.display(path)), e)),
        }
    }

    pub async fn put(&self, path: &Path, payload: PutPayload) -> Result<()> {
        self.put_tagged(path, payload).await.map(|_| ())
    }

    /// [`Lake::put`], with the object's tag as the store answered it (see [`Lake::list_partition_tags`]).
    pub async fn put_tagged(&self, path: &Path, payload: PutPayload) -> Result<Option<String>> {
        self.store
            .put(path, payload)
            .await
            .map(|r| r.e_tag)
            .map_err(|e| Error::store(format!("writing {}", self.display(path)), e))
    }

    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(format!("deleting {}", self.display(path)), e)),
        }
    }

    /// Deletes every path of `paths` (those already gone included): on S3 one DeleteObjects request a thousand.
    pub async fn delete_all(&self, paths: Vec<Path>) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let shown = self.display(&paths[0]);
        let stream = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.store.delete_stream(stream);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Error::store(format!("deleting {shown} and others"), e)),
            }
        }
        Ok(())
    }

    /// Whether a file replacing another is written to `staging/` first and then moved over it (local disk, where
    /// a file being written is visible under its name), or put at its path directly (an object store, where an
    /// object appears only complete). See the module docs.
    pub fn stages_writes(&self) -> bool {
        self.local_dir.is_some()
    }

    /// How many small independent reads (state objects, run reports) to have in flight at once. On an object store
    /// each is a round trip, so several, and early. On local disk each is a read on a blocking thread, and reads
    /// at once, or beside a collection's own, only spread the run's memory over more threads' allocator heaps:
    /// they raised tests/memory.rs's peaks by 10 to 25 MB. There they are made one at a time, where they are
    /// used.
    pub fn reads_at_once(&self) -> usize {
        match self.local_dir {
            Some(_) => 1,
            None => 16,
        }
    }

    /// Replaces `target` with `bytes` atomically for readers: on local disk written to `staging`, then moved over
    /// `target`; on an object store put at `target` (see the module docs).
    /// On an object store, the new object's tag (on local disk None: [`Lake::tag_of`] reads it).
    pub async fn replace(&self, staging: &Path, target: &Path, bytes: Bytes) -> Result<Option<String>> {
        if !self.stages_writes() {
            // (the file is complete and not yet visible: the same moment as a staged file before its move)
            crate::fault::point("staged");
            return self.put_tagged(target, bytes.into()).await;
        }
        match self.local_replace(staging, target, false) {
            Some(local) => {
                let local = local?;
                tokio::task::spawn_blocking(move || local.write(&bytes))
                    .await
                    .map_err(|e| Error::encode("writing a partition file", e))??;
                Ok(None)
            }
            None => {
                self.put(staging, bytes.into()).await?;
                self.move_into_place(staging, target).await.map(|_| None)
            }
        }
    }

    /// On local disk, the file system paths [`Lake::replace`] stages `target` at and moves it to, to write from a
    /// blocking thread already running (a partition's encoder: no hand-off to another thread a file); None on an
    /// object store.
    pub fn local_replace(&self, staging: &Path, target: &Path, new: bool) -> Option<Result<LocalReplace>> {
        let fs = self.local_fs.as_ref().filter(|_| self.stages_writes())?;
        Some((|| {
            let (staged, placed) = (self.local_path(fs, staging)?, self.local_path(fs, target)?);
            Ok(LocalReplace { staged, placed, shown: self.display(target), new })
        })())
    }

    /// Where a lake path is on local disk. The store's own mapping goes through a URL and back (a tenth of a
    /// millisecond a file, called three times for each rewritten one); a path with no `%` (what the URL would
    /// decode) and no `#` (what the store reserves for its temporary files) maps to itself under the root, as
    /// the unit test checks, and is joined directly.
    fn local_path(&self, fs: &object_store::local::LocalFileSystem, path: &Path) -> Result<std::path::PathBuf> {
        let text = path.as_ref();
        match &self.local_root {
            Some(root) if !text.is_empty() && !text.contains(['%', '#']) => Ok(root.join(text)),
            _ => fs.path_to_filesystem(path).map_err(|e| Error::store(format!("writing {}", self.display(path)), e)),
        }
    }

    /// Moves a complete file from `staging` over `target` (see the module docs).
    pub async fn move_into_place(&self, staging: &Path, target: &Path) -> Result<()> {
        crate::fault::point("staged");
        self.store
            .rename(staging, target)
            .await
            .map_err(|e| Error::store(format!("moving {} into place", self.display(target)), e))
    }

    /// Moves an object (atomic for readers on local disk; a copy then a delete on S3).
    pub async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.store
            .rename(from, to)
            .await
            .map_err(|e| Error::store(format!("moving {} to {}", self.display(from), self.display(to)), e))
    }

    /// Deletes every object under `prefix` (and, on local disk, the emptied folders).
    pub async fn remove_tree(&self, prefix: &Path) -> Result<()> {
        if let Some(dir) = &self.local_dir {
            let rel = prefix.as_ref().strip_prefix(self.layout.root().as_ref()).unwrap_or(prefix.as_ref());
            let target = dir.join(rel.trim_start_matches('/'));
            return match std::fs::remove_dir_all(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(format!("removing {}", target.display()), e))
                }
                _ => Ok(()),
            };
        }
        for p in self.list(prefix).await? {
            self.delete(&p).await?;
        }
        Ok(())
    }

    /// Every object under `prefix`, as paths.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<Path>> {
        self.store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| Error::store(format!("listing {}", self.display(prefix)), e))
    }

    /// Every object under `prefix` with its tag (an object store's ETag, None where the listing gives none),
    /// keyed by path.
    pub async fn list_tags(&self, prefix: &Path) -> Result<crate::FastMap<String, Option<String>>> {
        self.store
            .list(Some(prefix))
            .map_ok(|m| (m.location.to_string(), m.e_tag))
            .try_collect()
            .await
            .map_err(|e| Error::store(format!("listing {}", self.display(prefix)), e))
    }

    /// The partition directories (`k=v/...`, relative to the table) that hold a data file.
    pub async fn list_partitions(&self, db: &str, coll: &str) -> Result<Vec<String>> {
        Ok(self.list_partition_tags(db, coll).await?.into_iter().map(|(rel, _)| rel).collect())
    }

    /// [`Lake::list_partitions`] with each data file's tag where the listing gives it for free: an object
    /// store's ETag (a hash of the content on S3). On local disk the folders alone are read ([`listing`]: no stat
    /// per file) and the tags are None; [`Lake::local_tags`] reads them.
    pub async fn list_partition_tags(&self, db: &str, coll: &str) -> Result<Vec<(String, Option<String>)>> {
        let table = self.table_path(db, coll);
        if let Some(fs) = self.local_fs.as_ref().filter(|_| self.local_dir.is_some()) {
            let dir = self.local_path(fs, &table)?;
            let shown = self.display(&table);
            let rels = tokio::task::spawn_blocking(move || listing::local_partitions(&dir, DATA_FILE))
                .await
                .map_err(|e| Error::encode("listing a table", e))?
                .map_err(|e| Error::io(format!("listing {shown}"), e))?;
            return Ok(rels.into_iter().map(|rel| (rel, None)).collect());
        }
        let mut out: Vec<(String, Option<String>)> = self
            .store
            .list(Some(&table))
            .try_filter_map(|m| {
                let rel = match m.location.filename() == Some(DATA_FILE) {
                    true => {
                        let full = m.location.as_ref();
                        full.strip_prefix(table.as_ref())
                            .map(|r| r.trim_start_matches('/'))
                            .and_then(|rel| rel.strip_suffix(DATA_FILE).map(|r| r.trim_end_matches('/').to_string()))
                    }
                    false => None,
                };
                futures::future::ready(Ok(rel.map(|rel| (rel, m.e_tag))))
            })
            .try_collect()
            .await
            .map_err(|e| Error::store(format!("listing {}", self.display(&table)), e))?;
        out.sort();
        Ok(out)
    }

    /// The tags of partitions' data files on local disk (inode, modification time and size: a file put in
    /// place by a rename has a new inode), read in one blocking task, a stat each; None for a file not there.
    /// On an object store nothing is read and every tag is None: its tags come from listings and PUTs.
    pub async fn local_tags(&self, db: &str, coll: &str, rels: Vec<String>) -> Result<Vec<(String, Option<String>)>> {
        let Some(fs) = self.local_fs.as_ref().filter(|_| self.local_dir.is_some()) else {
            return Ok(rels.into_iter().map(|rel| (rel, None)).collect());
        };
        let files = rels
            .into_iter()
            .map(|rel| Ok((self.local_path(fs, &self.partition_file(db, coll, &rel))?, rel)))
            .collect::<Result<Vec<_>>>()?;
        let shown = self.display(&self.table_path(db, coll));
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::MetadataExt;
            files
                .into_iter()
                .map(|(file, rel)| match std::fs::metadata(&file) {
                    Ok(m) => {
                        Ok((rel, Some(format!("{:x}-{:x}.{:x}-{:x}", m.ino(), m.mtime(), m.mtime_nsec(), m.size()))))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((rel, None)),
                    Err(e) => Err(Error::io(format!("reading the metadata of {shown}/{rel}"), e)),
                })
                .collect()
        })
        .await
        .map_err(|e| Error::encode("reading file metadata", e))?
    }

    /// `known` (a sync's list of the table after its write), or the partitions listed.
    pub async fn partitions_or_list<'a>(
        &self,
        db: &str,
        coll: &str,
        known: Option<&'a [String]>,
    ) -> Result<std::borrow::Cow<'a, [String]>> {
        Ok(match known {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(self.list_partitions(db, coll).await?),
        })
    }

    /// Removes this run's staging directories of a collection once its files are in place (local disk keeps the
    /// emptied directories after a rename; object stores have no directories).
    pub async fn finish_staging(&self, db: &str, coll: &str) -> Result<()> {
        if self.local_dir.is_some() {
            self.clean_staging(db, coll, &[]).await?;
        }
        Ok(())
    }

    /// Every object under an object store's `staging/`, for [`Lake::clean_staging`]: a sync lists it once and
    /// each collection cleans its own under its lease (what a run crashing meanwhile leaves is cleaned the next
    /// night). None on local disk, whose staging is cleaned a folder at a time.
    pub async fn list_staging(&self) -> Result<Vec<Path>> {
        match self.local_dir {
            Some(_) => Ok(Vec::new()),
            None => self.list(&self.layout.staging_dir()).await,
        }
    }

    /// Removes what a crashed earlier run left under `staging/` for this collection (never visible to Athena,
    /// but it should not accumulate): on local disk its folders, on an object store its objects of `staged`
    /// ([`Lake::list_staging`]).
    pub async fn clean_staging(&self, db: &str, coll: &str, staged: &[Path]) -> Result<usize> {
        let staging = self.layout.staging_dir();
        let mut n = 0;
        // On local disk an interrupted write leaves `part-0.parquet#N` temporaries that listing does not show.
        if let Some(dir) = &self.local_dir {
            let base = dir.join(layout::STAGING_DIR);
            for run in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                let target = run.path().join(db).join(coll);
                if target.exists() {
                    // Directories emptied by completed renames are removed silently; only files count.
                    n += count_files(&target);
                    std::fs::remove_dir_all(&target)
                        .map_err(|e| Error::io(format!("removing {}", target.display()), e))?;
                }
                // Prune a run's empty directories only once it is a day old: pruning a live run's `<run>/<db>`
                // would race with another collection (or process) creating its folders under it.
                let old = run
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(86_400));
                if old {
                    let _ = std::fs::remove_dir(run.path().join(db));
                    let _ = std::fs::remove_dir(run.path());
                }
            }
        }
        let mine: Vec<Path> = staged
            .iter()
            .filter(|p| {
                let rel = p.as_ref().strip_prefix(staging.as_ref()).unwrap_or("").trim_start_matches('/');
                let mut parts = rel.splitn(4, '/');
                let (_run, d, c) = (parts.next(), parts.next(), parts.next());
                d == Some(db) && c == Some(coll)
            })
            .cloned()
            .collect();
        n += mine.len();
        self.delete_all(mine).await?;
        Ok(n)
    }
}

/// Server-side encryption on every write the S3 client makes: object_store sends the headers with PUTs
/// (conditional ones too: leases), multipart uploads (created with them; parts inherit) and copies (a rename is
/// a copy then a delete; `copy_if_not_exists` included), so every object mongolake writes carries them.
fn with_encryption(
    b: object_store::aws::AmazonS3Builder,
    e: &crate::config::environment::LakeEncryption,
) -> object_store::aws::AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey;
    // (the encryption keys' enum is not exported: they are named as AWS_* settings are)
    let key = |name: &str| name.parse::<AmazonS3ConfigKey>().expect("object_store knows its encryption keys");
    let mut b = b.with_config(key("aws_server_side_encryption"), e.kind.header_value());
    if let Some(id) = &e.kms_key_id {
        b = b.with_config(key("aws_sse_kms_key_id"), id);
    }
    if let Some(on) = e.bucket_key {
        b = b.with_bucket_key(on);
    }
    b
}

/// [`Lake::replace`] on local disk, in one blocking task: `bytes` written to `staged`, then renamed over `placed`,
/// each file's folder made when it is missing. (object_store's put would write a `#N` temporary beside the staged
/// file and rename it there first, and its rename would be a second task: two more system calls and two thread
/// hand-offs a partition file.) No fsync, as object_store's local store by default.
pub struct LocalReplace {
    staged: std::path::PathBuf,
    placed: std::path::PathBuf,
    shown: String,
    /// The target is a new partition's (the table's listing did not show it): its folder is made before the
    /// move, rather than after a move that fails for want of it (a system call a new file).
    new: bool,
}

impl LocalReplace {
    /// Blocking: the file staged, then moved over its target.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let (staged, placed) = (self.staged.as_path(), self.placed.as_path());
        let io = |what: &str, e| Error::io(format!("{what} {}", self.shown), e);
        with_parent(staged, || std::fs::write(staged, bytes)).map_err(|e| io("staging", e))?;
        crate::fault::point("staged");
        if let (true, Some(folder)) = (self.new, placed.parent()) {
            // (an error here is met again by the move, which says what failed)
            let _ = std::fs::create_dir_all(folder);
        }
        with_parent(placed, || std::fs::rename(staged, placed)).map_err(|e| {
            let _ = std::fs::remove_file(staged);
            io("moving into place", e)
        })
    }
}

/// Runs `op` on `path`, and again after making `path`'s folder when `op` found it missing. A few times: a partition
/// deleted meanwhile removes its emptied folders ([`Lake::open`]'s automatic cleanup), maybe the one just made.
fn with_parent(path: &std::path::Path, op: impl Fn() -> std::io::Result<()>) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match op() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => {
                tries += 1;
                std::fs::create_dir_all(path.parent().unwrap_or(path))?;
            }
            other => return other,
        }
    }
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::environment::{LakeEncryption, SseKind};

    #[test]
    fn a_local_path_is_where_the_store_puts_it() {
        let dir = tempfile::tempdir().unwrap();
        // (through a symbolic link: the store maps paths under the directory's canonical form)
        let link = dir.path().join("link");
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), &link).unwrap();
        let lake = Lake::local_in(&link);
        let fs = lake.local_fs.clone().unwrap();
        for p in [
            Path::from("hims/visits/facility_id=F001/created_at_date=2025-07-01/part-0.parquet"),
            Path::from_iter(["hims", "visits", "ward=east wing", "part-0.parquet"]),
            Path::from_iter(["hims", "visits", "ward=Ärzte/100%", "part-0.parquet"]),
            Path::from_iter(["hims", "visits", "ward=a#1", "part-0.parquet"]),
            Path::from("_mongolake/staging/run/hims/visits/x/part-0.parquet"),
        ] {
            let want = fs.path_to_filesystem(&p).unwrap();
            assert_eq!(lake.local_path(&fs, &p).unwrap(), want, "{p}");
            assert!(want.starts_with(dir.path().canonicalize().unwrap().join("real")), "{want:?}");
        }
    }

    #[test]
    fn an_s3_lake_opens_with_every_encryption_setting() {
        std::env::set_var("MONGOLAKE_TEST_UNIT_LAKE_SECRET", "s");
        for (kind, key, bucket_key) in [
            (SseKind::Kms, Some("arn:aws:kms:us-east-1:111122223333:key/k"), Some(true)),
            (SseKind::Kms, None, None),
            (SseKind::DsseKms, Some("alias/x"), Some(false)),
            (SseKind::S3, None, None),
        ] {
            let cfg = LakeConfig {
                url: url::Url::parse("s3://bucket/lake").unwrap(),
                endpoint: Some("http://127.0.0.1:1".into()),
                region: Some("us-east-1".into()),
                allow_http: true,
                access_key_id: Some(crate::config::ValueOrRef::Literal("k".into())),
                secret_access_key: Some(crate::config::SecretRef {
                    env: Some("MONGOLAKE_TEST_UNIT_LAKE_SECRET".into()),
                    file: None,
                }),
                encryption: Some(LakeEncryption { kind, kms_key_id: key.map(String::from), bucket_key }),
            };
            Lake::open(&cfg).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        }
    }
}
