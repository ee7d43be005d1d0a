#!/usr/bin/env python3
"""Runs mongolake's BI views (Athena/Trino SQL) in engines mongolake does not contain: sqlglot parses each view in
its Athena dialect, transpiles it, and DuckDB and Spark run it over the local lake.

    check_views.py --lake LAKE_DIR --ddl DDL_FILE... --views VIEWS_FILE... [--dump VIEW...]

DDL files hold the tables' `CREATE EXTERNAL TABLE` statements (the lake's `.athena.sql`); views files hold
`CREATE OR REPLACE VIEW "db"."name" AS SELECT ...;` statements (the lake's `.views.sql`). Each table is made
available to both engines as `db.table` over its LOCATION: Spark through the DDL exactly as tests/py/spark_check.py
adapts it (declared types, partitions recovered), DuckDB as a view over read_parquet with Hive partitioning
(partition values kept as text). Each view's SELECT is then transpiled (read="athena", write="duckdb" / "spark")
and counted in both; a view that does not parse, transpile or run is an error.

Prints {"views": {"db.view": {"duckdb": N, "spark": N, "columns": [...]}}, "rows": {"db.view": [row, ...]}} on
stdout (rows only for --dump views, from Spark, values as text); exits 1 with the errors on stderr when any view fails or the engines disagree, 2 on bad usage.
"""
import argparse
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spark_check as sc  # noqa: E402


def view_statements(text):
    """(db, name, select SQL, parsed sqlglot expression) for each CREATE VIEW statement."""
    import sqlglot
    from sqlglot import exp
    out = []
    for stmt in sc.split_statements(sc.strip_comments(text, quotes="'\"", backslash=False)):
        tree = sqlglot.parse_one(stmt, read="athena")
        if not isinstance(tree, exp.Create) or tree.args.get("kind", "").upper() != "VIEW":
            raise ValueError(f"not a CREATE VIEW statement: {stmt[:100]!r}")
        table = tree.this
        select = tree.expression
        out.append((table.db, table.name, select))
    return out


def text(v):
    if v is None:
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lake", required=True)
    ap.add_argument("--ddl", nargs="+", required=True)
    ap.add_argument("--views", nargs="+", required=True)
    ap.add_argument("--dump", nargs="*", default=[], help="db.view names whose rows to print")
    args = ap.parse_args(argv)

    tables, views, errors = [], [], []
    try:
        for path in args.ddl:
            with open(path, encoding="utf-8") as f:
                tables.extend(sc.parse_ddl(s) for s in sc.split_statements(sc.strip_comments(f.read())))
        for path in args.views:
            with open(path, encoding="utf-8") as f:
                views.extend(view_statements(f.read()))
    except Exception as e:  # sqlglot's ParseError included
        print(f"check_views: FAILED: cannot read the SQL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1 if "sqlglot" in type(e).__module__ else 2
    if not views:
        print("check_views: FAILED: no CREATE VIEW statement", file=sys.stderr)
        return 2

    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for t in tables:
        root = sc.table_dir(t["location"]).rstrip("/")
        glob = root + ("/**/*.parquet" if t["keys"] else "/*.parquet")
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{t["db"]}"')
        con.execute(
            f'CREATE VIEW "{t["db"]}"."{t["table"]}" AS SELECT * FROM read_parquet(\'{glob}\', '
            f'hive_partitioning = {str(bool(t["keys"])).lower()}, hive_types_autocast = false, union_by_name = true)'
        )

    report = {"views": {}, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="check-views-") as work:
        spark = sc.spark_session(work)
        for t in tables:
            spark.sql(f"CREATE DATABASE IF NOT EXISTS `{t['db']}`")
            for s in sc.spark_statements(t):
                spark.sql(s)
        for db, name, select in views:
            full = f"{db}.{name}"
            entry = {}
            try:
                duck_sql = select.sql(dialect="duckdb")
                entry["duckdb"] = con.execute(f"SELECT count(*) FROM ({duck_sql})").fetchone()[0]
            except Exception as e:
                errors.append(f"{full}: DuckDB: {type(e).__name__}: {e}\n    SQL: {select.sql(dialect='duckdb')}")
            try:
                spark_sql = select.sql(dialect="spark")
                df = spark.sql(spark_sql)
                entry["columns"] = df.columns
                if full in args.dump:
                    rows = [{k: text(v) for k, v in r.asDict().items()} for r in df.collect()]
                    entry["spark"] = len(rows)
                    report["rows"][full] = rows
                else:
                    entry["spark"] = df.count()
            except Exception as e:
                errors.append(f"{full}: Spark: {sc.spark_error(e)}\n    SQL: {select.sql(dialect='spark')}")
            if "duckdb" in entry and "spark" in entry and entry["duckdb"] != entry["spark"]:
                errors.append(f"{full}: DuckDB counts {entry['duckdb']} rows, Spark {entry['spark']}")
            report["views"][full] = entry
        spark.stop()
    print(json.dumps(report, sort_keys=True))
    for e in errors:
        print(f"check_views: FAILED: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
