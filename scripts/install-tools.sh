#!/usr/bin/env bash
# Installs everything mongolake's demo, tests and benchmarks need that is not a Rust crate of the project:
#   - cmake (apt) to build SecantusDB's WiredTiger
#   - secantusd-rs (crates.io, GPL-2.0: installed as a separate daemon, never linked into mongolake)
#   - moto_server (S3), aiosmtpd (SMTP), pyarrow + duckdb (independent lake readers) from PyPI
#   - pyspark (PyPI) and a Java 17+ runtime (apt) for tests/py/spark_check.py, which reads the lake through the
#     generated Athena DDL
#   - chromium (apt, Debian's package) to render the report mail's HTML headless in tests/report_html.rs
#   - boto3 (PyPI; moto's own dependency) for tests/py/check_sse.py
# Idempotent: each step is skipped when its tool is already present.
set -euo pipefail
TOOLS="${MONGOLAKE_TOOLS:-$HOME/.cache/mongolake-tools}"
SECANTUS_VERSION="0.5.3-beta.196"
CARGO_DENY_VERSION="0.20.2"
mkdir -p "$TOOLS"
log() { printf '[install-tools] %s\n' "$*" >&2; }

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl) # test certificates (scripts/servers.sh)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium) # the report's HTML, rendered (tests/report_html.rs)
# Spark 4 runs on Java 17 or newer.
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)"
[ "${java_major:-0}" -ge 17 ] 2>/dev/null || need_apt+=(openjdk-17-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$TOOLS/bin/cargo-deny" ]; then
  log "building cargo-deny $CARGO_DENY_VERSION into $TOOLS (about 3 minutes, once)"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --root "$TOOLS"
fi

if [ ! -x "$TOOLS/bin/secantusd-rs" ]; then
  log "building secantusd-rs $SECANTUS_VERSION into $TOOLS (about 10 minutes, once)"
  cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version --locked --root "$TOOLS" \
    || cargo install secantus-mdb --version "$SECANTUS_VERSION" --ignore-rust-version --root "$TOOLS"
fi

need_pip=()
python3 -c 'import moto.server' 2>/dev/null || need_pip+=('moto[server]')
python3 -c 'import aiosmtpd' 2>/dev/null || need_pip+=('aiosmtpd')
python3 -c 'import boto3' 2>/dev/null || need_pip+=('boto3')
python3 -c 'import pyarrow' 2>/dev/null || need_pip+=('pyarrow')
python3 -c 'import duckdb' 2>/dev/null || need_pip+=('duckdb')
python3 -c 'import pyspark' 2>/dev/null || need_pip+=('pyspark==4.3.0')
python3 -c 'import sqlglot' 2>/dev/null || need_pip+=('sqlglot')
if [ ${#need_pip[@]} -gt 0 ]; then
  log "pip install ${need_pip[*]}"
  python3 -m pip install -q "${need_pip[@]}"
fi
log "tools ready in $TOOLS"
