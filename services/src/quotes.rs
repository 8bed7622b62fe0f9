//! Quote sources behind one trait: the `market_quotes` table (SPEC 8's upstream
//! contract), Alpaca's market data API ([`alpaca`]) and a built-in simulated market
//! driven by real daily bars. Either yields
//! batches of [`Quote`]s, which the stop-loss monitor turns into `QuoteObserved` inputs.

pub mod alpaca;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use futures_util::future::BoxFuture;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tape_events::{Price, Timestamp};

use crate::clock::SharedClock;
use crate::db::Pool;
use crate::describe;

/// A last-trade price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub ticker: String,
    pub price: Price,
    pub observed_at: Timestamp,
}

/// Why quotes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    #[error("reading market_quotes: {0}")]
    Table(String),
    #[error("reading alpaca latest trades: {0}")]
    Alpaca(String),
}

/// A source of quotes.
pub trait QuoteSource: Send + 'static {
    /// The next quotes (waits until there are some).
    ///
    /// # Errors
    /// [`QuoteError`] when the source cannot be read; the caller retries.
    fn next_batch<'a>(&'a mut self, clock: &'a SharedClock) -> BoxFuture<'a, Result<Vec<Quote>, QuoteError>>;
}

/// Polls the `market_quotes` table and yields rows whose price or `observed_at` changed.
#[derive(Debug)]
pub struct TableQuotes {
    pool: Pool,
    interval: Duration,
    seen: HashMap<String, (Decimal, Option<Timestamp>)>,
    first: bool,
}

impl TableQuotes {
    #[must_use]
    pub fn new(pool: Pool, interval: Duration) -> Self {
        Self { pool, interval, seen: HashMap::new(), first: true }
    }

    async fn read(&mut self, now: Timestamp) -> Result<Vec<Quote>, QuoteError> {
        let client = self.pool.get().await.map_err(|e| QuoteError::Table(describe(&e)))?;
        let rows = client
            .query("SELECT ticker, price::text, observed_at FROM market_quotes WHERE price IS NOT NULL", &[])
            .await
            .map_err(|e| QuoteError::Table(describe(&e)))?;
        let mut out = Vec::new();
        for row in rows {
            let ticker: Option<String> = row.get(0);
            let price: Option<String> = row.get(1);
            let observed: Option<chrono::DateTime<chrono::Utc>> = row.get(2);
            let (Some(ticker), Some(price)) = (ticker, price) else { continue };
            let Ok(value) = price.parse::<Decimal>() else { continue };
            let observed = observed.map(Timestamp::from_datetime);
            let key = (value, observed);
            if self.seen.get(&ticker) == Some(&key) {
                continue;
            }
            self.seen.insert(ticker.clone(), key);
            // Invalid tickers and prices are refused by the core and logged by the
            // processor; a table row is not ours to fix.
            out.push(Quote { ticker, price: Price::new(value), observed_at: observed.unwrap_or(now).min(now) });
        }
        Ok(out)
    }
}

impl QuoteSource for TableQuotes {
    fn next_batch<'a>(&'a mut self, clock: &'a SharedClock) -> BoxFuture<'a, Result<Vec<Quote>, QuoteError>> {
        Box::pin(async move {
            loop {
                if !self.first {
                    tokio::time::sleep(self.interval).await;
                }
                self.first = false;
                let quotes = self.read(clock.now()).await?;
                if !quotes.is_empty() {
                    return Ok(quotes);
                }
            }
        })
    }
}

/// A seeded market: a fixed schedule of quotes, released as the clock reaches them.
#[derive(Debug, Clone)]
pub struct SimulatedMarket {
    schedule: Arc<Vec<Quote>>,
    next: usize,
}

/// One day's bar for the simulated market.
#[derive(Debug, Clone)]
pub struct DayBar {
    pub ticker: String,
    pub date: NaiveDate,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
}

impl SimulatedMarket {
    /// From quotes in any order (sorted here by time, then ticker).
    #[must_use]
    pub fn from_quotes(mut quotes: Vec<Quote>) -> Self {
        quotes.sort_by(|a, b| (a.observed_at, &a.ticker).cmp(&(b.observed_at, &b.ticker)));
        Self { schedule: Arc::new(quotes), next: 0 }
    }

    /// Quotes every `interval_minutes` from 09:30 to 16:00 ET along the seeded intraday
    /// path of `replay::from_bars::path` through each bar's open, high, low and close.
    #[must_use]
    pub fn from_bars(bars: &[DayBar], interval_minutes: u32, seed: u64) -> Self {
        let step = interval_minutes.clamp(1, 120);
        let mut offsets: Vec<u32> = (0..390).step_by(step as usize).collect();
        offsets.push(390);
        let mut quotes = Vec::new();
        for bar in bars {
            let mut hasher = Sha256::new();
            hasher.update(b"tape/simulated-market/v1\0");
            hasher.update(seed.to_be_bytes());
            hasher.update(bar.ticker.as_bytes());
            hasher.update(bar.date.to_string().as_bytes());
            let mut rng = ChaCha8Rng::from_seed(hasher.finalize().into());
            let daily = tape_replay::from_bars::DailyBar {
                date: bar.date,
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
            };
            let path = tape_replay::from_bars::path::intraday_path(&daily, offsets.len(), &mut rng);
            let open = tape_commands::calendar::exchange_instant(
                bar.date,
                chrono::NaiveTime::from_hms_opt(9, 30, 0).unwrap_or_default(),
            );
            for (offset, price) in offsets.iter().zip(path) {
                let at = open.plus(chrono::Duration::minutes(i64::from(*offset)));
                quotes.push(Quote { ticker: bar.ticker.clone(), price: Price::new(price), observed_at: at });
            }
        }
        Self::from_quotes(quotes)
    }

    /// Every quote of the schedule.
    #[must_use]
    pub fn schedule(&self) -> &[Quote] {
        &self.schedule
    }
}

impl QuoteSource for SimulatedMarket {
    fn next_batch<'a>(&'a mut self, clock: &'a SharedClock) -> BoxFuture<'a, Result<Vec<Quote>, QuoteError>> {
        Box::pin(async move {
            let Some(first) = self.schedule.get(self.next) else {
                std::future::pending::<()>().await;
                return Ok(Vec::new());
            };
            // Skip what is already past when the market starts late (a restart).
            clock.sleep_until(first.observed_at).await;
            let now = clock.now();
            let mut out = Vec::new();
            while let Some(quote) = self.schedule.get(self.next).filter(|q| q.observed_at <= now) {
                out.push(quote.clone());
                self.next += 1;
            }
            Ok(out)
        })
    }
}

impl SimulatedMarket {
    /// Starts the market at `at`: quotes before it are skipped (a restarted daemon does
    /// not replay a day's past prices).
    #[must_use]
    pub fn starting_at(mut self, at: Timestamp) -> Self {
        self.next = self.schedule.partition_point(|q| q.observed_at < at);
        self
    }
}
