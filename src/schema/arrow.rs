//! Lake types as Arrow types, and column builders fed straight from raw BSON values (no `Document`, no JSON on
//! the common path). Every column is nullable: a missing field and a null are both null in the lake.
use super::lattice::{find_field, fits, Kind, LakeType, Role};
use super::text::render;
use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder, ListArray,
    StringBuilder, StructArray, TimestampMillisecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field as ArrowField, FieldRef, Fields, TimeUnit};
use bson::RawBsonRef;
use std::sync::Arc;

/// A per-field hook for top-level documents: drop (None) or replace a value.
pub type Prepare = dyn for<'a> Fn(&str, RawBsonRef<'a>) -> Option<RawBsonRef<'a>> + Sync;

/// Name of the element field of every list (Parquet's recommended three-level list layout).
pub const LIST_ITEM: &str = "element";

/// The Arrow type a lake type is stored as.
pub fn data_type(t: &LakeType) -> DataType {
    match t {
        // Unknown and `{}`-only columns are stored as text; Athena has no type for "nothing yet".
        LakeType::Null | LakeType::String => DataType::Utf8,
        LakeType::Struct { fields } if fields.is_empty() => DataType::Utf8,
        LakeType::Bool => DataType::Boolean,
        LakeType::Int { .. } => DataType::Int64,
        LakeType::Float => DataType::Float64,
        LakeType::Decimal { int_digits, scale } => DataType::Decimal128((int_digits + scale).max(1), *scale as i8),
        LakeType::Binary => DataType::Binary,
        LakeType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        LakeType::Struct { fields } => DataType::Struct(struct_fields(fields)),
        LakeType::List { item } => DataType::List(Arc::new(ArrowField::new(LIST_ITEM, data_type(item), true))),
    }
}

pub fn struct_fields(fields: &[super::lattice::Field]) -> Fields {
    fields.iter().map(|f| ArrowField::new(&f.column, data_type(&f.ty), true)).collect()
}

/// How a struct's members route values beside their own names (see [`crate::schema::Role`]).
#[derive(Debug, Default)]
pub struct Routes {
    /// Per child: it answers to its source name (a main column).
    main: Vec<bool>,
    /// Per child: other spellings it answers to.
    aliases: Vec<Vec<String>>,
    /// Per child: its variant columns, by the kind of value each takes.
    variants: Vec<Vec<(Kind, usize)>>,
    /// Members taking an element of another kind than a document (arrays of documents), by kind.
    elements: Vec<(Kind, usize)>,
    /// (main child, spelling, child): the second spelling's value in a document that holds two.
    collisions: Vec<(usize, String, usize)>,
}

impl Routes {
    fn of(fields: &[super::lattice::Field]) -> Routes {
        let column = |of: &str| fields.iter().position(|f| f.role.is_main() && f.column == of);
        let mut r = Routes {
            main: fields.iter().map(|f| f.role.is_main()).collect(),
            aliases: fields.iter().map(|f| f.aliases.clone()).collect(),
            variants: vec![Vec::new(); fields.len()],
            ..Routes::default()
        };
        for (j, f) in fields.iter().enumerate() {
            match &f.role {
                Role::Main => {}
                Role::Variant { of, kind } => {
                    if let Some(i) = column(of) {
                        r.variants[i].push((*kind, j));
                    }
                }
                Role::Element { kind } => r.elements.push((*kind, j)),
                Role::Collision { of } => {
                    if let Some(i) = column(of) {
                        r.collisions.push((i, f.source.clone(), j));
                    }
                }
            }
        }
        r
    }

    fn answers(&self, sources: &[String], k: usize, name: &str) -> bool {
        self.main[k] && (sources[k] == name || self.aliases[k].iter().any(|a| a == name))
    }
}

/// Values each column of a [`ColumnBuilder::new`] has room for (Arrow's builders' default).
const DEFAULT_CAPACITY: usize = 1024;

/// Appends BSON values to one Arrow column of a fixed lake type.
pub enum ColumnBuilder {
    Text(StringBuilder),
    /// The key column stored as text: each value's [`super::text::key_text`] (the value itself for strings and
    /// ObjectIds), so keys of other types in a column widened to text stay distinct and are matched as written.
    KeyText(StringBuilder),
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: u8,
    },
    Binary(BinaryBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Struct {
        /// (shared by the builders [`ColumnBuilder::empty_like`] makes, as `fields` and `routes` are)
        sources: Arc<[String]>,
        children: Vec<ColumnBuilder>,
        fields: Fields,
        nulls: NullBufferBuilder,
        seen: Vec<bool>,
        /// Which document fields go to which child, beyond `sources` ([`Routes`]).
        routes: Arc<Routes>,
    },
    List {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        item: Box<ColumnBuilder>,
        field: FieldRef,
    },
}

