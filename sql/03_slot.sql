-- The logical replication slot tailbox reads (plugin pgoutput). Create it before the
-- first outbox event you want published: a slot only sees what is written after it.
-- psql variable: slot (default tailbox).
\if :{?slot} \else \set slot tailbox \endif
SELECT pg_create_logical_replication_slot(:'slot', 'pgoutput')
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot');
