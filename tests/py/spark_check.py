#!/usr/bin/env python3
"""Reads a local mongolake lake through its Athena DDL, with Spark: proof that the declared tables match the files.

    spark_check.py --lake LAKE_DIR DDL_FILE [DDL_FILE...] [--skip-arrow-check]

Each DDL file holds one or more `CREATE EXTERNAL TABLE` statements as `mongolake ddl` prints them (Athena's Hive
dialect). They are adapted to Spark only where the dialects differ, never in the column list or the types:

    CREATE EXTERNAL TABLE IF NOT EXISTS `db`.`t` (COLUMNS) PARTITIONED BY (`k` string, ...)
    STORED AS PARQUET LOCATION 'L' TBLPROPERTIES (...)
      ->
    CREATE TABLE `db`.`t` (COLUMNS, `k` string, ...) USING parquet PARTITIONED BY (`k`, ...) LOCATION 'L'
    ALTER TABLE `db`.`t` RECOVER PARTITIONS        (Spark has no partition projection)

Then `SELECT *` of every table is collected: every column of every file is decoded through the declared type.
Spark (one local[2] session for all tables, offline) fails on a declared type a file cannot be read as
(PARQUET_COLUMN_DATA_TYPE_MISMATCH, ...). Before Spark starts, an exact check with pyarrow compares every file's
schema with the declaration (Spark widens some types silently, e.g. int to bigint): each file column must be
declared with exactly its type, and no declared partition key may be a file column. --skip-arrow-check leaves
only Spark's verdict.

Prints {"tables": {"db.t": {"rows": N, "partitions": P, "files": F}}} on stdout; exits 1 with the errors on stderr
when any table fails, 2 on bad usage.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import urllib.parse


# ---------- DDL parsing (Athena/Hive dialect, as mongolake writes it) ----------

def strip_comments(text, quotes="'`", backslash=True):
    """Removes `--` comments outside quotes: `quotes` are the quote characters (Hive's ' and ` by default,
    Trino's ' and "); `backslash`: a backslash escapes the next character inside '...' (Hive, not Trino)."""
    out, i, quote = [], 0, None
    while i < len(text):
        c = text[i]
        if quote:
            out.append(c)
            if backslash and c == "\\" and quote == "'" and i + 1 < len(text):
                out.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in quotes:
            quote = c
            out.append(c)
        elif text.startswith("--", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def split_statements(text):
    """Splits on `;` outside quotes."""
    parts, cur, quote, i = [], [], None, 0
    while i < len(text):
        c = text[i]
        cur.append(c)
        if quote:
            if c == "\\" and quote == "'" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "'`":
            quote = c
        elif c == ";":
            cur.pop()
            parts.append("".join(cur).strip())
            cur = []
        i += 1
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def balanced(text, start):
    """Index just after the parenthesis group opening at text[start] == '('."""
    assert text[start] == "("
    depth, quote, i = 0, None, start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == "'":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'`":
            quote = c
        elif c in "(<":
            depth += 1
        elif c in ")>":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


def split_top(text, sep=","):
    """Splits on `sep` outside quotes, (), <>."""
    parts, cur, depth, quote, i = [], [], 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\" and quote == "'" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "'`":
            quote = c
            cur.append(c)
        elif c in "(<":
            depth += 1
            cur.append(c)
        elif c in ")>":
            depth -= 1
            cur.append(c)
        elif c == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def unquote_ident(s):
    s = s.strip()
    if s.startswith("`") and s.endswith("`"):
        return s[1:-1].replace("``", "`")
    return s


def unquote_str(s):
    s = s.strip()
    if not (s.startswith("'") and s.endswith("'")):
        raise ValueError(f"not a string literal: {s}")
    return re.sub(r"\\(.)", r"\1", s[1:-1])


def parse_ddl(stmt):
    """Parses one CREATE EXTERNAL TABLE statement into a dict."""
    m = re.match(r"\s*CREATE\s+EXTERNAL\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?((`[^`]*`|\w+)(\.(`[^`]*`|\w+))?)\s*\(",
                 stmt, re.I)
    if not m:
        raise ValueError(f"not a CREATE EXTERNAL TABLE statement: {stmt[:120]!r}")
    name_parts = [unquote_ident(p) for p in split_top(m.group(2), ".")]
    db, table = (name_parts if len(name_parts) == 2 else ["default", name_parts[0]])
    open_at = m.end() - 1
    close_at = balanced(stmt, open_at)
    columns = [column_def(c) for c in split_top(stmt[open_at + 1:close_at - 1])]
    rest = stmt[close_at:]
    keys = []
    pm = re.match(r"\s*PARTITIONED\s+BY\s*\(", rest, re.I)
    if pm:
        p_open = pm.end() - 1
        p_close = balanced(rest, p_open)
        keys = [column_def(c) for c in split_top(rest[p_open + 1:p_close - 1])]
        rest = rest[p_close:]
    sm = re.match(r"\s*STORED\s+AS\s+PARQUET\s+LOCATION\s+('(?:[^'\\]|\\.)*')", rest, re.I)
    if not sm:
        raise ValueError(f"expected STORED AS PARQUET LOCATION '...' after the columns, got {rest[:120]!r}")
    location = unquote_str(sm.group(1))
    return {"db": db, "table": table, "columns": columns, "keys": keys, "location": location}


def column_def(text):
    """`name` type [COMMENT '...'] -> {"name", "type", "sql"} (sql: the definition verbatim)."""
    m = re.match(r"\s*(`(?:[^`]|``)*`|\w+)\s+(.*?)(\s+COMMENT\s+'(?:[^'\\]|\\.)*')?\s*$", text, re.S | re.I)
    if not m:
        raise ValueError(f"unreadable column definition {text!r}")
    return {"name": unquote_ident(m.group(1)), "type": m.group(2).strip(), "sql": text.strip()}


def spark_statements(t):
    """The Spark SQL for one parsed table: CREATE TABLE and (when partitioned) RECOVER PARTITIONS."""
    qname = f"`{t['db']}`.`{t['table']}`"
    cols = [c["sql"] for c in t["columns"]] + [k["sql"] for k in t["keys"]]
    sql = f"CREATE TABLE {qname} (\n  " + ",\n  ".join(cols) + "\n) USING parquet"
    if t["keys"]:
        sql += " PARTITIONED BY (" + ", ".join(f"`{k['name']}`" for k in t["keys"]) + ")"
    sql += " LOCATION '" + t["location"].replace("\\", "\\\\").replace("'", "\\'") + "'"
    out = [sql]
    if t["keys"]:
        out.append(f"ALTER TABLE {qname} RECOVER PARTITIONS")
    return out


# ---------- exact schema check with pyarrow ----------

def parse_type(s):
    """Hive type text -> a comparable tuple."""
    s = s.strip()
    low = s.lower()
    m = re.fullmatch(r"decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)", low)
    if m:
        return ("decimal", int(m.group(1)), int(m.group(2)))
    if low.startswith("array<") and low.endswith(">"):
        return ("array", parse_type(s[6:-1]))
    if low.startswith("struct<") and low.endswith(">"):
        members = []
        for part in split_top(s[7:-1]):
            name, ty = split_member(part)
            members.append((name.lower(), parse_type(ty)))
        return ("struct", tuple(members))
    return (low,)


def split_member(part):
    """`name`:type or name:type."""
    if part.startswith("`"):
        end = 1
        while True:
            end = part.index("`", end)
            if part[end:end + 2] == "``":
                end += 2
                continue
            break
        name = part[1:end].replace("``", "`")
        rest = part[end + 1:].lstrip()
    else:
        name, rest = part.split(":", 1)
        rest = ":" + rest
    if not rest.startswith(":"):
        raise ValueError(f"bad struct member {part!r}")
    return name, rest[1:]


def arrow_type(ty):
    """pyarrow type -> the same comparable tuple (the Hive type it must be declared as)."""
    import pyarrow as pa
    if pa.types.is_string(ty) or pa.types.is_large_string(ty):
        return ("string",)
    if pa.types.is_boolean(ty):
        return ("boolean",)
    if pa.types.is_int64(ty):
        return ("bigint",)
    if pa.types.is_float64(ty):
        return ("double",)
    if pa.types.is_decimal(ty):
        return ("decimal", ty.precision, ty.scale)
    if pa.types.is_binary(ty) or pa.types.is_large_binary(ty):
        return ("binary",)
    if pa.types.is_timestamp(ty) and ty.unit == "ms" and ty.tz in ("UTC", "+00:00"):
        return ("timestamp",)
    if pa.types.is_list(ty) or pa.types.is_large_list(ty):
        return ("array", arrow_type(ty.value_type))
    if pa.types.is_struct(ty):
        return ("struct", tuple((ty.field(i).name.lower(), arrow_type(ty.field(i).type))
                                for i in range(ty.num_fields)))
    return (f"<no Hive type for arrow {ty}>",)


def show(t):
    if t[0] == "decimal":
        return f"decimal({t[1]},{t[2]})"
    if t[0] == "array":
        return f"array<{show(t[1])}>"
    if t[0] == "struct":
        return "struct<" + ",".join(f"{n}:{show(x)}" for n, x in t[1]) + ">"
    return t[0]


def table_dir(location):
    u = urllib.parse.urlparse(location)
    if u.scheme != "file":
        raise ValueError(f"LOCATION {location} is not a file:// URL; this check reads local lakes only")
    return urllib.parse.unquote(u.path)


def data_files(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "_")))
        out.extend(os.path.join(d, f) for f in sorted(files) if f.endswith(".parquet") and not f.startswith((".", "_")))
    return sorted(out)


