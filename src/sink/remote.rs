//! Reading a large partition file back without holding it: the footer once, then a row group at a time,
//! straight from the lake (ranged GETs on S3, `pread` on local disk).
//!
//! An incremental run merges this run's documents into a partition's existing file. A small file is simply read
//! whole ([`Existing::Whole`]), which is cheapest; one too large for the memory budget ([`Existing::Large`]) is
//! read through parquet's async reader, which fetches the column chunks of one row group at a time, so the merge
//! holds a row group (bounded by `[sync] row_group_mb` for files this version wrote) instead of the file.
//!
//! The merge runs on a blocking thread (CPU work off the runtime), so [`RemoteFile::batches`] turns the async
//! stream into a plain iterator by blocking on the runtime's handle for each batch.
use super::parquet::{lake_type_in, CHECK_ROWS};
use super::Lake;
use crate::schema::LakeType;
use crate::{Error, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::ops::Range;
use std::sync::Arc;

/// Rows per batch read: few, because a large file's rows may be large (a merge holds a batch or two of them).
const BATCH_ROWS: usize = CHECK_ROWS;

/// Batches of a file, in file order.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// A partition's existing file.
pub enum Existing {
    /// Small enough to hold: the file's bytes.
    Whole(Bytes),
    /// Read a row group at a time.
    Large(RemoteFile),
}

/// A partition file read from the lake a row group at a time; see the module docs.
#[derive(Clone)]
pub struct RemoteFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    meta: ArrowReaderMetadata,
    handle: tokio::runtime::Handle,
    context: String,
}

impl Lake {
    /// The file at `path`, None when there is none: whole when it is at most `whole_limit` bytes, else opened
    /// for reading a row group at a time. One GET in the common case (the size comes with the response; a large
    /// file's body is not read, its footer is fetched instead).
    pub async fn existing(&self, path: &Path, whole_limit: u64, context: &str) -> Result<Option<Existing>> {
        let shown = || format!("reading {}", self.display(path));
        let size = match self.local_file(path).transpose()? {
            // On local disk, opened, measured and read by one blocking thread (the store's `get` and its body's
            // read are a hand-off each: a night merges thousands of small files).
            Some(file) => {
                let read = tokio::task::spawn_blocking(move || file.read(whole_limit))
                    .await
                    .map_err(|e| Error::encode("reading a partition file", e))??;
                match read {
                    None => return Ok(None),
                    Some(Ok(bytes)) => return Ok(Some(Existing::Whole(bytes))),
                    Some(Err(size)) => size,
                }
            }
            None => {
                let got = match self.store.get(path).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(Error::store(shown(), e)),
                };
                let size = got.meta.size;
                if size <= whole_limit {
                    return Ok(Some(Existing::Whole(got.bytes().await.map_err(|e| Error::store(shown(), e))?)));
                }
                size
            }
        };
        let mut reader = LakeReader { store: self.store.clone(), path: path.clone(), size };
        let meta = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(|e| Error::parquet(context, e))?;
        Ok(Some(Existing::Large(RemoteFile {
            store: self.store.clone(),
            path: path.clone(),
            size,
            meta,
            handle: tokio::runtime::Handle::current(),
            context: context.to_string(),
        })))
    }

    /// On local disk, the file at `path`, to read from a blocking thread ([`LocalFile::read`]); None on an
    /// object store.
    pub fn local_file(&self, path: &Path) -> Option<Result<LocalFile>> {
        let fs = self.local_fs.as_ref().filter(|_| self.local_dir.is_some())?;
        Some(self.local_path(fs, path).map(|file| LocalFile { file, shown: self.display(path) }))
    }
}

/// A file of a local lake ([`Lake::local_file`]).
pub struct LocalFile {
    file: std::path::PathBuf,
    shown: String,
}

impl LocalFile {
    /// Blocking: the file's bytes when it is at most `whole_limit` bytes, else its size (Err); None when there
    /// is no file.
    pub fn read(&self, whole_limit: u64) -> Result<Option<std::result::Result<Bytes, u64>>> {
        use std::io::Read;
        let io = |e| Error::io(format!("reading {}", self.shown), e);
        let mut f = match std::fs::File::open(&self.file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let size = f.metadata().map_err(io)?.len();
        if size > whole_limit {
            return Ok(Some(Err(size)));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        f.read_to_end(&mut bytes).map_err(io)?;
        Ok(Some(Ok(Bytes::from(bytes))))
    }
}

impl RemoteFile {
    /// Rows in the file.
    pub fn rows(&self) -> u64 {
        self.meta.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn schema(&self) -> SchemaRef {
        self.meta.schema().clone()
    }

    /// The lake type the file was written with.
    pub fn lake_type(&self) -> Result<LakeType> {
        lake_type_in(self.meta.metadata().file_metadata().key_value_metadata(), &self.context)
    }

    /// The file's batches in order: only top-level column `column` when given, only the rows numbered `rows`
    /// (ascending) when given. Blocks on the runtime for each row group: call it on a blocking thread.
    pub fn batches(&self, column: Option<usize>, rows: Option<&[usize]>) -> Result<Batches> {
        let reader = LakeReader { store: self.store.clone(), path: self.path.clone(), size: self.size };
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.meta.clone()).with_batch_size(BATCH_ROWS);
        if let Some(c) = column {
            let mask = ProjectionMask::roots(builder.parquet_schema(), [c]);
            builder = builder.with_projection(mask);
        }
        if let Some(rows) = rows {
            let total = self.rows() as usize;
            builder = builder
                .with_row_selection(RowSelection::from_consecutive_ranges(rows.iter().map(|&r| r..r + 1), total));
        }
        let mut stream = builder.build().map_err(|e| Error::parquet(&self.context, e))?;
        let (handle, context) = (self.handle.clone(), self.context.clone());
        Ok(Box::new(std::iter::from_fn(move || {
            // (a failed ranged GET comes back as the store error it is, so the collection is retried)
            handle.block_on(stream.next()).map(|b| b.map_err(|e| Error::parquet(&context, e)))
        })))
    }

    /// The whole file (a merge that cannot stream falls back to it). Blocks: call it on a blocking thread.
    pub fn whole(&self) -> Result<Bytes> {
        let shown = format!("reading {}", self.path);
        self.handle.block_on(async {
            let got = self.store.get(&self.path).await.map_err(|e| Error::store(shown.clone(), e))?;
            got.bytes().await.map_err(|e| Error::store(shown, e))
        })
    }
}

/// Parquet's view of a file in the lake: ranged reads (several ranges of one row group in one call; object_store
/// coalesces nearby ones) and the footer from the known size.
struct LakeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for LakeReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { self.store.get_range(&self.path, range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move { self.store.get_ranges(&self.path, &ranges).await.map_err(external) }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let meta =
                ParquetMetaDataReader::new().with_arrow_reader_options(options).load_and_finish(self, size).await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}
