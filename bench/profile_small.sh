#!/usr/bin/env bash
# The profile behind the README's "Nights at production shape": `perf record` of one mongolake full load at the
# small-partition shape of `scripts/bench.sh --small` (3 databases x 5 collections x 6,666 documents over 142 days,
# every collection partitioned facility_id/date(created_at)), then perf's summary by library and by symbol.
#   bench/profile_small.sh            (needs perf, a release build: cargo build --release, and secantusd-rs)
#   MONGOLAKE_PROFILE_BIN=/tmp/base bench/profile_small.sh     (another build's binaries)
#   MONGOLAKE_PROFILE_STAT=1 bench/profile_small.sh            (no profile: user and system CPU, and the system
#                                                               calls by count, from strace -c; of the night
#                                                               with MONGOLAKE_PROFILE_NIGHT=1)
#   MONGOLAKE_PROFILE_CALLERS=1 bench/profile_small.sh         (call graphs from DWARF: what each function costs
#                                                               with what it calls; the data is kept)
#   MONGOLAKE_PROFILE_NIGHT=1 bench/profile_small.sh           (the night after: the full load unprofiled, then
#                                                               `mutate --fraction 0.01` and the night profiled)
#   MONGOLAKE_PROFILE_COMPARE="/tmp/base /tmp/new" bench/profile_small.sh
#                                                              (no profile: builds side by side on one night.
#                                                               The full load and the mutation once, with the
#                                                               first build; the lake before the night kept; then
#                                                               MONGOLAKE_PROFILE_REPS rounds (3) of each build's
#                                                               night from a fresh copy of it, MONGOLAKE_PROFILE_
#                                                               SETTLE seconds (40) after the copy, user, system
#                                                               and wall CPU by /usr/bin/time; at the end, whether
#                                                               the builds' tables are byte for byte the same)
#   MONGOLAKE_PROFILE_COMPARE="/tmp/base /tmp/new" MONGOLAKE_PROFILE_FULL=1 bench/profile_small.sh
#                                                              (the same side by side of the full load: each
#                                                               round, each build's full load into an empty lake)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mongolake-profile.XXXXXX")"
PORT="${MONGOLAKE_PROFILE_PORT:-27740}"
trap 'scripts/servers.sh stop "$WORK/servers" >/dev/null 2>&1 || true; rm -rf "$WORK/lake"' EXIT
MONGOLAKE_SERVERS=mongo MONGOLAKE_MONGO_PORT=$PORT scripts/servers.sh start "$WORK/servers" >/dev/null
URI="mongodb://127.0.0.1:$PORT/?directConnection=true"
BIN="${MONGOLAKE_PROFILE_BIN:-target/release}"
read -r -a COMPARE <<< "${MONGOLAKE_PROFILE_COMPARE:-}"
[ "${#COMPARE[@]}" -gt 0 ] && BIN="${COMPARE[0]}"
for d in 1 2 3; do "$BIN/mongolake" seed --uri "$URI" --db "hims$d" --docs 6666 --seed 42 --days 142 >/dev/null; done
mkdir -p "$WORK/cfg/environments"
{ echo "database,collection,timestamp_column,partition_by,key"
  for d in 1 2 3; do for c in patients visits bills lab_results pharmacy_stock; do
    echo "hims$d,$c,modified_at,facility_id/date(created_at),"; done; done; } > "$WORK/cfg/collections.csv"
printf '[mongodb]\nuri = "%s"\n[lake]\nurl = "%s/lake"\n[sync]\ntimezone = "Asia/Kolkata"\n' "$URI" "$WORK" \
  > "$WORK/cfg/environments/profile.toml"
SYNC=("$BIN/mongolake" sync --env profile --config-dir "$WORK/cfg" --no-email)
if [ "${MONGOLAKE_PROFILE_NIGHT:-0}" = 1 ]; then
  "${SYNC[@]}" >/dev/null
  for d in 1 2 3; do "$BIN/mongolake" mutate --uri "$URI" --db "hims$d" --fraction 0.01 --seed 42 --days 142 >/dev/null; done
