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
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
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
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            LAKE_TYPE_KEY.to_string(),
            serde_json::to_string(lake_type).expect("serialisable"),
        )]))
        .set_created_by(format!("mongolake {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(|e| Error::encode(context, e))?;
    for b in batches {
        w.write(b).map_err(|e| Error::encode(context, e))?;
    }
    w.close().map_err(|e| Error::encode(context, e))?;
    Ok(Bytes::from(out))
}

/// Reads a whole file: its batches and the lake type it was written with.
pub fn decode(bytes: Bytes, context: &str) -> Result<(Vec<RecordBatch>, LakeType)> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| Error::encode(context, e))?;
    let kv = builder.metadata().file_metadata().key_value_metadata();
    let lake_type =
        kv.and_then(|kv| kv.iter().find(|k| k.key == LAKE_TYPE_KEY)).and_then(|k| k.value.as_deref()).ok_or_else(
            || Error::encode(context, "the file has no mongolake.lake_type metadata: it was not written by mongolake"),
        )?;
    let lake_type: LakeType =
        serde_json::from_str(lake_type).map_err(|e| Error::encode(context, format!("bad lake type metadata: {e}")))?;
    let reader = builder.with_batch_size(8192).build().map_err(|e| Error::encode(context, e))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>().map_err(|e| Error::encode(context, e))?;
    Ok((batches, lake_type))
}
