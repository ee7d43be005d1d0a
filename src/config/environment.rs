//! `environments/<name>.toml`: where MongoDB and the lake are, the time zone, the email recipients, and how the
//! Athena/Glue table definitions are named (`[catalog]`).
//!
//! Secrets (passwords, keys) are only ever references, `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`; a
//! literal secret is refused with an explanation, and so is a password embedded in the MongoDB URI. Unknown keys
//! are an error naming the key, so a typo never silently falls back to a default.
use super::raw::*;
pub use super::raw::{MaskingConfig, ReportConfig, INDEX_SEGMENT_KEYS, MAX_NEW_PARTITIONS};
pub use super::secret::{SecretRef, ValueOrRef};
use super::timezone::LakeTimeZone;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// `[mongodb]`, validated.
#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub uri: ValueOrRef,
    pub username: Option<ValueOrRef>,
    pub password: Option<SecretRef>,
    pub auth_source: Option<String>,
    pub batch_size: u32,
    pub connect_timeout: std::time::Duration,
    /// TLS to MongoDB: None leaves it to the URI (`tls=true`, `mongodb+srv://` implies it).
    pub tls: Option<bool>,
    /// PEM CA bundle to verify the server with, instead of the system roots (a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file with the client certificate and its key (X.509 client authentication / mTLS).
    pub tls_certificate_key_file: Option<PathBuf>,
}

/// `[lake]`, validated. `url` is absolute: `s3://bucket/prefix` or `file:///dir` (a plain path is resolved
/// against the config directory and turned into a `file://` URL).
#[derive(Debug, Clone)]
pub struct LakeConfig {
    pub url: url::Url,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: bool,
    pub access_key_id: Option<ValueOrRef>,
    pub secret_access_key: Option<SecretRef>,
    /// Server-side encryption requested on every object mongolake writes (S3 only; None: the bucket's default).
    pub encryption: Option<LakeEncryption>,
}

/// `[lake] server_side_encryption`, `sse_kms_key_id`, `sse_bucket_key`: the encryption headers sent with every
/// write (PUT, multipart upload, copy), so a bucket policy that denies unencrypted writes accepts mongolake's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeEncryption {
    pub kind: SseKind,
    /// The KMS key of SSE-KMS / DSSE-KMS; None: the AWS-managed key.
    pub kms_key_id: Option<String>,
    /// The S3 Bucket Key setting of SSE-KMS; None: not sent (the bucket's setting applies).
    pub bucket_key: Option<bool>,
}

/// Which server-side encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseKind {
    /// `AES256`: keys managed by S3.
    S3,
    /// `aws:kms`.
    Kms,
    /// `aws:kms:dsse`: dual-layer.
    DsseKms,
}

impl SseKind {
    /// The value of the `x-amz-server-side-encryption` header.
    pub fn header_value(self) -> &'static str {
        match self {
            SseKind::S3 => "AES256",
            SseKind::Kms => "aws:kms",
            SseKind::DsseKms => "aws:kms:dsse",
        }
    }
}

impl std::fmt::Display for LakeEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            SseKind::S3 => write!(f, "SSE-S3 (AES256)"),
            kind => {
                let name = if kind == SseKind::Kms { "SSE-KMS" } else { "DSSE-KMS" };
                write!(
                    f,
                    "{name} ({}) with key {}",
                    kind.header_value(),
                    self.kms_key_id.as_deref().unwrap_or("aws/s3 (the AWS-managed key)")
                )?;
                match self.bucket_key {
                    Some(true) => write!(f, ", S3 Bucket Key on"),
                    Some(false) => write!(f, ", S3 Bucket Key off"),
                    None => write!(f, ", S3 Bucket Key as the bucket says"),
                }
            }
        }
    }
}

