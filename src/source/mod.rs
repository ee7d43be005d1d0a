//! MongoDB: connecting with resolved credentials, and the incremental query.
//!
//! The timestamp field may hold a BSON Date, epoch milliseconds, an ISO-8601 string or a BSON Timestamp. MongoDB
//! compares values of different BSON types in separate brackets (a `$gte` on a Date never matches a number or a
//! string), so the incremental filter is an `$or` with one branch per representation. The string branch compares
//! on the date prefix a day early, which is exact for ISO-8601 strings with any offset; the Timestamp branch on
//! whole seconds (rounded down). What they let through in excess is merely re-read and deduplicated.
use crate::config::MongoConfig;
use crate::{Error, Result};
use bson::{doc, Document};
use mongodb::options::{ClientOptions, Credential, Tls, TlsOptions};

/// Replaces the password of a URI (if any) with `***` (defined beside the `[mongodb]` settings that hold URIs).
pub use crate::config::environment::redact_uri;

/// Connects (lazily: the driver opens connections on first use) with credentials from the environment.
pub async fn connect(cfg: &MongoConfig) -> Result<mongodb::Client> {
    let uri = cfg.uri.resolve("[mongodb] uri")?;
    let shown = redact_uri(&uri);
    let mut options =
        ClientOptions::parse(&uri).await.map_err(|e| Error::mongo(format!("URI {shown} is invalid"), e))?;
    options.app_name = Some("mongolake".into());
    options.connect_timeout = Some(cfg.connect_timeout);
    options.server_selection_timeout = Some(cfg.connect_timeout);
    // TOML TLS settings refine what the URI says; a CA file or client certificate implies TLS.
    let wants_tls = cfg.tls.unwrap_or(false) || cfg.tls_ca_file.is_some() || cfg.tls_certificate_key_file.is_some();
    if cfg.tls == Some(false) {
        options.tls = Some(Tls::Disabled);
    } else if wants_tls {
        let mut tls = match options.tls.take() {
            Some(Tls::Enabled(t)) => t,
            _ => TlsOptions::default(),
        };
        if cfg.tls_ca_file.is_some() {
            tls.ca_file_path = cfg.tls_ca_file.clone();
        }
        if cfg.tls_certificate_key_file.is_some() {
            tls.cert_key_file_path = cfg.tls_certificate_key_file.clone();
        }
        options.tls = Some(Tls::Enabled(tls));
    }
    if let Some(user) = &cfg.username {
        let mut cred = Credential::builder().username(user.resolve("[mongodb] username")?).build();
        if let Some(p) = &cfg.password {
            cred.password = Some(p.resolve("[mongodb] password")?);
        }
        cred.source = cfg.auth_source.clone();
        options.credential = Some(cred);
    }
    mongodb::Client::with_options(options).map_err(|e| Error::mongo(format!("connecting to {shown}"), e))
}

/// Checks that the deployment answers (with the configured credentials) before any collection starts, so an
/// unreachable server is one clear error instead of one timeout per collection.
pub async fn ping(client: &mongodb::Client, cfg: &MongoConfig) -> Result<()> {
    let shown = cfg.uri.resolve("[mongodb] uri").map(|u| redact_uri(&u)).unwrap_or_default();
    client.database("admin").run_command(doc! { "ping": 1 }).await.map(|_| ()).map_err(|e| {
        Error::mongo(
            format!(
                "cannot reach {shown} (waited {}s; check [mongodb] uri, the network and the credentials)",
                cfg.connect_timeout.as_secs()
            ),
            e,
        )
    })
}

/// What a collection listed in collections.csv is in MongoDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Collection,
    /// A view (`listCollections` says `type: "view"`): read like a collection; its indexes are its source's.
    View,
}

