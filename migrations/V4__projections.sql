-- Projections (SPEC 1, 11): read tables rebuilt from the event log. See docs/projections.md.
--
-- Every table is a pure function of the events (no now(), no sequence): a rebuild from
-- scratch gives the same rows as incremental runs. Rows name the event that made them
-- (`event_id`, global `position`) and its account and time. `tape projections run`
-- writes each batch of rows together with the projection's checkpoint, in one
-- transaction; `tape projections rebuild` fills shadow tables and swaps them in.
--
-- The projections are written by the login role (`tape projections …` runs as the
-- migrating role, which owns these tables, so that a rebuild can rename them);
-- tape_reader may read them (default privileges of V2).

CREATE TABLE projection_checkpoints (
    name       text PRIMARY KEY,
    tx_id      xid8   NOT NULL DEFAULT '0',
    position   bigint NOT NULL DEFAULT 0,
    -- The projection's table was last rebuilt (swapped in) by this run; informational.
    rebuilt_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO projection_checkpoints (name) VALUES
    ('trading_decisions'), ('orders'), ('fills'), ('positions'), ('portfolio_snapshots'),
    ('reserve_pool_ledger'), ('circuit_breaker_trips'), ('risk_tier_history');

CREATE TABLE trading_decisions (
    event_id          uuid        PRIMARY KEY,
    position          bigint      NOT NULL,
    account_id        text        NOT NULL,
    at                timestamptz NOT NULL,
    recommendation_id text        NOT NULL,
    ticker            text,
    side              text,
    decision          text        NOT NULL,
    is_final          boolean     NOT NULL,
    skip_reason       text,
    shares            bigint,
    dollar_amount     numeric,
    price             numeric,
    risk_tier         text        NOT NULL,
    config_hash       text,
    checks            jsonb       NOT NULL,
    sizing            jsonb       NOT NULL
);
CREATE INDEX trading_decisions_account_at_idx ON trading_decisions (account_id, at);
CREATE INDEX trading_decisions_recommendation_idx ON trading_decisions (recommendation_id);

CREATE TABLE orders (
    order_id          uuid        PRIMARY KEY,
    account_id        text        NOT NULL,
    recommendation_id text,
    ticker            text        NOT NULL,
    side              text        NOT NULL,
    qty               bigint      NOT NULL,
    reason            text        NOT NULL,
    placed_at         timestamptz NOT NULL,
    placed_position   bigint      NOT NULL,
    broker_order_id   text,
    filled_qty        bigint      NOT NULL,
    filled_notional   numeric     NOT NULL,
    status            text        NOT NULL,
    status_reason     text,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX orders_account_placed_idx ON orders (account_id, placed_at);
CREATE INDEX orders_open_idx ON orders (status) WHERE status IN ('placed', 'submitted', 'partially_filled');

CREATE TABLE fills (
    event_id   uuid        PRIMARY KEY,
    position   bigint      NOT NULL,
    account_id text        NOT NULL,
    at         timestamptz NOT NULL,
    order_id   uuid        NOT NULL,
    fill_id    text        NOT NULL,
    ticker     text        NOT NULL,
    side       text        NOT NULL,
    qty        bigint      NOT NULL,
    price      numeric     NOT NULL
);
CREATE INDEX fills_account_at_idx ON fills (account_id, at);
CREATE INDEX fills_order_idx ON fills (order_id);

CREATE TABLE positions (
    account_id   text        NOT NULL,
    ticker       text        NOT NULL,
    qty          bigint      NOT NULL,
    avg_cost     numeric     NOT NULL,
    realized_pnl numeric     NOT NULL,
    opened_at    timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, ticker)
);

CREATE TABLE portfolio_snapshots (
    event_id        uuid        PRIMARY KEY,
    position        bigint      NOT NULL,
    account_id      text        NOT NULL,
    at              timestamptz NOT NULL,
    kind            text        NOT NULL,
    cash            numeric     NOT NULL,
    equity          numeric     NOT NULL,
    reserve         numeric     NOT NULL,
    active_pool     numeric     NOT NULL,
    positions       integer     NOT NULL,
    heat            numeric     NOT NULL,
    high_water_mark numeric     NOT NULL
);
CREATE INDEX portfolio_snapshots_account_at_idx ON portfolio_snapshots (account_id, at);

CREATE TABLE reserve_pool_ledger (
    event_id      uuid        PRIMARY KEY,
    position      bigint      NOT NULL,
    account_id    text        NOT NULL,
    at            timestamptz NOT NULL,
    kind          text        NOT NULL,
    amount        numeric     NOT NULL,
    balance_after numeric     NOT NULL
);
CREATE INDEX reserve_pool_ledger_account_at_idx ON reserve_pool_ledger (account_id, at);

CREATE TABLE circuit_breaker_trips (
    event_id         uuid        PRIMARY KEY,
    position         bigint      NOT NULL,
    account_id       text        NOT NULL,
    at               timestamptz NOT NULL,
    kind             text        NOT NULL,
    ticker           text,
    until            timestamptz,
    cleared_at       timestamptz,
    cleared_event_id uuid
);
CREATE INDEX circuit_breaker_trips_account_at_idx ON circuit_breaker_trips (account_id, at);

CREATE TABLE risk_tier_history (
    event_id   uuid        PRIMARY KEY,
    position   bigint      NOT NULL,
    account_id text        NOT NULL,
    at         timestamptz NOT NULL,
    from_tier  text        NOT NULL,
    to_tier    text        NOT NULL,
    reason     text        NOT NULL
);
CREATE INDEX risk_tier_history_account_at_idx ON risk_tier_history (account_id, at);

-- The service may read where the projections stand (not write: see above).
GRANT SELECT ON projection_checkpoints TO tape_app;
