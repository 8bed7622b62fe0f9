//! The account's state (SPEC 2.3) and the fold `apply` that builds it from events.
//!
//! `apply` is total: every recorded event applies. An event that cannot apply (a fill
//! for an order the state never saw) is a bug in whoever recorded it, and panics with an
//! `Invariant:` message (STYLE: "folding cannot fail"). Inputs from outside are checked
//! by `Engine::step` before they are recorded, so bad broker or operator input never
//! reaches `apply`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use tape_events::{
    average_cost_after_buy, realized_pnl, AccountMode, BreakerKind, Config, Event, Money, OrderReason, Outcome, Price,
    Qty, RiskTier, Side, SkipReason, SnapshotKind, Stamped, Timestamp,
};
use uuid::Uuid;

use crate::calendar::exchange_date;
use crate::recommendation::{Recommendation, Validity};

/// How many closed trades and close snapshots the state keeps (SPEC 2.3, 7).
pub const HISTORY_LEN: usize = 20;

/// The account as opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub account_id: String,
    pub mode: AccountMode,
    pub initial_cash: Money,
    pub opened_at: Timestamp,
}

/// An open position: a positive whole number of shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub qty: Qty,
    /// Average cost, 4 decimal places.
    pub avg_cost: Decimal,
    /// Realized P&L over this trade's life so far.
    pub realized: Money,
    pub opened_at: Timestamp,
    /// Market value: `qty × last quote` (average cost before any quote), in cents. Kept
    /// current by `apply` so that equity is a sum, not a product per position per quote.
    pub value: Money,
    /// Shares sold over this trade's life, and their notional (for the exit average).
    pub sold_qty: Qty,
    pub sold_notional: Decimal,
}

/// A position that a fill just brought to zero, waiting for its `TradeClosed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingPosition {
    pub ticker: String,
    pub position: Position,
    pub closed_at: Timestamp,
}

/// An order placed and not yet done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub order_id: Uuid,
    pub recommendation_id: Option<String>,
    pub ticker: String,
    pub side: Side,
    pub qty: Qty,
    pub filled: Qty,
    pub reason: OrderReason,
    pub placed_at: Timestamp,
    pub broker_order_id: Option<String>,
}

impl OpenOrder {
    #[must_use]
    pub const fn remaining(&self) -> Qty {
        Qty(self.qty.0 - self.filled.0)
    }
}

/// The last quote of a ticker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub price: Price,
    pub at: Timestamp,
}

/// A daily close, with its value parsed once from its decimal text for the statistics
/// (SPEC 2.3: "computed in f64 from the decimal strings parsed as f64").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Close {
    pub price: Price,
    pub value: f64,
}

impl Eq for Close {}

impl Close {
    #[must_use]
    pub fn new(price: Price) -> Self {
        Self { price, value: crate::stats::to_f64(price.value()) }
    }
}

/// A ticker's last daily closes, sorted by date, at most one per date: short parallel
/// vectors (the window is 60) rather than a tree, with the consecutive simple returns
/// computed once per bar. When two tickers hold the same dates, their aligned returns
/// are exactly these cached returns (the correlation step's common case).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloseSeries {
    dates: Vec<NaiveDate>,
    closes: Vec<Close>,
    /// `returns[i] = closes[i + 1] / closes[i] − 1`, in f64 (SPEC 2.3).
    returns: Vec<f64>,
}

impl Eq for CloseSeries {}

impl CloseSeries {
    /// The close of a date, if held.
    #[must_use]
    pub fn get(&self, date: NaiveDate) -> Option<&Close> {
        self.dates.binary_search(&date).ok().map(|i| &self.closes[i])
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.dates.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.dates.is_empty()
    }

    /// The oldest date held.
    #[must_use]
    pub fn first_date(&self) -> Option<NaiveDate> {
        self.dates.first().copied()
    }

    /// The dates, ascending.
    #[must_use]
    pub fn dates(&self) -> &[NaiveDate] {
        &self.dates
    }

    /// The closes, in date order.
    #[must_use]
    pub fn closes(&self) -> &[Close] {
        &self.closes
    }

