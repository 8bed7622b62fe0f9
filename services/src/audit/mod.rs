//! `tape audit`: explain any decision, list what happened, and verify the ledger
//! (SPEC 10).
//!
//! - [`explain`]: the pure model of one recommendation's chain.
//! - [`render`]: its one-screen text and JSON; listings as text, CSV or JSON.
//! - this module: reading the log (a read-only role: `tape_reader`) and the listings.
//!
//! Every answer here comes from the event log itself, upcast through the same decoders
//! as replay; the projections are a faster index into the same events.

pub mod explain;
pub mod render;

use chrono::NaiveDate;
use futures_util::{pin_mut, TryStreamExt};
use tape_commands::calendar::exchange_instant;
use tape_events::{Event, StoredEvent, Timestamp};
use tokio_postgres::types::ToSql;

use crate::store::{decode_row, EventStore, StoreError, VerifyReport, EVENT_COLUMNS};
use explain::{AuditEvent, Explainer, Explanation};
use render::{et, Rows};

/// Why an audit query failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} ({event_type}) does not decode: {source}")]
    Decode {
        position: i64,
        event_type: String,
        #[source]
        source: tape_events::DecodeError,
    },
    #[error("database error: {}", crate::describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("cannot get a database connection: {}", crate::describe(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
}

fn audit_event(stored: StoredEvent) -> Result<AuditEvent, AuditError> {
    let stamped = stored.decode().map_err(|source| AuditError::Decode {
        position: stored.position,
        event_type: stored.event_type.clone(),
        source,
    })?;
    Ok(AuditEvent {
        position: stored.position,
        stream_id: stored.stream_id,
        stream_version: stored.stream_version,
        event_id: stored.event_id,
        stamped,
        metadata: stored.metadata,
    })
}

/// Runs a query over `events` (selecting [`EVENT_COLUMNS`]) and streams its rows decoded.
async fn for_each_event(
    store: &EventStore,
    sql_after_from: &str,
    params: &[&(dyn ToSql + Sync)],
    mut each: impl FnMut(AuditEvent) -> bool,
) -> Result<(), AuditError> {
    let client = store.pool().get().await?;
    let sql = format!("SELECT {EVENT_COLUMNS} FROM events {sql_after_from}");
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query_raw(&statement, params.iter().copied()).await?;
    pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let event = audit_event(decode_row(&row)?.event)?;
        if !each(event) {
            break;
        }
    }
    Ok(())
}

