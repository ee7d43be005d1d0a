//! What the write strategies share (see [`super`]): the job a partition is written under ([`Job`]), what a
//! strategy returns ([`Built`]), this run's rows for a partition deduplicated ([`FreshRows`]) and built into
//! Arrow ([`FreshBatches`]), documents encoded in key order ([`DocEncoder`]), a file's rows joined with the fresh
//! ones as BSON ([`DocMerge`]), and how a file's key is read ([`key_text`]). The strategies import this module
//! and nothing of each other or of the dispatcher.
use crate::config::CollectionSpec;
use crate::schema::arrow::{self as sarrow, ColumnBuilder, Prepare};
use crate::schema::{text, LakeType};
use crate::sink::parquet::{self, Encoded};
use crate::sink::upload::ChunkSink;
use crate::sync::buffer::{Part, PartBytes, RowMeta};
use crate::sync::rejects::Reject;
use crate::transform::dedup::{latest, Candidate};
use crate::transform::{get_path, timestamp};
use crate::{Error, Result};
use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{Fields, SchemaRef};
use bson::{RawBsonRef, RawDocument, RawDocumentBuf};
use std::borrow::Cow;
use std::collections::HashSet;

/// A partition's encoded file and what merging it did.
pub(super) struct Built {
    pub bytes: Encoded,
    pub rows: u64,
    pub dups: u64,
    pub replaced: u64,
    pub rejects: Vec<Reject>,
}

/// The collection's file type and what every partition's builder of it shares, made once a collection: the
/// Arrow fields and routes of its document builder ([`ColumnBuilder::empty_like`]).
pub struct FileShape {
    pub ty: LakeType,
    /// An empty builder of `ty`'s documents, the key column a key column; never appended to.
    documents: ColumnBuilder,
    /// `ty` as a file's footer holds it ([`parquet::lake_type_text`]): a file of the collection's type is
    /// recognised by it.
    pub(super) text: String,
    /// `ty`'s Arrow fields (none when it is not a struct), as a schema: what a file of `ty` is read as
    /// ([`Job::open`]).
    pub(super) schema: SchemaRef,
}

impl FileShape {
    pub fn new(ty: LakeType, key: &str) -> FileShape {
        let documents = ColumnBuilder::for_documents(&ty, 0).key_column(key);
        let text = parquet::lake_type_text(&ty);
        let fields = match &ty {
            LakeType::Struct { fields } => sarrow::struct_fields(fields),
            _ => Fields::empty(),
        };
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
        FileShape { ty, documents, text, schema }
    }
}

/// What encoding one partition needs besides its rows.
#[derive(Clone, Copy)]
pub(super) struct Job<'a> {
    /// Keys to drop from the existing rows (their newest version lives in another partition, or was deleted).
    pub remove: &'a HashSet<String>,
    /// Buffered rows (by read order) not to write.
    pub dropped: &'a crate::FastSet<u64>,
    pub file_ty: &'a LakeType,
    /// The collection's file type; its builders are used when `file_ty` is its type ([`Job::builder`]).
    pub shape: &'a FileShape,
    pub hints: &'a [String],
    pub in_path: &'a [String],
    pub spec: &'a CollectionSpec,
    pub row_groups: parquet::RowGroups,
    pub context: &'a str,
}

