#!/usr/bin/env bash
# The benchmark of issue 6 in one command: raw drain vs mongolake vs a PyMongoArrow + pyarrow sync, full load and
# incremental, on data seeded with mongolake's generator. See bench/README.md.
#   scripts/bench.sh                                 # 1,000,000 documents, 3 repetitions, ranges 1,2,4
#   scripts/bench.sh --docs 20000 --reps 1           # a quick check
#   scripts/bench.sh --sizes 100000,1000000,5000000  # scaling with size
#   scripts/bench.sh --shard --workers 2             # sync --shard K/N: one worker vs N on this machine
#                                                    # (bench/shard.py --help; --uri/--db reuse a seeded server)
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

log "cargo build --release --bins"
cargo build --release --bins

if [ "${1:-}" = --shard ]; then
  shift
  exec "$VENV/bin/python" "$ROOT/bench/shard.py" "$@"
fi
exec python3 "$ROOT/bench/run.py" --python "$VENV/bin/python" --command "scripts/bench.sh${*:+ $*}" "$@"
