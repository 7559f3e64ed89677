#!/usr/bin/env bash
# A throwaway Redis server (Debian's redis-server) for tests and the demo: 127.0.0.1
# only, data and log in DIR, append-only file on with appendfsync always (an entry
# Redis acknowledged survives a kill), no RDB snapshots.
#
#   scripts/redis.sh start DIR [PORT]   start a server whose data lives in DIR; prints
#                                       redis://127.0.0.1:PORT as the last line on stdout.
#                                       `start` on a DIR that held a server before starts
#                                       it again on the same port with the same data
#   scripts/redis.sh start-tls DIR [PORT]
#                                       as start, but TLS only: a throwaway CA and a server
#                                       certificate for IP 127.0.0.1 in DIR/tls (ca.crt,
#                                       other-ca.crt: an unrelated CA); prints
#                                       rediss://127.0.0.1:PORT
#   scripts/redis.sh kill DIR           SIGKILL (what a crash does)
#   scripts/redis.sh stop DIR           SHUTDOWN (or SIGKILL), then rm -rf DIR
#   scripts/redis.sh status DIR         exit 0 if the server of DIR runs
#
# Environment:
#   TAILBOX_REDIS_PASSWORD    if set, the default user needs this password (requirepass)
#   TAILBOX_REDIS_PARENT_PID  if set, a watchdog stops the server and removes DIR when
#                             that process dies
set -euo pipefail

SCRIPT_NAME="redis.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"

REDIS_SERVER="${TAILBOX_REDIS_SERVER:-/usr/bin/redis-server}"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

server_pid() { cat "$1/redis.pid" 2>/dev/null || true; }

cmd_start() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  [[ -x "$REDIS_SERVER" ]] || die "$REDIS_SERVER not found: run scripts/install-deps.sh (Debian package redis-server)"
  local dir="$1" port="${2:-}"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if alive "$(server_pid "$dir")"; then
    die "a server already runs for $dir (pid $(server_pid "$dir"))"
  fi
  [[ -n "$port" ]] || port="$(cat "$dir/port" 2>/dev/null || free_ports 1)"
  echo "$port" >"$dir/port"
  local auth=() listen=(--port "$port") scheme=redis
  [[ -z "${TAILBOX_REDIS_PASSWORD:-}" ]] || auth=(--requirepass "$TAILBOX_REDIS_PASSWORD")
  if [[ "${REDIS_TLS:-}" == 1 ]]; then
    if [[ ! -f "$dir/tls/server.crt" ]]; then
      mkdir -p "$dir/tls"
      (cd "$dir/tls" && test_pki redis) >"$dir/tls/openssl.log" 2>&1 || die "making the test certificates failed"
    fi
    listen=(--port 0 --tls-port "$port" --tls-cert-file "$dir/tls/server.crt"
      --tls-key-file "$dir/tls/server.key" --tls-ca-cert-file "$dir/tls/ca.crt" --tls-auth-clients no)
    scheme=rediss
  fi
  "$REDIS_SERVER" "${listen[@]}" --bind 127.0.0.1 --protected-mode no --dir "$dir" \
    --save "" --appendonly yes --appendfsync always --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${auth[@]}" >/dev/null
  local i
  for ((i = 0; i < 200; i++)); do
    # PING answers +PONG, or -NOAUTH with a password: either way the server is up. (With
    # TLS, the port accepting connections is enough.)
    if [[ "$scheme" == rediss ]]; then
      port_open "$port" && break
    elif [[ "$(printf 'PING\r\n' | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; cat >&3; head -c 1 <&3" 2>/dev/null)" == [+-] ]]; then
      break
    fi
    sleep 0.05
  done
  alive "$(server_pid "$dir")" || { tail -n 20 "$dir/redis.log" >&2 || true; die "redis-server did not start"; }
  if [[ -n "${TAILBOX_REDIS_PARENT_PID:-}" ]]; then
    start_watchdog "$TAILBOX_REDIS_PARENT_PID" "$dir/port" "$dir/watchdog.pid" \
      "$SCRIPT_DIR/redis.sh" stop "$dir"
  fi
  log "redis-server pid $(server_pid "$dir") ready on 127.0.0.1:$port (dir $dir)"
  echo "$scheme://127.0.0.1:$port"
}

cmd_kill() {
  [[ $# -eq 1 ]] || usage
  local pid
  pid="$(server_pid "$1")"
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    kill_wait "$pid" 5 || true
  fi
  rm -f "$1/redis.pid"
}

cmd_stop() {
  [[ $# -eq 1 ]] || usage
  local dir="$1" wd
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/watchdog.pid" ]]; then
    wd="$(cat "$dir/watchdog.pid")"
    if [[ "$wd" != "$$" && "$wd" != "$PPID" ]] && alive "$wd"; then
      kill -TERM "$wd" 2>/dev/null || true
    fi
  fi
  cmd_kill "$dir"
  rm -rf "$dir"
}

cmd_status() {
  [[ $# -eq 1 ]] || usage
  alive "$(server_pid "$1")"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  start) cmd_start "$@" ;;
  start-tls) REDIS_TLS=1 cmd_start "$@" ;;
  kill) cmd_kill "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  *) usage ;;
  esac
}

main "$@"
