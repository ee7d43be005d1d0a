//! Leases: at most one run syncs a collection at a time.
//!
//! Two schedulers firing together, or a rerun started while a slow run is still going, must not interleave
//! partition rewrites made from different reads. Before a collection is synced its lease is taken:
//!
//! - **S3** (and every object store with conditional writes): `_mongolake/leases/<db>/<coll>.json` holds
//!   `{run_id, host, pid, acquired_at, expires_at}`. Taking it is a create-if-absent; a lease past
//!   `expires_at`, or one held by a process of this host that no longer exists, is taken over with a
//!   replace-if-unchanged on its ETag, so of two runs racing for an expired lease exactly one wins. The holder
//!   renews it every third of `[sync] lease_seconds` (default 600) and deletes it when done (a sync deletes the
//!   leases of collections that commit within seconds of each other in one request, [`Releases`]); a crashed
//!   holder on another machine blocks the collection until the lease expires.
//! - **Local disk**: an exclusive OS lock on `_mongolake/leases/<db>/<coll>.lock` (the record is written into it
//!   for messages). The kernel drops the lock when the holder dies, so nothing ever needs to expire.
//!
//! A run that finds a lease held skips that collection (or waits, `--lease-wait SECONDS`) and says who holds it.
//! If a renewal finds the lease taken over (the holder stalled longer than the lease), [`Lease::lost_flag`] is
//! raised and the collection stops before its next partition write and before its watermark.
//!
//! **How the run before ended** ([`Lease::after_clean_end`]). On S3 the lease is deleted only by a holder whose
//! sync of the collection succeeded ([`Lease::release`] with `clean`); one that failed leaves it behind marked
//! `"released": true` and already expired, a crashed one leaves it as it was. So a lease taken by a plain create
//! (no lease there) says that the last run to hold it committed and left nothing behind: no staged rejects, no
//! unlisted index segments, no relayout half done. The sync then skips the listings that look for such leftovers
//! (a request each a collection a night). A run that took over the lease of a holder that may still be running
//! (expired, on another host) cannot know what that holder writes after, so it too leaves the marker. Local disk
//! (an OS lock, no lease file to delete) always looks: a listing costs nothing there. Commands that change a
//! collection outside a sync (`relayout`, `widen`) take its lease too ([`take_for_command`]) and leave the
//! marker, so the sync after them reads again what they may have written (the layout record, the schema).
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
    /// Left by a holder that did not commit (see the module docs); `expires_at` is then already past.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl std::fmt::Display for LeaseRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} (host {}, pid {}, since {}", self.run_id, self.host, self.pid, self.acquired_at)?;
        if self.released {
            write!(f, ", released after a failure")?;
        } else if self.expires_at > 0 {
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
    release: Option<Remote>,
    /// How the lease was found (see the module docs).
    found: Found,
}

/// What releasing an object-store lease needs.
struct Remote {
    lake: Lake,
    path: object_store::path::Path,
    written: Arc<tokio::sync::Mutex<Written>>,
    ttl: Duration,
    run_id: String,
}