/// The streams in which a recommendation was captured.
///
/// # Errors
/// [`AuditError`] on a database failure.
pub async fn streams_of_recommendation(store: &EventStore, recommendation_id: &str) -> Result<Vec<String>, AuditError> {
    let client = store.pool().get().await?;
    let rows = client
        .query(
            "SELECT stream_id FROM events WHERE event_type = 'RecommendationReceived' \
             AND (payload->>'recommendation_id') = $1 GROUP BY stream_id ORDER BY stream_id",
            &[&recommendation_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Explains a recommendation from the log alone: every account stream that captured it,
/// read in version order. Only the event types the explainer reacts to are sent
/// ([`Explainer::FED_TYPES`]: one row in twenty of a real stream, mostly quotes); the
/// server still reads the whole stream, so this is linear in its length.
///
/// # Errors
/// [`AuditError`] on a database failure or an undecodable event.
pub async fn explain_from_log(store: &EventStore, recommendation_id: &str) -> Result<Vec<Explanation>, AuditError> {
    let types: Vec<String> = Explainer::FED_TYPES.iter().map(|t| (*t).to_owned()).collect();
    let mut explanations = Vec::new();
    for stream in streams_of_recommendation(store, recommendation_id).await? {
        let mut explainer = Explainer::new(recommendation_id, &stream);
        let sql = "WHERE stream_id = $1 AND event_type = ANY($2) ORDER BY stream_version";
        for_each_event(store, sql, &[&stream, &types], |event| {
            explainer.feed(&event);
            true
        })
        .await?;
        explanations.extend(explainer.finish());
    }
    Ok(explanations)
}

/// Versions before a decision that its evaluation can span: the input, six checks,
/// eight sizing steps (SPEC 4), with room to spare.
const EVALUATION_SPAN: i64 = 20;

/// Explains a recommendation through the indexes: the `trading_decisions` projection
/// finds its decisions, a short version window around each holds its capture, checks,
/// steps and order, and the partial indexes of `V20__audit_indexes.sql` find the orders'
/// lifecycle and the ticker's fills, exits and closed trade. The explanation is the one
/// [`explain_from_log`] gives (a test compares them): the events fed are a subset of the
/// stream that contains every event the explainer reacts to, in stream order.
///
/// # Errors
/// [`AuditError`] on a database failure or an undecodable event.
pub async fn explain_fast(store: &EventStore, recommendation_id: &str) -> Result<Vec<Explanation>, AuditError> {
    let client = store.pool().get().await?;
    let decisions = client
        .query(
            "SELECT e.stream_id, e.stream_version FROM trading_decisions d JOIN events e ON e.position = d.position \
             WHERE d.recommendation_id = $1 ORDER BY e.stream_id, e.stream_version",
            &[&recommendation_id],
        )
        .await?;
    let mut by_stream: std::collections::BTreeMap<String, Vec<i64>> = std::collections::BTreeMap::new();
    for row in &decisions {
        by_stream.entry(row.get(0)).or_default().push(row.get(1));
    }
    drop(client);
    let mut explanations = Vec::new();
    for (stream, versions) in by_stream {
        let mut events: std::collections::BTreeMap<i64, AuditEvent> = std::collections::BTreeMap::new();
        let mut wanted: Vec<i64> = Vec::new();
        for v in versions {
            wanted.extend((v - EVALUATION_SPAN).max(1)..=v + 1);
        }
        wanted.sort_unstable();
        wanted.dedup();
        let by_version = "WHERE stream_id = $1 AND stream_version = ANY($2) ORDER BY stream_version";
        for_each_event(store, by_version, &[&stream, &wanted], |e| {
            events.insert(e.stream_version, e);
            true
        })
        .await?;
        // The orders placed for the recommendation, then everything about them and their ticker.
        let mut orders: Vec<String> = Vec::new();
        let mut tickers: Vec<String> = Vec::new();
        for e in events.values() {
            if let Event::OrderPlaced(o) = &e.stamped.event {
                if o.recommendation_id.as_deref() == Some(recommendation_id) {
                    orders.push(o.order_id.to_string());
                    tickers.push(o.ticker.clone());
                }
            }
        }
        tickers.sort_unstable();
        tickers.dedup();
        if !tickers.is_empty() {
            let sql = "WHERE stream_id = $1 AND (payload->>'ticker') = ANY($2) \
                       AND event_type IN ('OrderPlaced', 'OrderFilled', 'StopLossTriggered', 'TradeClosed') \
                       ORDER BY stream_id, (payload->>'ticker'), position";
            for_each_event(store, sql, &[&stream, &tickers], |e| {
                if let Event::OrderPlaced(o) = &e.stamped.event {
                    orders.push(o.order_id.to_string());
                }
                events.insert(e.stream_version, e);
                true
            })
            .await?;
        }
        orders.sort_unstable();
        orders.dedup();
        if !orders.is_empty() {
            let sql = "WHERE (payload->>'order_id') = ANY($1) \
                       AND event_type IN ('OrderPlaced', 'OrderSubmitted', 'OrderFilled', 'OrderRejected', 'OrderCanceled') \
                       ORDER BY (payload->>'order_id'), position";
            for_each_event(store, sql, &[&orders], |e| {
                if e.stream_id == stream {
                    events.insert(e.stream_version, e);
                }
                true
            })
            .await?;
        }
        let mut explainer = Explainer::new(recommendation_id, &stream);
        for event in events.values() {
            explainer.feed(event);
        }
        explanations.extend(explainer.finish());
    }
    Ok(explanations)
}

/// Filters of the listings.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// One stream (`account-{id}` for an account).
    pub stream: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub since: Option<Timestamp>,
    pub limit: Option<i64>,
}

impl Filter {
    /// `WHERE …` over `events` for some event types, with the filter's bounds; `$1` is the
    /// type list, and the bounds follow in order.
    fn clause(&self) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let mut sql = String::from("WHERE event_type = ANY($1)");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut next = 2;
        if let Some(stream) = &self.stream {
            sql.push_str(&format!(" AND stream_id = ${next}"));
            params.push(Box::new(stream.clone()));
            next += 1;
        }
        let start = self.from.map(|d| exchange_instant(d, chrono::NaiveTime::MIN));
        let start = match (start, self.since) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(start) = start {
            sql.push_str(&format!(" AND at >= ${next}"));
            params.push(Box::new(start.datetime()));
            next += 1;
        }
        if let Some(to) = self.to {
            let end = exchange_instant(to.succ_opt().unwrap_or(to), chrono::NaiveTime::MIN);
            sql.push_str(&format!(" AND at < ${next}"));
            params.push(Box::new(end.datetime()));
        }
        sql.push_str(" ORDER BY tx_id, position");
        if let Some(limit) = self.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
        }
        (sql, params)
    }
}

