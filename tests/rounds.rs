//! Proof by fault injection: a seeded change generator (inserts, updates, partition moves, deletes, writes at
//! exactly the watermark, late writes inside the overlap, documents without a timestamp, type flips) runs rounds
//! against the real server; between rounds sync runs, in some rounds first killed at a seeded random point
//! (`MONGOLAKE_FAULT`, an abort: no cleanup) and then rerun. After every round the lake must equal the live
//! collection, row by row. Against a local-disk lake and an S3 lake. Needs the servers of scripts/test.sh.
//!
//! The syncs are plain nightly runs (no `--reconcile`): inserts without a timestamp have ObjectId `_id`s (the
//! others integers, so the `_id`s are of mixed types) and land through the ObjectId branch of the incremental
//! query; deletes land through the reconcile that MongoDB's count differing from the lake's rows starts.
//!
//! Reproduce a failure with the seed it prints: `MONGOLAKE_ROUNDS_SEED=<seed> cargo nextest run --test rounds`.
mod common;

use bson::{doc, Bson, DateTime, Document};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const FACILITIES: [&str; 4] = ["BLR01", "DEL02", "MUM03", "HYD04"];
const FAULT_POINTS: [&str; 5] = ["after_batch", "staged", "after_partition", "before_schema", "before_watermark"];
const DAY: i64 = 86_400_000;

/// What is compared: `_id` -> (version, facility, created_at ms, payload as text).
type View = BTreeMap<String, (i64, String, i64, String)>;

fn payload_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn mongo_view(db: &str) -> View {
    let client = client().await;
    all_docs(&client, db, "events")
        .await
        .iter()
        .map(|d| {
            let payload = match d.get("payload") {
                Some(Bson::String(s)) => s.clone(),
                Some(Bson::Int64(n)) => n.to_string(),
                Some(Bson::Int32(n)) => n.to_string(),
                _ => String::new(),
            };
            let v = (
                d.get_i64("v").unwrap(),
                d.get_str("facility").unwrap().to_string(),
                bson_millis(d.get("created_at").unwrap()),
                payload,
            );
            (doc_id(d), v)
        })
        .collect()
}

fn lake_view(lake: &str, db: &str) -> View {
    let dump = dump(lake);
    let Some(t) = dump["tables"].get(format!("{db}/events")) else { return View::new() };
    assert_one_file_per_partition(t);
    rows_by_id(t)
        .into_iter()
        .map(|(id, r)| {
            // (integer keys in a key column stored as text, the `_id`s being of mixed types, are tagged)
            let id =
                id.strip_prefix(r#"{"$number":""#).and_then(|n| n.strip_suffix(r#""}"#)).unwrap_or(&id).to_string();
            let v = (
                r["v"].as_i64().unwrap_or_else(|| panic!("v in {r}")),
                r["facility"].as_str().unwrap_or_else(|| panic!("facility in {r}")).to_string(),
                iso_millis(r["created_at"].as_str().unwrap_or_else(|| panic!("created_at in {r}"))),
                payload_text(&r["payload"]),
            );
            (id, v)
        })
        .collect()
}

/// One round of seeded changes. `watermark` is the lake's current watermark (for writes exactly at it).
async fn change_round(rng: &mut StdRng, db: &str, next_id: &mut i64, watermark: Option<i64>, flip: bool) {
    let client = client().await;
    let events = coll(&client, db, "events");
    let now = now_millis();
    let ids: Vec<i64> = all_docs(&client, db, "events")
        .await
        .iter()
        .filter(|d| d.get("modified_at").is_some())
        .map(|d| d.get_i64("_id").unwrap())
        .collect();
    let pick = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())];
    let payload = |rng: &mut StdRng| -> Bson {
        let n: i64 = rng.random_range(0..1000);
        if flip && rng.random_bool(0.3) {
            Bson::String(format!("{n} units"))
        } else {
            Bson::Int64(n)
        }
    };
    // Inserts, some without the timestamp field: those have ObjectId _ids, made now, and land the same night.
    let mut new_docs: Vec<Document> = Vec::new();
    for _ in 0..rng.random_range(5..20) {
        *next_id += 1;
        let created = now - rng.random_range(0..10) * DAY;
        let stamped = !rng.random_bool(0.1);
        let id = if stamped { Bson::Int64(*next_id) } else { Bson::ObjectId(bson::oid::ObjectId::new()) };
        let mut d = doc! {
            "_id": id, "v": 1i64, "facility": FACILITIES[rng.random_range(0..4)],
            "created_at": DateTime::from_millis(created), "payload": payload(rng),
        };
        if stamped {
            d.insert("modified_at", DateTime::from_millis(now));
        }
        new_docs.push(d);
    }
    events.insert_many(new_docs).await.unwrap();
    if ids.is_empty() {
        return;
    }
    // Updates; some move partition (facility or creation day), some are stamped exactly at the watermark or
    // late (older than now but inside the overlap window).
    for _ in 0..rng.random_range(5..25) {
        let id = pick(rng);
        let stamp = match rng.random_range(0..4) {
            0 => watermark.unwrap_or(now),
            1 => now - rng.random_range(1_000..200_000),
            _ => now,
        };
        let mut set = doc! { "modified_at": DateTime::from_millis(stamp), "payload": payload(rng) };
        match rng.random_range(0..4) {
            0 => {
                set.insert("facility", FACILITIES[rng.random_range(0..4)]);
            }
            1 => {
                set.insert("created_at", DateTime::from_millis(now - rng.random_range(0..10) * DAY));
            }
            _ => {}
        }
        events.update_one(doc! { "_id": id }, doc! { "$set": set, "$inc": { "v": 1i64 } }).await.unwrap();
    }
    // Hard deletes.
    for _ in 0..rng.random_range(0..6) {
        events.delete_one(doc! { "_id": pick(rng) }).await.unwrap();
    }
}

