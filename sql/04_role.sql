-- A least-privilege role for tailbox: it may log in, open replication connections and
-- read the outbox table; nothing else. Set the password with psql -v password=...
-- psql variables: role (default tailbox), password (required).
\if :{?role} \else \set role tailbox \endif
\if :{?password} \else \echo 'set a password: psql -v password=...' \quit \endif
SELECT format('CREATE ROLE %I LOGIN REPLICATION PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'role') \gexec
SELECT format('GRANT SELECT ON public.outbox TO %I', :'role') \gexec
