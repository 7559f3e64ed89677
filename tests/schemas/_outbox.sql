-- A polling relay's table: the topic is a column, the key another; published,
-- attempts, … are the poller's bookkeeping (docs/schemas.md).
CREATE TABLE public._outbox (
    id                uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type        varchar(255) NOT NULL,
    aggregate_id      varchar(255) NOT NULL,
    event_data        jsonb        NOT NULL,
    event_version     integer      NOT NULL DEFAULT 1,
    destination_topic varchar(255) NOT NULL,
    partition_key     varchar(255),
    published         boolean      NOT NULL DEFAULT false,
    published_at      timestamptz,
    attempts          integer      NOT NULL DEFAULT 0,
    last_attempt_at   timestamptz,
    error_message     text,
    trace_id          varchar(64),
    user_id           varchar(255),
    created_at        timestamptz  NOT NULL DEFAULT now(),
    updated_at        timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX _outbox_unpublished ON public._outbox (created_at) WHERE NOT published;
