//! The environment TOML as serde reads it: every key, its default, `deny_unknown_fields` so a typo is an error
//! naming the key. [`super::environment`] validates it into the typed configuration a run uses.
use super::secret::{SecretRef, ValueOrRef};
use serde::Deserialize;
use std::path::PathBuf;
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    pub(super) mongodb: RawMongo,
    pub(super) lake: RawLake,
    #[serde(default)]
    pub(super) sync: RawSync,
    pub(super) email: Option<RawEmail>,
    #[serde(default)]
    pub(super) catalog: RawCatalog,
    #[serde(default)]
    pub(super) masking: MaskingConfig,
    #[serde(default)]
    pub(super) report: ReportConfig,
}

/// `[report]`: when the run report calls a collection's night unusual (against its own history in the lake, see
/// [`crate::report::history`]) and when it warns of partitions too small to be useful. Every key has a default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Tonight is unusual when it is this many times above (or below) the median of the usual nights, and
    /// outside their usual range (10th to 90th percentile).
    #[serde(default = "default_unusual_factor")]
    pub unusual_factor: f64,
    /// Nights of history a metric needs before anything is flagged.
    #[serde(default = "default_unusual_min_nights")]
    pub unusual_min_nights: usize,
    /// Nights compared with tonight (and drawn in the mail's charts).
    #[serde(default = "default_history_nights")]
    pub history_nights: usize,
    /// Documents read are compared only when tonight's or the usual median is at least this many (a
    /// collection reading 3 instead of 1 a night is not news).
    #[serde(default = "default_unusual_min_documents")]
    pub unusual_min_documents: u64,
    /// A night is called slow only when it took at least this many seconds.
    #[serde(default = "default_unusual_min_seconds")]
    pub unusual_min_seconds: f64,
    /// Partitions written are compared only when tonight wrote at least this many.
    #[serde(default = "default_unusual_min_partitions")]
    pub unusual_min_partitions: u64,
    /// Rows in the lake falling by more than this percentage since the previous night is unusual.
    #[serde(default = "default_rows_drop_percent")]
    pub rows_drop_percent: f64,
    /// Warn about a collection with at least this many partitions ...
    #[serde(default = "default_sparse_partitions")]
    pub sparse_partitions: u64,
    /// ... that average fewer rows than this.
    #[serde(default = "default_sparse_rows_per_partition")]
    pub sparse_rows_per_partition: f64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

pub(super) fn default_unusual_factor() -> f64 {
    // The nights operators described: 0 read where thousands are usual, a run five times slower.
    3.0
}
pub(super) fn default_unusual_min_nights() -> usize {
    5
}
pub(super) fn default_history_nights() -> usize {
    30
}
pub(super) fn default_unusual_min_documents() -> u64 {
    100
}
pub(super) fn default_unusual_min_seconds() -> f64 {
    60.0
}
pub(super) fn default_unusual_min_partitions() -> u64 {
    20
}
pub(super) fn default_rows_drop_percent() -> f64 {
    5.0
}
pub(super) fn default_sparse_partitions() -> u64 {
    1_000
}
pub(super) fn default_sparse_rows_per_partition() -> f64 {
    2.0
}

