//! `tape demo`: one trading day of the real daemon on real bars, in about a minute and a
//! half. Migrates, opens a fresh account `demo-<n>`, loads securities and warm-up daily
//! bars into the upstream tables, then runs the daemon in-process with an accelerated
//! clock, the simulated market (the seeded intraday path through each real bar) and a
//! seeded feed that writes real `recommendations` rows (the momentum feed of
//! `tape scenario from-bars`, plus a few seeded extra rows and one malformed row).
//! Afterwards: a summary, one acted and one skipped recommendation explained, and the
//! day re-decided through the core.

#![allow(clippy::disallowed_methods)] // the demo's ids and its wall-clock progress

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use tape_commands::calendar::exchange_instant;
use tape_events::{AccountMode, Config, Event, Money, RecommendationReceived, Stamped, Timestamp};
use tape_replay::from_bars;

use crate::clock::{AcceleratedClock, Clock, SharedClock};
use crate::config::{DatabaseConfig, RedisConfig};
use crate::daemon::{self, DaemonTable, QuoteFeed, Settings};
use crate::quotes::{Quote, SimulatedMarket};
use crate::store::EventStore;

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub bars: PathBuf,
    pub sectors: PathBuf,
    pub day: NaiveDate,
    pub seed: u64,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    pub listen: String,
    pub decision: Config,
}

fn et(day: NaiveDate, h: u32, m: u32) -> Timestamp {
    exchange_instant(day, NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default())
}

