//! The lake type lattice: how every BSON value maps to a column type, and how two types combine.
//!
//! Types only ever widen (`join` is commutative, associative and idempotent), so a type that held yesterday's
//! documents holds today's too, and a value is never silently turned into null. The rules, weakest first:
//!
//! | seen together                               | column becomes                                      |
//! |---------------------------------------------|-----------------------------------------------------|
//! | missing / null / undefined with anything X  | X (nullable)                                        |
//! | int32 with int64                            | int64                                               |
//! | int with double                             | double, if every int has at most 15 digits; else string |
//! | int with decimal128                         | decimal(p,s) wide enough for both, if p <= 38; else string |
//! | decimal128 with double                      | double, if every decimal has at most 15 digits; else string |
//! | X with an array of Y                        | array of (X join Y): a lone value is a 1-element array |
//! | document with document                      | struct with the union of fields (each joined)       |
//! | any other mix of scalars / documents        | string: scalars as text, documents and arrays as relaxed Extended JSON |
//!
//! BSON types map to: double -> double; string, ObjectId (24 hex), symbol, code, MinKey/MaxKey, DBPointer -> string;
//! Date -> timestamp (UTC, ms); Decimal128 -> decimal(p,s) (string when NaN/Infinity or beyond 38 digits);
//! binary -> binary, except UUID subtypes 3/4 -> string (canonical UUID); Timestamp -> struct<t,i>;
//! Regex -> struct<pattern,options>; empty arrays and documents stay "unknown" until a later value says more.
use super::names::{sanitize, unique};
use bson::RawBsonRef;
use serde::{Deserialize, Serialize};

/// Integers whose decimal digits exceed this may not be exact in a double.
pub const F64_EXACT_DIGITS: u8 = 15;
/// Arrow/Parquet/Athena decimal precision limit.
pub const MAX_DECIMAL_DIGITS: u8 = 38;

/// A column's type in the lake. Serialised into the schema registry and into every Parquet file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LakeType {
    /// Only missing/null values (or empty arrays' elements) seen so far.
    Null,
    Bool,
    /// 64-bit integer; `digits` is the most decimal digits seen (for lossless widening to double).
    Int {
        digits: u8,
    },
    Float,
    /// decimal(int_digits + scale, scale).
    Decimal {
        int_digits: u8,
        scale: u8,
    },
    String,
    Binary,
    /// BSON Date: UTC timestamp with millisecond precision.
    Timestamp,
    Struct {
        fields: Vec<Field>,
    },
    List {
        item: Box<LakeType>,
    },
}

/// A named member of a struct (a top-level column or a nested struct member).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Field {
    /// The field name in MongoDB documents.
    pub source: String,
    /// The Athena-safe name in the lake.
    pub column: String,
    #[serde(flatten)]
    pub ty: LakeType,
    /// Other spellings of the field that map to the same column (`Patient Name` beside `patient_name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// What the column holds: the field itself, or values of it that its column's type cannot hold.
    #[serde(default, skip_serializing_if = "Role::is_main")]
    pub role: Role,
    /// Values given to this column by the documents read in this run (the majority rule; not stored).
    #[serde(skip)]
    pub seen: u64,
    /// The column was in the lake before this run (a type in the lake is kept; read from the stored schema).
    #[serde(skip_serializing, default = "established")]
    pub established: bool,
}

fn established() -> bool {
    true
}

/// Equal when they describe the same column (the run's counts aside).
impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        (&self.source, &self.column, &self.ty, &self.aliases, &self.role)
            == (&other.source, &other.column, &other.ty, &other.aliases, &other.role)
    }
}

impl Eq for Field {}

impl Field {
    /// A field first seen in this run.
    pub fn new(source: &str, column: &str, ty: LakeType) -> Field {
        Field {
            source: source.into(),
            column: column.into(),
            ty,
            aliases: Vec::new(),
            role: Role::Main,
            seen: 0,
            established: false,
        }
    }

    /// Whether values of the document field `name` belong to this column.
    pub fn answers_to(&self, name: &str) -> bool {
        self.role.is_main() && (self.source == name || self.aliases.iter().any(|a| a == name))
    }
}

/// What a column holds (see [`Conflicts::Variant`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The field's values (all of them, or those its type holds).
    #[default]
    Main,
    /// The values of the field in column `of` (a sibling) that are of `kind`, which `of`'s type cannot hold:
    /// `amount__v_text` beside `amount`.
    Variant { of: String, kind: Kind },
    /// The elements of an array of documents that are of `kind` (not documents): a member `__v_text` of the
    /// element struct, the element's other members null.
    Element { kind: Kind },
    /// A document that holds two spellings of the field in column `of` with different values: the value of this
    /// spelling (`source`), the other's in `of`.
    Collision { of: String },
}

