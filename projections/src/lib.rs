//! `tape-projections`: the pure half of the read models (SPEC 1, 11).
//!
//! [`Projector::project`] maps one stored event to the row changes it causes in the eight
//! projection tables ([`Table`]): `trading_decisions`, `orders`, `fills`, `positions`,
//! `portfolio_snapshots`, `reserve_pool_ledger`, `circuit_breaker_trips` and
//! `risk_tier_history`. The shell (`services::projections`) reads the log, feeds events
//! here in global order, and writes the changes with each projection's checkpoint in one
//! transaction.
//!
//! The projector keeps a little state, all of it bounded: the check and sizing events
//! of the step in progress per stream (they become the `checks` and `sizing` arrays of
//! the decision row that ends them), the open orders, and the open positions. The last
//! two are exactly rows of the `orders` (status open) and `positions` tables, so a
//! projector that resumes from a checkpoint is seeded from those rows
//! ([`Projector::seed_order`], [`Projector::seed_position`]). The step buffer is empty at
//! every transaction boundary (a step is never split across transactions), which is
//! where the shell commits.
//!
//! Architecture invariant: this crate does no I/O, reads no clock, and depends on no
//! async, database or logging crate (a test over `cargo metadata` checks it).

pub mod rows;

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use tape_events::{average_cost_after_buy, realized_pnl, Event, Money, Qty, Side, Stamped};
use uuid::Uuid;

pub use rows::*;

/// The projection tables; each is one projection with its own checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    TradingDecisions,
    Orders,
    Fills,
    Positions,
    PortfolioSnapshots,
    ReservePoolLedger,
    CircuitBreakerTrips,
    RiskTierHistory,
}

impl Table {
    /// Every projection, in a fixed order.
    pub const ALL: [Self; 8] = [
        Self::TradingDecisions,
        Self::Orders,
        Self::Fills,
        Self::Positions,
        Self::PortfolioSnapshots,
        Self::ReservePoolLedger,
        Self::CircuitBreakerTrips,
        Self::RiskTierHistory,
    ];

