//! The five document builders of the hospital information system.
//!
//! Each builder only draws from the document's own body stream, and looks up referenced documents
//! (a visit's patient, a bill's visit) through their cheap [`Meta`](super::rng::Meta), never by
//! building them. Every deliberate "mess" (type drift, missing/null fields, non-ASCII, odd field names)
//! is listed in the module docs of [`crate::generator`].

use bson::{doc, oid::ObjectId, raw::CString, spec::BinarySubtype, Binary, Bson, DateTime, Document, Regex, Timestamp};

use super::data::{self, FACILITIES};
use super::rng::{dec2, round_to, time_value, Meta, Rng, Source, DAY_MS, SALT_BODY};

/// Indices into [`super::COLLECTIONS`].
pub(crate) const PATIENTS: usize = 0;
pub(crate) const VISITS: usize = 1;
pub(crate) const BILLS: usize = 2;
pub(crate) const LAB_RESULTS: usize = 3;
pub(crate) const PHARMACY_STOCK: usize = 4;

/// Everything needed to build any document of one seed: one [`Source`] per collection and the
/// number of documents per collection (the range referenced ids are drawn from).
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub sources: [Source; 5],
    pub docs: u64,
}

impl Ctx {
    pub(crate) fn new(options: &super::GenOptions) -> Self {
        let end_ms = options.end.timestamp_millis();
        let window_ms = i64::from(options.days) * DAY_MS;
        let sources = super::COLLECTIONS.map(|name| Source {
            seed: options.seed,
            collection_hash: super::rng::name_hash(name),
            end_ms,
            window_ms,
        });
        Ctx { sources, docs: options.docs }
    }

    /// `_id` and meta of a document of another collection, e.g. the patient a visit belongs to.
    fn reference(&self, collection: usize, r: &mut Rng) -> (ObjectId, Meta) {
        let src = &self.sources[collection];
        let j = r.below(self.docs.max(1));
        let meta = src.meta(j);
        (src.object_id_at(j, meta.created_ms), meta)
    }
}

/// Builds document `i` of collection number `collection` (an index into [`super::COLLECTIONS`]).
pub(crate) fn build(collection: usize, i: u64, ctx: &Ctx) -> Document {
    let src = &ctx.sources[collection];
    let meta = src.meta(i);
    let mut r = src.rng(i, SALT_BODY);
    let mut d = Document::new();
    d.insert("_id", src.object_id_at(i, meta.created_ms));
    match collection {
        PATIENTS => patient(&mut d, &mut r, i, &meta),
        VISITS => visit(&mut d, &mut r, i, &meta, ctx),
        BILLS => bill(&mut d, &mut r, i, ctx),
        LAB_RESULTS => lab_result(&mut d, &mut r, i, &meta, ctx),
        PHARMACY_STOCK => pharmacy_stock(&mut d, &mut r, &meta),
        _ => unreachable!("collection index {collection} out of range"),
    }
    d.insert("created_at", DateTime::from_millis(meta.created_ms));
    d.insert("modified_at", time_value(meta.modified_ms, meta.repr));
    d
}

