#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster with logical replication on, for tests and the demo.
#
#   scripts/pg.sh start DIR [PORT]        initdb in DIR/data and start it (trust auth, 127.0.0.1 only,
#                                         socket in DIR); prints postgres://postgres@127.0.0.1:PORT/postgres
#                                         as the last line on stdout
#   scripts/pg.sh start-tls DIR [PORT]    as start, but with TLS and SCRAM (for the security tests):
#                                         makes a test CA and, in DIR/tls, ca.crt, a server certificate
#                                         for IP 127.0.0.1 only (so verify-full to "localhost" fails),
#                                         client.crt/client.key (CN tailbox_cert) and other-ca.crt (an
#                                         unrelated CA); ssl = on, password_encryption = scram-sha-256;
#                                         pg_hba: postgres trusted (the tests' admin connections), the
#                                         role tailbox_cert by client certificate over TLS, every other
#                                         role by SCRAM over TLS only (plain TCP rejected)
#   scripts/pg.sh restart DIR [fast|immediate]   pg_ctl restart (default mode: fast)
#   scripts/pg.sh copy SRC DIR [--standby]
#                                         a cold copy of SRC's cluster (same system identifier, same
#                                         slots, same WAL): SRC is stopped, its data copied to DIR/data,
#                                         and SRC started again (same port); then the copy is started on
#                                         a port of its own (--standby: with standby.signal, so it stays
#                                         in recovery until `promote`); prints the copy's URL last
#   scripts/pg.sh promote DIR             pg_ctl promote -w: the server leaves recovery on a new timeline
#   scripts/pg.sh stop DIR                pg_ctl stop -m fast, then rm -rf DIR
#   scripts/pg.sh status DIR              exit 0 if the server of DIR runs
#
# `start` on a DIR that was initialised before but isn't running starts it again
# (same data, same port). Without PORT it picks a free port (and retries with
# another one if someone takes it first).
#
# As root, the server runs as the OS user `postgres` (PostgreSQL refuses root);
# DIR must be reachable by that user (every parent directory searchable).
#
# Environment:
#   TAILBOX_PG_BIN         PostgreSQL bin dir (default /usr/lib/postgresql/15/bin)
#   TAILBOX_PG_PARENT_PID  if set, a watchdog stops the server and removes DIR when that process dies
set -euo pipefail

SCRIPT_NAME="pg.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"

PG_BIN="${TAILBOX_PG_BIN:-/usr/lib/postgresql/15/bin}"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# as_pg CMD...: run CMD as the postgres OS user when we are root.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

