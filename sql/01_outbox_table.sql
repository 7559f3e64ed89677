-- The outbox table (Debezium Outbox Event Router compatible columns).
-- Applications insert one row per event in the same transaction as the business change.
--   aggregatetype → Kafka topic (through tailbox's --topic-template)
--   aggregateid   → record key (per-aggregate order)
--   payload       → record value, byte for byte
--   id, type and every other column → record headers
-- Rows can be deleted right after insert (even in the same transaction): the publication
-- only carries inserts, and tailbox reads them from the WAL, not from the table.
CREATE TABLE IF NOT EXISTS public.outbox (
    id                 uuid        NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    aggregatetype      text        NOT NULL,
    aggregateid        text        NOT NULL,
    type               text        NOT NULL,
    payload            jsonb       NOT NULL,
    "timestamp"        timestamptz NOT NULL DEFAULT now(),
    tracingspancontext text
);
