-- An outbox with a jsonb metadata column and a retrying poller's status columns
-- (docs/schemas.md).
CREATE TABLE public.event_outbox (
    id             uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregate_id   varchar(255) NOT NULL,
    aggregate_type varchar(255) NOT NULL,
    event_type     varchar(255) NOT NULL,
    event_version  integer      NOT NULL DEFAULT 1,
    payload        jsonb        NOT NULL,
    metadata       jsonb        NOT NULL DEFAULT '{}',
    status         varchar(20)  NOT NULL DEFAULT 'PENDING',
    created_at     timestamptz  NOT NULL DEFAULT now(),
    processed_at   timestamptz,
    retry_count    integer      NOT NULL DEFAULT 0,
    max_retries    integer      NOT NULL DEFAULT 3,
    next_retry_at  timestamptz,
    error_message  text,
    tenant_id      varchar(255),
    correlation_id uuid,
    causation_id   uuid
);