impl Role {
    pub fn is_main(&self) -> bool {
        matches!(self, Role::Main)
    }
}

/// What a collection does with a value its column's type cannot hold (`[sync] type_conflicts`; stored with each
/// collection's schema, so a lake keeps the policy it was created with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflicts {
    /// The column keeps its type; the value goes to a variant column beside it (`<column>__v_<kind>`). At the
    /// first load, the kind that holds most of a field's values owns its column. The default for new schemas.
    Variant,
    /// The column widens (to text, for mixed kinds) and every partition file is rewritten: the behaviour of
    /// versions before type-stable columns, and of schemas they stored.
    #[default]
    Widen,
}

impl From<crate::config::environment::TypeConflicts> for Conflicts {
    fn from(c: crate::config::environment::TypeConflicts) -> Conflicts {
        match c {
            crate::config::environment::TypeConflicts::Variant => Conflicts::Variant,
            crate::config::environment::TypeConflicts::Widen => Conflicts::Widen,
        }
    }
}

/// The kind of a value or column type, as variant column names spell it (`__v_text`, `__v_bigint`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Bigint,
    Double,
    Decimal,
    Bool,
    Timestamp,
    Binary,
    Struct,
    Array,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Bigint => "bigint",
            Kind::Double => "double",
            Kind::Decimal => "decimal",
            Kind::Bool => "bool",
            Kind::Timestamp => "timestamp",
            Kind::Binary => "binary",
            Kind::Struct => "struct",
            Kind::Array => "array",
        }
    }

    /// The kind of a column type; None while nothing is known.
    pub fn of_type(t: &LakeType) -> Option<Kind> {
        Some(match t {
            LakeType::Null => return None,
            LakeType::Bool => Kind::Bool,
            LakeType::Int { .. } => Kind::Bigint,
            LakeType::Float => Kind::Double,
            LakeType::Decimal { .. } => Kind::Decimal,
            LakeType::String => Kind::Text,
            LakeType::Binary => Kind::Binary,
            LakeType::Timestamp => Kind::Timestamp,
            LakeType::Struct { .. } => Kind::Struct,
            LakeType::List { .. } => Kind::Array,
        })
    }

    /// The kind of a value (the kind of its [`scalar_type`]); None for null. Called for every value read, so
    /// it builds no type: only a Decimal128 is decoded (NaN, infinities and more than 38 digits are text).
    pub fn of_value(v: RawBsonRef<'_>) -> Option<Kind> {
        Some(match v {
            RawBsonRef::Null | RawBsonRef::Undefined => return None,
            RawBsonRef::Document(_) | RawBsonRef::Timestamp(_) | RawBsonRef::RegularExpression(_) => Kind::Struct,
            RawBsonRef::Array(_) => Kind::Array,
            RawBsonRef::Double(_) => Kind::Double,
            RawBsonRef::Int32(_) | RawBsonRef::Int64(_) => Kind::Bigint,
            RawBsonRef::Boolean(_) => Kind::Bool,
            RawBsonRef::DateTime(_) => Kind::Timestamp,
            RawBsonRef::Binary(b) if is_uuid(b.subtype, b.bytes) => Kind::Text,
            RawBsonRef::Binary(_) => Kind::Binary,
            RawBsonRef::Decimal128(_) => return Kind::of_type(&scalar_type(v)),
            _ => Kind::Text,
        })
    }
}

/// Whether a column of kind `kind` holds `v` without changing its type's kind (the rule of type-stable columns;
/// the column builders route values by it too). `item`: a list's element kind (a lone value is a one-element
/// list). Text holds everything (as text); a double holds integers and decimals of at most 15 digits.
pub fn fits(kind: Kind, item: Option<Kind>, v: RawBsonRef<'_>) -> bool {
    let Some(value) = Kind::of_value(v) else { return true };
    match (kind, value) {
        (Kind::Text, _) => true,
        (Kind::Double, Kind::Bigint) => match v {
            RawBsonRef::Int32(_) => true,
            RawBsonRef::Int64(n) => int_digits(n) <= F64_EXACT_DIGITS,
            _ => false,
        },
        // (as the lattice joins them: a decimal of at most 15 digits is exact in a double)
        (Kind::Double, Kind::Decimal) => match scalar_type(v) {
            LakeType::Decimal { int_digits, scale } => int_digits.saturating_add(scale) <= F64_EXACT_DIGITS,
            _ => false,
        },
        (Kind::Decimal, Kind::Bigint) => true,
        (Kind::Array, Kind::Array) => true,
        (Kind::Array, _) => item.is_none_or(|i| fits(i, None, v)),
        (a, b) => a == b,
    }
}

