//! `tape bench store`: the event store's append and read-out rates next to raw
//! PostgreSQL doing the same work.
//!
//! One run creates a scratch database (`tape_bench_<uuid>`, `synchronous_commit = on`),
//! migrates it, measures, and drops it, also when a measurement fails. Each line
//! compares the store with raw PostgreSQL on the same rows:
//!
//! - appends: the store's [`EventStore::append`] (chain hashing, conditional head move,
//!   notification) against a multi-row `INSERT … SELECT FROM unnest(…)` of the same
//!   events, same columns, same batch size and concurrency, into a plain table
//!   `raw_events` (same columns, identity primary key, no other index, no trigger), with
//!   the hashes computed beforehand;
//! - read-out: [`EventStore::stream_all`] (decoding every row into a `StoredEvent`)
//!   against `COPY events TO STDOUT` (bytes only, nothing decoded).
//!
//! Every measurement runs a fixed count, raw and store alternately, [`ROUNDS`] times
//! each; the best round counts (the machine may be shared, and the first round warms
//! caches).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tape_events::chain::{self, Hash, GENESIS};
use tape_events::payload::{Event, OrderFilled};
use tape_events::{Metadata, NewEvent, Price, Qty, Side, Timestamp};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::config::DatabaseConfig;
use crate::db::{self, DbError, Pool};
use crate::migrate::{self, MigrateError};
use crate::store::{AppendError, EventStore, GlobalCursor, NotifyMode, StoreError, StoreOptions};

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot get a connection: {}", crate::describe(.0))]
    Pool(deadpool_postgres::PoolError),
    #[error("database error: {}", crate::describe(.0))]
    Database(tokio_postgres::Error),
    #[error("benchmark task failed: {0}")]
    Task(String),
}

impl From<deadpool_postgres::PoolError> for BenchError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        Self::Pool(error)
    }
}

impl From<tokio_postgres::Error> for BenchError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Database(error)
    }
}

/// Counts for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// The server to use (any database; the bench creates its own next to it).
    pub admin_url: String,
    /// Transactions of one event, one writer.
    pub single_txns: usize,
    /// Transactions of [`BATCH`] events, one writer.
    pub batch_txns: usize,
    /// Concurrent writers, each on its own stream, one event per transaction.
    pub writers: usize,
    /// Transactions per concurrent writer.
    pub txns_per_writer: usize,
    /// Events in the table for the read-out.
    pub read_events: usize,
}

/// Rounds of each measurement; the best counts.
pub const ROUNDS: usize = 3;

/// Events per transaction of the batched measurement.
pub const BATCH: usize = 16;

impl BenchOptions {
    /// The default counts: a few seconds per measurement on a small machine.
    #[must_use]
    pub fn new(admin_url: impl Into<String>) -> Self {
        Self {
            admin_url: admin_url.into(),
            single_txns: 2_000,
            batch_txns: 500,
            writers: 8,
            txns_per_writer: 500,
            read_events: 100_000,
        }
    }
}

/// One compared measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub name: String,
    pub events: usize,
    pub store_per_sec: f64,
    pub raw_per_sec: f64,
    /// What raw does (`INSERT … unnest`, `COPY TO`).
    pub raw_label: &'static str,
    /// The goal, as a fraction of raw (0.5), if this line has one.
    pub goal: Option<f64>,
}

impl BenchRow {
    /// Store rate over raw rate.
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.raw_per_sec > 0.0 {
            self.store_per_sec / self.raw_per_sec
        } else {
            0.0
        }
    }

    /// Whether the goal (if any) is met.
    #[must_use]
    pub fn meets_goal(&self) -> bool {
        self.goal.is_none_or(|goal| self.ratio() >= goal)
    }
}

/// The facts a reader of the numbers needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub server_version: String,
    pub synchronous_commit: String,
    pub fsync: String,
    pub cpus: usize,
    pub memory: String,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub environment: Environment,
    pub database: String,
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    /// The table, in Markdown.
    #[must_use]
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| measurement | events | store (events/s) | raw PostgreSQL (events/s) | raw is | store / raw | goal |\n\
             |---|---:|---:|---:|---|---:|---|\n",
        );
        for row in &self.rows {
            let goal = match row.goal {
                Some(goal) if row.meets_goal() => format!("≥ {:.0}% ✔", goal * 100.0),
                Some(goal) => format!("≥ {:.0}% ✘", goal * 100.0),
                None => "—".to_owned(),
            };
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {} | {:.0}% | {} |\n",
                row.name,
                row.events,
                row.store_per_sec,
                row.raw_per_sec,
                row.raw_label,
                row.ratio() * 100.0,
                goal
            ));
        }
        out
    }
}