impl ColumnBuilder {
    pub fn new(t: &LakeType) -> ColumnBuilder {
        Self::with_capacity(t, DEFAULT_CAPACITY)
    }

    /// [`ColumnBuilder::new`] with room for `rows` values in each column (a partition of a few rows allocates
    /// a few values a column rather than Arrow's default 1,024: many small files are many builders).
    pub fn with_capacity(t: &LakeType, rows: usize) -> ColumnBuilder {
        let n = rows.max(1);
        match t {
            LakeType::Null | LakeType::String => ColumnBuilder::Text(StringBuilder::with_capacity(n, n * 8)),
            LakeType::Struct { fields } if fields.is_empty() => {
                ColumnBuilder::Text(StringBuilder::with_capacity(n, n * 8))
            }
            LakeType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(n)),
            LakeType::Int { .. } => ColumnBuilder::Int(Int64Builder::with_capacity(n)),
            LakeType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(n)),
            LakeType::Decimal { int_digits, scale } => ColumnBuilder::Decimal {
                builder: Decimal128Builder::with_capacity(n),
                precision: (int_digits + scale).max(1),
                scale: *scale,
            },
            LakeType::Binary => ColumnBuilder::Binary(BinaryBuilder::with_capacity(n, n * 8)),
            LakeType::Timestamp => ColumnBuilder::Timestamp(TimestampMillisecondBuilder::with_capacity(n)),
            LakeType::Struct { fields } => ColumnBuilder::Struct {
                sources: fields.iter().map(|f| f.source.clone()).collect(),
                children: fields.iter().map(|f| ColumnBuilder::with_capacity(&f.ty, n)).collect(),
                fields: struct_fields(fields),
                nulls: NullBufferBuilder::new(n),
                seen: vec![false; fields.len()],
                routes: Arc::new(Routes::of(fields)),
            },
            LakeType::List { item } => ColumnBuilder::List {
                offsets: {
                    let mut offsets = Vec::with_capacity(n + 1);
                    offsets.push(0);
                    offsets
                },
                nulls: NullBufferBuilder::new(n),
                item: Box::new(ColumnBuilder::with_capacity(item, n)),
                field: Arc::new(ArrowField::new(LIST_ITEM, data_type(item), true)),
            },
        }
    }

    /// The builder of whole documents (a file's rows): always a struct, even before any field is known, so
    /// [`ColumnBuilder::append_document`] works on documents with no fields at all (`{}`).
    pub fn for_document(t: &LakeType) -> ColumnBuilder {
        Self::for_documents(t, DEFAULT_CAPACITY)
    }

    /// [`ColumnBuilder::for_document`] with room for `rows` documents.
    pub fn for_documents(t: &LakeType, rows: usize) -> ColumnBuilder {
        match t {
            LakeType::Struct { fields } if fields.is_empty() => ColumnBuilder::Struct {
                sources: Arc::new([]),
                children: Vec::new(),
                fields: Fields::empty(),
                nulls: NullBufferBuilder::new(0),
                seen: Vec::new(),
                routes: Arc::default(),
            },
            other => ColumnBuilder::with_capacity(other, rows),
        }
    }

    /// An empty builder of the same type as this one, with room for `rows` values a column: what
    /// [`ColumnBuilder::with_capacity`] makes of the type, but sharing this builder's Arrow fields, names and
    /// routes instead of building them again from the lake type (for a partition file of a few rows, building
    /// them cost about a tenth of its CPU). The key column stays a key column.
    pub fn empty_like(&self, rows: usize) -> ColumnBuilder {
        let n = rows.max(1);
        match self {
            ColumnBuilder::Text(_) => ColumnBuilder::Text(StringBuilder::with_capacity(n, n * 8)),
            ColumnBuilder::KeyText(_) => ColumnBuilder::KeyText(StringBuilder::with_capacity(n, n * 8)),
            ColumnBuilder::Bool(_) => ColumnBuilder::Bool(BooleanBuilder::with_capacity(n)),
            ColumnBuilder::Int(_) => ColumnBuilder::Int(Int64Builder::with_capacity(n)),
            ColumnBuilder::Float(_) => ColumnBuilder::Float(Float64Builder::with_capacity(n)),
            ColumnBuilder::Decimal { precision, scale, .. } => ColumnBuilder::Decimal {
                builder: Decimal128Builder::with_capacity(n),
                precision: *precision,
                scale: *scale,
            },
            ColumnBuilder::Binary(_) => ColumnBuilder::Binary(BinaryBuilder::with_capacity(n, n * 8)),
            ColumnBuilder::Timestamp(_) => ColumnBuilder::Timestamp(TimestampMillisecondBuilder::with_capacity(n)),
            ColumnBuilder::Struct { sources, children, fields, seen, routes, .. } => ColumnBuilder::Struct {
                sources: sources.clone(),
                children: children.iter().map(|c| c.empty_like(n)).collect(),
                fields: fields.clone(),
                nulls: NullBufferBuilder::new(if fields.is_empty() { 0 } else { n }),
                seen: vec![false; seen.len()],
                routes: routes.clone(),
            },
            ColumnBuilder::List { item, field, .. } => ColumnBuilder::List {
                offsets: {
                    let mut offsets = Vec::with_capacity(n + 1);
                    offsets.push(0);
                    offsets
                },
                nulls: NullBufferBuilder::new(n),
                item: Box::new(item.empty_like(n)),
                field: field.clone(),
            },
        }
    }

    /// Makes the top-level column of `source` (the collection's key) a [`ColumnBuilder::KeyText`] when it is
    /// stored as text.
    pub fn key_column(mut self, source: &str) -> ColumnBuilder {
        if let ColumnBuilder::Struct { sources, children, .. } = &mut self {
            if let Some(i) = sources.iter().position(|s| s == source) {
                if let ColumnBuilder::Text(b) = &mut children[i] {
                    children[i] = ColumnBuilder::KeyText(std::mem::take(b));
                }
            }
        }
        self
    }

    pub fn append_null(&mut self) {
        match self {
            ColumnBuilder::Text(b) | ColumnBuilder::KeyText(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Int(b) => b.append_null(),
            ColumnBuilder::Float(b) => b.append_null(),
            ColumnBuilder::Decimal { builder, .. } => builder.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Struct { children, nulls, .. } => {
                children.iter_mut().for_each(ColumnBuilder::append_null);
                nulls.append_null();
            }
            ColumnBuilder::List { offsets, nulls, .. } => {
                offsets.push(*offsets.last().expect("offsets start at 0"));
                nulls.append_null();
            }
        }
    }

    /// Appends one value. A value the column cannot hold (a date beyond year 9999, or a type inference should
    /// have widened for) becomes null here and is pushed to `rejects` with its path and the reason, so the
    /// document still lands and the value is kept in the rejects area. An error means the BSON itself is
    /// unreadable; the read pass checks every document first, so that is a bug, reported with the document's key.
    pub fn append(&mut self, value: Option<RawBsonRef<'_>>, rejects: &mut Vec<ValueReject>) -> Result<(), String> {
        let value = match value {
            None | Some(RawBsonRef::Null) | Some(RawBsonRef::Undefined) => {
                self.append_null();
                return Ok(());
            }
            Some(v) => v,
        };
        let mut reject = |builder: &mut ColumnBuilder, reason: String| {
            builder.append_null();
            rejects.push(ValueReject { path: String::new(), reason, value: super::text::to_canonical_json(value) });
        };
        match self {
            ColumnBuilder::Text(b) => match value {
                RawBsonRef::String(s) => b.append_value(s),
                RawBsonRef::ObjectId(o) => b.append_value(super::text::object_id_hex(&o, &mut [0; 24])),
                other => b.append_value(render(other)),
            },
            ColumnBuilder::KeyText(b) => b.append_value(super::text::key_text(value)),
            ColumnBuilder::Bool(b) => match value {
                RawBsonRef::Boolean(v) => b.append_value(v),
                other => reject(self, mismatch("bool", other)),
            },
            ColumnBuilder::Int(b) => match value {
                RawBsonRef::Int32(v) => b.append_value(v as i64),
                RawBsonRef::Int64(v) => b.append_value(v),
                other => reject(self, mismatch("int64", other)),
            },
            ColumnBuilder::Float(b) => match value {
                RawBsonRef::Double(v) => b.append_value(v),
                RawBsonRef::Int32(v) => b.append_value(v as f64),
                RawBsonRef::Int64(v) => b.append_value(v as f64),
                RawBsonRef::Decimal128(d) => match d.to_string().parse::<f64>() {
                    Ok(v) => b.append_value(v),
                    Err(_) => reject(self, mismatch("double", value)),
                },
                other => reject(self, mismatch("double", other)),
            },
            ColumnBuilder::Decimal { builder, scale, .. } => {
                let unscaled = match value {
                    RawBsonRef::Decimal128(d) => super::decimal::to_unscaled(&d, *scale),
                    RawBsonRef::Int32(v) => (v as i128).checked_mul(10i128.pow(*scale as u32)),
                    RawBsonRef::Int64(v) => (v as i128).checked_mul(10i128.pow(*scale as u32)),
                    _ => None,
                };
                match unscaled {
                    Some(v) => builder.append_value(v),
                    None => reject(self, mismatch("decimal", value)),
                }
            }
            ColumnBuilder::Binary(b) => match value {
                RawBsonRef::Binary(v) => b.append_value(v.bytes),
                other => reject(self, mismatch("binary", other)),
            },
            ColumnBuilder::Timestamp(b) => match value {
                RawBsonRef::DateTime(d) if crate::transform::timestamp::in_lake_range(d.timestamp_millis()) => {
                    b.append_value(d.timestamp_millis())
                }
                RawBsonRef::DateTime(_) => reject(
                    self,
                    "date outside 0001-01-01..9999-12-31, which Athena and Spark cannot read as a timestamp".into(),
                ),
                other => reject(self, mismatch("timestamp", other)),
            },
            ColumnBuilder::Struct { children, nulls, routes, .. } => match value {
                RawBsonRef::Document(_) | RawBsonRef::Timestamp(_) | RawBsonRef::RegularExpression(_) => {
                    self.append_struct(value, &|_, v| Some(v), rejects)?
                }
                other => match routes.elements.iter().find(|(k, _)| Some(*k) == Kind::of_value(other)) {
                    // An array's element of another kind than its fellow documents: its member of that kind.
                    Some(&(_, j)) => {
                        for (c, child) in children.iter_mut().enumerate() {
                            if c == j {
                                child.append(Some(other), rejects)?;
                            } else {
                                child.append_null();
                            }
                        }
                        nulls.append_non_null();
                    }
                    None => reject(self, mismatch("struct", other)),
                },
            },
            ColumnBuilder::List { offsets, nulls, item, .. } => {
                let before = item_len(offsets);
                let first_reject = rejects.len();
                let mut n = 0i32;
                match value {
                    RawBsonRef::Array(arr) => {
                        for v in arr {
                            let v = v.map_err(|e| format!("unreadable array element: {e}"))?;
                            item.append(Some(v), rejects)?;
                            n += 1;
                        }
                    }
                    single => {
                        item.append(Some(single), rejects)?;
                        n = 1;
                    }
                }
                for r in &mut rejects[first_reject..] {
                    r.path = join_path("[]", &r.path);
                }
                offsets.push(before + n);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    /// Appends a top-level document: `prepare` may drop a field (returns None: partition columns live in the
    /// path) or replace its value (timestamp normalisation) before it reaches its column.
    pub fn append_document(
        &mut self,
        doc: &bson::RawDocument,
        prepare: &Prepare,
        rejects: &mut Vec<ValueReject>,
    ) -> Result<(), String> {
        self.append_struct(RawBsonRef::Document(doc), prepare, rejects)
    }

    fn append_struct(
        &mut self,
        value: RawBsonRef<'_>,
        prepare: &Prepare,
        rejects: &mut Vec<ValueReject>,
    ) -> Result<(), String> {
        let ColumnBuilder::Struct { sources, children, nulls, seen, routes, .. } = self else {
            return Err("a document was given to a column that is not a struct (please report)".into());
        };
        seen.iter_mut().for_each(|s| *s = false);
        let whole = match value {
            RawBsonRef::Document(doc) => Some(doc),
            _ => None,
        };
        let mut put = |name: &str, v: RawBsonRef<'_>, hint: usize| -> Result<usize, String> {
            let found = sources
                .get(hint)
                .filter(|s| *s == name && routes.main[hint])
                .map(|_| hint)
                .or_else(|| (0..sources.len()).find(|&k| routes.answers(sources, k, name)));
            let Some(i) = found else {
                rejects.push(ValueReject {
                    path: name.to_string(),
                    reason: "the field is not in the collection's schema (please report: inference missed it)".into(),
                    value: super::text::to_canonical_json(v),
                });
                return Ok(hint);
            };
            // Where the value goes: its column; the column of its spelling when the document holds another
            // spelling with a different value; the variant column of its kind when its column cannot hold it.
            let mut target = i;
            if seen[i] {
                // a repeated field name in one document: the first occurrence wins
                let first =
                    whole.and_then(|doc| doc.iter().flatten().find(|(n, _)| routes.answers(sources, i, n.as_str())));
                match routes.collisions.iter().find(|(m, n, _)| *m == i && n == name) {
                    Some(&(_, _, c)) if first.is_some_and(|(n, f)| n.as_str() != name && f != v) => target = c,
                    _ => return Ok(i + 1),
                }
            } else if !routes.variants[i].is_empty() && !children[i].accepts(v) {
                if let Some(&(_, j)) = routes.variants[i].iter().find(|(k, _)| Some(*k) == Kind::of_value(v)) {
                    // (NULL in the column itself)
                    seen[i] = true;
                    children[i].append_null();
                    target = j;
                }
            }
            if !seen[target] {
                seen[target] = true;
                let first_reject = rejects.len();
                children[target].append(Some(v), rejects)?;
                for r in &mut rejects[first_reject..] {
                    r.path = join_path(name, &r.path);
                }
            }
            Ok(i + 1)
        };
        match value {
            RawBsonRef::Document(doc) => {
                let mut hint = 0;
                for el in doc {
                    let (name, v) = el.map_err(|e| format!("unreadable field: {e}"))?;
                    if let Some(v) = prepare(name.as_str(), v) {
                        hint = put(name.as_str(), v, hint)?;
                    }
                }
            }
            RawBsonRef::Timestamp(t) => {
                put("t", RawBsonRef::Int64(t.time as i64), 0)?;
                put("i", RawBsonRef::Int64(t.increment as i64), 1)?;
            }
            RawBsonRef::RegularExpression(r) => {
                put("pattern", RawBsonRef::String(r.pattern.as_str()), 0)?;
                put("options", RawBsonRef::String(r.options.as_str()), 1)?;
            }
            other => return Err(mismatch("struct", other)),
        }
        for (i, s) in seen.iter().enumerate() {
            if !s {
                children[i].append_null();
            }
        }
        nulls.append_non_null();
        Ok(())
    }

    /// The kind of values this column holds.
    fn kind(&self) -> Kind {
        match self {
            ColumnBuilder::Text(_) | ColumnBuilder::KeyText(_) => Kind::Text,
            ColumnBuilder::Bool(_) => Kind::Bool,
            ColumnBuilder::Int(_) => Kind::Bigint,
            ColumnBuilder::Float(_) => Kind::Double,
            ColumnBuilder::Decimal { .. } => Kind::Decimal,
            ColumnBuilder::Binary(_) => Kind::Binary,
            ColumnBuilder::Timestamp(_) => Kind::Timestamp,
            ColumnBuilder::Struct { .. } => Kind::Struct,
            ColumnBuilder::List { .. } => Kind::Array,
        }
    }

    /// Whether the column holds `v` (the lattice's [`fits`], the rule inference routed values by).
    fn accepts(&self, v: RawBsonRef<'_>) -> bool {
        let item = match self {
            ColumnBuilder::List { item, .. } => Some(item.kind()),
            _ => None,
        };
        fits(self.kind(), item, v)
    }

    /// Finishes the column; the builder is left empty and reusable.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Text(b) | ColumnBuilder::KeyText(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal { builder, precision, scale } => Arc::new(
                builder
                    .finish()
                    .with_precision_and_scale(*precision, *scale as i8)
                    .expect("precision <= 38 by construction"),
            ),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish().with_timezone("UTC")),
            ColumnBuilder::Struct { children, fields, nulls, .. } => {
                let arrays: Vec<ArrayRef> = children.iter_mut().map(ColumnBuilder::finish).collect();
                let len = nulls.len();
                let nulls = nulls.finish();
                if fields.is_empty() {
                    return Arc::new(StructArray::new_empty_fields(len, nulls));
                }
                Arc::new(StructArray::new(fields.clone(), arrays, nulls))
            }
            ColumnBuilder::List { offsets, nulls, item, field } => {
                let values = item.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(field.clone(), offsets, values, nulls.finish()))
            }
        }
    }
}

