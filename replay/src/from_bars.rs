//! `tape scenario from-bars`: a scenario file (SPEC 12) made from real daily bars.
//!
//! The output, in time order (`at` never decreases; inputs with the same `at` in the
//! order below):
//!
//! 1. at 08:00 ET of the first trading day: `AccountOpened`; one `SecurityUpdated` per
//!    ticker (sector from the sectors file, `next_earnings_date` from the synthetic
//!    calendar of [`feed::earnings_dates`]); the warm-up `DailyBarObserved` of up to
//!    [`WARMUP_DAYS`] bars before the first day, by date then ticker;
//! 2. each trading day (weekdays minus the NYSE holidays), per ticker with a bar that day:
//!    a `QuoteObserved` every `interval` from 09:30 to 16:00 ET along the path of
//!    [`path::intraday_path`]; a `RecommendationReceived` at 10:00 and 14:00 ET when the
//!    momentum signal of [`feed`] says so; at 16:30 ET the day's `DailyBarObserved`, and
//!    after a ticker's earnings date a `SecurityUpdated` with its next one.
//!
//! Randomness: each (purpose, ticker, day[, slot]) gets its own ChaCha8 generator seeded
//! with `SHA-256("tape/from-bars/v1", purpose, seed, ticker, day, …)`, so the same seed
//! gives byte-identical output, and adding a ticker or moving `--to` does not change the
//! others' paths. The full description, with every formula, is `docs/scenario-format.md`.

pub mod bars;
pub mod calendar;
pub mod feed;
pub mod path;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tape_events::ids::{is_valid_account_id, is_valid_ticker};
use tape_events::{
    AccountMode, AccountOpened, DailyBarObserved, Event, Money, Price, QuoteObserved, RecommendationReceived,
    SecurityUpdated, Stamped, Timestamp,
};

pub use bars::{read_bars, read_sectors, BarSet, DailyBar, RowIssue, SectorSet};

/// Daily bars before the first day, sent at the start so that correlation (60 closes)
/// and momentum (21 closes) work from the first day.
pub const WARMUP_DAYS: usize = 60;
/// Recommendation times, ET (hour, minute).
pub const RECOMMENDATION_SLOTS: [(u32, u32); 2] = [(10, 0), (14, 0)];
/// `generated_at` is this many seconds before `at`, drawn uniformly (inclusive).
pub const GENERATED_BEFORE_SECS: (i64, i64) = (5, 180);
/// Per mille of recommendations deliberately malformed (to exercise validation).
pub const INVALID_PER_MILLE: u32 = 5;
/// The session, ET: 09:30 to 16:00 (390 minutes).
const SESSION_OPEN: (u32, u32) = (9, 30);
const SESSION_MINUTES: u32 = 390;
/// The longest quote interval: 4 quotes a day at least (open, high, low, close).
pub const MAX_INTERVAL_MINUTES: u32 = 120;
/// The `source` of every generated recommendation.
pub const SOURCE: &str = "from-bars:momentum-20d";

/// What went wrong making a scenario.
#[derive(Debug, thiserror::Error)]
pub enum FromBarsError {
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: io::Error,
    },
    #[error("{file} line {line}: {message}")]
    Csv { file: String, line: u64, message: String },
    #[error("{file} has no column {column:?} (its header is {found:?})")]
    MissingColumn { file: String, column: String, found: String },
    #[error("invalid {argument} {value:?}: {reason}")]
    InvalidArgument { argument: &'static str, value: String, reason: String },
    #[error("unknown ticker {ticker:?} in --tickers: the bars file has no rows for it")]
    UnknownTicker { ticker: String },
    #[error("ticker {ticker:?} has no bars between --from {from} and --to {to}")]
    NoBarsInRange { ticker: String, from: NaiveDate, to: NaiveDate },
    #[error("empty range: --from {from} is after --to {to}")]
    EmptyRange { from: NaiveDate, to: NaiveDate },
    #[error("no trading day between --from {from} and --to {to}")]
    NoTradingDays { from: NaiveDate, to: NaiveDate },
    #[error("{date} {hour:02}:{minute:02} is not an exchange time in America/New_York")]
    ExchangeTime { date: NaiveDate, hour: u32, minute: u32 },
    #[error("writing the scenario")]
    Write(#[source] io::Error),
}

/// What to generate. Build the fields with the `parse_*` helpers to get their errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Sorted and deduplicated: the order of `--tickers` does not matter.
    pub tickers: BTreeSet<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub seed: u64,
    pub account_id: String,
    pub initial_cash: Money,
    pub interval_minutes: u32,
}