/// Looks the listed collection up (`listCollections`, names only). A collection that does not exist (a typo, or a
/// dropped collection) is an error naming the line of collections.csv to fix and the closest existing names in
/// that database: without it the collection would sync 0 documents, `ok`, every night.
pub async fn find_collection(client: &mongodb::Client, spec: &crate::config::CollectionSpec) -> Result<Kind> {
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let what = |e| Error::mongo(format!("{}: listing the collections of `{db}`", spec.name()), e);
    let database = client.database(db);
    let listed = database
        .run_command(
            doc! { "listCollections": 1, "filter": { "name": coll }, "nameOnly": true, "authorizedCollections": true },
        )
        .await
        .map_err(what)?;
    let first = listed.get_document("cursor").ok().and_then(|c| c.get_array("firstBatch").ok());
    if let Some(found) = first.and_then(|b| b.iter().find_map(|d| d.as_document())) {
        return Ok(if found.get_str("type").ok() == Some("view") { Kind::View } else { Kind::Collection });
    }
    let names = database.list_collection_names().authorized_collections(true).await.map_err(what)?;
    Err(Error::collection(spec.name(), missing_message(spec, &names)))
}

/// Why a listed collection cannot be synced, and the fix: the closest of the database's `names`.
pub fn missing_message(spec: &crate::config::CollectionSpec, names: &[String]) -> String {
    let (db, coll) = (spec.database.as_str(), spec.collection.as_str());
    let hint = match closest_names(coll, names).as_slice() {
        [] if names.is_empty() => format!("database `{db}` has no collections (is the database name right?)"),
        [] => format!("no similar name among the {} collections of `{db}`", names.len()),
        close => format!("did you mean {}?", close.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" or ")),
    };
    format!(
        "collection `{coll}` does not exist in database `{db}` ({hint}); correct line {} of collections.csv, or remove the row",
        spec.line
    )
}

/// Up to three of `names` closest to `wanted` by edit distance, ignoring case (a name differing only in case
/// comes first), among those within a third of its length (at least 2 edits).
pub fn closest_names(wanted: &str, names: &[String]) -> Vec<String> {
    let w: Vec<char> = wanted.to_lowercase().chars().collect();
    let limit = (w.len() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .map(|n| (edit_distance(&w, &n.to_lowercase().chars().collect::<Vec<_>>()), n))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n.clone()).collect()
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The filter for documents changed at or after `since_millis`, in every timestamp representation.
pub fn incremental_filter(field: &str, since_millis: i64) -> Document {
    let date = bson::DateTime::from_millis(since_millis);
    let day_before = chrono::DateTime::from_timestamp_millis(since_millis - 86_400_000)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "0000".into());
    // (a Timestamp's seconds are unsigned: an instant before 1970 takes every Timestamp)
    let seconds = u32::try_from(since_millis.div_euclid(1000)).unwrap_or(if since_millis < 0 { 0 } else { u32::MAX });
    let timestamp = bson::Timestamp { time: seconds, increment: 0 };
    doc! {
        "$or": [
            { field: { "$gte": date } },
            { field: { "$gte": since_millis } },
            { field: { "$gte": day_before } },
            { field: { "$gte": timestamp } },
        ]
    }
}

/// The smallest ObjectId made at or after `since_millis` (its first 4 bytes are the seconds since the epoch,
/// big-endian; the rest zero), rounded down to the second.
pub fn object_id_at(since_millis: i64) -> bson::oid::ObjectId {
    let seconds = u32::try_from(since_millis.div_euclid(1000)).unwrap_or(if since_millis < 0 { 0 } else { u32::MAX });
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&seconds.to_be_bytes());
    bson::oid::ObjectId::from_bytes(bytes)
}