    /// The consecutive simple returns, in date order.
    #[must_use]
    pub fn returns(&self) -> &[f64] {
        &self.returns
    }

    /// Inserts or replaces a date's close, then keeps only the newest `window`.
    pub fn insert(&mut self, date: NaiveDate, close: Close, window: usize) {
        match self.dates.binary_search(&date) {
            Ok(i) => self.closes[i] = close,
            Err(i) => {
                self.dates.insert(i, date);
                self.closes.insert(i, close);
            }
        }
        self.keep_newest(window);
        self.returns.clear();
        self.returns.extend(self.closes.windows(2).map(|w| w[1].value / w[0].value - 1.0));
    }

    /// Keeps only the newest `window` closes (and their returns).
    pub fn keep_newest(&mut self, window: usize) {
        if self.dates.len() > window {
            let excess = self.dates.len() - window;
            self.dates.drain(..excess);
            self.closes.drain(..excess);
            self.returns.drain(..excess.min(self.returns.len()));
        }
    }
}

/// Reference data of a ticker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub sector: Option<String>,
    pub next_earnings_date: Option<NaiveDate>,
}

/// A captured recommendation that has no final decision yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub recommendation: Recommendation,
    /// (decision, final, skip reason) of its last evaluation, if it had one.
    pub last_outcome: Option<(Outcome, bool, Option<SkipReason>)>,
}

/// A tripped breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub kind: BreakerKind,
    pub ticker: Option<String>,
    pub until: Option<Timestamp>,
}

impl Breaker {
    /// Active while `now < until` (SPEC 5); an `until` of `None` never expires.
    #[must_use]
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// An equity reading at a day's close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSnapshot {
    pub date: NaiveDate,
    pub equity: Money,
}

/// Everything `decide` reads (SPEC 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub account: Option<Account>,
    pub config: Arc<Config>,
    pub config_hash: String,
    /// Whether a configuration was activated since the account opened (the first one
    /// after opening sets the initial tier).
    pub configured_since_open: bool,
    pub cash: Money,
    pub positions: BTreeMap<String, Position>,
    /// `Σ position.value`, kept current by `apply` (equity is `cash + positions_value`).
    pub positions_value: Money,
    pub closing: Option<ClosingPosition>,
    /// Open orders in the order they were placed.
    pub open_orders: Vec<OpenOrder>,
    pub quotes: BTreeMap<String, Quote>,
    /// The last `correlation_window` daily closes of each ticker, by date.
    pub closes: BTreeMap<String, CloseSeries>,
    pub securities: BTreeMap<String, Security>,
    /// Pending recommendations in capture order.
    pub pending: Vec<Pending>,
    pub consumed: HashSet<String>,
    pub breakers: Vec<Breaker>,
    /// The exchange date of the last daily_loss trip ("no daily_loss breaker tripped today").
    pub daily_loss_tripped_on: Option<NaiveDate>,
    pub reserve: Money,
    pub high_water_mark: Money,
    pub day_start_equity: Money,
    /// `cents(day_start_equity × (1 − daily_loss_pct))`, kept current by `apply`.
    pub daily_loss_floor: Money,
    /// `cents(high_water_mark × (1 − emergency_drawdown_pct))`, kept current by `apply`.
    pub emergency_floor: Money,
    /// Stop-loss trigger times within the volatility window.
    pub stop_loss_times: VecDeque<Timestamp>,
    /// Realized P&L of the last 20 closed trades.
    pub closed_trades: VecDeque<Money>,
    pub close_snapshots: VecDeque<CloseSnapshot>,
    pub tier: RiskTier,
    pub tier_changed_on: Option<NaiveDate>,
    /// Fill ids already booked (fills are idempotent by fill id).
    pub fill_ids: HashSet<String>,
}

impl Default for State {
    fn default() -> Self {
        let config = Config::default();
        let hash = config.hash();
        Self::with_config(config, hash)
    }
}

