//! Pass 1 of the commit protocol (see [`super::collection`]): stream raw BSON batches, and for each document
//! infer its type into the collection's schema, compute its key, timestamp and partition, and buffer its raw
//! bytes per partition. Reconcile feeds the documents it fetches by key through the same [`ReadPass::ingest`].
use super::buffer::PartitionBuffers;
use super::context::RunContext;
use super::rejects::Reject;
use crate::config::{CollectionSpec, PartitionKey};
use crate::schema::{text, Field, LakeType};
use crate::state::digest::{version_hash, Recorder, Skip, Skipper};
use crate::transform::dedup::Version;
use crate::transform::partition::Partitioner;
use crate::transform::{get_path, timestamp};
use crate::{Error, Result};
use bson::{RawBsonRef, RawDocument};
use futures::StreamExt;
use std::sync::Arc;

/// A collection's masking rules as split paths, and the HMAC key of its `hash` rules.
type Masking = (Vec<Vec<String>>, Option<Vec<u8>>);

/// What pass 1 accumulates for one collection.
pub struct ReadPass {
    pub name: String,
    pub spec: CollectionSpec,
    /// The collection's top-level fields, widened by every document read.
    pub fields: Vec<Field>,
    pub buffers: PartitionBuffers,
    /// Per partition key, how many documents had a value (a key present in none is a configuration error).
    pub present: Vec<u64>,
    /// The greatest timestamp read (for the watermark).
    pub max_ts: Option<i64>,
    /// Documents read (also their read order, which breaks timestamp ties: the one read last wins).
    pub seq: u64,
    pub rejected: Vec<Reject>,
    /// Fields normalised to timestamps whatever their representation.
    pub hints: Vec<String>,
    reserved: Vec<(String, Option<String>)>,
    pub partitioner: Partitioner,
    /// Masking rules (split paths) and the HMAC key, when the collection has rules.
    mask: Option<Masking>,
    /// The top-level fields ingest needs besides the type, picked up during the same scan.
    capture: Capture,
    /// Values masked per rule.
    pub masked: crate::mask::MaskCounts,
    /// What a value its column's type cannot hold does (the stored schema's policy; set before reading).
    pub conflicts: crate::schema::Conflicts,
    /// The documents whose version the lake holds (from the digest of the run before; set before reading).
    pub known: Skipper,
    /// The versions read that the next run may re-read (its digest).
    pub recent: Recorder,
    /// Documents read as the lake holds them and not buffered (see [`crate::state::digest`]).
    pub unchanged: u64,
    ctx: Arc<RunContext>,
}

impl ReadPass {
    /// Fails when the collection has `hash` rules and the environment's HMAC key cannot be resolved: such a
    /// collection must not read a single document unmasked.
    pub fn new(spec: &CollectionSpec, fields: Vec<Field>, ctx: &Arc<RunContext>) -> Result<ReadPass> {
        let mask = if spec.mask.is_empty() {
            None
        } else {
            let key = if spec.mask.needs_hmac_key() {
                let secret = ctx.masking.hmac_key.as_ref().ok_or_else(|| {
                    Error::collection(
                        spec.name(),
                        format!(
                            "collections.csv line {} uses `hash` masking, but the environment has no [masking] \
                             hmac_key; add `[masking] hmac_key = {{ env = \"MONGOLAKE_HMAC_KEY\" }}` and set it",
                            spec.line
                        ),
                    )
                })?;
                let k = secret.resolve("masking.hmac_key")?;
                if k.len() < 16 {
                    return Err(Error::collection(spec.name(), "[masking] hmac_key must be at least 16 characters"));
                }
                Some(k.into_bytes())
            } else {
                None
            };
            Some((crate::mask::apply::split_paths(&spec.mask), key))
        };
        let in_path = spec.path_fields();
        let reserved = spec
            .partition
            .keys
            .iter()
            .map(|k| (k.column().to_string(), in_path.iter().find(|p| *p == k.path()).cloned()))
            .collect();
        Ok(ReadPass {
            name: spec.name(),
            spec: spec.clone(),
            fields,
            buffers: PartitionBuffers::new(ctx.memory.clone()),
            present: vec![0; spec.partition.keys.len()],
            max_ts: None,
            seq: 0,
            rejected: Vec::new(),
            hints: timestamp_hints(spec),
            reserved,
            partitioner: Partitioner::new(&spec.partition, ctx.sync.timezone),
            mask,
            masked: Default::default(),
            conflicts: crate::schema::Conflicts::Widen,
            capture: Capture::new(spec),
            known: Skipper::default(),
            recent: Recorder::new(ctx.sync.overlap.num_milliseconds()),
            unchanged: 0,
            ctx: ctx.clone(),
        })
    }