fn patient(d: &mut Document, r: &mut Rng, i: u64, meta: &Meta) {
    let fac = &FACILITIES[meta.facility];
    d.insert("mrn", format!("{}-{:07}", fac.id, i));
    d.insert("facility_id", fac.id);
    let first = *r.pick(&data::FIRST_NAMES);
    // Single-name patients are common in South India: the last name is then empty.
    let last = if r.chance(0.03) { "" } else { *r.pick(&data::LAST_NAMES) };
    d.insert("name", doc! { "first": first, "last": last });
    let display = match r.below(10) {
        0 => format!("{}, {}", last.to_uppercase(), first),
        1 => format!("{} {} ", first.to_uppercase(), last.to_uppercase()),
        _ if last.is_empty() => first.to_string(),
        _ => format!("{first} {last}"),
    };
    d.insert("Patient Name", display);

    // Age at registration; about a third of the patients were born before 1970 (negative epoch millis).
    let age = r.below(91) as i64;
    let age_days = age * 36_525 / 100 + r.below(365) as i64;
    let dob_day = (meta.created_ms - age_days * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    // Half the front-desk clients store "midnight IST" (18:30 UTC the previous day).
    let dob = if r.chance(0.5) { dob_day } else { dob_day - 19_800_000 };
    d.insert("dob", DateTime::from_millis(dob));
    d.insert("gender", *r.pick(&data::GENDERS));
    d.insert(
        "age",
        match r.below(100) {
            0..=92 => Bson::Int32(age as i32),
            93..=97 => Bson::String(format!("{age} years")),
            _ => Bson::Int64(age),
        },
    );

    let mobile = r.range(6_000_000_000, 10_000_000_000);
    d.insert(
        "phone",
        match r.below(100) {
            0..=2 => Bson::Int64(910_000_000_000 + mobile),
            3..=40 => Bson::String(format!("+91 {} {}", mobile / 100_000, mobile % 100_000)),
            41..=60 => Bson::String(format!("+91-{mobile}")),
            _ => Bson::String(mobile.to_string()),
        },
    );

    let (city, state, pin_prefix) =
        if r.chance(0.8) { (fac.city, fac.state, fac.pin_prefix) } else { *r.pick(&data::OTHER_CITIES) };
    let pin = pin_prefix * 1000 + r.below(100) as u32;
    let line1 = format!("No. {}, {}, {}", 1 + r.below(400), r.pick(&data::STREETS), r.pick(fac.localities));
    let pin: Bson = if r.chance(0.05) { Bson::Int32(pin as i32) } else { Bson::String(pin.to_string()) };
    d.insert("address", doc! { "line1": line1, "city": city, "state": state, "pin": pin });

    match r.below(10) {
        0..=6 => {
            let n = r.below(4) as usize;
            let list: Vec<Bson> = (0..n).map(|_| Bson::from(*r.pick(&data::ALLERGENS))).collect();
            d.insert("allergies", list);
        }
        7 | 8 => {
            let n = 1 + r.below(3) as usize;
            let list: Vec<Bson> = (0..n)
                .map(|_| {
                    Bson::Document(doc! {
                        "substance": *r.pick(&data::ALLERGENS),
                        "severity": *r.pick(&data::SEVERITIES),
                    })
                })
                .collect();
            d.insert("allergies", list);
        }
        _ => {}
    }

    match r.below(10) {
        0..=2 => {
            d.insert("tags", *r.pick(&data::TAGS));
        }
        3..=8 => {
            let n = 1 + r.below(3) as usize;
            let list: Vec<Bson> = (0..n).map(|_| Bson::from(*r.pick(&data::TAGS))).collect();
            d.insert("tags", list);
        }
        _ => {}
    }

    match r.below(4) {
        0 | 1 => {
            let provider = *r.pick(&data::INSURERS);
            let policy_no = format!("POL{:010}", r.below(10_000_000_000));
            d.insert("insurance", doc! { "provider": provider, "policy_no": policy_no });
        }
        2 => {
            d.insert("insurance", Bson::Null);
        }
        _ => {}
    }

    let mut uuid: [u8; 16] = [0; 16];
    uuid[0..8].copy_from_slice(&r.next_u64().to_le_bytes());
    uuid[8..16].copy_from_slice(&r.next_u64().to_le_bytes());
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    d.insert("uuid", Binary { subtype: BinarySubtype::Uuid, bytes: uuid.to_vec() });
}

/// The doctor roster is a function of (seed, facility, number), so a doctor id always comes with the
/// same name and department.
fn doctor(seed: u64, facility: usize, n: u64) -> Document {
    let mut r = Rng::new(super::rng::stream_key(seed, 0xd0c7_0125, (facility as u64) << 32 | n, SALT_BODY));
    let fac = &FACILITIES[facility];
    doc! {
        "id": format!("DOC-{}-{:03}", fac.id, n),
        "name": format!("Dr. {} {}", r.pick(&data::FIRST_NAMES), r.pick(&data::LAST_NAMES)),
        "dept": *r.pick(&data::DEPARTMENTS),
    }
}

fn visit(d: &mut Document, r: &mut Rng, i: u64, meta: &Meta, ctx: &Ctx) {
    let fac = &FACILITIES[meta.facility];
    d.insert("facility_id", fac.id);
    d.insert("visit_no", format!("{}/V/{:08}", fac.id, i));
    let (patient_id, _) = ctx.reference(PATIENTS, r);
    d.insert("patient_id", patient_id);
    let visit_type = ["OPD", "IPD", "ER"][r.weighted(&[65, 20, 15])];
    d.insert("visit_type", visit_type);
    let status = match visit_type {
        "OPD" => *r.pick(&["scheduled", "checked_in", "completed", "completed", "cancelled", "no_show"]),
        "IPD" => *r.pick(&["admitted", "admitted", "discharged", "discharged", "transferred"]),
        _ => *r.pick(&["triage", "under_observation", "admitted", "discharged"]),
    };
    d.insert("status", status);
    d.insert("doctor", doctor(ctx.sources[VISITS].seed, meta.facility, r.below(40)));

    let mut vitals = Document::new();
    vitals.insert("bp", format!("{}/{}", r.range(95, 181), r.range(58, 111)));
    let pulse = r.range(52, 131);
    // Some monitors export the pulse as a float.
    vitals.insert(
        "pulse",
        if r.chance(0.1) { Bson::Double(pulse as f64 + 0.5 * r.below(2) as f64) } else { Bson::Int32(pulse as i32) },
    );
    vitals.insert("temp_c", round_to(36.0 + r.unit() * 4.2, 1));
    if r.chance(0.8) {
        vitals.insert("spo2", r.range(86, 101) as i32);
    }
    d.insert("vitals", vitals);

    let n = r.weighted(&[10, 55, 25, 10]);
    let diagnoses: Vec<Bson> = (0..n)
        .map(|_| {
            let (icd10, description) = *r.pick(&data::ICD10);
            Bson::Document(doc! { "icd10": icd10, "description": description })
        })
        .collect();
    d.insert("diagnoses", diagnoses);
    if visit_type == "IPD" {
        let span = (meta.modified_ms - meta.created_ms).min(6 * 3_600_000);
        d.insert("admitted_at", DateTime::from_millis(meta.created_ms + r.below(span as u64 + 1) as i64));
    }
    d.insert("notes", *r.pick(&data::NOTES));
}

fn bill(d: &mut Document, r: &mut Rng, i: u64, ctx: &Ctx) {
    // A bill is issued by the facility of its visit.
    let (visit_id, visit_meta) = ctx.reference(VISITS, r);
    let fac = &FACILITIES[visit_meta.facility];
    d.insert("facility_id", fac.id);
    d.insert("bill_no", format!("INV-{}-{:08}", fac.id, i));
    d.insert("visit_id", visit_id);

    let n = 1 + r.below(6) as usize;
    let mut total_paise: i64 = 0;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        let (code, base) = *r.pick(&data::BILL_ITEMS);
        let qty: i32 = match code {
            "PHARM" => r.range(1, 31) as i32,
            "ROOM-GENERAL" | "ROOM-ICU" => r.range(1, 8) as i32,
            _ if r.chance(0.1) => 2,
            _ => 1,
        };
        // Prices vary ±20 % by facility tariff, rounded to 50 paise.
        let price_paise = base * r.range(80, 121) / 100 / 50 * 50;
        total_paise += price_paise * i64::from(qty);
        let price =
            if r.chance(0.15) { Bson::Decimal128(dec2(price_paise)) } else { Bson::Double(price_paise as f64 / 100.0) };
        items.push(Bson::Document(doc! { "code": code, "qty": qty, "price": price }));
    }
    let amount = match r.below(100) {
        0..=86 => Bson::Double(total_paise as f64 / 100.0),
        87..=96 => Bson::Decimal128(dec2(total_paise)),
        _ => Bson::Int32((total_paise / 100) as i32),
    };
    d.insert("amount", amount);
    d.insert("currency", "INR");
    d.insert("items", items);
    d.insert("paid", r.chance(0.75));
    if r.chance(0.8) {
        d.insert("payment_mode", *r.pick(&data::PAYMENT_MODES));
    }
}