/// How values are observed into a type: the policy, and whether the type was in the lake before this run.
#[derive(Debug, Clone, Copy)]
pub struct Observe {
    pub conflicts: Conflicts,
    pub established: bool,
}

impl Observe {
    /// Today's lattice, for types outside a collection's schema (and schemas of the `widen` policy).
    pub const WIDEN: Observe = Observe { conflicts: Conflicts::Widen, established: false };
}

impl LakeType {
    pub fn empty_struct() -> LakeType {
        LakeType::Struct { fields: Vec::new() }
    }

    /// The least type that holds every value of `self` and of `other`.
    pub fn join(&mut self, other: &LakeType) {
        use LakeType::*;
        // Containers widen in place.
        match (&mut *self, other) {
            (_, Null) => return,
            (List { item }, List { item: o }) => return item.join(o),
            (List { item }, o) => return item.join(o),
            (Struct { fields }, Struct { fields: o }) => {
                for f in o {
                    let i = match &f.role {
                        Role::Main => match find_field(fields, &f.source, 0) {
                            Some(i) => i,
                            None => {
                                push_field(fields, &f.source, Some(&f.column));
                                fields.len() - 1
                            }
                        },
                        role => match fields.iter().position(|g| g.role == *role && g.column == f.column) {
                            Some(i) => i,
                            None => {
                                fields.push(Field { ty: Null, seen: 0, ..f.clone() });
                                fields.len() - 1
                            }
                        },
                    };
                    for a in &f.aliases {
                        if !fields[i].aliases.contains(a) && fields[i].source != *a {
                            fields[i].aliases.push(a.clone());
                        }
                    }
                    fields[i].seen += f.seen;
                    fields[i].ty.join(&f.ty);
                }
                return;
            }
            _ => {}
        }
        let joined = match (&*self, other) {
            (Null, o) => o.clone(),
            (s, List { item: o }) => {
                let mut item = Box::new(s.clone());
                item.join(o);
                List { item }
            }
            (a, b) if a == b => return,
            (Int { digits: a }, Int { digits: b }) => Int { digits: (*a).max(*b) },
            (Int { digits }, Float) | (Float, Int { digits }) => {
                if *digits <= F64_EXACT_DIGITS {
                    Float
                } else {
                    String
                }
            }
            (Int { digits }, Decimal { int_digits, scale }) | (Decimal { int_digits, scale }, Int { digits }) => {
                decimal_or_string((*int_digits).max(*digits), *scale)
            }
            (Decimal { int_digits: a, scale: s }, Decimal { int_digits: b, scale: t }) => {
                decimal_or_string((*a).max(*b), (*s).max(*t))
            }
            (Decimal { int_digits, scale }, Float) | (Float, Decimal { int_digits, scale }) => {
                if int_digits.saturating_add(*scale) <= F64_EXACT_DIGITS {
                    Float
                } else {
                    String
                }
            }
            _ => String,
        };
        *self = joined;
    }

    /// Widens `self` to hold `value` (a value of a document being read), without building a temporary type.
    /// An error means the BSON is unreadable (a truncated element, invalid UTF-8): the caller rejects the whole
    /// document. The type may already have widened for the readable part; that only ever adds room.
    pub fn observe(&mut self, value: RawBsonRef<'_>) -> Result<(), String> {
        self.observe_with(value, Observe::WIDEN)
    }