fn watermark_of(lake: &str, db: &str, s3: bool) -> Option<i64> {
    if s3 {
        return None; // the S3 rounds stamp "at the watermark" writes with now instead
    }
    let path = std::path::Path::new(lake).join("_mongolake/state").join(db).join("events.csv");
    path.exists().then(|| watermark(lake, db, "events"))
}

async fn rounds(name: &str, s3: bool, rounds: u32) {
    let seed: u64 = std::env::var("MONGOLAKE_ROUNDS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261121);
    eprintln!("rounds seed {seed} (set MONGOLAKE_ROUNDS_SEED to reproduce)");
    let mut rng = StdRng::seed_from_u64(seed ^ s3 as u64);
    let p = Project::new(name);
    p.write_collections(&["{db},events,modified_at,facility/date(created_at),"]);
    let lake = if s3 { p.s3_env("dev", &unique_bucket(name), "lake", "UTC") } else { p.local_env("dev", "UTC") };
    // The rounds compare each field's value in its own column: the widen policy (a value of another kind
    // widens the column instead of going to a variant column beside it).
    p.set_sync("dev", "type_conflicts = \"widen\"");
    // Small key-index segments, so rounds split, rewrite and drop segments (and crash between them).
    let env_file = p.path().join("environments/dev.toml");
    std::fs::write(&env_file, std::fs::read_to_string(&env_file).unwrap() + "index_segment_keys = 8\n").unwrap();
    let mut next_id = 0i64;
    let mut crashes = 0;
    for round in 0..rounds {
        let w = watermark_of(&lake, &p.db, s3);
        change_round(&mut rng, &p.db, &mut next_id, w, round >= 2).await;
        if rng.random_bool(0.6) {
            let point = FAULT_POINTS[rng.random_range(0..FAULT_POINTS.len())];
            // The schema and watermark points are reached once per run; the others once per batch or partition.
            let nth = if point.starts_with("before_") { 1 } else { rng.random_range(1..4) };
            let fault = format!("{point}:{nth}");
            let run = p.sync_with("dev", &[], &[("MONGOLAKE_FAULT", &fault)]);
            eprintln!("round {round}: sync with MONGOLAKE_FAULT={fault}: exit {:?}", run.code);
            if run.code.is_none() {
                crashes += 1;
            } else {
                run.assert_ok(); // the point was not reached that often: a normal run
            }
        }
        let run = p.sync("dev", &[]);
        run.assert_ok();
        let (live, in_lake) = (mongo_view(&p.db).await, lake_view(&lake, &p.db));
        if live != in_lake {
            let only_live: Vec<_> = live.iter().filter(|(k, v)| in_lake.get(*k) != Some(v)).take(5).collect();
            let only_lake: Vec<_> = in_lake.iter().filter(|(k, v)| live.get(*k) != Some(v)).take(5).collect();
            panic!(
                "seed {seed} round {round}: the lake differs from the collection ({} live, {} in the lake)\n\
                 live but not (so) in the lake: {only_live:?}\nin the lake but not (so) live: {only_lake:?}\n{}",
                live.len(),
                in_lake.len(),
                run.describe()
            );
        }
    }
    assert!(crashes > 0, "seed {seed}: no round crashed; the test proved nothing about crashes");
    // Idempotence: one more run with no changes rewrites nothing.
    let run = p.sync("dev", &[]);
    run.assert_ok();
    let line = run.stdout.lines().find(|l| l.contains(".events")).unwrap().to_string();
    let written: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(written, 0, "a run with no changes wrote rows: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_rounds_on_a_local_lake() {
    rounds("rounds_local", false, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_fault_rounds_on_an_s3_lake() {
    rounds("rounds_s3", true, 6).await;
}
