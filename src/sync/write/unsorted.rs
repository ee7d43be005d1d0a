//! The merge of a partition file too large to hold that is not in key order: files mongolake writes are sorted
//! by key text, but one written by other means (or holding a key twice) is not, and the streamed merges of
//! [`super::streamed`] join in key order. Such a file's rows are read back as BSON a row group at a time and
//! put through the external sort ([`crate::sort::Sorter`], runs sized to the partition's share of the memory
//! budget, spilled to local disk), then joined with this run's winners as a widening is ([`DocMerge`]). The new
//! file is in key order, so the next run streams it. Rows sharing a key are kept in file order, as the
//! in-memory merge keeps them.
use super::encode::{key_text, row_doc, Built, DocMerge, FreshRows, Job};
use crate::schema::LakeType;
use crate::sink::remote::RemoteFile;
use crate::sink::upload::ChunkSink;
use crate::{Error, Result};
use arrow::array::{Array, StructArray};
use std::io::{Read, Write};

/// Whether the file's keys strictly increase (reads only the key column). A file without the key column is in
/// order when it has at most one row.
pub(super) fn in_key_order(file: &RemoteFile, ty: &LakeType, key: &str) -> Result<bool> {
    let LakeType::Struct { fields } = ty else { return Ok(file.rows() <= 1) };
    let Some(kc) = fields.iter().position(|f| f.source == key) else { return Ok(file.rows() <= 1) };
    let mut prev: Option<String> = None;
    for batch in file.batches(Some(kc), None)? {
        let batch = batch?;
        for row in 0..batch.num_rows() {
            let k = key_text(batch.column(0).as_ref(), row, &fields[kc].ty);
            if prev.as_deref().is_some_and(|p| p >= k.as_ref()) {
                return Ok(false);
            }
            prev = Some(k.into_owned());
        }
    }
    Ok(true)
}

/// Merges `fresh` into `file` (not in key order, of lake type `ty`) through an external sort of its rows in
/// `dir` (the system's temporary directory when None), holding about `run_bytes` of rows at once.
pub(super) fn merge_unsorted(
    file: &RemoteFile,
    ty: &LakeType,
    fresh: &FreshRows<'_>,
    job: &Job<'_>,
    sink: ChunkSink,
    dir: Option<&std::path::Path>,
    run_bytes: u64,
) -> Result<Built> {
    let io = |e: std::io::Error| Error::io(format!("sorting the rows of {} by key", job.context), e);
    let runs = match dir {
        Some(dir) => tempfile::Builder::new().prefix("unsorted-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("mongolake-unsorted-").tempdir(),
    }
    .map_err(io)?;
    // A row read back as BSON takes a few times its share of the (compressed) file.
    let row_bytes = (file.size() * 4 / file.rows().max(1)).max(256);
    let mut sorter = crate::sort::Sorter::new((run_bytes / row_bytes).max(64) as usize, runs.path().to_path_buf());
    let mut seq = 0u64;
    for batch in file.batches(None, None)? {
        let s = StructArray::from(batch?);
        for row in 0..s.len() {
            let (key, doc) = row_doc(&s, row, ty, job)?;
            sorter.push(OldRow { key, seq, doc: doc.into_bytes() }).map_err(io)?;
            seq += 1;
        }
    }
    let mut merge = DocMerge::new(fresh, job, Some(sink));
    for row in sorter.done().map_err(io)? {
        let OldRow { key, doc, .. } = row.map_err(io)?;
        let doc = bson::RawDocument::from_bytes(&doc).map_err(|e| Error::encode(job.context, e))?;
        if !merge.push_old(key, doc)? {
            return Err(Error::encode(job.context, "the external sort of the file's rows returned them out of order"));
        }
    }
    merge.finish()
}

/// A row of the file: its key, its place in the file (rows sharing a key keep their order) and its BSON.
struct OldRow {
    key: String,
    seq: u64,
    doc: Vec<u8>,
}

impl extsort::Sortable for OldRow {
    fn encode<W: Write>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&(self.key.len() as u32).to_le_bytes())?;
        w.write_all(self.key.as_bytes())?;
        w.write_all(&self.seq.to_le_bytes())?;
        w.write_all(&(self.doc.len() as u32).to_le_bytes())?;
        w.write_all(&self.doc)
    }

    fn decode<R: Read>(r: &mut R) -> std::io::Result<OldRow> {
        let mut n = [0u8; 4];
        r.read_exact(&mut n)?; // (an end of file here ends the run, as extsort expects)
        let mut key = vec![0u8; u32::from_le_bytes(n) as usize];
        r.read_exact(&mut key)?;
        let key = String::from_utf8(key).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let mut seq = [0u8; 8];
        r.read_exact(&mut seq)?;
        r.read_exact(&mut n)?;
        let mut doc = vec![0u8; u32::from_le_bytes(n) as usize];
        r.read_exact(&mut doc)?;
        Ok(OldRow { key, seq: u64::from_le_bytes(seq), doc })
    }
}

impl crate::sort::SortItem for OldRow {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key).then(self.seq.cmp(&other.seq))
    }
}