def arrow_check(t):
    """Errors when any file's schema differs from the declaration."""
    import pyarrow.parquet as pq
    declared = {c["name"].lower(): parse_type(c["type"]) for c in t["columns"]}
    keys = {k["name"].lower() for k in t["keys"]}
    errors = []
    root = table_dir(t["location"])
    files = data_files(root)
    if not files:
        errors.append(f"no .parquet file under {root}")
    for f in files:
        rel = os.path.relpath(f, root)
        for field in pq.read_schema(f):
            name = field.name.lower()
            want = arrow_type(field.type)
            if name in keys:
                errors.append(f"{rel}: column `{field.name}` is also declared as a partition key")
            elif name not in declared:
                errors.append(f"{rel}: column `{field.name}` ({show(want)}) is not declared")
            elif declared[name] != want:
                errors.append(f"{rel}: column `{field.name}` is {show(want)} in the file but declared "
                              f"{show(declared[name])}")
    return errors


# ---------- Spark ----------

# Task failures are re-raised to the driver (and reported from there); the executor's own copies are noise.
LOG4J2 = """rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n%ex{3}
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = off
"""


def spark_session(workdir):
    log_conf = os.path.join(workdir, "log4j2.properties")
    with open(log_conf, "w") as f:
        f.write(LOG4J2)
    os.environ["TZ"] = "UTC"
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession
    spark = (SparkSession.builder.master("local[2]").appName("mongolake-spark-check")
             .config("spark.ui.enabled", "false")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.default.parallelism", "2")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.memory", "1g")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.warehouse.dir", os.path.join(workdir, "warehouse"))
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.extraJavaOptions",
                     f"-Dderby.system.home={workdir} -Dlog4j2.configurationFile=file:{log_conf}")
             .getOrCreate())
    return spark


