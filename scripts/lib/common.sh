# shellcheck shell=bash
# Helpers shared by scripts/pg.sh and scripts/kafka.sh. Source it; don't run it.
#
# Conventions of the scripts that use it: messages go to stderr, the one
# machine-readable result (an address) is the last line on stdout.

log() { printf '%s: %s\n' "${SCRIPT_NAME:-tailbox}" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# free_ports N: prints N distinct TCP ports on 127.0.0.1 that were free a moment ago.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# alive PID: true if PID is a running (not zombie) process. PID 1 of some
# containers doesn't reap orphans, so `kill -0` alone would call a zombie alive.
alive() {
  local pid="$1" state
  [[ -n "$pid" && "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/stat" ]] || return 1
  state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# cmdline_has PID WORD: true if PID's command line contains WORD (guards against pid reuse).
cmdline_has() {
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# kill_wait PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
kill_wait() {
  local pid="$1" secs="$2" i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid still running after ${secs}s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

# start_watchdog PARENT_PID TARGET WATCHDOG_PIDFILE COMMAND...: runs COMMAND
# (once) if PARENT_PID dies while TARGET is still there; exits by itself when
# TARGET is gone. TARGET is a pid, or a path (starting with /) that must exist.
# Detached from our stdout/stderr so that a caller reading our output to EOF
# doesn't wait for it. Writes its own pid to WATCHDOG_PIDFILE.
start_watchdog() {
  local parent="$1" target="$2" wd_pidfile="$3"
  shift 3
  if ! alive "$parent"; then
    # The parent died while we were starting the server: don't leak it.
    "$@" </dev/null >/dev/null 2>&1 || true
    die "parent pid $parent died during startup; stopped the server again"
  fi
  (
    trap '' HUP INT
    while if [[ "$target" == /* ]]; then [[ -e "$target" ]]; else alive "$target"; fi; do
      if ! alive "$parent"; then
        "$@"
        exit 0
      fi
      sleep 1
    done
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"$wd_pidfile"
}

# test_pki NAME: in the current directory, a throwaway CA (ca.key, ca.crt), an unrelated CA
# (other-ca.key, other-ca.crt) and a server certificate for IP 127.0.0.1 only (server.key,
# server.crt), all EC P-256 and valid for 10 years, with NAME in their subjects. Leaves
# req.cnf for more certificates signed by ca.key. Call it under `set -e`.
test_pki() {
  local name="$1" key
  command -v openssl >/dev/null 2>&1 ||
    die "openssl not found: install Debian's openssl package (run scripts/install-deps.sh)"
  printf '[req]\ndistinguished_name = dn\n[dn]\n[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n' >ca.cnf
  printf '[req]\ndistinguished_name = dn\n[dn]\n' >req.cnf
  printf 'subjectAltName = IP:127.0.0.1\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n' >server.ext
  for key in ca other-ca server; do
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key.key"
  done
  openssl req -x509 -new -key ca.key -subj "/CN=$name-test-ca" -days 3650 -config ca.cnf -extensions v3 -out ca.crt
  openssl req -x509 -new -key other-ca.key -subj "/CN=$name-other-ca" -days 3650 -config ca.cnf -extensions v3 -out other-ca.crt
  openssl req -new -key server.key -subj "/CN=$name-test-server" -config req.cnf -out server.csr
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out server.crt
}