/// Runs the demo, printing progress through `say`.
///
/// # Errors
/// A message naming what failed.
#[allow(clippy::too_many_lines)]
pub async fn run(options: DemoOptions, say: &(dyn Fn(&str) + Sync)) -> Result<(), String> {
    let url = options.database.url.clone();
    let report = crate::migrate::migrate(&url).await.map_err(|e| crate::describe(&e))?;
    say(&format!("database {} migrated ({} applied)", report.database, report.applied.len()));

    // The data: real bars and sectors, one day's scenario from them.
    let read = |p: &PathBuf| std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let sectors = from_bars::read_sectors(read(&options.sectors)?, &options.sectors.display().to_string())
        .map_err(|e| e.to_string())?;
    let tickers: BTreeSet<String> = sectors.sectors.keys().cloned().collect();
    let bars = from_bars::read_bars(read(&options.bars)?, &options.bars.display().to_string(), &tickers)
        .map_err(|e| e.to_string())?;
    let store = EventStore::new(crate::db::pool(&options.database).map_err(|e| e.to_string())?);
    let existing = crate::accounts::list(&store).await.map_err(|e| e.to_string())?;
    let n = existing.iter().filter(|(a, _)| a.starts_with("demo-")).count() + 1;
    let account = format!("demo-{n}");
    let params = from_bars::Params {
        tickers: tickers.clone(),
        from: options.day,
        to: options.day,
        seed: options.seed,
        account_id: account.clone(),
        initial_cash: Money::new(Decimal::new(10_000_000, 2)),
        interval_minutes: 5,
    };
    let holidays = tape_events::config::nyse_holidays();
    let sources = from_bars::Sources { bars: &bars, sectors: &sectors, holidays };
    let mut scenario = Vec::new();
    from_bars::generate(&params, &sources, &mut scenario).map_err(|e| e.to_string())?;
    let mut quotes = Vec::new();
    let mut feed: Vec<(Timestamp, RecommendationReceived)> = Vec::new();
    let admin = crate::db::connect(&url).await.map_err(|e| e.to_string())?;
    let mut loaded_securities = 0;
    for (i, line) in String::from_utf8_lossy(&scenario).lines().enumerate() {
        let stamped = tape_replay::scenario::parse_line(i as u64 + 1, line).map_err(|e| e.to_string())?;
        match stamped.event {
            Event::QuoteObserved(q) => quotes.push(Quote { ticker: q.ticker, price: q.price, observed_at: stamped.at }),
            Event::RecommendationReceived(mut r) => {
                r.recommendation_id = format!("{account}-{}", r.recommendation_id);
                feed.push((stamped.at, r));
            }
            Event::SecurityUpdated(s) if stamped.at < et(options.day, 9, 0) => {
                admin
                    .execute(
                        "INSERT INTO securities (ticker, sector, next_earnings_date) VALUES ($1, $2, $3) \
                         ON CONFLICT (ticker) DO UPDATE SET sector = EXCLUDED.sector, next_earnings_date = EXCLUDED.next_earnings_date",
                        &[&s.ticker, &s.sector, &s.next_earnings_date],
                    )
                    .await
                    .map_err(|e| crate::describe(&e))?;
                loaded_securities += 1;
            }
            _ => {}
        }
    }
    // Warm-up closes: the 60 trading days before the day, as daily_bars rows.
    let mut loaded_bars = 0;
    for (ticker, series) in &bars.bars {
        for (_, bar) in series.range(..options.day).rev().take(60) {
            admin
                .execute(
                    "INSERT INTO daily_bars (ticker, date, open, high, low, close) VALUES ($1, $2, $3::text::numeric, \
                     $4::text::numeric, $5::text::numeric, $6::text::numeric) ON CONFLICT (ticker, date) DO NOTHING",
                    &[
                        ticker,
                        &bar.date,
                        &bar.open.to_string(),
                        &bar.high.to_string(),
                        &bar.low.to_string(),
                        &bar.close.to_string(),
                    ],
                )
                .await
                .map_err(|e| crate::describe(&e))?;
            loaded_bars += 1;
        }
    }
    say(&format!(
        "{} tickers: {loaded_securities} securities and {loaded_bars} warm-up daily bars in the upstream tables",
        tickers.len()
    ));

    // A few seeded extra rows so that the day shows more kinds of decision, and one
    // malformed row (it is captured and rejected, not dropped).
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0xde30);
    let list: Vec<&String> = tickers.iter().collect();
    for (k, minute) in (0..12).map(|k| (k, 10 + k * 30)).collect::<Vec<_>>() {
        let at = et(options.day, 9, 40).plus(chrono::Duration::minutes(i64::from(minute)));
        let ticker = list[rng.random_range(0..list.len())].clone();
        let confidence = Decimal::new(rng.random_range(55..=95), 2);
        let action = if rng.random_range(0..4) == 0 { "sell" } else { "buy" };
        feed.push((at, rec(&format!("{account}-x{k}"), Some(&ticker), action, &confidence.to_string(), at)));
    }
    let at = et(options.day, 11, 15);
    feed.push((at, rec(&format!("{account}-garbage"), Some("not a ticker"), "buy", "0.90", at)));
    feed.sort_by_key(|a| a.0);
    say(&format!(
        "feed: {} recommendation rows through the day; market: {} quotes (every 5 min, seeded path through each real bar)",
        feed.len(),
        quotes.len()
    ));

    // The account, opened at 09:20 ET on the demo clock.
    let start = et(options.day, 9, 20);
    let end = et(options.day, 16, 12);
    let clock = Arc::new(AcceleratedClock::new(start, options.speed));
    let shared_clock: SharedClock = clock.clone();
    let cash = Money::new(Decimal::new(10_000_000, 2));
    crate::accounts::open(
        store.clone(),
        &account,
        cash,
        AccountMode::Paper,
        &options.decision,
        clock.now(),
        "tape demo",
    )
    .await
    .map_err(|e| e.to_string())?;
    say(&format!(
        "opened account {account} with {cash} (paper); running the daemon from 09:20 to 16:12 ET at {}x",
        options.speed
    ));

    let settings = Settings {
        accounts: vec![account.clone()],
        database: options.database.clone(),
        redis: options.redis.clone(),
        decision: options.decision.clone(),
        daemon: DaemonTable {
            listen: options.listen.clone(),
            quote_source: "simulated".into(),
            ..DaemonTable::default()
        },
        clock: shared_clock.clone(),
        broker: Arc::new(crate::broker::PaperBroker::new()),
        quotes: QuoteFeed::Simulated(SimulatedMarket::from_quotes(quotes)),
        actor: "tape demo".into(),
        broker_adapter: true,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (shared_tx, shared_rx) = tokio::sync::oneshot::channel();
    let hooks = daemon::Hooks { bound: Some(bound_tx), shared: Some(shared_tx) };
    let daemon_task = tokio::spawn(daemon::run_with(settings, hooks, async {
        let _ = stopped.await;
    }));
    let shared = shared_rx.await.map_err(|_| "the daemon did not start".to_owned())?;
    if let Ok(Ok(addr)) = tokio::time::timeout(Duration::from_secs(2), bound_rx).await {
        say(&format!("daemon up: http://{addr}/healthz and http://{addr}/metrics"));
    }

    // The feed: each row inserted when the clock reaches its time.
    let feed_clock = shared_clock.clone();
    let feed_url = url.clone();
    let feed_account = account.clone();
    let feeder = tokio::spawn(async move {
        let Ok(client) = crate::db::connect(&feed_url).await else { return 0 };
        let mut inserted = 0;
        for (at, r) in feed {
            feed_clock.sleep_until(at).await;
            if crate::upstream::insert_recommendation(&client, &r, Some(&feed_account)).await.is_ok() {
                inserted += 1;
            }
        }
        inserted
    });

    let mut mark = et(options.day, 10, 0);
    while clock.now() < end {
        shared_clock.sleep_until(mark.min(end)).await;
        if let Some(status) = shared.status(&account) {
            let time = mark.min(end).datetime().with_timezone(&chrono_tz::America::New_York).format("%H:%M");
            say(&format!(
                "{time} ET  events {:>5}  equity {:>10}  positions {}  open orders {}  pending {}",
                status.version, status.equity, status.positions, status.open_orders, status.pending
            ));
        }
        mark = mark.plus(chrono::Duration::minutes(60));
    }
    let inserted = feeder.await.unwrap_or(0);
    // Let the outbox and the broker adapter finish the last acknowledgements.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop.send(());
    daemon_task.await.map_err(|e| e.to_string())??;

    // Summary, explanations, verification.
    let events = read_account(&store, &account).await?;
    summarize(&events, inserted, say);
    let acted = events.iter().find_map(|s| match &s.event {
        Event::TradingDecisionRecorded(d) if d.decision == tape_events::Outcome::Act => {
            Some(d.recommendation_id.clone())
        }
        _ => None,
    });
    let skipped = events.iter().find_map(|s| match &s.event {
        Event::TradingDecisionRecorded(d)
            if d.decision == tape_events::Outcome::Skip
                && d.is_final
                && d.skip_reason.is_some_and(|r| !r.to_string().starts_with("invalid")) =>
        {
            Some(d.recommendation_id.clone())
        }
        _ => None,
    });
    let stream = tape_events::ids::account_stream(&account);
    for (title, id) in [("acted", acted), ("skipped", skipped)] {
        let Some(id) = id else {
            say(&format!("\n(no {title} recommendation today)"));
            continue;
        };
        let explanations = crate::audit::explain_from_log(&store, &id).await.map_err(|e| e.to_string())?;
        if let Some(x) = explanations.iter().find(|x| x.stream_id == stream) {
            let text = crate::audit::render::explanation_text(x);
            say(&format!("\nwhy recommendation {id} was {title} (tape audit explain {id}):\n{}", text.trim_end()));
        }
    }
    // The day decided again from an empty state, as `tape replay --verify` does it.
    let (first, last) = crate::replay::stream_days(&store, &account)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("account {account} recorded nothing"))?;
    let window = crate::replay::Window { from: first, to: last };
    let (check, read) = crate::replay::decide_again(&store, &account, window, &mut crate::replay::Quiet)
        .await
        .map_err(|e| e.to_string())?;
    if check.counts.divergences == 0 {
        say(&format!(
            "\nverify: read {read} events and re-decided {} inputs through the core from scratch: all {} decisions identical",
            check.counts.inputs, check.counts.decisions
        ));
        Ok(())
    } else {
        for d in &check.divergences {
            say(&format!(
                "divergence at position {} ({} {}): {} recorded {} replayed {}",
                d.position, d.event_type, d.event_id, d.field, d.recorded, d.replayed
            ));
        }
        Err(format!("verify: {} divergences", check.counts.divergences))
    }
}

