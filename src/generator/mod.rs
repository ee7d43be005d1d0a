//! Deterministic generator of realistic, *messy* hospital-information-system documents.
//!
//! Used by the demo, the integration tests and the benchmark to fill MongoDB with data that looks like
//! what an Indian hospital group's HIS really accumulates after years of front-desk clients, interfaces
//! and migrations, so that the lake's schema harmonisation has something to chew on:
//!
//! * the same field in several BSON types: `modified_at` is a Date (~90 %), epoch-millisecond Int64
//!   (~5 %) or an ISO-8601 string with `Z` or `+05:30` (~5 %); `age` Int32/String/Int64; `phone`
//!   String/Int64; `address.pin` String/Int32; `amount` Double/Decimal128/Int32; item `price`
//!   Double/Decimal128; `pulse` Int32/Double; lab `value` Double/String; stock `qty` Int32/Int64;
//! * arrays of different element types (`allergies`: strings or `{substance, severity}` documents),
//!   scalar-or-array (`tags`), empty arrays (`allergies`, `flags`, `diagnoses`), empty documents (`meta`);
//! * missing vs null (`insurance`, `spo2`, `payment_mode`, `admitted_at` only for IPD visits);
//! * a field name that is not Athena-safe (`Patient Name`), non-ASCII text (Devanagari, Tamil, Kannada,
//!   emoji in visit `notes`, `µ` in lab units), dates before 1970 (`dob`);
//! * the rarer BSON types: Decimal128, Binary (UUID subtype 4 and generic), Timestamp, Regex.
//!
//! Every document has `_id`, `facility_id` (one of `BLR01`, `DEL02`, `MUM03`, `CHN04`, `HYD05`,
//! `KOL06`), `created_at` (always a Date) and `modified_at` (same instant or later).
//!
//! **Determinism.** [`document`] is a pure function of `(options, collection, i)`: each document has its
//! own SplitMix64 streams keyed by the seed, the collection name and `i` (see [`rng`]), so documents can
//! be generated in any order or in parallel, and a test can recompute the expected content of any
//! document. `_id`s are deterministic ObjectIds (creation second, seed/collection tag, `i`), and
//! references (`visits.patient_id`, `bills.visit_id`, `lab_results.patient_id`) point at documents
//! `0..options.docs` of the referenced collection.

mod data;
mod hospital;
mod rng;

use bson::{doc, Bson, DateTime, Document};
use mongodb::Collection;

use self::hospital::{Ctx, BILLS, LAB_RESULTS, PATIENTS, VISITS};
use self::rng::{stream_key, Rng, SALT_MUTATE};

/// Collections the generator knows, in this order.
pub const COLLECTIONS: [&str; 5] = ["patients", "visits", "bills", "lab_results", "pharmacy_stock"];

/// Documents per `insert_many` / ids per `update_many`.
const BATCH: u64 = 5_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub seed: u64,
    /// documents per collection
    pub docs: u64,
    /// modification/creation times are spread over the `days` days that end at `end` (UTC)
    pub end: chrono::DateTime<chrono::Utc>,
    pub days: u32,
}

impl Default for GenOptions {
    /// Seed 42, 1,000 documents per collection, 30 days ending 2025-07-01T00:00:00Z.
    fn default() -> Self {
        GenOptions {
            seed: 42,
            docs: 1_000,
            end: chrono::DateTime::from_timestamp(1_751_328_000, 0).expect("valid timestamp"),
            days: 30,
        }
    }
}

fn collection_index(collection: &str) -> usize {
    COLLECTIONS
        .iter()
        .position(|c| *c == collection)
        .unwrap_or_else(|| panic!("generator: unknown collection {collection:?}, expected one of {COLLECTIONS:?}"))
}

/// Pure: document number `i` (0-based) of `collection`, deterministic in (options.seed, collection, i).
/// `_id` is deterministic too (an ObjectId built from the seed/collection/i bytes, not random).
///
/// # Panics
/// If `collection` is not one of [`COLLECTIONS`].
pub fn document(collection: &str, i: u64, options: &GenOptions) -> bson::Document {
    hospital::build(collection_index(collection), i, &Ctx::new(options))
}

/// `created_at` of the documents a mutation round inserts.
#[derive(Clone, Copy, PartialEq)]
enum Created {
    /// As generated (over the whole date range), but not after `now`.
    CappedAtNow,
    /// `now`: new records of the day.
    Now,
}

