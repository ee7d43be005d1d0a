//! Leases: at most one run syncs a collection at a time.
//!
//! Two schedulers firing together, or a rerun started while a slow run is still going, must not interleave
//! partition rewrites made from different reads. Before a collection is synced its lease is taken:
//!
//! - **S3** (and every object store with conditional writes): `_mongolake/leases/<db>/<coll>.json` holds
//!   `{run_id, host, pid, acquired_at, expires_at}`. Taking it is a create-if-absent; a lease past
//!   `expires_at`, or one held by a process of this host that no longer exists, is taken over with a
//!   replace-if-unchanged on its ETag, so of two runs racing for an expired lease exactly one wins. The holder
//!   renews it every third of `[sync] lease_seconds` (default 600) and deletes it when done; a crashed holder on
//!   another machine blocks the collection until the lease expires.
//! - **Local disk**: an exclusive OS lock on `_mongolake/leases/<db>/<coll>.lock` (the record is written into it
//!   for messages). The kernel drops the lock when the holder dies, so nothing ever needs to expire.
//!
//! A run that finds a lease held skips that collection (or waits, `--lease-wait SECONDS`) and says who holds it.
//! If a renewal finds the lease taken over (the holder stalled longer than the lease), [`Lease::lost_flag`] is
//! raised and the collection stops before its next partition write and before its watermark.
use crate::sink::conditional::Version;
use crate::sink::Lake;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a lease file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: String,
    /// Epoch milliseconds (0 for local locks, which do not expire).
    pub expires_at: i64,
}

impl std::fmt::Display for LeaseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} (host {}, pid {}, since {}", self.run_id, self.host, self.pid, self.acquired_at)?;
        if self.expires_at > 0 {
            write!(f, ", lease expires {}", crate::schema::text::format_millis(self.expires_at))?;
        }
        write!(f, ")")
    }
}

/// The outcome of trying to take a lease.
pub enum Acquired {
    Held(Lease),
    /// Someone else holds it (their record, when readable).
    Busy(Option<LeaseRecord>),
}

/// A held lease; release it with [`Lease::release`] (dropping it stops renewals; S3 leases then expire).
pub struct Lease {
    lost: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// Local disk: the locked file (the lock lives as long as the handle).
    _file: Option<std::fs::File>,
    release: Option<(Lake, object_store::path::Path, Arc<tokio::sync::Mutex<Written>>, Duration)>,
}

/// The lease's version as this run last wrote it, and when.
struct Written {
    version: Version,
    at: std::time::Instant,
}

impl Written {
    fn now(version: Version) -> Written {
        Written { version, at: std::time::Instant::now() }
    }
}

fn host() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

fn record(run_id: &str, ttl: Duration) -> LeaseRecord {
    let now = chrono::Utc::now();
    LeaseRecord {
        run_id: run_id.into(),
        host: host(),
        pid: std::process::id(),
        acquired_at: now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        expires_at: if ttl.is_zero() { 0 } else { now.timestamp_millis() + ttl.as_millis() as i64 },
    }
}

/// A lease of this host whose process is gone can be taken at once (Linux: /proc/<pid>).
fn holder_is_dead(r: &LeaseRecord) -> bool {
    r.host == host() && r.pid != std::process::id() && !std::path::Path::new(&format!("/proc/{}", r.pid)).exists()
}

/// Fails when this run's lease on collection `name` was taken over (`lost` is the lease's
/// [`Lease::lost_flag`]): the run stops before its next write and before the watermark.
pub fn check(lost: &AtomicBool, name: &str) -> Result<()> {
    if lost.load(Ordering::SeqCst) {
        return Err(Error::collection(
            name,
            "this run's lease on the collection expired and another run took it over (was this process stalled \
             for longer than [sync] lease_seconds?); stopped before the watermark, the other run completes it",
        ));
    }
    Ok(())
}

/// Tries once to take the lease of `db.coll` for `run_id`.
pub async fn try_acquire(lake: &Lake, db: &str, coll: &str, run_id: &str, ttl: Duration) -> Result<Acquired> {
    if let Some(dir) = lake.local_dir() {
        return try_lock_local(dir, db, coll, run_id);
    }
    let path = lake.lease_path(db, coll);
    let mine = record(run_id, ttl);
    let body = || bytes::Bytes::from(serde_json::to_vec(&mine).expect("serialisable"));
    let version = match lake.put_if_absent(&path, body()).await? {
        Some(v) => v,
        None => {
            let Some((bytes, current)) = lake.get_versioned(&path).await? else {
                return Ok(Acquired::Busy(None)); // released between our two calls: try again later
            };
            let theirs: Option<LeaseRecord> = serde_json::from_slice(&bytes).ok();
            let stale = match &theirs {
                Some(r) => r.expires_at < chrono::Utc::now().timestamp_millis() || holder_is_dead(r),
                None => true, // unreadable: written by nothing we know; take it over
            };
            if !stale {
                return Ok(Acquired::Busy(theirs));
            }
            match lake.put_if_version(&path, body(), &current).await? {
                Some(v) => {
                    if let Some(r) = &theirs {
                        tracing::warn!(collection = %format!("{db}.{coll}"), previous = %r, "Took over an expired lease");
                    }
                    v
                }
                None => return Ok(Acquired::Busy(theirs)),
            }
        }
    };
    let lost = Arc::new(AtomicBool::new(false));
    let version = Arc::new(tokio::sync::Mutex::new(Written::now(version)));
    let renewer =
        tokio::spawn(renew(lake.clone(), path.clone(), run_id.to_string(), ttl, version.clone(), lost.clone()));
    Ok(Acquired::Held(Lease {
        lost,
        renewer: Some(renewer),
        _file: None,
        release: Some((lake.clone(), path, version, ttl)),
    }))
}

