-- Drops the slot and the publication (the outbox table and role stay).
-- A slot that is not dropped retains WAL forever: drop it when you stop using tailbox.
-- psql variables: slot (default tailbox), publication (default tailbox).
-- `tailbox teardown` runs the statements after the tailbox:plain-sql line too, having
-- set the same tailbox.* settings from its configuration.
\if :{?slot} \else \set slot tailbox \endif
\if :{?publication} \else \set publication tailbox \endif
SET tailbox.slot = :'slot';
SET tailbox.publication = :'publication';
-- tailbox:plain-sql (below: plain SQL, no psql syntax)
SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
WHERE slot_name = current_setting('tailbox.slot');
DO $$
BEGIN
    EXECUTE format('DROP PUBLICATION IF EXISTS %I', current_setting('tailbox.publication'));
END
$$;
