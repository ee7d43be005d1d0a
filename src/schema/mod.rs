//! Schema inference and harmonisation: every document read is observed into one [`LakeType`] per collection
//! (see [`lattice`] for the rules), which then decides each column's Arrow type. The collection's type is
//! persisted in the lake (see [`registry`]) and embedded in every Parquet file, so names and types hold across
//! runs and a file can always be read back exactly.
pub mod arrow;
pub mod decimal;
pub mod lattice;
pub mod names;
pub mod registry;
pub mod text;

pub use lattice::{Conflicts, Field, Kind, LakeType, Observe, Role};

/// The type written to files: the document type without the top-level fields that live in the partition path
/// (see [`crate::config::CollectionSpec::path_fields`]). The Athena table's data columns are exactly these.
pub fn file_type(document: &LakeType, path_fields: &[String]) -> LakeType {
    match document {
        LakeType::Struct { fields } => {
            LakeType::Struct { fields: fields.iter().filter(|f| !path_fields.contains(&f.source)).cloned().collect() }
        }
        other => other.clone(),
    }
}
#[cfg(test)]
mod stable_tests;

/// Whether files of type `old` must be rewritten to be read as `new`: a column they hold changed its Arrow type
/// (a struct that gained a member counts: not every engine reads a file whose struct lacks a member). A new
/// top-level column needs no rewrite: files without it read it as NULL by name (Athena, Spark, DuckDB and
/// pyarrow match Parquet columns by name).
pub fn needs_rewrite(old: &LakeType, new: &LakeType) -> bool {
    match (old, new) {
        (LakeType::Struct { fields: a }, LakeType::Struct { fields: b }) if !a.is_empty() => a.iter().any(|f| {
            b.iter().find(|g| g.column == f.column).is_none_or(|g| arrow::data_type(&f.ty) != arrow::data_type(&g.ty))
        }),
        (a, b) => arrow::data_type(a) != arrow::data_type(b),
    }
}
