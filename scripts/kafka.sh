#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller),
# run from the jars on Maven Central. For tests and the demo; not for production.
#
#   scripts/kafka.sh fetch                  resolve the broker (and console tools) jars into the cache, once
#   scripts/kafka.sh start DIR [PORT]       start a broker whose config, data and log live in DIR;
#                                           prints 127.0.0.1:PORT as the last line on stdout
#   scripts/kafka.sh start-secure DIR [PORT]
#                                           as start (PLAINTEXT on PORT stays), plus an SSL and a
#                                           SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512;
#                                           user tailbox) with a throwaway CA and a broker certificate
#                                           for IP 127.0.0.1 only, in DIR/tls; the password of user
#                                           tailbox is in DIR/tls/sasl-password (random, mode 0600).
#                                           The last stdout line is
#                                             plaintext=127.0.0.1:P ssl=127.0.0.1:S sasl_ssl=127.0.0.1:Q ca=DIR/tls/ca.crt other_ca=DIR/tls/other-ca.crt user=tailbox password_file=DIR/tls/sasl-password
#                                           `start` on such a DIR restarts it with the same listeners
#   scripts/kafka.sh start-acl DIR [PORT]
#                                           as start (PLAINTEXT on PORT stays, for an admin: it is a super
#                                           user), plus a SASL_PLAINTEXT listener (PLAIN; user tailbox),
#                                           KRaft's StandardAuthorizer, automatic topic creation off, and
#                                           ACLs letting user tailbox describe, read and write every topic
#                                           (idempotently) but create none. The password of user tailbox
#                                           is in DIR/acl/sasl-password (random, mode 0600). The last stdout line is
#                                             plaintext=127.0.0.1:P sasl_plaintext=127.0.0.1:Q user=tailbox password_file=DIR/acl/sasl-password
#                                           `start` on such a DIR restarts it with the same listeners and ACLs
#   scripts/kafka.sh stop DIR [--rm]        stop it (SIGTERM, up to 20 s, then SIGKILL); --rm: delete DIR
#   scripts/kafka.sh status DIR             exit 0 if the broker of DIR runs
#   scripts/kafka.sh run-class CLASS ARGS…  run a Kafka tools class, e.g.
#       scripts/kafka.sh run-class org.apache.kafka.tools.consumer.ConsoleConsumer \
#           --bootstrap-server 127.0.0.1:9092 --include 'outbox\..*' --from-beginning --property print.key=true
#   scripts/kafka.sh console-consumer ARGS… shorthand for the ConsoleConsumer class
#   scripts/kafka.sh topics ARGS…           shorthand for org.apache.kafka.tools.TopicCommand
#
# `start` on a DIR that held a broker before restarts it on the same port with
# the same data (no reformat). Without PORT it picks free ports.
#
# Environment:
#   TAILBOX_CACHE               cache root (default ~/.cache/tailbox); jars go to kafka-VERSION/{libs,tools-libs}
#   TAILBOX_KAFKA_VERSION       Kafka version (default 4.3.1)
#   TAILBOX_KAFKA_PARENT_PID    if set, a watchdog stops the broker when that process dies
#   TAILBOX_KAFKA_RM_ON_EXIT    with the above: also delete DIR then (1 = yes)
#   TAILBOX_KAFKA_START_TIMEOUT seconds to wait for readiness (default 60)
#   KAFKA_HEAP_OPTS             JVM heap (default -Xmx512m -Xms256m)
#   KAFKA_JVM_OPTS              other JVM options (default: serial GC, C1 only: light on 2 cores)
set -euo pipefail

SCRIPT_NAME="kafka.sh"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
. "$SCRIPT_DIR/lib/common.sh"

KAFKA_VERSION="${TAILBOX_KAFKA_VERSION:-4.3.1}"
# log4j2 binding for slf4j 1.7 (Kafka 4.x logs through slf4j 1.7 + log4j2);
# same version as the log4j-core that kafka-server 4.3.1 depends on.
LOG4J_VERSION="2.25.4"
CACHE_ROOT="${TAILBOX_CACHE:-${HOME}/.cache/tailbox}"
KAFKA_CACHE="$CACHE_ROOT/kafka-$KAFKA_VERSION"
BROKER_LIBS="$KAFKA_CACHE/libs"
TOOLS_LIBS="$KAFKA_CACHE/tools-libs"
START_TIMEOUT="${TAILBOX_KAFKA_START_TIMEOUT:-60}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: run scripts/install-deps.sh"; }