fn lab_result(d: &mut Document, r: &mut Rng, i: u64, meta: &Meta, ctx: &Ctx) {
    let fac = &FACILITIES[meta.facility];
    d.insert("facility_id", fac.id);
    d.insert("sample_id", format!("{}-S{:09}", fac.id, i));
    let (patient_id, _) = ctx.reference(PATIENTS, r);
    d.insert("patient_id", patient_id);
    let mut flags: Vec<Bson> = Vec::new();
    if r.chance(0.06) {
        let (code, name, results) = r.pick(&data::QUALITATIVE_TESTS);
        let result = *r.pick(results);
        d.insert("test_code", *code);
        d.insert("test_name", *name);
        d.insert("value", result);
        d.insert("unit", "");
        d.insert("reference_range", doc! { "low": Bson::Null, "high": Bson::Null });
        if result == results[0] {
            flags.push(Bson::from("A"));
        }
    } else {
        let t = r.pick(&data::LAB_TESTS);
        d.insert("test_code", t.code);
        d.insert("test_name", t.name);
        if r.chance(0.045) {
            // Below the analyser's detection limit: reported as text, e.g. "<0.5".
            d.insert("value", format!("<{}", t.min));
            flags.push(Bson::from("L"));
        } else {
            let x =
                if r.chance(0.7) { t.low + (t.high - t.low) * r.unit() } else { t.min + (t.max - t.min) * r.unit() };
            let x = round_to(x, 2);
            d.insert("value", x);
            if x > t.high {
                flags.push(Bson::from("H"));
            } else if x < t.low {
                flags.push(Bson::from("L"));
            }
            if x > t.high * 2.0 && r.chance(0.5) {
                flags.push(Bson::from("CRIT"));
            }
        }
        d.insert("unit", t.unit);
        d.insert("reference_range", doc! { "low": t.low, "high": t.high });
    }
    d.insert("flags", flags);
    d.insert("status", if r.chance(0.9) { "final" } else { "preliminary" });
    if r.chance(0.05) {
        // Copied from the LIS interface's oplog position: a BSON Timestamp, not a date.
        let time = meta.modified_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX)) as u32;
        d.insert("result_ts", Timestamp { time, increment: (i & 0xffff) as u32 + 1 });
    }
}

