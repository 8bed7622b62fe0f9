//! `tape bench daemon`: the whole daemon against raw PostgreSQL, in a scratch database.
//!
//! 1. **raw commits**: single-row INSERTs, one transaction each (`synchronous_commit =
//!    on`), on one connection: the ceiling for one writer that waits for every commit.
//! 2. **latency**: one recommendation row at a time; from the INSERT's commit to the order
//!    job appearing in `{prefix}:queue:broker_orders` (the bench pops the queue itself;
//!    the broker adapter is off). Path: trigger NOTIFY → LISTEN → capture → processor
//!    (checks, sizing, order) → append → outbox relay → RPUSH.
//! 3. **throughput**: rows inserted as fast as possible (500 per statement); from the
//!    first insert until every row's decision is committed, with durable commits.
//! 4. **memory**: the process's peak RSS (`VmHWM`: the daemon, its pools and the bench).
//!
//! The daemon runs on a manual clock fixed at a Monday 10:00 ET (inside the trading
//! window), with 500 quoted tickers, a large account and caps opened up so that buys act
//! until each ticker has an open order; later rows for the same ticker skip with
//! `entry_pending` after checks a–f (both are real paths through the core).

#![allow(clippy::disallowed_methods, clippy::cast_precision_loss)] // a benchmark: wall clock and ids

use std::sync::Arc;
use std::time::{Duration, Instant};

use tape_events::{AccountMode, Money, Timestamp};

use crate::broker::PaperBroker;
use crate::clock::ManualClock;
use crate::config::{DatabaseConfig, RedisConfig};
use crate::daemon::{self, DaemonTable, QuoteFeed, Settings};
use crate::{db, migrate};