impl State {
    /// An empty state under a configuration.
    #[must_use]
    pub fn with_config(config: Config, config_hash: String) -> Self {
        Self {
            account: None,
            tier: config.initial_tier,
            config: Arc::new(config),
            config_hash,
            configured_since_open: false,
            cash: Money::zero(),
            positions: BTreeMap::new(),
            positions_value: Money::zero(),
            closing: None,
            open_orders: Vec::new(),
            quotes: BTreeMap::new(),
            closes: BTreeMap::new(),
            securities: BTreeMap::new(),
            pending: Vec::new(),
            consumed: HashSet::new(),
            breakers: Vec::new(),
            daily_loss_tripped_on: None,
            reserve: Money::zero(),
            high_water_mark: Money::zero(),
            day_start_equity: Money::zero(),
            daily_loss_floor: Money::zero(),
            emergency_floor: Money::zero(),
            stop_loss_times: VecDeque::new(),
            closed_trades: VecDeque::new(),
            close_snapshots: VecDeque::new(),
            tier_changed_on: None,
            fill_ids: HashSet::new(),
        }
    }

    /// Whether the account has been opened.
    #[must_use]
    pub const fn is_open(&self) -> bool {
        self.account.is_some()
    }

    /// The open order with this id.
    #[must_use]
    pub fn order(&self, order_id: Uuid) -> Option<&OpenOrder> {
        self.open_orders.iter().find(|o| o.order_id == order_id)
    }

    /// Whether an order on `side` is open for `ticker`.
    #[must_use]
    pub fn has_open_order(&self, ticker: &str, side: Side) -> bool {
        self.open_orders.iter().any(|o| o.side == side && o.ticker == ticker)
    }

    /// Folds one recorded event into the state.
    ///
    /// # Panics
    /// When the event contradicts the state (`Invariant:`): the log is corrupt or the
    /// code that recorded it is wrong.
    pub fn apply(&mut self, stamped: &Stamped) {
        let at = stamped.at;
        let moves_floors = matches!(
            stamped.event,
            Event::AccountOpened(_)
                | Event::ConfigActivated(_)
                | Event::PortfolioSnapshotTaken(_)
                | Event::ReserveTransferred(_)
                | Event::CircuitBreakerCleared(_)
        );
        self.apply_event(stamped, at);
        if moves_floors {
            self.daily_loss_floor = crate::valuation::threshold(self.day_start_equity, self.config.daily_loss_pct);
            self.emergency_floor =
                crate::valuation::threshold(self.high_water_mark, self.config.emergency_drawdown_pct);
        }
    }

