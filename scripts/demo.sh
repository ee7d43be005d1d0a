#!/usr/bin/env bash
# The newcomer's one-command demo: seed a local MongoDB-compatible server with a synthetic hospital
# database, sync it into a Hive-partitioned Parquet lake in .demo/lake, mutate 1% of it, sync again
# (incremental), and show what landed.
#   scripts/demo.sh                 # DEMO_DOCS=20000 by default
#   DEMO_DOCS=2000 scripts/demo.sh  # smaller/faster
# Every run starts fresh: it deletes .demo/servers (the server's data) and .demo/lake first.
# The lake stays in .demo/lake afterwards; the servers are stopped at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DOCS="${DEMO_DOCS:-20000}"
SERVERS_DIR="$ROOT/.demo/servers"
LAKE=".demo/lake"
BIN="$ROOT/target/release/mongolake"

if [ -t 1 ]; then
  step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  step() { printf '\n==> %s\n' "$*"; }
fi
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

for f in collections.csv environments/demo.toml; do
  [ -f "$f" ] || die "$f is missing: the demo reads ./collections.csv and ./environments/demo.toml"
done

step "Installing tools (scripts/install-tools.sh; builds the test MongoDB server once, about 10 min)"
scripts/install-tools.sh

step "Building mongolake (cargo build --release)"
cargo build --release
[ -x "$BIN" ] || die "$BIN was not built"

step "Starting the local servers (MongoDB-compatible secantusd-rs, S3, SMTP) in .demo/servers"
scripts/servers.sh stop "$SERVERS_DIR" >/dev/null 2>&1 || true # leftovers of an interrupted demo
rm -rf "$SERVERS_DIR" "$LAKE"
trap 'scripts/servers.sh stop "$SERVERS_DIR"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
MONGOLAKE_SERVERS_WATCH_PID=$$ scripts/servers.sh start "$SERVERS_DIR" # stopped even if this script is killed
# shellcheck disable=SC1091
. "$SERVERS_DIR/env.sh"
export MONGOLAKE_DEMO_MONGO_URI="$MONGOLAKE_TEST_MONGO_URI"
echo "MongoDB URI: $MONGOLAKE_TEST_MONGO_URI"

timed() {
  local start=$SECONDS
  "$@"
  echo "(took $((SECONDS - start)) s)"
}

step "Seeding database 'hims' with $DOCS documents (mongolake seed)"
timed "$BIN" seed --uri "$MONGOLAKE_TEST_MONGO_URI" --db hims --docs "$DOCS" --seed 42

step "First sync: full load into $LAKE (mongolake sync --env demo)"
timed "$BIN" sync --env demo
echo "$(find "$LAKE" -name '*.parquet' | wc -l) parquet files in $LAKE"

step "Mutating 1% of the documents (mongolake mutate)"
timed "$BIN" mutate --uri "$MONGOLAKE_TEST_MONGO_URI" --db hims --fraction 0.01 --seed 43

step "Second sync: incremental (mongolake sync --env demo)"
timed "$BIN" sync --env demo

step "Some of the Parquet files (Hive partitions key=value)"
find "$LAKE" -name '*.parquet' | sort | sed -n '1,10p'
echo "... $(find "$LAKE" -name '*.parquet' | wc -l) in total"

step "Sync state ($LAKE/_mongolake/state/)"
if [ -d "$LAKE/_mongolake/state" ]; then
  find "$LAKE/_mongolake/state" -type f | sort | while read -r f; do
    echo "--- $f"
    if python3 -m json.tool "$f" >/dev/null 2>&1; then
      python3 -m json.tool "$f" | sed -n '1,40p'
    else
      sed -n '1,40p' "$f"
    fi
  done
else
  echo "(no $LAKE/_mongolake/state directory)"
fi

if [ -s "$MONGOLAKE_TEST_SMTP_DIR/index.jsonl" ]; then
  step "Mails the syncs sent (captured in $MONGOLAKE_TEST_SMTP_DIR)"
  cat "$MONGOLAKE_TEST_SMTP_DIR/index.jsonl"
fi

step "What an independent reader sees (pyarrow: tests/py/check_lake.py $LAKE --summary)"
python3 tests/py/check_lake.py "$LAKE" --summary

step "Done"
echo "The lake stays in $LAKE. Look inside with, for example:"
echo "  python3 tests/py/check_lake.py $LAKE --table hims/<collection> --dump | head -c 2000"
echo "  python3 -c \"import duckdb; print(duckdb.sql(\\\"select count(*) from read_parquet('$LAKE/hims/<collection>/**/*.parquet', hive_partitioning=true)\\\"))\""
