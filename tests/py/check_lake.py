#!/usr/bin/env python3
"""Independent checker/reader of a mongolake lake (pyarrow only; shares no code with mongolake).

Usage: python3 tests/py/check_lake.py LAKE_ROOT [--table db/coll] [--summary] [--dump]

LAKE_ROOT is a local directory or s3://bucket/prefix (S3 endpoint from MONGOLAKE_TEST_S3_ENDPOINT,
credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, default "test").

A table is every directory <root>/<db>/<coll>/ (anything under <root>/_mongolake/ is ignored).
Files whose name starts with "." or "_" are hidden, as Hive/Athena hide them. Checks, per table:
  - every directory between the table and a file is a Hive partition "key=value", and all files of a
    table have the same partition keys in the same order;
  - every file Athena would read is a .parquet file that pyarrow can open;
  - exactly one .parquet file per leaf partition directory;
  - all files agree on every column's type: a strict per-column comparison (null vs int64 fails too)
    plus pyarrow.unify_schemas over all file schemas; a failure names the table, the column and the
    two files;
  - no column is named like a partition key of its file's path, and no two columns of a file differ only
    by letter case (Athena folds names to lower case);
  - no TIMESTAMP(NANOS) column (Spark/Athena reject or mangle it).
Exit 0 when every check passes, 1 with one line per problem on stderr otherwise, 2 on bad usage.

--dump prints ONE JSON object on stdout:
  {"tables": {"db/coll": {"files": N, "partitions": [sorted "k=v/k2=v2" paths; [] if unpartitioned],
   "columns": {name: arrow type string}, "rows": [rows sorted by _id]}}}
  Each row carries its partition keys (values from the path, URL-decoded, as strings;
  __HIVE_DEFAULT_PARTITION__ becomes null). Timestamps become ISO-8601 strings ending in Z with the
  column's precision (3 digits for ms, 6 for us), dates "YYYY-MM-DD", bytes base64, decimals str,
  UUIDs str, NaN/inf floats "NaN"/"Infinity"/"-Infinity", maps objects (or [key, value] pairs when
  keys are not strings).
--summary prints a human-readable table per collection on stdout.
"""
import argparse
import base64
import datetime as dt
import decimal
import json
import math
import os
import sys
import urllib.parse
import uuid

try:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover
    sys.exit("check_lake: pyarrow is not installed (run scripts/install-tools.sh)")

STATE_DIR = "_mongolake"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
EPOCH = dt.datetime(1970, 1, 1)
UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


class Lake:
    """A filesystem plus the base path of the lake inside it; display paths are relative to the root."""

    def __init__(self, root):
        self.root = root
        if root.startswith("s3://"):
            endpoint = os.environ.get("MONGOLAKE_TEST_S3_ENDPOINT", "")
            kwargs = dict(
                access_key=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
                region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            )
            if endpoint:
                parsed = urllib.parse.urlparse(endpoint if "://" in endpoint else "http://" + endpoint)
                kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "http")
            self.fs = pafs.S3FileSystem(**kwargs)
            self.base = root[len("s3://"):].strip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            self.base = os.path.abspath(root).rstrip("/") or "/"

    def list(self):
        """All entries under the base: [(relative path, is_file)]."""
        if self.root.startswith("s3://"):
            bucket = self.base.split("/", 1)[0]
            if not bucket or self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"bucket '{bucket}' does not exist")
            sel = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        else:
            if not os.path.isdir(self.base):
                raise FileNotFoundError(f"lake root {self.root} is not a directory")
            sel = pafs.FileSelector(self.base, recursive=True)
        out = []
        for info in self.fs.get_file_info(sel):
            rel = info.path[len(self.base):].lstrip("/")
            if rel:
                out.append((rel, info.type == pafs.FileType.File))
        return out

    def path(self, rel):
        return f"{self.base}/{rel}"

    def parquet(self, rel):
        return pq.ParquetFile(self.fs.open_input_file(self.path(rel)))


def hidden(name):
    return name.startswith(".") or name.startswith("_")


class Table:
    def __init__(self, name):
        self.name = name  # "db/coll"
        self.files = []  # rel paths of visible .parquet files, sorted
        self.parts = {}  # rel file path -> [(key, value)] from its directories
        self.schemas = {}  # rel file path -> pa.Schema
        self.num_rows = {}  # rel file path -> int
        self.empty_dirs = []