    pub fn ctx(&self) -> &RunContext {
        &self.ctx
    }

    /// Reads every document matching `filter` as raw batches.
    pub async fn read(&mut self, filter: bson::Document) -> Result<()> {
        self.read_all(vec![filter]).await
    }

    /// Reads every document matching any of `filters` (disjoint `_id` ranges), each with its own cursor.
    ///
    /// Each cursor runs in a task of its own and hands its raw batches over through a small channel, so the
    /// next `getMore` is in flight while this task decodes the last batch: the cursor never waits on decoding,
    /// and decoding only waits when the server is slower. Documents of one key are always in one range, so the
    /// read order that breaks timestamp ties for a key is preserved.
    pub async fn read_all(&mut self, filters: Vec<bson::Document>) -> Result<()> {
        let collection =
            self.ctx.client.database(&self.spec.database).collection::<bson::Document>(&self.spec.collection);
        let (tx, mut rx) = tokio::sync::mpsc::channel(2 * filters.len().max(1));
        let mut readers = Vec::new();
        for filter in filters {
            let (tx, collection, name) = (tx.clone(), collection.clone(), self.name.clone());
            let batch_size = self.ctx.batch_size;
            readers.push(tokio::spawn(async move {
                let mut cursor = match collection.find(filter).batch_size(batch_size).batch().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(Error::mongo(format!("{name}: find"), e))).await;
                        return;
                    }
                };
                while let Some(batch) = cursor.next().await {
                    let batch = batch.map_err(|e| Error::mongo(format!("{name}: reading a batch"), e));
                    let failed = batch.is_err();
                    // A closed channel means the consumer stopped (an error): stop reading.
                    if tx.send(batch).await.is_err() || failed {
                        return;
                    }
                }
            }));
        }
        drop(tx);
        let mut outcome = Ok(());
        while let Some(batch) = rx.recv().await {
            let name = self.name.clone();
            let ingested = batch.and_then(|b| {
                let docs = b.doc_slices().map_err(|e| Error::mongo(format!("{name}: reading a batch"), e))?;
                self.ingest_batch(docs)
            });
            if let Err(e) = ingested {
                outcome = Err(e);
                break;
            }
        }
        drop(rx);
        for r in readers {
            r.await
                .map_err(|source| Error::Task { context: format!("{}: a reader task failed", self.name), source })?;
        }
        outcome
    }

    /// This collection in up to `k` `_id` ranges (see [`crate::source::id_ranges`]); `docs` is its estimated
    /// size when the caller has it.
    pub async fn id_ranges(&self, k: usize, docs: Option<u64>) -> Result<Vec<bson::Document>> {
        let collection =
            self.ctx.client.database(&self.spec.database).collection::<bson::Document>(&self.spec.collection);
        crate::source::id_ranges(&collection, &self.name, k, docs).await
    }

    fn ingest_batch(&mut self, docs: &bson::RawArray) -> Result<()> {
        for raw in docs {
            let doc = raw.ok().and_then(|r| r.as_document()).ok_or_else(|| Error::Bson {
                collection: self.name.clone(),
                message: "a batch element is not a document".into(),
            })?;
            self.ingest(doc)?;
        }
        crate::fault::point("after_batch");
        Ok(())
    }

    /// Takes one document into the pass.
    pub fn ingest(&mut self, doc: &RawDocument) -> Result<()> {
        self.seq += 1;
        self.ctx.progress.docs_read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Masking first: nothing below (type inference, buffers and spill files, rejects, logs) sees the
        // unmasked document.
        let masked;
        let doc = match &self.mask {
            None => doc,
            Some((paths, key)) => {
                match crate::mask::apply(doc, &self.spec.mask, paths, key.as_deref(), &mut self.masked) {
                    Ok(m) => {
                        masked = m;
                        &masked
                    }
                    Err(reason) => {
                        // Unreadable: its raw bytes are withheld, since they could not be masked.
                        let key = get_path(doc, &self.spec.key).map(text::render);
                        tracing::warn!(collection = %self.name, key = key.as_deref().unwrap_or("?"), %reason, "Document rejected");
                        self.rejected.push(Reject {
                            key: key.unwrap_or_default(),
                            path: String::new(),
                            reason: format!("{reason} (raw bytes withheld: the collection has masking rules)"),
                            value: None,
                            raw_bson_base64: None,
                        });
                        return Ok(());
                    }
                }
            }
        };
        // Read the whole document once (inferring its type, and picking up the top-level key, timestamp and
        // partition fields on the way); unreadable BSON is rejected, not fatal.
        let mut got = [None; MAX_CAPTURE];
        let how = Scan { hints: &self.hints, reserved: &self.reserved, conflicts: self.conflicts, key: &self.spec.key };
        let scanned = observe_scan(&mut self.fields, doc, &how, Some((&mut self.capture, &mut got)));
        if let Err(reason) = scanned {
            let key = get_path(doc, &self.spec.key).map(text::render);
            tracing::warn!(collection = %self.name, key = key.as_deref().unwrap_or("?"), %reason, "Document rejected");
            self.rejected.push(Reject::document(key.as_deref().unwrap_or(""), reason, doc.as_bytes()));
            return Ok(());
        }
        let field = |slot: Option<usize>, path: &str| match slot {
            Some(s) => got[s],
            None => get_path(doc, path),
        };
        let key = match field(self.capture.key, &self.spec.key) {
            Some(v) => text::key_text(v),
            None => {
                return Err(Error::collection(
                    &self.name,
                    format!(
                        "a document has no key field `{}` (collections.csv `key` column); _id: {}",
                        self.spec.key,
                        doc.get("_id").ok().flatten().map(text::render).unwrap_or_default()
                    ),
                ))
            }
        };
        let stamp = field(self.capture.timestamp, &self.spec.timestamp_column);
        let ts = stamp.and_then(timestamp::instant_millis);
        let stamped_as_text = matches!(stamp, Some(RawBsonRef::String(_)));
        if let Some(t) = ts {
            self.max_ts = Some(self.max_ts.map_or(t, |m| m.max(t)));
        }
        let slots = &self.capture.partition;
        let values = self.partitioner.values_from(|i, path| field(slots[i], path));
        for (i, v) in values.iter().enumerate() {
            if v.is_some() {
                self.present[i] += 1;
            }
        }
        if self.skip_unchanged(doc, &key, (ts, stamped_as_text), &values) {
            self.unchanged += 1;
            return Ok(());
        }
        self.buffers.push(values, doc.as_bytes(), key, ts, self.seq)
    }

    /// Whether this document is the version of its key the lake holds (the digest knows its hash and no other
    /// version read in this run outranks it), so it is not buffered; records it for the next digest either way.
    fn skip_unchanged(
        &mut self,
        doc: &RawDocument,
        key: &str,
        (ts, text): (Option<i64>, bool),
        values: &[Option<String>],
    ) -> bool {
        let known = self.known.knows(key);
        // (when the next run re-reads it: by its timestamp, or by its `_id`'s creation time, see Recorder::record)
        let mut at = ts;
        if !self.recent.wants(at, text) {
            if let Ok(Some(RawBsonRef::ObjectId(id))) = doc.get("_id") {
                at = Some(at.map_or(id.timestamp().timestamp_millis(), |t| t.max(id.timestamp().timestamp_millis())));
            }
        }
        let wanted = self.recent.wants(at, text);
        if !known && !wanted {
            return false;
        }
        let hash = version_hash(doc.as_bytes());
        let version = Version::read(ts, self.seq);
        match self.known.skip(key, &hash, version) {
            Some(Skip::Held(rel)) => {
                self.recent.record(key, ts, at, text, self.seq, hash, rel);
                return true;
            }
            Some(Skip::Outranked) => return true,
            None => {}
        }
        if wanted {
            let rel: Arc<str> = Arc::from(self.partitioner.relative_path(values));
            self.recent.record(key, ts, at, text, self.seq, hash, rel);
        }
        false
    }
}

