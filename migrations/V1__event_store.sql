-- The event store (SPEC 11). See docs/event-store.md.
--
-- `events` is append-only: every row is one event, with its place in the global log
-- (`position`, `tx_id`) and in its stream (`stream_version`), and a per-stream SHA-256
-- chain (`prev_hash`, `hash`) computed by the writer. `streams` holds the head of each
-- stream's chain; an append moves the head with a conditional UPDATE in the same
-- statement as its INSERT, so two writers can never both extend the same version.

CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id      text        NOT NULL CHECK (stream_id <> ''),
    stream_version bigint      NOT NULL CHECK (stream_version >= 1),
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    at             timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    prev_hash      bytea       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash           bytea       NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

-- Global reads go in (tx_id, position) order up to the transaction-id watermark.
CREATE INDEX events_tx_id_position_idx ON events (tx_id, position);

CREATE TABLE streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL CHECK (version >= 1),
    head_hash bytea  NOT NULL CHECK (octet_length(head_hash) = 32)
);

-- Immutability. Statement-level triggers fire even when no row matches (an UPDATE or
-- DELETE on an empty table, a TRUNCATE), and for every role including the owner. Only a
-- superuser can get past them (session_replication_role = replica, or DISABLE TRIGGER),
-- which is what the hash chain is for.
CREATE FUNCTION tape_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'the event log is immutable; append a correcting event instead';
END
$$;

CREATE TRIGGER events_refuse_change
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION tape_refuse_change();

-- A stream's head only moves forward (UPDATE, by the append); it is never removed.
CREATE TRIGGER streams_refuse_removal
    BEFORE DELETE OR TRUNCATE ON streams
    FOR EACH STATEMENT EXECUTE FUNCTION tape_refuse_change();