def discover(lake, errors):
    """Groups the lake's entries into tables and checks the layout. Returns {name: Table}."""
    tables = {}
    dirs = set()  # directories below table level
    parents = set()  # directories that have an entry inside
    for rel, is_file in sorted(lake.list()):
        parts = rel.split("/")
        parents.add(rel.rsplit("/", 1)[0] if "/" in rel else "")
        if parts[0] == STATE_DIR:
            continue
        if len(parts) == 1:
            if is_file and not hidden(parts[0]):
                errors.append(f"{rel}: file directly in the lake root (expected <db>/<coll>/...)")
            continue
        if len(parts) == 2 and is_file:
            if not hidden(parts[1]):
                errors.append(f"{rel}: file directly in a database directory (expected <db>/<coll>/...)")
            continue
        name = "/".join(parts[:2])
        table = tables.setdefault(name, Table(name))
        if not is_file:
            if len(parts) > 2:
                dirs.add(rel)
            continue
        if any(hidden(p) for p in parts[2:]):
            continue  # Athena skips hidden files and everything under hidden directories
        if not parts[-1].endswith(".parquet"):
            errors.append(f"table {name}: {rel} is not a .parquet file but Athena would read it")
            continue
        kv = []
        for d in parts[2:-1]:
            if "=" not in d or d.startswith("="):
                errors.append(f"table {name}: {rel}: directory '{d}' is not a Hive partition 'key=value'")
                kv = None
                break
            k, v = d.split("=", 1)
            kv.append((k, v))
        if kv is None:
            continue
        table.files.append(rel)
        table.parts[rel] = kv
    for rel in sorted(dirs - parents):
        parts = rel.split("/")
        if not any(hidden(p) for p in parts):
            tables["/".join(parts[:2])].empty_dirs.append(rel)
    return tables


def check_table(lake, t, errors):
    n0 = len(errors)
    # Same partition keys everywhere, one file per leaf directory.
    keysets = {}
    per_dir = {}
    for f in t.files:
        keysets.setdefault(tuple(k for k, _ in t.parts[f]), f)
        per_dir.setdefault(f.rsplit("/", 1)[0], []).append(f)
    if len(keysets) > 1:
        (k1, f1), (k2, f2) = list(keysets.items())[:2]
        errors.append(
            f"table {t.name}: partition keys differ between files: {list(k1) or 'none'} in {f1} "
            f"vs {list(k2) or 'none'} in {f2}"
        )
    for d, fs in sorted(per_dir.items()):
        if len(fs) != 1:
            errors.append(f"table {t.name}: {len(fs)} .parquet files in partition {d}/ (expected 1): "
                          + ", ".join(x.rsplit('/', 1)[1] for x in fs))
    for d in t.empty_dirs:
        print(f"check_lake: warning: table {t.name}: empty directory {d}/", file=sys.stderr)
    # Schemas.
    for f in t.files:
        try:
            pf = lake.parquet(f)
            t.schemas[f] = pf.schema_arrow
            t.num_rows[f] = pf.metadata.num_rows
        except Exception as e:  # noqa: BLE001
            errors.append(f"table {t.name}: cannot read {f} as parquet: {e}")
    for f, schema in t.schemas.items():
        keys = {k.lower() for k, _ in t.parts[f]}
        seen = {}
        for field in schema:
            low = field.name.lower()
            if low in keys:
                errors.append(f"table {t.name}: column '{field.name}' of {f} is also a partition key of its path")
            if low in seen:
                errors.append(f"table {t.name}: columns '{seen[low]}' and '{field.name}' of {f} differ only "
                              f"by case (Athena sees one name)")
            seen[low] = field.name
            if has_nanos(field.type):
                errors.append(f"table {t.name}: column '{field.name}' of {f} is {field.type}: "
                              f"TIMESTAMP(NANOS) is not Athena/Spark-safe (use ms or us)")
    first = {}  # column -> (type, file)
    for f, schema in t.schemas.items():
        for field in schema:
            if field.name not in first:
                first[field.name] = (field.type, f)
            elif not field.type.equals(first[field.name][0]):
                ty, f0 = first[field.name]
                errors.append(f"table {t.name}: column '{field.name}' is {ty} in {f0} but {field.type} in {f}")
    files = list(t.schemas)
    try:
        if files:
            pa.unify_schemas([t.schemas[f] for f in files])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        culprit = None
        for i in range(1, len(files)):
            for j in range(i):
                try:
                    pa.unify_schemas([t.schemas[files[j]], t.schemas[files[i]]])
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e2:
                    culprit = (files[j], files[i], e2)
                    break
            if culprit:
                break
        if culprit:
            errors.append(f"table {t.name}: unify_schemas fails between {culprit[0]} and {culprit[1]}: {culprit[2]}")
        else:
            errors.append(f"table {t.name}: unify_schemas fails: {e}")
    return len(errors) == n0


