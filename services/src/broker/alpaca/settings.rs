//! `[broker.alpaca]` of `tape.toml`: endpoints, limits and timeouts of the Alpaca
//! adapter, checked once at start with errors naming the key. The keys are never here:
//! they come from the environment ([`super::Credentials::from_env`]).
//!
//! ```toml
//! [broker]
//! kind = "alpaca"
//! [broker.alpaca]
//! # live = true                              # real money: needs the next line too
//! # i_understand_this_trades_real_money = true
//! requests_per_minute = 190                  # trading API (Alpaca allows 200)
//! data_requests_per_minute = 190             # market data (basic plan: 200)
//! feed = "iex"
//! symbols = ["SPY"]                           # always quoted, besides held and candidate tickers
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::client::{HttpParams, RetryPolicy};
use super::AlpacaError;

/// The paper trading endpoint (the default).
pub const PAPER_URL: &str = "https://paper-api.alpaca.markets";
/// The live trading endpoint: real money.
pub const LIVE_URL: &str = "https://api.alpaca.markets";
/// The market data endpoint.
pub const DATA_URL: &str = "https://data.alpaca.markets";

/// `[broker.alpaca]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlpacaSettings {
    /// Trade on the live endpoint (real money). Needs `i_understand_this_trades_real_money`.
    pub live: bool,
    /// The explicit confirmation that `live = true` trades real money.
    pub i_understand_this_trades_real_money: bool,
    /// Overrides the trading endpoint (tests: a local fake); `""`: paper, or live with `live`.
    pub trading_url: String,
    /// Overrides the `trade_updates` WebSocket URL; `""`: the trading URL's `/stream`.
    pub stream_url: String,
    /// The market data endpoint.
    pub data_url: String,
    /// The market data feed (`iex` on the free plan, `sip`); `""` sends none.
    pub feed: String,
    /// Trading API requests per minute, at most (a token bucket; Alpaca allows 200).
    pub requests_per_minute: u32,
    /// Market data requests per minute, at most (the plan's limit; basic: 200).
    pub data_requests_per_minute: u32,
    /// How often latest trades are read (milliseconds).
    pub quote_poll_millis: u64,
    /// Tickers always quoted, besides the held and candidate ones.
    pub symbols: Vec<String>,
    pub connect_timeout_millis: u64,
    pub request_timeout_millis: u64,
    /// Attempts per request in all (429, 5xx and connection errors are retried).
    pub max_attempts: u32,
    pub retry_base_millis: u64,
    pub retry_max_millis: u64,
    /// The longest `Retry-After` honoured (seconds).
    pub retry_after_max_secs: u64,
    /// While the stream is down, open orders are polled this often (seconds).
    pub poll_interval_secs: u64,
    /// A stream silent this long (no message, no pong) is reconnected (seconds).
    pub stream_idle_secs: u64,
}

impl Default for AlpacaSettings {
    fn default() -> Self {
        Self {
            live: false,
            i_understand_this_trades_real_money: false,
            trading_url: String::new(),
            stream_url: String::new(),
            data_url: DATA_URL.to_owned(),
            feed: "iex".to_owned(),
            requests_per_minute: 190,
            data_requests_per_minute: 190,
            quote_poll_millis: 1000,
            symbols: Vec::new(),
            connect_timeout_millis: 5000,
            request_timeout_millis: 15_000,
            max_attempts: 5,
            retry_base_millis: 250,
            retry_max_millis: 10_000,
            retry_after_max_secs: 60,
            poll_interval_secs: 5,
            stream_idle_secs: 60,
        }
    }
}