/// The incremental query of a collection: [`incremental_filter`] and one more branch `_id >= ObjectId(since)`, so
/// a document inserted without the timestamp field is read the night it was created (an ObjectId carries its
/// creation second; the `_id` index serves the branch).
///
/// The branch is right whatever the `_id`s hold: like the timestamp branches it is type-bracketed, so `_id`s of
/// other types (ints, strings, UUIDs) never match it, and where no `_id` is an ObjectId it is an index lookup
/// that finds nothing. (Earlier versions first asked the collection for any ObjectId `_id`, with
/// `find_one({_id: {$gte: ObjectId(0)}})`: one lookup on MongoDB, but on SecantusDB it cost the server 0.11 to
/// 0.15 CPU-s on 8,000 documents, growing with the collection, every night.) The ObjectId's time is the
/// writer's clock (drivers make `_id`s on the application host), so a writer whose clock is behind by more
/// than the overlap is seen only by a reconcile (or the count check).
pub fn incremental_query(field: &str, since_millis: i64) -> Document {
    let mut filter = incremental_filter(field, since_millis);
    if field != "_id" {
        let branch = doc! { "_id": { "$gte": object_id_at(since_millis) } };
        filter.get_array_mut("$or").expect("incremental_filter is an $or").push(branch.into());
    }
    filter
}

/// The name of an index whose first key is `ts` (the incremental query's field), None when there is none:
/// without one every incremental run scans the whole collection.
pub async fn timestamp_index(coll: &mongodb::Collection<Document>, ts: &str) -> mongodb::error::Result<Option<String>> {
    use futures::TryStreamExt;
    let indexes: Vec<mongodb::IndexModel> = coll.list_indexes().await?.try_collect().await?;
    Ok(indexes
        .iter()
        .find(|i| i.keys.keys().next().map(String::as_str) == Some(ts))
        .map(|i| i.options.as_ref().and_then(|o| o.name.clone()).unwrap_or_else(|| "?".into())))
}

/// The shell command that creates the index [`timestamp_index`] looks for.
pub fn create_index_hint(db: &str, coll: &str, ts: &str) -> String {
    format!("db.getSiblingDB(\"{db}\").getCollection(\"{coll}\").createIndex({{\"{ts}\": 1}})")
}