def has_nanos(ty):
    if pa.types.is_timestamp(ty):
        return ty.unit == "ns"
    if pa.types.is_dictionary(ty):
        return has_nanos(ty.value_type)
    return any(has_nanos(ty.field(i).type) for i in range(ty.num_fields))


# ---------- conversion to JSON ----------

def plain_type(ty):
    """The type to cast a column to before to_pylist(): temporal types become integers (exact, any range)."""
    if pa.types.is_timestamp(ty) or pa.types.is_date64(ty) or pa.types.is_time64(ty) or pa.types.is_duration(ty):
        return pa.int64()
    if pa.types.is_date32(ty) or pa.types.is_time32(ty):
        return pa.int32()
    if pa.types.is_dictionary(ty):
        return plain_type(ty.value_type)
    if pa.types.is_struct(ty):
        return pa.struct([f.with_type(plain_type(f.type)) for f in ty])
    if pa.types.is_large_list(ty):
        return pa.large_list(ty.value_field.with_type(plain_type(ty.value_type)))
    if pa.types.is_fixed_size_list(ty):
        return pa.list_(ty.value_field.with_type(plain_type(ty.value_type)), ty.list_size)
    if pa.types.is_list(ty):
        return pa.list_(ty.value_field.with_type(plain_type(ty.value_type)))
    if pa.types.is_map(ty):
        return pa.map_(ty.key_field.with_type(plain_type(ty.key_type)),
                       ty.item_field.with_type(plain_type(ty.item_type)))
    return ty


def iso_from_int(v, unit, date_only=False):
    digits = UNIT_DIGITS[unit]
    secs, frac = divmod(v, 10 ** digits)
    try:
        t = EPOCH + dt.timedelta(seconds=secs)
    except OverflowError:
        return f"{v} {unit} since 1970-01-01T00:00:00Z (out of range)"
    if date_only:
        return t.date().isoformat()
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.year < 1000:
        s = f"{t.year:04d}" + s[s.index("-"):]
    return s + (f".{frac:0{digits}d}" if digits else "") + "Z"


def to_json(v, ty):
    """Converts one value from to_pylist() of a plain_type() cast, guided by the original arrow type."""
    if v is None:
        return None
    if pa.types.is_dictionary(ty):
        return to_json(v, ty.value_type)
    if pa.types.is_timestamp(ty):
        return iso_from_int(v, ty.unit)
    if pa.types.is_date32(ty):
        return iso_from_int(v * 86400, "s", date_only=True)
    if pa.types.is_date64(ty):
        return iso_from_int(v, "ms", date_only=True)
    if pa.types.is_time32(ty) or pa.types.is_time64(ty):
        return iso_from_int(v, ty.unit)[11:-1]
    if pa.types.is_struct(ty):
        return {f.name: to_json(v.get(f.name), f.type) for f in ty}
    if pa.types.is_map(ty):
        pairs = [(to_json(k, ty.key_type), to_json(x, ty.item_type)) for k, x in v]
        if all(isinstance(k, str) for k, _ in pairs):
            return dict(pairs)
        return [[k, x] for k, x in pairs]
    if pa.types.is_list(ty) or pa.types.is_large_list(ty) or pa.types.is_fixed_size_list(ty):
        return [to_json(x, ty.value_type) for x in v]
    return generic(v)


