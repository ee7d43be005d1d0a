//! Parquet encoding of one partition, and reading a partition file back.
//!
//! Files are zstd-compressed with large row groups (Athena reads row groups in parallel and prefers them big),
//! timestamps in milliseconds (Spark and Athena reject nanoseconds), and carry the collection's lake type in the
//! key-value metadata (`mongolake.lake_type`) so a later run reads every value back exactly.
use super::upload::ChunkSink;
use crate::schema::LakeType;
use crate::{Error, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::{ArrowWriter, ProjectionMask};
pub use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

pub const LAKE_TYPE_KEY: &str = "mongolake.lake_type";

pub use crate::config::environment::RowGroups;

/// The compression of a lake file of [`CHECK_ROWS`] rows or more: zstd, level 1 (pyarrow's default too). On the
/// benchmark's 1M lake (`encode_floor --compression zstd:1,zstd:3`, least of 3) it encodes in 1.23 CPU-seconds
/// against level 3's 1.42, into 56.4 MB against 57.3; on its largest partitions (`pharmacy_stock`, 33,000 rows a
/// file) level 3 is 0.5% smaller for 29% more CPU.
pub fn file_compression() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level"))
}

/// The compression of a small lake file (fewer than [`CHECK_ROWS`] rows): snappy. The parquet writer makes a
/// zstd compressor and decompressor for every column chunk, and on a file of a few rows that costs more than
/// everything else in it and buys nothing: on the facility x day lake of `scripts/bench.sh --small` (14,629
/// files of about 7 rows, `encode_floor --compression zstd:1,snappy,none`) zstd took 12.8 CPU-seconds into
/// 115.0 MB, snappy 3.1 s into 113.5 MB, none 2.8 s into 116.6 MB. Every engine reads either.
pub fn small_file_compression() -> Compression {
    Compression::SNAPPY
}

/// The size check of [`RowGroups::bytes`] happens at these row counts from the file's start, whatever the
/// batches, so the file's bytes still depend on its rows only (see [`Encoder::write`]).
pub const CHECK_ROWS: usize = 1024;

/// Encodes batches into one Parquet file in memory.
pub fn encode(
    schema: SchemaRef,
    batches: &[RecordBatch],
    lake_type: &LakeType,
    row_groups: RowGroups,
    context: &str,
) -> Result<Bytes> {
    let mut e = Encoder::new(schema, lake_type, row_groups, context)?;
    for b in batches {
        e.write(b)?;
    }
    e.finish()
}

/// Where an [`Encoder`]'s bytes go: memory, or a streamed upload ([`super::upload`]).
pub enum FileSink {
    Memory(Vec<u8>),
    Upload(ChunkSink),
}

impl std::io::Write for FileSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            FileSink::Memory(v) => v.write(data),
            FileSink::Upload(u) => u.write(data),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An encoded file: its bytes, or the size of what was streamed; or none, because the merge gave back the
/// existing file's own rows and the file stays as it is; or already in place (on local disk, put there by the
/// thread that encoded it).
#[derive(Debug)]
pub enum Encoded {
    Memory(Bytes),
    Streamed(u64),
    Unchanged,
    Placed,
}

/// What every file of one Arrow schema and lake type shares, built once: the writer properties (with the lake
/// type and the Arrow schema already in the key-value metadata) for a small and a large file, and the Parquet
/// schema. A partition file of a few rows used to spend about a fifth of its CPU building these.
struct FileFormat {
    schema: SchemaRef,
    lake_type: LakeType,
    descriptor: parquet::schema::types::SchemaDescriptor,
    /// Fewer than [`CHECK_ROWS`] rows, and the rest.
    small: WriterProperties,
    large: WriterProperties,
}

