#!/usr/bin/env bash
# Starts / stops the local servers mongolake's tests and demo talk to, all on 127.0.0.1 only:
#   mongo : secantusd-rs (MongoDB wire protocol)   port MONGOLAKE_MONGO_PORT (default 27217)
#   s3    : moto_server (S3 API)                    port MONGOLAKE_S3_PORT    (default 5000)
#   smtp  : scripts/smtp_capture.py (aiosmtpd)      port MONGOLAKE_SMTP_PORT  (default 2525)
#   mongosecure : secantusd-rs with --auth (SCRAM-SHA-256) and mutual TLS, for the security tests
#                                                   port MONGOLAKE_SECURE_MONGO_PORT (default 27218)
# A test CA (DIR/tls/ca.pem) and a certificate it signs for 127.0.0.1/localhost (cert.pem, key.pem) are made for
# the TLS servers.
# A busy port is skipped for the next free one.
#
# Usage:
#   scripts/servers.sh start DIR   # logs, pid files, data in DIR; waits until all are ready;
#                                  # writes DIR/env.sh (source it) with the MONGOLAKE_TEST_* variables
#   scripts/servers.sh stop DIR    # SIGTERM what start started, SIGKILL after 10 s
# Optional: MONGOLAKE_SERVERS="mongo s3 smtp" (a subset to start only some),
#           MONGOLAKE_SERVERS_WATCH_PID=PID (a watchdog stops the servers when PID dies, e.g. the
#             caller's $$, in case it is killed before its trap runs; with MONGOLAKE_SERVERS_WATCH_CLEAN=1
#             it then also deletes DIR),
#           MONGOLAKE_SERVER_TIMEOUT=60 (seconds to wait for each server to be ready),
#           MONGOLAKE_TOOLS (where install-tools.sh put bin/secantusd-rs).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
TOOLS="${MONGOLAKE_TOOLS:-$HOME/.cache/mongolake-tools}"
PYTHON="${PYTHON:-python3}"
TIMEOUT="${MONGOLAKE_SERVER_TIMEOUT:-60}"
SERVERS="${MONGOLAKE_SERVERS:-mongo mongosecure s3 smtp}"
HOST=127.0.0.1

log() { printf '[servers] %s\n' "$*" >&2; }
die() { printf '[servers] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  echo "usage: $0 start DIR | stop DIR" >&2
  exit 2
}