def generic(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat() + "Z"
    if isinstance(v, (dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, dict):
        return {str(k): generic(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [generic(x) for x in v]
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


def read_rows(lake, t, f):
    tbl = lake.parquet(f).read()
    cols = {}
    for name, col in zip(tbl.column_names, tbl.columns):
        target = plain_type(col.type)
        plain = col if target.equals(col.type) else col.cast(target)
        cols[name] = [to_json(v, col.type) for v in plain.to_pylist()]
    names = list(cols)
    rows = [{n: cols[n][i] for n in names} for i in range(tbl.num_rows)]
    for k, v in t.parts[f]:
        value = None if v == HIVE_NULL else urllib.parse.unquote(v)
        for r in rows:
            r[k] = value
    return rows


def id_key(row):
    if "_id" not in row:
        return (9, "")
    v = row["_id"]
    if v is None:
        return (0, "")
    if isinstance(v, bool):
        return (5, str(v))
    if isinstance(v, (int, float)):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3 if isinstance(v, dict) else 4, json.dumps(v, sort_keys=True))


def partitions_of(t):
    dirs = {f.split("/", 2)[2].rsplit("/", 1)[0] for f in t.files if f.count("/") > 2}
    return sorted(dirs)


def columns_of(t):
    cols = {}
    for f in t.files:
        if f in t.schemas:
            for field in t.schemas[f]:
                cols.setdefault(field.name, str(field.type))
    return cols


def summary(tables):
    header = ("table", "files", "partitions", "rows", "columns")
    lines = [(t.name, str(len(t.files)), str(len(partitions_of(t))), str(sum(t.num_rows.values())),
              str(len(columns_of(t)))) for t in tables]
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    fmt = "  ".join(("{:<%d}" if i == 0 else "{:>%d}") % w for i, w in enumerate(widths))
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for line in lines:
        print(fmt.format(*line))
    for t in tables:
        parts = partitions_of(t)
        print(f"\n{t.name}: {len(t.files)} files, {sum(t.num_rows.values())} rows")
        if parts:
            shown = parts if len(parts) <= 6 else parts[:3] + ["..."] + parts[-2:]
            print("  partitions: " + ", ".join(shown))
        for name, ty in columns_of(t).items():
            print(f"  {name:<30} {ty}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Checks (and optionally dumps) a mongolake lake with pyarrow.")
    ap.add_argument("root", help="lake root: a local directory or s3://bucket/prefix")
    ap.add_argument("--table", help="only this table, as db/coll")
    ap.add_argument("--summary", action="store_true", help="print a human-readable summary per table")
    ap.add_argument("--dump", action="store_true", help="print all tables and rows as one JSON object")
    args = ap.parse_args(argv)

    errors = []
    try:
        lake = Lake(args.root)
        tables = discover(lake, errors)
    except Exception as e:  # noqa: BLE001
        print(f"check_lake: FAILED: cannot list {args.root}: {e}", file=sys.stderr)
        return 1
    if args.table:
        name = args.table.strip("/")
        if name not in tables:
            print(f"check_lake: FAILED: table {name} not found in {args.root} "
                  f"(tables: {', '.join(sorted(tables)) or 'none'})", file=sys.stderr)
            return 1
        tables = {name: tables[name]}
        errors = [e for e in errors if e.startswith(f"table {name}:")]
    for t in tables.values():
        check_table(lake, t, errors)
    if errors:
        for e in errors:
            print(f"check_lake: FAILED: {e}", file=sys.stderr)
        print(f"check_lake: {len(errors)} problem(s) in {args.root}", file=sys.stderr)
        return 1
    ordered = [tables[n] for n in sorted(tables)]
    if not ordered:
        print(f"check_lake: warning: no table found under {args.root}", file=sys.stderr)
    if args.summary:
        summary(ordered)
    if args.dump:
        out = {"tables": {}}
        for t in ordered:
            rows = []
            try:
                for f in t.files:
                    rows.extend(read_rows(lake, t, f))
            except Exception as e:  # noqa: BLE001
                print(f"check_lake: FAILED: table {t.name}: cannot read rows: {e}", file=sys.stderr)
                return 1
            rows.sort(key=id_key)
            out["tables"][t.name] = {"files": len(t.files), "partitions": partitions_of(t),
                                     "columns": columns_of(t), "rows": rows}
        json.dump(out, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    nfiles = sum(len(t.files) for t in ordered)
    print(f"check_lake: OK: {len(ordered)} table(s), {nfiles} file(s) in {args.root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