/// Validates `[lake]`'s encryption keys (S3 lakes only; the key id and bucket key only with KMS).
fn validate_encryption(
    scheme: &str,
    kind: Option<&str>,
    key_id: Option<String>,
    bucket_key: Option<bool>,
) -> std::result::Result<Option<LakeEncryption>, String> {
    let Some(kind) = kind else {
        if key_id.is_some() || bucket_key.is_some() {
            return Err("[lake] sse_kms_key_id / sse_bucket_key need server_side_encryption = \"aws:kms\"".into());
        }
        return Ok(None);
    };
    let kind = match kind {
        "aws:kms" => SseKind::Kms,
        "aws:kms:dsse" => SseKind::DsseKms,
        "AES256" => SseKind::S3,
        other => {
            return Err(format!(
                "[lake] server_side_encryption = `{other}`: use \"aws:kms\" (SSE-KMS), \"aws:kms:dsse\" or \"AES256\" (SSE-S3)"
            ))
        }
    };
    if scheme != "s3" {
        return Err(
            "[lake] server_side_encryption applies to s3:// lakes; a local lake is as encrypted as its disk".into()
        );
    }
    if kind == SseKind::S3 && (key_id.is_some() || bucket_key.is_some()) {
        return Err(
            "[lake] sse_kms_key_id / sse_bucket_key apply to SSE-KMS: set server_side_encryption = \"aws:kms\"".into(),
        );
    }
    if key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(
            "[lake] sse_kms_key_id is empty: give the key's id, alias or ARN, or leave it out for aws/s3".into()
        );
    }
    Ok(Some(LakeEncryption { kind, kms_key_id: key_id, bucket_key }))
}

/// `[sync]`, validated.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub timezone: LakeTimeZone,
    /// Incremental pulls start this long before the watermark, so late and equal-timestamp writes are seen.
    pub overlap: chrono::Duration,
    /// Collections synced at once.
    pub concurrency: usize,
    /// Partitions of one collection encoded at once.
    pub partition_concurrency: usize,
    /// Raw documents buffered in memory per collection before spilling to local disk.
    pub memory_budget_bytes: u64,
    pub row_group_rows: usize,
    /// A row group ends once it is this large, encoded: bounds what the writer holds for a large partition.
    pub row_group_bytes: usize,
    /// Keys per key-index segment file (an incremental run loads and rewrites only the segments its keys fall
    /// in); a segment is split when it grows past twice this.
    pub index_segment_keys: usize,
    /// Reconcile automatically when the collection's last reconcile is at least this many days old
    /// (None: only with `--reconcile`).
    pub reconcile_every_days: Option<u32>,
    /// After an incremental pass, reconcile when MongoDB's document count differs from the lake's row count
    /// (see [`crate::sync::reconcile::count_mismatch`]).
    pub reconcile_on_count_mismatch: bool,
    /// `[sync] type_conflicts`: the policy a collection's schema is created with.
    pub type_conflicts: TypeConflicts,
    /// How long a collection's lease lasts without renewal; a run renews it every third of this. A crashed
    /// holder on another machine blocks the collection at most this long.
    pub lease: std::time::Duration,
    /// Full loads read this many `_id` ranges with concurrent cursors (`$bucketAuto`); 1 reads one cursor.
    pub read_ranges: usize,
    /// `--shard K/N`: first loads of at least this many documents are shared by all N workers in `_id` ranges
    /// (see [`crate::sync::shard`]); 0 never splits.
    pub shard_ranges_min_docs: u64,
    /// `--shard K/N`: how long after its start a worker with nothing left of its own still looks for ranges.
    pub shard_help_wait: std::time::Duration,
    /// How a collection that failed with a transient error is retried (see [`crate::sync`]).
    pub retry: RetryPolicy,
    /// Timeouts and request retries of the S3 client (see [`crate::sink::Lake::open_tuned`]).
    pub store: StoreTuning,
    /// New partitions one collection may create in one run (0: no limit); see [`crate::sync::guard`].
    pub max_new_partitions: u64,
}

impl SyncConfig {
    /// Where the partition files' row groups end.
    pub fn row_groups(&self) -> RowGroups {
        RowGroups { rows: self.row_group_rows, bytes: self.row_group_bytes }
    }
}

