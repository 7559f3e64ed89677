-- The publication tailbox streams. Inserts only: cleanup DELETEs never reach the stream.
-- psql variables: publication (default tailbox), outbox_table (default public.outbox).
-- `tailbox setup` runs the statements after the tailbox:plain-sql line too, having set
-- the same tailbox.* settings from its configuration: one copy of the SQL, two ways to
-- run it.
\if :{?publication} \else \set publication tailbox \endif
\if :{?outbox_table} \else \set outbox_table public.outbox \endif
SET tailbox.publication = :'publication';
SET tailbox.outbox_table = :'outbox_table';
-- tailbox:plain-sql (below: plain SQL, no psql syntax)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication
                   WHERE pubname = current_setting('tailbox.publication')) THEN
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s WITH (publish = %L)',
                       current_setting('tailbox.publication'),
                       current_setting('tailbox.outbox_table')::regclass,
                       'insert');
    END IF;
END
$$;