impl FileFormat {
    fn new(schema: SchemaRef, lake_type: &LakeType, row_groups: RowGroups, large: Compression) -> Result<FileFormat> {
        let props = |compression: Compression, small: bool| {
            let builder = match small {
                // A few rows a column: one page each, so page statistics (the column index) repeat the chunk's,
                // and a dictionary page only adds to the plain values.
                true => WriterProperties::builder()
                    .set_dictionary_enabled(false)
                    .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk),
                false => WriterProperties::builder(),
            };
            let mut props = builder
                .set_compression(compression)
                .set_max_row_group_row_count(Some(row_groups.rows))
                .set_key_value_metadata(Some(vec![KeyValue::new(LAKE_TYPE_KEY.to_string(), lake_type_text(lake_type))]))
                .set_created_by(format!("mongolake {}", env!("CARGO_PKG_VERSION")))
                .build();
            parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema, &mut props);
            props
        };
        let (small, large) = (props(small_file_compression(), true), props(large, false));
        let descriptor = parquet::arrow::ArrowSchemaConverter::new()
            .with_coerce_types(large.coerce_types())
            .convert(&schema)
            .map_err(|e| Error::parquet("the Parquet schema of the lake type", e))?;
        Ok(FileFormat { schema, lake_type: lake_type.clone(), descriptor, small, large })
    }

    /// The format of `schema` and `lake_type`, built once per process and kept (a run writes a handful of
    /// schemas; the last [`FORMATS_KEPT`] are kept).
    fn of(schema: &SchemaRef, lake_type: &LakeType, row_groups: RowGroups, large: Compression) -> Result<Arc<Self>> {
        static FORMATS: std::sync::Mutex<Vec<Arc<FileFormat>>> = std::sync::Mutex::new(Vec::new());
        let matches = |f: &FileFormat| {
            (Arc::ptr_eq(&f.schema, schema) || f.schema == *schema)
                && f.lake_type == *lake_type
                && f.large.compression(&parquet::schema::types::ColumnPath::new(vec![])) == large
                && f.large.max_row_group_row_count() == Some(row_groups.rows)
        };
        if let Some(f) = FORMATS.lock().expect("not poisoned").iter().find(|f| matches(f)) {
            return Ok(f.clone());
        }
        let format = Arc::new(FileFormat::new(schema.clone(), lake_type, row_groups, large)?);
        let mut kept = FORMATS.lock().expect("not poisoned");
        if kept.len() >= FORMATS_KEPT {
            kept.remove(0);
        }
        kept.push(format.clone());
        Ok(format)
    }
}

/// File formats kept by [`FileFormat::of`].
const FORMATS_KEPT: usize = 32;

/// A Parquet file being encoded batch by batch, so a partition's rows never need to be in Arrow all at once
/// (only the row group being encoded, as compressed pages, is held; streamed, the file itself is not either).
/// The writer opens at the first batch: a first batch of fewer than [`CHECK_ROWS`] rows is the whole file (see
/// [`Encoder::write`]), which is then small and compressed with [`small_file_compression`].
pub struct Encoder {
    writer: Option<ArrowWriter<FileSink>>,
    sink: Option<FileSink>,
    format: Arc<FileFormat>,
    /// The compression of every file, whatever its size (the benchmark's codec comparison).
    fixed: bool,
    context: String,
    /// Ends a row group early once it is this large (see [`RowGroups`]).
    row_group_bytes: usize,
    rows: usize,
}

impl Encoder {
    pub fn new(schema: SchemaRef, lake_type: &LakeType, row_groups: RowGroups, context: &str) -> Result<Encoder> {
        Self::to_sink(FileSink::Memory(Vec::new()), schema, lake_type, row_groups, context)
    }

    pub fn to_sink(
        sink: FileSink,
        schema: SchemaRef,
        lake_type: &LakeType,
        row_groups: RowGroups,
        context: &str,
    ) -> Result<Encoder> {
        let format = FileFormat::of(&schema, lake_type, row_groups, file_compression())?;
        Ok(Self::open(sink, format, false, row_groups, context))
    }

    /// [`Encoder::to_sink`] with one compression for every file: the benchmark's encode floor
    /// (`src/bin/encode_floor.rs`) compares codecs on the same rows; the lake's files always use
    /// [`file_compression`] or, small, [`small_file_compression`].
    pub fn with_compression(
        sink: FileSink,
        schema: SchemaRef,
        lake_type: &LakeType,
        row_groups: RowGroups,
        compression: Compression,
        context: &str,
    ) -> Result<Encoder> {
        let format = FileFormat::of(&schema, lake_type, row_groups, compression)?;
        Ok(Self::open(sink, format, true, row_groups, context))
    }

    fn open(sink: FileSink, format: Arc<FileFormat>, fixed: bool, row_groups: RowGroups, context: &str) -> Encoder {
        Encoder {
            writer: None,
            sink: Some(sink),
            format,
            fixed,
            context: context.to_string(),
            row_group_bytes: row_groups.bytes,
            rows: 0,
        }
    }