impl Job<'_> {
    /// Whether `ty` is the collection's file type itself (not a file's older type): what the shape was made for.
    fn is_shape(&self, ty: &LakeType) -> bool {
        std::ptr::eq(ty, &self.shape.ty)
    }

    /// An existing file of the partition, its footer parsed: when `file_ty` is the collection's type, read as
    /// the shape's Arrow schema if the footer names that type ([`parquet::WholeFile::open_as`]).
    pub fn open(&self, bytes: bytes::Bytes) -> Result<parquet::WholeFile> {
        match self.is_shape(self.file_ty) {
            true => parquet::WholeFile::open_as(bytes, self.context, &self.shape.text, &self.shape.schema),
            false => parquet::WholeFile::open(bytes, self.context),
        }
    }

    /// The lake type `file` was written with: `file_ty` itself when the file's footer names the collection's
    /// type and `file_ty` is it (nothing parsed), else parsed from the footer.
    pub fn type_of<'j>(&'j self, file: &parquet::WholeFile) -> Result<Cow<'j, LakeType>> {
        match self.is_shape(self.file_ty) && file.written_as(&self.shape.text) {
            true => Ok(Cow::Borrowed(self.file_ty)),
            false => file.lake_type(self.context).map(Cow::Owned),
        }
    }

    /// The Arrow fields of `ty`'s documents: the collection's, made once, when `ty` is its type.
    pub fn arrow_fields(&self, ty: &LakeType) -> Fields {
        match (self.is_shape(ty), ty) {
            (true, _) => self.shape.schema.fields().clone(),
            (false, LakeType::Struct { fields }) => sarrow::struct_fields(fields),
            (false, _) => Fields::empty(),
        }
    }

    /// An empty builder of `file_ty`'s documents with room for `rows` (the key column a key column): made like
    /// the collection's shape when `file_ty` is its type, else (a file of an older type) from the type.
    pub fn builder(&self, rows: usize) -> ColumnBuilder {
        match self.is_shape(self.file_ty) {
            true => self.shape.documents.empty_like(rows),
            false => ColumnBuilder::for_documents(self.file_ty, rows).key_column(&self.spec.key),
        }
    }
}

/// Rows per Arrow batch handed to the encoder: bounds the Arrow held for one partition, and is a multiple of the
/// writer's 1024-row mini-batch so the file's bytes do not depend on it (see [`parquet::Encoder::write`]).
pub(super) const ENCODE_BATCH_ROWS: usize = 8192;
/// ... or fewer rows (still a multiple of 1024) once their documents pass this many bytes (large documents).
pub(super) const ENCODE_BATCH_BYTES: usize = 4 << 20;

/// This run's rows for a partition, without those the plan dropped.
pub(super) fn fresh_rows(part: Part, dropped: &crate::FastSet<u64>) -> Result<(PartBytes, Vec<RowMeta>)> {
    let (bytes, mut rows) = part.into_bytes()?;
    if !dropped.is_empty() {
        rows.retain(|r| !dropped.contains(&r.seq));
    }
    Ok((bytes, rows))
}

/// Documents in key order to one Parquet file: Arrow batches of [`ENCODE_BATCH_ROWS`] (or fewer rows of large
/// documents) handed to the encoder as they fill, so a partition holds one batch of Arrow at a time.
pub(super) struct DocEncoder<'a> {
    job: &'a Job<'a>,
    prepare: Box<Prepare>,
    builder: ColumnBuilder,
    encoder: Option<parquet::Encoder>,
    /// Where the file streams to, until the first batch opens the encoder; None: in memory.
    sink: Option<ChunkSink>,
    value_rejects: Vec<sarrow::ValueReject>,
    rejects: Vec<Reject>,
    in_batch: usize,
    batch_bytes: usize,
    rows: u64,
}

impl<'a> DocEncoder<'a> {
    /// `rows`: about how many documents will be pushed (room for them, up to a batch, is made at once).
    pub fn new(job: &'a Job<'a>, sink: Option<ChunkSink>, rows: usize) -> Self {
        let room = rows.clamp(1, ENCODE_BATCH_ROWS);
        DocEncoder {
            job,
            prepare: prepare_fn(job.hints, job.in_path),
            builder: job.builder(room),
            encoder: None,
            sink,
            value_rejects: Vec::new(),
            rejects: Vec::new(),
            in_batch: 0,
            batch_bytes: 0,
            rows: 0,
        }
    }