fn bad(key: &'static str, value: impl std::fmt::Display, reason: &str) -> AlpacaError {
    AlpacaError::Setting { key, value: value.to_string(), reason: reason.to_owned() }
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

fn check_url(key: &'static str, url: &str, schemes: [&str; 2]) -> Result<(), AlpacaError> {
    let (secure, plain) = (schemes[0], schemes[1]);
    if url.starts_with(&format!("{secure}://")) || (url.starts_with(&format!("{plain}://")) && is_loopback(url)) {
        return Ok(());
    }
    Err(bad(key, url, &format!("must be a {secure}:// URL ({plain}:// only for 127.0.0.1 or localhost)")))
}

impl AlpacaSettings {
    /// Checks every key.
    ///
    /// # Errors
    /// [`AlpacaError::Setting`] naming the first bad key.
    pub fn validate(&self) -> Result<(), AlpacaError> {
        if self.live && !self.i_understand_this_trades_real_money {
            return Err(bad(
                "broker.alpaca.live",
                true,
                "trades real money: set broker.alpaca.i_understand_this_trades_real_money = true to confirm",
            ));
        }
        let trading = self.trading_url();
        check_url("broker.alpaca.trading_url", &trading, ["https", "http"])?;
        if !self.live && trading.trim_end_matches('/') == LIVE_URL {
            return Err(bad(
                "broker.alpaca.trading_url",
                &trading,
                "is the live endpoint: set live = true (and confirm) to use it",
            ));
        }
        check_url("broker.alpaca.stream_url", &self.stream_url(), ["wss", "ws"])?;
        check_url("broker.alpaca.data_url", &self.data_url, ["https", "http"])?;
        if !matches!(self.feed.as_str(), "" | "iex" | "sip" | "delayed_sip" | "otc") {
            return Err(bad("broker.alpaca.feed", &self.feed, "must be iex, sip, delayed_sip, otc or \"\""));
        }
        let ranges: [(&'static str, u64, u64, u64); 10] = [
            ("broker.alpaca.requests_per_minute", self.requests_per_minute.into(), 1, 10_000),
            ("broker.alpaca.data_requests_per_minute", self.data_requests_per_minute.into(), 1, 100_000),
            ("broker.alpaca.quote_poll_millis", self.quote_poll_millis, 50, 3_600_000),
            ("broker.alpaca.connect_timeout_millis", self.connect_timeout_millis, 10, 60_000),
            ("broker.alpaca.request_timeout_millis", self.request_timeout_millis, 10, 300_000),
            ("broker.alpaca.max_attempts", self.max_attempts.into(), 1, 20),
            ("broker.alpaca.retry_base_millis", self.retry_base_millis, 1, 60_000),
            ("broker.alpaca.retry_max_millis", self.retry_max_millis, self.retry_base_millis, 300_000),
            ("broker.alpaca.retry_after_max_secs", self.retry_after_max_secs, 0, 3600),
            ("broker.alpaca.poll_interval_secs", self.poll_interval_secs, 1, 3600),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(bad(key, value, &format!("must be within [{low}, {high}]")));
            }
        }
        if !(1..=3600).contains(&self.stream_idle_secs) {
            return Err(bad("broker.alpaca.stream_idle_secs", self.stream_idle_secs, "must be within [1, 3600]"));
        }
        if let Some(symbol) = self.symbols.iter().find(|s| !is_symbol(s)) {
            return Err(bad("broker.alpaca.symbols", symbol, "a symbol must be 1 to 12 of A-Z, 0-9, '.', '/' or '-'"));
        }
        Ok(())
    }

    /// The trading endpoint in force.
    #[must_use]
    pub fn trading_url(&self) -> String {
        if !self.trading_url.is_empty() {
            return self.trading_url.trim_end_matches('/').to_owned();
        }
        if self.live { LIVE_URL } else { PAPER_URL }.to_owned()
    }

    /// The `trade_updates` WebSocket URL in force.
    #[must_use]
    pub fn stream_url(&self) -> String {
        if !self.stream_url.is_empty() {
            return self.stream_url.clone();
        }
        let trading = self.trading_url();
        let ws = if let Some(rest) = trading.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = trading.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            trading
        };
        format!("{ws}/stream")
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            base: Duration::from_millis(self.retry_base_millis),
            max_backoff: Duration::from_millis(self.retry_max_millis),
            max_retry_after: Duration::from_secs(self.retry_after_max_secs),
        }
    }

    /// The trading API client's parameters.
    #[must_use]
    pub fn trading_params(&self) -> HttpParams {
        HttpParams {
            name: "trading",
            base: self.trading_url(),
            connect_timeout: Duration::from_millis(self.connect_timeout_millis),
            request_timeout: Duration::from_millis(self.request_timeout_millis),
            retry: self.retry(),
            requests_per_minute: self.requests_per_minute,
        }
    }

    /// The market data client's parameters.
    #[must_use]
    pub fn data_params(&self) -> HttpParams {
        HttpParams {
            name: "data",
            base: self.data_url.trim_end_matches('/').to_owned(),
            requests_per_minute: self.data_requests_per_minute,
            ..self.trading_params()
        }
    }
}

/// A US equity symbol as Alpaca spells it (`AAPL`, `BRK.B`).
#[must_use]
pub fn is_symbol(text: &str) -> bool {
    (1..=12).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'.' | b'/' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_is_the_default_and_live_needs_the_confirmation() {
        let settings = AlpacaSettings::default();
        settings.validate().unwrap();
        assert_eq!(settings.trading_url(), PAPER_URL);
        assert_eq!(settings.stream_url(), "wss://paper-api.alpaca.markets/stream");
        let live = AlpacaSettings { live: true, ..AlpacaSettings::default() };
        let error = live.validate().unwrap_err().to_string();
        assert!(error.starts_with("invalid broker.alpaca.live \"true\": trades real money"), "{error}");
        let confirmed = AlpacaSettings { i_understand_this_trades_real_money: true, ..live };
        confirmed.validate().unwrap();
        assert_eq!(confirmed.trading_url(), LIVE_URL);
        let sneaky = AlpacaSettings { trading_url: LIVE_URL.into(), ..AlpacaSettings::default() };
        assert!(sneaky.validate().unwrap_err().to_string().contains("is the live endpoint"));
    }

    #[test]
    fn urls_must_be_tls_except_on_loopback() {
        let local = AlpacaSettings { trading_url: "http://127.0.0.1:4000".into(), ..AlpacaSettings::default() };
        local.validate().unwrap();
        assert_eq!(local.stream_url(), "ws://127.0.0.1:4000/stream");
        let plain = AlpacaSettings { trading_url: "http://example.com".into(), ..AlpacaSettings::default() };
        assert!(plain
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid broker.alpaca.trading_url \"http://example.com\""));
        let zero = AlpacaSettings { data_requests_per_minute: 0, ..AlpacaSettings::default() };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "invalid broker.alpaca.data_requests_per_minute \"0\": must be within [1, 100000]"
        );
        let symbols = AlpacaSettings { symbols: vec!["aapl".into()], ..AlpacaSettings::default() };
        assert!(symbols.validate().is_err());
    }
}