async fn select(
    store: &EventStore,
    types: &[&str],
    filter: &Filter,
    each: impl FnMut(AuditEvent) -> bool,
) -> Result<(), AuditError> {
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let (sql, params) = filter.clause();
    let mut refs: Vec<&(dyn ToSql + Sync)> = vec![&types];
    refs.extend(params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
    for_each_event(store, &sql, &refs, each).await
}

/// A one-line summary of any event.
#[must_use]
pub fn summarize(event: &Event) -> String {
    let money = |m: &tape_events::Money| m.to_string();
    match event {
        Event::AccountOpened(e) => format!("account {} opened with {} ({})", e.account_id, e.initial_cash, e.mode),
        Event::ConfigActivated(e) => format!("config {}", &e.hash[..e.hash.len().min(12)]),
        Event::SecurityUpdated(e) => format!(
            "{} sector {} earnings {}",
            e.ticker,
            e.sector.as_deref().unwrap_or("UNKNOWN"),
            e.next_earnings_date.map_or_else(|| "unknown".to_owned(), |d| d.to_string())
        ),
        Event::DailyBarObserved(e) => format!("{} close {} on {}", e.ticker, e.close, e.date),
        Event::QuoteObserved(e) => format!("{} {}", e.ticker, e.price),
        Event::RecommendationReceived(e) => format!(
            "{} {} {} confidence {}",
            e.recommendation_id,
            e.action.as_deref().unwrap_or("–"),
            e.ticker.as_deref().unwrap_or("–"),
            e.confidence.as_deref().unwrap_or("–")
        ),
        Event::SchedulerTick(e) => format!("tick {}", e.tick),
        Event::OrderSubmitted(e) => format!("order {} submitted as {}", e.order_id, e.broker_order_id),
        Event::OrderFilled(e) => format!("order {} filled {} {} {} @ {}", e.order_id, e.side, e.qty, e.ticker, e.price),
        Event::OrderRejected(e) => format!("order {} rejected: {}", e.order_id, e.reason),
        Event::OrderCanceled(e) => format!("order {} canceled: {}", e.order_id, e.reason),
        Event::BreakerResetRequested(e) => format!(
            "reset {}{} by {}: {}",
            e.kind,
            e.ticker.as_deref().map(|t| format!(" {t}")).unwrap_or_default(),
            e.actor,
            e.reason
        ),
        Event::ReserveReleaseRequested(e) => format!("release {} by {}: {}", e.amount, e.actor, e.reason),
        Event::BrokerDiscrepancyObserved(e) => format!("broker discrepancy: {}", e.description),
        Event::PreTradeCheckEvaluated(e) => {
            format!("{} {} {}", e.recommendation_id, e.check, if e.passed { "passed" } else { "failed" })
        }
        Event::SizingStepApplied(e) => {
            format!("{} {} {} → {}", e.recommendation_id, e.step, money(&e.dollars_before), money(&e.dollars_after))
        }
        Event::TradingDecisionRecorded(e) => format!(
            "{} {} {} {}{}{}",
            e.recommendation_id,
            e.side.as_deref().unwrap_or("–"),
            e.ticker.as_deref().unwrap_or("–"),
            e.decision,
            e.skip_reason.map(|r| format!(" {r}")).unwrap_or_default(),
            if e.is_final { "" } else { " (transient)" }
        ),
        Event::OrderPlaced(e) => format!("order {} {} {} {} ({})", e.order_id, e.side, e.qty, e.ticker, e.reason),
        Event::TradeClosed(e) => format!("{} closed {} shares, P&L {}", e.ticker, e.qty, e.realized_pnl),
        Event::StopLossTriggered(e) => format!("{} stop-loss at {} (stop {})", e.ticker, e.price, e.stop_price),
        Event::CircuitBreakerTripped(e) => format!(
            "{}{} tripped until {}",
            e.kind,
            e.ticker.as_deref().map(|t| format!(" {t}")).unwrap_or_default(),
            e.until.map_or_else(|| "reset".to_owned(), et)
        ),
        Event::CircuitBreakerCleared(e) => {
            format!("{}{} cleared", e.kind, e.ticker.as_deref().map(|t| format!(" {t}")).unwrap_or_default())
        }
        Event::ReserveTransferred(e) => format!("{} {} → balance {}", e.kind, e.amount, e.balance_after),
        Event::PortfolioSnapshotTaken(e) => format!("{} equity {} cash {}", e.kind, e.equity, e.cash),
        Event::PerformanceEvaluated(e) => format!(
            "sharpe {} drawdown {} win rate {} over {} trades",
            e.sharpe.map_or_else(|| "–".to_owned(), |v| v.to_string()),
            e.max_drawdown.map_or_else(|| "–".to_owned(), |v| v.to_string()),
            e.win_rate.map_or_else(|| "–".to_owned(), |v| v.to_string()),
            e.closed_trades
        ),
        Event::RiskTierChanged(e) => format!("{} → {} ({})", e.from, e.to, e.reason),
    }
}

/// `tape audit events`: events of some types (all when empty), with their summaries.
///
/// # Errors
/// [`AuditError`] on a database failure or an undecodable event.
pub async fn events(store: &EventStore, types: &[String], filter: &Filter) -> Result<Rows, AuditError> {
    let mut rows = Rows::new(&["position", "at", "stream", "version", "type", "summary"]);
    let all: Vec<&str> =
        if types.is_empty() { Event::TYPES.to_vec() } else { types.iter().map(String::as_str).collect() };
    select(store, &all, filter, |e| {
        rows.push(vec![
            e.position.to_string(),
            e.stamped.at.to_string(),
            e.stream_id.clone(),
            e.stream_version.to_string(),
            e.stamped.event.event_type().to_owned(),
            summarize(&e.stamped.event),
        ]);
        true
    })
    .await?;
    Ok(rows)
}

/// `tape audit decisions`: trading decisions, optionally of one outcome or skip reason.
///
/// # Errors
/// [`AuditError`] on a database failure or an undecodable event.
pub async fn decisions(
    store: &EventStore,
    filter: &Filter,
    outcome: Option<&str>,
    skipped_for: Option<&str>,
) -> Result<Rows, AuditError> {
    let mut rows = Rows::new(&[
        "at",
        "stream",
        "recommendation",
        "ticker",
        "side",
        "decision",
        "final",
        "reason",
        "shares",
        "amount",
        "price",
        "tier",
    ]);
    select(store, &["TradingDecisionRecorded"], filter, |e| {
        if let Event::TradingDecisionRecorded(d) = &e.stamped.event {
            let reason = d.skip_reason.map(|r| r.to_string());
            let keep = outcome.is_none_or(|o| d.decision.as_str() == o)
                && skipped_for.is_none_or(|r| reason.as_deref() == Some(r));
            if keep {
                rows.push(vec![
                    et(e.stamped.at),
                    e.stream_id.clone(),
                    d.recommendation_id.clone(),
                    d.ticker.clone().unwrap_or_default(),
                    d.side.clone().unwrap_or_default(),
                    d.decision.to_string(),
                    d.is_final.to_string(),
                    reason.unwrap_or_default(),
                    d.shares.map(|s| s.to_string()).unwrap_or_default(),
                    d.dollar_amount.map(|m| m.to_string()).unwrap_or_default(),
                    d.price.map(|p| p.to_string()).unwrap_or_default(),
                    d.risk_tier.to_string(),
                ]);
            }
        }
        true
    })
    .await?;
    Ok(rows)
}

/// A listing of some event types as (at, type, summary).
///
/// # Errors
/// [`AuditError`] on a database failure or an undecodable event.
pub async fn timeline(
    store: &EventStore,
    types: &[&str],
    filter: &Filter,
    ticker: Option<&str>,
) -> Result<Rows, AuditError> {
    let mut rows = Rows::new(&["at", "position", "stream", "type", "summary"]);
    // Acknowledgements name no ticker, only their order, placed (and listed) before them.
    let mut orders: std::collections::BTreeSet<uuid::Uuid> = std::collections::BTreeSet::new();
    select(store, types, filter, |e| {
        let event = &e.stamped.event;
        let ours = match (ticker, event) {
            (None, _) => true,
            (Some(t), Event::OrderPlaced(o)) if o.ticker == t => {
                orders.insert(o.order_id);
                true
            }
            (Some(_), Event::OrderSubmitted(a)) => orders.contains(&a.order_id),
            (Some(_), Event::OrderRejected(a)) => orders.contains(&a.order_id),
            (Some(_), Event::OrderCanceled(a)) => orders.contains(&a.order_id),
            (Some(t), _) => event.ticker() == Some(t),
        };
        if ours {
            rows.push(vec![
                et(e.stamped.at),
                e.position.to_string(),
                e.stream_id.clone(),
                e.stamped.event.event_type().to_owned(),
                summarize(&e.stamped.event),
            ]);
        }
        true
    })
    .await?;
    Ok(rows)
}

/// The event types `tape audit breakers`, `reserve`, `tiers` and `ticker` list.
pub const BREAKER_TYPES: &[&str] = &["CircuitBreakerTripped", "CircuitBreakerCleared", "BreakerResetRequested"];
pub const RESERVE_TYPES: &[&str] = &["ReserveTransferred", "ReserveReleaseRequested"];
pub const TIER_TYPES: &[&str] = &["PerformanceEvaluated", "RiskTierChanged"];
pub const TICKER_TYPES: &[&str] = &[
    "SecurityUpdated",
    "RecommendationReceived",
    "TradingDecisionRecorded",
    "OrderPlaced",
    "OrderSubmitted",
    "OrderFilled",
    "OrderRejected",
    "OrderCanceled",
    "StopLossTriggered",
    "CircuitBreakerTripped",
    "CircuitBreakerCleared",
    "TradeClosed",
];

/// What `verify` found about immutability: each statement and whether the database
/// refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutabilityCheck {
    pub statement: &'static str,
    pub refused: bool,
    pub message: String,
}