check_tools() {
  [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/postgres" ]] ||
    die "PostgreSQL 15 server binaries not found in $PG_BIN: run scripts/install-deps.sh"
  if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 ||
      die "running as root but there is no 'postgres' OS user: run scripts/install-deps.sh"
  fi
}

postmaster_pid() { # postmaster_pid DATA: the pid in postmaster.pid, or nothing
  head -n 1 "$1/postmaster.pid" 2>/dev/null || true
}

# make_certs DIR: a throwaway CA, a server certificate for 127.0.0.1, a client certificate
# for the role tailbox_cert, and an unrelated CA, all EC P-256, valid for 10 years.
make_certs() {
  local d="$1"
  mkdir -p "$d"
  if ! (
    set -e
    cd "$d"
    test_pki tailbox
    printf 'basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n' >client.ext
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.key
    openssl req -new -key client.key -subj /CN=tailbox_cert -config req.cnf -out client.csr
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out client.crt
    rm -f ./*.csr ./*.srl ./*.cnf ./*.ext ca.key other-ca.key
    chmod 600 ./*.key
  ) >"$d/openssl.log" 2>&1; then
    cat "$d/openssl.log" >&2
    die "making the test certificates failed"
  fi
  if [[ "$(id -u)" == 0 ]]; then
    chown -R postgres: "$d"
  fi
}

cmd_start() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  check_tools
  local dir port="${2:-}" data logfile
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
  data="$dir/data"
  logfile="$dir/postgres.log"
  [[ ${#dir} -le 80 ]] || die "DIR path too long for a unix socket path: $dir"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres: "$dir"
    chmod 0700 "$dir"
    as_pg test -w "$dir" ||
      die "the postgres OS user cannot write $dir (a parent directory is not searchable?)"
  fi
  if [[ -f "$data/postmaster.pid" ]] && alive "$(postmaster_pid "$data")"; then
    die "a server already runs for $dir (pid $(postmaster_pid "$data"))"
  fi

  if [[ ! -f "$data/PG_VERSION" ]]; then
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale \
      --no-instructions >"$dir/initdb.log" 2>&1; then
      cat "$dir/initdb.log" >&2
      die "initdb failed"
    fi
    if [[ "${PG_TLS:-}" == 1 ]]; then
      make_certs "$dir/tls"
      cat >"$data/pg_hba.conf" <<'EOF'
# written by scripts/pg.sh start-tls: the superuser postgres trusted (tests' admin connections),
# tailbox_cert by client certificate, everyone else by SCRAM, both over TLS only
local     all          all                            trust
host      all          postgres        127.0.0.1/32   trust
local     replication  all                            trust
host      replication  postgres        127.0.0.1/32   trust
hostssl   all          tailbox_cert    127.0.0.1/32   cert
hostnossl all          all             127.0.0.1/32   reject
hostssl   all          all             127.0.0.1/32   scram-sha-256
EOF
    else
      cat >"$data/pg_hba.conf" <<'EOF'
# written by scripts/pg.sh: trust everything local, nothing remote
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
EOF
    fi
    cat >>"$data/postgresql.conf" <<EOF

# --- scripts/pg.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
wal_sender_timeout = 10s
max_connections = 60
shared_buffers = 32MB
dynamic_shared_memory_type = posix
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%a '
include_if_exists = 'port.conf'
EOF
    if [[ "${PG_TLS:-}" == 1 ]]; then
      cat >>"$data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
ssl_ca_file = '$dir/tls/ca.crt'
password_encryption = 'scram-sha-256'
EOF
    fi
  fi

  local attempts=1 pick=""
  [[ -n "$port" ]] || {
    pick=1
    attempts=5
    # a restart of an initialised DIR keeps its port
    port="$(sed -n "s/^port = //p" "$data/port.conf" 2>/dev/null || true)"
  }
  local i
  for ((i = 1; i <= attempts; i++)); do
    [[ -n "$port" ]] || port="$(free_ports 1)"
    echo "port = $port" | as_pg tee "$data/port.conf" >/dev/null
    local offset=0
    [[ -f "$logfile" ]] && offset="$(stat -c %s "$logfile")"
    if [[ "$(id -u)" == 0 && ! -f "$logfile" ]]; then
      touch "$logfile"
      chown postgres: "$logfile"
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t 60 -s start >/dev/null 2>"$dir/pg_ctl.err"; then
      break
    fi
    if [[ -n "$pick" && "$i" -lt "$attempts" ]] &&
      tail -c "+$((offset + 1))" "$logfile" | grep -q 'could not bind\|Address already in use'; then
      log "port $port was taken, trying another one"
      port=""
      continue
    fi
    cat "$dir/pg_ctl.err" >&2
    tail -c "+$((offset + 1))" "$logfile" | tail -n 30 >&2
    die "pg_ctl start failed (log: $logfile)"
  done

  local pid
  pid="$(postmaster_pid "$data")"
  if [[ -n "${TAILBOX_PG_PARENT_PID:-}" ]]; then
    # watches DIR, not the postmaster's pid, so that it outlives `restart`
    start_watchdog "$TAILBOX_PG_PARENT_PID" "$data/PG_VERSION" "$dir/watchdog.pid" \
      "$SCRIPT_DIR/pg.sh" stop "$dir"
  fi
  log "postgres pid $pid ready on 127.0.0.1:$port (dir $dir)"
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

cmd_restart() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  check_tools
  local dir="$1" mode="${2:-fast}"
  [[ "$mode" == fast || "$mode" == immediate || "$mode" == smart ]] || die "bad mode: $mode"
  [[ -f "$dir/data/PG_VERSION" ]] || die "no cluster in $dir"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -m "$mode" -w -t 60 -s restart >/dev/null ||
    die "pg_ctl restart failed (log: $dir/postgres.log)"
  log "restarted ($mode), postgres pid $(postmaster_pid "$dir/data")"
}

cmd_copy() {
  [[ $# -ge 2 && $# -le 3 ]] || usage
  check_tools
  local src="$1" dir="$2" standby="${3:-}"
  [[ -z "$standby" || "$standby" == --standby ]] || usage
  [[ -f "$src/data/PG_VERSION" ]] || die "no cluster in $src"
  [[ ! -e "$dir/data" ]] || die "$dir/data exists already"
  mkdir -p "$dir"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres: "$dir"
    chmod 0700 "$dir"
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$src/data" -m fast -w -t 60 -s stop >/dev/null ||
    die "pg_ctl stop of $src failed"
  as_pg cp -a "$src/data" "$dir/data"
  # (SRC keeps the watchdog it has.)
  TAILBOX_PG_PARENT_PID="" cmd_start "$src" >/dev/null
  # The copy gets its own socket directory and port, and a log of its own.
  as_pg rm -f "$dir/data/port.conf" "$dir/data/postmaster.pid"
  as_pg sed -i "s|^unix_socket_directories = .*|unix_socket_directories = '$dir'|" "$dir/data/postgresql.conf"
  [[ -z "$standby" ]] || as_pg touch "$dir/data/standby.signal"
  cmd_start "$dir"
}

cmd_promote() {
  [[ $# -eq 1 ]] || usage
  check_tools
  as_pg "$PG_BIN/pg_ctl" -D "$1/data" -w -t 60 -s promote >/dev/null || die "pg_ctl promote failed"
  log "promoted $1"
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage
  local dir="$1" wd pid
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/watchdog.pid" ]]; then
    wd="$(cat "$dir/watchdog.pid")"
    # don't kill ourselves when the watchdog is what runs this stop
    if [[ "$wd" != "$$" && "$wd" != "$PPID" ]] && alive "$wd"; then
      kill -TERM "$wd" 2>/dev/null || true
    fi
  fi
  pid="$(postmaster_pid "$dir/data")"
  if alive "$pid"; then
    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 -s stop >/dev/null 2>&1; then
      log "fast stop failed, stopping immediately"
      as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 -s stop >/dev/null 2>&1 ||
        kill_wait "$pid" 5 || true
    fi
  fi
  rm -rf "$dir"
}

cmd_status() {
  [[ $# -eq 1 ]] || usage
  alive "$(postmaster_pid "$1/data")"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  start) cmd_start "$@" ;;
  start-tls) PG_TLS=1 cmd_start "$@" ;;
  restart) cmd_restart "$@" ;;
  copy) cmd_copy "$@" ;;
  promote) cmd_promote "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  *) usage ;;
  esac
}

main "$@"