# Start time of a process (field 22 of /proc/PID/stat), to never signal a recycled pid.
proc_start() {
  local s
  s="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  s="${s##*) }"
  # shellcheck disable=SC2086
  set -- $s
  printf '%s\n' "${20}"
}

# True while the process runs (a zombie counts as gone: it may never be reaped in a container).
is_alive() {
  local pid="$1" s
  if [ -r "/proc/$pid/stat" ]; then
    s="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    s="${s##*) }"
    [ "${s%% *}" != Z ]
  else
    kill -0 "$pid" 2>/dev/null
  fi
}

# True when nothing listens on HOST:PORT (bind probe with SO_REUSEADDR, as the servers themselves bind).
port_free() {
  "$PYTHON" - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

CLAIMED=" "
# Prints the first free port >= $1 not already taken by this script.
pick_port() {
  local p="$1" last=$(($1 + 200))
  while [ "$p" -le "$last" ]; do
    if [[ "$CLAIMED" != *" $p "* ]] && port_free "$p"; then
      printf '%s\n' "$p"
      return 0
    fi
    p=$((p + 1))
  done
  die "no free port in $1..$last"
}

# launch NAME LOGFILE CMD... : runs CMD in its own session, records "pid starttime" in DIR/NAME.pid.
launch() {
  local name="$1" logf="$2"
  shift 2
  : >"$logf"
  # The inner shell writes its own pid, then execs the server, so the pid is the server's.
  # shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$DIR/$name.pid.tmp" "$@" </dev/null >>"$logf" 2>&1 &
  local i=0
  while [ ! -s "$DIR/$name.pid.tmp" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  local pid
  pid="$(cat "$DIR/$name.pid.tmp" 2>/dev/null)" || die "$name: could not launch $*"
  printf '%s %s\n' "$pid" "$(proc_start "$pid" || echo -)" >"$DIR/$name.pid"
  rm -f "$DIR/$name.pid.tmp"
  printf '%s\n' "$pid"
}

fail_with_log() {
  local name="$1" logf="$2" why="$3"
  {
    printf '[servers] ERROR: %s %s\n' "$name" "$why"
    printf '[servers] last lines of %s:\n' "$logf"
    tail -n 30 "$logf" 2>/dev/null | sed 's/^/    /'
  } >&2
}

# wait_ready NAME PID LOGFILE CHECK... : polls CHECK until it succeeds, the process dies, or TIMEOUT.
# Returns 0 ready, 1 timeout, 3 process exited.
wait_ready() {
  local name="$1" pid="$2" logf="$3"
  shift 3
  local deadline=$((SECONDS + TIMEOUT))
  while [ $SECONDS -lt "$deadline" ]; do
    if "$@"; then return 0; fi
    if ! is_alive "$pid"; then return 3; fi
    sleep 0.2
  done
  "$@" && return 0
  return 1
}

# Single-quotes a value for a shell (env.sh stays readable and parseable by non-shells).
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

log_has() { grep -q -- "$2" "$1" 2>/dev/null; }
http_answers() { curl -s -o /dev/null --max-time 2 "http://$HOST:$1/"; }

# start_one NAME DEFAULT_PORT : launches with retries on the next port if the server dies at startup
# (another process may grab the port between our probe and its bind). Sets PORT_<NAME>.
start_one() {
  local name="$1" port="$2" attempt pid rc logf="$DIR/$1.log"
  for attempt in 1 2 3; do
    port="$(pick_port "$port")"
    CLAIMED="$CLAIMED$port "
    case "$name" in
      mongo)
        mkdir -p "$DIR/mongo"
        local args=(--host "$HOST" --port "$port" --storage-path "$DIR/mongo" --cache-size 1G --log-level WARNING)
        local help
        help="$(timeout -k 2 10 "$SECANTUS" --help 2>&1 </dev/null || true)"
        if grep -q -- '--oplog-max-entries' <<<"$help"; then
          args+=(--oplog-max-entries 1000000)
        fi
        if grep -q -- '--config PATH' <<<"$help"; then
          # An empty config file of our own: no ./secantusd.toml or ~/.secantus/ is picked up.
          : >"$DIR/secantusd.toml"
          args+=(--config "$DIR/secantusd.toml")
        fi
        pid="$(launch mongo "$logf" "$SECANTUS" "${args[@]}")"
        rc=0; wait_ready mongo "$pid" "$logf" log_has "$logf" 'listening on' || rc=$?
        ;;
      mongosecure)
        mkdir -p "$DIR/mongosecure"
        : >"$DIR/secantusd-secure.toml"
        pid="$(launch mongosecure "$logf" "$SECANTUS" --host "$HOST" --port "$port" --storage-path "$DIR/mongosecure" \
          --cache-size 256M --log-level WARNING --config "$DIR/secantusd-secure.toml" --auth \
          --tls-cert-file "$DIR/tls/cert.pem" --tls-key-file "$DIR/tls/key.pem" \
          --tls-ca-file "$DIR/tls/ca.pem" --tls-require-client-cert)"
        rc=0; wait_ready mongosecure "$pid" "$logf" log_has "$logf" 'listening on' || rc=$?
        ;;
      s3)
        pid="$(launch s3 "$logf" "${MOTO[@]}" -H "$HOST" -p "$port")"
        rc=0; wait_ready s3 "$pid" "$logf" http_answers "$port" || rc=$?
        ;;
      smtp)
        mkdir -p "$DIR/smtp"
        pid="$(launch smtp "$logf" "$PYTHON" -u "$SCRIPT_DIR/smtp_capture.py" --host "$HOST" --port "$port" --dir "$DIR/smtp")"
        rc=0; wait_ready smtp "$pid" "$logf" log_has "$logf" 'smtp_capture listening on' || rc=$?
        ;;
    esac
    case "$rc" in
      0)
        log "$name ready on $HOST:$port (pid $pid, log $logf)"
        printf -v "PORT_$name" '%s' "$port"
        return 0
        ;;
      3)
        if grep -qiE 'address already in use|addrinuse|errno 98' "$logf" 2>/dev/null && [ "$attempt" -lt 3 ]; then
          log "$name: port $port was taken meanwhile, trying the next one"
          cp "$logf" "$logf.attempt$attempt"
          port=$((port + 1))
          continue
        fi
        fail_with_log "$name" "$logf" "exited during startup (port $port)"
        return 1
        ;;
      *)
        fail_with_log "$name" "$logf" "was not ready after ${TIMEOUT}s (port $port)"
        return 1
        ;;
    esac
  done
  return 1
}

