#!/usr/bin/env python3
"""The PyMongoArrow + pyarrow competitor of the benchmark (issue 6): the same job as `mongolake sync`.

For every collection of a `collections.csv`, into `<lake>/<db>/<coll>/<k1>=<v1>/.../part-0.parquet` (exactly one
zstd Parquet file per Hive partition, partition columns in the path only, rows sorted by key):

* full sync (default): reads the whole collection with `pymongoarrow.api.find_arrow_all`, keeps the latest
  version of each key (greatest timestamp), computes the partition of each row (`date(FIELD)` is the calendar
  date in `--timezone`, a field is its value; null/missing -> `__HIVE_DEFAULT_PARTITION__`) and writes every
  partition; then stores the watermark (newest timestamp read, capped at the start of the read) and the Arrow
  schema in `<lake>/_pma/`.
* `--incremental`: reads the documents whose timestamp is at or after `watermark - overlap` (Date, epoch-number
  and ISO-string representations, as mongolake does), and for each touched partition merges them with the
  partition's existing file (a document read now replaces the stored row), keeps the latest version of each key
  and rewrites only that partition. A collection without a watermark gets a full sync.

It is deliberately a straightforward, honest script of the kind a user would write: no partition is skipped and
nothing is sampled except the *schema* (PyMongoArrow needs one: its own inference aborts on the first field whose
BSON type changes, such as `modified_at` being a Date in one document and an Int64 in another). The schema is
inferred from the first `--schema-sample` documents (first type seen wins per top-level field) and the full read
uses it with `allow_invalid=True`, so values of another type are stored as null: lossy on messy data, which is
PyMongoArrow's documented behaviour. It does not handle documents that move partition or are deleted (mongolake
does, with its key index and `--reconcile`); the benchmark's mutations never move a document.

Prints one JSON line: {"docs": read, "rows": written, "partitions": written, "seconds": ...}.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

# pymongoarrow's wheel is compiled against a slightly different pyarrow patch release: harmless size warnings.
warnings.filterwarnings("ignore", category=RuntimeWarning, message=r".*size changed.*")

import bson  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from pymongo import MongoClient  # noqa: E402
from pymongoarrow.api import find_arrow_all  # noqa: E402
from pymongoarrow.context import PyMongoArrowContext  # noqa: E402
from pymongoarrow.schema import Schema  # noqa: E402

DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
HIVE_ESCAPE = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(0x20)}
SRC = "__pma_src"  # 0 = row from the existing file, 1 = read in this run


class Spec:
    """One row of collections.csv: database, collection, timestamp column, partition keys, key."""

    def __init__(self, row: dict[str, str]):
        self.db = row["database"].strip()
        self.coll = row["collection"].strip()
        self.ts = row["timestamp_column"].strip()
        self.key = (row.get("key") or "").strip() or "_id"
        text = (row.get("partition_by") or "").strip() or f"date({self.ts})"
        # Each key: (column name in the path, source field path, is a date(...) key).
        self.parts: list[tuple[str, str, bool]] = []
        for item in text.split("/"):
            alias, _, expr = item.rpartition("=")
            expr = expr.strip()
            if expr.startswith("date(") and expr.endswith(")"):
                self.parts.append((alias.strip() or "date", expr[5:-1].strip(), True))
            else:
                self.parts.append((alias.strip() or expr.replace(".", "_"), expr, False))

    @property
    def name(self) -> str:
        """`db.coll`."""
        return f"{self.db}.{self.coll}"


def read_specs(path: Path) -> list[Spec]:
    """Parses collections.csv (blank lines and `#` comments allowed)."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    return [Spec(row) for row in csv.DictReader(lines)]


def hive_escape(value: str) -> str:
    """Escapes a partition value the way Hive does (`%XX`)."""
    return "".join(f"%{ord(c):02X}" if c in HIVE_ESCAPE else c for c in value)


def field(table: pa.Table, path: str) -> pa.ChunkedArray | None:
    """The column at a dotted field path (through structs), or None when the schema has no such field."""
    head, *rest = path.split(".")
    if head not in table.column_names:
        return None
    col = table.column(head)
    for name in rest:
        if not pa.types.is_struct(col.type) or col.type.get_field_index(name) < 0:
            return None
        col = pc.struct_field(col, name)
    return col