/// Fields whose values are normalised to timestamps (the timestamp column and `date(...)` partition sources).
pub fn timestamp_hints(spec: &CollectionSpec) -> Vec<String> {
    let mut hints = vec![spec.timestamp_column.clone()];
    for k in &spec.partition.keys {
        if let PartitionKey::Date { path, .. } = k {
            hints.push(path.clone());
        }
    }
    hints.retain(|h| !h.contains('.'));
    hints
}

/// Observes a top-level document into the collection type, normalising timestamp fields.
/// `reserved` holds the partition columns, with the top-level field each one moves out of the files (if any):
/// only that field may use the column's name.
pub fn observe_document(
    fields: &mut Vec<Field>,
    doc: &RawDocument,
    hints: &[String],
    reserved: &[(String, Option<String>)],
) -> std::result::Result<(), String> {
    let how = Scan { hints, reserved, conflicts: crate::schema::Conflicts::Widen, key: "" };
    observe_scan(fields, doc, &how, None)
}

/// What a scan of a top-level document needs besides the document.
struct Scan<'a> {
    hints: &'a [String],
    reserved: &'a [(String, Option<String>)],
    conflicts: crate::schema::Conflicts,
    /// The key's path: its top-level field never splits into variant columns.
    key: &'a str,
}

/// At most this many top-level fields are captured: the key, the timestamp and three partition fields.
const MAX_CAPTURE: usize = 5;

