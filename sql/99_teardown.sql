-- Drops the slot and the publication (the outbox table and role stay).
-- A slot that is not dropped retains WAL forever: drop it when you stop using tailbox.
\if :{?slot} \else \set slot tailbox \endif
\if :{?publication} \else \set publication tailbox \endif
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = :'slot';
SELECT format('DROP PUBLICATION %I', :'publication')
WHERE EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication') \gexec
