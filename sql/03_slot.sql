-- The logical replication slot tailbox reads (plugin pgoutput). Create it before the
-- first outbox event you want published: a slot only sees what is written after it.
-- psql variables: slot (default tailbox); failover (default false): true creates a
-- failover slot (PostgreSQL 17+), which standbys with sync_replication_slots = on keep a
-- copy of, so that it survives a promotion (docs/runbook.md#failover-slots-postgresql-17).
-- `tailbox setup [--failover]` runs the statements after the tailbox:plain-sql line too,
-- having set tailbox.slot and tailbox.failover from its configuration.
\if :{?slot} \else \set slot tailbox \endif
\if :{?failover} \else \set failover false \endif
SET tailbox.slot = :'slot';
SET tailbox.failover = :'failover';
-- tailbox:plain-sql (below: plain SQL, no psql syntax)
DO $$
DECLARE
  slot text := current_setting('tailbox.slot');
  failover boolean := current_setting('tailbox.failover')::boolean;
  existing jsonb;
BEGIN
  IF failover AND current_setting('server_version_num')::int < 170000 THEN
    RAISE EXCEPTION 'failover slots need PostgreSQL 17 or later, this server is %',
      current_setting('server_version')
      USING ERRCODE = 'feature_not_supported',
            HINT = 'create the slot without failover; before 17 a logical slot is not kept on standbys (see docs/runbook.md)';
  END IF;
  -- to_jsonb: the column failover exists from PostgreSQL 17 on.
  SELECT to_jsonb(s) INTO existing FROM pg_replication_slots s WHERE s.slot_name = slot;
  IF existing IS NULL THEN
    IF failover THEN
      -- (dynamic: before 17 the function has no failover parameter)
      EXECUTE 'SELECT pg_create_logical_replication_slot($1, $2, failover => true)'
        USING slot, 'pgoutput';
    ELSE
      PERFORM pg_create_logical_replication_slot(slot, 'pgoutput');
    END IF;
  ELSIF failover AND NOT coalesce((existing ->> 'failover')::boolean, false) THEN
    RAISE EXCEPTION 'replication slot "%" exists but is not a failover slot', slot
      USING ERRCODE = 'duplicate_object',
            HINT = format('with tailbox stopped, run ALTER_REPLICATION_SLOT %s (FAILOVER true) on a replication connection: psql "dbname=DB replication=database" -c ''ALTER_REPLICATION_SLOT %s (FAILOVER true)''', slot, slot);
  END IF;
END
$$;