    /// [`LakeType::observe`] under a collection's policy: with [`Conflicts::Variant`], a member's value that its
    /// column cannot hold goes to a variant column beside it ([`observe_member`]), and an array's element of
    /// another kind than its fellows to a member of the element ([`Role::Element`]).
    pub fn observe_with(&mut self, value: RawBsonRef<'_>, how: Observe) -> Result<(), String> {
        match value {
            RawBsonRef::Document(doc) => {
                if matches!(self, LakeType::Null) {
                    *self = LakeType::empty_struct();
                }
                match self {
                    LakeType::Struct { fields } => {
                        let mut hint = 0;
                        for el in doc.iter() {
                            let (name, v) = el.map_err(|e| format!("unreadable BSON: {e}"))?;
                            let i = find_or_alias(fields, name.as_str(), hint).unwrap_or_else(|| {
                                push_field(fields, name.as_str(), None);
                                fields.len() - 1
                            });
                            hint = i + 1;
                            observe_member(fields, i, name.as_str(), v, doc, how, false)?;
                        }
                    }
                    LakeType::List { item } => observe_element(item, value, how)?,
                    _ => {
                        check_readable(value)?;
                        self.join(&LakeType::empty_struct())
                    }
                }
            }
            RawBsonRef::Array(arr) => {
                if !matches!(self, LakeType::List { .. }) {
                    let mut list = LakeType::List { item: Box::new(LakeType::Null) };
                    list.join(self);
                    *self = list;
                }
                if let LakeType::List { item } = self {
                    for v in arr.into_iter() {
                        observe_element(item, v.map_err(|e| format!("unreadable BSON: {e}"))?, how)?;
                    }
                }
            }
            other => {
                // The usual case once a collection's first documents are seen: a value of the type's own kind,
                // which changes nothing (checked before building and comparing a type for it).
                let unchanged = match (&*self, other) {
                    (LakeType::String, RawBsonRef::String(_) | RawBsonRef::ObjectId(_))
                    | (LakeType::Timestamp, RawBsonRef::DateTime(_))
                    | (LakeType::Float, RawBsonRef::Double(_))
                    | (LakeType::Bool, RawBsonRef::Boolean(_)) => true,
                    (LakeType::Int { digits }, RawBsonRef::Int32(v)) => int_digits(i64::from(v)) <= *digits,
                    (LakeType::Int { digits }, RawBsonRef::Int64(v)) => int_digits(v) <= *digits,
                    _ => false,
                };
                if unchanged {
                    return Ok(());
                }
                if let LakeType::List { item } = self {
                    return observe_element(item, other, how);
                }
                let t = scalar_type(other);
                match (&mut *self, &t) {
                    (a, b) if a == b => {}
                    (LakeType::Int { digits }, LakeType::Int { digits: d }) => *digits = (*digits).max(*d),
                    _ => self.join(&t),
                }
            }
        }
        Ok(())
    }

    /// True when no value has told us anything yet (Null, or a struct of such).
    pub fn is_unknown(&self) -> bool {
        matches!(self, LakeType::Null)
    }
}

/// Walks a value whose type is already string (so its members need no observing) to find unreadable BSON.
pub fn check_readable(value: RawBsonRef<'_>) -> Result<(), String> {
    let walk = |v: Result<RawBsonRef<'_>, bson::error::Error>| {
        v.map_err(|e| format!("unreadable BSON: {e}")).and_then(check_readable)
    };
    match value {
        RawBsonRef::Document(d) => d.iter().try_for_each(|el| walk(el.map(|(_, v)| v))),
        RawBsonRef::Array(a) => a.into_iter().try_for_each(walk),
        _ => Ok(()),
    }
}

fn decimal_or_string(int_digits: u8, scale: u8) -> LakeType {
    if int_digits.saturating_add(scale) <= MAX_DECIMAL_DIGITS {
        LakeType::Decimal { int_digits, scale }
    } else {
        LakeType::String
    }
}

/// Finds a field by source name, trying `hint` first (documents usually repeat the same field order).
/// Finds the column of document field `source` (its own or one of its spellings: [`Field::answers_to`]), trying
/// `hint` first (documents usually repeat the same field order).
pub fn find_field(fields: &[Field], source: &str, hint: usize) -> Option<usize> {
    if fields.get(hint).is_some_and(|f| f.answers_to(source)) {
        return Some(hint);
    }
    fields.iter().position(|f| f.answers_to(source))
}

/// [`find_field`], or, for a field not seen before whose name maps to an existing column's name (`Patient Name`
/// and `patient_name`, `LabCode` and `labCode`: Athena's names are case-insensitive), that column, which takes
/// the spelling as an alias: one column per field, whatever its spelling.
pub fn find_or_alias(fields: &mut [Field], source: &str, hint: usize) -> Option<usize> {
    if let Some(i) = find_field(fields, source, hint) {
        return Some(i);
    }
    let base = sanitize(source);
    let i = fields.iter().position(|f| f.role.is_main() && f.column == base)?;
    fields[i].aliases.push(source.to_string());
    Some(i)
}