/// Splits the collection into up to `k` `_id` ranges of about equal size, as filters for
/// [`crate::sync::read::ReadPass::read_all`] (and the benchmark's raw drain). `docs`: the estimated count, when
/// the caller has it (counting is not free on every server). The bounds are the `_id`s at every k-th of the collection in `_id` order, each
/// found with a covered index scan (`find({}, {_id: 1}).sort({_id: 1}).skip(i * n / k).limit(1)`): measured
/// on SecantusDB, 0.35 s for a bound 100,000 keys in against 3.1 s for `$bucketAuto` over 200,000 documents,
/// which sorts every `_id` (and `splitVector` is not always available). Together the filters match every
/// document exactly once: the first is "not >= b1", which also holds every `_id` of another BSON type
/// (MongoDB compares types in separate brackets), the others are `[b_i, b_i+1)` and `>= b_last` within b's
/// type. When the bounds do not all share one type, or the collection is small, one filter (no split) is
/// returned.
pub async fn id_ranges(
    collection: &mongodb::Collection<bson::Document>,
    name: &str,
    k: usize,
    docs: Option<u64>,
) -> Result<Vec<bson::Document>> {
    let whole = vec![bson::Document::new()];
    if k <= 1 {
        return Ok(whole);
    }
    let what = |e| Error::mongo(format!("{name}: splitting into _id ranges"), e);
    let n = match docs {
        Some(n) => n,
        None => collection.estimated_document_count().await.map_err(what)?,
    };
    if n < 2 * k as u64 {
        return Ok(whole);
    }
    let mut bounds: Vec<bson::Bson> = Vec::with_capacity(k - 1);
    for i in 1..k as u64 {
        let found = collection
            .find_one(bson::Document::new())
            .projection(bson::doc! { "_id": 1 })
            .sort(bson::doc! { "_id": 1 })
            .skip(i * n / k as u64)
            .await
            .map_err(what)?;
        if let Some(id) = found.and_then(|d| d.get("_id").cloned()) {
            if bounds.last() != Some(&id) {
                bounds.push(id);
            }
        }
    }
    let same_type = bounds.windows(2).all(|w| w[0].element_type() == w[1].element_type());
    if bounds.is_empty() || !same_type {
        return Ok(whole);
    }
    let mut filters = vec![bson::doc! { "_id": { "$not": { "$gte": bounds[0].clone() } } }];
    for w in bounds.windows(2) {
        filters.push(bson::doc! { "_id": { "$gte": w[0].clone(), "$lt": w[1].clone() } });
    }
    filters.push(bson::doc! { "_id": { "$gte": bounds[bounds.len() - 1].clone() } });
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::Bson;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_uri("mongodb://u:secret@h:1/db?x=1"), "mongodb://u:***@h:1/db?x=1");
        assert_eq!(redact_uri("mongodb://h:1/?directConnection=true"), "mongodb://h:1/?directConnection=true");
    }

    #[test]
    fn the_closest_names_come_first_ignoring_case() {
        let names: Vec<String> = ["visits", "Visit_notes", "bills", "patients", "pharmacy_stock", "VISITS_2024"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(closest_names("vists", &names), ["visits"]);
        assert_eq!(closest_names("Visits", &names), ["visits"]);
        assert_eq!(closest_names("patient", &names), ["patients"]);
        assert_eq!(closest_names("visit_note", &names), ["Visit_notes"]);
        assert!(closest_names("appointments", &names).is_empty());
        let spec = crate::config::collections::CollectionsFile::parse(
            std::path::Path::new("collections.csv"),
            "database,collection,timestamp_column,partition_by\nhims,vists,modified_at,\n",
        )
        .unwrap()
        .entries[0]
            .clone();
        let m = missing_message(&spec, &names);
        assert!(m.contains("`vists` does not exist in database `hims`") && m.contains("did you mean `visits`?"), "{m}");
        assert!(m.contains("line 2 of collections.csv"), "{m}");
        assert!(missing_message(&spec, &[]).contains("has no collections"));
    }

    #[test]
    fn the_object_id_bound_is_the_second_with_zeros() {
        let oid = object_id_at(1_751_394_600_999);
        assert_eq!(oid.to_hex(), format!("{:08x}0000000000000000", 1_751_394_600u32));
        assert_eq!(oid.timestamp().timestamp_millis(), 1_751_394_600_000);
        assert_eq!(object_id_at(-1).to_hex(), "000000000000000000000000");
        // Every ObjectId made in or after that second sorts at or after it.
        let later = bson::oid::ObjectId::new();
        assert!(later >= object_id_at(later.timestamp().timestamp_millis()));
    }

    #[test]
    fn filter_has_one_branch_per_representation() {
        let f = incremental_filter("modified_at", 1_751_394_600_000);
        let branches = f.get_array("$or").unwrap();
        assert_eq!(branches.len(), 4);
        let gte =
            |i: usize| branches[i].as_document().unwrap().get_document("modified_at").unwrap().get("$gte").cloned();
        assert_eq!(gte(2), Some(Bson::String("2025-06-30".into())));
        // Whole seconds, rounded down: a Timestamp in the same second as the bound is taken.
        assert_eq!(gte(3), Some(Bson::Timestamp(bson::Timestamp { time: 1_751_394_600, increment: 0 })));
        // The Timestamp branch's bound, in seconds, for a watermark of `ms`.
        let seconds = |ms: i64| {
            let f = incremental_filter("modified_at", ms);
            let branch = f.get_array("$or").unwrap()[3].as_document().unwrap().clone();
            branch.get_document("modified_at").unwrap().get_timestamp("$gte").unwrap().time
        };
        assert_eq!(seconds(1_751_394_600_999), 1_751_394_600);
        assert_eq!(seconds(-5_000), 0);
    }

    #[test]
    fn the_query_adds_the_object_id_branch_without_asking_the_collection() {
        let q = incremental_query("modified_at", 1_751_394_600_000);
        let branches = q.get_array("$or").unwrap();
        assert_eq!(branches.len(), 5, "the four representations and the _id branch");
        let id = branches[4].as_document().unwrap().get_document("_id").unwrap();
        assert_eq!(id.get_object_id("$gte").unwrap(), object_id_at(1_751_394_600_000));
        // A collection whose timestamp is its _id needs no second _id branch.
        assert_eq!(incremental_query("_id", 1_751_394_600_000).get_array("$or").unwrap().len(), 4);
    }
}
