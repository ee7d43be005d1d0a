//! Streaming a file to the lake while it is encoded, instead of holding it whole.
//!
//! Parquet is encoded on blocking threads (CPU work off the async runtime) into a [`ChunkSink`], a
//! `std::io::Write` that hands chunks of `[sync] upload_part_mb` to an async task. The task feeds them to
//! object_store's `BufWriter`: a file smaller than one part is a single PUT, as before; a larger one becomes a
//! multipart upload (S3 parts of at least 5 MiB; on local disk a temporary file renamed on completion), with at
//! most two parts in flight. So a partition's encoded file costs a few parts of memory however large it is.
//!
//! Nothing is visible until the upload completes: an S3 multipart upload is not an object until it is
//! completed, and the local store renames its temporary file into place. An encoder that fails or is dropped
//! without [`ChunkSink::finish`] makes the task abort the upload, so no partial object remains.
use super::Lake;
use crate::{Error, Result};
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Parts in flight per upload (each `upload_part_mb`), plus one being filled and one in the channel.
const MAX_PARTS_IN_FLIGHT: usize = 2;

enum Chunk {
    Data(Bytes),
    /// Every byte was sent: complete the upload.
    Done,
}

/// The writing end, used on a blocking thread: buffers up to one part, then sends it to the upload task.
pub struct ChunkSink {
    buf: Vec<u8>,
    part: usize,
    tx: mpsc::Sender<Chunk>,
    sent: u64,
}

/// The upload task: `Ok(Some(bytes))` once the object is complete, `Ok(None)` when the sink was dropped without
/// `finish` (the upload was aborted, nothing written), `Err` when the store failed.
pub type Upload = JoinHandle<Result<Option<u64>>>;

impl Lake {
    /// Starts streaming a new object to `path`; see the module docs. Must be called within the runtime.
    pub fn upload(&self, path: &Path) -> (ChunkSink, Upload) {
        self.upload_at(path, None)
    }

    /// [`Lake::upload`] of a file that replaces `path` in place (an object store's partition file, see
    /// [`Lake::stages_writes`]): the fault point `staged` is met once every byte is sent and before the upload
    /// is completed, the moment a staged file waits for its move.
    pub fn upload_in_place(&self, path: &Path) -> (ChunkSink, Upload) {
        self.upload_at(path, Some("staged"))
    }

    fn upload_at(&self, path: &Path, before_completion: Option<&'static str>) -> (ChunkSink, Upload) {
        let (tx, mut rx) = mpsc::channel::<Chunk>(1);
        let (store, path, part) = (self.store.clone(), path.clone(), self.part_bytes);
        let shown = self.display(&path);
        let task = tokio::spawn(async move {
            let mut writer = BufWriter::with_capacity(store, path, part).with_max_concurrency(MAX_PARTS_IN_FLIGHT);
            let failed = |e: object_store::Error| Error::store(format!("writing {shown}"), e);
            let mut total = 0u64;
            loop {
                match rx.recv().await {
                    Some(Chunk::Data(bytes)) => {
                        total += bytes.len() as u64;
                        if let Err(e) = writer.put(bytes).await {
                            // Dropping `rx` (on return) stops the encoder at its next chunk.
                            let _ = writer.abort().await;
                            return Err(failed(e));
                        }
                    }
                    Some(Chunk::Done) => {
                        if let Some(point) = before_completion {
                            crate::fault::point(point);
                        }
                        // The last parts and the completion: object_store's `AsyncWrite` gives their store error
                        // inside an I/O error, which `Error::io` takes back out (a `Store` error, classifiable).
                        writer
                            .shutdown()
                            .await
                            .map_err(|e| Error::io(format!("completing the upload of {shown}"), e))?;
                        return Ok(Some(total));
                    }
                    None => {
                        writer.abort().await.map_err(failed)?;
                        return Ok(None);
                    }
                }
            }
        });
        (ChunkSink { buf: Vec::with_capacity(part.min(1 << 20)), part, tx, sent: 0 }, task)
    }
}

impl ChunkSink {
    fn send(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.sent += bytes.len() as u64;
        self.tx
            .blocking_send(Chunk::Data(bytes))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped (see its error)"))
    }

    /// Sends the rest and asks for the upload to be completed (the [`Upload`] says when it is). Returns the
    /// file's size.
    pub fn finish(mut self) -> std::io::Result<u64> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.send(Bytes::from(rest))?;
        }
        self.tx
            .blocking_send(Chunk::Done)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped (see its error)"))?;
        Ok(self.sent)
    }
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.part {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.part.min(1 << 20)));
            self.send(Bytes::from(full))?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits for an upload and says whether it completed; a store error wins over `encoded`'s (which is then only
/// "the upload stopped", a broken pipe): the error reported, and classified for a retry, is the lake's own.
pub async fn settle<T>(upload: Upload, encoded: Result<T>) -> Result<(T, Option<u64>)> {
    let uploaded = upload.await.map_err(|source| Error::Task { context: "upload task".into(), source })?;
    match (encoded, uploaded) {
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
        (Ok(v), Ok(n)) => Ok((v, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_store_error_of_an_upload_wins_over_the_encoders_broken_pipe() {
        let slow = object_store::Error::Generic { store: "S3", source: "503 Service Unavailable: SlowDown".into() };
        let upload: Upload = tokio::spawn(async move { Err(Error::store("writing s3://b/f", slow)) });
        let stopped = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped (see its error)");
        let encoded: Result<()> = Err(Error::parquet("p", parquet::errors::ParquetError::External(Box::new(stopped))));
        let e = settle(upload, encoded).await.unwrap_err();
        assert!(matches!(e, Error::Store { .. }), "{e:?}");
        assert!(e.is_transient() && e.to_string().contains("SlowDown"), "{e}");
    }
}