/// Where row groups end: at `rows` rows, or at the first multiple of `sink::parquet::CHECK_ROWS` rows where the
/// row group's encoded size has reached `bytes` (`[sync] row_group_rows`, `row_group_mb`). The writer holds the
/// row group being encoded, so `bytes` bounds that memory however large a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroups {
    pub rows: usize,
    pub bytes: usize,
}

impl RowGroups {
    /// Row groups bounded by rows only.
    pub fn rows(rows: usize) -> RowGroups {
        RowGroups { rows, bytes: usize::MAX }
    }
}

pub use super::raw::TypeConflicts;

/// `[sync] retry_*`: attempts per collection and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
}

/// `[sync] store_*`: the S3 client's timeouts and its own per-request retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTuning {
    pub timeout: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    pub retries: usize,
    /// Part size of streamed uploads (`[sync] upload_part_mb`): a file smaller than this is one PUT.
    pub part_bytes: usize,
}

impl Default for StoreTuning {
    fn default() -> Self {
        StoreTuning {
            timeout: std::time::Duration::from_secs(default_store_timeout()),
            connect_timeout: std::time::Duration::from_secs(default_store_connect_timeout()),
            retries: default_store_retries(),
            part_bytes: default_upload_part_mb() << 20,
        }
    }
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
    /// Plain SMTP: only when written explicitly as `tls = "none"`.
    None,
}

/// `[email]`, validated.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<ValueOrRef>,
    pub password: Option<SecretRef>,
    pub tls: SmtpTls,
    pub enabled: bool,
    pub only_on_failure: bool,
    pub attach_json: bool,
    /// A private CA the SMTP server's certificate is checked against (in addition to the system roots).
    pub tls_ca_file: Option<PathBuf>,
    pub timeout: std::time::Duration,
}

/// `[catalog]`, validated: how the Athena/Glue table definitions mongolake writes next to each collection's
/// schema (see [`crate::catalog`]) are named and projected. Optional; every key has a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogConfig {
    /// Athena/Glue database of every table; None: the collection's MongoDB database name, sanitised.
    pub database: Option<String>,
    /// Prepended to the sanitised collection name (`raw_` gives `raw_patients`); empty by default.
    pub table_prefix: String,
    /// A field partition key with more distinct values than this (or a value Athena's `enum` projection cannot
    /// list) is projected as `injected` instead of `enum`.
    pub enum_max_values: usize,
    /// Glue mode (`glue = true`): each run creates or updates the tables, their partitions and views in the Glue
    /// Data Catalog. None: only the definition files are written next to each schema.
    pub glue: Option<GlueConfig>,
}

/// Where the Glue Data Catalog is (`[catalog] glue_*`); credentials come from the AWS SDK's standard chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlueConfig {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub catalog_id: Option<String>,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            database: None,
            table_prefix: String::new(),
            enum_max_values: default_enum_max_values(),
            glue: None,
        }
    }
}

/// One environment, validated.
#[derive(Debug, Clone)]
pub struct Environment {
    pub path: PathBuf,
    pub mongodb: MongoConfig,
    pub lake: LakeConfig,
    pub sync: SyncConfig,
    pub email: Option<EmailConfig>,
    pub catalog: CatalogConfig,
    pub masking: MaskingConfig,
    /// `[report]`: what the run report calls unusual, and the small-partitions warning.
    pub report: ReportConfig,
}

impl Environment {
    /// Loads `<config_dir>/environments/<name>.toml`; an unknown name lists the environments that exist.
    pub fn load(config_dir: &Path, name: &str) -> Result<Environment> {
        let dir = config_dir.join("environments");
        let path = dir.join(format!("{name}.toml"));
        let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name || !path.is_file() {
            let mut available: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")).map(String::from))
                .collect();
            available.sort();
            return Err(Error::UnknownEnvironment { name: name.into(), path, available });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::parse(&path, config_dir, &text)
    }

    /// Parses and validates the TOML text.
    pub fn parse(path: &Path, config_dir: &Path, text: &str) -> Result<Environment> {
        let raw: RawEnvironment = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            Error::config(path, line, e.message().to_string())
        })?;
        let err = |m: String| Error::config(path, None, m);