    /// The writer, opened for a file whose first batch has `first_rows` rows.
    fn writer(&mut self, first_rows: usize) -> Result<&mut ArrowWriter<FileSink>> {
        if self.writer.is_none() {
            let f = &self.format;
            let props = match !self.fixed && first_rows < CHECK_ROWS {
                true => f.small.clone(),
                false => f.large.clone(),
            };
            let options = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
                .with_properties(props)
                .with_skip_arrow_metadata(true)
                .with_parquet_schema(f.descriptor.clone());
            let sink = self.sink.take().expect("the sink is taken once");
            let writer = ArrowWriter::try_new_with_options(sink, f.schema.clone(), options)
                .map_err(|e| Error::parquet(&self.context, e))?;
            self.writer = Some(writer);
        }
        Ok(self.writer.as_mut().expect("just opened"))
    }

    /// Appends rows. The same rows give the same bytes however they are split into batches, as long as every
    /// batch but the last has a multiple of 1024 rows (the writer's mini-batch, where it decides page breaks):
    /// batches are cut at every [`CHECK_ROWS`]-th row of the file, where the row group's size is checked.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // (a lake failure of a streamed upload, met by the writer as its sink's error, stays a store error)
        let context = self.context.clone();
        let enc = |e| Error::parquet(&context, e);
        let (cap, first, mut rows) = (self.row_group_bytes, self.rows == 0, self.rows);
        let mut offset = 0;
        while offset < batch.num_rows() {
            let n = (CHECK_ROWS - rows % CHECK_ROWS).min(batch.num_rows() - offset);
            let writer = self.writer(if first { batch.num_rows() } else { CHECK_ROWS })?;
            // (a batch of the whole file is written as it is: a slice costs an Arrow copy of every column's
            // offsets and a pass over them)
            match (offset, n == batch.num_rows()) {
                (0, true) => writer.write(batch),
                _ => writer.write(&batch.slice(offset, n)),
            }
            .map_err(enc)?;
            (offset, rows) = (offset + n, rows + n);
            if rows.is_multiple_of(CHECK_ROWS) && writer.in_progress_size() >= cap {
                writer.flush().map_err(enc)?;
            }
        }
        self.rows = rows;
        Ok(())
    }

    /// Ends an in-memory file.
    pub fn finish(self) -> Result<Bytes> {
        match self.finish_file()? {
            Encoded::Memory(b) => Ok(b),
            _ => Err(Error::encode("encoder", "a streamed file has no bytes in memory")),
        }
    }

    /// Ends the file; a streamed one is handed to its upload for completion.
    pub fn finish_file(mut self) -> Result<Encoded> {
        self.writer(0)?;
        let context = self.context;
        match self.writer.expect("opened above").into_inner().map_err(|e| Error::parquet(&context, e))? {
            FileSink::Memory(v) => Ok(Encoded::Memory(Bytes::from(v))),
            FileSink::Upload(u) => Ok(Encoded::Streamed(u.finish().map_err(|e| Error::io(&context, e))?)),
        }
    }
}

/// Joins files of one schema into one file by copying their row groups (no page is decoded or re-encoded): a
/// partition whose rows were encoded by several workers (see [`crate::sync::shard`]) becomes one file. The
/// key-value metadata (the lake type) is the first file's; a file of another schema is refused.
pub fn concat(inputs: &[Bytes], context: &str) -> Result<Bytes> {
    use parquet::column::writer::ColumnCloseResult;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::writer::SerializedFileWriter;
    let enc = |e: parquet::errors::ParquetError| Error::parquet(context, e);
    let metas = inputs
        .iter()
        .map(|b| ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional).parse_and_finish(b))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(enc)?;
    let Some(first) = metas.first() else { return Err(Error::encode(context, "nothing to join")) };
    let schema = first.file_metadata().schema_descr();
    if let Some(i) = metas.iter().position(|m| m.file_metadata().schema_descr().root_schema() != schema.root_schema()) {
        return Err(Error::encode(
            context,
            format!("file {i} of {} has another schema; files were not joined", metas.len()),
        ));
    }
    let props = WriterProperties::builder()
        .set_key_value_metadata(first.file_metadata().key_value_metadata().cloned())
        .set_created_by(format!("mongolake {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = SerializedFileWriter::new(Vec::new(), schema.root_schema_ptr(), Arc::new(props)).map_err(enc)?;
    for (input, meta) in inputs.iter().zip(&metas) {
        let page_index = meta.page_index();
        for (g, group) in meta.row_groups().iter().enumerate() {
            let mut out = writer.next_row_group().map_err(enc)?;
            for (c, column) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: page_index.and_then(|p| p.column_index(g, c)).cloned(),
                    offset_index: page_index.and_then(|p| p.offset_index(g, c)).cloned(),
                };
                out.append_column(input, close).map_err(enc)?;
            }
            out.close().map_err(enc)?;
        }
    }
    Ok(Bytes::from(writer.into_inner().map_err(enc)?))
}

