//! Parquet encoding of one partition, and reading a partition file back.
//!
//! Files are zstd-compressed with large row groups (Athena reads row groups in parallel and prefers them big),
//! timestamps in milliseconds (Spark and Athena reject nanoseconds), and carry the collection's lake type in the
//! key-value metadata (`mongolake.lake_type`) so a later run reads every value back exactly.
use crate::schema::LakeType;
use crate::{Error, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

pub const LAKE_TYPE_KEY: &str = "mongolake.lake_type";

/// Encodes batches into one Parquet file in memory.
pub fn encode(
    schema: SchemaRef,
    batches: &[RecordBatch],
    lake_type: &LakeType,
    row_group_rows: usize,
    context: &str,
) -> Result<Bytes> {
    let mut e = Encoder::new(schema, lake_type, row_group_rows, context)?;
    for b in batches {
        e.write(b)?;
    }
    e.finish()
}

/// A Parquet file being encoded batch by batch, so a partition's rows never need to be in Arrow all at once
/// (only the row group being encoded, as compressed pages, is held).
pub struct Encoder {
    writer: ArrowWriter<Vec<u8>>,
    context: String,
}

impl Encoder {
    pub fn new(schema: SchemaRef, lake_type: &LakeType, row_group_rows: usize, context: &str) -> Result<Encoder> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                LAKE_TYPE_KEY.to_string(),
                serde_json::to_string(lake_type).expect("serialisable"),
            )]))
            .set_created_by(format!("mongolake {}", env!("CARGO_PKG_VERSION")))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(|e| Error::encode(context, e))?;
        Ok(Encoder { writer, context: context.to_string() })
    }

    /// Appends rows. The same rows give the same bytes however they are split into batches, as long as every
    /// batch but the last has a multiple of 1024 rows (the writer's mini-batch, where it decides page breaks).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| Error::encode(&self.context, e))
    }

    pub fn finish(self) -> Result<Bytes> {
        let out = self.writer.into_inner().map_err(|e| Error::encode(&self.context, e))?;
        Ok(Bytes::from(out))
    }
}

/// Reads a whole file: its batches and the lake type it was written with.
pub fn decode(bytes: Bytes, context: &str) -> Result<(Vec<RecordBatch>, LakeType)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::encode(context, e))?;
    let lake_type = lake_type_of(&builder, context)?;
    Ok((read_all(builder, context)?, lake_type))
}

/// A file's lake type, Arrow schema and row count, from its footer (no page is decoded).
pub fn header(bytes: Bytes, context: &str) -> Result<(LakeType, SchemaRef, u64)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::encode(context, e))?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
    Ok((lake_type_of(&builder, context)?, builder.schema().clone(), rows))
}

/// Top-level column `col` of every row, decoding no other column (to find a few rows by key).
pub fn decode_column(bytes: Bytes, col: usize, context: &str) -> Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::encode(context, e))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [col]);
    read_all(builder.with_projection(mask), context)
}

/// Only the rows numbered `rows` (ascending, of `total`) of every column.
pub fn decode_rows(bytes: Bytes, rows: &[usize], total: usize, context: &str) -> Result<Vec<RecordBatch>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::encode(context, e))?;
    let selection = RowSelection::from_consecutive_ranges(rows.iter().map(|&r| r..r + 1), total);
    read_all(builder.with_row_selection(selection), context)
}

fn lake_type_of(builder: &ParquetRecordBatchReaderBuilder<Bytes>, context: &str) -> Result<LakeType> {
    let kv = builder.metadata().file_metadata().key_value_metadata();
    let lake_type =
        kv.and_then(|kv| kv.iter().find(|k| k.key == LAKE_TYPE_KEY)).and_then(|k| k.value.as_deref()).ok_or_else(
            || Error::encode(context, "the file has no mongolake.lake_type metadata: it was not written by mongolake"),
        )?;
    serde_json::from_str(lake_type).map_err(|e| Error::encode(context, format!("bad lake type metadata: {e}")))
}

fn read_all(builder: ParquetRecordBatchReaderBuilder<Bytes>, context: &str) -> Result<Vec<RecordBatch>> {
    let reader = builder.with_batch_size(8192).build().map_err(|e| Error::encode(context, e))?;
    reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::encode(context, e))
}