const RAW_TABLE_SQL: &str = "CREATE TABLE raw_events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    at             timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    prev_hash      bytea       NOT NULL,
    hash           bytea       NOT NULL
)";

const RAW_INSERT_SQL: &str = "INSERT INTO raw_events (stream_id, stream_version, event_id, event_type, \
     schema_version, payload, metadata, at, prev_hash, hash) \
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int4[], $6::jsonb[], \
                          $7::jsonb[], $8::timestamptz[], $9::bytea[], $10::bytea[])";

/// Runs the benchmark in a scratch database next to `options.admin_url`, dropped at the end.
///
/// # Errors
/// [`BenchError`] when the server cannot be used; the scratch database is dropped anyway.
#[allow(clippy::disallowed_methods)] // a service: it mints ids
pub async fn run(options: &BenchOptions, progress: impl Fn(&str)) -> Result<BenchReport, BenchError> {
    let database = format!("tape_bench_{}", Uuid::now_v7().simple());
    let url = db::url_with_database(&options.admin_url, &database)?;
    let result = run_in(options, &url, &database, &progress).await;
    progress(&format!("dropping {database}"));
    let dropped = db::drop_database(&options.admin_url, &database).await;
    let report = result?;
    dropped?;
    Ok(report)
}

async fn run_in(
    options: &BenchOptions,
    url: &str,
    database: &str,
    progress: &impl Fn(&str),
) -> Result<BenchReport, BenchError> {
    progress(&format!("creating and migrating {database}"));
    migrate::migrate(url).await?;
    let admin = db::connect(url).await?;
    admin.batch_execute(&format!("ALTER DATABASE {} SET synchronous_commit = on", db::quote_ident(database))).await?;
    admin.batch_execute(RAW_TABLE_SQL).await?;
    let environment = environment(&admin).await?;

    let pool_size = options.writers + 4;
    let app_pool = db::pool(&DatabaseConfig { url: url.to_owned(), pool_size, role: "tape_app".to_owned() })?;
    let raw_pool = db::pool(&DatabaseConfig { url: url.to_owned(), pool_size, role: String::new() })?;
    warm_up(&app_pool, pool_size).await?;
    warm_up(&raw_pool, pool_size).await?;
    let store = EventStore::new(app_pool.clone());
    let mut rows = Vec::new();
    let mut seq = Sequence::default();

    progress("1 writer, 1-event transactions");
    rows.push(
        compare_appends(&store, &raw_pool, &mut seq, "append, 1 writer, 1 event/txn", 1, options.single_txns, 1)
            .await?,
    );
    progress(&format!("1 writer, {BATCH}-event transactions"));
    rows.push(
        compare_appends(
            &store,
            &raw_pool,
            &mut seq,
            &format!("append, 1 writer, {BATCH} events/txn"),
            1,
            options.batch_txns,
            BATCH,
        )
        .await?,
    );
    progress(&format!("{} writers on {} streams, 1-event transactions", options.writers, options.writers));
    rows.push(
        compare_appends(
            &store,
            &raw_pool,
            &mut seq,
            &format!("append, {} writers on {} streams, 1 event/txn", options.writers, options.writers),
            options.writers,
            options.txns_per_writer,
            1,
        )
        .await?,
    );
    progress("the same with NOTIFY inside the append transaction (for the record)");
    let in_tx_store = EventStore::with_options(
        app_pool.clone(),
        StoreOptions { notify: NotifyMode::InTransaction, ..StoreOptions::default() },
    );
    let mut row = compare_appends(
        &in_tx_store,
        &raw_pool,
        &mut seq,
        &format!("append, {} writers, NOTIFY in the transaction (not the default)", options.writers),
        options.writers,
        options.txns_per_writer,
        1,
    )
    .await?;
    row.goal = None;
    rows.push(row);

    progress(&format!("filling the log to {} events for the read-out", options.read_events));
    fill(&store, &admin, &mut seq, options.read_events).await?;
    progress("read-out");
    rows.push(compare_read_out(&store, &raw_pool).await?);

    Ok(BenchReport { environment, database: database.to_owned(), rows })
}