/// Returns the field for `source`, adding it (with a unique column name) when new.
pub fn struct_field<'a>(fields: &'a mut Vec<Field>, source: &str, preferred: Option<&str>) -> &'a mut LakeType {
    let i = match find_field(fields, source, 0) {
        Some(i) => i,
        None => {
            push_field(fields, source, preferred);
            fields.len() - 1
        }
    };
    &mut fields[i].ty
}

fn push_field(fields: &mut Vec<Field>, source: &str, preferred: Option<&str>) {
    let base = match preferred {
        Some(p) if !fields.iter().any(|f| f.column == p) => p.to_string(),
        _ => sanitize(source),
    };
    let column = unique(&base, |c| fields.iter().any(|f| f.column == c));
    fields.push(Field::new(source, &column, LakeType::Null));
}

/// Observes value `v` of document field `name` (in `doc`) into column `i` of `fields` or, under the
/// [`Conflicts::Variant`] policy, into the column beside it that takes what `i`'s type cannot hold:
/// - a document holding two spellings of the field with different values: the second into its
///   [`Role::Collision`] column (`patient_name_1`);
/// - a column in the lake before this run: a value that does not [`fits`] its kind goes to the variant column
///   of the value's kind (`amount__v_text`), created when first needed;
/// - a column new in this run: where today's lattice would fall back to text for a mix of kinds (integers and
///   text, documents and text, ...), each kind's values go to a column of their own, and at the end of the read
///   the kind holding most values owns the column ([`resolve_majorities`]).
///
/// `exempt`: the field keeps today's lattice whatever the policy (the key: a key column never splits).
pub fn observe_member(
    fields: &mut Vec<Field>,
    i: usize,
    name: &str,
    v: RawBsonRef<'_>,
    doc: &bson::RawDocument,
    how: Observe,
    exempt: bool,
) -> Result<(), String> {
    let i = if fields[i].aliases.is_empty() { i } else { collision_target(fields, i, name, v, doc) };
    let j = if how.conflicts == Conflicts::Variant && !exempt && fields[i].role.is_main() {
        variant_target(fields, i, v)
    } else {
        i
    };
    let f = &mut fields[j];
    f.seen += 1;
    let how = Observe { established: f.established, ..how };
    f.ty.observe_with(v, how)
}

/// The first occurrence in `doc` of a field answering to column `i`, when it is not `name` itself.
pub fn other_spelling<'a>(field: &Field, name: &str, doc: &'a bson::RawDocument) -> Option<RawBsonRef<'a>> {
    doc.iter().flatten().find(|(n, _)| field.answers_to(n.as_str())).filter(|(n, _)| n.as_str() != name).map(|(_, v)| v)
}

fn collision_target(
    fields: &mut Vec<Field>,
    i: usize,
    name: &str,
    v: RawBsonRef<'_>,
    doc: &bson::RawDocument,
) -> usize {
    match other_spelling(&fields[i], name, doc) {
        Some(first) if first != v => {}
        _ => return i,
    }
    let of = fields[i].column.clone();
    if let Some(j) = fields.iter().position(|f| f.source == name && f.role == Role::Collision { of: of.clone() }) {
        return j;
    }
    let column = unique(&of, |c| fields.iter().any(|f| f.column == c));
    let mut f = Field::new(name, &column, LakeType::Null);
    f.role = Role::Collision { of };
    fields.push(f);
    fields.len() - 1
}

fn variant_target(fields: &mut Vec<Field>, i: usize, v: RawBsonRef<'_>) -> usize {
    let f = &fields[i];
    let (Some(vk), Some(tk)) = (Kind::of_value(v), Kind::of_type(&f.ty)) else { return i };
    if vk == tk {
        return i;
    }
    let conflict = if f.established {
        let item = match &f.ty {
            LakeType::List { item } => Kind::of_type(item),
            _ => None,
        };
        !fits(tk, item, v)
    } else {
        match (tk, vk) {
            // Arrays join their elements (a lone value is a one-element array): element level, not here.
            (Kind::Array, _) | (_, Kind::Array) => false,
            // Text with anything else: a mix, decided by the majority.
            (Kind::Text, _) | (_, Kind::Text) => true,
            // Numbers widen as the lattice says, unless it falls back to text (too many digits).
            (Kind::Bigint | Kind::Double | Kind::Decimal, Kind::Bigint | Kind::Double | Kind::Decimal) => {
                let mut t = f.ty.clone();
                t.observe(v).is_ok() && t == LakeType::String
            }
            _ => true,
        }
    };
    if !conflict {
        return i;
    }
    let of = f.column.clone();
    let source = f.source.clone();
    let role = Role::Variant { of: of.clone(), kind: vk };
    if let Some(j) = fields.iter().position(|g| g.role == role) {
        return j;
    }
    let column = unique(&format!("{of}__v_{}", vk.name()), |c| fields.iter().any(|g| g.column == c));
    let mut nf = Field::new(&source, &column, LakeType::Null);
    nf.role = role;
    fields.push(nf);
    fields.len() - 1
}

