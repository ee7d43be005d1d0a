//! BI views over a table, for tools that read only scalar columns (Amazon QuickSight skips array, struct and map
//! columns): one **flat view** per table and one **child view** per array, written as Athena (Trino) SQL.
//!
//! ```text
//!  visits (_id, doctor struct<id,name>, vitals struct<bp,spo2>, diagnoses array<struct<code,desc>>, tags array<string>)
//!   ├─ visits__flat       _id, doctor_id, doctor_name, vitals_bp, vitals_spo2, diagnoses (JSON), tags (JSON), <keys>
//!   ├─ visits__diagnoses  _id, <keys>, diagnoses_pos, code, desc          one row per element
//!   └─ visits__tags       _id, <keys>, tags_pos, value
//! ```
//! - Every struct member becomes its own column named by its path (`doctor.id` -> `doctor_id`); arrays left in a
//!   view are JSON text (`json_format(CAST(x AS JSON))`), binary is base64 text: only scalar types remain.
//! - Every array, of documents or of scalars, at any depth (a member of a struct, an element of another array),
//!   has a child view: the parent's key column and the partition columns, the 1-based position of the element in
//!   each enclosing array (`items_pos`, then `tags_pos`), and the element's members flattened (a scalar element
//!   is `value`). An empty or missing array has no rows.
//! - Names are stable across runs: the key and partition columns and the top-level scalar columns keep their
//!   lake names; flattened names are claimed in schema order (which only ever appends), a clash taking a suffix
//!   (`doctor_id_1`). A name could only move if a new column took exactly a flattened name already in use.
//! - Elements are reached by position (`CROSS JOIN UNNEST(sequence(1, ...cardinality(a)))`, `element_at`), not
//!   by unnesting the array itself: Trino expands an unnested array of rows into one column per member, which
//!   other engines do not, and this form means the same in Athena, Spark and DuckDB (the tests run the SQL,
//!   transpiled by sqlglot, in the last two). An empty array's one position (`greatest(.., 1)`: `sequence(1, 0)`
//!   would count down to 0, which `element_at` refuses) is filtered out with `cardinality(a) > 0`; nested arrays
//!   unnest one level per subquery, so a position is only used on an array that has elements.
//!
//! The views are built from the table definition only, so they follow every schema change (new members, widened
//! types, whatever form harmonisation gives a column) on the run that makes it.
use super::types::{hive_type, Quoting};
use super::TableDef;
use crate::schema::names::unique;
use crate::schema::LakeType;

/// One view: its name, the SQL of its `SELECT`, and its columns (for the catalog entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: String,
    /// `flat`, or the array's path in the document (`diagnoses`, `items.tags`).
    pub of: String,
    /// The query (Athena/Trino SQL), without `CREATE VIEW` and without a final `;`.
    pub sql: String,
    pub columns: Vec<ViewColumn>,
}

/// A view column with its Trino type (Athena's view metadata) and Hive type (the Glue columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    pub name: String,
    pub trino: String,
    pub hive: String,
}

/// A double-quoted SQL identifier (Trino: `"` doubled inside).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A scalar leaf of a flattened value: the SQL that computes it, its name parts and its type.
struct Leaf {
    parts: Vec<String>,
    expr: String,
    ty: LakeType,
}

/// An array met while flattening: its path, the expression giving it and its element type.
struct Array {
    path: Vec<String>,
    expr: String,
    item: LakeType,
}

/// Flattens `expr` of type `ty` into scalar leaves (structs into members, arrays into JSON text, recorded).
fn flatten(expr: &str, ty: &LakeType, parts: Vec<String>, leaves: &mut Vec<Leaf>, arrays: &mut Vec<Array>) {
    match ty {
        LakeType::Struct { fields } if !fields.is_empty() => {
            for f in fields {
                let mut p = parts.clone();
                p.push(f.column.clone());
                flatten(&format!("{expr}.{}", ident(&f.column)), &f.ty, p, leaves, arrays);
            }
        }
        LakeType::List { item } => {
            arrays.push(Array { path: parts.clone(), expr: expr.to_string(), item: (**item).clone() });
            leaves.push(Leaf { parts, expr: format!("json_format(CAST({expr} AS JSON))"), ty: LakeType::String });
        }
        LakeType::Binary => leaves.push(Leaf { parts, expr: format!("to_base64({expr})"), ty: LakeType::String }),
        _ => leaves.push(Leaf { parts, expr: expr.to_string(), ty: ty.clone() }),
    }
}