/// Builds and inserts documents `range` of collection number `k`; `now` (mutation rounds) overrides
/// `modified_at` (and `created_at` as [`Created`] says). Unordered `insert_many` in batches of [`BATCH`].
async fn insert_range(
    coll: &Collection<Document>,
    k: usize,
    range: std::ops::Range<u64>,
    ctx: &Ctx,
    now: Option<(i64, Created)>,
) -> mongodb::error::Result<u64> {
    let mut inserted = 0;
    let mut start = range.start;
    while start < range.end {
        let stop = range.end.min(start + BATCH);
        let batch: Vec<Document> = (start..stop)
            .map(|i| {
                let mut d = hospital::build(k, i, ctx);
                if let Some((now_ms, created)) = now {
                    if created == Created::Now || ctx.sources[k].meta(i).created_ms > now_ms {
                        d.insert("created_at", DateTime::from_millis(now_ms));
                    }
                    if created == Created::Now {
                        // A record created now gets an ObjectId of now, as a driver would give it: new keys
                        // sort after every existing one (the key index's newest segment).
                        d.insert("_id", ctx.sources[k].object_id_at(i, now_ms));
                    }
                    d.insert("modified_at", DateTime::from_millis(now_ms));
                }
                d
            })
            .collect();
        let result = coll.insert_many(batch).ordered(false).await?;
        inserted += result.inserted_ids.len() as u64;
        start = stop;
    }
    Ok(inserted)
}

/// Inserts options.docs documents in each of COLLECTIONS into database `db` (insert_many in batches of 5,000,
/// unordered). Returns the number inserted per collection.
///
/// The collections are expected to be empty (or absent): re-seeding the same documents fails with
/// duplicate-key errors, since `_id`s are deterministic.
pub async fn seed(
    client: &mongodb::Client,
    db: &str,
    options: &GenOptions,
) -> mongodb::error::Result<Vec<(String, u64)>> {
    let ctx = Ctx::new(options);
    let database = client.database(db);
    let mut out = Vec::with_capacity(COLLECTIONS.len());
    for (k, name) in COLLECTIONS.iter().enumerate() {
        let coll = database.collection::<Document>(name);
        // As a hospital system would have it: the incremental query's field is indexed. Created first and
        // kept up by the inserts: building it afterwards on a million documents never finished on
        // secantusd-rs 0.5.3-beta.196 ("create_index retrying on write conflicts" for minutes).
        coll.create_index(mongodb::IndexModel::builder().keys(bson::doc! { "modified_at": 1 }).build()).await?;
        let n = insert_range(&coll, k, 0..options.docs, &ctx, None).await?;
        out.push((name.to_string(), n));
    }
    Ok(out)
}

/// Result of one [`mutate`] round.
#[derive(Debug, Clone, Default)]
pub struct MutateSummary {
    pub inserted: u64,
    pub updated: u64,
}

/// Number of distinct business changes per collection in a round (see [`business_update`]).
fn variants(k: usize) -> u64 {
    match k {
        PATIENTS => data::INSURERS.len() as u64,
        VISITS => 4,
        BILLS => 5,
        LAB_RESULTS => 3,
        _ => 4,
    }
}

/// The update applied to documents of collection `k` that drew variant `v`: always `modified_at = now`
/// (a Date, whatever type it had), plus a business change that keeps the field's BSON type where it has
/// several (`$inc` by an Int32 keeps Double/Decimal128/Int32 amounts and Int32/Int64 quantities).
fn business_update(k: usize, v: u64, now_ms: i64) -> Document {
    let now = DateTime::from_millis(now_ms);
    match k {
        PATIENTS => {
            let policy = fmix_policy(now_ms, v);
            doc! { "$set": {
                "modified_at": now,
                "insurance": { "provider": data::INSURERS[v as usize], "policy_no": policy },
            } }
        }
        VISITS => {
            let status = ["completed", "discharged", "cancelled", "transferred"][v as usize];
            doc! { "$set": { "modified_at": now, "status": status } }
        }
        BILLS => {
            let delta = [150, 250, 499, -100, 1_200][v as usize];
            let mode = data::PAYMENT_MODES[v as usize % data::PAYMENT_MODES.len()];
            doc! {
                "$inc": { "amount": delta },
                "$set": { "modified_at": now, "paid": true, "payment_mode": mode },
            }
        }
        LAB_RESULTS => {
            let status = ["amended", "final", "corrected"][v as usize];
            doc! { "$set": { "modified_at": now, "status": status }, "$addToSet": { "flags": "AMD" } }
        }
        _ => doc! { "$set": { "modified_at": now }, "$inc": { "qty": -5 * (v as i32 + 1) } },
    }
}