/// Observes one element of an array into the element type `item`. Under [`Conflicts::Variant`], documents own
/// the elements of an array that mixes them with other values: an element of another kind goes to the element
/// struct's member `__v_<kind>` ([`Role::Element`]), every element staying an element (the BI views give one
/// row per element). Elements of scalar kinds only join as the lattice says (text for a mix).
fn observe_element(item: &mut LakeType, v: RawBsonRef<'_>, how: Observe) -> Result<(), String> {
    if how.conflicts == Conflicts::Variant {
        match (Kind::of_type(item), Kind::of_value(v)) {
            (Some(Kind::Struct), Some(k)) if k != Kind::Struct => {
                let LakeType::Struct { fields } = item else { unreachable!("a struct kind") };
                let role = Role::Element { kind: k };
                let j = match fields.iter().position(|f| f.role == role) {
                    Some(j) => j,
                    None => {
                        let column = unique(&format!("__v_{}", k.name()), |c| fields.iter().any(|f| f.column == c));
                        let mut f = Field::new("", &column, LakeType::Null);
                        f.role = role;
                        fields.push(f);
                        fields.len() - 1
                    }
                };
                let member = &mut fields[j];
                member.seen += 1;
                let how = Observe { established: member.established, ..how };
                return member.ty.observe_with(v, how);
            }
            (Some(k), Some(Kind::Struct)) if k != Kind::Struct && k != Kind::Array && !how.established => {
                // The scalars seen so far become the elements' `__v_<kind>` member; the document joins.
                let old = std::mem::replace(item, LakeType::empty_struct());
                let mut f = Field::new("", &format!("__v_{}", k.name()), old);
                f.role = Role::Element { kind: k };
                if let LakeType::Struct { fields } = item {
                    fields.push(f);
                }
            }
            _ => {}
        }
    }
    item.observe_with(v, how)
}

/// At the end of a read under [`Conflicts::Variant`]: for every column new in this run whose values were split
/// by kind, the kind holding most of them owns the column (`age` bigint and `age__v_text` when 90% are
/// integers); a text column takes every value (as text) and needs no variant.
pub fn resolve_majorities(t: &mut LakeType) {
    let fields = match t {
        LakeType::Struct { fields } => fields,
        LakeType::List { item } => return resolve_majorities(item),
        _ => return,
    };
    for f in fields.iter_mut() {
        resolve_majorities(&mut f.ty);
    }
    let mut drop: Vec<String> = Vec::new();
    for i in 0..fields.len() {
        if !fields[i].role.is_main() || fields[i].established {
            continue;
        }
        let of = fields[i].column.clone();
        let is_variant = |f: &Field| matches!(&f.role, Role::Variant { of: o, .. } if *o == of);
        let best = (0..fields.len()).filter(|&j| is_variant(&fields[j])).max_by_key(|&j| (fields[j].seen, j));
        let Some(best) = best else { continue };
        if fields[best].seen > fields[i].seen && !fields[best].established {
            let kind = Kind::of_type(&fields[i].ty).unwrap_or(Kind::Text);
            let (a, b) = (fields[i].ty.clone(), fields[i].seen);
            fields[i].ty = std::mem::replace(&mut fields[best].ty, a);
            fields[i].seen = std::mem::replace(&mut fields[best].seen, b);
            let own = fields[best].column.clone();
            fields[best].column =
                unique(&format!("{of}__v_{}", kind.name()), |c| c != own && fields.iter().any(|f| f.column == c));
            fields[best].role = Role::Variant { of: of.clone(), kind };
        }
        if Kind::of_type(&fields[i].ty) == Some(Kind::Text) {
            drop.extend(fields.iter().filter(|f| is_variant(f) && !f.established).map(|f| f.column.clone()));
        }
    }
    fields.retain(|f| !(matches!(&f.role, Role::Variant { .. }) && drop.contains(&f.column)));
}