/// Where the data comes from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    pub bars: &'a BarSet,
    pub sectors: &'a SectorSet,
    pub holidays: &'a BTreeSet<NaiveDate>,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub trading_days: u64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    pub quotes: u64,
    pub daily_bars: u64,
    pub security_updates: u64,
    pub buys: u64,
    pub sells: u64,
    /// Deliberately malformed recommendations among the buys and sells.
    pub invalid_recommendations: u64,
    /// Things the user should know (a ticker without a sector, a short warm-up).
    pub warnings: Vec<String>,
}

/// Parses a `YYYY-MM-DD` argument.
///
/// # Errors
/// [`FromBarsError::InvalidArgument`] naming the argument and the text.
pub fn parse_date(argument: &'static str, text: &str) -> Result<NaiveDate, FromBarsError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|e| FromBarsError::InvalidArgument {
        argument,
        value: text.to_owned(),
        reason: format!("expected a date YYYY-MM-DD ({e})"),
    })
}

/// Parses `--tickers AAPL,MSFT,…` (sorted, deduplicated).
///
/// # Errors
/// [`FromBarsError::InvalidArgument`] for an empty list or a malformed ticker.
pub fn parse_tickers(text: &str) -> Result<BTreeSet<String>, FromBarsError> {
    let mut tickers = BTreeSet::new();
    for ticker in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !is_valid_ticker(ticker) {
            return Err(FromBarsError::InvalidArgument {
                argument: "--tickers",
                value: ticker.to_owned(),
                reason: "a ticker must match ^[A-Z][A-Z0-9.-]{0,9}$".into(),
            });
        }
        tickers.insert(ticker.to_owned());
    }
    if tickers.is_empty() {
        return Err(FromBarsError::InvalidArgument {
            argument: "--tickers",
            value: text.to_owned(),
            reason: "name at least one ticker, comma-separated (AAPL,MSFT)".into(),
        });
    }
    Ok(tickers)
}

/// Parses `--interval` (`5m`, `1h`): minutes in `1..=120`.
///
/// # Errors
/// [`FromBarsError::InvalidArgument`] naming the text.
pub fn parse_interval(text: &str) -> Result<u32, FromBarsError> {
    let invalid = |reason: &str| FromBarsError::InvalidArgument {
        argument: "--interval",
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    let (number, unit) = if let Some(n) = trimmed.strip_suffix('m') {
        (n, 1)
    } else if let Some(n) = trimmed.strip_suffix('h') {
        (n, 60)
    } else {
        return Err(invalid("expected minutes or hours like 5m or 1h"));
    };
    let minutes = number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| invalid("expected minutes or hours like 5m or 1h"))?;
    if !(1..=MAX_INTERVAL_MINUTES).contains(&minutes) {
        return Err(invalid(&format!("must be between 1m and {MAX_INTERVAL_MINUTES}m")));
    }
    Ok(minutes)
}

/// Parses `--initial-cash`: a positive amount in plain decimal notation.
///
/// # Errors
/// [`FromBarsError::InvalidArgument`] naming the text.
pub fn parse_initial_cash(text: &str) -> Result<Money, FromBarsError> {
    match tape_events::money::parse_plain_decimal(text.trim()) {
        Ok(value) if value > Decimal::ZERO => Ok(Money::new(value)),
        _ => Err(FromBarsError::InvalidArgument {
            argument: "--initial-cash",
            value: text.to_owned(),
            reason: "expected a positive amount like 100000.00".into(),
        }),
    }
}

/// The generator of one purpose: see the module docs.
fn rng_for(seed: u64, purpose: &str, parts: &[&str]) -> ChaCha8Rng {
    let mut hasher = Sha256::new();
    hasher.update(b"tape/from-bars/v1\0");
    hasher.update(purpose.as_bytes());
    hasher.update(b"\0");
    hasher.update(seed.to_be_bytes());
    for part in parts {
        hasher.update(b"\0");
        hasher.update(part.as_bytes());
    }
    ChaCha8Rng::from_seed(hasher.finalize().into())
}