/// What to run.
#[derive(Debug, Clone)]
pub struct DaemonBenchOptions {
    pub admin_url: String,
    pub redis_url: String,
    pub raw_commits: usize,
    pub latency_samples: usize,
    pub throughput_rows: usize,
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub struct DaemonBenchReport {
    pub raw_commits_per_sec: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub latency_samples: usize,
    pub throughput_rows: usize,
    pub throughput_per_sec: f64,
    pub throughput_events: i64,
    pub throughput_acts: i64,
    pub peak_rss_mb: f64,
    pub cpus: usize,
}

const TICKERS: usize = 500;

fn err(e: &(dyn std::error::Error + 'static)) -> String {
    crate::describe(e)
}

/// Runs the benchmark in a scratch database (dropped at the end).
///
/// # Errors
/// A message naming what failed.
pub async fn run(options: &DaemonBenchOptions, progress: impl Fn(&str)) -> Result<DaemonBenchReport, String> {
    let name = format!("tape_bench_daemon_{}", uuid::Uuid::now_v7().simple());
    let url = db::url_with_database(&options.admin_url, &name).map_err(|e| e.to_string())?;
    let result = run_in(options, &url, &name, &progress).await;
    progress(&format!("dropping {name}"));
    let _ = db::drop_database(&options.admin_url, &name).await;
    result
}

#[allow(clippy::too_many_lines)]
async fn run_in(
    options: &DaemonBenchOptions,
    url: &str,
    name: &str,
    progress: &impl Fn(&str),
) -> Result<DaemonBenchReport, String> {
    progress(&format!("creating and migrating {name}"));
    migrate::migrate(url).await.map_err(|e| err(&e))?;
    let admin = db::connect(url).await.map_err(|e| err(&e))?;
    admin
        .batch_execute(&format!("ALTER DATABASE {} SET synchronous_commit = on", db::quote_ident(name)))
        .await
        .map_err(|e| err(&e))?;
    let mut report = DaemonBenchReport {
        cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        ..DaemonBenchReport::default()
    };

    // 1. Raw single-transaction commits.
    progress("raw PostgreSQL: single-row transactions");
    let raw = db::connect(url).await.map_err(|e| err(&e))?;
    raw.batch_execute("CREATE TABLE raw_commits (id bigint PRIMARY KEY, body text)").await.map_err(|e| err(&e))?;
    let insert = raw.prepare("INSERT INTO raw_commits VALUES ($1, $2)").await.map_err(|e| err(&e))?;
    let started = Instant::now();
    for i in 0..options.raw_commits {
        let id = i64::try_from(i).unwrap_or(0);
        raw.execute(&insert, &[&id, &"x".repeat(200)]).await.map_err(|e| err(&e))?;
    }
    report.raw_commits_per_sec = options.raw_commits as f64 / started.elapsed().as_secs_f64();

    // The account, its reference data and quotes.
    let now = Timestamp::parse("2024-03-04T15:00:00Z").map_err(|e| e.to_string())?;
    let clock = ManualClock::new(now);
    let sets: Vec<String> = [
        "max_open_positions=1000000",
        "max_position_dollars=1000",
        "tiers.conservative.max_sector_pct=1",
        "tiers.conservative.max_portfolio_heat=1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let layers = tape_commands::config::Layers { sets: &sets, ..tape_commands::config::Layers::default() };
    let decision = tape_commands::config::load(&layers).map_err(|e| e.to_string())?;
    let database = DatabaseConfig { url: url.to_owned(), pool_size: 8, role: "tape_app".to_owned() };
    let store = crate::store::EventStore::new(db::pool(&database).map_err(|e| e.to_string())?);
    let cash = Money::new(rust_decimal::Decimal::new(1_000_000_000, 0));
    crate::accounts::open(
        store.clone(),
        "bench",
        cash,
        AccountMode::Paper,
        &decision,
        now.minus(chrono::Duration::minutes(1)),
        "bench",
    )
    .await
    .map_err(|e| e.to_string())?;
    let tickers: Vec<String> = (0..TICKERS).map(|i| format!("T{i:03}")).collect();
    admin
        .execute(
            "INSERT INTO market_quotes SELECT t, 100, $2 FROM unnest($1::text[]) AS t",
            &[&tickers, &now.datetime()],
        )
        .await
        .map_err(|e| err(&e))?;
    let prefix = format!("tape-bench-{name}");
    let redis_client = redis::Client::open(options.redis_url.as_str()).map_err(|e| e.to_string())?;
    let mut redis = redis_client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
    let queue = format!("{prefix}:queue:broker_orders");

    let settings = Settings {
        accounts: vec!["bench".to_owned()],
        database: database.clone(),
        redis: RedisConfig { url: options.redis_url.clone(), prefix: prefix.clone() },
        decision,
        daemon: DaemonTable { listen: String::new(), max_batch_inputs: 512, ..DaemonTable::default() },
        clock: Arc::new(clock.clone()),
        broker: Arc::new(PaperBroker::new()),
        quotes: QuoteFeed::Table { interval: Duration::from_millis(200) },
        actor: "bench".to_owned(),
        broker_adapter: false,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(daemon::run(settings, async {
        let _ = stopped.await;
    }));
    let count = |event_type: &'static str| {
        let store = store.clone();
        async move {
            let client = store.pool().get().await.map_err(|e| e.to_string())?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM events WHERE stream_id = 'account-bench' AND event_type = $1",
                    &[&event_type],
                )
                .await
                .map_err(|e| err(&e))?;
            Ok::<i64, String>(row.get(0))
        }
    };
    progress("waiting for the daemon to record the quotes");
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("QuoteObserved").await? < i64::try_from(TICKERS).unwrap_or(0) {
        if Instant::now() > deadline {
            return Err("the daemon did not record the quotes within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 2. Latency: one row at a time, each for a ticker with no open order (it acts).
    progress(&format!("latency: {} rows one at a time", options.latency_samples));
    let generated = now.to_string();
    let mut latencies = Vec::new();
    for (i, ticker) in tickers.iter().enumerate().take(options.latency_samples) {
        let id = format!("lat-{i}");
        let started = Instant::now();
        admin
            .execute(
                "INSERT INTO recommendations VALUES ($1, $2, 'buy', 0.80, 'paper_eligible', $3::text::timestamptz, 'bench', NULL)",
                &[&id, ticker, &generated],
            )
            .await
            .map_err(|e| err(&e))?;
        let popped: Option<(String, String)> =
            redis::cmd("BLPOP").arg(&queue).arg(5).query_async(&mut redis).await.map_err(|e| e.to_string())?;
        if popped.is_none() {
            return Err(format!("no order job for {id} within 5 s"));
        }
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    report.latency_samples = latencies.len();
    report.latency_p50_ms = crate::measure::percentile(&latencies, 0.50);
    report.latency_p99_ms = crate::measure::percentile(&latencies, 0.99);
    report.latency_max_ms = latencies.last().copied().unwrap_or(0.0);

    // 3. Throughput: rows as fast as they can be inserted; until every one is decided.
    progress(&format!("throughput: {} rows", options.throughput_rows));
    let before_received = count("RecommendationReceived").await?;
    let before_events: i64 = store.stream_head("account-bench").await.map_err(|e| err(&e))?.map_or(0, |h| h.0);
    let before_orders = count("OrderPlaced").await?;
    let started = Instant::now();
    let total = options.throughput_rows;
    let mut sent = 0;
    while sent < total {
        let n = (total - sent).min(500);
        let ids: Vec<String> = (sent..sent + n).map(|i| format!("tp-{i}")).collect();
        let ticks: Vec<String> = (sent..sent + n).map(|i| tickers[i % TICKERS].clone()).collect();
        admin
            .execute(
                "INSERT INTO recommendations SELECT id, t, 'buy', 0.80, 'paper_eligible', $3::text::timestamptz, 'bench', NULL \
                 FROM unnest($1::text[], $2::text[]) AS x(id, t)",
                &[&ids, &ticks, &generated],
            )
            .await
            .map_err(|e| err(&e))?;
        sent += n;
    }
    let want = before_received + i64::try_from(total).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let got = count("RecommendationReceived").await?;
        if got >= want {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {} of {total} rows decided within 300 s", got - before_received));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    report.throughput_rows = total;
    report.throughput_per_sec = total as f64 / elapsed;
    report.throughput_events =
        store.stream_head("account-bench").await.map_err(|e| err(&e))?.map_or(0, |h| h.0) - before_events;
    report.throughput_acts = count("OrderPlaced").await? - before_orders;
    report.peak_rss_mb = crate::measure::peak_kib().map_or(0.0, |kib| kib as f64 / 1024.0);
    let _ = stop.send(());
    let _ = daemon.await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut redis).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await;
    }
    Ok(report)
}