        if let ValueOrRef::Literal(uri) = &raw.mongodb.uri {
            if !uri.starts_with("mongodb://") && !uri.starts_with("mongodb+srv://") {
                return Err(err(format!(
                    "[mongodb] uri `{}` must start with mongodb:// or mongodb+srv://",
                    redact_uri(uri)
                )));
            }
            if uri_has_password(uri) {
                return Err(err("[mongodb] uri contains a password; remove it and use `password = { env = \"VAR\" }` or `{ file = ... }`".into()));
            }
        }
        let mongodb = MongoConfig {
            uri: raw.mongodb.uri,
            username: raw.mongodb.username,
            password: raw.mongodb.password.as_ref().map(|p| p.as_secret("password", path)).transpose()?,
            auth_source: raw.mongodb.auth_source,
            batch_size: raw.mongodb.batch_size.max(1),
            connect_timeout: std::time::Duration::from_secs(raw.mongodb.connect_timeout_seconds.max(1)),
            tls: raw.mongodb.tls,
            tls_ca_file: raw.mongodb.tls_ca_file.map(|p| config_dir.join(p)),
            tls_certificate_key_file: raw.mongodb.tls_certificate_key_file.map(|p| config_dir.join(p)),
        };
        for (key, file) in
            [("tls_ca_file", &mongodb.tls_ca_file), ("tls_certificate_key_file", &mongodb.tls_certificate_key_file)]
        {
            if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                return Err(err(format!("[mongodb] {key}: {} is not a readable file", f.display())));
            }
        }

        let lake_url = resolve_lake_url(&raw.lake.url, config_dir).map_err(err)?;
        let scheme = lake_url.scheme().to_string();
        let lake = LakeConfig {
            url: lake_url,
            endpoint: raw.lake.endpoint,
            region: raw.lake.region,
            allow_http: raw.lake.allow_http,
            access_key_id: raw.lake.access_key_id,
            secret_access_key: raw
                .lake
                .secret_access_key
                .as_ref()
                .map(|s| s.as_secret("secret_access_key", path))
                .transpose()?,
            encryption: validate_encryption(
                &scheme,
                raw.lake.server_side_encryption.as_deref(),
                raw.lake.sse_kms_key_id,
                raw.lake.sse_bucket_key,
            )
            .map_err(err)?,
        };

        let timezone = LakeTimeZone::parse(&raw.sync.timezone).map_err(err)?;
        // S3 refuses multipart parts under 5 MiB (all but the last); a local lake takes any size.
        let min_part = if lake.url.scheme() == "s3" { 5 } else { 1 };
        if raw.sync.upload_part_mb < min_part || raw.sync.upload_part_mb > 4096 {
            return Err(err(format!(
                "[sync] upload_part_mb = {}: use {min_part} to 4096 (S3 takes parts of at least 5 MiB)",
                raw.sync.upload_part_mb
            )));
        }
        let partition_concurrency = raw
            .sync
            .partition_concurrency
            .unwrap_or_else(|| super::raw::default_partition_concurrency(lake.url.scheme() == "s3"));
        if raw.sync.concurrency == 0 || partition_concurrency == 0 {
            return Err(err("[sync] concurrency and partition_concurrency must be at least 1".into()));
        }
        // Default: an eighth of the budget, at most 128 MB (its last quarter holds the partitions being encoded).
        let row_group_mb = match raw.sync.row_group_mb {
            Some(mb) => mb.clamp(1, 4096),
            None => (raw.sync.memory_budget_mb.max(16) as usize / 8).clamp(1, 128),
        };
        let sync = SyncConfig {
            timezone,
            overlap: chrono::Duration::seconds(raw.sync.overlap_seconds as i64),
            concurrency: raw.sync.concurrency,
            partition_concurrency,
            memory_budget_bytes: raw.sync.memory_budget_mb.max(16) * 1024 * 1024,
            row_group_rows: raw.sync.row_group_rows.max(1024),
            row_group_bytes: row_group_mb << 20,
            index_segment_keys: raw.sync.index_segment_keys.max(1),
            reconcile_every_days: raw.sync.reconcile_every_days,
            reconcile_on_count_mismatch: raw.sync.reconcile_on_count_mismatch,
            type_conflicts: raw.sync.type_conflicts,
            lease: std::time::Duration::from_secs(raw.sync.lease_seconds.max(10)),
            read_ranges: raw.sync.read_ranges.clamp(1, 64),
            shard_ranges_min_docs: raw.sync.shard_ranges_min_docs,
            shard_help_wait: std::time::Duration::from_secs(raw.sync.shard_help_wait_seconds),
            retry: RetryPolicy {
                attempts: raw.sync.retry_attempts.max(1),
                backoff: std::time::Duration::from_millis(raw.sync.retry_backoff_ms),
                max_backoff: std::time::Duration::from_secs(raw.sync.retry_max_backoff_seconds.max(1)),
            },
            store: StoreTuning {
                timeout: std::time::Duration::from_secs(raw.sync.store_timeout_seconds.max(1)),
                connect_timeout: std::time::Duration::from_secs(raw.sync.store_connect_timeout_seconds.max(1)),
                retries: raw.sync.store_retries,
                part_bytes: raw.sync.upload_part_mb << 20,
            },
            max_new_partitions: raw.sync.max_new_partitions,
        };

        let email = match raw.email {
            None => None,
            Some(e) => {
                let tls = match e.tls.as_str() {
                    "starttls" => SmtpTls::StartTls,
                    "tls" | "implicit" => SmtpTls::Implicit,
                    "none" => SmtpTls::None,
                    other => {
                        return Err(err(format!("[email] tls = `{other}`: use \"starttls\", \"tls\" or \"none\"")))
                    }
                };
                let tls_ca_file = e.tls_ca_file.map(|p| config_dir.join(p));
                if let Some(f) = tls_ca_file.as_ref().filter(|f| !f.is_file()) {
                    return Err(err(format!("[email] tls_ca_file: {} is not a readable file", f.display())));
                }
                if tls_ca_file.is_some() && tls == SmtpTls::None {
                    return Err(err(
                        "[email] tls_ca_file is set but tls = \"none\"; use \"starttls\" or \"tls\"".into()
                    ));
                }
                if e.to.is_empty() {
                    return Err(err("[email] `to` is empty; list at least one recipient".into()));
                }
                Some(EmailConfig {
                    smtp_host: e.smtp_host,
                    smtp_port: e.smtp_port,
                    from: e.from,
                    to: e.to,
                    username: e.username,
                    password: e.password.as_ref().map(|p| p.as_secret("password", path)).transpose()?,
                    tls,
                    enabled: e.enabled,
                    only_on_failure: e.only_on_failure,
                    attach_json: e.attach_json,
                    tls_ca_file,
                    timeout: std::time::Duration::from_secs(e.timeout_seconds.max(1)),
                })
            }
        };
        let catalog = validate_catalog(raw.catalog).map_err(err)?;
        let report = validate_report(raw.report).map_err(err)?;
        Ok(Environment { path: path.to_path_buf(), mongodb, lake, sync, email, catalog, masking: raw.masking, report })
    }
}

