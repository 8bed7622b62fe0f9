//! The account's producer tasks (SPEC 8): the decision loop, the stop-loss monitor, the
//! three schedulers and the reference-data reader. Each only reads and sends messages
//! to the account's processor; none decides anything.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use tape_commands::schedule::{day_schedule, next_minute_after};
use tape_events::{Config, TickKind, Timestamp};
use tokio::sync::mpsc;

use crate::config::DatabaseConfig;
use crate::describe;
use crate::quotes::QuoteSource;
use crate::store::EventStore;

use super::processor::{input_now, Msg};
use super::Shared;

/// The LISTEN channel of `recommendations` (migration V3).
pub const RECOMMENDATIONS_CHANNEL: &str = "tape_recommendations";

/// Notified ids fetched per query, at most.
const FETCH_MAX: usize = 1000;

/// What the decision loop needs.
pub struct DecisionLoop {
    pub account: String,
    pub live: bool,
    pub store: EventStore,
    pub database: DatabaseConfig,
    pub config: Arc<Config>,
    pub poll_interval: Duration,
    pub sender: mpsc::Sender<Msg>,
    pub shared: Arc<Shared>,
}

#[derive(serde::Deserialize)]
struct Notice {
    id: Option<String>,
    account_id: Option<String>,
}

impl DecisionLoop {
    /// Runs until an error (the account restarts) or the processor is gone.
    ///
    /// # Errors
    /// A message naming what failed in PostgreSQL.
    pub async fn run(self) -> Result<(), String> {
        let clock = self.shared.clock.clone();
        let mut captured = self.captured().await?;
        let mut listener: Option<crate::db::Listener> = None;
        let mut next_poll = clock.now();
        let mut next_minute = next_minute_after(clock.now());
        let mut retry = Duration::from_millis(200);
        let mut ids: Vec<String> = Vec::new();
        loop {
            if listener.is_none() {
                match crate::db::listen(&self.database, RECOMMENDATIONS_CHANNEL).await {
                    Ok(l) => {
                        listener = Some(l);
                        retry = Duration::from_millis(200);
                        next_poll = clock.now(); // catch up on what was missed
                    }
                    Err(error) => {
                        tracing::warn!(account = %self.account, %error, "cannot LISTEN for recommendations; polling");
                        retry = (retry * 2).min(Duration::from_secs(5));
                    }
                }
            }
            let full_poll;
            ids.clear();
            tokio::select! {
                got = async { match listener.as_mut() {
                    Some(l) => l.receiver.recv_many(&mut ids, FETCH_MAX).await,
                    None => { tokio::time::sleep(retry).await; usize::MAX }
                } } => {
                    if got == 0 { listener = None; continue; }
                    if got == usize::MAX { continue; }
                    full_poll = ids.iter().any(String::is_empty);
                }
                () = clock.sleep_until(next_poll) => { full_poll = true; }
                () = clock.sleep_until(next_minute) => {
                    let now = clock.now();
                    next_minute = next_minute_after(now);
                    if self.sender.send(Msg::Advance(now)).await.is_err() { return Ok(()); }
                    continue;
                }
            }
            let wanted: Option<Vec<String>> = (!full_poll).then(|| {
                ids.iter()
                    .filter_map(|p| serde_json::from_str::<Notice>(p).ok())
                    .filter(|n| n.account_id.as_deref().is_none_or(|a| a == self.account))
                    .filter_map(|n| n.id)
                    .filter(|id| !captured.contains(id))
                    .collect()
            });
            if full_poll {
                next_poll = clock.now().plus(chrono::Duration::from_std(self.poll_interval).unwrap_or_default());
            }
            if wanted.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            if self.capture(&mut captured, wanted.as_deref()).await? {
                return Ok(());
            }
        }
    }

    /// Every recommendation id already in the stream.
    async fn captured(&self) -> Result<HashSet<String>, String> {
        let client = self.store.pool().get().await.map_err(|e| format!("decision loop: {e}"))?;
        let rows = client
            .query(
                "SELECT DISTINCT payload->>'recommendation_id' FROM events \
                 WHERE stream_id = $1 AND event_type = 'RecommendationReceived'",
                &[&tape_events::ids::account_stream(&self.account)],
            )
            .await
            .map_err(|e| format!("decision loop: {}", describe(&e)))?;
        Ok(rows.iter().filter_map(|r| r.get::<_, Option<String>>(0)).collect())
    }