fn fmix_policy(now_ms: i64, v: u64) -> String {
    format!("POL{:010}", rng::fmix64(now_ms as u64 ^ v) % 10_000_000_000)
}

/// A round of changes, deterministic in `seed`: in each collection, updates about `fraction` of the existing
/// documents (chosen by i, so the same seed picks the same ones; set `modified_at` to `now` as a BSON Date and
/// change a business field, e.g. a bill's amount or a visit's status) and inserts about `fraction` new ones
/// (numbered after the existing ones, using `document`, with modified_at = now). Uses the collection's current
/// count (`count_documents`) to know how many exist.
///
/// Assumes the collection holds documents `0..count` of this generator (what [`seed`] and earlier rounds
/// leave behind): the ids to update are recomputed, not read back. Which documents are updated depends only
/// on `options.seed`, `collection` and `i`; the new values also depend on `now`, so successive rounds keep
/// changing them. `now` should not be earlier than `options.end` (else an updated `modified_at` could precede
/// `created_at`; inserted documents have `created_at` capped at `now`). `updated` counts modified documents.
///
/// `recent = Some(r)`: the updates fall among the newest `r` share of the documents (by `_id`, which follows
/// creation time), still about `fraction` of the collection, and inserted documents are created at `now`: the
/// round touches the last few days' partitions only.
pub async fn mutate(
    client: &mongodb::Client,
    db: &str,
    options: &GenOptions,
    fraction: f64,
    recent: Option<f64>,
    now: chrono::DateTime<chrono::Utc>,
) -> mongodb::error::Result<MutateSummary> {
    let ctx = Ctx::new(options);
    let database = client.database(db);
    let now_ms = now.timestamp_millis();
    let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
    let mut summary = MutateSummary::default();
    for (k, name) in COLLECTIONS.iter().enumerate() {
        let coll = database.collection::<Document>(name);
        // The ids are read back (sorted, so the choice is deterministic): they depend on the seeding run's
        // `end`, which a later round cannot know.
        let mut ids: Vec<Bson> = Vec::new();
        let mut cursor = coll.find(doc! {}).projection(doc! { "_id": 1 }).sort(doc! { "_id": 1 }).await?;
        while cursor.advance().await? {
            if let Ok(Some(id)) = cursor.current().get("_id") {
                ids.push(Bson::try_from(id).map_err(|e| mongodb::error::Error::custom(e.to_string()))?);
            }
        }
        let existing = ids.len() as u64;
        let src = &ctx.sources[k];

        // Group the chosen documents by the change they get, one update_many per group and batch.
        let nv = variants(k);
        let mut groups: Vec<Vec<Bson>> = vec![Vec::new(); nv as usize];
        // With `recent`, the same number of updates among the newest documents (ids sorted: newest last).
        let (first, chance) = match recent.filter(|r| *r > 0.0 && *r < 1.0) {
            Some(r) => (existing - (existing as f64 * r).ceil() as u64, (fraction / r).min(1.0)),
            None => (0, fraction),
        };
        for i in first..existing {
            let key = stream_key(options.seed, src.collection_hash, i, SALT_MUTATE);
            if Rng::new(key).unit() < chance {
                let v = Rng::new(key ^ now_ms as u64).below(nv);
                groups[v as usize].push(ids[i as usize].clone());
            }
        }
        for (v, ids) in groups.into_iter().enumerate() {
            for chunk in ids.chunks(BATCH as usize) {
                let filter = doc! { "_id": { "$in": chunk.to_vec() } };
                let result = coll.update_many(filter, business_update(k, v as u64, now_ms)).await?;
                summary.updated += result.modified_count;
            }
        }

        let new = (existing as f64 * fraction).round() as u64;
        let created = if recent.is_some() { Created::Now } else { Created::CappedAtNow };
        summary.inserted += insert_range(&coll, k, existing..existing + new, &ctx, Some((now_ms, created))).await?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use bson::{spec::BinarySubtype, Bson};

    use super::*;

    fn opts(seed: u64, docs: u64) -> GenOptions {
        GenOptions { seed, docs, ..GenOptions::default() }
    }

    /// `created_at`/`modified_at` as epoch millis, whatever the representation; panics on anything else.
    fn millis(v: &Bson) -> i64 {
        match v {
            Bson::DateTime(d) => d.timestamp_millis(),
            Bson::Int64(ms) => *ms,
            Bson::String(s) => {
                assert!(s.ends_with('Z') || s.ends_with("+05:30"), "unexpected offset in {s}");
                chrono::DateTime::parse_from_rfc3339(s).expect("ISO-8601").timestamp_millis()
            }
            other => panic!("unexpected time value {other:?}"),
        }
    }

    #[test]
    fn same_seed_same_documents_and_different_seed_different() {
        let (a, b, c) = (opts(7, 500), opts(7, 500), opts(8, 500));
        for name in COLLECTIONS {
            for i in 0..300 {
                assert_eq!(document(name, i, &a), document(name, i, &b), "{name} #{i}");
                let (x, y) = (document(name, i, &a), document(name, i, &c));
                assert_ne!(x, y, "{name} #{i}");
                assert_ne!(x.get("_id"), y.get("_id"), "{name} #{i}");
            }
        }
    }

    #[test]
    fn all_three_modified_at_representations_occur() {
        let o = opts(1, 2_000);
        for name in COLLECTIONS {
            let mut counts: HashMap<&str, u32> = HashMap::new();
            for i in 0..2_000 {
                let key = match document(name, i, &o).get("modified_at") {
                    Some(Bson::DateTime(_)) => "date",
                    Some(Bson::Int64(_)) => "millis",
                    Some(Bson::String(s)) if s.ends_with('Z') => "iso_z",
                    Some(Bson::String(_)) => "iso_ist",
                    other => panic!("{name} #{i}: modified_at {other:?}"),
                };
                *counts.entry(key).or_default() += 1;
            }
            for key in ["date", "millis", "iso_z", "iso_ist"] {
                assert!(counts.get(key).copied().unwrap_or(0) > 0, "{name}: no {key} in {counts:?}");
            }
            assert!((1_700..1_900).contains(&counts["date"]), "{name}: {counts:?}");
        }
    }

    #[test]
    fn times_are_ordered_and_inside_the_window_and_ids_match() {
        let o = opts(3, 2_000);
        let end = o.end.timestamp_millis();
        let start = end - i64::from(o.days) * 86_400_000;
        for name in COLLECTIONS {
            let mut ids = HashSet::new();
            for i in 0..2_000 {
                let d = document(name, i, &o);
                let created = match d.get("created_at") {
                    Some(Bson::DateTime(c)) => c.timestamp_millis(),
                    other => panic!("{name} #{i}: created_at {other:?}"),
                };
                let modified = millis(d.get("modified_at").expect("modified_at"));
                assert!(start <= created && created <= modified && modified <= end, "{name} #{i}");
                let id = d.get_object_id("_id").expect("ObjectId _id");
                assert_eq!(id.timestamp().timestamp_millis() / 1000, created.div_euclid(1000));
                assert!(ids.insert(id), "{name}: duplicate _id at #{i}");
            }
        }
    }

    #[test]
    fn every_document_has_a_known_facility() {
        let o = opts(5, 2_000);
        let known: HashSet<&str> = data::FACILITIES.iter().map(|f| f.id).collect();
        for name in COLLECTIONS {
            let mut seen = HashSet::new();
            for i in 0..2_000 {
                let d = document(name, i, &o);
                let f = d.get_str("facility_id").unwrap_or_else(|_| panic!("{name} #{i}: no facility_id"));
                assert!(known.contains(f), "{name} #{i}: {f}");
                seen.insert(f.to_string());
            }
            assert_eq!(seen.len(), known.len(), "{name}: {seen:?}");
        }
    }

    #[test]
    fn references_point_at_generated_documents() {
        let o = opts(11, 300);
        let ids = |name: &str| -> HashMap<Bson, Document> {
            (0..o.docs).map(|i| document(name, i, &o)).map(|d| (d.get("_id").unwrap().clone(), d)).collect()
        };
        let (patients, visits) = (ids("patients"), ids("visits"));
        for i in 0..o.docs {
            assert!(patients.contains_key(document("visits", i, &o).get("patient_id").unwrap()));
            assert!(patients.contains_key(document("lab_results", i, &o).get("patient_id").unwrap()));
            let bill = document("bills", i, &o);
            let visit = &visits[bill.get("visit_id").unwrap()];
            assert_eq!(bill.get_str("facility_id").unwrap(), visit.get_str("facility_id").unwrap());
        }
    }

    #[test]
    fn decimal128_is_built_exactly() {
        assert_eq!(rng::dec2(123_450).to_string(), "1234.50");
        assert_eq!(rng::dec2(-5).to_string(), "-0.05");
        assert_eq!(rng::dec2(123_450), "1234.50".parse::<bson::Decimal128>().unwrap());
    }

    /// The catalogue of messiness in the module docs actually shows up.
    #[test]
    fn shapes_are_messy_as_documented() {
        let o = opts(9, 3_000);
        let mut seen: HashSet<String> = HashSet::new();
        let mut note = |s: String| {
            seen.insert(s);
        };
        let kind = |v: Option<&Bson>| match v {
            None => "missing".to_string(),
            Some(v) => format!("{:?}", v.element_type()),
        };
        for i in 0..o.docs {
            let p = document("patients", i, &o);
            for f in ["Patient Name", "age", "phone", "allergies", "tags", "insurance"] {
                note(format!("patients.{f}:{}", kind(p.get(f))));
            }
            note(format!("patients.pin:{}", kind(p.get_document("address").unwrap().get("pin"))));
            if let Ok(list) = p.get_array("allergies") {
                note(format!("patients.allergies[]:{}", kind(list.first())));
            }
            if p.get_datetime("dob").unwrap().timestamp_millis() < 0 {
                note("patients.dob<1970".into());
            }
            match p.get("uuid") {
                Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => {}
                other => panic!("uuid {other:?}"),
            }
            let v = document("visits", i, &o);
            let vitals = v.get_document("vitals").unwrap();
            note(format!("visits.pulse:{}", kind(vitals.get("pulse"))));
            note(format!("visits.spo2:{}", kind(vitals.get("spo2"))));
            assert_eq!(v.get_str("visit_type").unwrap() == "IPD", v.contains_key("admitted_at"));
            if !v.get_str("notes").unwrap().is_ascii() {
                note("visits.notes:non-ascii".into());
            }
            let b = document("bills", i, &o);
            note(format!("bills.amount:{}", kind(b.get("amount"))));
            note(format!("bills.payment_mode:{}", kind(b.get("payment_mode"))));
            let l = document("lab_results", i, &o);
            note(format!("lab.value:{}", kind(l.get("value"))));
            note(format!("lab.result_ts:{}", kind(l.get("result_ts"))));
            if l.get_array("flags").unwrap().is_empty() {
                note("lab.flags:empty".into());
            }
            let s = document("pharmacy_stock", i, &o);
            for f in ["qty", "pattern", "raw", "price"] {
                note(format!("stock.{f}:{}", kind(s.get(f))));
            }
            if s.get_document("meta").is_ok_and(|m| m.is_empty()) {
                note("stock.meta:empty".into());
            }
        }
        let expected = [
            "patients.Patient Name:String",
            "patients.age:Int32",
            "patients.age:String",
            "patients.age:Int64",
            "patients.phone:String",
            "patients.phone:Int64",
            "patients.pin:String",
            "patients.pin:Int32",
            "patients.allergies:Array",
            "patients.allergies:missing",
            "patients.allergies[]:String",
            "patients.allergies[]:EmbeddedDocument",
            "patients.tags:String",
            "patients.tags:Array",
            "patients.insurance:EmbeddedDocument",
            "patients.insurance:Null",
            "patients.insurance:missing",
            "patients.dob<1970",
            "visits.pulse:Int32",
            "visits.pulse:Double",
            "visits.spo2:Int32",
            "visits.spo2:missing",
            "visits.notes:non-ascii",
            "bills.amount:Double",
            "bills.amount:Decimal128",
            "bills.amount:Int32",
            "bills.payment_mode:missing",
            "lab.value:Double",
            "lab.value:String",
            "lab.result_ts:Timestamp",
            "lab.flags:empty",
            "stock.qty:Int32",
            "stock.qty:Int64",
            "stock.pattern:RegularExpression",
            "stock.raw:Binary",
            "stock.price:Decimal128",
            "stock.meta:empty",
        ];
        for e in expected {
            assert!(seen.contains(e), "never saw {e}; saw {seen:?}");
        }
    }
}