async fn renew(
    lake: Lake,
    path: object_store::path::Path,
    run_id: String,
    ttl: Duration,
    version: Arc<tokio::sync::Mutex<Written>>,
    lost: Arc<AtomicBool>,
) {
    let mut valid_until = std::time::Instant::now() + ttl;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let body = bytes::Bytes::from(serde_json::to_vec(&record(&run_id, ttl)).expect("serialisable"));
        let mut v = version.lock().await;
        match lake.put_if_version(&path, body, &v.version).await {
            Ok(Some(new)) => {
                *v = Written::now(new);
                valid_until = std::time::Instant::now() + ttl;
            }
            Ok(None) => {
                tracing::error!(lease = %lake.display(&path), "Lease taken over by another run; stopping this collection");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %lake.display(&path), error = %e, "Could not renew the lease; retrying");
                if std::time::Instant::now() >= valid_until {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

fn try_lock_local(dir: &std::path::Path, db: &str, coll: &str, run_id: &str) -> Result<Acquired> {
    use std::io::{Read, Seek, Write};
    let lock_dir = dir.join(crate::sink::layout::local_lock_dir(db));
    std::fs::create_dir_all(&lock_dir).map_err(|e| Error::io(format!("creating {}", lock_dir.display()), e))?;
    let path = lock_dir.join(crate::sink::layout::local_lock_file(coll));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(format!("opening lease {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => {
            let body = serde_json::to_vec(&record(run_id, Duration::ZERO)).expect("serialisable");
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(&body))
                .map_err(|e| Error::io(format!("writing lease {}", path.display()), e))?;
            let lost = Arc::new(AtomicBool::new(false));
            Ok(Acquired::Held(Lease { lost, renewer: None, _file: Some(file), release: None }))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            // The holder truncates the file, then writes its record: a read in between finds nothing (seen in
            // tests/concurrency.rs as a skip naming no holder). Look again a few times, 10 ms apart.
            for attempt in 0..10 {
                let mut text = String::new();
                let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
                if let Ok(holder) = serde_json::from_str(&text) {
                    return Ok(Acquired::Busy(Some(holder)));
                }
                if attempt < 9 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Ok(Acquired::Busy(None))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking lease {}", path.display()), e)),
    }
}

/// Takes the lease, retrying every 2 seconds for up to `wait`; Busy when still held after that.
pub async fn acquire(
    lake: &Lake,
    db: &str,
    coll: &str,
    run_id: &str,
    ttl: Duration,
    wait: Duration,
) -> Result<Acquired> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match try_acquire(lake, db, coll, run_id, ttl).await? {
            Acquired::Busy(holder) if std::time::Instant::now() < deadline => {
                tracing::info!(collection = %format!("{db}.{coll}"), holder = ?holder.map(|h| h.to_string()), "Waiting for the lease");
                tokio::time::sleep(Duration::from_secs(2).min(deadline - std::time::Instant::now())).await;
            }
            other => return Ok(other),
        }
    }
}

impl Lease {
    /// A handle for checking from inside the write pass.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Gives the lease up (deletes the S3 lease if it is still ours; unlocks the local file).
    pub async fn release(mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Some((lake, path, written, ttl)) = self.release.take() {
            if !self.lost.load(Ordering::SeqCst) {
                let w = written.lock().await;
                // Only delete what is still ours. Another run takes over an expired lease only, so one this run
                // wrote less than a third of its time ago is deleted at once (no request to read it first); an
                // older one (its renewals failed) is read, and deleted only if it is still our version.
                let fresh = w.at.elapsed() < ttl / 3;
                let ours =
                    fresh || matches!(lake.get_versioned(&path).await, Ok(Some((_, current))) if current == w.version);
                if ours {
                    let _ = lake.delete(&path).await;
                }
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_caught_between_truncating_and_writing_its_record_is_still_named() {
        let dir = tempfile::tempdir().unwrap();
        let Acquired::Held(_held) = try_lock_local(dir.path(), "db", "c", "run-a").unwrap() else {
            panic!("a free lease is taken")
        };
        // The holder rewriting its record: truncated now, written again 30 ms later.
        let path = dir.path().join("_mongolake/leases/db/c.lock");
        let body = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"").unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            std::fs::write(&path, body).unwrap();
        });
        match try_lock_local(dir.path(), "db", "c", "run-b").unwrap() {
            Acquired::Busy(Some(r)) => assert_eq!(r.run_id, "run-a"),
            Acquired::Busy(None) => panic!("the holder was not named"),
            Acquired::Held(_) => panic!("a held lease was taken"),
        }
        writer.join().unwrap();
    }
}
