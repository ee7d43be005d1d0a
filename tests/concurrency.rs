//! Two runs of the same environment at once: collection leases keep them from interleaving, and the lake ends
//! exactly as after one run. Needs the servers of scripts/test.sh.
mod common;

use common::*;
use serde_json::json;
use std::path::Path;

/// The five seeded hospital collections, partitioned as in the repository's collections.csv.
const HOSPITAL: [&str; 5] = [
    "{db},patients,modified_at,date(created_at),",
    "{db},visits,modified_at,facility_id/date(created_at),",
    "{db},bills,modified_at,facility_id/date(created_at),",
    "{db},lab_results,modified_at,date(created_at),",
    "{db},pharmacy_stock,modified_at,facility_id,",
];

/// Starts two syncs of `env` together and returns both outcomes.
fn two_at_once(p: &Project, env: &str, extra: &[&str]) -> (Run, Run) {
    let dir = p.path().to_str().unwrap().to_string();
    let args: Vec<String> = ["sync", "--env", env, "--config-dir", &dir, "--no-email"]
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().map(|s| s.to_string()))
        .collect();
    // Each run holds a collection's lease for at least 1.5 s, so the two runs surely overlap.
    let hold = [("MONGOLAKE_DELAY", "after_lease:1500")];
    std::thread::scope(|s| {
        let a = s.spawn(|| run_binary(&args.iter().map(String::as_str).collect::<Vec<_>>(), p.path(), &hold));
        let b = s.spawn(|| run_binary(&args.iter().map(String::as_str).collect::<Vec<_>>(), p.path(), &hold));
        (a.join().unwrap(), b.join().unwrap())
    })
}

/// Every collection synced by at least one run. Without waiting, a run that finds a collection's lease held
/// skips it naming the holder (at least one must have: both runs hold every lease they get for 1.5 s); a
/// collection may still be synced by both, one after the other, when the first released it before the second
/// reached it. With `--lease-wait` both runs sync every collection, in turn.
fn assert_each_collection_synced(a: &Run, b: &Run, db: &str, waited: bool) {
    let mut skipped_total = 0;
    for c in ["patients", "visits", "bills", "lab_results", "pharmacy_stock"] {
        let name = format!("{db}.{c}");
        let line = |r: &Run| r.stdout.lines().find(|l| l.starts_with(&name)).map(str::to_string).unwrap_or_default();
        let (la, lb) = (line(a), line(b));
        let oks = [&la, &lb].iter().filter(|l| l.split_whitespace().nth(1) == Some("ok")).count();
        skipped_total += [&la, &lb].iter().filter(|l| l.split_whitespace().nth(1) == Some("skipped")).count();
        if waited {
            assert_eq!(oks, 2, "{name}: both runs sync it, one after the other:\n{la}\n{lb}");
        } else {
            assert!(oks >= 1, "{name}: some run syncs it:\n{la}\n{lb}");
        }
    }
    if !waited {
        assert!(skipped_total >= 1, "two overlapping runs contended for no lease:\n{}\n{}", a.stdout, b.stdout);
        let all = format!("{}{}", a.stdout, b.stdout);
        assert!(all.contains("skipped: another run holds the collection: run "), "the holder is named:\n{all}");
    }
}

