#!/usr/bin/env bash
# `make demo`: a throwaway PostgreSQL and Kafka, the sql/ setup, tailbox running, sample
# events written by an "application", and a Kafka consumer printing them as they arrive.
# `make demo SINK=redis` (or SINK=redis scripts/demo.sh): Redis Streams instead of Kafka,
# read back with XRANGE. `make demo SINK=webhook`: HTTP webhooks to a small receiver
# (scripts/webhook-receiver.py) that checks each signature and prints each event; one
# event it refuses shows up in `tailbox dead-letters list`. Everything is removed at the
# end (or on Ctrl-C).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="$(mktemp -d /tmp/tailbox-demo.XXXXXX)"
chmod 755 "$work"
tailbox_pid=""
receiver_pid=""
sink="${SINK:-kafka}"
[[ "$sink" == kafka || "$sink" == redis || "$sink" == webhook ]] ||
    { echo "SINK must be kafka, redis or webhook" >&2; exit 2; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

cleanup() {
    say "cleaning up"
    [[ -n "$tailbox_pid" ]] && kill -TERM "$tailbox_pid" 2>/dev/null && wait "$tailbox_pid" 2>/dev/null || true
    [[ -n "$receiver_pid" ]] && kill -TERM "$receiver_pid" 2>/dev/null && wait "$receiver_pid" 2>/dev/null || true
    scripts/kafka.sh stop "$work/kafka" --rm >/dev/null 2>&1 || true
    scripts/redis.sh stop "$work/redis" >/dev/null 2>&1 || true
    scripts/pg.sh stop "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

say "building tailbox"
cargo build --quiet --bin tailbox
tailbox="${CARGO_TARGET_DIR:-target}/debug/tailbox"

case "$sink" in
    kafka) say "starting PostgreSQL 15 (wal_level=logical) and Apache Kafka (KRaft)" ;;
    redis) say "starting PostgreSQL 15 (wal_level=logical) and Redis (AOF, appendfsync always)" ;;
    webhook) say "starting PostgreSQL 15 (wal_level=logical) and a webhook receiver" ;;
esac
pg_url="$(TAILBOX_PG_PARENT_PID=$$ scripts/pg.sh start "$work/pg" | tail -n 1)"
echo "PostgreSQL: $pg_url" >&2
if [[ "$sink" == kafka ]]; then
    brokers="$(TAILBOX_KAFKA_PARENT_PID=$$ scripts/kafka.sh start "$work/kafka" | tail -n 1)"
    echo "Kafka:      $brokers" >&2
    destination=(--kafka-brokers "$brokers")
elif [[ "$sink" == redis ]]; then
    redis_url="$(TAILBOX_REDIS_PARENT_PID=$$ scripts/redis.sh start "$work/redis" 2>/dev/null | tail -n 1)"
    echo "Redis:      $redis_url" >&2
    destination=(--sink redis --redis-url "$redis_url")
else
    # The Standard Webhooks secret tailbox signs with and the receiver verifies with.
    echo "whsec_$(head -c 24 /dev/urandom | base64)" >"$work/webhook-secret"
    python3 scripts/webhook-receiver.py --secret-file "$work/webhook-secret" \
        --port-file "$work/receiver-port" &
    receiver_pid=$!
    for _ in $(seq 1 50); do [[ -s "$work/receiver-port" ]] && break; sleep 0.1; done
    receiver_url="http://127.0.0.1:$(cat "$work/receiver-port")"
    destination=(--sink webhook --webhook-url "$receiver_url/events/{aggregatetype}"
        --webhook-secret-file "$work/webhook-secret")
fi

say "applying sql/ (outbox table, publication, slot, least-privilege role)"
for f in sql/01_outbox_table.sql sql/02_publication.sql sql/03_slot.sql; do
    psql "$pg_url" -X -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null
done
psql "$pg_url" -X -q -v ON_ERROR_STOP=1 -v password=demo-secret -f sql/04_role.sql >/dev/null
if [[ "$sink" == webhook ]]; then
    # Where the webhook sink keeps its checkpoint and its dead letters.
    psql "$pg_url" -X -q -v ON_ERROR_STOP=1 -f sql/05_webhook_tables.sql >/dev/null
fi
# tailbox connects as the least-privilege role, like in production.
tailbox_url="${pg_url/postgres@/tailbox:demo-secret@}"

say "starting tailbox"
"$tailbox" run --pg-url "$tailbox_url" "${destination[@]}" \
    --slot tailbox --publication tailbox 2>"$work/tailbox.log" &
tailbox_pid=$!
sleep 2
sed -n '1,5p' "$work/tailbox.log" >&2

say "the application commits orders and their outbox events in the same transactions"
for i in $(seq 1 10); do
    psql "$pg_url" -X -q -v ON_ERROR_STOP=1 <<SQL
BEGIN;
INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
VALUES ('Order', 'order-$((i % 3))', 'OrderPlaced', jsonb_build_object('order', $i, 'amount', $i * 10)),
       ('Customer', 'customer-$((i % 2))', 'CustomerCharged', jsonb_build_object('order', $i));
COMMIT;
SQL
done
echo "20 events committed in 10 transactions" >&2

if [[ "$sink" == webhook ]]; then
    psql "$pg_url" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
        VALUES ('Order', 'order-0', 'OrderPlaced', '{\"note\": \"the receiver will reject this one\"}')"
    echo "and one event the receiver refuses with a 400 (a dead letter)" >&2
fi

if [[ "$sink" == kafka ]]; then
    say "a Kafka consumer reads outbox.event.* (key, headers, value)"
    scripts/kafka.sh console-consumer --bootstrap-server "$brokers" --include 'outbox\.event\..*' \
        --from-beginning --max-messages 20 --timeout-ms 60000 \
        --formatter-property print.key=true --formatter-property print.headers=true \
        --formatter-property print.topic=true 2>/dev/null
elif [[ "$sink" == webhook ]]; then
    say "the receiver prints each POST as it arrives (per aggregate in commit order)"
    # Every event is taken or dead-lettered once the slot is confirmed past the last commit.
    target="$(psql "$pg_url" -X -At -c "SELECT pg_current_wal_lsn()")"
    for _ in $(seq 1 100); do
        [[ "$(psql "$pg_url" -X -At -c "SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = 'tailbox'")" == t ]] && break
        sleep 0.2
    done
    say "tailbox dead-letters list: the refused event, with the receiver's answer"
    "$tailbox" dead-letters list --pg-url "$tailbox_url"
else
    say "a Redis reader: XRANGE of the streams outbox.event.Order and outbox.event.Customer"
    redis_port="${redis_url##*:}"
    for _ in $(seq 1 50); do
        [[ "$(redis-cli -p "$redis_port" XLEN outbox.event.Customer)" == 10 ]] && break
        sleep 0.2
    done
    for stream in outbox.event.Order outbox.event.Customer; do
        echo "-- $stream" >&2
        redis-cli -p "$redis_port" --no-raw XRANGE "$stream" - + COUNT 4
    done
fi

say "slot position (confirmed only after the destination acknowledged)"
psql "$pg_url" -X -c "SELECT slot_name, confirmed_flush_lsn, pg_current_wal_lsn() FROM pg_replication_slots"

say "stopping tailbox (SIGTERM: drain, final confirm, exit 0)"
kill -TERM "$tailbox_pid"
wait "$tailbox_pid" && echo "tailbox exited 0" >&2
tailbox_pid=""
tail -n 3 "$work/tailbox.log" >&2