/// Athena (and Glue) names are lower-case `[a-z0-9_]`; a name is refused rather than silently changed, so the
/// table an analyst queries is the one the config names.
fn validate_catalog(raw: RawCatalog) -> std::result::Result<CatalogConfig, String> {
    use crate::schema::names::sanitize;
    if let Some(db) = &raw.database {
        if db.is_empty() || sanitize(db) != *db {
            return Err(format!(
                "[catalog] database `{db}` is not a valid Athena name (lower-case a-z, 0-9, _); try `{}`",
                sanitize(db)
            ));
        }
    }
    let prefix = &raw.table_prefix;
    if !prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || prefix.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!(
            "[catalog] table_prefix `{prefix}` may only hold lower-case a-z, 0-9 and _ (not first); try `{}_`",
            sanitize(prefix)
        ));
    }
    let glue_keys = raw.glue_region.is_some() || raw.glue_endpoint.is_some() || raw.glue_catalog_id.is_some();
    if glue_keys && !raw.glue {
        return Err("[catalog] glue_region, glue_endpoint and glue_catalog_id apply only with glue = true".into());
    }
    if let Some(id) = &raw.glue_catalog_id {
        if id.len() != 12 || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("[catalog] glue_catalog_id `{id}` is not an AWS account id (12 digits)"));
        }
    }
    let glue = raw.glue.then_some(GlueConfig {
        region: raw.glue_region,
        endpoint: raw.glue_endpoint,
        catalog_id: raw.glue_catalog_id,
    });
    Ok(CatalogConfig {
        database: raw.database,
        table_prefix: raw.table_prefix,
        enum_max_values: raw.enum_max_values,
        glue,
    })
}

