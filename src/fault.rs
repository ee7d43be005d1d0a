//! Fault injection for crash tests: `MONGOLAKE_FAULT=<point>[:<n>]` makes the process abort (like `kill -9`: no
//! destructors, no cleanup) the n-th time (default 1st) it reaches the named point. Unset in production, where
//! each check is one relaxed atomic load after the first.
//!
//! Points: `after_partition` (a partition file was moved into place), `before_schema` (all partitions written,
//! schema not yet saved), `before_watermark` (schema saved, state row not yet appended).
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