    /// Appends the document of `key` (the next in key order).
    pub fn push(&mut self, key: &str, doc: &RawDocument) -> Result<()> {
        let spec = self.job.spec;
        self.builder.append_document(doc, self.prepare.as_ref(), &mut self.value_rejects).map_err(|m| {
            Error::collection(format!("{}.{}", spec.database, spec.collection), format!("document {key}: {m}"))
        })?;
        for r in self.value_rejects.drain(..) {
            self.rejects.push(Reject::value(&shown_key(doc, &spec.key, key), r));
        }
        self.in_batch += 1;
        self.rows += 1;
        self.batch_bytes += doc.as_bytes().len();
        if self.in_batch == ENCODE_BATCH_ROWS
            || (self.in_batch.is_multiple_of(1024) && self.batch_bytes >= ENCODE_BATCH_BYTES)
        {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = finish_batch(&mut self.builder, self.job.context)?;
        if self.encoder.is_none() {
            let Job { file_ty, row_groups, context, .. } = *self.job;
            let sink = match self.sink.take() {
                Some(upload) => parquet::FileSink::Upload(upload),
                None => parquet::FileSink::Memory(Vec::new()),
            };
            self.encoder = Some(parquet::Encoder::to_sink(sink, batch.schema(), file_ty, row_groups, context)?);
        }
        (self.in_batch, self.batch_bytes) = (0, 0);
        self.encoder.as_mut().expect("just created").write(&batch)
    }

    /// Documents pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The file, and the values its columns could not hold. A partition left without rows writes no file (it
    /// is deleted, see the dispatcher): a streamed one's upload is dropped, hence aborted.
    pub fn finish(mut self) -> Result<(Encoded, Vec<Reject>)> {
        if self.rows == 0 {
            let none = if self.sink.is_some() { Encoded::Streamed(0) } else { Encoded::Memory(Default::default()) };
            return Ok((none, self.rejects));
        }
        if self.in_batch > 0 {
            self.flush()?;
        }
        Ok((self.encoder.expect("at least one batch").finish_file()?, self.rejects))
    }
}

/// A document's key as the rejects area shows it: the plain text of its value (`42`), as the read pass's
/// rejects show it, rather than the type-tagged text rows are matched by.
fn shown_key(doc: &RawDocument, field: &str, matched: &str) -> String {
    get_path(doc, field).map(text::render).unwrap_or_else(|| matched.to_string())
}

pub(super) fn buffered_doc<'a>(
    bytes: &'a PartBytes,
    row: &RowMeta,
    scratch: &'a mut Vec<u8>,
    context: &str,
) -> Result<&'a RawDocument> {
    RawDocument::from_bytes(bytes.doc(row, scratch)?).map_err(|e| Error::encode(context, e))
}

pub(super) fn prepare_fn(hints: &[String], in_path: &[String]) -> Box<Prepare> {
    let (in_path, hints) = (in_path.to_vec(), hints.to_vec());
    Box::new(move |name: &str, v: RawBsonRef<'_>| {
        if in_path.iter().any(|p| p == name) {
            None
        } else if hints.iter().any(|h| h == name) {
            Some(timestamp::normalise(v))
        } else {
            Some(v)
        }
    })
}

pub(super) fn finish_batch(builder: &mut ColumnBuilder, context: &str) -> Result<RecordBatch> {
    let array = builder.finish();
    let s = array
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| Error::encode(context, "the document type has no columns"))?;
    if s.num_columns() == 0 {
        return Err(Error::encode(context, "every field of the documents is a partition column; nothing to store"));
    }
    Ok(RecordBatch::from(s.clone()))
}

/// This run's documents for one partition, deduplicated (one per key) and sorted by key, not yet built.
pub(super) struct FreshRows<'r> {
    bytes: &'r PartBytes,
    rows: &'r [RowMeta],
    pub candidates: Vec<Candidate<'r>>,
    /// Indices into `candidates` (and `rows`) of the winners, sorted by key.
    pub winners: Vec<usize>,
}