/// A file held whole, its footer parsed once (the lake type, the Arrow schema, the row count) and shared by every
/// decode of it. A night's merge of a small partition looks at its file up to four times (the header, the key
/// column, the rows it re-read, every row); parsing a wide schema's footer each time took 15% of a night's CPU
/// (`MONGOLAKE_PROFILE_NIGHT=1 bench/profile_small.sh`), once about 10%.
pub struct WholeFile {
    bytes: Bytes,
    meta: ArrowReaderMetadata,
    pub rows: u64,
}

impl WholeFile {
    pub fn open(bytes: Bytes, context: &str) -> Result<WholeFile> {
        let meta = ArrowReaderMetadata::load(&bytes, Default::default()).map_err(|e| Error::parquet(context, e))?;
        let rows = meta.metadata().file_metadata().num_rows().max(0) as u64;
        Ok(WholeFile { bytes, meta, rows })
    }

    /// [`WholeFile::open`] for a file expected to hold the lake type whose footer text is `text`
    /// ([`lake_type_text`]), in Arrow `schema`: when the footer names that type, the schema is taken as given
    /// instead of decoded from the footer's Arrow copy (a flatbuffer verified field by field, about 3% of a
    /// night's CPU: `MONGOLAKE_PROFILE_CALLERS=1 MONGOLAKE_PROFILE_NIGHT=1 bench/profile_small.sh`). The reader
    /// checks it against the file's columns; a file of another type, or one it finds different, is opened as
    /// [`WholeFile::open`] opens it.
    pub fn open_as(bytes: Bytes, context: &str, text: &str, schema: &SchemaRef) -> Result<WholeFile> {
        use parquet::arrow::arrow_reader::ArrowReaderOptions;
        let parsed = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|e| Error::parquet(context, e))?;
        let parsed = Arc::new(parsed);
        let ours = lake_type_text_in(parsed.file_metadata().key_value_metadata()) == Some(text);
        let given = ours.then(|| {
            ArrowReaderMetadata::try_new(parsed.clone(), ArrowReaderOptions::new().with_schema(schema.clone()))
        });
        let meta = match given {
            Some(Ok(meta)) => meta,
            _ => ArrowReaderMetadata::try_new(parsed, Default::default()).map_err(|e| Error::parquet(context, e))?,
        };
        let rows = meta.metadata().file_metadata().num_rows().max(0) as u64;
        Ok(WholeFile { bytes, meta, rows })
    }

    /// The lake type the file was written with (parsed from its footer).
    pub fn lake_type(&self, context: &str) -> Result<LakeType> {
        lake_type_in(self.meta.metadata().file_metadata().key_value_metadata(), context)
    }

    /// Whether the file was written with the lake type whose footer text is `text` ([`lake_type_text`]): the
    /// texts compared, nothing parsed (a night opens thousands of files of the collection's own type).
    pub fn written_as(&self, text: &str) -> bool {
        lake_type_text_in(self.meta.metadata().file_metadata().key_value_metadata()) == Some(text)
    }

    pub fn schema(&self) -> &SchemaRef {
        self.meta.schema()
    }

    fn builder(&self) -> ParquetRecordBatchReaderBuilder<Bytes> {
        ParquetRecordBatchReaderBuilder::new_with_metadata(self.bytes.clone(), self.meta.clone())
    }

    /// Every row.
    pub fn decode(&self, context: &str) -> Result<Vec<RecordBatch>> {
        read_all(self.builder(), context)
    }

    /// Top-level column `col` of every row, decoding no other column (to find a few rows by key).
    pub fn decode_column(&self, col: usize, context: &str) -> Result<Vec<RecordBatch>> {
        let builder = self.builder();
        let mask = ProjectionMask::roots(builder.parquet_schema(), [col]);
        read_all(builder.with_projection(mask), context)
    }

    /// Only the rows numbered `rows` (ascending) of every column.
    pub fn decode_rows(&self, rows: &[usize], context: &str) -> Result<Vec<RecordBatch>> {
        let selection = RowSelection::from_consecutive_ranges(rows.iter().map(|&r| r..r + 1), self.rows as usize);
        read_all(self.builder().with_row_selection(selection), context)
    }
}