def as_utc_timestamp(col: pa.ChunkedArray | None, n: int) -> pa.ChunkedArray:
    """A timestamp(ms, UTC) column; values PyMongoArrow could not store as a Date are null."""
    if col is None or not pa.types.is_timestamp(col.type):
        return pa.chunked_array([pa.nulls(n, pa.timestamp("ms", tz="UTC"))])
    if col.type.tz is None:
        return col.cast(pa.timestamp(col.type.unit, tz="UTC"))
    return col


def partition_columns(table: pa.Table, spec: Spec, tz: str) -> list[pa.ChunkedArray]:
    """The path value (already Hive-escaped, null -> default partition) of each partition key of each row."""
    out = []
    for _, path, is_date in spec.parts:
        col = field(table, path)
        if is_date:
            local = as_utc_timestamp(col, table.num_rows).cast(pa.timestamp("ms", tz=tz))
            values = pc.strftime(local, format="%Y-%m-%d")
        elif col is None:
            values = pa.chunked_array([pa.nulls(table.num_rows, pa.string())])
        else:
            values = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
            uniques = pc.unique(values).to_pylist()
            if any(v is not None and (v == "" or any(c in HIVE_ESCAPE for c in v)) for v in uniques):
                mapping = {v: (hive_escape(v) if v else None) for v in uniques if v is not None}
                values = pa.chunked_array([pa.array([mapping.get(v) for v in values.to_pylist()], pa.string())])
        out.append(pc.fill_null(values, DEFAULT_PARTITION))
    return out


def plain_key(table: pa.Table, key: str) -> pa.Table:
    """Replaces an extension-typed key (PyMongoArrow's ObjectId) by its storage (fixed_size_binary(12)), which
    pyarrow can sort, compare and write."""
    col = table.column(key)
    if isinstance(col.type, pa.ExtensionType):
        storage = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
        table = table.set_column(table.schema.get_field_index(key), key, storage)
    return table


def keep_latest(table: pa.Table, key: str, order: list[str]) -> tuple[pa.Table, int]:
    """Keeps one row per key: the last after sorting by (key, *order) ascending, nulls first. Returns the table
    sorted by key, and how many rows were dropped."""
    if table.num_rows == 0:
        return table, 0
    keys = [(c, "ascending", "at_start") for c in [key, *order]]
    table = table.take(pc.sort_indices(table, sort_keys=keys))
    k = table.column(key).combine_chunks()
    n = len(k)
    last = pc.fill_null(pc.not_equal(k.slice(0, n - 1), k.slice(1)), True)
    mask = pa.concat_arrays([last, pa.array([True])])
    kept = table.filter(mask)
    return kept, n - kept.num_rows


def infer_schema(coll, sample: int) -> Schema:
    """The collection's PyMongoArrow schema from its first `sample` documents: each document is inferred on its
    own, the first non-null type of each top-level field wins, fields in first-seen order."""
    fields: dict[str, pa.DataType] = {}
    for batch in coll.find_raw_batches({}, limit=sample, batch_size=min(sample, 10_000)):
        pos = 0
        while pos < len(batch):
            size = int.from_bytes(batch[pos:pos + 4], "little")
            doc, pos = batch[pos:pos + size], pos + size
            ctx = PyMongoArrowContext(None, codec_options=coll.codec_options)
            try:
                ctx.process_bson_stream(doc)
                one = ctx.finish()
            except (TypeError, ValueError):
                continue  # a document whose own arrays mix types: its fields come from other documents
            for f in one.schema:
                if f.name not in fields and not pa.types.is_null(f.type):
                    fields[f.name] = f.type
    if not fields:
        return Schema({"_id": bson.ObjectId})
    return Schema.from_arrow(pa.schema([pa.field(n, t) for n, t in fields.items()]))