impl<'r> FreshRows<'r> {
    pub fn new(bytes: &'r PartBytes, rows: &'r [RowMeta]) -> FreshRows<'r> {
        let candidates: Vec<Candidate> = rows
            .iter()
            .map(|r| Candidate { key: Cow::Borrowed(r.key.as_str()), fresh: true, timestamp: r.timestamp, seq: r.seq })
            .collect();
        let winners = latest(&candidates);
        FreshRows { bytes, rows, candidates, winners }
    }

    pub fn len(&self) -> usize {
        self.winners.len()
    }

    /// The key of the `j`-th winner.
    pub fn key(&self, j: usize) -> &str {
        &self.candidates[self.winners[j]].key
    }

    /// Documents read for the partition that a newer one read in this run superseded.
    pub fn dups(&self) -> u64 {
        (self.candidates.len() - self.winners.len()) as u64
    }

    /// The winners built into Arrow in order, batches of `max_rows` rows or fewer once their documents pass
    /// `max_bytes`.
    pub fn batches<'a>(&'a self, job: &'a Job<'a>, max_rows: usize, max_bytes: usize) -> FreshBatches<'a, 'r> {
        FreshBatches {
            fresh: self,
            job,
            next: 0,
            max_rows,
            max_bytes,
            prepare: prepare_fn(job.hints, job.in_path),
            builder: job.builder(self.len().min(max_rows).min(ENCODE_BATCH_ROWS)),
            scratch: Vec::new(),
            value_rejects: Vec::new(),
            rejects: Vec::new(),
        }
    }
}

/// Builds [`FreshRows`]' winners into Arrow batches; see [`FreshRows::batches`].
pub(super) struct FreshBatches<'a, 'r> {
    fresh: &'a FreshRows<'r>,
    job: &'a Job<'a>,
    next: usize,
    max_rows: usize,
    max_bytes: usize,
    prepare: Box<Prepare>,
    builder: ColumnBuilder,
    scratch: Vec<u8>,
    value_rejects: Vec<sarrow::ValueReject>,
    /// Values the built documents' columns could not hold.
    pub rejects: Vec<Reject>,
}

impl FreshBatches<'_, '_> {
    /// The next batch; an empty one (the type's schema) once every winner is built.
    pub fn next_batch(&mut self) -> Result<RecordBatch> {
        let Job { spec, context, .. } = *self.job;
        let (mut n, mut bytes) = (0, 0);
        while self.next < self.fresh.len() && n < self.max_rows && bytes < self.max_bytes {
            let r = &self.fresh.rows[self.fresh.winners[self.next]];
            let doc = buffered_doc(self.fresh.bytes, r, &mut self.scratch, context)?;
            bytes += doc.as_bytes().len();
            self.builder.append_document(doc, self.prepare.as_ref(), &mut self.value_rejects).map_err(|m| {
                Error::collection(format!("{}.{}", spec.database, spec.collection), format!("document {}: {m}", r.key))
            })?;
            for v in self.value_rejects.drain(..) {
                self.rejects.push(Reject::value(&shown_key(doc, &spec.key, &r.key), v));
            }
            (self.next, n) = (self.next + 1, n + 1);
        }
        finish_batch(&mut self.builder, context)
    }
}

/// Row `row` of a file's batch as BSON (as the in-memory path reads it back), with its key text.
pub(super) fn row_doc(
    s: &StructArray,
    row: usize,
    file_ty: &LakeType,
    job: &Job<'_>,
) -> Result<(String, RawDocumentBuf)> {
    let doc = match sarrow::to_bson(s, row, file_ty) {
        Some(bson::Bson::Document(d)) => d,
        _ => bson::Document::new(),
    };
    let doc = RawDocumentBuf::try_from(&doc).map_err(|e| Error::encode(job.context, e))?;
    let key = get_path(&doc, &job.spec.key).map(text::key_text).unwrap_or_default();
    Ok((key, doc))
}

/// A file's rows, given as BSON in key order, joined with this run's winners into a new file (a fresh document
/// always wins; a row whose key moved away is dropped). Rows sharing a key (a file written by other means) are
/// all kept, or all replaced by the fresh document, as the in-memory merge does.
pub(super) struct DocMerge<'f, 'j> {
    out: DocEncoder<'j>,
    fresh: &'f FreshRows<'f>,
    job: &'j Job<'j>,
    scratch: Vec<u8>,
    /// The next fresh winner.
    j: usize,
    replaced: u64,
    /// The last row's key, and whether a fresh document replaced it.
    prev: Option<(String, bool)>,
}

