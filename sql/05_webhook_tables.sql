-- Only for --sink webhook: the tables where the webhook sink keeps its checkpoint and
-- its dead letters (an HTTP endpoint has no storage tailbox could use). Run as the owner
-- of the schema, after 04_role.sql. Idempotent.
-- psql variables: role (default tailbox).
\if :{?role} \else \set role tailbox \endif

-- One row per checkpoint owner (<system_id>/<slot>/<database>): the last LSN whose
-- events all got their 2xx or were dead-lettered. Written before the slot is confirmed.
CREATE TABLE IF NOT EXISTS public.tailbox_checkpoint (
    key        bytea PRIMARY KEY,
    value      bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events the receiver refused for good (a 4xx other than 408/429), that used up
-- --webhook-max-attempts, or that could not become an event at all. Written (and
-- committed) before the slot moves past them. `tailbox dead-letters list|replay`.
CREATE TABLE IF NOT EXISTS public.tailbox_dead_letter (
    id              bigserial PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    event_id        text,         -- the webhook-id it was (or would have been) sent with
    topic           text,         -- the topic template's output for it
    url             text,         -- where it was POSTed (NULL: never sent)
    aggregate_id    bytea,
    payload         bytea,
    headers         jsonb NOT NULL DEFAULT '{}',  -- the outbox row's other columns
    body            bytea,        -- the request body sent (NULL: never sent)
    content_type    text,
    error           text NOT NULL,
    source_lsn      text,         -- commit LSN of its transaction
    source_table    text,
    attempts        integer NOT NULL DEFAULT 0,
    first_attempt   timestamptz,
    last_attempt    timestamptz,
    response_status integer,
    response_body   text,         -- the first KiB of the last response
    replayed_at     timestamptz,  -- set by `tailbox dead-letters replay` on a 2xx
    replay_status   integer
);

SELECT format('GRANT SELECT, INSERT, UPDATE ON public.tailbox_checkpoint, public.tailbox_dead_letter TO %I', :'role') \gexec
SELECT format('GRANT USAGE ON SEQUENCE public.tailbox_dead_letter_id_seq TO %I', :'role') \gexec