/// The type of one non-container BSON value.
pub fn scalar_type(value: RawBsonRef<'_>) -> LakeType {
    match value {
        RawBsonRef::Double(_) => LakeType::Float,
        RawBsonRef::Int32(v) => LakeType::Int { digits: int_digits(v as i64) },
        RawBsonRef::Int64(v) => LakeType::Int { digits: int_digits(v) },
        RawBsonRef::Boolean(_) => LakeType::Bool,
        RawBsonRef::DateTime(_) => LakeType::Timestamp,
        RawBsonRef::Null | RawBsonRef::Undefined => LakeType::Null,
        RawBsonRef::Decimal128(d) => match super::decimal::decode(&d) {
            super::decimal::Decoded::Finite { coefficient, exponent, .. } => {
                let digits = super::decimal::digits(coefficient) as i32;
                let scale = (-exponent).max(0);
                let int_digits = (digits + exponent).max(0);
                if scale + int_digits > MAX_DECIMAL_DIGITS as i32 {
                    LakeType::String
                } else {
                    LakeType::Decimal { int_digits: int_digits as u8, scale: scale as u8 }
                }
            }
            _ => LakeType::String,
        },
        RawBsonRef::Binary(b) if is_uuid(b.subtype, b.bytes) => LakeType::String,
        RawBsonRef::Binary(_) => LakeType::Binary,
        RawBsonRef::Timestamp(_) => LakeType::Struct {
            fields: vec![
                Field::new("t", "t", LakeType::Int { digits: 10 }),
                Field::new("i", "i", LakeType::Int { digits: 10 }),
            ],
        },
        RawBsonRef::RegularExpression(_) => LakeType::Struct {
            fields: vec![
                Field::new("pattern", "pattern", LakeType::String),
                Field::new("options", "options", LakeType::String),
            ],
        },
        RawBsonRef::Document(_) => LakeType::empty_struct(),
        RawBsonRef::Array(_) => LakeType::List { item: Box::new(LakeType::Null) },
        _ => LakeType::String,
    }
}

/// UUIDs (subtype 4, and the legacy subtype 3) of 16 bytes are stored as their canonical text.
pub fn is_uuid(subtype: bson::spec::BinarySubtype, bytes: &[u8]) -> bool {
    use bson::spec::BinarySubtype::{Uuid, UuidOld};
    matches!(subtype, Uuid | UuidOld) && bytes.len() == 16
}