/// Reads a whole file: its batches and the lake type it was written with.
pub fn decode(bytes: Bytes, context: &str) -> Result<(Vec<RecordBatch>, LakeType)> {
    let file = WholeFile::open(bytes, context)?;
    Ok((file.decode(context)?, file.lake_type(context)?))
}

/// A file's lake type, Arrow schema and row count, from its footer (no page is decoded).
pub fn header(bytes: Bytes, context: &str) -> Result<(LakeType, SchemaRef, u64)> {
    let file = WholeFile::open(bytes, context)?;
    Ok((file.lake_type(context)?, file.schema().clone(), file.rows))
}

/// Top-level column `col` of every row, decoding no other column (to find a few rows by key).
pub fn decode_column(bytes: Bytes, col: usize, context: &str) -> Result<Vec<RecordBatch>> {
    WholeFile::open(bytes, context)?.decode_column(col, context)
}

/// The text of `t` in a file's key-value metadata (`mongolake.lake_type`).
pub fn lake_type_text(t: &LakeType) -> String {
    serde_json::to_string(t).expect("serialisable")
}

/// The text of the lake type in a file's key-value metadata (`mongolake.lake_type`), unparsed.
fn lake_type_text_in(kv: Option<&Vec<KeyValue>>) -> Option<&str> {
    kv.and_then(|kv| kv.iter().find(|k| k.key == LAKE_TYPE_KEY)).and_then(|k| k.value.as_deref())
}

/// The lake type in a file's key-value metadata.
pub fn lake_type_in(kv: Option<&Vec<KeyValue>>, context: &str) -> Result<LakeType> {
    let lake_type = lake_type_text_in(kv).ok_or_else(|| {
        Error::encode(context, "the file has no mongolake.lake_type metadata: it was not written by mongolake")
    })?;
    serde_json::from_str(lake_type)
        .map_err(|source| Error::Json { context: format!("{context}: bad lake type metadata"), source })
}

