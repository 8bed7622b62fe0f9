-- The upstream contract (SPEC 8): tables other systems write to. Created when absent;
-- an existing table of the same name is left as it is.

CREATE TABLE IF NOT EXISTS recommendations (
    id           text PRIMARY KEY,
    ticker       text,
    action       text,
    confidence   numeric,
    mode         text,
    generated_at timestamptz,
    source       text,
    account_id   text NULL
);

CREATE TABLE IF NOT EXISTS market_quotes (
    ticker      text PRIMARY KEY,
    price       numeric,
    observed_at timestamptz
);

CREATE TABLE IF NOT EXISTS securities (
    ticker             text PRIMARY KEY,
    sector             text,
    next_earnings_date date
);

CREATE TABLE IF NOT EXISTS daily_bars (
    ticker text,
    date   date,
    open   numeric,
    high   numeric,
    low    numeric,
    close  numeric,
    volume bigint,
    PRIMARY KEY (ticker, date)
);

-- The decision loop LISTENs on tape_recommendations and reacts within a second; the
-- payload is {"id": …, "account_id": …} (account_id null = every account). It also polls,
-- so a lost notification only delays a capture. Upserts (a redelivery) notify too.
CREATE OR REPLACE FUNCTION tape_notify_recommendation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'tape_recommendations',
        json_build_object('id', left(NEW.id, 512), 'account_id', left(NEW.account_id, 128))::text
    );
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER recommendations_notify
    AFTER INSERT OR UPDATE ON recommendations
    FOR EACH ROW EXECUTE FUNCTION tape_notify_recommendation();

GRANT SELECT ON recommendations, market_quotes, securities, daily_bars TO tape_app, tape_reader;
