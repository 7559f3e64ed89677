-- The publication tailbox streams. Inserts only: cleanup DELETEs never reach the stream.
-- psql variable: publication (default tailbox).
\if :{?publication} \else \set publication tailbox \endif
SELECT format('CREATE PUBLICATION %I FOR TABLE public.outbox WITH (publish = %L)', :'publication', 'insert')
WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication') \gexec
