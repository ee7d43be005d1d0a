//! Hive type names (what Athena DDL and the Glue catalog call column types) for lake types.
//!
//! Each name must describe exactly what the Parquet files hold, as [`crate::schema::arrow::data_type`] writes
//! it: Athena fails a query on a declared type the file's physical type cannot be read as, and silently
//! misreads some others (a `timestamp` declared over microseconds). The correspondence:
//!
//! | lake type                       | Arrow / Parquet                       | Hive name          |
//! |---------------------------------|---------------------------------------|--------------------|
//! | null (nothing seen yet), `{}`   | Utf8                                  | `string`           |
//! | bool                            | Boolean                               | `boolean`          |
//! | int                             | Int64                                 | `bigint`           |
//! | float                           | Float64                               | `double`           |
//! | decimal(int_digits, scale)      | Decimal128(max(1, int+scale), scale)  | `decimal(p,s)`     |
//! | string                          | Utf8                                  | `string`           |
//! | binary                          | Binary                                | `binary`           |
//! | timestamp                       | Timestamp(ms, UTC)                    | `timestamp`        |
//! | struct                          | Struct                                | `struct<a:t,...>`  |
//! | list                            | List (item `element`)                 | `array<t>`         |
use crate::schema::LakeType;

/// Whether identifiers inside the type (struct member names) are backtick-quoted: yes in DDL text, where a
/// member called `date` or `timestamp` would otherwise be a keyword; no in the Glue catalog, which stores names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    Ddl,
    Catalog,
}

/// The Hive type name of a lake type.
pub fn hive_type(t: &LakeType, quoting: Quoting) -> String {
    match t {
        LakeType::Null | LakeType::String => "string".into(),
        LakeType::Struct { fields } if fields.is_empty() => "string".into(),
        LakeType::Bool => "boolean".into(),
        LakeType::Int { .. } => "bigint".into(),
        LakeType::Float => "double".into(),
        LakeType::Decimal { int_digits, scale } => format!("decimal({},{scale})", (int_digits + scale).max(1)),
        LakeType::Binary => "binary".into(),
        LakeType::Timestamp => "timestamp".into(),
        LakeType::Struct { fields } => {
            let members: Vec<String> = fields
                .iter()
                .map(|f| {
                    let name = match quoting {
                        Quoting::Ddl => quote_ident(&f.column),
                        Quoting::Catalog => f.column.clone(),
                    };
                    format!("{name}:{}", hive_type(&f.ty, quoting))
                })
                .collect();
            format!("struct<{}>", members.join(","))
        }
        LakeType::List { item } => format!("array<{}>", hive_type(item, quoting)),
    }
}

/// A backtick-quoted identifier (a backtick inside is doubled, as Hive and Spark read it).
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A single-quoted Hive string literal (backslash escapes, as Hive's DDL parser reads them).
pub fn quote_str(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::arrow::data_type;
    use crate::schema::Field;
    use arrow::datatypes::{DataType, TimeUnit};

    fn f(name: &str, ty: LakeType) -> Field {
        Field::new(name, name, ty)
    }

    #[test]
    fn scalar_names() {
        let cases = [
            (LakeType::Null, "string"),
            (LakeType::Bool, "boolean"),
            (LakeType::Int { digits: 3 }, "bigint"),
            (LakeType::Float, "double"),
            (LakeType::Decimal { int_digits: 4, scale: 2 }, "decimal(6,2)"),
            (LakeType::Decimal { int_digits: 0, scale: 0 }, "decimal(1,0)"),
            (LakeType::Decimal { int_digits: 0, scale: 5 }, "decimal(5,5)"),
            (LakeType::String, "string"),
            (LakeType::Binary, "binary"),
            (LakeType::Timestamp, "timestamp"),
            (LakeType::empty_struct(), "string"),
        ];
        for (t, want) in cases {
            assert_eq!(hive_type(&t, Quoting::Ddl), want, "{t:?}");
        }
    }

    #[test]
    fn nested_types_quote_members_in_ddl_only() {
        let t = LakeType::Struct {
            fields: vec![
                f("date", LakeType::Timestamp),
                f(
                    "vitals",
                    LakeType::Struct { fields: vec![f("spo2", LakeType::Float), f("e", LakeType::empty_struct())] },
                ),
                f(
                    "items",
                    LakeType::List {
                        item: Box::new(LakeType::Struct {
                            fields: vec![f("amount", LakeType::Decimal { int_digits: 10, scale: 2 })],
                        }),
                    },
                ),
                f("tags", LakeType::List { item: Box::new(LakeType::List { item: Box::new(LakeType::Null) }) }),
            ],
        };
        assert_eq!(
            hive_type(&t, Quoting::Ddl),
            "struct<`date`:timestamp,`vitals`:struct<`spo2`:double,`e`:string>,\
             `items`:array<struct<`amount`:decimal(12,2)>>,`tags`:array<array<string>>>"
        );
        assert_eq!(
            hive_type(&t, Quoting::Catalog),
            "struct<date:timestamp,vitals:struct<spo2:double,e:string>,items:array<struct<amount:decimal(12,2)>>,\
             tags:array<array<string>>>"
        );
    }

    #[test]
    fn names_agree_with_the_arrow_types_written() {
        // The Hive name of every lake type describes the Arrow type the files are written with.
        let hive_of = |dt: &DataType| -> String {
            match dt {
                DataType::Utf8 => "string".into(),
                DataType::Boolean => "boolean".into(),
                DataType::Int64 => "bigint".into(),
                DataType::Float64 => "double".into(),
                DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
                DataType::Binary => "binary".into(),
                DataType::Timestamp(TimeUnit::Millisecond, Some(tz)) if tz.as_ref() == "UTC" => "timestamp".into(),
                other => panic!("the lake writes {other:?}, which has no Hive name here"),
            }
        };
        for t in [
            LakeType::Null,
            LakeType::Bool,
            LakeType::Int { digits: 19 },
            LakeType::Float,
            LakeType::Decimal { int_digits: 30, scale: 8 },
            LakeType::Decimal { int_digits: 0, scale: 0 },
            LakeType::String,
            LakeType::Binary,
            LakeType::Timestamp,
            LakeType::empty_struct(),
        ] {
            assert_eq!(hive_type(&t, Quoting::Catalog), hive_of(&data_type(&t)), "{t:?}");
        }
    }

    #[test]
    fn literals_and_identifiers_are_escaped() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_str(r"it's C:\x"), r"'it\'s C:\\x'");
    }
}
