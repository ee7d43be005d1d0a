#!/usr/bin/env bash
# THE test command (README and CI call it).
#   scripts/test.sh [nextest/cargo-test arguments...]
# 1. scripts/install-tools.sh (idempotent: secantusd-rs, moto, aiosmtpd, pyarrow, duckdb)
# 2. scripts/servers.sh start TMPDIR: MongoDB-compatible server, S3, SMTP capture on 127.0.0.1,
#    and sources TMPDIR/env.sh (MONGOLAKE_TEST_MONGO_URI, MONGOLAKE_TEST_S3_ENDPOINT,
#    MONGOLAKE_TEST_SMTP_PORT, MONGOLAKE_TEST_SMTP_DIR, AWS_* test credentials)
# 3. cargo nextest run --no-fail-fast "$@" (cargo test --no-fail-fast "$@" without nextest)
# The servers are always stopped on exit. The exit code is the test runner's.
# MONGOLAKE_KEEP_TEST_DIR=1 keeps the servers' temp dir (logs, data, mails) for a post-mortem.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/install-tools.sh"

SERVERS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mongolake-test.XXXXXX")"
# shellcheck disable=SC2317 # called by traps
cleanup() {
  "$ROOT/scripts/servers.sh" stop "$SERVERS_DIR" || true
  if [ "${MONGOLAKE_KEEP_TEST_DIR:-0}" = 1 ]; then
    echo "[test] servers' logs and data kept in $SERVERS_DIR" >&2
  else
    rm -rf "$SERVERS_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A watchdog stops the servers (and deletes their dir) should this script die without running its traps.
if [ "${MONGOLAKE_KEEP_TEST_DIR:-0}" = 1 ]; then clean=0; else clean=1; fi
MONGOLAKE_SERVERS_WATCH_PID=$$ MONGOLAKE_SERVERS_WATCH_CLEAN=$clean "$ROOT/scripts/servers.sh" start "$SERVERS_DIR"
# shellcheck disable=SC1091
. "$SERVERS_DIR/env.sh"
# The independent lake reader the integration tests call.
export MONGOLAKE_TEST_CHECK_LAKE="$ROOT/tests/py/check_lake.py"

rc=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@" || rc=$?
else
  echo "[test] cargo-nextest not found: falling back to cargo test" >&2
  cargo test --no-fail-fast "$@" || rc=$?
fi
exit "$rc"