cmd_start() {
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  local name
  for name in mongo mongosecure s3 smtp; do
    if [ -s "$DIR/$name.pid" ]; then
      local pid
      read -r pid _ <"$DIR/$name.pid" || true
      if [ -n "${pid:-}" ] && is_alive "$pid"; then
        die "$name already running from $DIR (pid $pid): run '$0 stop $DIR' first"
      fi
      rm -f "$DIR/$name.pid"
    fi
  done

  command -v curl >/dev/null 2>&1 || die "curl is required"
  if [ ! -s "$DIR/tls/cert.pem" ]; then
    command -v openssl >/dev/null 2>&1 || die "openssl is required (apt-get install openssl)"
    mkdir -p "$DIR/tls"
    # A test CA and a server certificate it signs: rustls refuses a self-signed CA certificate as a server's
    # (CaUsedAsEndEntity) and insists on a subjectAltName.
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >"$DIR/tls/leaf.ext"
    { openssl req -x509 -newkey rsa:2048 -nodes -keyout "$DIR/tls/ca.key" -out "$DIR/tls/ca.pem" -days 3650 \
        -subj /CN=mongolake-test-ca &&
      openssl req -newkey rsa:2048 -nodes -keyout "$DIR/tls/key.pem" -out "$DIR/tls/server.csr" -subj /CN=localhost &&
      openssl x509 -req -in "$DIR/tls/server.csr" -CA "$DIR/tls/ca.pem" -CAkey "$DIR/tls/ca.key" -CAcreateserial \
        -out "$DIR/tls/cert.pem" -days 3650 -extfile "$DIR/tls/leaf.ext" &&
      openssl req -newkey rsa:2048 -nodes -keyout "$DIR/tls/client.key" -out "$DIR/tls/client.csr" -subj /CN=mongolake &&
      openssl x509 -req -in "$DIR/tls/client.csr" -CA "$DIR/tls/ca.pem" -CAkey "$DIR/tls/ca.key" -CAcreateserial \
        -out "$DIR/tls/client.crt" -days 3650 -extfile "$DIR/tls/leaf.ext" &&
      cat "$DIR/tls/client.crt" "$DIR/tls/client.key" >"$DIR/tls/client.pem"; } >/dev/null 2>&1 \
      || die "openssl could not make the test certificates"
  fi
  if [[ " $SERVERS " == *" mongo"* ]]; then
    if [ -x "$TOOLS/bin/secantusd-rs" ]; then
      SECANTUS="$TOOLS/bin/secantusd-rs"
    elif command -v secantusd-rs >/dev/null 2>&1; then
      SECANTUS="$(command -v secantusd-rs)"
    else
      die "secantusd-rs not found in $TOOLS/bin or PATH: run scripts/install-tools.sh"
    fi
  fi
  if [[ " $SERVERS " == *" s3 "* ]]; then
    if command -v moto_server >/dev/null 2>&1; then
      MOTO=(moto_server)
    elif "$PYTHON" -c 'import moto.server' 2>/dev/null; then
      MOTO=("$PYTHON" -m moto.server)
    else
      die "moto_server not found: run scripts/install-tools.sh"
    fi
  fi
  if [[ " $SERVERS " == *" smtp "* ]]; then
    "$PYTHON" -c 'import aiosmtpd' 2>/dev/null || die "python module aiosmtpd missing: run scripts/install-tools.sh"
  fi

  local ok=1
  for name in $SERVERS; do
    case "$name" in
      mongo) start_one mongo "${MONGOLAKE_MONGO_PORT:-27217}" || { ok=0; break; } ;;
      mongosecure) start_one mongosecure "${MONGOLAKE_SECURE_MONGO_PORT:-27218}" || { ok=0; break; } ;;
      s3) start_one s3 "${MONGOLAKE_S3_PORT:-5000}" || { ok=0; break; } ;;
      smtp) start_one smtp "${MONGOLAKE_SMTP_PORT:-2525}" || { ok=0; break; } ;;
      *) log "unknown server '$name' in MONGOLAKE_SERVERS (known: mongo mongosecure s3 smtp)"; ok=0; break ;;
    esac
  done
  if [ "$ok" != 1 ]; then
    cmd_stop >/dev/null 2>&1 || true
    exit 1
  fi

  if [ -n "${MONGOLAKE_SERVERS_WATCH_PID:-}" ]; then
    local wpid
    wpid="$(launch watchdog "$DIR/watchdog.log" "$SELF" __watch "$MONGOLAKE_SERVERS_WATCH_PID" "$DIR")"
    log "watchdog (pid $wpid) stops the servers if pid $MONGOLAKE_SERVERS_WATCH_PID dies"
  fi

  {
    echo "# written by scripts/servers.sh start $DIR"
    if [ -n "${PORT_mongo:-}" ]; then
      printf 'export MONGOLAKE_TEST_MONGO_URI=%s\n' "$(shq "mongodb://$HOST:$PORT_mongo/?directConnection=true")"
    fi
    if [ -n "${PORT_mongosecure:-}" ]; then
      # Users are created by the tests (the first through the localhost exception) with this admin password.
      printf 'export MONGOLAKE_TEST_SECURE_MONGO_HOST=%s\n' "$(shq "$HOST:$PORT_mongosecure")"
      printf 'export MONGOLAKE_TEST_SECURE_MONGO_ADMIN_PASSWORD=%s\n' "$(shq "test-admin-not-a-secret")"
    fi
    # The CA that signed the servers' certificate (DIR/tls/cert.pem, key DIR/tls/key.pem).
    printf 'export MONGOLAKE_TEST_TLS_CA=%s\n' "$(shq "$DIR/tls/ca.pem")"
    printf 'export MONGOLAKE_TEST_TLS_CERT=%s\n' "$(shq "$DIR/tls/cert.pem")"
    printf 'export MONGOLAKE_TEST_TLS_KEY=%s\n' "$(shq "$DIR/tls/key.pem")"
    # A client certificate (with its key) the CA signed: mongosecure requires one (mutual TLS).
    printf 'export MONGOLAKE_TEST_TLS_CLIENT_PEM=%s\n' "$(shq "$DIR/tls/client.pem")"
    if [ -n "${PORT_s3:-}" ]; then
      printf 'export MONGOLAKE_TEST_S3_ENDPOINT=%s\n' "$(shq "http://$HOST:$PORT_s3")"
    fi
    if [ -n "${PORT_smtp:-}" ]; then
      printf 'export MONGOLAKE_TEST_SMTP_HOST=%s\n' "$(shq "$HOST")"
      printf 'export MONGOLAKE_TEST_SMTP_PORT=%s\n' "$(shq "$PORT_smtp")"
      printf 'export MONGOLAKE_TEST_SMTP_DIR=%s\n' "$(shq "$DIR/smtp")"
    fi
    echo 'export AWS_ACCESS_KEY_ID=test'
    echo 'export AWS_SECRET_ACCESS_KEY=test'
    echo 'export AWS_DEFAULT_REGION=us-east-1'
  } >"$DIR/env.sh.tmp"
  mv "$DIR/env.sh.tmp" "$DIR/env.sh"
  log "all ready; source $DIR/env.sh"
}