pub fn int_digits(v: i64) -> u8 {
    let mut n = v.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::LakeType::*;
    use super::*;
    use bson::{doc, rawdoc};

    fn of(doc: bson::RawDocumentBuf) -> LakeType {
        let mut t = LakeType::empty_struct();
        t.observe(RawBsonRef::Document(&doc)).unwrap();
        t
    }
    fn field<'a>(t: &'a LakeType, name: &str) -> &'a LakeType {
        let LakeType::Struct { fields } = t else { panic!("not a struct: {t:?}") };
        &fields.iter().find(|f| f.source == name).unwrap_or_else(|| panic!("no {name} in {t:?}")).ty
    }
    fn observe_all(values: Vec<bson::Bson>) -> LakeType {
        let mut t = LakeType::empty_struct();
        for v in values {
            let raw = bson::RawDocumentBuf::try_from(&doc! { "x": v }).unwrap();
            t.observe(RawBsonRef::Document(&raw)).unwrap();
        }
        field(&t, "x").clone()
    }

    #[test]
    fn the_kind_of_a_value_is_the_kind_of_its_type() {
        let d = doc! {
            "a": 1.5, "b": "s", "c": 1, "d": 2i64, "e": true, "f": bson::DateTime::from_millis(0), "g": bson::Bson::Null,
            "h": { "x": 1 }, "i": [1], "j": bson::Timestamp { time: 1, increment: 2 }, "l": bson::oid::ObjectId::new(),
            "m": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2] },
            "n": bson::Uuid::new(), "o": "1.25".parse::<bson::Decimal128>().unwrap(),
            "p": "NaN".parse::<bson::Decimal128>().unwrap(), "q": bson::Bson::MinKey,
        };
        let d = bson::RawDocumentBuf::try_from(&d).unwrap();
        for el in d.iter() {
            let (name, v) = el.unwrap();
            let want = match v {
                RawBsonRef::Null => None,
                RawBsonRef::Document(_) => Some(Kind::Struct),
                RawBsonRef::Array(_) => Some(Kind::Array),
                other => Kind::of_type(&scalar_type(other)),
            };
            assert_eq!(Kind::of_value(v), want, "{name}");
        }
    }

    #[test]
    fn numeric_rules() {
        assert_eq!(observe_all(vec![1i32.into(), 2i64.into()]), Int { digits: 1 });
        assert_eq!(observe_all(vec![1i32.into(), 2.5f64.into()]), Float);
        assert_eq!(observe_all(vec![9_007_199_254_740_993i64.into(), 2.5f64.into()]), String);
        let dec = |s: &str| bson::Bson::Decimal128(s.parse().unwrap());
        assert_eq!(observe_all(vec![dec("1234.50"), 7i32.into()]), Decimal { int_digits: 4, scale: 2 });
        assert_eq!(observe_all(vec![dec("1234.50"), 1.5f64.into()]), Float);
        assert_eq!(observe_all(vec![dec("12345678901234567.5"), 1.5f64.into()]), String);
        assert_eq!(observe_all(vec![dec("NaN")]), String);
        assert_eq!(observe_all(vec![dec("1E+40")]), String);
    }

    #[test]
    fn mixed_kinds_widen_to_string_or_list() {
        assert_eq!(observe_all(vec![42i32.into(), "42 years".into()]), String);
        assert_eq!(observe_all(vec![true.into(), 1i32.into()]), String);
        assert_eq!(observe_all(vec![bson::Bson::Null, 1i32.into()]), Int { digits: 1 });
        assert_eq!(observe_all(vec!["a".into(), bson::bson!(["b"])]), List { item: Box::new(String) });
        assert_eq!(observe_all(vec![bson::bson!(["a"]), bson::bson!([{"s": 1}])]), List { item: Box::new(String) });
        let t = observe_all(vec![bson::bson!({"a": 1}), bson::bson!([{"b": "x"}])]);
        let List { item } = t else { panic!() };
        assert_eq!(field(&item, "a"), &Int { digits: 1 });
        assert_eq!(field(&item, "b"), &String);
        assert_eq!(observe_all(vec![bson::bson!({"a": 1}), 3i32.into()]), String);
        assert_eq!(
            observe_all(vec![bson::bson!([]), bson::bson!([[1]])]),
            List { item: Box::new(List { item: Box::new(Int { digits: 1 }) }) }
        );
    }

    #[test]
    fn bson_types() {
        let oid = bson::oid::ObjectId::new();
        let t = of(bson::RawDocumentBuf::try_from(&doc! {
            "_id": oid, "d": bson::DateTime::from_millis(0), "u": bson::Binary { subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![0; 16] },
            "b": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1] },
            "ts": bson::Timestamp { time: 1, increment: 2 }, "re": bson::Regex { pattern: "^a".to_string().try_into().unwrap(), options: "i".to_string().try_into().unwrap() },
            "e": {}, "n": bson::Bson::Null, "mk": bson::Bson::MinKey,
        }).unwrap());
        assert_eq!(field(&t, "_id"), &String);
        assert_eq!(field(&t, "d"), &Timestamp);
        assert_eq!(field(&t, "u"), &String);
        assert_eq!(field(&t, "b"), &Binary);
        assert_eq!(field(field(&t, "ts"), "t"), &Int { digits: 10 });
        assert_eq!(field(field(&t, "re"), "options"), &String);
        assert_eq!(field(&t, "e"), &LakeType::empty_struct());
        assert_eq!(field(&t, "n"), &Null);
        assert_eq!(field(&t, "mk"), &String);
    }

    #[test]
    fn names_are_unique_and_stable() {
        let t = of(rawdoc! { "Name": 1, "name": "x", "Patient Name": "p" });
        let LakeType::Struct { fields } = &t else { panic!() };
        let cols: Vec<_> = fields.iter().map(|f| (f.source.as_str(), f.column.as_str())).collect();
        assert_eq!(cols, vec![("Name", "name"), ("name", "name_1"), ("Patient Name", "patient_name")]);
    }

    #[test]
    fn join_is_commutative_on_samples() {
        let samples = vec![
            Null,
            Bool,
            Int { digits: 3 },
            Int { digits: 17 },
            Float,
            Decimal { int_digits: 4, scale: 2 },
            String,
            Timestamp,
            LakeType::empty_struct(),
            List { item: Box::new(Float) },
        ];
        for a in &samples {
            for b in &samples {
                let mut ab = a.clone();
                ab.join(b);
                let mut ba = b.clone();
                ba.join(a);
                assert_eq!(ab, ba, "{a:?} join {b:?}");
                let mut again = ab.clone();
                again.join(b);
                assert_eq!(again, ab, "idempotent");
            }
        }
    }
}
