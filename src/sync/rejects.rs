//! The rejects area: what a run read but could not store, so nothing is silently lost.
//!
//! `<lake>/_mongolake/rejects/<db>/<coll>/<run-id>.jsonl`, one JSON object per line:
//!
//! ```text
//! {"key":"65f1…","path":"visits[].taken_at","reason":"date outside 0001-01-01..9999-12-31 …","value":"{\"$date\":{\"$numberLong\":…}}"}
//! {"key":"17","path":"","reason":"unreadable BSON: …","raw_bson_base64":"…"}
//! ```
//!
//! A value reject (`path` names the field) leaves the document in the lake with that value null; a document
//! reject (`path` empty) means the document itself could not be decoded and is not in the lake. The file is
//! written before the watermark advances. A run that never committed (crash, failure) re-reads the same
//! documents next time, so its rejects file is removed then and the new run writes them again: each reject is
//! listed once per committed run that read it.
use crate::schema::arrow::ValueReject;
use crate::sink::Lake;
use crate::Result;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// One rejected value or document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The document's key (collections.csv `key`, default `_id`) as text; empty when even that is unreadable.
    pub key: String,
    /// Dotted path of the value below the document (`[]` marks array elements); empty for a whole document.
    pub path: String,
    pub reason: String,
    /// The value as canonical Extended JSON (type-exact, lossless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The whole document's bytes, when it could not be decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bson_base64: Option<String>,
}

impl Reject {
    pub fn value(key: &str, r: ValueReject) -> Reject {
        Reject { key: key.to_string(), path: r.path, reason: r.reason, value: Some(r.value), raw_bson_base64: None }
    }

    pub fn document(key: &str, reason: String, raw: &[u8]) -> Reject {
        Reject {
            key: key.to_string(),
            path: String::new(),
            reason,
            value: None,
            raw_bson_base64: Some(base64::engine::general_purpose::STANDARD.encode(raw)),
        }
    }

    pub fn is_document(&self) -> bool {
        self.path.is_empty()
    }
}

/// Writes this run's rejects of one collection (nothing when there are none).
pub async fn write(lake: &Lake, db: &str, coll: &str, run_id: &str, rejects: &[Reject]) -> Result<()> {
    if rejects.is_empty() {
        return Ok(());
    }
    let mut out = Vec::new();
    for r in rejects {
        serde_json::to_writer(&mut out, r).expect("serialisable");
        out.push(b'\n');
    }
    lake.put(&lake.rejects_path(db, coll, run_id), out.into()).await
}

/// Removes rejects files of runs that did not commit (not in `committed`); returns how many.
pub async fn clean_uncommitted(lake: &Lake, db: &str, coll: &str, committed: &HashSet<String>) -> Result<usize> {
    let dir = lake.rejects_dir(db, coll);
    let mut removed = 0;
    for path in lake.list(&dir).await? {
        let run = path.filename().and_then(|f| f.strip_suffix(".jsonl")).unwrap_or_default().to_string();
        if !committed.contains(&run) {
            lake.delete(&path).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Every reject stored for a collection (for `mongolake status` and tests), oldest run first.
pub async fn load_all(lake: &Lake, db: &str, coll: &str) -> Result<Vec<Reject>> {
    let mut paths = lake.list(&lake.rejects_dir(db, coll)).await?;
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        if let Some(bytes) = lake.get_opt(&p).await? {
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                out.push(
                    serde_json::from_slice(line)
                        .map_err(|e| crate::Error::encode(format!("rejects {}", lake.display(&p)), e))?,
                );
            }
        }
    }
    Ok(out)
}