    fn apply_event(&mut self, stamped: &Stamped, at: Timestamp) {
        match &stamped.event {
            Event::AccountOpened(e) => {
                self.account = Some(Account {
                    account_id: e.account_id.clone(),
                    mode: e.mode,
                    initial_cash: e.initial_cash,
                    opened_at: at,
                });
                self.cash = e.initial_cash;
                self.high_water_mark = e.initial_cash;
                self.day_start_equity = e.initial_cash;
                self.tier = RiskTier::Conservative;
                self.tier_changed_on = Some(exchange_date(at));
                self.configured_since_open = false;
            }
            Event::ConfigActivated(e) => {
                if self.account.is_some() && !self.configured_since_open {
                    self.tier = e.config.initial_tier;
                    self.configured_since_open = true;
                }
                // A shorter correlation window applies to the closes already held too.
                let window = e.config.correlation_window as usize;
                if window < self.config.correlation_window as usize {
                    self.closes.values_mut().for_each(|series| series.keep_newest(window));
                }
                self.config = Arc::new((*e.config).clone());
                self.config_hash.clone_from(&e.hash);
            }
            Event::SecurityUpdated(e) => {
                self.securities.insert(
                    e.ticker.clone(),
                    Security { sector: e.sector.clone(), next_earnings_date: e.next_earnings_date },
                );
            }
            Event::DailyBarObserved(e) => {
                let window = self.config.correlation_window as usize;
                match self.closes.get_mut(&e.ticker) {
                    Some(closes) => closes.insert(e.date, Close::new(e.close), window),
                    None => {
                        let mut closes = CloseSeries::default();
                        closes.insert(e.date, Close::new(e.close), window);
                        self.closes.insert(e.ticker.clone(), closes);
                    }
                }
            }
            Event::QuoteObserved(e) => {
                let quote = Quote { price: e.price, at };
                match self.quotes.get_mut(&e.ticker) {
                    Some(slot) => *slot = quote,
                    None => {
                        self.quotes.insert(e.ticker.clone(), quote);
                    }
                }
                if let Some(position) = self.positions.get_mut(&e.ticker) {
                    let value = Money::of(position.qty, e.price);
                    self.positions_value += value - position.value;
                    position.value = value;
                }
            }
            Event::RecommendationReceived(e) => {
                self.pending.retain(|p| p.recommendation.id != e.recommendation_id);
                let mode = self.account.as_ref().map_or(AccountMode::Paper, |a| a.mode);
                self.pending.push(Pending { recommendation: Recommendation::capture(e, mode), last_outcome: None });
            }
            Event::SchedulerTick(_)
            | Event::BreakerResetRequested(_)
            | Event::ReserveReleaseRequested(_)
            | Event::BrokerDiscrepancyObserved(_)
            | Event::SizingStepApplied(_)
            | Event::PerformanceEvaluated(_) => {}
            Event::OrderSubmitted(e) => {
                if let Some(order) = self.open_orders.iter_mut().find(|o| o.order_id == e.order_id) {
                    order.broker_order_id = Some(e.broker_order_id.clone());
                }
            }
            Event::OrderFilled(e) => self.apply_fill(e, at),
            Event::OrderRejected(e) => self.open_orders.retain(|o| o.order_id != e.order_id),
            Event::OrderCanceled(e) => self.open_orders.retain(|o| o.order_id != e.order_id),
            Event::PreTradeCheckEvaluated(e) => {
                if let Some(id) = e.consumed() {
                    self.consumed.insert(id.to_owned());
                }
            }
            Event::TradingDecisionRecorded(e) => {
                if e.is_final {
                    self.pending.retain(|p| p.recommendation.id != e.recommendation_id);
                } else if let Some(p) = self.pending.iter_mut().find(|p| p.recommendation.id == e.recommendation_id) {
                    p.last_outcome = Some((e.decision, e.is_final, e.skip_reason));
                }
            }
            Event::OrderPlaced(e) => self.open_orders.push(OpenOrder {
                order_id: e.order_id,
                recommendation_id: e.recommendation_id.clone(),
                ticker: e.ticker.clone(),
                side: e.side,
                qty: e.qty,
                filled: Qty(0),
                reason: e.reason,
                placed_at: at,
                broker_order_id: None,
            }),
            Event::TradeClosed(e) => {
                let closing = self.closing.take();
                assert!(
                    closing.as_ref().is_some_and(|c| c.ticker == e.ticker),
                    "Invariant: TradeClosed for {} follows the fill that closed it",
                    e.ticker
                );
                self.closed_trades.push_back(e.realized_pnl);
                while self.closed_trades.len() > HISTORY_LEN {
                    self.closed_trades.pop_front();
                }
            }
            Event::StopLossTriggered(_) => {
                self.stop_loss_times.push_back(at);
                let horizon = at.minus(self.config.volatility_window.chrono());
                while self.stop_loss_times.front().is_some_and(|t| *t < horizon) {
                    self.stop_loss_times.pop_front();
                }
            }
            Event::CircuitBreakerTripped(e) => {
                self.breakers.retain(|b| b.is_active(at));
                if e.kind == BreakerKind::DailyLoss {
                    self.daily_loss_tripped_on = Some(exchange_date(at));
                }
                self.breakers.push(Breaker { kind: e.kind, ticker: e.ticker.clone(), until: e.until });
            }
            Event::CircuitBreakerCleared(e) => {
                self.breakers.retain(|b| !(b.kind == e.kind && b.ticker == e.ticker && b.is_active(at)));
                if let Some(hwm) = e.high_water_mark {
                    self.high_water_mark = hwm;
                }
            }
            Event::ReserveTransferred(e) => {
                if e.kind == tape_events::ReserveKind::HighWaterRebalance {
                    self.high_water_mark = crate::valuation::equity(self);
                }
                self.reserve = e.balance_after;
            }
            Event::PortfolioSnapshotTaken(e) => {
                if e.kind == SnapshotKind::Close {
                    self.day_start_equity = e.equity;
                    self.close_snapshots.push_back(CloseSnapshot { date: exchange_date(at), equity: e.equity });
                    while self.close_snapshots.len() > HISTORY_LEN {
                        self.close_snapshots.pop_front();
                    }
                }
            }
            Event::RiskTierChanged(e) => {
                self.tier = e.to;
                self.tier_changed_on = Some(exchange_date(at));
            }
        }
    }