    /// The table's (and the projection's) name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TradingDecisions => "trading_decisions",
            Self::Orders => "orders",
            Self::Fills => "fills",
            Self::Positions => "positions",
            Self::PortfolioSnapshots => "portfolio_snapshots",
            Self::ReservePoolLedger => "reserve_pool_ledger",
            Self::CircuitBreakerTrips => "circuit_breaker_trips",
            Self::RiskTierHistory => "risk_tier_history",
        }
    }

    /// The projection named `name`.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The event types whose rows this table is built from.
    #[must_use]
    pub const fn event_types(self) -> &'static [&'static str] {
        match self {
            Self::TradingDecisions => &["PreTradeCheckEvaluated", "SizingStepApplied", "TradingDecisionRecorded"],
            Self::Orders => &["OrderPlaced", "OrderSubmitted", "OrderFilled", "OrderRejected", "OrderCanceled"],
            Self::Fills | Self::Positions => &["OrderFilled"],
            Self::PortfolioSnapshots => &["PortfolioSnapshotTaken"],
            Self::ReservePoolLedger => &["ReserveTransferred"],
            Self::CircuitBreakerTrips => &["CircuitBreakerTripped", "CircuitBreakerCleared"],
            Self::RiskTierHistory => &["RiskTierChanged"],
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableSet(u8);

impl TableSet {
    /// Every projection.
    pub const ALL: Self = Self(0xff);
    /// No projection.
    pub const NONE: Self = Self(0);

    /// Just one projection.
    #[must_use]
    pub const fn only(table: Table) -> Self {
        Self(table.bit())
    }

    #[must_use]
    pub const fn contains(self, table: Table) -> bool {
        self.0 & table.bit() != 0
    }

    #[must_use]
    pub const fn with(self, table: Table) -> Self {
        Self(self.0 | table.bit())
    }

    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The projections of the set, in [`Table::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Table> {
        Table::ALL.into_iter().filter(move |t| self.contains(*t))
    }

    /// Every event type any projection of the set reads (sorted, no duplicates).
    #[must_use]
    pub fn event_types(self) -> Vec<&'static str> {
        let mut types: Vec<&'static str> = self.iter().flat_map(|t| t.event_types().iter().copied()).collect();
        types.sort_unstable();
        types.dedup();
        types
    }
}

/// One stored event as the projector sees it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    /// Global position (`events.position`).
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: &'a str,
    /// The configuration hash from the event's metadata.
    pub config_hash: Option<&'a str>,
    pub stamped: &'a Stamped,
}

/// A change to one projection table.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Decision(DecisionRow),
    /// Insert or replace the order's row.
    Order(OrderRow),
    Fill(FillRow),
    /// Insert or replace the position's row.
    Position(PositionRow),
    /// The position went back to zero.
    PositionClosed {
        account_id: String,
        ticker: String,
    },
    Snapshot(SnapshotRow),
    Reserve(ReserveRow),
    BreakerTripped(BreakerTripRow),
    BreakerCleared(BreakerClear),
    TierChanged(TierRow),
}

impl Change {
    /// The table the change belongs to.
    #[must_use]
    pub const fn table(&self) -> Table {
        match self {
            Self::Decision(_) => Table::TradingDecisions,
            Self::Order(_) => Table::Orders,
            Self::Fill(_) => Table::Fills,
            Self::Position(_) | Self::PositionClosed { .. } => Table::Positions,
            Self::Snapshot(_) => Table::PortfolioSnapshots,
            Self::Reserve(_) => Table::ReservePoolLedger,
            Self::BreakerTripped(_) | Self::BreakerCleared(_) => Table::CircuitBreakerTrips,
            Self::TierChanged(_) => Table::RiskTierHistory,
        }
    }
}

/// The account of an account stream (`account-{id}`); other streams are not projected.
#[must_use]
pub fn account_of(stream_id: &str) -> Option<&str> {
    stream_id.strip_prefix("account-")
}

/// The checks and sizing steps recorded so far in a stream's current step.
#[derive(Debug, Clone, Default)]
struct StepBuffer {
    /// `(recommendation_id, entry)` in event order.
    checks: Vec<(String, Value)>,
    sizing: Vec<(String, Value)>,
}

impl StepBuffer {
    fn take(list: &mut Vec<(String, Value)>, recommendation_id: &str) -> Value {
        let mut taken = Vec::new();
        list.retain_mut(|(id, entry)| {
            if id == recommendation_id {
                taken.push(std::mem::take(entry));
                false
            } else {
                true
            }
        });
        Value::Array(taken)
    }
}

/// Maps events to row changes. See the crate docs.
#[derive(Debug, Clone, Default)]
pub struct Projector {
    steps: BTreeMap<String, StepBuffer>,
    open_orders: BTreeMap<Uuid, OrderRow>,
    positions: BTreeMap<(String, String), PositionRow>,
}

impl Projector {
    /// A projector with no open orders or positions (a rebuild from the start).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeds an open order read back from the `orders` table (resuming).
    pub fn seed_order(&mut self, row: OrderRow) {
        self.open_orders.insert(row.order_id, row);
    }

    /// Seeds an open position read back from the `positions` table (resuming).
    pub fn seed_position(&mut self, row: PositionRow) {
        self.positions.insert((row.account_id.clone(), row.ticker.clone()), row);
    }

    /// Whether no step is half-seen (true at every transaction boundary).
    #[must_use]
    pub fn between_steps(&self) -> bool {
        self.steps.values().all(|s| s.checks.is_empty() && s.sizing.is_empty())
    }

    /// The changes `event` causes in the projections of `tables`, appended to `out`.
    pub fn project(&mut self, event: &EventRef<'_>, tables: TableSet, out: &mut Vec<Change>) {
        let Some(account) = account_of(event.stream_id) else { return };
        let at = event.stamped.at;
        if event.stamped.event.is_input() {
            // A new step: nothing of the previous one is pending any more.
            if let Some(buffer) = self.steps.get_mut(event.stream_id) {
                buffer.checks.clear();
                buffer.sizing.clear();
            }
        }
        match &event.stamped.event {
            e @ (Event::OrderSubmitted(_) | Event::OrderRejected(_) | Event::OrderCanceled(_))
                if tables.contains(Table::Orders) =>
            {
                self.order_input(e, at, out);
            }
            Event::PreTradeCheckEvaluated(e) if tables.contains(Table::TradingDecisions) => {
                let entry = json!({"check": e.check, "passed": e.passed, "detail": e.detail});
                self.buffer(event.stream_id).checks.push((e.recommendation_id.clone(), entry));
            }
            Event::SizingStepApplied(e) if tables.contains(Table::TradingDecisions) => {
                let entry = json!({
                    "step": e.step,
                    "dollars_before": e.dollars_before,
                    "dollars_after": e.dollars_after,
                    "detail": e.detail,
                });
                self.buffer(event.stream_id).sizing.push((e.recommendation_id.clone(), entry));
            }
            Event::TradingDecisionRecorded(e) if tables.contains(Table::TradingDecisions) => {
                let buffer = self.buffer(event.stream_id);
                let checks = StepBuffer::take(&mut buffer.checks, &e.recommendation_id);
                let sizing = StepBuffer::take(&mut buffer.sizing, &e.recommendation_id);
                out.push(Change::Decision(DecisionRow {
                    event_id: event.event_id,
                    position: event.position,
                    account_id: account.to_owned(),
                    at,
                    recommendation_id: e.recommendation_id.clone(),
                    ticker: e.ticker.clone(),
                    side: e.side.clone(),
                    decision: e.decision.as_str(),
                    is_final: e.is_final,
                    skip_reason: e.skip_reason.map(|r| r.as_text().into_owned()),
                    shares: e.shares.map(|q| q.0),
                    dollar_amount: e.dollar_amount.map(Money::value),
                    price: e.price.map(tape_events::Price::value),
                    risk_tier: e.risk_tier.as_str(),
                    config_hash: event.config_hash.map(str::to_owned),
                    checks,
                    sizing,
                }));
            }
            Event::OrderFilled(e) => {
                if tables.contains(Table::Fills) {
                    out.push(Change::Fill(FillRow {
                        event_id: event.event_id,
                        position: event.position,
                        account_id: account.to_owned(),
                        at,
                        order_id: e.order_id,
                        fill_id: e.fill_id.clone(),
                        ticker: e.ticker.clone(),
                        side: e.side.as_str(),
                        qty: e.qty.0,
                        price: e.price.value(),
                    }));
                }
                if tables.contains(Table::Orders) {
                    self.order_input(&event.stamped.event, at, out);
                }
                if tables.contains(Table::Positions) {
                    self.position_fill(account, e, at, out);
                }
            }
            Event::OrderPlaced(e) if tables.contains(Table::Orders) => {
                let row = OrderRow {
                    order_id: e.order_id,
                    account_id: account.to_owned(),
                    recommendation_id: e.recommendation_id.clone(),
                    ticker: e.ticker.clone(),
                    side: e.side.as_str(),
                    qty: e.qty.0,
                    reason: e.reason.as_str(),
                    placed_at: at,
                    placed_position: event.position,
                    broker_order_id: None,
                    filled_qty: 0,
                    filled_notional: Decimal::ZERO,
                    status: OrderStatus::Placed,
                    status_reason: None,
                    updated_at: at,
                };
                self.open_orders.insert(e.order_id, row.clone());
                out.push(Change::Order(row));
            }
            Event::PortfolioSnapshotTaken(e) if tables.contains(Table::PortfolioSnapshots) => {
                out.push(Change::Snapshot(SnapshotRow {
                    event_id: event.event_id,
                    position: event.position,
                    account_id: account.to_owned(),
                    at,
                    kind: e.kind.as_str(),
                    cash: e.cash.value(),
                    equity: e.equity.value(),
                    reserve: e.reserve.value(),
                    active_pool: e.active_pool.value(),
                    positions: e.positions,
                    heat: e.heat.value(),
                    high_water_mark: e.high_water_mark.value(),
                }));
            }
            Event::ReserveTransferred(e) if tables.contains(Table::ReservePoolLedger) => {
                out.push(Change::Reserve(ReserveRow {
                    event_id: event.event_id,
                    position: event.position,
                    account_id: account.to_owned(),
                    at,
                    kind: e.kind.as_str(),
                    amount: e.amount.value(),
                    balance_after: e.balance_after.value(),
                }));
            }
            Event::CircuitBreakerTripped(e) if tables.contains(Table::CircuitBreakerTrips) => {
                out.push(Change::BreakerTripped(BreakerTripRow {
                    event_id: event.event_id,
                    position: event.position,
                    account_id: account.to_owned(),
                    at,
                    kind: e.kind.as_str(),
                    ticker: e.ticker.clone(),
                    until: e.until,
                }));
            }
            Event::CircuitBreakerCleared(e) if tables.contains(Table::CircuitBreakerTrips) => {
                out.push(Change::BreakerCleared(BreakerClear {
                    event_id: event.event_id,
                    position: event.position,
                    account_id: account.to_owned(),
                    at,
                    kind: e.kind.as_str(),
                    ticker: e.ticker.clone(),
                }));
            }
            Event::RiskTierChanged(e) if tables.contains(Table::RiskTierHistory) => {
                out.push(Change::TierChanged(TierRow {
                    event_id: event.event_id,
                    position: event.position,
                    account_id: account.to_owned(),
                    at,
                    from_tier: e.from.as_str(),
                    to_tier: e.to.as_str(),
                    reason: e.reason.as_str(),
                }));
            }
            _ => {}
        }
    }

    fn buffer(&mut self, stream_id: &str) -> &mut StepBuffer {
        if !self.steps.contains_key(stream_id) {
            self.steps.insert(stream_id.to_owned(), StepBuffer::default());
        }
        self.steps.get_mut(stream_id).unwrap_or_else(|| unreachable!())
    }

    /// Broker inputs about an order: submitted, filled, rejected, canceled.
    fn order_input(&mut self, event: &Event, at: tape_events::Timestamp, out: &mut Vec<Change>) {
        let (order_id, done) = match event {
            Event::OrderSubmitted(e) => {
                let Some(row) = self.open_orders.get_mut(&e.order_id) else { return };
                row.broker_order_id = Some(e.broker_order_id.clone());
                if row.status == OrderStatus::Placed {
                    row.status = OrderStatus::Submitted;
                }
                (e.order_id, false)
            }
            Event::OrderFilled(e) => {
                let Some(row) = self.open_orders.get_mut(&e.order_id) else { return };
                row.filled_qty += e.qty.0;
                row.filled_notional += e.qty.decimal() * e.price.value();
                let done = row.filled_qty >= row.qty;
                row.status = if done { OrderStatus::Filled } else { OrderStatus::PartiallyFilled };
                (e.order_id, done)
            }
            Event::OrderRejected(e) => {
                let Some(row) = self.open_orders.get_mut(&e.order_id) else { return };
                row.status = OrderStatus::Rejected;
                row.status_reason = Some(e.reason.clone());
                (e.order_id, true)
            }
            Event::OrderCanceled(e) => {
                let Some(row) = self.open_orders.get_mut(&e.order_id) else { return };
                row.status = OrderStatus::Canceled;
                row.status_reason = Some(e.reason.clone());
                (e.order_id, true)
            }
            _ => return,
        };
        let row = if done { self.open_orders.remove(&order_id) } else { self.open_orders.get(&order_id).cloned() };
        if let Some(mut row) = row {
            row.updated_at = at;
            if !done {
                if let Some(open) = self.open_orders.get_mut(&order_id) {
                    open.updated_at = at;
                }
            }
            out.push(Change::Order(row));
        }
    }

    /// A fill moves a position exactly as the core's fold does (SPEC 6).
    fn position_fill(
        &mut self,
        account: &str,
        e: &tape_events::OrderFilled,
        at: tape_events::Timestamp,
        out: &mut Vec<Change>,
    ) {
        let key = (account.to_owned(), e.ticker.clone());
        match e.side {
            Side::Buy => {
                let row = self.positions.entry(key).or_insert_with(|| PositionRow {
                    account_id: account.to_owned(),
                    ticker: e.ticker.clone(),
                    qty: 0,
                    avg_cost: Decimal::ZERO,
                    realized_pnl: Decimal::ZERO,
                    opened_at: at,
                    updated_at: at,
                });
                row.avg_cost = average_cost_after_buy(Qty(row.qty), row.avg_cost, e.qty, e.price);
                row.qty += e.qty.0;
                row.updated_at = at;
                out.push(Change::Position(row.clone()));
            }
            Side::Sell => {
                let Some(row) = self.positions.get_mut(&key) else { return };
                row.realized_pnl += realized_pnl(e.price, row.avg_cost, e.qty).value();
                row.qty = row.qty.saturating_sub(e.qty.0);
                row.updated_at = at;
                if row.qty == 0 {
                    self.positions.remove(&key);
                    out.push(Change::PositionClosed { account_id: key.0, ticker: key.1 });
                } else {
                    out.push(Change::Position(row.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