need_java() {
  need java
  local v
  v="$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n 1)"
  [[ "$v" =~ ^[0-9]+$ && "$v" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17 or newer; 'java' is version '${v:-?}'"
}

# resolve NAME DEST ARTIFACT...: copy ARTIFACT (group:artifact:version) and all
# its runtime dependencies into DEST, via a throwaway pom. Idempotent, and safe
# when several callers race (flock; atomic rename).
resolve() {
  local name="$1" dest="$2"
  shift 2
  [[ -f "$dest/.complete" ]] && return 0
  need mvn
  need_java
  mkdir -p "$KAFKA_CACHE"
  exec 9>"$KAFKA_CACHE/.$name.lock"
  flock 9
  if [[ -f "$dest/.complete" ]]; then
    exec 9>&-
    return 0
  fi
  local tmp deps="" coord g a v
  tmp="$(mktemp -d)"
  for coord in "$@"; do
    IFS=: read -r g a v <<<"$coord"
    deps+="<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version></dependency>"
  done
  cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tailbox.local</groupId><artifactId>kafka-$name-fetch</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies>$deps</dependencies>
</project>
EOF
  log "resolving $* from Maven Central into $dest"
  if ! (cd "$tmp" && mvn -B -q -f pom.xml dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp/out" >"$tmp/mvn.log" 2>&1); then
    tail -n 40 "$tmp/mvn.log" >&2
    rm -rf "$tmp"
    die "maven could not resolve $*"
  fi
  touch "$tmp/out/.complete"
  rm -rf "$dest"
  mv "$tmp/out" "$dest"
  rm -rf "$tmp"
  exec 9>&-
  log "$(find "$dest" -name '*.jar' | wc -l) jars in $dest"
}

fetch_broker() {
  resolve broker "$BROKER_LIBS" \
    "org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
    "org.apache.logging.log4j:log4j-slf4j-impl:$LOG4J_VERSION"
}

fetch_tools() {
  resolve tools "$TOOLS_LIBS" \
    "org.apache.kafka:kafka-tools:$KAFKA_VERSION" \
    "org.apache.logging.log4j:log4j-slf4j-impl:$LOG4J_VERSION"
}

abs_dir() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

write_log4j() {
  cat >"$1" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafkaclients.name = org.apache.kafka.clients
logger.kafkaclients.level = WARN
logger.metadataloader.name = org.apache.kafka.image.loader
logger.metadataloader.level = WARN
EOF
}

# make_certs DIR: a throwaway CA, a broker certificate for IP 127.0.0.1 (key and chain in one
# PEM file, as Kafka's ssl.keystore.type=PEM reads it), an unrelated CA, all EC P-256, valid for
# 10 years; and the random password of the SASL user tailbox.
make_certs() {
  local d="$1"
  mkdir -p "$d"
  if ! (
    set -e
    cd "$d"
    umask 077
    test_pki tailbox-kafka
    # The PKCS#8 key, then the chain: what Kafka's PEM keystore expects in one file.
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.p8
    cat server.p8 server.crt ca.crt >broker.pem
    openssl rand -hex 16 >sasl-password
    rm -f ./*.csr ./*.srl ./*.cnf ./*.ext ./*.key server.p8
    chmod 644 ca.crt other-ca.crt server.crt
  ) >"$d/openssl.log" 2>&1; then
    cat "$d/openssl.log" >&2
    die "making the test certificates failed"
  fi
}

cmd_start() {
  [[ $# -ge 1 && $# -le 2 ]] || usage
  need_java
  need python3
  local dir port="${2:-}" cport="" cfg pidfile logfile secure="" sport="" qport=""
  local acl="" aport="" acl_password=""
  dir="$(abs_dir "$1")"
  # A DIR made by start-acl keeps its authorizer when started again.
  if [[ "${KAFKA_ACL:-}" == 1 || -f "$dir/acl-port" ]]; then
    acl=1
  fi
  # A DIR made by start-secure stays secure when started again.
  if [[ "${KAFKA_SECURE:-}" == 1 || -f "$dir/secure-ports" ]]; then
    secure=1
  fi
  cfg="$dir/server.properties"
  pidfile="$dir/kafka.pid"
  logfile="$dir/kafka.log"
  if [[ -f "$pidfile" ]] && alive "$(cat "$pidfile")"; then
    die "a broker already runs for $dir (pid $(cat "$pidfile"))"
  fi
  fetch_broker

  # Ports: reuse those of an earlier run in this DIR, so a restart keeps its address.
  if [[ -f "$dir/ports" ]]; then
    local old_port
    read -r old_port cport <"$dir/ports"
    [[ -n "$port" ]] || port="$old_port"
  fi
  if [[ -z "$port" || -z "$cport" ]]; then
    local p1 p2
    read -r p1 p2 < <(free_ports 2)
    [[ -n "$port" ]] || port="$p1"
    [[ -n "$cport" ]] || cport="$p2"
  fi
  [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ && "$port" != "$cport" ]] ||
    die "bad ports: $port / $cport"

  echo "$port $cport" >"$dir/ports"
  local listeners="PLAINTEXT://127.0.0.1:$port" advertised="PLAINTEXT://127.0.0.1:$port"
  local protocol_map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" password=""
  if [[ -n "$secure" ]]; then
    if [[ -f "$dir/secure-ports" ]]; then
      read -r sport qport <"$dir/secure-ports"
    else
      local p1 p2 p3 p4
      # four candidates, so two differ from PORT and the controller's port
      read -r p1 p2 p3 p4 < <(free_ports 4)
      for p in "$p1" "$p2" "$p3" "$p4"; do
        [[ "$p" == "$port" || "$p" == "$cport" ]] && continue
        if [[ -z "$sport" ]]; then sport="$p"; elif [[ -z "$qport" ]]; then qport="$p"; fi
      done
    fi
    [[ "$sport" =~ ^[0-9]+$ && "$qport" =~ ^[0-9]+$ && "$sport" != "$qport" ]] ||
      die "bad SSL/SASL_SSL ports: $sport / $qport"
    echo "$sport $qport" >"$dir/secure-ports"
    [[ -f "$dir/tls/broker.pem" ]] || make_certs "$dir/tls"
    password="$(cat "$dir/tls/sasl-password")"
    listeners+=",SSL://127.0.0.1:$sport,SASL_SSL://127.0.0.1:$qport"
    advertised+=",SSL://127.0.0.1:$sport,SASL_SSL://127.0.0.1:$qport"
    protocol_map+=",SSL:SSL,SASL_SSL:SASL_SSL"
  fi
  local auto_create=true
  if [[ -n "$acl" ]]; then
    if [[ -f "$dir/acl-port" ]]; then
      read -r aport <"$dir/acl-port"
    else
      local p1 p2 p3
      # three candidates, so one differs from PORT and the controller's port
      read -r p1 p2 p3 < <(free_ports 3)
      for p in "$p1" "$p2" "$p3"; do
        [[ "$p" == "$port" || "$p" == "$cport" ]] && continue
        aport="$p"
        break
      done
    fi
    [[ "$aport" =~ ^[0-9]+$ ]] || die "bad SASL_PLAINTEXT port: $aport"
    echo "$aport" >"$dir/acl-port"
    if [[ ! -f "$dir/acl/sasl-password" ]]; then
      mkdir -p "$dir/acl"
      (umask 077 && openssl rand -hex 16 >"$dir/acl/sasl-password")
    fi
    acl_password="$(cat "$dir/acl/sasl-password")"
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$aport"
    advertised+=",SASL_PLAINTEXT://127.0.0.1:$aport"
    protocol_map+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    auto_create=false
  fi
  cat >"$cfg" <<EOF
# written by scripts/kafka.sh
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$advertised
listener.security.protocol.map=$protocol_map
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=$auto_create
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=16777216
log.retention.check.interval.ms=300000
EOF
  if [[ -n "$secure" ]]; then
    chmod 600 "$cfg"
    # The controller and inter-broker traffic stay on PLAINTEXT; clients choose.
    cat >>"$cfg" <<EOF
# start-secure: TLS with a test CA (no client certificates); SASL over TLS with
# PLAIN (users in the JAAS line) and SCRAM (credentials in the metadata log,
# added by kafka-storage format --add-scram)
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker.pem
ssl.client.auth=none
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tailbox="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
  if [[ -n "$acl" ]]; then
    chmod 600 "$cfg"
    # PLAINTEXT (tests' admin, inter-broker traffic) and the controller authenticate
    # nobody: their principal ANONYMOUS is the super user. User tailbox gets only the
    # ACLs add_acls grants after start.
    cat >>"$cfg" <<EOF
# start-acl: an authorizer; SASL PLAIN user tailbox without the Create ACL
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_tailbox="$acl_password";
EOF
  fi
  write_log4j "$dir/log4j2.properties"

  local cp="$BROKER_LIBS/*"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    # Kafka's random ids are url-safe base64; one starting with '-' would be read as an
    # option by the storage tool's argument parser, so draw again.
    cluster_id="$(python3 -c '
import base64, uuid
while True:
    i = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not i.startswith("-"):
        print(i)
        break
')"
    local scram=()
    if [[ -n "$secure" ]]; then
      scram=(--add-scram "SCRAM-SHA-256=[name=tailbox,password=$password]"
        --add-scram "SCRAM-SHA-512=[name=tailbox,password=$password]")
    fi
    # shellcheck disable=SC2086 # word splitting of the JVM options is wanted
    if ! java $HEAP_OPTS $JVM_OPTS -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$cp" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$cfg" "${scram[@]}" >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      die "formatting the storage in $dir/data failed"
    fi
  fi

  local offset=0
  [[ -f "$logfile" ]] && offset="$(stat -c %s "$logfile")"
  local t0=$SECONDS
  # shellcheck disable=SC2086 # word splitting of the JVM options is wanted
  nohup java $HEAP_OPTS $JVM_OPTS \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -Dkafka.logs.dir="$dir" \
    -cp "$cp" kafka.Kafka "$cfg" </dev/null >>"$logfile" 2>&1 &
  local pid=$!
  echo "$pid" >"$pidfile"
  # The watchdog covers the startup wait too: if our caller dies meanwhile, the
  # broker goes with it (and this script fails on the broker's exit).
  if [[ -n "${TAILBOX_KAFKA_PARENT_PID:-}" ]]; then
    local rm_flag=()
    [[ "${TAILBOX_KAFKA_RM_ON_EXIT:-}" == 1 ]] && rm_flag=(--rm)
    start_watchdog "$TAILBOX_KAFKA_PARENT_PID" "$pid" "$dir/watchdog.pid" \
      "$SCRIPT_DIR/kafka.sh" stop "$dir" "${rm_flag[@]}"
  fi

  local deadline=$((SECONDS + START_TIMEOUT)) ready=""
  while ((SECONDS < deadline)); do
    if ! alive "$pid"; then
      tail -c "+$((offset + 1))" "$logfile" | tail -n 60 >&2
      die "the broker (pid $pid) exited during startup; log: $logfile"
    fi
    if tail -c "+$((offset + 1))" "$logfile" | grep -q 'Kafka Server started' && port_open "$port"; then
      ready=1
      break
    fi
    sleep 0.2
  done
  if [[ -z "$ready" ]]; then
    tail -c "+$((offset + 1))" "$logfile" | tail -n 60 >&2
    kill_wait "$pid" 5 || true
    die "the broker was not ready within ${START_TIMEOUT}s; log: $logfile"
  fi

  if [[ -n "$secure" ]]; then
    if ! port_open "$sport" || ! port_open "$qport"; then
      die "the SSL/SASL_SSL listeners on $sport/$qport did not open; log: $logfile"
    fi
    log "broker pid $pid ready on 127.0.0.1:$port (PLAINTEXT), :$sport (SSL), :$qport (SASL_SSL) after $((SECONDS - t0))s (dir $dir)"
  else
    log "broker pid $pid ready on 127.0.0.1:$port after $((SECONDS - t0))s (dir $dir)"
  fi
  if [[ -n "$acl" ]]; then
    port_open "$aport" || die "the SASL_PLAINTEXT listener on $aport did not open; log: $logfile"
    add_acls "127.0.0.1:$port"
    log "user tailbox may describe, read and write every topic, create none (SASL_PLAINTEXT :$aport)"
  fi
  if [[ "${KAFKA_ACL:-}" == 1 ]]; then
    echo "plaintext=127.0.0.1:$port sasl_plaintext=127.0.0.1:$aport user=tailbox password_file=$dir/acl/sasl-password"
  elif [[ "${KAFKA_SECURE:-}" == 1 ]]; then
    echo "plaintext=127.0.0.1:$port ssl=127.0.0.1:$sport sasl_ssl=127.0.0.1:$qport ca=$dir/tls/ca.crt other_ca=$dir/tls/other-ca.crt user=tailbox password_file=$dir/tls/sasl-password"
  else
    echo "127.0.0.1:$port"
  fi
}

# add_acls BOOTSTRAP: user tailbox may describe, read and write every topic, write
# idempotently, and use any consumer group; Create nowhere. Idempotent.
add_acls() {
  local out
  if ! out="$(cmd_run_class org.apache.kafka.tools.AclCommand --bootstrap-server "$1" --add \
    --allow-principal User:tailbox --operation Describe --operation Read --operation Write \
    --topic '*' 2>&1 &&
    cmd_run_class org.apache.kafka.tools.AclCommand --bootstrap-server "$1" --add \
      --allow-principal User:tailbox --operation Read --operation Describe --group '*' 2>&1 &&
    cmd_run_class org.apache.kafka.tools.AclCommand --bootstrap-server "$1" --add \
      --allow-principal User:tailbox --operation IdempotentWrite --cluster 2>&1)"; then
    echo "$out" >&2
    die "adding the ACLs of user tailbox failed"
  fi
}

cmd_stop() {
  [[ $# -eq 1 || ( $# -eq 2 && "$2" == --rm ) ]] || usage
  local dir="$1" pid wd
  [[ -d "$dir" ]] || return 0
  if [[ -f "$dir/watchdog.pid" ]]; then
    wd="$(cat "$dir/watchdog.pid")"
    # don't kill our caller when the watchdog is what runs this stop
    if [[ "$wd" != "$$" && "$wd" != "$PPID" ]] && alive "$wd"; then
      kill -TERM "$wd" 2>/dev/null || true
    fi
    rm -f "$dir/watchdog.pid"
  fi
  if [[ -f "$dir/kafka.pid" ]]; then
    pid="$(cat "$dir/kafka.pid")"
    if alive "$pid" && cmdline_has "$pid" kafka.Kafka; then
      kill_wait "$pid" 20 || die "could not stop broker pid $pid"
    fi
    rm -f "$dir/kafka.pid"
  fi
  if [[ "${2:-}" == --rm ]]; then
    rm -rf "$dir"
  fi
}

cmd_status() {
  [[ $# -eq 1 ]] || usage
  local pid
  pid="$(cat "$1/kafka.pid" 2>/dev/null || true)"
  alive "$pid" && cmdline_has "$pid" kafka.Kafka
}

cmd_run_class() {
  [[ $# -ge 1 ]] || usage
  need_java
  fetch_tools
  local tmp
  tmp="$(mktemp --suffix=.properties)"
  # shellcheck disable=SC2064 # expand now
  trap "rm -f '$tmp'" EXIT
  write_log4j "$tmp"
  sed -i 's/^rootLogger.level = INFO/rootLogger.level = WARN/' "$tmp"
  # shellcheck disable=SC2086 # word splitting of the JVM options is wanted
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$tmp" -cp "$TOOLS_LIBS/*" "$@"
}

main() {
  local cmd="${1:-}"
  [[ $# -gt 0 ]] && shift
  case "$cmd" in
  fetch)
    fetch_broker
    fetch_tools
    ;;
  fetch-broker) fetch_broker ;;
  start) KAFKA_SECURE="" cmd_start "$@" ;;
  start-secure) KAFKA_SECURE=1 cmd_start "$@" ;;
  start-acl) KAFKA_ACL=1 cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  run-class) cmd_run_class "$@" ;;
  console-consumer) cmd_run_class org.apache.kafka.tools.consumer.ConsoleConsumer "$@" ;;
  topics) cmd_run_class org.apache.kafka.tools.TopicCommand "$@" ;;
  *) usage ;;
  esac
}

main "$@"