/// How a lease was found when taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// No lease there (S3): the last holder committed and deleted it.
    Free,
    /// A lease left behind by a holder that is done: released after a failure, or of a dead process of this host.
    Done,
    /// An expired lease of a holder that may still be running (another host), or unreadable; or a local lock.
    Unknown,
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
        released: false,
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
    let mut found = Found::Free;
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
            found = match &theirs {
                Some(r) if r.released || holder_is_dead(r) => Found::Done,
                _ => Found::Unknown,
            };
            match lake.put_if_version(&path, body(), &current).await? {
                Some(v) => {
                    match &theirs {
                        Some(r) if r.released => {
                            tracing::info!(collection = %format!("{db}.{coll}"), previous = %r, "Took the lease a failed run released")
                        }
                        Some(r) => {
                            tracing::warn!(collection = %format!("{db}.{coll}"), previous = %r, "Took over an expired lease")
                        }
                        None => {}
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
        release: Some(Remote { lake: lake.clone(), path, written: version, ttl, run_id: run_id.to_string() }),
        found,
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
            Ok(Acquired::Held(Lease { lost, renewer: None, _file: Some(file), release: None, found: Found::Unknown }))
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

/// Takes the lease of `db.coll` for a command that changes the collection outside a sync (`what`: "the
/// relayout", "`mongolake widen`"), at once, or fails naming the holder. The command releases it with
/// [`Lease::release`]`(false)`, so that the next sync reads again what the command may have changed.
pub async fn take_for_command(
    lake: &Lake,
    db: &str,
    coll: &str,
    run_id: &str,
    ttl: Duration,
    what: &str,
) -> Result<Lease> {
    match acquire(lake, db, coll, run_id, ttl, Duration::ZERO).await? {
        Acquired::Held(l) => Ok(l),
        Acquired::Busy(holder) => {
            let by = holder.map(|h| h.to_string()).unwrap_or_else(|| "another run".into());
            Err(Error::collection(
                format!("{db}.{coll}"),
                format!("{by} holds the collection; run {what} again once it is done"),
            ))
        }
    }
}

impl Lease {
    /// A handle for checking from inside the write pass.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Whether the last run to hold this lease ended cleanly, so that nothing it left needs looking for (S3: the
    /// lease was not there; see the module docs). Always false on local disk.
    pub fn after_clean_end(&self) -> bool {
        self.found == Found::Free
    }

    /// Gives the lease up (unlocks the local file). On S3, if it is still ours: deleted when `clean` (this run
    /// committed the collection, or touched nothing) and no earlier holder may still be running; otherwise
    /// replaced by the `released` marker, which the next run takes at once (and then looks for leftovers).
    pub async fn release(self, clean: bool) {
        let delete = clean && self.deletable();
        self.give_up(delete).await
    }

    /// Whether a clean release deletes this lease: an object store's, unless taken over from a holder that may
    /// still be running (see the module docs).
    fn deletable(&self) -> bool {
        self.release.is_some() && self.found != Found::Unknown
    }

    /// Gives up a lease that guards no collection's leftovers (a shared load's range claim): deleted if still
    /// ours, as a clean release.
    pub async fn let_go(self) {
        self.give_up(true).await
    }

    async fn give_up(mut self, delete: bool) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if let Some(Remote { lake, path, written, ttl, run_id }) = self.release.take() {
            if !self.lost.load(Ordering::SeqCst) {
                let w = written.lock().await;
                if delete {
                    if still_ours(&lake, &path, &w, ttl).await {
                        let _ = lake.delete(&path).await;
                    }
                } else {
                    // (if the put fails the lease expires as it is, which the next run also reads as not clean)
                    let mut marker = record(&run_id, Duration::ZERO);
                    marker.released = true;
                    marker.expires_at = chrono::Utc::now().timestamp_millis() - 1;
                    let body = bytes::Bytes::from(serde_json::to_vec(&marker).expect("serialisable"));
                    let _ = lake.put_if_version(&path, body, &w.version).await;
                }
            }
        }
    }
}

/// How long a committed collection's lease waits to be deleted with the others' (at most; the run's end deletes
/// every one left at once). Meanwhile another run finds the collection held, as while it was syncing.
pub const BATCH_WAIT: Duration = Duration::from_secs(5);

/// Clean releases of object-store leases, deleted together: on S3 one DeleteObjects request for the collections
/// that committed within [`BATCH_WAIT`] of the first of them, instead of a DELETE each (a request a collection a
/// night). A lease waiting here is still held, and renewed; each is deleted only if still this run's, as by
/// [`Lease::release`]. A lease that is not to be deleted (a local lock, or one taken over from a holder that
/// may still be running) is released at once.
pub struct Releases {
    queue: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<Lease>>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Releases {
    /// Starts the task that deletes the queued leases (needs the Tokio runtime).
    pub fn start(wait: Duration) -> Releases {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Lease>();
        let task = tokio::spawn(async move {
            let mut open = true;
            while open {
                let Some(first) = rx.recv().await else { break };
                let deadline = tokio::time::Instant::now() + wait;
                let mut batch = vec![first];
                loop {
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(lease) => batch.push(lease),
                            None => {
                                open = false;
                                break;
                            }
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
                delete_together(batch).await;
            }
        });
        Releases { queue: std::sync::Mutex::new(Some(tx)), task: std::sync::Mutex::new(Some(task)) }
    }

    /// Releases the lease of a collection that committed (or touched nothing): queued for deletion with the
    /// others, or released at once when it is not to be deleted, or after [`Releases::finish`].
    pub async fn release(&self, lease: Lease) {
        if !lease.deletable() {
            return lease.release(true).await;
        }
        let refused = match &*self.queue.lock().expect("not poisoned") {
            Some(tx) => tx.send(lease).err().map(|e| e.0),
            None => Some(lease),
        };
        if let Some(lease) = refused {
            delete_together(vec![lease]).await;
        }
    }

    /// Deletes every lease still queued, and waits for the deletions under way.
    pub async fn finish(&self) {
        drop(self.queue.lock().expect("not poisoned").take());
        let task = self.task.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Whether the lease this run last wrote as `w` is still its own, before deleting it. Another run takes over an
/// expired lease only, so one written less than a third of its time ago is (no request to read it first); an
/// older one (its renewals failed) is read, and is if it is still that version.
async fn still_ours(lake: &Lake, path: &object_store::path::Path, w: &Written, ttl: Duration) -> bool {
    w.at.elapsed() < ttl / 3 || matches!(lake.get_versioned(path).await, Ok(Some((_, current))) if current == w.version)
}

/// Deletes the queued leases that are still this run's, in one request (see [`Lease::give_up`] for which are).
async fn delete_together(batch: Vec<Lease>) {
    crate::fault::delay("before_release").await;
    let mut lake = None;
    let mut paths = Vec::with_capacity(batch.len());
    for mut lease in batch {
        if let Some(r) = lease.renewer.take() {
            r.abort();
        }
        let Some(Remote { lake: l, path, written, ttl, .. }) = lease.release.take() else { continue };
        if lease.lost.load(Ordering::SeqCst) {
            continue;
        }
        if still_ours(&l, &path, &*written.lock().await, ttl).await {
            paths.push(path);
            lake.get_or_insert(l);
        }
    }
    if let Some(lake) = lake {
        if let Err(e) = lake.delete_all(paths).await {
            tracing::warn!(error = %e, "Could not delete the leases of committed collections: they expire");
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

    fn memory_lake() -> Lake {
        let store = Arc::new(object_store::memory::InMemory::new());
        Lake::from_store(store, object_store::path::Path::default(), "memory://lake")
    }

    async fn take(lake: &Lake, run: &str) -> Lease {
        take_of(lake, "c", run).await
    }

    async fn record_of(lake: &Lake) -> Option<LeaseRecord> {
        let bytes = lake.get_opt(&lake.lease_path("db", "c")).await.unwrap()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn only_a_lease_found_absent_says_the_run_before_ended_cleanly() {
        let lake = memory_lake();
        let first = take(&lake, "run-1").await;
        assert!(first.after_clean_end(), "no lease there: nothing was left");
        first.release(false).await;
        let marker = record_of(&lake).await.expect("a failed run leaves its lease");
        assert!(marker.released && marker.expires_at < chrono::Utc::now().timestamp_millis(), "{marker:?}");
        assert_eq!(marker.run_id, "run-1");

        // Taken at once (expired), and not clean; a success after it deletes it.
        let second = take(&lake, "run-2").await;
        assert!(!second.after_clean_end());
        second.release(true).await;
        assert_eq!(record_of(&lake).await, None);
        let third = take(&lake, "run-3").await;
        assert!(third.after_clean_end());

        // A crashed holder on another host, found expired: whoever takes over cannot know what that holder
        // still writes, so even its success leaves the marker, and the run after looks for leftovers.
        drop(third);
        let stale = LeaseRecord { host: "elsewhere".into(), expires_at: 1, ..record("run-3", Duration::ZERO) };
        lake.put(&lake.lease_path("db", "c"), serde_json::to_vec(&stale).unwrap().into()).await.unwrap();
        let fourth = take(&lake, "run-4").await;
        assert!(!fourth.after_clean_end());
        fourth.release(true).await;
        assert!(record_of(&lake).await.is_some_and(|r| r.released && r.run_id == "run-4"));
        let fifth = take(&lake, "run-5").await;
        assert!(!fifth.after_clean_end());
        fifth.release(true).await;
        assert_eq!(record_of(&lake).await, None, "a released lease's holder is done: deleted after a success");
        assert!(take(&lake, "run-6").await.after_clean_end());
    }

    async fn take_of(lake: &Lake, coll: &str, run: &str) -> Lease {
        match try_acquire(lake, "db", coll, run, Duration::from_secs(600)).await.unwrap() {
            Acquired::Held(l) => l,
            Acquired::Busy(h) => panic!("{run}: held by {h:?}"),
        }
    }

    #[tokio::test]
    async fn committed_leases_are_deleted_together_and_the_runs_end_deletes_what_is_left() {
        let lake = memory_lake();
        let path = |c: &str| lake.lease_path("db", c);
        let releases = Releases::start(Duration::from_millis(300));
        let a = take_of(&lake, "a", "run-1").await;
        let b = take_of(&lake, "b", "run-1").await;
        releases.release(a).await;
        releases.release(b).await;
        // Queued: still held, so another run finds the collection busy.
        assert!(lake.get_opt(&path("a")).await.unwrap().is_some());
        assert!(matches!(
            try_acquire(&lake, "db", "a", "run-2", Duration::from_secs(600)).await.unwrap(),
            Acquired::Busy(_)
        ));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(lake.get_opt(&path("a")).await.unwrap(), None, "deleted once the batch waited its time");
        assert_eq!(lake.get_opt(&path("b")).await.unwrap(), None);

        // One taken over by another run meanwhile (its renewal found it so) is not deleted.
        let c = take_of(&lake, "c", "run-1").await;
        let d = take_of(&lake, "d", "run-1").await;
        c.lost.store(true, Ordering::SeqCst);
        releases.release(c).await;
        releases.release(d).await;
        releases.finish().await;
        assert!(lake.get_opt(&path("c")).await.unwrap().is_some(), "not ours any more: left alone");
        assert_eq!(lake.get_opt(&path("d")).await.unwrap(), None, "the run's end deletes what is queued at once");
        // After the end, a release deletes at once.
        let e = take_of(&lake, "e", "run-1").await;
        releases.release(e).await;
        assert_eq!(lake.get_opt(&path("e")).await.unwrap(), None);
        // One taken over from a holder that may still be running is not deleted but marked, at once.
        let stale = LeaseRecord { host: "elsewhere".into(), expires_at: 1, ..record("run-0", Duration::ZERO) };
        lake.put(&path("f"), serde_json::to_vec(&stale).unwrap().into()).await.unwrap();
        let f = take_of(&lake, "f", "run-1").await;
        let releases = Releases::start(Duration::from_secs(60));
        releases.release(f).await;
        let marker: LeaseRecord = serde_json::from_slice(&lake.get_opt(&path("f")).await.unwrap().unwrap()).unwrap();
        assert!(marker.released && marker.run_id == "run-1", "{marker:?}");
    }

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