fn exchange_time(date: NaiveDate, hour: u32, minute: u32) -> Result<Timestamp, FromBarsError> {
    calendar::exchange_time(date, hour, minute).ok_or(FromBarsError::ExchangeTime { date, hour, minute })
}

/// Minutes after 09:30 of each quote: every `interval` from 0, and 390 (16:00).
fn quote_offsets(interval_minutes: u32) -> Vec<u32> {
    let step = usize::try_from(interval_minutes.max(1)).unwrap_or(1);
    let mut offsets: Vec<u32> = (0..SESSION_MINUTES).step_by(step).collect();
    offsets.push(SESSION_MINUTES);
    offsets
}

/// One line waiting to be written, with its sort key within the day.
struct Pending {
    at: Timestamp,
    class: u8,
    ticker: usize,
    event: Event,
}

const CLASS_QUOTE: u8 = 1;
const CLASS_RECOMMENDATION: u8 = 2;
const CLASS_BAR: u8 = 3;
const CLASS_SECURITY: u8 = 4;

struct Writer<'w, W: Write> {
    out: &'w mut W,
    line: Vec<u8>,
    summary: Summary,
}

impl<W: Write> Writer<'_, W> {
    fn write(&mut self, at: Timestamp, event: Event) -> Result<(), FromBarsError> {
        match &event {
            Event::QuoteObserved(_) => self.summary.quotes += 1,
            Event::DailyBarObserved(_) => self.summary.daily_bars += 1,
            Event::SecurityUpdated(_) => self.summary.security_updates += 1,
            Event::RecommendationReceived(rec) => {
                if rec.action.as_deref().is_some_and(|action| action.eq_ignore_ascii_case("buy")) {
                    self.summary.buys += 1;
                } else {
                    self.summary.sells += 1;
                }
            }
            _ => {}
        }
        self.line.clear();
        Stamped { at, event }.write_json_line(&mut self.line);
        self.line.push(b'\n');
        self.summary.lines += 1;
        self.out.write_all(&self.line).map_err(FromBarsError::Write)
    }
}

fn security(ticker: &str, sectors: &SectorSet, next_earnings_date: Option<NaiveDate>) -> Event {
    Event::SecurityUpdated(SecurityUpdated {
        ticker: ticker.to_owned(),
        sector: sectors.sectors.get(ticker).cloned(),
        next_earnings_date,
    })
}

fn daily_bar(ticker: &str, bar: &DailyBar) -> Event {
    Event::DailyBarObserved(DailyBarObserved {
        ticker: ticker.to_owned(),
        date: bar.date,
        close: Price::new(bar.close),
    })
}

/// Checks `params` against the data: every ticker known and with bars in range, a
/// non-empty range of trading days, a valid account id.
fn validate(params: &Params, sources: &Sources<'_>) -> Result<Vec<NaiveDate>, FromBarsError> {
    if !is_valid_account_id(&params.account_id) {
        return Err(FromBarsError::InvalidArgument {
            argument: "--account",
            value: params.account_id.clone(),
            reason: "an account id must match ^[a-z0-9][a-z0-9_-]{0,62}$".into(),
        });
    }
    if params.tickers.is_empty() {
        return Err(FromBarsError::InvalidArgument {
            argument: "--tickers",
            value: String::new(),
            reason: "name at least one ticker".into(),
        });
    }
    if !(1..=MAX_INTERVAL_MINUTES).contains(&params.interval_minutes) {
        return Err(FromBarsError::InvalidArgument {
            argument: "--interval",
            value: format!("{}m", params.interval_minutes),
            reason: format!("must be between 1m and {MAX_INTERVAL_MINUTES}m"),
        });
    }
    if params.from > params.to {
        return Err(FromBarsError::EmptyRange { from: params.from, to: params.to });
    }
    let days = calendar::trading_days(params.from, params.to, sources.holidays);
    if days.is_empty() {
        return Err(FromBarsError::NoTradingDays { from: params.from, to: params.to });
    }
    for ticker in &params.tickers {
        let Some(bars) = sources.bars.bars.get(ticker).filter(|b| !b.is_empty()) else {
            return Err(FromBarsError::UnknownTicker { ticker: ticker.clone() });
        };
        if bars.range(params.from..=params.to).next().is_none() {
            return Err(FromBarsError::NoBarsInRange { ticker: ticker.clone(), from: params.from, to: params.to });
        }
    }
    Ok(days)
}

