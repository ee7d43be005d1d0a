//! Reconcile: find what a timestamp query cannot see, by comparing key sets.
//!
//! A hard delete leaves nothing for `find({ts >= W})` to return, and a document written without the timestamp
//! field, or stamped older than the watermark minus the overlap by a late writer, is never returned either. A
//! reconcile run (`sync --reconcile`, or every `[sync] reconcile_every_days`) therefore, after the usual read
//! pass:
//!
//! ```text
//!  live  := keys of every document in MongoDB     (find({}, {key: 1}), keys only, raw batches)
//!  lake  := keys in the key index ∪ keys read by this run's pass 1
//!  deleted := lake − live   ─► removed from their partitions in this run's write pass
//!  missing := live − lake   ─► fetched by key ({key: {$in: [...]}}, batches of 1,000) into pass 1
//! ```
//! Order matters: the key scan starts after pass 1, so a document deleted in between counts as deleted, and
//! one inserted in between is fetched as missing. The live key set is held in memory (about 60-100 bytes per
//! document: the key's text plus a hash-set slot); only the keys, never the documents, cross the network.
use super::read::ReadPass;
use crate::schema::text;
use crate::state::index::KeyIndex;
use crate::transform::get_path;
use crate::{Error, Result};
use futures::StreamExt;
use std::collections::HashSet;

/// Keys fetched per `$in` query.
const FETCH_CHUNK: usize = 1_000;

/// What a reconcile found.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Keys in the lake (or read by this run) whose documents no longer exist.
    pub deleted: HashSet<String>,
    /// Documents in MongoDB that the lake lacked, fetched into the read pass.
    pub fetched: u64,
    /// Documents in MongoDB.
    pub live: u64,
}

/// Compares key sets and feeds missing documents into `pass`; see the module docs.
pub async fn reconcile(pass: &mut ReadPass, index: &KeyIndex) -> Result<Reconciled> {
    let name = pass.name.clone();
    let key_field = pass.spec.key.clone();
    let collection =
        pass.ctx().client.database(&pass.spec.database).collection::<bson::Document>(&pass.spec.collection);
    let mut read: HashSet<String> = HashSet::new();
    pass.buffers.for_each_key(|k| {
        read.insert(k.to_string());
    })?;
    let mut live: HashSet<String> = HashSet::with_capacity(index.len());
    let mut missing: Vec<bson::Bson> = Vec::new();
    let mut projection = bson::doc! { key_field.as_str(): 1 };
    if key_field != "_id" {
        projection.insert("_id", 0);
    }
    let mut cursor = collection
        .find(bson::Document::new())
        .projection(projection)
        .batch_size(pass.ctx().batch_size.max(10_000))
        .batch()
        .await
        .map_err(|e| Error::mongo(format!("{name}: reconcile key scan"), e))?;
    while let Some(batch) = cursor.next().await {
        let batch = batch.map_err(|e| Error::mongo(format!("{name}: reconcile key scan"), e))?;
        let docs = batch.doc_slices().map_err(|e| Error::mongo(format!("{name}: reconcile key scan"), e))?;
        for raw in docs.into_iter().flatten() {
            let Some(doc) = raw.as_document() else { continue };
            // A document without the key is reported by the read pass; here it can neither be live nor missing.
            let Some(v) = get_path(doc, &key_field) else { continue };
            let key = text::render(v);
            if !index.contains_key(&key) && !read.contains(&key) {
                if let Ok(b) = bson::Bson::try_from(v) {
                    missing.push(b);
                }
            }
            live.insert(key);
        }
    }
    let mut out = Reconciled { live: live.len() as u64, ..Default::default() };
    out.deleted = index
        .entries()
        .into_iter()
        .map(|(k, _)| k)
        .chain(read.iter().map(String::as_str))
        .filter(|k| !live.contains(*k))
        .map(str::to_string)
        .collect();
    drop(live);

    for chunk in missing.chunks(FETCH_CHUNK) {
        let filter = bson::doc! { key_field.as_str(): { "$in": chunk.to_vec() } };
        let before = pass.seq;
        pass.read(filter).await?;
        out.fetched += pass.seq - before;
    }
    if out.fetched > 0 || !out.deleted.is_empty() {
        tracing::info!(
            collection = %name,
            live = out.live,
            deleted = out.deleted.len(),
            fetched = out.fetched,
            "Reconciled key sets"
        );
    }
    Ok(out)
}
