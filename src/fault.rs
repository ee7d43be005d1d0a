//! Fault injection for crash tests: `MONGOLAKE_FAULT=<point>[:<n>]` makes the process abort (like `kill -9`: no
//! destructors, no cleanup) the n-th time (default 1st) it reaches the named point. Unset in production, where
//! each check is one relaxed atomic load after the first.
//!
//! Points: `after_batch` (a raw batch was read and buffered), `staged` (a partition's new file is in staging,
//! not yet moved into place), `after_partition` (a partition file was moved into place), `before_schema` (all
//! partitions written, schema and key index not yet saved), `before_watermark` (schema and key index saved, state
//! row not yet appended). `mongolake relayout` ([`crate::sync::relayout`]): `relayout_intent` (the intent recorded, nothing
//! else done), `relayout_written` (every new file written outside the table, the table untouched),
//! `relayout_moved` (a new file moved into the table), `relayout_deleted` (an old layout's file deleted),
//! `relayout_before_record` (everything done but the new settings recorded).
//!
//! `MONGOLAKE_FAIL=<point>` fails the collection with an error at a point instead (a run that ends cleanly but
//! does not commit: it releases what it holds as a failed run does); only `before_watermark` takes it.
//!
//! `MONGOLAKE_DELAY=<point>:<ms>` sleeps at a point instead (tests of concurrent runs use `after_lease` to hold
//! a collection's lease long enough for the other run to find it held; `before_release` holds back a committed
//! collection's lease delete, which the run must wait for before it ends).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn spec() -> &'static Option<(String, u64)> {
    SPEC.get_or_init(|| {
        let v = std::env::var("MONGOLAKE_FAULT").ok()?;
        let (name, n) = match v.split_once(':') {
            Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((name, n.max(1)))
    })
}

/// Aborts the process when `point` is the configured fault point and this is its n-th hit.
pub fn point(point: &str) {
    if let Some((name, n)) = spec() {
        if name == point && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("MONGOLAKE_FAULT: aborting at `{point}` (hit {n})");
            std::process::abort();
        }
    }
}

static DELAY: OnceLock<Option<(String, u64)>> = OnceLock::new();

/// Sleeps at `point` when `MONGOLAKE_DELAY=<point>:<ms>` names it.
pub async fn delay(point: &str) {
    let spec = DELAY.get_or_init(|| {
        let v = std::env::var("MONGOLAKE_DELAY").ok()?;
        let (name, ms) = v.split_once(':')?;
        Some((name.to_string(), ms.parse().ok()?))
    });
    if let Some((name, ms)) = spec {
        if name == point {
            tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
        }
    }
}

/// An error when `MONGOLAKE_FAIL` names `point`, for collection `name`.
pub fn failure(point: &str, name: &str) -> crate::Result<()> {
    static FAIL: OnceLock<Option<String>> = OnceLock::new();
    match FAIL.get_or_init(|| std::env::var("MONGOLAKE_FAIL").ok()) {
        Some(p) if p == point => Err(crate::Error::collection(name, format!("MONGOLAKE_FAIL: failing at `{point}`"))),
        _ => Ok(()),
    }
}
