//! The collection's lake schema, persisted at `<lake>/_mongolake/schema/<db>/<coll>.json`.
//!
//! It pins column names (so `Patient Name` stays `patient_name` forever) and types across runs: each run starts
//! from the stored type and only widens it. Every change gets a new version with when and why. The file is
//! written after the data files of a run and before the watermark, so it never claims a type the files lack.
use super::lattice::{LakeType, Role};
use serde::{Deserialize, Serialize};

/// The stored schema of one collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSchema {
    /// Format of this file; readers accept every format up to their own.
    pub format: u32,
    pub database: String,
    pub collection: String,
    pub version: u64,
    /// The document type (a struct) with every field's source name, column name and type.
    pub document: LakeType,
    #[serde(default)]
    pub history: Vec<SchemaChange>,
    /// Set (and saved) before a run starts rewriting files for a widened type, cleared when every file matches:
    /// a run that finds it set after a crash rewrites every partition, so no file keeps the old type.
    #[serde(default)]
    pub rewrite_pending: bool,
    /// What a value its column's type cannot hold does. Schemas stored before type-stable columns existed read
    /// as `widen` (how they were made); new schemas take `[sync] type_conflicts`.
    #[serde(default)]
    pub type_conflicts: super::lattice::Conflicts,
}

/// One version bump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChange {
    pub version: u64,
    pub run_id: String,
    pub changed_at: String,
    pub changes: Vec<String>,
}

pub const FORMAT: u32 = 1;

/// Reads a collection's stored schema: None before its first sync; an unreadable file is an encoding error
/// naming it ([`crate::Error::Json`], see [`crate::Error::is_encoding`]; a failed read of the lake is a store error).
pub async fn load(lake: &crate::sink::Lake, db: &str, coll: &str) -> crate::Result<Option<StoredSchema>> {
    match lake.get_opt(&lake.schema_path(db, coll)).await? {
        None => Ok(None),
        Some(b) => parse(lake, db, coll, &b).map(Some),
    }
}

/// [`load`], with the file's text and its tag (the object store's ETag, where it gives one).
pub async fn load_tagged(
    lake: &crate::sink::Lake,
    db: &str,
    coll: &str,
) -> crate::Result<Option<(StoredSchema, String, Option<String>)>> {
    match lake.get_versioned(&lake.schema_path(db, coll)).await? {
        None => Ok(None),
        Some((b, version)) => {
            let tag = version.e_tag().map(str::to_string);
            Ok(Some((parse(lake, db, coll, &b)?, String::from_utf8_lossy(&b).into_owned(), tag)))
        }
    }
}

/// A schema file's content, read (an unreadable one is an encoding error naming it).
pub fn parse(lake: &crate::sink::Lake, db: &str, coll: &str, bytes: &[u8]) -> crate::Result<StoredSchema> {
    serde_json::from_slice(bytes)
        .map_err(|e| crate::Error::encode(format!("schema {}", lake.display(&lake.schema_path(db, coll))), e))
}

/// The file's content as saved.
pub fn to_json(stored: &StoredSchema) -> Vec<u8> {
    serde_json::to_vec_pretty(stored).expect("serialisable")
}

impl StoredSchema {
    pub fn new(database: &str, collection: &str) -> Self {
        StoredSchema {
            format: FORMAT,
            database: database.into(),
            collection: collection.into(),
            version: 0,
            document: LakeType::empty_struct(),
            history: Vec::new(),
            rewrite_pending: false,
            type_conflicts: super::lattice::Conflicts::Variant,
        }
    }
}

/// Human-readable differences from `old` to `new` (`new column visits.vitals.spo2: double`,
/// `column age: int64 -> string`).
pub fn describe_changes(old: &LakeType, new: &LakeType) -> Vec<String> {
    let mut out = Vec::new();
    diff("", old, new, &mut out);
    out
}