/// Opens every connection of a pool before anything is timed.
async fn warm_up(pool: &Pool, size: usize) -> Result<(), BenchError> {
    let mut clients = Vec::with_capacity(size);
    for _ in 0..size {
        let client = pool.get().await?;
        client.batch_execute("SELECT 1").await?;
        clients.push(client);
    }
    Ok(())
}

async fn environment(admin: &tokio_postgres::Client) -> Result<Environment, BenchError> {
    let show = |name: &'static str| async move {
        let row = admin.query_one(&format!("SHOW {name}"), &[]).await?;
        row.try_get::<_, String>(0)
    };
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map_or_else(|| "unknown".to_owned(), |kb| format!("{:.1} GiB", kb as f64 / 1_048_576.0));
    Ok(Environment {
        server_version: show("server_version").await?,
        synchronous_commit: show("synchronous_commit").await?,
        fsync: show("fsync").await?,
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        memory,
    })
}

/// Distinct sample content for every event of the run.
#[derive(Debug, Default)]
struct Sequence {
    next: u64,
    streams: u64,
}

impl Sequence {
    #[allow(clippy::disallowed_methods)] // a service: it mints ids
    fn event(&mut self) -> NewEvent {
        let n = self.next;
        self.next += 1;
        let event = Event::OrderFilled(OrderFilled {
            order_id: Uuid::now_v7(),
            fill_id: format!("fill-{n}"),
            ticker: "AAPL".to_owned(),
            side: if n.is_multiple_of(2) { Side::Buy } else { Side::Sell },
            qty: Qty(n % 300 + 1),
            price: Price::new(rust_decimal::Decimal::new(17_615 + i64::try_from(n % 5_000).unwrap_or(0), 2)),
        });
        let at = Timestamp::from_unix_micros(1_709_560_800_000_000 + i64::try_from(n).unwrap_or(0) * 1_000);
        let metadata = Metadata {
            causation_id: Some(Uuid::now_v7()),
            correlation_id: Some(Uuid::now_v7()),
            actor: Some("daemon".to_owned()),
            code_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            config_hash: Some(chain::sha256_hex(b"bench")),
        };
        event.into_new(Uuid::now_v7(), at, metadata)
    }

    fn stream(&mut self) -> String {
        self.streams += 1;
        format!("account-bench-{}", self.streams)
    }
}

/// One writer's work: its stream and its transactions.
struct Work {
    stream: String,
    txns: Vec<Vec<NewEvent>>,
}