    /// Reads eligible rows (all of the window, or `ids`) and sends the new ones; `true`
    /// when the processor is gone.
    async fn capture(&self, captured: &mut HashSet<String>, ids: Option<&[String]>) -> Result<bool, String> {
        let now = self.shared.clock.now();
        let cutoff = now.minus(self.config.recommendation_max_age.chrono());
        let modes = crate::upstream::eligible_modes(self.live);
        let client = self.store.pool().get().await.map_err(|e| format!("decision loop: {e}"))?;
        let rows = crate::upstream::candidate_recommendations(&client, &self.account, cutoff, &modes, ids)
            .await
            .map_err(|e| format!("decision loop: {}", describe(&e)))?;
        drop(client);
        for rec in rows {
            if !captured.insert(rec.recommendation_id.clone()) {
                continue;
            }
            let at = self.shared.clock.now();
            if self.sender.send(input_now(at, rec)).await.is_err() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The stop-loss monitor: quotes from the source become `QuoteObserved` inputs. Quotes
/// older than `quote_max_age` are not prices to act on and are skipped.
pub async fn quote_monitor(
    mut source: Box<dyn QuoteSource>,
    sender: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    config: Arc<Config>,
    account: String,
) -> Result<(), String> {
    let clock = shared.clock.clone();
    loop {
        let quotes = match source.next_batch(&clock).await {
            Ok(quotes) => quotes,
            Err(error) => {
                tracing::warn!(%account, %error, "cannot read quotes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let now = clock.now();
        let oldest = now.minus(config.quote_max_age.chrono());
        for quote in quotes {
            if quote.observed_at < oldest {
                continue;
            }
            let event = tape_events::QuoteObserved { ticker: quote.ticker, price: quote.price };
            if sender.send(input_now(quote.observed_at.min(now), event)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The next scheduled tick of `kinds` strictly after `now`.
#[must_use]
pub fn next_scheduled(now: Timestamp, kinds: &[TickKind], config: &Config) -> Option<Timestamp> {
    let mut date: NaiveDate = tape_commands::calendar::exchange_date(now);
    for _ in 0..400 {
        if let Some(tick) = day_schedule(date, config).into_iter().find(|t| t.at > now && kinds.contains(&t.kind)) {
            return Some(tick.at);
        }
        date = date.succ_opt()?;
    }
    None
}

/// A scheduler (performance loop, risk tier scheduler, rebalance scheduler): wakes the
/// processor at each of its ticks; the processor runs every tick due (SPEC 7 order).
pub async fn scheduler(
    kinds: &'static [TickKind],
    sender: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    config: Arc<Config>,
) {
    let clock = shared.clock.clone();
    loop {
        let Some(at) = next_scheduled(clock.now(), kinds, &config) else { return };
        clock.sleep_until(at).await;
        if sender.send(Msg::Advance(at)).await.is_err() {
            return;
        }
    }
}

/// Reads `securities` and the last `correlation_window` closes of `daily_bars`, and
/// sends what changed since the last read (the core drops what equals its state).
pub async fn reference_data(
    store: EventStore,
    sender: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    config: Arc<Config>,
    interval: Duration,
) -> Result<(), String> {
    let mut securities: BTreeMap<String, tape_events::SecurityUpdated> = BTreeMap::new();
    let mut bars: BTreeMap<(String, NaiveDate), tape_events::Price> = BTreeMap::new();
    loop {
        let client = store.pool().get().await.map_err(|e| format!("reference data: {e}"))?;
        let (new_securities, new_bars) = crate::upstream::reference_data(&client, i64::from(config.correlation_window))
            .await
            .map_err(|e| format!("reference data: {}", describe(&e)))?;
        drop(client);
        for security in new_securities {
            if securities.get(&security.ticker) == Some(&security) {
                continue;
            }
            securities.insert(security.ticker.clone(), security.clone());
            if sender.send(input_now(shared.clock.now(), security)).await.is_err() {
                return Ok(());
            }
        }
        for bar in new_bars {
            let key = (bar.ticker.clone(), bar.date);
            if bars.get(&key) == Some(&bar.close) {
                continue;
            }
            bars.insert(key, bar.close);
            if sender.send(input_now(shared.clock.now(), bar)).await.is_err() {
                return Ok(());
            }
        }
        tokio::time::sleep(interval).await;
    }
}
