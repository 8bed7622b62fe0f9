-- The live daemon (SPEC 8, issue 5).
--
-- outbox_checkpoints: per account, the stream version up to which committed events have
-- been relayed to Redis (OrderPlaced → {prefix}:queue:broker_orders). The relay pushes
-- first and moves the checkpoint after, so a crash in between pushes again: at least once.
CREATE TABLE IF NOT EXISTS outbox_checkpoints (
    account_id     text PRIMARY KEY,
    stream_version bigint NOT NULL CHECK (stream_version >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE ON outbox_checkpoints TO tape_app;

-- The decision loop's fallback poll reads the rows of the last recommendation_max_age.
CREATE INDEX IF NOT EXISTS recommendations_generated_at ON recommendations (generated_at);