fn plan(seq: &mut Sequence, writers: usize, txns: usize, batch: usize) -> Vec<Work> {
    (0..writers)
        .map(|_| Work {
            stream: seq.stream(),
            txns: (0..txns).map(|_| (0..batch).map(|_| seq.event()).collect()).collect(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn compare_appends(
    store: &EventStore,
    raw_pool: &Pool,
    seq: &mut Sequence,
    name: &str,
    writers: usize,
    txns: usize,
    batch: usize,
) -> Result<BenchRow, BenchError> {
    let mut best_store: f64 = 0.0;
    let mut best_raw: f64 = 0.0;
    let events = writers * txns * batch;
    for _ in 0..ROUNDS {
        let work = plan(seq, writers, txns, batch);
        best_raw = best_raw.max(events as f64 / raw_appends(raw_pool, &work).await?.as_secs_f64());
        let work = plan(seq, writers, txns, batch);
        best_store = best_store.max(events as f64 / store_appends(store, work).await?.as_secs_f64());
    }
    Ok(BenchRow {
        name: name.to_owned(),
        events,
        store_per_sec: best_store,
        raw_per_sec: best_raw,
        raw_label: "multi-row INSERT … unnest",
        goal: Some(0.5),
    })
}

#[allow(clippy::disallowed_methods)] // measuring needs the clock
async fn store_appends(store: &EventStore, work: Vec<Work>) -> Result<Duration, BenchError> {
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(work.len());
    for Work { stream, txns } in work {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut version = 0;
            for events in txns {
                version = store.append(&stream, version, &events).await?.version;
            }
            Ok::<_, AppendError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| BenchError::Task(e.to_string()))??;
    }
    Ok(started.elapsed())
}

/// The columns of a batch, in raw's parameter order, chained beforehand.
struct RawBatch {
    streams: Vec<String>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<&'static str>,
    schema_versions: Vec<i32>,
    payloads: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
    ats: Vec<DateTime<Utc>>,
    prevs: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
}

fn raw_batches(work: &Work) -> Vec<RawBatch> {
    let mut prev: Hash = GENESIS;
    let mut version = 0;
    work.txns
        .iter()
        .map(|events| {
            let mut batch = RawBatch {
                streams: Vec::new(),
                versions: Vec::new(),
                ids: Vec::new(),
                types: Vec::new(),
                schema_versions: Vec::new(),
                payloads: Vec::new(),
                metadata: Vec::new(),
                ats: Vec::new(),
                prevs: Vec::new(),
                hashes: Vec::new(),
            };
            for event in events {
                version += 1;
                let hash = chain::link(&prev, &event.chained(&work.stream, version));
                batch.streams.push(work.stream.clone());
                batch.versions.push(version);
                batch.ids.push(event.event_id);
                batch.types.push(event.event_type);
                batch.schema_versions.push(event.schema_version);
                batch.payloads.push(event.payload.clone());
                batch.metadata.push(serde_json::to_value(&event.metadata).unwrap_or_default());
                batch.ats.push(event.at.datetime());
                batch.prevs.push(prev.to_vec());
                batch.hashes.push(hash.to_vec());
                prev = hash;
            }
            batch
        })
        .collect()
}

#[allow(clippy::disallowed_methods)] // measuring needs the clock
async fn raw_appends(pool: &Pool, work: &[Work]) -> Result<Duration, BenchError> {
    let prepared: Vec<Vec<RawBatch>> = work.iter().map(raw_batches).collect();
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(prepared.len());
    for batches in prepared {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let client = pool.get().await?;
            let statement = client.prepare_cached(RAW_INSERT_SQL).await?;
            for b in &batches {
                let params: [&(dyn ToSql + Sync); 10] = [
                    &b.streams,
                    &b.versions,
                    &b.ids,
                    &b.types,
                    &b.schema_versions,
                    &b.payloads,
                    &b.metadata,
                    &b.ats,
                    &b.prevs,
                    &b.hashes,
                ];
                client.execute(&statement, &params).await?;
            }
            Ok::<_, BenchError>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| BenchError::Task(e.to_string()))??;
    }
    Ok(started.elapsed())
}

/// Appends 1000-event batches until the log holds `total` events.
async fn fill(
    store: &EventStore,
    admin: &tokio_postgres::Client,
    seq: &mut Sequence,
    total: usize,
) -> Result<(), BenchError> {
    let count: i64 = admin.query_one("SELECT count(*) FROM events", &[]).await?.try_get(0)?;
    let mut missing = total.saturating_sub(usize::try_from(count).unwrap_or(0));
    let stream = seq.stream();
    let mut version = 0;
    while missing > 0 {
        let n = missing.min(1000);
        let events: Vec<NewEvent> = (0..n).map(|_| seq.event()).collect();
        version = store.append(&stream, version, &events).await?.version;
        missing -= n;
    }
    admin.batch_execute("VACUUM ANALYZE events").await?;
    Ok(())
}

#[allow(clippy::disallowed_methods)] // measuring needs the clock
async fn compare_read_out(store: &EventStore, raw_pool: &Pool) -> Result<BenchRow, BenchError> {
    let mut best_store: f64 = 0.0;
    let mut best_raw: f64 = 0.0;
    let mut events = 0;
    for _ in 0..ROUNDS {
        let client = raw_pool.get().await?;
        let started = std::time::Instant::now();
        let rows = crate::measure::copy_rows(&client, "COPY events TO STDOUT").await?;
        best_raw = best_raw.max(rows as f64 / started.elapsed().as_secs_f64());
        drop(client);

        let started = std::time::Instant::now();
        let mut stream = store.stream_all(GlobalCursor::START).await?;
        let mut read = 0usize;
        while let Some(event) = stream.next().await {
            let event = event?;
            read += usize::from(!event.event.payload.is_null());
        }
        best_store = best_store.max(read as f64 / started.elapsed().as_secs_f64());
        events = read;
        tracing::debug!(rows, read, "read-out pass");
    }
    Ok(BenchRow {
        name: "global read-out (decoded StoredEvents vs COPY bytes)".to_owned(),
        events,
        store_per_sec: best_store,
        raw_per_sec: best_raw,
        raw_label: "COPY events TO STDOUT",
        goal: Some(0.5),
    })
}