fn validate_report(r: ReportConfig) -> std::result::Result<ReportConfig, String> {
    if r.unusual_factor.is_nan() || r.unusual_factor <= 1.0 {
        return Err(format!(
            "[report] unusual_factor = {}: use a number above 1 (3 flags a night 3x off)",
            r.unusual_factor
        ));
    }
    if r.unusual_min_nights == 0 || r.history_nights < r.unusual_min_nights || r.history_nights > 366 {
        return Err(format!(
            "[report] unusual_min_nights = {} and history_nights = {}: use 1 <= unusual_min_nights <= history_nights <= 366",
            r.unusual_min_nights, r.history_nights
        ));
    }
    if r.rows_drop_percent.is_nan()
        || !(0.0..=100.0).contains(&r.rows_drop_percent)
        || r.unusual_min_seconds.is_nan()
        || r.unusual_min_seconds < 0.0
        || r.sparse_rows_per_partition.is_nan()
    {
        return Err("[report] rows_drop_percent must be 0 to 100, unusual_min_seconds and sparse_rows_per_partition numbers at least 0".into());
    }
    Ok(r)
}

/// Replaces the password of a URI (if any) with `***` for logs and errors.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => uri.to_string(),
    }
}

fn uri_has_password(uri: &str) -> bool {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').map(|(userinfo, _)| userinfo.contains(':')).unwrap_or(false)
}