fi
if [ "${#COMPARE[@]}" -gt 0 ]; then
  FULL="${MONGOLAKE_PROFILE_FULL:-0}"
  if [ "$FULL" = 1 ]; then
    mkdir -p "$WORK/lake-before-night"
  else
    "${SYNC[@]}" >"$WORK/full-load.log" 2>&1 || { cat "$WORK/full-load.log"; exit 1; }
    for d in 1 2 3; do "$BIN/mongolake" mutate --uri "$URI" --db "hims$d" --fraction 0.01 --seed 42 --days 142 >/dev/null; done
    mv "$WORK/lake" "$WORK/lake-before-night"
  fi
  for rep in $(seq "${MONGOLAKE_PROFILE_REPS:-3}"); do
    for i in "${!COMPARE[@]}"; do
      rm -rf "$WORK/lake"
      cp -a "$WORK/lake-before-night" "$WORK/lake"
      sleep "${MONGOLAKE_PROFILE_SETTLE:-40}" # (ext4: see bench.settle_deletes)
      printf '%s %s %s: ' "${COMPARE[$i]}" "$([ "$FULL" = 1 ] && echo "full load" || echo night)" "$rep"
      /usr/bin/time -f "user %U s, system %S s, wall %e s, peak %M KB" \
        "${COMPARE[$i]}/mongolake" sync --env profile --config-dir "$WORK/cfg" --no-email 2>&1 >/dev/null | tail -1
      rm -rf "$WORK/tables-$i"
      mkdir -p "$WORK/tables-$i"
      for d in 1 2 3; do cp -a "$WORK/lake/hims$d" "$WORK/tables-$i/"; done
    done
  done
  for i in "${!COMPARE[@]}"; do
    [ "$i" = 0 ] && continue
    if diff -r -q "$WORK/tables-0" "$WORK/tables-$i" >/dev/null; then
      echo "tables of ${COMPARE[$i]} and ${COMPARE[0]}: byte for byte the same"
    else
      echo "tables of ${COMPARE[$i]} and ${COMPARE[0]} differ: diff -r -q $WORK/tables-0 $WORK/tables-$i"
      KEEP=1
    fi
  done
  if [ "${KEEP:-0}" = 1 ]; then
    trap 'scripts/servers.sh stop "$WORK/servers" >/dev/null 2>&1 || true' EXIT
  else
    rm -rf "$WORK/lake-before-night" "$WORK"/tables-*
  fi
  exit 0
fi
if [ "${MONGOLAKE_PROFILE_STAT:-0}" = 1 ]; then
  # (with MONGOLAKE_PROFILE_NIGHT=1 the night is run twice from the same lake: timed, then under strace)
  [ "${MONGOLAKE_PROFILE_NIGHT:-0}" = 1 ] && cp -a "$WORK/lake" "$WORK/lake-before-night"
  /usr/bin/time -f "user %U s, system %S s, wall %e s, peak %M KB" "${SYNC[@]}" 2>&1 >/dev/null | tail -1
  rm -rf "$WORK/lake"
  [ "${MONGOLAKE_PROFILE_NIGHT:-0}" = 1 ] && mv "$WORK/lake-before-night" "$WORK/lake"
  sleep 30 # (ext4: a lake just deleted slows the next one's creates; see bench.settle_deletes)
  strace -f -c -o "$WORK/strace.txt" "${SYNC[@]}" >/dev/null 2>&1 || true
  head -25 "$WORK/strace.txt"
  exit 0
fi
if [ "${MONGOLAKE_PROFILE_CALLERS:-0}" = 1 ]; then
  perf record -F 499 --call-graph dwarf,32768 -o "$WORK/perf.data" "${SYNC[@]}" 2>/dev/null \
    | grep -o "partitions written.*CPU.*" || true
  perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep "%" \
    | grep -v "^#" | head -60
  trap 'scripts/servers.sh stop "$WORK/servers" >/dev/null 2>&1 || true; rm -rf "$WORK/lake"' EXIT
  echo "perf data: $WORK/perf.data"
  exit 0
fi
perf record -F 999 -g -o "$WORK/perf.data" "${SYNC[@]}" 2>/dev/null | grep -o "partitions written.*CPU.*" || true
perf report -i "$WORK/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep "%" | head -5
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep "%" | grep -v "^#" | head -30
echo "perf data: $WORK/perf.data"