fn read_all(builder: ParquetRecordBatchReaderBuilder<Bytes>, context: &str) -> Result<Vec<RecordBatch>> {
    let reader = builder.with_batch_size(8192).build().map_err(|e| Error::parquet(context, e))?;
    reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::arrow(context, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    /// A schema of a non-null `id` and a nullable text column `text`.
    fn id_and(text: &str) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new(text, DataType::Utf8, true)]))
    }

    fn file(schema: &SchemaRef, ids: &[i64], names: &[&str]) -> Bytes {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))],
        )
        .unwrap();
        encode(schema.clone(), &[batch], &LakeType::Bool, RowGroups::rows(1024), "test").unwrap()
    }

    #[test]
    fn a_file_of_1024_rows_or_more_is_zstd_and_a_smaller_one_snappy_without_a_dictionary() {
        use parquet::file::metadata::ParquetMetaDataReader;
        let schema = id_and("name");
        let chunks = |bytes: &Bytes| {
            let meta = ParquetMetaDataReader::new().parse_and_finish(bytes).unwrap();
            let columns: Vec<_> = meta.row_groups().iter().flat_map(|g| g.columns().to_vec()).collect();
            (columns, meta)
        };
        let (columns, meta) = chunks(&file(&schema, &[1, 2, 3], &["a", "b", "c"]));
        assert!(columns.iter().all(|c| c.compression() == Compression::SNAPPY), "{columns:?}");
        assert!(columns.iter().all(|c| c.dictionary_page_offset().is_none()), "no dictionary page: {columns:?}");
        assert!(columns.iter().all(|c| c.statistics().is_some()), "chunk statistics kept: {columns:?}");
        assert_eq!(meta.file_metadata().num_rows(), 3);

        let big =
            encode(schema.clone(), &[rows(&schema, 0, CHECK_ROWS)], &LakeType::Bool, RowGroups::rows(1 << 20), "t")
                .unwrap();
        let (columns, _) = chunks(&big);
        // (the level is not stored in the file: the footer says zstd, and file_compression() says which)
        assert!(columns.iter().all(|c| c.compression() == Compression::ZSTD(Default::default())), "{columns:?}");
        assert_eq!(file_compression(), Compression::ZSTD(ZstdLevel::try_new(1).unwrap()));
        // The same rows however they come: in batches of 1,024 and a last one, or one batch.
        let n = 3 * CHECK_ROWS + 5;
        let whole = encode(schema.clone(), &[rows(&schema, 0, n)], &LakeType::Bool, RowGroups::rows(1 << 20), "t");
        let parts: Vec<RecordBatch> =
            (0..n).step_by(CHECK_ROWS).map(|at| rows(&schema, at as i64, CHECK_ROWS.min(n - at))).collect();
        let split = encode(schema.clone(), &parts, &LakeType::Bool, RowGroups::rows(1 << 20), "t");
        assert!(whole.unwrap() == split.unwrap(), "batches changed the file");
        // Both files carry the Arrow schema and the lake type.
        for bytes in [file(&schema, &[1], &["a"]), big] {
            let (_, meta) = chunks(&bytes);
            let kv = meta.file_metadata().key_value_metadata().unwrap();
            let keys: Vec<&str> = kv.iter().map(|k| k.key.as_str()).collect();
            assert!(keys.contains(&LAKE_TYPE_KEY) && keys.contains(&"ARROW:schema"), "{keys:?}");
            assert_eq!(decode(bytes, "t").unwrap().1, LakeType::Bool);
        }
    }

    #[test]
    fn joined_files_hold_every_row_in_order_and_keep_the_lake_type() {
        let schema = id_and("name");
        let a = file(&schema, &[1, 2, 3], &["a", "b", "c"]);
        let b = file(&schema, &[7, 8], &["x", "y"]);
        let joined = concat(&[a, b.clone()], "test").unwrap();
        let (batches, ty) = decode(joined.clone(), "test").unwrap();
        assert_eq!(ty, LakeType::Bool);
        let all = arrow::compute::concat_batches(&schema, &batches).unwrap();
        let ids: Vec<i64> = all.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        assert_eq!(ids, vec![1, 2, 3, 7, 8]);
        assert_eq!(header(joined, "test").unwrap().2, 5);

        let other = id_and("label");
        let c = file(&other, &[9], &["z"]);
        let err = concat(&[b, c], "test").unwrap_err().to_string();
        assert!(err.contains("another schema"), "{err}");
    }

    /// Rows of varied, poorly compressible text, so row groups have a size worth capping.
    fn rows(schema: &SchemaRef, from: i64, n: usize) -> RecordBatch {
        let ids: Vec<i64> = (from..from + n as i64).collect();
        let names: Vec<String> =
            ids.iter().map(|i| format!("{:x}", (*i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))).collect();
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(names))])
            .unwrap()
    }

    #[test]
    fn row_groups_end_at_the_byte_cap_and_the_bytes_do_not_depend_on_the_batches() {
        let schema = id_and("name");
        let n = 100_000;
        let groups = RowGroups { rows: 1 << 20, bytes: 256 << 10 };
        let whole = encode(schema.clone(), &[rows(&schema, 0, n)], &LakeType::Bool, groups, "t").unwrap();
        // The same rows in batches of 3,072: the same bytes (the single batch above is cut where the size is checked).
        let pieces: Vec<RecordBatch> =
            (0..n).step_by(3072).map(|at| rows(&schema, at as i64, 3072.min(n - at))).collect();
        let split = encode(schema.clone(), &pieces, &LakeType::Bool, groups, "t").unwrap();
        assert!(whole == split, "batches changed the file");

        let meta = parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&whole).unwrap();
        let sizes: Vec<(i64, i64)> = meta.row_groups().iter().map(|g| (g.num_rows(), g.compressed_size())).collect();
        assert!(sizes.len() > 2, "{sizes:?}");
        for (rows, _) in &sizes[..sizes.len() - 1] {
            assert_eq!(rows % CHECK_ROWS as i64, 0, "{sizes:?}");
        }
        assert_eq!(sizes.iter().map(|s| s.0).sum::<i64>(), n as i64);
        // Without the cap, one row group.
        let uncapped = encode(schema.clone(), &pieces, &LakeType::Bool, RowGroups::rows(1 << 20), "t").unwrap();
        assert_eq!(header(uncapped, "t").unwrap().2, n as u64);
        let meta2 = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&encode(schema.clone(), &pieces, &LakeType::Bool, RowGroups::rows(1 << 20), "t").unwrap())
            .unwrap();
        assert_eq!(meta2.num_row_groups(), 1);
        let (batches, _) = decode(whole, "t").unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), n);
    }
}