/// `[masking]`: secrets of the masking rules in collections.csv's `mask` column (see [`crate::mask`]).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// The HMAC-SHA-256 key of `hash` rules (at least 16 characters): one key per environment, so hashed ids
    /// join across collections; rotating it changes every hash.
    pub hmac_key: Option<SecretRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMongo {
    pub(super) uri: ValueOrRef,
    pub(super) username: Option<ValueOrRef>,
    pub(super) password: Option<ValueOrRef>,
    pub(super) auth_source: Option<String>,
    #[serde(default = "default_batch_size")]
    pub(super) batch_size: u32,
    #[serde(default = "default_timeout")]
    pub(super) connect_timeout_seconds: u64,
    pub(super) tls: Option<bool>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) tls_certificate_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLake {
    pub(super) url: String,
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    #[serde(default)]
    pub(super) allow_http: bool,
    pub(super) access_key_id: Option<ValueOrRef>,
    pub(super) secret_access_key: Option<ValueOrRef>,
    /// Server-side encryption of every object written: `"aws:kms"` (SSE-KMS), `"aws:kms:dsse"` (DSSE-KMS) or
    /// `"AES256"` (SSE-S3). Default: none sent (the bucket's default encryption applies).
    pub(super) server_side_encryption: Option<String>,
    /// The KMS key (id, alias or ARN) of `aws:kms`; default: the account's AWS-managed key `aws/s3`.
    pub(super) sse_kms_key_id: Option<String>,
    /// S3 Bucket Key for SSE-KMS (fewer KMS requests, lower cost); default: not sent (the bucket's setting).
    pub(super) sse_bucket_key: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    #[serde(default = "default_tz")]
    pub(super) timezone: String,
    #[serde(default = "default_overlap")]
    pub(super) overlap_seconds: u64,
    #[serde(default = "default_concurrency")]
    pub(super) concurrency: usize,
    /// Default: [`default_partition_concurrency`], which depends on where the lake is.
    pub(super) partition_concurrency: Option<usize>,
    #[serde(default = "default_memory")]
    pub(super) memory_budget_mb: u64,
    #[serde(default = "default_row_group")]
    pub(super) row_group_rows: usize,
    /// A row group also ends once it is this large, encoded (checked every 1,024 rows). Default: an eighth of
    /// the memory budget, at most 128 (the budget's last quarter holds the partitions being encoded, two a core).
    #[serde(default)]
    pub(super) row_group_mb: Option<usize>,
    /// Keys per key-index segment file.
    #[serde(default = "default_index_segment_keys")]
    pub(super) index_segment_keys: usize,
    /// Reconcile (compare key sets, remove deleted documents) when the last one is this many days old.
    #[serde(default)]
    pub(super) reconcile_every_days: Option<u32>,
    /// After an incremental pass, compare MongoDB's document count with the lake's rows and reconcile when they
    /// differ (deletes land the same night).
    #[serde(default = "default_count_check")]
    pub(super) reconcile_on_count_mismatch: bool,
    /// What a value its column's type cannot hold does in a collection synced for the first time
    /// (`variant` or `widen`); a collection's schema keeps the policy it was created with.
    #[serde(default)]
    pub(super) type_conflicts: TypeConflicts,
    #[serde(default = "default_lease")]
    pub(super) lease_seconds: u64,
    /// Full loads read this many `_id` ranges with concurrent cursors.
    #[serde(default = "default_read_ranges")]
    pub(super) read_ranges: usize,
    /// With `--shard K/N`, a first load of at least this many documents is split into N `_id` ranges that
    /// every worker helps read and encode (0: never).
    #[serde(default = "default_shard_ranges_min_docs")]
    pub(super) shard_ranges_min_docs: u64,
    /// With `--shard K/N`, a worker done with its own collections looks for ranges to help with for at least
    /// this long after it started.
    #[serde(default = "default_shard_help_wait")]
    pub(super) shard_help_wait_seconds: u64,
    /// Attempts per collection when it fails with a transient error (1: no retry).
    #[serde(default = "default_retry_attempts")]
    pub(super) retry_attempts: u32,
    /// First pause before a retry; doubled per attempt, with jitter, capped at `retry_max_backoff_seconds`.
    #[serde(default = "default_retry_backoff_ms")]
    pub(super) retry_backoff_ms: u64,
    #[serde(default = "default_retry_max_backoff")]
    pub(super) retry_max_backoff_seconds: u64,
    /// One S3 request may take this long (object_store's client timeout).
    #[serde(default = "default_store_timeout")]
    pub(super) store_timeout_seconds: u64,
    #[serde(default = "default_store_connect_timeout")]
    pub(super) store_connect_timeout_seconds: u64,
    /// Retries of one S3 request inside object_store (5xx, SlowDown, connection errors) before the error reaches
    /// the collection-level retry.
    #[serde(default = "default_store_retries")]
    pub(super) store_retries: usize,
    /// Partition files are streamed to the lake in parts of this size (S3 multipart upload; at least 5 there).
    #[serde(default = "default_upload_part_mb")]
    pub(super) upload_part_mb: usize,
    /// A run that would create more new partitions than this in one collection fails that collection before
    /// writing anything (a `partition_by` typo such as `_id` makes one partition per document); 0: no limit.
    #[serde(default = "default_max_new_partitions")]
    pub(super) max_new_partitions: u64,
}

/// `[sync] max_new_partitions` by default: ten years of daily partitions (3,650) or a year of them for 27
/// facilities fit in one first load; a partition per document of a collection of more than 10,000 does not.
/// Each partition is a file (a PUT and a copy on S3) and a value Athena's projection enumerates.
pub const MAX_NEW_PARTITIONS: u64 = 10_000;

pub(super) fn default_max_new_partitions() -> u64 {
    MAX_NEW_PARTITIONS
}

pub(super) fn default_retry_attempts() -> u32 {
    3
}
pub(super) fn default_retry_backoff_ms() -> u64 {
    2_000
}
pub(super) fn default_retry_max_backoff() -> u64 {
    60
}
pub(super) fn default_store_timeout() -> u64 {
    120
}
pub(super) fn default_store_connect_timeout() -> u64 {
    10
}
pub(super) fn default_store_retries() -> usize {
    5
}
pub(super) fn default_upload_part_mb() -> usize {
    8
}