fn diff(prefix: &str, old: &LakeType, new: &LakeType, out: &mut Vec<String>) {
    match (old, new) {
        (LakeType::Struct { fields: a }, LakeType::Struct { fields: b }) => {
            for f in b {
                let path = if prefix.is_empty() { f.column.clone() } else { format!("{prefix}.{}", f.column) };
                let at = |c: &str| if prefix.is_empty() { c.to_string() } else { format!("{prefix}.{c}") };
                match a.iter().find(|o| o.column == f.column) {
                    None => out.push(match &f.role {
                        Role::Main => format!("new column {path}: {} (from field `{}`)", type_name(&f.ty), f.source),
                        Role::Variant { of, kind } => format!(
                            "new variant column {path}: the {} values of field `{}` ({} in this run), which column {} ({}) cannot hold; {} keeps its type",
                            kind.name(), f.source, f.seen, at(of), b.iter().find(|m| m.column == *of).map(|m| type_name(&m.ty)).unwrap_or_default(), at(of)
                        ),
                        Role::Element { kind } => format!(
                            "new member {path}: the {} elements of {prefix} ({} in this run), beside its documents",
                            kind.name(), f.seen
                        ),
                        Role::Collision { of } => format!(
                            "new column {path}: field `{}` where a document also holds another spelling of {} with a different value ({} in this run)",
                            f.source, at(of), f.seen
                        ),
                    }),
                    Some(o) => {
                        for alias in f.aliases.iter().filter(|x| !o.aliases.contains(x)) {
                            out.push(format!("column {path} also takes field `{alias}` (another spelling of `{}`)", f.source));
                        }
                        diff(&path, &o.ty, &f.ty, out)
                    }
                }
            }
        }
        (LakeType::List { item: a }, LakeType::List { item: b }) => diff(&format!("{prefix}[]"), a, b, out),
        (a, b) if super::arrow::data_type(a) != super::arrow::data_type(b) => {
            let fallback = if matches!(b, LakeType::String) {
                " (no lossless common type: values kept as text, documents and arrays as relaxed Extended JSON)"
            } else {
                ""
            };
            out.push(format!("column {prefix}: {} -> {}{fallback}", type_name(a), type_name(b)))
        }
        _ => {}
    }
}

impl StoredSchema {
    /// Widens top-level column `column` on purpose (`mongolake widen`): its type joins the types of its variant
    /// columns (today's lattice: text for a mix of kinds), the variants go, and `rewrite_pending` is set so the
    /// next sync rewrites every partition file once (reading a variant's value back under its field's name).
    /// Returns what changed, for the history; an error names the columns that exist.
    pub fn widen_column(&mut self, column: &str, run_id: &str, at: String) -> Result<Vec<String>, String> {
        let LakeType::Struct { fields } = &mut self.document else { return Err("the schema has no columns".into()) };
        let Some(i) = fields.iter().position(|f| f.role.is_main() && f.column == column) else {
            let names: Vec<&str> = fields.iter().filter(|f| f.role.is_main()).map(|f| f.column.as_str()).collect();
            return Err(format!("no column `{column}`; the columns are: {}", names.join(", ")));
        };
        let is_variant = |f: &super::lattice::Field| matches!(&f.role, Role::Variant { of, .. } if of == column);
        let variants: Vec<super::lattice::Field> = fields.iter().filter(|f| is_variant(f)).cloned().collect();
        if variants.is_empty() {
            return Err(format!("column `{column}` has no variant column to widen into it"));
        }
        let before = type_name(&fields[i].ty);
        for v in &variants {
            fields[i].ty.join(&v.ty);
        }
        fields.retain(|f| !is_variant(f));
        let changes = vec![format!(
            "column {column}: {before} -> {} (widened on purpose with `mongolake widen`, taking {}; every file is rewritten)",
            type_name(&fields[i].ty),
            variants.iter().map(|v| v.column.as_str()).collect::<Vec<_>>().join(", ")
        )];
        self.version += 1;
        self.history.push(SchemaChange {
            version: self.version,
            run_id: run_id.into(),
            changed_at: at,
            changes: changes.clone(),
        });
        self.rewrite_pending = true;
        Ok(changes)
    }