impl<'f, 'j> DocMerge<'f, 'j> {
    /// `sink`: where the file streams to; None: in memory.
    pub fn new(fresh: &'f FreshRows<'f>, job: &'j Job<'j>, sink: Option<ChunkSink>) -> Self {
        let out = DocEncoder::new(job, sink, fresh.winners.len());
        DocMerge { out, fresh, job, scratch: Vec::new(), j: 0, replaced: 0, prev: None }
    }

    fn push_fresh(&mut self) -> Result<()> {
        let r = &self.fresh.rows[self.fresh.winners[self.j]];
        self.j += 1;
        self.out.push(&r.key, buffered_doc(self.fresh.bytes, r, &mut self.scratch, self.job.context)?)
    }

    /// The file's next row; false (and nothing done) when its key is below the last one's.
    pub fn push_old(&mut self, key: String, doc: &bson::RawDocument) -> Result<bool> {
        let remove = self.job.remove;
        let again = match &self.prev {
            Some((p, _)) if p.as_str() > key.as_str() => return Ok(false),
            Some((p, replaced)) if *p == key => Some(*replaced),
            _ => None,
        };
        let replaced = match again {
            Some(true) => {
                self.replaced += u64::from(!remove.contains(&key));
                true
            }
            Some(false) => {
                if !remove.contains(&key) {
                    self.out.push(&key, doc)?;
                }
                false
            }
            None => {
                while self.j < self.fresh.len() && self.fresh.key(self.j) < key.as_str() {
                    self.push_fresh()?;
                }
                if self.j < self.fresh.len() && self.fresh.key(self.j) == key {
                    self.replaced += u64::from(!remove.contains(&key));
                    self.push_fresh()?;
                    true
                } else {
                    if !remove.contains(&key) {
                        self.out.push(&key, doc)?;
                    }
                    false
                }
            }
        };
        self.prev = Some((key, replaced));
        Ok(true)
    }

    pub fn finish(mut self) -> Result<Built> {
        while self.j < self.fresh.len() {
            self.push_fresh()?;
        }
        let rows = self.out.rows();
        let (bytes, rejects) = self.out.finish()?;
        Ok(Built { bytes, rows, dups: self.fresh.dups(), replaced: self.replaced, rejects })
    }
}

/// The text a key is matched by ([`text::key_text`] of the BSON value). A key column stored as text holds that
/// text (see [`sarrow::ColumnBuilder::key_column`]), so it is borrowed straight from the array without a BSON
/// round trip (strings and ObjectIds, the common case).
pub(super) fn key_text<'a>(array: &'a dyn Array, row: usize, ty: &LakeType) -> Cow<'a, str> {
    match (ty, array.data_type()) {
        (LakeType::String, arrow::datatypes::DataType::Utf8) if !array.is_null(row) => {
            Cow::Borrowed(array.as_string::<i32>().value(row))
        }
        _ => Cow::Owned(
            sarrow::to_bson(array, row, ty)
                .and_then(|b| bson::RawBson::try_from(b).ok())
                .map(|raw| text::key_text(raw.as_raw_bson_ref()))
                .unwrap_or_default(),
        ),
    }
}

/// Whether row `ar` of `a` holds the same values as row `br` of `b` (logical equality of one-row slices, as
/// [`same_rows`] compares whole files).
pub(super) fn same_row(a: &RecordBatch, ar: usize, b: &RecordBatch, br: usize) -> bool {
    a.columns().iter().zip(b.columns()).all(|(x, y)| x.slice(ar, 1).to_data() == y.slice(br, 1).to_data())
}

/// The Arrow merge needs the key as a top-level column, and the file's Arrow types exactly those the builders
/// produce for the collection's type (they are, unless a file was written by a different version).
/// `job` says which Arrow types those are ([`Job::arrow_fields`]).
pub(super) fn arrow_mergeable(schema: &SchemaRef, file_ty: &LakeType, job: &Job<'_>) -> bool {
    let LakeType::Struct { fields } = file_ty else { return false };
    if !fields.iter().any(|f| f.source == job.spec.key) {
        return false;
    }
    let want = job.arrow_fields(file_ty);
    schema.fields().len() == want.len()
        && schema.fields().iter().zip(want.iter()).all(|(g, w)| g.name() == w.name() && g.data_type() == w.data_type())
}