/// Which top-level fields [`ReadPass::ingest`] reads besides the type (key, timestamp, top-level partition
/// fields), so they come out of the one scan that infers the type instead of a lookup each (a lookup walks the
/// document from its start). Dotted paths are looked up as before.
struct Capture {
    /// Distinct top-level field names; a slot is an index into this.
    names: Vec<String>,
    key: Option<usize>,
    timestamp: Option<usize>,
    /// Per partition key, in `spec.partition.keys` order.
    partition: Vec<Option<usize>>,
    /// Per top-level field of the collection type (same index), its slot: computed once per field, so the scan
    /// compares no names.
    slot_of_field: Vec<Option<usize>>,
}

impl Capture {
    fn new(spec: &CollectionSpec) -> Capture {
        let mut names: Vec<String> = Vec::new();
        let mut slot = |path: &str| -> Option<usize> {
            if path.contains('.') {
                return None;
            }
            match names.iter().position(|n| n == path) {
                Some(i) => Some(i),
                // (more fields than slots: the rest are looked up)
                None if names.len() == MAX_CAPTURE => None,
                None => {
                    names.push(path.to_string());
                    Some(names.len() - 1)
                }
            }
        };
        let key = slot(&spec.key);
        let timestamp = slot(&spec.timestamp_column);
        let partition = spec.partition.keys.iter().map(|k| slot(k.path())).collect();
        Capture { names, key, timestamp, partition, slot_of_field: Vec::new() }
    }
}