    /// The human-readable listing printed by `mongolake schema`: version, columns with their source fields and
    /// types, and the history of changes.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}.{}  schema version {}\n", self.database, self.collection, self.version);
        out.push_str(&format!("  {:<40} {:<32} {}\n", "column", "source field", "type"));
        let mut rows = Vec::new();
        list_columns("", "", &self.document, &mut rows);
        for (col, src, ty) in rows {
            out.push_str(&format!("  {col:<40} {src:<32} {ty}\n"));
        }
        for h in &self.history {
            out.push_str(&format!("  v{} at {} (run {}):\n", h.version, h.changed_at, h.run_id));
            for c in &h.changes {
                out.push_str(&format!("    - {c}\n"));
            }
        }
        out
    }
}

fn list_columns(col_prefix: &str, src_prefix: &str, t: &LakeType, out: &mut Vec<(String, String, String)>) {
    match t {
        LakeType::Struct { fields } => {
            for f in fields {
                let col = if col_prefix.is_empty() { f.column.clone() } else { format!("{col_prefix}.{}", f.column) };
                let src = if src_prefix.is_empty() { f.source.clone() } else { format!("{src_prefix}.{}", f.source) };
                match &f.ty {
                    LakeType::Struct { fields: inner } if !inner.is_empty() => list_columns(&col, &src, &f.ty, out),
                    LakeType::List { item } if matches!(item.as_ref(), LakeType::Struct { fields } if !fields.is_empty()) =>
                    {
                        out.push((col.clone(), src.clone(), "array<struct>".into()));
                        list_columns(&format!("{col}[]"), &format!("{src}[]"), item, out)
                    }
                    other => out.push((col, src, type_name(other))),
                }
            }
        }
        other => out.push((col_prefix.to_string(), src_prefix.to_string(), type_name(other))),
    }
}

/// Short Athena-style type name for messages.
pub fn type_name(t: &LakeType) -> String {
    match t {
        LakeType::Null => "string (no values yet)".into(),
        LakeType::Bool => "boolean".into(),
        LakeType::Int { .. } => "bigint".into(),
        LakeType::Float => "double".into(),
        LakeType::Decimal { int_digits, scale } => format!("decimal({},{scale})", (int_digits + scale).max(1)),
        LakeType::String => "string".into(),
        LakeType::Binary => "binary".into(),
        LakeType::Timestamp => "timestamp".into(),
        LakeType::Struct { fields } if fields.is_empty() => "string ({} only)".into(),
        LakeType::Struct { fields } => {
            format!(
                "struct<{}>",
                fields.iter().map(|f| format!("{}:{}", f.column, type_name(&f.ty))).collect::<Vec<_>>().join(",")
            )
        }
        LakeType::List { item } => format!("array<{}>", type_name(item)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{rawdoc, RawBsonRef};

    #[test]
    fn changes_are_described_and_serialisation_round_trips() {
        let mut old = LakeType::empty_struct();
        old.observe(RawBsonRef::Document(&rawdoc! { "age": 42, "v": { "a": 1 } })).unwrap();
        let mut new = old.clone();
        new.observe(RawBsonRef::Document(&rawdoc! { "age": "42 years", "v": { "b": 1.5 }, "Patient Name": "x" }))
            .unwrap();
        let changes = describe_changes(&old, &new);
        assert_eq!(
            changes,
            vec![
                "column age: bigint -> string (no lossless common type: values kept as text, documents and arrays as relaxed Extended JSON)",
                "new column v.b: double (from field `b`)",
                "new column patient_name: string (from field `Patient Name`)"
            ]
        );
        let mut s = StoredSchema::new("hims", "patients");
        s.document = new;
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<StoredSchema>(&json).unwrap(), s);
    }
}
