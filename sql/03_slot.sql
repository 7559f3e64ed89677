-- The logical replication slot tailbox reads (plugin pgoutput). Create it before the
-- first outbox event you want published: a slot only sees what is written after it.
-- psql variable: slot (default tailbox).
-- `tailbox setup` runs the statements after the tailbox:plain-sql line too, having set
-- tailbox.slot from its configuration.
\if :{?slot} \else \set slot tailbox \endif
SET tailbox.slot = :'slot';
-- tailbox:plain-sql (below: plain SQL, no psql syntax)
SELECT pg_create_logical_replication_slot(current_setting('tailbox.slot'), 'pgoutput')
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots
                  WHERE slot_name = current_setting('tailbox.slot'));