/// The Trino type of a scalar leaf, as Athena records it in a view's metadata.
fn trino_type(t: &LakeType) -> String {
    match t {
        LakeType::Bool => "boolean".into(),
        LakeType::Int { .. } => "bigint".into(),
        LakeType::Float => "double".into(),
        LakeType::Decimal { int_digits, scale } => format!("decimal({},{scale})", (int_digits + scale).max(1)),
        LakeType::Timestamp => "timestamp(3)".into(),
        _ => "varchar".into(),
    }
}

/// Names already taken in one view, and the columns in order.
#[derive(Default)]
struct Columns {
    out: Vec<(String, String, LakeType)>,
}

impl Columns {
    fn taken(&self, n: &str) -> bool {
        self.out.iter().any(|(name, _, _)| name == n)
    }
    fn push(&mut self, base: &str, expr: String, ty: LakeType) -> String {
        let name = unique(base, |n| self.taken(n));
        self.out.push((name.clone(), expr, ty));
        name
    }
    fn select(&self) -> String {
        let cols: Vec<String> = self.out.iter().map(|(n, e, _)| format!("  {e} AS {}", ident(n))).collect();
        cols.join(",\n")
    }
    fn columns(&self) -> Vec<ViewColumn> {
        self.out
            .iter()
            .map(|(n, _, t)| ViewColumn { name: n.clone(), trino: trino_type(t), hive: hive_type(t, Quoting::Catalog) })
            .collect()
    }
}

/// The flat view and every child view of a table.
pub fn views(def: &TableDef) -> Vec<View> {
    let table = format!("{}.{}", ident(&def.database), ident(&def.name));
    let mut names: Vec<String> = Vec::new();
    let mut name_for = |suffix: &str| -> String {
        let n = unique(&format!("{}__{suffix}", def.name), |n| names.iter().any(|m| m == n));
        names.push(n.clone());
        n
    };

    // Flat view: the lake's scalar column names first (they keep their names), then flattened leaves in order.
    let mut leaves = Vec::new();
    let mut arrays = Vec::new();
    for c in &def.columns {
        flatten(&format!("t.{}", ident(&c.name)), &c.ty, vec![c.name.clone()], &mut leaves, &mut arrays);
    }
    // Top-level scalar columns and partition keys keep their lake names; flattened members take what is left.
    let mut claimed: Vec<String> = leaves.iter().filter(|l| l.parts.len() == 1).map(|l| l.parts[0].clone()).collect();
    claimed.extend(def.partition_keys.iter().map(|k| k.name.clone()));
    let mut flat = Columns::default();
    for leaf in &leaves {
        let name = if leaf.parts.len() == 1 {
            leaf.parts[0].clone()
        } else {
            let n = unique(&leaf.parts.join("_"), |n| claimed.iter().any(|c| c == n));
            claimed.push(n.clone());
            n
        };
        flat.push(&name, leaf.expr.clone(), leaf.ty.clone());
    }
    for k in &def.partition_keys {
        flat.push(&k.name, format!("t.{}", ident(&k.name)), LakeType::String);
    }
    let mut out = vec![View {
        name: name_for("flat"),
        of: "flat".into(),
        sql: format!("SELECT\n{}\nFROM {table} AS t", flat.select()),
        columns: flat.columns(),
    }];

    // Child views: the key and partition columns carried from the table, then one level per enclosing array.
    let mut carry: Vec<(String, LakeType)> = Vec::new();
    if let Some(key) = &def.key {
        if let Some(c) = def.columns.iter().find(|c| &c.name == key) {
            carry.push((c.name.clone(), c.ty.clone()));
        }
    }
    carry.extend(def.partition_keys.iter().map(|k| (k.name.clone(), LakeType::String)));
    let source = Source { from: format!("{table} AS t"), alias: "t".into(), carry, depth: 0 };
    for a in arrays {
        child_views(&source, a, &mut name_for, &mut out);
    }
    out
}

/// Where a level's rows come from: a FROM item, its alias, and the columns carried down (by name).
struct Source {
    from: String,
    alias: String,
    carry: Vec<(String, LakeType)>,
    depth: usize,
}

