//! `raw_drain`: the benchmark's baseline (issue 6). Reads every document of the given collections as raw BSON
//! batches (`find({}).batch()`, zero-copy `doc_slices()`), counts documents and bytes and discards them: the
//! fastest a client can take the data off the server, which is what mongolake's full load is compared with.
//!
//! ```text
//! raw_drain --uri mongodb://127.0.0.1:27700/?directConnection=true --db hims [--ranges 4] patients visits ...
//! ```
//! Collections (and, with `--ranges K`, the K `_id` ranges of each) are read concurrently, one cursor each.
//! Prints one JSON line: `{"docs":..,"bytes":..,"seconds":..,"ranges":K,"collections":{name:{docs,bytes}}}`.
//! `seconds` covers the reading only (after connecting and splitting into ranges).
//!
//! With `--walk`, every element of every document (nested documents and arrays included) is also read once
//! with the `bson` crate's checked iterator (lengths, UTF-8), and `elements` counts them: the least any client
//! that decodes the documents does, which the benchmark uses for its floor (see `bench/README.md`).

use anyhow::{bail, Context, Result};
use bson::{doc, Document};
use clap::Parser;
use futures::StreamExt;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Drain collections as raw BSON batches and discard them (benchmark baseline)")]
struct Args {
    /// MongoDB connection string.
    #[arg(long)]
    uri: String,
    /// Database holding the collections.
    #[arg(long)]
    db: String,
    /// Split each collection into this many `_id` ranges ($bucketAuto) read by concurrent cursors.
    #[arg(long, default_value_t = 1)]
    ranges: usize,
    /// Documents per batch asked of the server (mongolake's default `[mongodb] batch_size`).
    #[arg(long, default_value_t = 10_000)]
    batch_size: u32,
    /// Also read every element of every document once (checked), as a decoder must at least.
    #[arg(long)]
    walk: bool,
    /// Collections to drain.
    #[arg(required = true)]
    collections: Vec<String>,
}

/// Elements of `doc`, nested ones included, each read with bson's checked iterator.
fn walk(doc: &bson::RawDocument) -> Result<u64> {
    let mut n = 0;
    for el in doc {
        let (_, value) = el.context("unreadable BSON")?;
        n += 1 + walk_value(value)?;
    }
    Ok(n)
}

fn walk_value(value: bson::RawBsonRef<'_>) -> Result<u64> {
    Ok(match value {
        bson::RawBsonRef::Document(d) => walk(d)?,
        bson::RawBsonRef::Array(a) => {
            let mut n = 0;
            for v in a {
                n += 1 + walk_value(v.context("unreadable BSON")?)?;
            }
            n
        }
        _ => 0,
    })
}

/// Drains one cursor: returns (documents, bytes of BSON, elements walked).
async fn drain(
    coll: mongodb::Collection<Document>,
    filter: Document,
    batch_size: u32,
    walk_elements: bool,
) -> Result<(u64, u64, u64)> {
    let mut cursor = coll.find(filter).batch_size(batch_size).batch().await.context("find")?;
    let (mut docs, mut bytes, mut elements) = (0u64, 0u64, 0u64);
    while let Some(batch) = cursor.next().await {
        let batch = batch.context("reading a batch")?;
        for raw in batch.doc_slices().context("batch documents")? {
            let raw = raw.context("batch element")?;
            let Some(d) = raw.as_document() else { bail!("a batch element is not a document") };
            docs += 1;
            bytes += d.as_bytes().len() as u64;
            if walk_elements {
                elements += walk(d)?;
            }
        }
    }
    Ok((docs, bytes, elements))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = mongodb::Client::with_uri_str(&args.uri).await.context("connecting")?;
    let db = client.database(&args.db);
    db.run_command(doc! { "ping": 1 }).await.context("ping")?;

    // Split first (not timed), then start every cursor together.
    let mut jobs = Vec::new();
    for name in &args.collections {
        let coll = db.collection::<Document>(name);
        for filter in mongolake::source::id_ranges(&coll, name, args.ranges, None).await? {
            jobs.push((name.clone(), coll.clone(), filter));
        }
    }
    let start = Instant::now();
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(name, coll, filter)| {
            let (batch_size, walk) = (args.batch_size, args.walk);
            (name, tokio::spawn(async move { drain(coll, filter, batch_size, walk).await }))
        })
        .collect();
    let mut per: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut elements = 0;
    for (name, handle) in handles {
        let (d, b, n) = handle.await.context("a reader task failed")?.with_context(|| format!("{name}: drain"))?;
        let e = per.entry(name).or_default();
        e.0 += d;
        e.1 += b;
        elements += n;
    }
    let seconds = start.elapsed().as_secs_f64();
    let (docs, bytes) = per.values().fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    let collections: serde_json::Map<String, serde_json::Value> =
        per.into_iter().map(|(n, (d, b))| (n, serde_json::json!({ "docs": d, "bytes": b }))).collect();
    let out = serde_json::json!({
        "docs": docs, "bytes": bytes, "seconds": seconds, "ranges": args.ranges, "collections": collections,
        "elements": elements,
    });
    println!("{out}");
    client.shutdown().await;
    Ok(())
}