    fn apply_fill(&mut self, e: &tape_events::OrderFilled, at: Timestamp) {
        self.fill_ids.insert(e.fill_id.clone());
        let index = self
            .open_orders
            .iter()
            .position(|o| o.order_id == e.order_id)
            .unwrap_or_else(|| panic!("Invariant: fill {} is for an open order {}", e.fill_id, e.order_id));
        let order = &mut self.open_orders[index];
        order.filled = Qty(order.filled.0 + e.qty.0);
        if order.filled >= order.qty {
            self.open_orders.remove(index);
        }
        let notional = Money::of(e.qty, e.price);
        match e.side {
            Side::Buy => {
                self.cash -= notional;
                match self.positions.get_mut(&e.ticker) {
                    Some(position) => {
                        position.avg_cost = average_cost_after_buy(position.qty, position.avg_cost, e.qty, e.price);
                        position.qty = Qty(position.qty.0 + e.qty.0);
                    }
                    None => {
                        self.positions.insert(
                            e.ticker.clone(),
                            Position {
                                qty: e.qty,
                                avg_cost: average_cost_after_buy(Qty(0), Decimal::ZERO, e.qty, e.price),
                                realized: Money::zero(),
                                opened_at: at,
                                value: Money::zero(),
                                sold_qty: Qty(0),
                                sold_notional: Decimal::ZERO,
                            },
                        );
                    }
                }
                self.revalue(&e.ticker);
            }
            Side::Sell => {
                self.cash += notional;
                let position = self
                    .positions
                    .get_mut(&e.ticker)
                    .unwrap_or_else(|| panic!("Invariant: sell fill {} has a position in {}", e.fill_id, e.ticker));
                assert!(e.qty <= position.qty, "Invariant: sell fill {} does not exceed the position", e.fill_id);
                position.realized += realized_pnl(e.price, position.avg_cost, e.qty);
                position.qty = Qty(position.qty.0 - e.qty.0);
                position.sold_qty = Qty(position.sold_qty.0 + e.qty.0);
                position.sold_notional += e.qty.decimal() * e.price.value();
                if position.qty.is_zero() {
                    let position = self.positions.remove(&e.ticker).unwrap_or_else(|| unreachable!());
                    self.positions_value -= position.value;
                    self.closing = Some(ClosingPosition { ticker: e.ticker.clone(), position, closed_at: at });
                } else {
                    self.revalue(&e.ticker);
                }
            }
        }
    }

    /// Recomputes a position's market value after its quantity changed.
    fn revalue(&mut self, ticker: &str) {
        let last = self.quotes.get(ticker).map(|q| q.price.value());
        if let Some(position) = self.positions.get_mut(ticker) {
            let value = Money::new(position.qty.decimal() * last.unwrap_or(position.avg_cost));
            self.positions_value += value - position.value;
            position.value = value;
        }
    }

    /// The recommendation's validity as captured, for a pending id.
    #[must_use]
    pub fn pending(&self, recommendation_id: &str) -> Option<&Pending> {
        self.pending.iter().find(|p| p.recommendation.id == recommendation_id)
    }

    /// Whether any pending recommendation is valid (polls have work).
    #[must_use]
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| matches!(p.recommendation.validity, Validity::Valid(_)))
    }
}
