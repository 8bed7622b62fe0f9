//! Quotes from Alpaca's market data API v2: the latest trade of each held and candidate
//! ticker (`GET /v2/stocks/trades/latest?symbols=A,B,…`, batched), read every
//! `quote_poll_millis`, rate-limited by a token bucket to the plan's requests per minute,
//! with the same bounded retries as the trading API (429 with `Retry-After`, 5xx).
//!
//! Which tickers: those a [`Tickers`] provider names at each read (the daemon passes the
//! account's positions, open orders and pending recommendations) plus the configured
//! `symbols`. A trade is yielded once: only a price or time that changed is a new quote.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::Method;
use tape_events::{Price, Timestamp};

use super::{Quote, QuoteError, QuoteSource};
use crate::broker::alpaca::client::{Credentials, Http};
use crate::broker::alpaca::settings::{is_symbol, AlpacaSettings};
use crate::broker::alpaca::types::LatestTrades;
use crate::broker::alpaca::AlpacaError;
use crate::clock::SharedClock;

/// Symbols per request, at most.
pub const MAX_SYMBOLS_PER_REQUEST: usize = 100;

/// Names the tickers to quote now.
pub type Tickers = Arc<dyn Fn() -> BTreeSet<String> + Send + Sync>;

/// The Alpaca market data quote source.
pub struct AlpacaQuotes {
    http: Http,
    feed: String,
    interval: Duration,
    fixed: BTreeSet<String>,
    tickers: Tickers,
    seen: HashMap<String, (Price, Timestamp)>,
    first: bool,
}

impl std::fmt::Debug for AlpacaQuotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlpacaQuotes").field("http", &self.http).field("feed", &self.feed).finish_non_exhaustive()
    }
}

impl AlpacaQuotes {
    /// # Errors
    /// [`AlpacaError`] for a bad setting or a client that cannot be built.
    pub fn new(settings: &AlpacaSettings, credentials: &Credentials, tickers: Tickers) -> Result<Self, AlpacaError> {
        settings.validate()?;
        Ok(Self {
            http: Http::new(settings.data_params(), credentials)?,
            feed: settings.feed.clone(),
            interval: Duration::from_millis(settings.quote_poll_millis),
            fixed: settings.symbols.iter().cloned().collect(),
            tickers,
            seen: HashMap::new(),
            first: true,
        })
    }

    /// Reads the latest trades of `symbols` (in batches) and returns the changed ones.
    ///
    /// # Errors
    /// [`QuoteError::Alpaca`] when a request fails after its retries or does not decode.
    pub async fn read(&mut self, symbols: &BTreeSet<String>, now: Timestamp) -> Result<Vec<Quote>, QuoteError> {
        let symbols: Vec<&String> = symbols.iter().filter(|s| is_symbol(s)).collect();
        let mut out = Vec::new();
        for batch in symbols.chunks(MAX_SYMBOLS_PER_REQUEST) {
            let list = batch.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
            let mut path = format!("/v2/stocks/trades/latest?symbols={list}");
            if !self.feed.is_empty() {
                path.push_str(&format!("&feed={}", self.feed));
            }
            let latest: LatestTrades =
                self.http.json(Method::GET, &path, None).await.map_err(|e| QuoteError::Alpaca(e.to_string()))?;
            for (ticker, trade) in latest.trades {
                let Ok(at) = Timestamp::parse(&trade.t) else {
                    tracing::warn!(%ticker, t = %trade.t, "alpaca trade with an unreadable time; skipped");
                    continue;
                };
                if trade.p.value() <= rust_decimal::Decimal::ZERO {
                    continue;
                }
                let key = (trade.p, at);
                if self.seen.get(&ticker) == Some(&key) {
                    continue;
                }
                self.seen.insert(ticker.clone(), key);
                out.push(Quote { ticker, price: trade.p, observed_at: at.min(now) });
            }
        }
        Ok(out)
    }
}

impl QuoteSource for AlpacaQuotes {
    fn next_batch<'a>(&'a mut self, clock: &'a SharedClock) -> BoxFuture<'a, Result<Vec<Quote>, QuoteError>> {
        Box::pin(async move {
            loop {
                if !self.first {
                    tokio::time::sleep(self.interval).await;
                }
                self.first = false;
                let mut symbols = (self.tickers)();
                symbols.extend(self.fixed.iter().cloned());
                if symbols.is_empty() {
                    continue;
                }
                let quotes = self.read(&symbols, clock.now()).await?;
                if !quotes.is_empty() {
                    return Ok(quotes);
                }
            }
        })
    }
}