fn child_views(parent: &Source, array: Array, name_for: &mut dyn FnMut(&str) -> String, out: &mut Vec<View>) {
    let level = parent.depth + 1;
    let (s, u) = (format!("s{level}"), format!("u{level}"));
    let base = array.path.last().cloned().unwrap_or_else(|| "value".into());
    // The rows of this level: carried columns, the position, and the element (`e`).
    let mut carry = Columns::default();
    for (n, t) in &parent.carry {
        carry.push(n, format!("{}.{}", parent.alias, ident(n)), t.clone());
    }
    carry.push(&format!("{base}_pos"), format!("{u}.\"pos\""), LakeType::Int { digits: 10 });
    let mut select = carry.select();
    select.push_str(&format!(",\n  element_at({}, {u}.\"pos\") AS \"e\"", array.expr));
    let rows = format!(
        "SELECT\n{select}\nFROM {}\nCROSS JOIN UNNEST(sequence(1, greatest(cardinality({arr}), 1))) AS {u} (\"pos\")\nWHERE cardinality({arr}) > 0",
        parent.from,
        arr = array.expr
    );
    let from = format!("(\n{}\n) AS {s}", indent(&rows));
    let carried: Vec<(String, LakeType)> = carry.out.iter().map(|(n, _, t)| (n.clone(), t.clone())).collect();

    let mut leaves = Vec::new();
    let mut arrays = Vec::new();
    let element = format!("{s}.\"e\"");
    match &array.item {
        LakeType::Struct { fields } if !fields.is_empty() => {
            for f in fields {
                flatten(
                    &format!("{element}.{}", ident(&f.column)),
                    &f.ty,
                    vec![f.column.clone()],
                    &mut leaves,
                    &mut arrays,
                )
            }
        }
        other => flatten(&element, other, vec!["value".into()], &mut leaves, &mut arrays),
    }
    let mut view = Columns::default();
    for (n, t) in &carried {
        view.push(n, format!("{s}.{}", ident(n)), t.clone());
    }
    for leaf in &leaves {
        view.push(&leaf.parts.join("_"), leaf.expr.clone(), leaf.ty.clone());
    }
    let path = array.path.join(".");
    out.push(View {
        name: name_for(&array.path.join("__")),
        of: path.clone(),
        sql: format!("SELECT\n{}\nFROM {from}", view.select()),
        columns: view.columns(),
    });
    let next = Source { from, alias: s, carry: carried, depth: level };
    for mut a in arrays {
        let mut p = array.path.clone();
        p.append(&mut a.path);
        a.path = p;
        child_views(&next, a, name_for, out);
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// The `.views.sql` file: every view as `CREATE OR REPLACE VIEW`, each with a comment saying what it shows.
pub fn render(def: &TableDef, views: &[View]) -> String {
    let mut out = format!(
        "-- BI views of MongoDB collection {}, lake schema version {}, generated by mongolake (Athena SQL).\n\
         -- Only scalar columns: struct members flattened, arrays as JSON text here and one row per element in\n\
         -- their child views. In Glue mode ([catalog] glue = true) each run creates or updates them itself.\n",
        def.source, def.schema_version
    );
    for v in views {
        let what = if v.of == "flat" {
            "one row per document, every struct member its own column".to_string()
        } else {
            format!("one row per element of {}", v.of)
        };
        out.push_str(&format!(
            "\n-- {what}\nCREATE OR REPLACE VIEW {}.{} AS\n{};\n",
            ident(&def.database),
            ident(&v.name),
            v.sql
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{field, schema, spec};
    use super::super::{CatalogConfig, TableDef};
    use super::*;
    use crate::schema::Field;

    fn st(fields: Vec<Field>) -> LakeType {
        LakeType::Struct { fields }
    }
    fn list(t: LakeType) -> LakeType {
        LakeType::List { item: Box::new(t) }
    }

    fn visits() -> TableDef {
        let fields = vec![
            field("_id", LakeType::String),
            field("facility_id", LakeType::String),
            field("doctor", st(vec![field("id", LakeType::String), field("name", LakeType::String)])),
            field("doctor_id", LakeType::Int { digits: 3 }),
            field("vitals", st(vec![field("bp", LakeType::String), field("spo2", LakeType::Float)])),
            field("diagnoses", list(st(vec![field("code", LakeType::String), field("at", LakeType::Timestamp)]))),
            field("tags", list(LakeType::String)),
            field(
                "items",
                list(st(vec![field("sku", LakeType::Binary), field("lots", list(LakeType::Int { digits: 2 }))])),
            ),
        ];
        let parts = vec!["facility_id=BLR01/date=2025-07-01".to_string()];
        TableDef::new(
            &spec("facility_id/date(created_at)"),
            &schema(fields),
            &CatalogConfig::default(),
            "s3://b/raw",
            &parts,
        )
    }

    fn names(v: &View) -> Vec<&str> {
        v.columns.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn flat_view_flattens_structs_and_keeps_lake_names() {
        let all = views(&visits());
        let flat = &all[0];
        assert_eq!(flat.name, "lab_results__flat");
        assert_eq!(
            names(flat),
            [
                "_id",
                "doctor_id_1",
                "doctor_name",
                "doctor_id",
                "vitals_bp",
                "vitals_spo2",
                "diagnoses",
                "tags",
                "items",
                "facility_id",
                "date"
            ]
        );
        let types: Vec<&str> = flat.columns.iter().map(|c| c.trino.as_str()).collect();
        assert_eq!(types[3], "bigint");
        assert_eq!(types[4], "varchar");
        assert_eq!(types[5], "double");
        assert!(flat.columns.iter().all(|c| !c.hive.contains('<')), "scalars only: {:?}", flat.columns);
        assert!(flat.sql.contains("  t.\"doctor\".\"id\" AS \"doctor_id_1\",\n"), "{}", flat.sql);
        assert!(flat.sql.contains("  json_format(CAST(t.\"diagnoses\" AS JSON)) AS \"diagnoses\",\n"), "{}", flat.sql);
        assert!(flat.sql.ends_with("FROM \"hims\".\"lab_results\" AS t"), "{}", flat.sql);
        assert_eq!(views(&visits()), all, "deterministic");
    }

    #[test]
    fn every_array_has_a_child_view_with_key_partitions_and_positions() {
        let all = views(&visits());
        let by: Vec<(&str, &str)> = all.iter().map(|v| (v.name.as_str(), v.of.as_str())).collect();
        assert_eq!(
            by,
            [
                ("lab_results__flat", "flat"),
                ("lab_results__diagnoses", "diagnoses"),
                ("lab_results__tags", "tags"),
                ("lab_results__items", "items"),
                ("lab_results__items__lots", "items.lots"),
            ]
        );
        assert_eq!(names(&all[1]), ["_id", "facility_id", "date", "diagnoses_pos", "code", "at"]);
        assert_eq!(all[1].columns[5].trino, "timestamp(3)");
        assert_eq!(names(&all[2]), ["_id", "facility_id", "date", "tags_pos", "value"]);
        assert_eq!(names(&all[3]), ["_id", "facility_id", "date", "items_pos", "sku", "lots"]);
        assert_eq!(names(&all[4]), ["_id", "facility_id", "date", "items_pos", "lots_pos", "value"]);
        let diag = &all[1].sql;
        assert!(
            diag.contains(
                "CROSS JOIN UNNEST(sequence(1, greatest(cardinality(t.\"diagnoses\"), 1))) AS u1 (\"pos\")\n  WHERE cardinality(t.\"diagnoses\") > 0"
            ),
            "{diag}"
        );
        assert!(diag.contains("element_at(t.\"diagnoses\", u1.\"pos\") AS \"e\""), "{diag}");
        assert!(diag.contains("  s1.\"e\".\"code\" AS \"code\""), "{diag}");
        assert!(all[3].sql.contains("to_base64(s1.\"e\".\"sku\") AS \"sku\""), "{}", all[3].sql);
        let lots = &all[4].sql;
        assert!(
            lots.contains("UNNEST(sequence(1, greatest(cardinality(s1.\"e\".\"lots\"), 1))) AS u2 (\"pos\")"),
            "{lots}"
        );
        assert!(lots.contains("s2.\"items_pos\" AS \"items_pos\""), "{lots}");
        for v in &all {
            assert!(v.columns.iter().all(|c| !c.hive.contains('<')), "{}: scalars only", v.name);
        }
    }

    #[test]
    fn the_file_has_one_statement_per_view() {
        let def = visits();
        let text = render(&def, &views(&def));
        assert_eq!(text.matches("CREATE OR REPLACE VIEW \"hims\".").count(), 5, "{text}");
        assert!(text.contains("-- one row per element of items.lots\n"), "{text}");
        let comments: String = text.lines().filter(|l| l.starts_with("--")).collect();
        assert!(!comments.contains(';'), "{comments}");
    }
}
