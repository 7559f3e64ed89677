-- An outbox with no aggregate type and no event type at all (docs/schemas.md).
CREATE TABLE public.document_outbox (
    id                   bigserial   PRIMARY KEY,
    document_id          uuid        NOT NULL,
    workspace_provider   text        NOT NULL,
    created_by_person_id uuid        NOT NULL,
    payload              jsonb       NOT NULL,
    status               text        NOT NULL DEFAULT 'pending',
    created_at           timestamptz NOT NULL DEFAULT now()
);