cmd_stop() {
  [ -d "$DIR" ] || { log "nothing to stop: $DIR does not exist"; return 0; }
  local name pid start pids=() names=()
  for name in watchdog mongo mongosecure s3 smtp; do
    [ -s "$DIR/$name.pid" ] || continue
    pid=""; start=""
    read -r pid start <"$DIR/$name.pid" || true
    if [ "$pid" = "$$" ]; then
      : # the watchdog stopping the servers itself
    elif [ -n "$pid" ] && is_alive "$pid"; then
      if [ -n "$start" ] && [ "$start" != - ] && [ "$(proc_start "$pid" || true)" != "$start" ]; then
        log "$name: pid $pid is no longer ours, not signalling it"
      else
        # Each server leads its own session (setsid), so signal its whole group.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
        names+=("$name")
      fi
    fi
    rm -f "$DIR/$name.pid"
  done
  local tries=0 i still
  while :; do
    still=0
    for i in "${!pids[@]}"; do
      is_alive "${pids[$i]}" && still=1
    done
    [ "$still" = 0 ] && break
    if [ "$tries" -ge 50 ]; then # 50 x 0.2 s
      for i in "${!pids[@]}"; do
        if is_alive "${pids[$i]}"; then
          log "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for 10 s: SIGKILL"
          kill -KILL -- "-${pids[$i]}" 2>/dev/null || kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
      done
      break
    fi
    sleep 0.2
    tries=$((tries + 1))
  done
  rm -f "$DIR/env.sh"
  [ ${#names[@]} -gt 0 ] && log "stopped: ${names[*]}"
  return 0
}

# Internal: the watchdog started by `start` when MONGOLAKE_SERVERS_WATCH_PID is set.
cmd_watch() {
  local wpid="$1" wstart
  wstart="$(proc_start "$wpid" || echo -)"
  while is_alive "$wpid" && [ "$(proc_start "$wpid" || echo -)" = "$wstart" ]; do
    sleep 1
  done
  log "pid $wpid is gone: stopping the servers of $DIR"
  cmd_stop
  if [ "${MONGOLAKE_SERVERS_WATCH_CLEAN:-0}" = 1 ]; then
    rm -rf "$DIR"
  fi
}

if [ "${1:-}" = __watch ] && [ $# -eq 3 ]; then
  DIR="$3"
  cmd_watch "$2"
  exit 0
fi
[ $# -eq 2 ] || usage
DIR="$2"
case "$1" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  *) usage ;;
esac