/// Writes the scenario for `params` to `out`, one JSON line per input.
///
/// # Errors
/// [`FromBarsError`] for parameters the data cannot serve (unknown ticker, empty range,
/// no bars in range) and for a failed write.
pub fn generate(params: &Params, sources: &Sources<'_>, out: &mut impl Write) -> Result<Summary, FromBarsError> {
    let days = validate(params, sources)?;
    let tickers: Vec<&str> = params.tickers.iter().map(String::as_str).collect();
    let first_day = days[0];
    let last_day = days[days.len() - 1];
    let mut writer = Writer { out, line: Vec::with_capacity(256), summary: Summary::default() };
    writer.summary.first_day = Some(first_day);
    writer.summary.last_day = Some(last_day);
    writer.summary.trading_days = days.len() as u64;

    // Synthetic earnings calendars, one offset per (seed, ticker).
    let (from_year, to_year) = feed::earnings_years(first_day, last_day);
    let earnings: Vec<Vec<NaiveDate>> = tickers
        .iter()
        .map(|ticker| {
            let offset = rng_for(params.seed, "earnings", &[ticker]).random_range(0..=30u64);
            feed::earnings_dates(offset, from_year, to_year, sources.holidays)
        })
        .collect();
    let mut next_earnings: Vec<Option<NaiveDate>> =
        earnings.iter().map(|dates| feed::next_on_or_after(dates, first_day)).collect();

    // 1. The opening: account, securities, warm-up bars.
    let start = exchange_time(first_day, 8, 0)?;
    writer.write(
        start,
        Event::AccountOpened(AccountOpened {
            account_id: params.account_id.clone(),
            initial_cash: params.initial_cash,
            mode: AccountMode::Paper,
        }),
    )?;
    for (index, ticker) in tickers.iter().enumerate() {
        if !sources.sectors.sectors.contains_key(*ticker) {
            writer.summary.warnings.push(format!(
                "ticker {ticker} has no sector in the sectors file: its sector is written as null (UNKNOWN)"
            ));
        }
        writer.write(start, security(ticker, sources.sectors, next_earnings[index]))?;
    }
    let mut warmup: BTreeMap<(NaiveDate, usize), &DailyBar> = BTreeMap::new();
    for (index, ticker) in tickers.iter().enumerate() {
        let before = sources.bars.bars[*ticker].range(..first_day).rev().take(WARMUP_DAYS);
        let mut count = 0;
        for (date, bar) in before {
            warmup.insert((*date, index), bar);
            count += 1;
        }
        if count < WARMUP_DAYS {
            writer.summary.warnings.push(format!(
                "ticker {ticker} has only {count} bars before {first_day} ({WARMUP_DAYS} wanted for warm-up): \
                 correlation and momentum start later for it"
            ));
        }
    }
    for ((_, index), bar) in warmup {
        writer.write(start, daily_bar(tickers[index], bar))?;
    }

    // 2. The trading days.
    let offsets = quote_offsets(params.interval_minutes);
    let mut pending: Vec<Pending> = Vec::new();
    for day in days {
        let day_text = day.to_string();
        let open = exchange_time(day, SESSION_OPEN.0, SESSION_OPEN.1)?;
        let times: Vec<Timestamp> =
            offsets.iter().map(|minutes| open.plus(Duration::minutes(i64::from(*minutes)))).collect();
        let bar_at = exchange_time(day, 16, 30)?;
        for (index, ticker) in tickers.iter().enumerate() {
            let history = &sources.bars.bars[*ticker];
            if let Some(bar) = history.get(&day) {
                let prices =
                    path::intraday_path(bar, times.len(), &mut rng_for(params.seed, "path", &[ticker, &day_text]));
                for (at, price) in times.iter().zip(&prices) {
                    let quote = QuoteObserved { ticker: (*ticker).to_owned(), price: Price::new(*price) };
                    pending.push(Pending { at: *at, class: CLASS_QUOTE, ticker: index, event: quote.into() });
                }
                let mut closes: Vec<Decimal> =
                    history.range(..day).rev().take(feed::MOMENTUM_CLOSES).map(|(_, b)| b.close).collect();
                closes.reverse();
                if let Some(momentum) = feed::Momentum::from_closes(&closes) {
                    let context = TickerDay {
                        seed: params.seed,
                        ticker,
                        day_text: &day_text,
                        times: &times,
                        prices: &prices,
                        momentum: &momentum,
                    };
                    let mut z_ref = momentum.z_prev_close();
                    for (hour, minute) in RECOMMENDATION_SLOTS {
                        let at = exchange_time(day, hour, minute)?;
                        let generated = recommendation(&context, (hour, minute), at, z_ref);
                        z_ref = generated.z;
                        if let Some(rec) = generated.rec {
                            if generated.invalid {
                                writer.summary.invalid_recommendations += 1;
                            }
                            pending.push(Pending { at, class: CLASS_RECOMMENDATION, ticker: index, event: rec.into() });
                        }
                    }
                }
                pending.push(Pending { at: bar_at, class: CLASS_BAR, ticker: index, event: daily_bar(ticker, bar) });
            }
            if next_earnings[index].is_some_and(|date| date <= day) {
                let next = earnings[index].iter().copied().find(|d| *d > day);
                next_earnings[index] = next;
                let event = security(ticker, sources.sectors, next);
                pending.push(Pending { at: bar_at, class: CLASS_SECURITY, ticker: index, event });
            }
        }
        // Stable: a ticker's quotes keep their order.
        pending.sort_by_key(|p| (p.at, p.class, p.ticker));
        for line in pending.drain(..) {
            writer.write(line.at, line.event)?;
        }
    }
    writer.out.flush().map_err(FromBarsError::Write)?;
    Ok(writer.summary)
}