/// Tries UPDATE, DELETE and TRUNCATE on `events` inside a transaction that is always
/// rolled back, and reports whether the database refused each.
///
/// # Errors
/// [`AuditError`] when no connection can be had.
pub async fn check_immutability(store: &EventStore) -> Result<Vec<ImmutabilityCheck>, AuditError> {
    let mut client = store.pool().get().await?;
    let mut checks = Vec::new();
    for statement in
        ["UPDATE events SET payload = payload WHERE false", "DELETE FROM events WHERE false", "TRUNCATE events"]
    {
        let tx = client.transaction().await?;
        let result = tx.batch_execute(statement).await;
        let (refused, message) = match result {
            Ok(()) => (false, "the statement succeeded (rolled back)".to_owned()),
            Err(e) => (true, e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned())),
        };
        tx.rollback().await.ok();
        checks.push(ImmutabilityCheck { statement, refused, message });
    }
    Ok(checks)
}

/// The chain verification and the immutability probe together.
///
/// # Errors
/// [`AuditError`] on a database failure.
pub async fn verify(
    store: &EventStore,
    expected_heads: &std::collections::BTreeMap<String, tape_events::chain::Hash>,
) -> Result<(VerifyReport, Vec<ImmutabilityCheck>), AuditError> {
    let report = store.verify_all(expected_heads).await?;
    let immutability = check_immutability(store).await?;
    Ok((report, immutability))
}