async fn concurrent_runs_leave_an_exact_lake(name: &str, s3: bool) {
    let p = Project::new(name);
    p.seed(1500, 31);
    p.write_collections(&HOSPITAL);
    let reference = p.local_env("single", "Asia/Kolkata");
    p.sync("single", &[]).assert_ok();
    let lake = if s3 {
        let bucket = unique_bucket(name);
        p.s3_env("dev", &bucket, "lake", "Asia/Kolkata")
    } else {
        p.local_env("dev", "Asia/Kolkata")
    };
    let (a, b) = two_at_once(&p, "dev", &[]);
    a.assert_ok();
    b.assert_ok();
    assert_each_collection_synced(&a, &b, &p.db, false);
    assert_same_lake(&dump(&reference), &dump(&lake), "two concurrent runs vs one run");

    // With --lease-wait the second run waits for each collection and then syncs it (reading nothing new).
    p.mutate(0.02, 31);
    p.sync("single", &[]).assert_ok();
    let (a, b) = two_at_once(&p, "dev", &["--lease-wait", "120"]);
    a.assert_ok();
    b.assert_ok();
    assert_each_collection_synced(&a, &b, &p.db, true);
    assert_same_lake(&dump(&reference), &dump(&lake), "two waiting runs vs one run");
    if !s3 {
        let leases = files_under(&Path::new(&lake).join("_mongolake/leases"));
        assert!(leases.iter().all(|f| f.extension().is_some_and(|e| e == "lock")), "{leases:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_on_a_local_lake() {
    concurrent_runs_leave_an_exact_lake("conc_local", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_on_an_s3_lake() {
    concurrent_runs_leave_an_exact_lake("conc_s3", true).await;
}

/// S3 leases: a live holder's lease blocks (and is named), an expired one or one whose process on this host is
/// gone is taken over at once, and a finished run leaves no lease behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_leases_expire_and_dead_holders_are_taken_over() {
    let p = Project::new("lease_s3");
    p.seed(50, 5);
    p.write_collections(&["{db},patients,modified_at,date(created_at),"]);
    let bucket = unique_bucket("lease_s3");
    let url = p.s3_env("dev", &bucket, "lake", "UTC");
    let key = format!("lake/_mongolake/leases/{}/patients.json", p.db);
    let host = hostname::get().unwrap().to_string_lossy().into_owned();
    let future = now_millis() + 3_600_000;
    let lease = |host: &str, pid: u32, expires: i64| {
        json!({"run_id": "20250101T000000Z-beef", "host": host, "pid": pid,
               "acquired_at": "2025-01-01T00:00:00.000Z", "expires_at": expires})
        .to_string()
    };

    s3_put(&bucket, &key, lease("another-host", 1, future).as_bytes()).await;
    let run = p.sync("dev", &[]);
    run.assert_ok();
    assert!(
        run.stdout.contains("skipped: another run holds the collection: run 20250101T000000Z-beef (host another-host"),
        "{}",
        run.describe()
    );
    assert!(run.stdout.contains("0/1 collections synced, 1 skipped"), "{}", run.stdout);

    s3_put(&bucket, &key, lease("another-host", 1, now_millis() - 1000).as_bytes()).await;
    p.sync("dev", &[]).assert_ok();
    assert!(!p.sync("dev", &[]).stdout.contains("skipped"));

    s3_put(&bucket, &key, lease(&host, 4_000_000, future).as_bytes()).await; // this host, a dead pid
    let run = p.sync("dev", &[]);
    run.assert_ok();
    assert!(!run.stdout.contains("skipped"), "{}", run.describe());
    assert!(s3_get(&bucket, &key).await.is_none(), "the finished run removed its lease");
    assert!(url.ends_with("/lake"));
}

/// `--shard K/N`: three workers sharing one lake, started together, end with the same lake as one run, each
/// collection synced by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_equal_one_run() {
    let p = Project::new("shards");
    p.seed(400, 17);
    p.write_collections(&HOSPITAL);
    let reference = p.local_env("single", "Asia/Kolkata");
    p.sync("single", &[]).assert_ok();
    let lake = p.local_env("dev", "Asia/Kolkata");
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|k| {
                let shard = format!("{k}/3");
                let p = &p;
                s.spawn(move || p.sync("dev", &["--shard", &shard]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut synced = 0;
    for r in &runs {
        r.assert_ok();
        synced +=
            r.stdout.lines().filter(|l| l.starts_with(&p.db) && l.split_whitespace().nth(1) == Some("ok")).count();
    }
    assert_eq!(
        synced,
        5,
        "each collection synced by exactly one worker:\n{}",
        runs.iter().map(|r| r.stdout.as_str()).collect::<String>()
    );
    assert_same_lake(&dump(&reference), &dump(&lake), "three shards vs one run");
}

/// The worker (of `n`) that `--shard K/n` deals the collection `name` to.
fn owner_of(name: &str, n: u32) -> u32 {
    (0..n).find(|&k| mongolake::config::Shard { index: k, count: n }.owns(name)).expect("some worker owns it")
}

/// An environment (local lake, or S3 when `bucket` is given) whose `[sync]` shares first loads of 100
/// documents or more and retries quickly; returns the lake.
fn ranges_env(p: &Project, name: &str, bucket: Option<&str>) -> String {
    let lake = match bucket {
        Some(b) => p.s3_env(name, b, "lake", "Asia/Kolkata"),
        None => p.local_env(name, "Asia/Kolkata"),
    };
    let path = p.path().join("environments").join(format!("{name}.toml"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "shard_ranges_min_docs = 100\nshard_help_wait_seconds = 20\nretry_backoff_ms = 200\nlease_seconds = 10\n",
    );
    std::fs::write(&path, text).unwrap();
    lake
}

/// Three workers started together, `envs[k]` the environment of worker k.
fn three_workers(p: &Project, env: &str, envs: [&[(&str, &str)]; 3]) -> Vec<Run> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|k| {
                let shard = format!("{k}/3");
                let extra = envs[k];
                s.spawn(move || p.sync_with(env, &["--shard", &shard], extra))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `--shard K/N` with a first load large enough to share: the three workers read and encode its `_id` ranges
/// together, and the lake (data, one file per partition, key index) is the one a single run makes.
async fn a_first_load_shared_in_id_ranges_equals_one_run(name: &str, s3: bool) {
    let p = Project::new(name);
    p.seed(2500, 29);
    p.write_collections(&HOSPITAL[1..2]);
    let reference = p.local_env("single", "Asia/Kolkata");
    p.sync("single", &[]).assert_ok();
    let bucket = s3.then(|| unique_bucket(name));
    let lake = ranges_env(&p, "dev", bucket.as_deref());
    // The owner pauses after each range it reads itself, so the other workers surely claim some.
    let pause: &[(&str, &str)] = &[("MONGOLAKE_DELAY", "shard_owner_range:3000")];
    let runs = three_workers(&p, "dev", [pause, pause, pause]);
    let all: String = runs.iter().map(|r| format!("{}\n{}", r.stdout, r.stderr)).collect();
    for r in &runs {
        r.assert_ok();
    }
    let helped = all.lines().filter(|l| l.starts_with("helped: ") && !l.contains("GIVEN UP")).count();
    assert!(helped >= 1, "no worker helped with the shared load:\n{all}");
    assert!(all.contains("First load shared with the other workers"), "{all}");
    let (expected, actual) = (dump(&reference), dump(&lake));
    assert_same_lake(&expected, &actual, "a load shared in ranges vs one run");
    assert_one_file_per_partition(table(&actual, &p.db, "visits"));
    let left = match &bucket {
        Some(b) => {
            use futures::TryStreamExt;
            use object_store::ObjectStore;
            let prefix = object_store::path::Path::from("lake/_mongolake/shards");
            let listed: Vec<_> = s3_store(b).list(Some(&prefix)).try_collect().await.unwrap();
            listed.into_iter().map(|m| m.location.to_string()).collect::<Vec<_>>()
        }
        None => {
            files_under(&Path::new(&lake).join("_mongolake/shards")).iter().map(|f| f.display().to_string()).collect()
        }
    };
    assert!(left.is_empty(), "staged files left behind: {left:?}");
    // The key index the ranges' keys were merged into serves the next run: moved rows leave their old partition.
    p.mutate(0.2, 29);
    p.sync("single", &[]).assert_ok();
    p.sync("dev", &[]).assert_ok();
    assert_same_lake(&dump(&reference), &dump(&lake), "the incremental run after a shared load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_shared_in_id_ranges_on_a_local_lake_equals_one_run() {
    a_first_load_shared_in_id_ranges_equals_one_run("ranges", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_shared_in_id_ranges_on_an_s3_lake_equals_one_run() {
    a_first_load_shared_in_id_ranges_equals_one_run("ranges3", true).await;
}

/// A helper that stops after reporting its range's read (killed) fails the owner's attempt, which is retried
/// with a new plan and completes: nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_dies_mid_range_costs_a_retry_not_a_row() {
    let p = Project::new("rangedeath");
    p.seed(2500, 31);
    p.write_collections(&HOSPITAL[1..2]);
    let reference = p.local_env("single", "Asia/Kolkata");
    p.sync("single", &[]).assert_ok();
    let lake = ranges_env(&p, "dev", None);
    let owner = owner_of(&format!("{}.visits", p.db), 3) as usize;
    let pause: &[(&str, &str)] = &[("MONGOLAKE_DELAY", "shard_owner_range:3000")];
    let die: &[(&str, &str)] = &[("MONGOLAKE_DELAY", "shard_owner_range:3000"), ("MONGOLAKE_FAULT", "helper_read")];
    let mut envs = [die, die, die];
    envs[owner] = pause;
    let runs = three_workers(&p, "dev", envs);
    let all: String = runs.iter().map(|r| format!("{}\n{}", r.stdout, r.stderr)).collect();
    runs[owner].assert_ok();
    let died = runs.iter().filter(|r| r.stderr.contains("aborting at `helper_read`")).count();
    assert!(died >= 1, "no helper reached the fault point:\n{all}");
    let line = runs[owner].stdout.lines().find(|l| l.starts_with(&format!("{}.visits", p.db))).unwrap_or_default();
    assert!(runs[owner].stdout.contains("stopped before encoding it"), "the owner names the lost range:\n{all}");
    assert!(line.split_whitespace().nth(1) == Some("ok"), "{line}");
    assert_same_lake(&dump(&reference), &dump(&lake), "a shared load that lost a helper vs one run");
}
