//! Schema evolution, the pure step between pass 1 and pass 2 ([`super::collection`]): the stored document type
//! and the type observed in this run's documents (already joined with it by pass 1) in; what changed, the
//! Arrow file type, and whether every partition must be rewritten out. No I/O: the stage that calls it saves
//! the schema (write-ahead when it widens).
use crate::schema::registry::{describe_changes, SchemaChange, StoredSchema};
use crate::schema::{file_type, LakeType};

/// What this run's documents do to the collection's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Evolution {
    /// The document type after this run (the stored one joined with what was read).
    pub document: LakeType,
    /// The type of the partition files (the document without the columns in the partition path).
    pub file_ty: LakeType,
    /// What changed, for the report and the schema history.
    pub changes: Vec<String>,
    /// The schema gets a new version in its history.
    pub new_version: bool,
    /// A column's Arrow type changed in a schema that had columns: every partition must be rewritten.
    pub widened: bool,
    /// Every partition is rewritten: a widening now, or one an interrupted run left pending.
    pub rewrite_all: bool,
    /// The stored schema must be saved at the commit.
    pub dirty: bool,
}

/// Compares the stored document type `old` with `document` (what it becomes after this run). `in_path`: the
/// columns in the partition path (not in the files); `rewrite_pending`: a widening's rewrite is unfinished.
pub fn evolve(old: &LakeType, document: LakeType, in_path: &[String], rewrite_pending: bool) -> Evolution {
    let was_empty = matches!(old, LakeType::Struct { fields } if fields.is_empty());
    let changes = match (was_empty, &document) {
        (true, LakeType::Struct { fields }) if !fields.is_empty() => {
            vec![format!("created with {} columns", fields.len())]
        }
        (true, _) => Vec::new(),
        (false, _) => describe_changes(old, &document),
    };
    let file_ty = file_type(&document, in_path);
    let widened = !was_empty && crate::schema::needs_rewrite(&file_type(old, in_path), &file_ty);
    let changed = &document != old;
    Evolution {
        new_version: changed && !changes.is_empty(),
        dirty: changed || rewrite_pending,
        rewrite_all: widened || rewrite_pending,
        widened,
        changes,
        file_ty,
        document,
    }
}

impl Evolution {
    /// Puts the new document type (and, for a new version, its history entry) into `stored`.
    pub fn apply(&self, stored: &mut StoredSchema, run_id: &str, changed_at: String) {
        stored.document = self.document.clone();
        if self.new_version {
            stored.version += 1;
            stored.history.push(SchemaChange {
                version: stored.version,
                run_id: run_id.to_string(),
                changed_at,
                changes: self.changes.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;

    fn doc(fields: &[(&str, LakeType)]) -> LakeType {
        LakeType::Struct { fields: fields.iter().map(|(n, t)| Field::new(n, n, t.clone())).collect() }
    }

    #[test]
    fn a_first_load_creates_without_widening() {
        let e = evolve(&doc(&[]), doc(&[("_id", LakeType::String), ("n", LakeType::Int { digits: 3 })]), &[], false);
        assert_eq!(e.changes, vec!["created with 2 columns".to_string()]);
        assert!(e.new_version && e.dirty);
        assert!(!e.widened && !e.rewrite_all);
    }

    #[test]
    fn nothing_new_changes_nothing() {
        let d = doc(&[("_id", LakeType::String), ("n", LakeType::Int { digits: 3 })]);
        let e = evolve(&d, d.clone(), &[], false);
        assert!(e.changes.is_empty());
        assert!(!e.new_version && !e.dirty && !e.widened && !e.rewrite_all);
    }

    #[test]
    fn a_new_column_needs_no_rewrite_a_new_member_does() {
        let old = doc(&[("_id", LakeType::String), ("v", doc(&[("a", LakeType::Bool)]))]);
        let column = doc(&[("_id", LakeType::String), ("v", doc(&[("a", LakeType::Bool)])), ("n", LakeType::Float)]);
        let e = evolve(&old, column, &[], false);
        assert!(e.new_version && e.dirty);
        assert!(!e.widened && !e.rewrite_all, "files without a column read it as NULL by name");
        assert_eq!(e.changes.len(), 1, "{:?}", e.changes);
        let member = doc(&[("_id", LakeType::String), ("v", doc(&[("a", LakeType::Bool), ("b", LakeType::Float)]))]);
        let e = evolve(&old, member, &[], false);
        assert!(e.widened && e.rewrite_all, "a struct without a member is not read by every engine");
    }

    #[test]
    fn a_changed_arrow_type_rewrites_every_partition() {
        let old = doc(&[("_id", LakeType::String), ("n", LakeType::Int { digits: 3 })]);
        let e = evolve(&old, doc(&[("_id", LakeType::String), ("n", LakeType::String)]), &[], false);
        assert!(e.widened && e.rewrite_all && e.dirty && e.new_version);
    }

    #[test]
    fn a_partition_column_does_not_widen_the_files() {
        let old = doc(&[("_id", LakeType::String), ("facility", LakeType::Int { digits: 3 })]);
        let new = doc(&[("_id", LakeType::String), ("facility", LakeType::String)]);
        let e = evolve(&old, new, &["facility".to_string()], false);
        assert!(!e.widened && !e.rewrite_all, "the column lives in the path, not in the files");
        assert!(e.new_version);
    }

    #[test]
    fn a_pending_rewrite_is_finished_even_without_changes() {
        let d = doc(&[("_id", LakeType::String)]);
        let e = evolve(&d, d.clone(), &[], true);
        assert!(e.rewrite_all && e.dirty && !e.widened && !e.new_version);
    }

    #[test]
    fn apply_records_a_version_only_when_something_changed() {
        let mut stored = StoredSchema::new("db", "c");
        let e = evolve(&stored.document.clone(), doc(&[("_id", LakeType::String)]), &[], false);
        e.apply(&mut stored, "run-1", "2026-12-01T00:00:00.000Z".into());
        assert_eq!((stored.version, stored.history.len()), (1, 1));
        assert_eq!(stored.history[0].run_id, "run-1");
        let again = evolve(&stored.document.clone(), stored.document.clone(), &[], false);
        again.apply(&mut stored, "run-2", "2026-12-02T00:00:00.000Z".into());
        assert_eq!((stored.version, stored.history.len()), (1, 1));
    }
}