fn resolve_lake_url(text: &str, config_dir: &Path) -> std::result::Result<url::Url, String> {
    if text.contains("://") {
        let url = url::Url::parse(text).map_err(|e| format!("[lake] url `{text}`: {e}"))?;
        return match url.scheme() {
            "s3" | "file" => Ok(url),
            other => Err(format!(
                "[lake] url scheme `{other}` is not supported; use s3://bucket/prefix, file:///dir or a plain path"
            )),
        };
    }
    let path = Path::new(text);
    let abs = if path.is_absolute() { path.to_path_buf() } else { config_dir.join(path) };
    let abs = std::path::absolute(&abs).map_err(|e| format!("[lake] url `{text}`: {e}"))?;
    url::Url::from_directory_path(&abs).map_err(|_| format!("[lake] url `{text}` is not a usable directory path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Environment> {
        Environment::parse(Path::new("env1.toml"), Path::new("/etc/mongolake"), text)
    }

    const OK: &str = "[mongodb]\nuri = \"mongodb://h:27017/?replicaSet=rs0\"\nusername = { env = \"U\" }\npassword = { file = \"/run/p\" }\n[lake]\nurl = \"lake\"\n[sync]\ntimezone = \"Asia/Kolkata\"\n";

    #[test]
    fn valid_environment_with_defaults() {
        let env = parse(OK).unwrap();
        assert_eq!(env.lake.url.as_str(), "file:///etc/mongolake/lake/");
        assert_eq!(env.sync.overlap, chrono::Duration::seconds(300));
        assert_eq!(env.mongodb.password, Some(SecretRef { env: None, file: Some("/run/p".into()) }));
        assert!(env.email.is_none());
    }

    #[test]
    fn literal_password_is_refused() {
        let e =
            parse(&OK.replace("password = { file = \"/run/p\" }", "password = \"hunter2\"")).unwrap_err().to_string();
        assert!(e.contains("written literally") && !e.contains("hunter2"), "{e}");
        let e = parse(&OK.replace("mongodb://h", "mongodb://u:hunter2@h")).unwrap_err().to_string();
        assert!(e.contains("uri contains a password") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let e = parse(&OK.replace("[sync]\n", "[sync]\ntimezon = \"UTC\"\n")).unwrap_err().to_string();
        assert!(e.contains("timezon") && e.contains("env1.toml:"), "{e}");
    }

    #[test]
    fn bad_timezone_and_scheme() {
        assert!(parse(&OK.replace("Asia/Kolkata", "Mars/Olympus")).unwrap_err().to_string().contains("Mars/Olympus"));
        assert!(parse(&OK.replace("url = \"lake\"", "url = \"gs://b\"")).unwrap_err().to_string().contains("gs"));
    }

    #[test]
    fn catalog_section_defaults_and_validation() {
        assert_eq!(parse(OK).unwrap().catalog, CatalogConfig::default());
        assert_eq!(CatalogConfig::default().enum_max_values, 1000);
        let env =
            parse(&format!("{OK}[catalog]\ndatabase = \"lake_raw\"\ntable_prefix = \"raw_\"\nenum_max_values = 5\n"))
                .unwrap();
        assert_eq!(
            env.catalog,
            CatalogConfig {
                database: Some("lake_raw".into()),
                table_prefix: "raw_".into(),
                enum_max_values: 5,
                glue: None
            }
        );
        let glue = parse(&format!(
            "{OK}[catalog]\nglue = true\nglue_region = \"ap-south-1\"\nglue_endpoint = \"http://127.0.0.1:5000\"\n"
        ))
        .unwrap();
        assert_eq!(
            glue.catalog.glue,
            Some(GlueConfig {
                region: Some("ap-south-1".into()),
                endpoint: Some("http://127.0.0.1:5000".into()),
                catalog_id: None
            })
        );
        let e = parse(&format!("{OK}[catalog]\nglue_region = \"x\"\n")).unwrap_err().to_string();
        assert!(e.contains("only with glue = true"), "{e}");
        let e = parse(&format!("{OK}[catalog]\nglue = true\nglue_catalog_id = \"12\"\n")).unwrap_err().to_string();
        assert!(e.contains("12 digits"), "{e}");
        let e = parse(&format!("{OK}[catalog]\ndatabse = \"x\"\n")).unwrap_err().to_string();
        assert!(e.contains("databse") && e.contains("env1.toml:"), "{e}");
        let e = parse(&format!("{OK}[catalog]\ndatabase = \"Lake-Raw\"\n")).unwrap_err().to_string();
        assert!(e.contains("lake_raw"), "{e}");
        let e = parse(&format!("{OK}[catalog]\ntable_prefix = \"Raw-\"\n")).unwrap_err().to_string();
        assert!(e.contains("table_prefix"), "{e}");
    }

    #[test]
    fn upload_part_and_row_group_sizes() {
        assert_eq!(parse(OK).unwrap().sync.store.part_bytes, 8 << 20);
        // Row groups: an eighth of the memory budget, at most 128 MB, unless set.
        assert_eq!(parse(OK).unwrap().sync.row_group_bytes, 128 << 20);
        let small = parse(&OK.replace("[sync]\n", "[sync]\nmemory_budget_mb = 256\n")).unwrap();
        assert_eq!(small.sync.row_group_bytes, 32 << 20);
        let set = parse(&OK.replace("[sync]\n", "[sync]\nmemory_budget_mb = 256\nrow_group_mb = 200\n")).unwrap();
        assert_eq!(set.sync.row_group_bytes, 200 << 20);
        let local = parse(&OK.replace("[sync]\n", "[sync]\nupload_part_mb = 1\n")).unwrap();
        assert_eq!(local.sync.store.part_bytes, 1 << 20);
        let s3 =
            OK.replace("url = \"lake\"", "url = \"s3://b/lake\"").replace("[sync]\n", "[sync]\nupload_part_mb = 4\n");
        let e = parse(&s3).unwrap_err().to_string();
        assert!(e.contains("upload_part_mb = 4") && e.contains("at least 5 MiB"), "{e}");
        assert!(parse(&OK.replace("[sync]\n", "[sync]\nupload_part_mb = 0\n")).is_err());
    }

    #[test]
    fn report_section_defaults_and_validation() {
        let d = parse(OK).unwrap();
        assert_eq!(d.report, ReportConfig::default());
        assert_eq!((d.report.unusual_factor, d.report.history_nights, d.sync.max_new_partitions), (3.0, 30, 10_000));
        let set = parse(&format!("{OK}[report]\nunusual_factor = 5\nunusual_min_documents = 10\n")).unwrap();
        assert_eq!((set.report.unusual_factor, set.report.unusual_min_documents), (5.0, 10));
        assert!(parse(&format!("{OK}[report]\nunusual_factor = 0.5\n"))
            .unwrap_err()
            .to_string()
            .contains("unusual_factor"));
        assert!(parse(&format!("{OK}[report]\nunusual_facter = 2\n"))
            .unwrap_err()
            .to_string()
            .contains("unusual_facter"));
        assert!(parse(&format!("{OK}[report]\nhistory_nights = 2\n")).is_err());
        assert_eq!(
            parse(&OK.replace("[sync]\n", "[sync]\nmax_new_partitions = 0\n")).unwrap().sync.max_new_partitions,
            0
        );
    }

    #[test]
    fn lake_encryption_keys() {
        assert_eq!(parse(OK).unwrap().lake.encryption, None);
        let s3 = OK.replace("url = \"lake\"", "url = \"s3://b/lake\"");
        let kms = s3.replace(
            "[sync]\n",
            "server_side_encryption = \"aws:kms\"\nsse_kms_key_id = \"alias/lake\"\nsse_bucket_key = true\n[sync]\n",
        );
        let e = parse(&kms).unwrap().lake.encryption.unwrap();
        assert_eq!(
            e,
            LakeEncryption { kind: SseKind::Kms, kms_key_id: Some("alias/lake".into()), bucket_key: Some(true) }
        );
        assert_eq!(e.to_string(), "SSE-KMS (aws:kms) with key alias/lake, S3 Bucket Key on");
        let aes = s3.replace("[sync]\n", "server_side_encryption = \"AES256\"\n[sync]\n");
        assert_eq!(parse(&aes).unwrap().lake.encryption.unwrap().kind, SseKind::S3);
        let bad = |text: &str, want: &str| {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        bad(&s3.replace("[sync]\n", "server_side_encryption = \"kms\"\n[sync]\n"), "use \"aws:kms\"");
        bad(&s3.replace("[sync]\n", "sse_kms_key_id = \"k\"\n[sync]\n"), "need server_side_encryption");
        bad(&aes.replace("[sync]\n", "sse_bucket_key = true\n[sync]\n"), "apply to SSE-KMS");
        bad(&OK.replace("[sync]\n", "server_side_encryption = \"aws:kms\"\n[sync]\n"), "s3:// lakes");
        bad(&s3.replace("[sync]\n", "sse_kms_ky_id = \"k\"\n[sync]\n"), "sse_kms_ky_id");
    }

    #[test]
    fn secret_resolution() {
        std::env::set_var("MONGOLAKE_TEST_SECRET_X", "v");
        let r = SecretRef { env: Some("MONGOLAKE_TEST_SECRET_X".into()), file: None };
        assert_eq!(r.resolve("k").unwrap(), "v");
        let missing = SecretRef { env: Some("MONGOLAKE_TEST_SECRET_MISSING".into()), file: None };
        assert!(missing.resolve("password").unwrap_err().to_string().contains("MONGOLAKE_TEST_SECRET_MISSING"));
    }
}