/// What the feed knows of one ticker on one day.
struct TickerDay<'a> {
    seed: u64,
    ticker: &'a str,
    day_text: &'a str,
    /// The day's quote times and prices.
    times: &'a [Timestamp],
    prices: &'a [Decimal],
    momentum: &'a feed::Momentum,
}

struct Generated {
    /// The momentum reading at this slot (the next slot's reference).
    z: f64,
    rec: Option<RecommendationReceived>,
    invalid: bool,
}

/// The recommendation of one slot, if the signal gives one. Draws, in order: the
/// seconds before `at` it was generated, the per-mille roll for a malformed row, the
/// kind of malformation (all three always, so one never shifts another).
fn recommendation(day: &TickerDay<'_>, (hour, minute): (u32, u32), at: Timestamp, z_ref: f64) -> Generated {
    let slot_text = format!("{hour:02}{minute:02}");
    let mut rng = rng_for(day.seed, "recommendation", &[day.ticker, day.day_text, &slot_text]);
    let before_secs = rng.random_range(GENERATED_BEFORE_SECS.0..=GENERATED_BEFORE_SECS.1);
    let roll = rng.random_range(0..1000u32);
    let kind = rng.random_range(0..6u32);
    let generated_at = at.minus(Duration::seconds(before_secs));
    // The last quote at or before generated_at: all the feed may know of today.
    let Some(known) = day.times.iter().rposition(|t| *t <= generated_at).map(|i| day.prices[i]) else {
        return Generated { z: z_ref, rec: None, invalid: false };
    };
    let z = day.momentum.z_at(known);
    let (action, confidence) = match (feed::buy_confidence(z), feed::sell_confidence(z_ref, z)) {
        (Some(confidence), _) => ("buy", confidence),
        (None, Some(confidence)) => ("sell", confidence),
        (None, None) => return Generated { z, rec: None, invalid: false },
    };
    let mut rec = RecommendationReceived {
        recommendation_id: format!("rec-{}-{}-{slot_text}", day.day_text, day.ticker),
        ticker: Some(day.ticker.to_owned()),
        action: Some(action.to_owned()),
        confidence: Some(confidence.to_string()),
        mode: Some("paper_eligible".to_owned()),
        generated_at: Some(generated_at.to_string()),
        source: Some(SOURCE.to_owned()),
    };
    let invalid = roll < INVALID_PER_MILLE;
    if invalid {
        match kind {
            0 => rec.ticker = Some(day.ticker.to_ascii_lowercase()),
            1 => rec.confidence = Some("1.2".to_owned()),
            2 => rec.action = Some(action.to_ascii_uppercase()),
            3 => rec.confidence = Some(format!("{}e0", rec.confidence.as_deref().unwrap_or("0.8"))),
            4 => rec.mode = Some("paper".to_owned()),
            _ => rec.generated_at = Some("yesterday".to_owned()),
        }
    }
    Generated { z, rec: Some(rec), invalid }
}

#[cfg(test)]
mod tests;