pub(super) fn default_shard_ranges_min_docs() -> u64 {
    1_000_000
}
pub(super) fn default_shard_help_wait() -> u64 {
    15
}

pub(super) fn default_read_ranges() -> usize {
    1
}

pub(super) fn default_count_check() -> bool {
    true
}

pub(super) fn default_lease() -> u64 {
    600
}

impl Default for RawSync {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    pub(super) smtp_host: String,
    #[serde(default = "default_smtp_port")]
    pub(super) smtp_port: u16,
    pub(super) from: String,
    pub(super) to: Vec<String>,
    pub(super) username: Option<ValueOrRef>,
    pub(super) password: Option<ValueOrRef>,
    #[serde(default = "default_tls")]
    pub(super) tls: String,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) only_on_failure: bool,
    /// Attach the run report as JSON (`<run-id>.json`).
    #[serde(default = "yes")]
    pub(super) attach_json: bool,
    /// PEM CA bundle to verify the SMTP server with instead of the system roots (a private CA); not a secret.
    pub(super) tls_ca_file: Option<PathBuf>,
    /// Seconds one SMTP command may take; the whole send is bounded by four times this.
    #[serde(default = "default_email_timeout")]
    pub(super) timeout_seconds: u64,
}

pub(super) fn default_email_timeout() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalog {
    pub(super) database: Option<String>,
    #[serde(default)]
    pub(super) table_prefix: String,
    #[serde(default = "default_enum_max_values")]
    pub(super) enum_max_values: usize,
    /// Keep the tables (and their views) in the Glue Data Catalog by API on every run.
    #[serde(default)]
    pub(super) glue: bool,
    /// The Glue region; default: the AWS SDK's chain (`AWS_REGION`, the profile).
    pub(super) glue_region: Option<String>,
    /// An endpoint override (an AWS-compatible test server such as moto); default: the region's Glue endpoint.
    pub(super) glue_endpoint: Option<String>,
    /// The Data Catalog's account id, when it is not the caller's own.
    pub(super) glue_catalog_id: Option<String>,
}

impl Default for RawCatalog {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

pub(super) fn default_enum_max_values() -> usize {
    // Athena's advice is "a few dozen"; the real limit is the table's metadata size in Glue (about 1 MB gzipped),
    // which 1000 short values stay far below.
    1000
}
pub(super) fn default_batch_size() -> u32 {
    10_000
}
pub(super) fn default_timeout() -> u64 {
    10
}
pub(super) fn default_tz() -> String {
    "UTC".into()
}
pub(super) fn default_overlap() -> u64 {
    300
}
pub(super) fn default_concurrency() -> usize {
    4
}
/// Partitions of one collection written at once, by default. On local disk a write is CPU (the encoding, on
/// blocking threads) and a rename. On S3 it is mostly waiting for round trips (a GET of the file being merged,
/// a PUT), tens of milliseconds each on a real bucket, so many more are in flight: the encodes themselves are
/// still bounded by the cores ([`crate::sync::context`]'s encode slots) and their memory by the budget.
pub(super) fn default_partition_concurrency(object_store: bool) -> usize {
    match object_store {
        true => S3_PARTITION_CONCURRENCY,
        false => 8,
    }
}

/// See [`default_partition_concurrency`]; measured with `scripts/bench.sh --small` (README, "Measured").
pub(super) const S3_PARTITION_CONCURRENCY: usize = 64;
pub(super) fn default_memory() -> u64 {
    1024
}
pub(super) fn default_row_group() -> usize {
    1 << 20
}
/// Keys per key-index segment file, by default (`[sync] index_segment_keys`). A segment that grows past twice
/// this (new keys land in the last one) is split.
pub const INDEX_SEGMENT_KEYS: usize = 128 * 1024;

pub(super) fn default_index_segment_keys() -> usize {
    INDEX_SEGMENT_KEYS
}
pub(super) fn default_smtp_port() -> u16 {
    587
}
pub(super) fn default_tls() -> String {
    "starttls".into()
}
pub(super) fn yes() -> bool {
    true
}

/// `[sync] type_conflicts`: what a value that its column's type cannot hold does (see
/// `crate::schema::Conflicts`). Applies to collections synced for the first time: each schema keeps its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeConflicts {
    /// The column keeps its type and the value goes to a variant column beside it (`amount__v_text`).
    #[default]
    Variant,
    /// The column widens (to text for mixed kinds) and every file of the table is rewritten.
    Widen,
}