/// A value that could not be stored in its column (it is null there): the dotted path below the document
/// (`[]` marks an array element), why, and the value as relaxed Extended JSON so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValueReject {
    pub path: String,
    pub reason: String,
    pub value: String,
}

fn join_path(parent: &str, child: &str) -> String {
    if child.is_empty() {
        parent.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

fn item_len(offsets: &[i32]) -> i32 {
    *offsets.last().expect("offsets start at 0")
}

fn mismatch(expected: &str, got: RawBsonRef<'_>) -> String {
    format!("a {:?} value does not fit the {expected} column", got.element_type())
}

/// Looks a top-level field up by its source name (used for keys, timestamps and partition values).
pub fn field_index(fields: &[super::lattice::Field], source: &str) -> Option<usize> {
    find_field(fields, source, 0)
}

/// Reads one value of an Arrow column back into BSON, guided by the lake type the file was written with.
/// Used to merge an existing partition file with new documents; nulls come back as `None` (missing).
pub fn to_bson(array: &dyn Array, row: usize, t: &LakeType) -> Option<bson::Bson> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Decimal128Type, Float64Type, Int64Type, TimestampMillisecondType};
    if array.is_null(row) {
        return None;
    }
    Some(match t {
        LakeType::Null => return None,
        LakeType::String => bson::Bson::String(array.as_string::<i32>().value(row).to_string()),
        LakeType::Struct { fields } if fields.is_empty() => bson::Bson::Document(bson::Document::new()),
        LakeType::Bool => bson::Bson::Boolean(array.as_boolean().value(row)),
        LakeType::Int { .. } => bson::Bson::Int64(array.as_primitive::<Int64Type>().value(row)),
        LakeType::Float => bson::Bson::Double(array.as_primitive::<Float64Type>().value(row)),
        LakeType::Decimal { scale, .. } => {
            bson::Bson::Decimal128(super::decimal::encode(array.as_primitive::<Decimal128Type>().value(row), *scale))
        }
        LakeType::Binary => bson::Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: array.as_binary::<i32>().value(row).to_vec(),
        }),
        LakeType::Timestamp => bson::Bson::DateTime(bson::DateTime::from_millis(
            array.as_primitive::<TimestampMillisecondType>().value(row),
        )),
        LakeType::Struct { fields } => {
            let s = array.as_struct();
            // An array's element that was not a document: its member of that kind, as it was.
            for (i, f) in fields.iter().enumerate() {
                if matches!(f.role, Role::Element { .. }) {
                    if let Some(v) = to_bson(s.column(i).as_ref(), row, &f.ty) {
                        return Some(v);
                    }
                }
            }
            // (a variant column holds its field's value under the field's name, as the document had it)
            let mut doc = bson::Document::new();
            for (i, f) in fields.iter().enumerate() {
                if let Some(v) = to_bson(s.column(i).as_ref(), row, &f.ty) {
                    doc.insert(f.source.clone(), v);
                }
            }
            bson::Bson::Document(doc)
        }
        LakeType::List { item } => {
            let l = array.as_list::<i32>();
            let values = l.value(row);
            bson::Bson::Array(
                (0..values.len()).map(|i| to_bson(values.as_ref(), i, item).unwrap_or(bson::Bson::Null)).collect(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::rawdoc;

    fn build(t: &LakeType, values: &[bson::RawDocumentBuf]) -> ArrayRef {
        let mut b = ColumnBuilder::new(t);
        let mut rejects = Vec::new();
        for d in values {
            b.append(d.get("x").unwrap(), &mut rejects).unwrap();
        }
        assert_eq!(rejects, vec![]);
        b.finish()
    }

    #[test]
    fn a_builder_made_like_another_builds_the_same_columns_and_shares_their_fields() {
        // Mixed shapes: a nested struct, a list of documents, a decimal, a field whose type varies (a variant
        // column), a key of mixed types (the key column stored as text).
        let docs = vec![
            rawdoc! { "_id": 1, "p": { "a": 1, "l": [{ "q": "x" }] }, "v": 1, "d": bson::Decimal128::from_bytes(super::super::decimal::encode(12345, 2).bytes()) },
            rawdoc! { "_id": "k2", "p": bson::RawBson::Null, "v": "text" },
            rawdoc! { "_id": 3, "v": { "deep": true }, "p": { "l": [] } },
        ];
        let mut t = LakeType::empty_struct();
        for d in &docs {
            t.observe(RawBsonRef::Document(d)).unwrap();
        }
        let fill = |mut b: ColumnBuilder| {
            let mut rejects = Vec::new();
            for d in &docs {
                b.append_document(d, &|_: &str, v| Some(v), &mut rejects).unwrap();
            }
            (b.finish(), rejects)
        };
        let template = ColumnBuilder::for_documents(&t, 0).key_column("_id");
        let (want, want_rejects) = fill(ColumnBuilder::for_documents(&t, 3).key_column("_id"));
        let (got, got_rejects) = fill(template.empty_like(3));
        assert_eq!(got.to_data(), want.to_data());
        assert_eq!(got_rejects, want_rejects);
        assert!(
            matches!(template.empty_like(1), ColumnBuilder::Struct { ref children, .. } if matches!(children[0], ColumnBuilder::KeyText(_)))
        );
        // Two builders made like the template share its Arrow fields (no per-file rebuild of the schema).
        let (again, _) = fill(template.empty_like(1));
        let fields = |a: &ArrayRef| a.as_any().downcast_ref::<StructArray>().unwrap().fields().clone();
        assert!(std::ptr::eq(fields(&got).as_ref().as_ptr(), fields(&again).as_ref().as_ptr()));
    }

    #[test]
    fn builds_and_reads_back_nested_values() {
        let docs = vec![
            rawdoc! { "x": { "a": 1, "l": ["p", "q"], "d": bson::Decimal128::from_bytes(super::super::decimal::encode(12345, 2).bytes()) } },
            rawdoc! { "x": bson::RawBson::Null },
            rawdoc! {},
            rawdoc! { "x": { "l": "single" } },
        ];
        let mut t = LakeType::empty_struct();
        for d in &docs {
            t.observe(RawBsonRef::Document(d)).unwrap();
        }
        let LakeType::Struct { fields } = &t else { panic!() };
        let x = &fields[0].ty;
        let arr = build(x, &docs);
        assert_eq!(arr.len(), 4);
        assert_eq!(arr.data_type(), &data_type(x));
        let back = to_bson(arr.as_ref(), 0, x).unwrap();
        let d = back.as_document().unwrap();
        assert_eq!(d.get_i64("a").unwrap(), 1);
        assert_eq!(d.get_array("l").unwrap().len(), 2);
        assert_eq!(d.get("d").unwrap().to_string(), "123.45");
        assert!(to_bson(arr.as_ref(), 1, x).is_none());
        let single = to_bson(arr.as_ref(), 3, x).unwrap();
        assert_eq!(single.as_document().unwrap().get_array("l").unwrap(), &vec![bson::Bson::String("single".into())]);
    }

    #[test]
    fn a_value_that_does_not_fit_is_rejected_with_its_path_not_silently_nulled() {
        let mut t = LakeType::empty_struct();
        let ok = rawdoc! { "v": [{ "when": bson::DateTime::from_millis(0), "n": 1 }] };
        t.observe(RawBsonRef::Document(&ok)).unwrap();
        let mut b = ColumnBuilder::new(&t);
        let mut rejects = Vec::new();
        let far = bson::DateTime::from_millis(300_000_000_000_000);
        let bad = rawdoc! { "v": [{ "when": far, "n": "x" }, { "n": 2 }] };
        b.append_document(&ok, &|_, v| Some(v), &mut rejects).unwrap();
        b.append_document(&bad, &|_, v| Some(v), &mut rejects).unwrap();
        assert_eq!(rejects.len(), 2, "{rejects:?}");
        assert_eq!(rejects[0].path, "v[].when");
        assert!(rejects[0].reason.contains("9999"), "{}", rejects[0].reason);
        assert!(rejects[0].value.contains("300000000000000"), "{}", rejects[0].value);
        assert_eq!(rejects[1].path, "v[].n");
        assert!(rejects[1].reason.contains("int64"));
        let arr = b.finish();
        assert_eq!(arr.len(), 2);
        let back = to_bson(arr.as_ref(), 1, &t).unwrap();
        let v = back.as_document().unwrap().get_array("v").unwrap();
        assert_eq!(v.len(), 2, "the document keeps both elements: {back}");
        assert_eq!(v[1].as_document().unwrap().get_i64("n").unwrap(), 2);
    }
}