fn pharmacy_stock(d: &mut Document, r: &mut Rng, meta: &Meta) {
    let fac = &FACILITIES[meta.facility];
    d.insert("facility_id", fac.id);
    let (sku, name, mrp) = *r.pick(&data::DRUGS);
    d.insert("sku", sku);
    d.insert("name", name);
    let letters = b"ABCDEFGHJKLMNPRSTUVW";
    d.insert(
        "batch_no",
        format!(
            "{}{}{:02}{:05}",
            letters[r.below(20) as usize] as char,
            letters[r.below(20) as usize] as char,
            23 + r.below(4),
            r.below(100_000)
        ),
    );
    d.insert("store", *r.pick(&["MAIN", "OPD-PHARMACY", "ICU-SATELLITE", "WARD-3"]));
    let qty = if r.chance(0.05) { 0 } else { r.range(1, 5_000) };
    d.insert("qty", if r.chance(0.7) { Bson::Int32(qty as i32) } else { Bson::Int64(qty) });
    // Some batches are already expired when the record is written.
    let expiry_day = (meta.created_ms + r.range(-60, 1_000) * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    d.insert("expiry", DateTime::from_millis(expiry_day));
    d.insert("price", dec2(mrp * r.range(95, 111) / 100));
    if r.chance(0.03) {
        let (pattern, options) = *r.pick(&data::PATTERNS);
        let regex = Regex {
            pattern: CString::try_from(pattern).expect("static pattern has no NUL"),
            options: CString::try_from(options).expect("static options have no NUL"),
        };
        d.insert("pattern", regex);
    }
    if r.chance(0.03) {
        let n = 4 + r.below(13) as usize;
        d.insert("raw", Binary { subtype: BinarySubtype::Generic, bytes: r.bytes(n) });
    }
    match r.below(10) {
        0 | 1 => {
            d.insert("meta", Document::new());
        }
        2..=4 => {
            d.insert("meta", doc! { "supplier": *r.pick(&data::SUPPLIERS), "cold_chain": r.chance(0.1) });
        }
        _ => {}
    }
}