/// The account's stream read whole and decoded, in version order.
async fn read_account(store: &EventStore, account: &str) -> Result<Vec<Stamped>, String> {
    let stream = tape_events::ids::account_stream(account);
    let mut rows = store.stream_stream(&stream, 1).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        let stored = row.map_err(|e| e.to_string())?.event;
        // A summary that skipped what it cannot read would describe a stream it never saw.
        out.push(stored.decode().map_err(|e| format!("event at position {} does not decode: {e}", stored.position))?);
    }
    Ok(out)
}

fn rec(id: &str, ticker: Option<&str>, action: &str, confidence: &str, at: Timestamp) -> RecommendationReceived {
    RecommendationReceived {
        recommendation_id: id.to_owned(),
        ticker: ticker.map(str::to_owned),
        action: Some(action.to_owned()),
        confidence: Some(confidence.to_owned()),
        mode: Some("paper_eligible".to_owned()),
        generated_at: Some(at.minus(chrono::Duration::seconds(30)).to_string()),
        source: Some("tape demo".to_owned()),
    }
}

fn summarize(events: &[Stamped], inserted: u64, say: &(dyn Fn(&str) + Sync)) {
    use std::collections::BTreeMap;
    let mut count: BTreeMap<&str, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut state = tape_commands::State::default();
    for stamped in events {
        *count.entry(stamped.event.event_type()).or_default() += 1;
        if let Event::TradingDecisionRecorded(d) = &stamped.event {
            if d.is_final {
                let key = d.skip_reason.map_or_else(|| "act".to_owned(), |r| format!("skip {r}"));
                *reasons.entry(key).or_default() += 1;
            }
        }
        state.apply(stamped);
    }
    let get = |k: &str| count.get(k).copied().unwrap_or(0);
    say(&format!(
        "\nday summary: {} events; {inserted} rows written upstream, {} captured; {} quotes; {} orders, {} acknowledged, {} fills; {} snapshots",
        events.len(),
        get("RecommendationReceived"),
        get("QuoteObserved"),
        get("OrderPlaced"),
        get("OrderSubmitted"),
        get("OrderFilled"),
        get("PortfolioSnapshotTaken"),
    ));
    let finals: Vec<String> = reasons.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    say(&format!("final decisions: {}", finals.join(", ")));
    let equity = tape_commands::valuation::equity(&state);
    say(&format!(
        "end of day: equity {equity}, cash {}, reserve {}, {} positions ({}), tier {}",
        state.cash,
        state.reserve,
        state.positions.len(),
        state.positions.iter().map(|(t, p)| format!("{t} {}", p.qty)).collect::<Vec<_>>().join(", "),
        state.tier
    ));
}
