//! Pure per-document transforms: the document's timestamp whatever its representation, its partition values in
//! the environment's time zone, and the dedup rule that keeps the latest version of each key.
pub mod dedup;
pub mod partition;
pub mod timestamp;
pub mod timezone;

use bson::{RawBsonRef, RawDocument};

/// Looks up a dotted field path (`address.city`) in a raw document.
pub fn get_path<'a>(doc: &'a RawDocument, path: &str) -> Option<RawBsonRef<'a>> {
    let mut current = doc;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = current.get(part).ok().flatten()?;
        if parts.peek().is_none() {
            return Some(value);
        }
        current = value.as_document()?;
    }
    None
}