def spark_error(e):
    """The useful part of a Spark/Py4J error: its messages (the error class first), without the stack frames."""
    lines = [ln.strip().lstrip(": ") for ln in str(e).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("at ", "...")) and "collectToPython" not in ln]
    return "\n    ".join(dict.fromkeys(lines[:6]))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Reads a local mongolake lake through its Athena DDL with Spark.")
    ap.add_argument("--lake", required=True, help="the lake directory (each LOCATION must be inside it)")
    ap.add_argument("ddl", nargs="+", help="files of CREATE EXTERNAL TABLE statements (mongolake ddl output)")
    ap.add_argument("--skip-arrow-check", action="store_true",
                    help="do not compare file schemas with the declarations first: Spark alone decides")
    args = ap.parse_args(argv)

    lake = os.path.realpath(args.lake)
    tables = []
    try:
        for path in args.ddl:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for stmt in split_statements(strip_comments(text)):
                tables.append(parse_ddl(stmt))
    except (OSError, ValueError) as e:
        print(f"spark_check: FAILED: cannot read the DDL: {e}", file=sys.stderr)
        return 2
    if not tables:
        print("spark_check: FAILED: no CREATE EXTERNAL TABLE statement in " + ", ".join(args.ddl), file=sys.stderr)
        return 2

    errors = []
    for t in tables:
        name = f"{t['db']}.{t['table']}"
        try:
            root = os.path.realpath(table_dir(t["location"]))
        except ValueError as e:
            errors.append(f"{name}: {e}")
            continue
        if not (root + os.sep).startswith(lake + os.sep):
            errors.append(f"{name}: LOCATION {t['location']} is outside the lake {lake}")
        elif not args.skip_arrow_check:
            errors.extend(f"{name}: {e}" for e in arrow_check(t))
    if errors:
        for e in errors:
            print(f"spark_check: FAILED: {e}", file=sys.stderr)
        return 1

    out = {"tables": {}}
    with tempfile.TemporaryDirectory(prefix="spark-check-") as workdir:
        spark = spark_session(workdir)
        out["spark"] = spark.version
        try:
            for t in tables:
                name = f"{t['db']}.{t['table']}"
                try:
                    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{t['db']}`")
                    spark.sql(f"DROP TABLE IF EXISTS `{t['db']}`.`{t['table']}`")
                    for sql in spark_statements(t):
                        spark.sql(sql)
                    rows = spark.sql(f"SELECT * FROM `{t['db']}`.`{t['table']}`").collect()
                    parts = (spark.sql(f"SHOW PARTITIONS `{t['db']}`.`{t['table']}`").count() if t["keys"] else 0)
                    files = len(data_files(table_dir(t["location"])))
                    out["tables"][name] = {"rows": len(rows), "partitions": parts, "files": files}
                except Exception as e:  # noqa: BLE001 - every Spark failure is a finding
                    errors.append(f"{name}: {spark_error(e)}")
        finally:
            spark.stop()
    if errors:
        for e in errors:
            print(f"spark_check: FAILED: {e}", file=sys.stderr)
        return 1
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    total = sum(t["rows"] for t in out["tables"].values())
    print(f"spark_check: OK: {len(out['tables'])} table(s), {total} row(s) read by Spark {out['spark']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