/// [`observe_document`], also capturing the fields `capture` names into `got` (first occurrence wins, as a
/// lookup would).
fn observe_scan<'a>(
    fields: &mut Vec<Field>,
    doc: &'a RawDocument,
    how: &Scan<'_>,
    mut capture: Option<(&mut Capture, &mut [Option<RawBsonRef<'a>>; MAX_CAPTURE])>,
) -> std::result::Result<(), String> {
    let mut hint = 0;
    let key_field = how.key.split('.').next().unwrap_or(how.key);
    for el in doc.iter() {
        let (name, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
        let name = name.as_str();
        let found = crate::schema::lattice::find_field(fields, name, hint).or_else(|| {
            // Another spelling of a column, unless its name is a partition column's.
            let base = crate::schema::names::sanitize(name);
            let reserved = how.reserved.iter().any(|(col, src)| *col == base && src.as_deref() != Some(name));
            if reserved {
                None
            } else {
                crate::schema::lattice::find_or_alias(fields, name, hint)
            }
        });
        let i = match found {
            Some(i) => i,
            None => {
                // A new top-level field may not take the name of a partition column it is not the source of.
                let base = crate::schema::names::sanitize(name);
                let column = crate::schema::names::unique(&base, |c| {
                    fields.iter().any(|f| f.column == c)
                        || how.reserved.iter().any(|(col, src)| col == c && src.as_deref() != Some(name))
                });
                fields.push(Field::new(name, &column, LakeType::Null));
                fields.len() - 1
            }
        };
        hint = i + 1;
        if let Some((c, got)) = capture.as_mut() {
            while c.slot_of_field.len() < fields.len() {
                let f = &fields[c.slot_of_field.len()];
                let slot = c.names.iter().position(|n| *n == f.source).filter(|_| f.role.is_main());
                c.slot_of_field.push(slot);
            }
            // (captured by their exact names: another spelling is not the configured field)
            if let Some(s) = c.slot_of_field[i].filter(|_| fields[i].source == name) {
                got[s].get_or_insert(v);
            }
        }
        let v = if how.hints.iter().any(|h| h == name) { timestamp::normalise(v) } else { v };
        let observe = crate::schema::Observe { conflicts: how.conflicts, established: true };
        crate::schema::lattice::observe_member(fields, i, name, v, doc, observe, name == key_field)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    #[test]
    fn a_field_never_takes_a_partition_columns_name() {
        let reserved = vec![("date".to_string(), None), ("facility_id".to_string(), Some("facility_id".to_string()))];
        let mut fields = Vec::new();
        observe_document(&mut fields, &rawdoc! { "date": "x", "facility_id": "BLR01", "Date": 1 }, &[], &reserved)
            .unwrap();
        let cols: Vec<(&str, &str)> = fields.iter().map(|f| (f.source.as_str(), f.column.as_str())).collect();
        assert_eq!(cols, vec![("date", "date_1"), ("facility_id", "facility_id"), ("Date", "date_2")]);
    }

    #[test]
    fn undecodable_bson_is_an_error_for_the_whole_document_not_a_panic() {
        // {_id: 2, s: "\xff"}: framed correctly, but the string is not UTF-8.
        let mut body = vec![0x10];
        body.extend_from_slice(b"_id\0");
        body.extend_from_slice(&2i32.to_le_bytes());
        body.extend_from_slice(&[0x02, b's', 0]);
        body.extend_from_slice(&2i32.to_le_bytes());
        body.extend_from_slice(&[0xff, 0x00]);
        let mut bytes = ((body.len() + 5) as i32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        bytes.push(0);
        for nested in [false, true] {
            let bytes = if nested {
                // The same document one level down: {d: {...}}.
                let mut outer = vec![0x03, b'd', 0];
                outer.extend_from_slice(&bytes);
                let mut b = ((outer.len() + 5) as i32).to_le_bytes().to_vec();
                b.extend_from_slice(&outer);
                b.push(0);
                b
            } else {
                bytes.clone()
            };
            let doc = RawDocument::from_bytes(&bytes).expect("framing is valid");
            let mut fields = Vec::new();
            let err = observe_document(&mut fields, doc, &[], &[]).unwrap_err();
            assert!(err.contains("unreadable BSON"), "{err}");
            let r = Reject::document("2", err, doc.as_bytes());
            assert!(r.is_document() && r.raw_bson_base64.is_some());
        }
    }

    #[test]
    fn timestamp_fields_are_normalised_whatever_their_representation() {
        let mut fields = Vec::new();
        for d in [
            rawdoc! { "ts": bson::DateTime::from_millis(5) },
            rawdoc! { "ts": 1_751_394_600_000i64 },
            rawdoc! { "ts": "2025-07-01T00:00:00Z" },
        ] {
            observe_document(&mut fields, &d, &["ts".to_string()], &[]).unwrap();
        }
        assert_eq!(fields[0].ty, LakeType::Timestamp);
    }
}