def timestamp_filter(field_name: str, since_ms: int) -> dict:
    """Documents changed at or after since_ms, in every representation (Date, epoch number, ISO string; the
    string branch starts a day early, exact for any offset), like mongolake's incremental filter."""
    since = dt.datetime.fromtimestamp(since_ms / 1000, tz=dt.timezone.utc)
    day_before = (since - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    return {
        "$or": [
            {field_name: {"$gte": since}},
            {field_name: {"$gte": since_ms}},
            {field_name: {"$gte": day_before}},
        ]
    }


def write_partition(lake: Path, spec: Spec, values: tuple[str, ...], rows: pa.Table, row_group: int) -> None:
    """Writes one partition's file to a staging name, then renames it over `part-0.parquet` (atomic)."""
    directory = lake / spec.db / spec.coll
    for (name, _, _), v in zip(spec.parts, values):
        directory /= f"{name}={v}"
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".part-0.parquet.{os.getpid()}.tmp"
    pq.write_table(rows, staging, compression="zstd", row_group_size=row_group, coerce_timestamps="ms",
                   allow_truncated_timestamps=True)
    os.replace(staging, directory / "part-0.parquet")


def split_partitions(table: pa.Table, spec: Spec, tz: str):
    """Yields (partition values, rows without partition columns, sorted by key) for each partition present."""
    parts = partition_columns(table, spec, tz)
    names = [f"__pma_part{i}" for i in range(len(parts))]
    for name, col in zip(names, parts):
        table = table.append_column(name, col)
    # Field partition keys live in the path only (as in any Hive table).
    drop = [path for _, path, is_date in spec.parts if not is_date and path in table.column_names]
    table = table.drop_columns(drop)
    order = [(n, "ascending") for n in names] + [(spec.key, "ascending")]
    table = table.take(pc.sort_indices(table, sort_keys=order))
    if table.num_rows == 0:
        return
    combined = [table.column(n).combine_chunks() for n in names]
    # Row where any partition value differs from the previous row's: a partition starts there.
    change = None
    for arr in combined:
        d = pc.not_equal(arr.slice(1), arr.slice(0, len(arr) - 1))
        change = d if change is None else pc.or_(change, d)
    starts = [0] + [i + 1 for i in pc.indices_nonzero(change).to_pylist()] if change is not None else [0]
    bounds = starts + [table.num_rows]
    data = table.drop_columns(names)
    for a, b in zip(bounds, bounds[1:]):
        yield tuple(arr[a].as_py() for arr in combined), data.slice(a, b - a)


def load_state(lake: Path) -> dict:
    """The script's own state: {"db.coll": {"watermark_ms": ...}}."""
    path = lake / "_pma" / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(lake: Path, state: dict) -> None:
    """Writes the state atomically (the commit point of a run)."""
    path = lake / "_pma" / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def schema_path(lake: Path, spec: Spec) -> Path:
    """Where the collection's Arrow schema (from the full sync) is kept."""
    return lake / "_pma" / "schema" / spec.db / f"{spec.coll}.arrow"


def new_watermark(table: pa.Table, spec: Spec, started_ms: int, old: int | None) -> int | None:
    """Newest timestamp read (Dates only: PyMongoArrow nulls the other representations), capped at the moment
    reading began; never moves back."""
    ts = as_utc_timestamp(field(table, spec.ts), table.num_rows)
    newest = pc.max(ts).value
    cands = [c for c in (old, None if newest is None else min(newest, started_ms)) if c is not None]
    return max(cands) if cands else None


def projection(schema: Schema, args) -> dict:
    """find_arrow_all's projection. With a schema, PyMongoArrow asks the server for the schema's fields only;
    SecantusDB, the benchmark's server, builds projected documents far more slowly than it scans (hims.visits,
    200,000 documents: 4.09 server CPU-seconds with a projection of every top-level field, 0.30 without), which
    mongod does not, so by default the whole documents are read and PyMongoArrow picks the schema's fields
    itself: the same table, and the time measured is the client's. `--server-projection` keeps the default."""
    return {} if args.server_projection else {"projection": None}


def sync_full(client, lake: Path, spec: Spec, args, old_wm: int | None) -> dict:
    """Reads the whole collection and writes every partition."""
    coll = client[spec.db][spec.coll]
    schema = infer_schema(coll, args.schema_sample)
    started_ms = int(time.time() * 1000)
    table = find_arrow_all(coll, {}, schema=schema, allow_invalid=True, parallelism=args.parallelism,
                           **projection(schema, args))
    read = table.num_rows
    table = plain_key(table, spec.key)
    table, dups = keep_latest(table, spec.key, [spec.ts] if spec.ts in table.column_names else [])
    written = partitions = 0
    for values, rows in split_partitions(table, spec, args.timezone):
        write_partition(lake, spec, values, rows, args.row_group_rows)
        written += rows.num_rows
        partitions += 1
    path = schema_path(lake, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(schema.to_arrow().serialize().to_pybytes())
    return {"docs": read, "rows": written, "partitions": partitions, "dups": dups,
            "watermark_ms": new_watermark(table, spec, started_ms, old_wm)}


def sync_incremental(client, lake: Path, spec: Spec, args, old_wm: int) -> dict:
    """Reads what changed since watermark - overlap and rewrites only the partitions it touches."""
    coll = client[spec.db][spec.coll]
    schema = Schema.from_arrow(pa.ipc.read_schema(pa.py_buffer(schema_path(lake, spec).read_bytes())))
    started_ms = int(time.time() * 1000)
    query = timestamp_filter(spec.ts, old_wm - args.overlap_seconds * 1000)
    new = find_arrow_all(coll, query, schema=schema, allow_invalid=True, parallelism=args.parallelism,
                         **projection(schema, args))
    read = new.num_rows
    new = plain_key(new, spec.key)
    written = partitions = 0
    for values, rows in split_partitions(new, spec, args.timezone):
        path = lake / spec.db / spec.coll
        for (name, _, _), v in zip(spec.parts, values):
            path /= f"{name}={v}"
        path /= "part-0.parquet"
        rows = rows.append_column(SRC, pa.array([1] * rows.num_rows, pa.int8()))
        if path.exists():
            old = pq.read_table(path)
            old = old.append_column(SRC, pa.array([0] * old.num_rows, pa.int8()))
            merged = pa.concat_tables([old, rows.select(old.column_names)], promote_options="permissive")
        else:
            merged = rows
        order = [SRC] + ([spec.ts] if spec.ts in merged.column_names else [])
        merged, _ = keep_latest(merged, spec.key, order)
        write_partition(lake, spec, values, merged.drop_columns([SRC]), args.row_group_rows)
        written += merged.num_rows
        partitions += 1
    return {"docs": read, "rows": written, "partitions": partitions,
            "watermark_ms": new_watermark(new, spec, started_ms, old_wm)}


def main() -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uri", required=True)
    ap.add_argument("--lake", required=True, type=Path)
    ap.add_argument("--collections", required=True, type=Path, help="collections.csv")
    ap.add_argument("--timezone", default="Asia/Kolkata", help="time zone of date(...) partitions")
    ap.add_argument("--incremental", action="store_true", help="read only what changed since the watermark")
    ap.add_argument("--overlap-seconds", type=int, default=300)
    ap.add_argument("--schema-sample", type=int, default=1000, help="documents the schema is inferred from")
    ap.add_argument("--parallelism", default="off", choices=["off", "threads", "processes"],
                    help="PyMongoArrow's batch decoding parallelism")
    ap.add_argument("--row-group-rows", type=int, default=1_048_576)
    ap.add_argument("--server-projection", action="store_true",
                    help="let PyMongoArrow project the schema's fields on the server (its default; slow on "
                         "SecantusDB, see projection())")
    args = ap.parse_args()

    start = time.perf_counter()
    client = MongoClient(args.uri)
    state = load_state(args.lake)
    totals = {"docs": 0, "rows": 0, "partitions": 0}
    for spec in read_specs(args.collections):
        t0 = time.perf_counter()
        old = state.get(spec.name, {}).get("watermark_ms")
        if args.incremental and old is not None and schema_path(args.lake, spec).exists():
            r = sync_incremental(client, args.lake, spec, args, old)
        else:
            r = sync_full(client, args.lake, spec, args, old)
        state[spec.name] = {"watermark_ms": r["watermark_ms"]}
        save_state(args.lake, state)
        for k in totals:
            totals[k] += r[k]
        print(f"[pma] {spec.name}: read {r['docs']}, wrote {r['rows']} rows in {r['partitions']} partitions, "
              f"{time.perf_counter() - t0:.2f} s", file=sys.stderr)
    client.close()
    print(json.dumps({**totals, "seconds": round(time.perf_counter() - start, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
