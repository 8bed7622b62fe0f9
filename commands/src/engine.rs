//! The engine: `step` takes one input, checks that it can be recorded, applies it, and
//! derives its decisions (each applied as it is decided). This is SPEC 2.2's
//! `decide` + `apply` loop; [`crate::decide`] is the same thing on a copy of the state.

use tape_events::{
    BreakerKind, CircuitBreakerCleared, Event, Money, PerformanceEvaluated, PortfolioSnapshotTaken, Qty, ReserveKind,
    ReserveTransferred, RiskTierChanged, SnapshotKind, Stamped, TickKind, TierChangeReason, Timestamp,
};
use uuid::Uuid;

use crate::calendar::exchange_date;
use crate::evaluate::evaluate;
use crate::market;
use crate::recorder::Recorder;
use crate::state::State;
use crate::stats;
use crate::valuation::{active_pool, equity, heat};

/// One input: an event from outside with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub id: Uuid,
    pub stamped: Stamped,
}

/// An input that cannot be recorded. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{event_type} is not an input")]
    NotAnInput { event_type: &'static str },
    #[error("account {account_id} is already open")]
    AlreadyOpen { account_id: String },
    #[error("invalid account_id {0:?}: must match ^[a-z0-9][a-z0-9_-]{{0,62}}$")]
    AccountId(String),
    #[error("invalid initial_cash {0}: must be above 0")]
    InitialCash(Money),
    #[error("invalid price {price} for {ticker}: must be above 0")]
    Price { ticker: String, price: String },
    #[error("invalid ticker {0:?}: must match ^[A-Z][A-Z0-9.-]{{0,9}}$")]
    Ticker(String),
    #[error("fill {fill_id} is for order {order_id}, which is not open")]
    FillForUnknownOrder { fill_id: String, order_id: Uuid },
    #[error("fill {fill_id} does not match order {order_id}: {what}")]
    FillMismatch { fill_id: String, order_id: Uuid, what: String },
    #[error("invalid reserve release amount {0}: must be above 0")]
    ReleaseAmount(Money),
    #[error("invalid config: {0}")]
    Config(#[from] tape_events::config::ConfigValueError),
    #[error("{0} before the account was opened")]
    NotOpen(&'static str),
}

/// What happened to an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// Recorded (pushed first), followed by this many decisions.
    Recorded { decisions: usize },
    /// It would change nothing, so it is not recorded (SPEC 2.2, 13).
    Unchanged,
}

/// The pure core with its state.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    state: State,
    /// Reused buffer for one step's decisions.
    scratch: Vec<Stamped>,
}

impl Engine {
    #[must_use]
    pub fn new(state: State) -> Self {
        Self { state, scratch: Vec::new() }
    }

    #[must_use]
    pub const fn state(&self) -> &State {
        &self.state
    }

    #[must_use]
    pub fn into_state(self) -> State {
        self.state
    }

    /// Folds an already-recorded event (replaying a stream).
    pub fn apply(&mut self, stamped: &Stamped) {
        self.state.apply(stamped);
    }

    /// Processes one input: pushes it to `out` if it is recorded, then its decisions.
    ///
    /// # Errors
    /// [`InputError`] when the input contradicts the state or breaks a rule of its own
    /// (a fill for an unknown order, a non-positive price). Nothing is pushed or changed.
    pub fn step(&mut self, input: Input, out: &mut Vec<Stamped>) -> Result<StepOutcome, InputError> {
        if !self.admit(&input)? {
            return Ok(StepOutcome::Unchanged);
        }
        let Input { id, stamped } = input;
        self.state.apply(&stamped);
        let mut decided = std::mem::take(&mut self.scratch);
        let mut r = Recorder { state: &mut self.state, out: &mut decided, input_id: id, at: stamped.at, decisions: 0 };
        derive(&mut r, &stamped.event);
        let decisions = r.decisions;
        let is_poll = matches!(&stamped.event, Event::SchedulerTick(t) if t.tick == TickKind::Poll);
        if is_poll && decisions == 0 {
            self.scratch = decided;
            return Ok(StepOutcome::Unchanged);
        }
        out.push(stamped);
        out.append(&mut decided);
        self.scratch = decided;
        Ok(StepOutcome::Recorded { decisions })
    }

    /// Whether the input changes something; errors for inputs that must not be recorded.
    fn admit(&self, input: &Input) -> Result<bool, InputError> {
        let state = &self.state;
        let at = input.stamped.at;
        let open = state.is_open();
        match &input.stamped.event {
            e if !e.is_input() => Err(InputError::NotAnInput { event_type: e.event_type() }),
            Event::AccountOpened(e) => {
                if let Some(account) = &state.account {
                    return Err(InputError::AlreadyOpen { account_id: account.account_id.clone() });
                }
                if !tape_events::ids::is_valid_account_id(&e.account_id) {
                    return Err(InputError::AccountId(e.account_id.clone()));
                }
                if e.initial_cash <= Money::zero() {
                    return Err(InputError::InitialCash(e.initial_cash));
                }
                Ok(true)
            }
            Event::ConfigActivated(e) => {
                e.config.validate()?;
                Ok(true)
            }
            Event::RecommendationReceived(_) => Ok(open),
            Event::SchedulerTick(_) => Ok(open && state.account.as_ref().is_some_and(|a| at > a.opened_at)),
            Event::SecurityUpdated(e) => {
                check_ticker(&e.ticker)?;
                let current = state.securities.get(&e.ticker);
                Ok(current.is_none_or(|s| s.sector != e.sector || s.next_earnings_date != e.next_earnings_date))
            }
            Event::DailyBarObserved(e) => {
                check_ticker(&e.ticker)?;
                check_price(&e.ticker, e.close)?;
                let Some(closes) = state.closes.get(&e.ticker) else { return Ok(true) };
                if closes.get(e.date).map(|c| c.price) == Some(e.close) {
                    return Ok(false);
                }
                let full = closes.len() >= state.config.correlation_window as usize;
                Ok(!(full && closes.first_date().is_some_and(|oldest| e.date < oldest)))
            }
            Event::QuoteObserved(e) => {
                check_ticker(&e.ticker)?;
                check_price(&e.ticker, e.price)?;
                Ok(true)
            }
            Event::OrderSubmitted(e) => Ok(state
                .order(e.order_id)
                .is_some_and(|o| o.broker_order_id.as_deref() != Some(e.broker_order_id.as_str()))),
            Event::OrderRejected(e) => Ok(state.order(e.order_id).is_some()),
            Event::OrderCanceled(e) => Ok(state.order(e.order_id).is_some()),
            Event::OrderFilled(e) => {
                if state.fill_ids.contains(&e.fill_id) {
                    return Ok(false);
                }
                let order = state.order(e.order_id).ok_or_else(|| InputError::FillForUnknownOrder {
                    fill_id: e.fill_id.clone(),
                    order_id: e.order_id,
                })?;
                let mismatch =
                    |what: String| InputError::FillMismatch { fill_id: e.fill_id.clone(), order_id: e.order_id, what };
                if order.ticker != e.ticker || order.side != e.side {
                    return Err(mismatch(format!(
                        "fill is {} {}, order is {} {}",
                        e.side, e.ticker, order.side, order.ticker
                    )));
                }
                if e.qty.is_zero() || e.qty > order.remaining() {
                    return Err(mismatch(format!("qty {} is not within 1..={}", e.qty, order.remaining())));
                }
                check_price(&e.ticker, e.price)?;
                if e.side == tape_events::Side::Sell {
                    let held = state.positions.get(&e.ticker).map_or(Qty(0), |p| p.qty);
                    if e.qty > held {
                        return Err(mismatch(format!("sells {} but {} are held", e.qty, held)));
                    }
                }
                Ok(true)
            }
            Event::ReserveReleaseRequested(e) => {
                if e.amount <= Money::zero() {
                    return Err(InputError::ReleaseAmount(e.amount));
                }
                if !open {
                    return Err(InputError::NotOpen("ReserveReleaseRequested"));
                }
                Ok(true)
            }
            Event::BreakerResetRequested(_) => {
                if !open {
                    return Err(InputError::NotOpen("BreakerResetRequested"));
                }
                Ok(true)
            }
            Event::BrokerDiscrepancyObserved(_) => Ok(true),
            _ => Ok(true),
        }
    }
}

fn check_ticker(ticker: &str) -> Result<(), InputError> {
    if tape_events::ids::is_valid_ticker(ticker) {
        Ok(())
    } else {
        Err(InputError::Ticker(ticker.to_owned()))
    }
}

fn check_price(ticker: &str, price: tape_events::Price) -> Result<(), InputError> {
    if price.value() > rust_decimal::Decimal::ZERO {
        Ok(())
    } else {
        Err(InputError::Price { ticker: ticker.to_owned(), price: price.to_string() })
    }
}

/// The decisions an (already applied) input causes.
fn derive(r: &mut Recorder<'_>, event: &Event) {
    match event {
        Event::RecommendationReceived(e) => {
            if let Some(pending) = r.state.pending(&e.recommendation_id) {
                let evaluation = evaluate(r.state, &pending.recommendation, r.at);
                evaluation.events.into_iter().for_each(|d| r.emit(d));
            }
        }
        Event::QuoteObserved(e) => market::on_quote(r, e),
        Event::OrderFilled(_) => market::on_fill(r),
        Event::SchedulerTick(t) => on_tick(r, t.tick),
        Event::BreakerResetRequested(e) => {
            let cleared: Vec<(BreakerKind, Option<String>)> = r
                .state
                .breakers
                .iter()
                .filter(|b| b.kind == e.kind && b.is_active(r.at))
                .filter(|b| e.ticker.is_none() || b.ticker == e.ticker)
                .map(|b| (b.kind, b.ticker.clone()))
                .collect();
            for (kind, ticker) in cleared {
                let high_water_mark = (kind == BreakerKind::Emergency).then(|| equity(r.state));
                r.emit(Event::CircuitBreakerCleared(CircuitBreakerCleared { kind, ticker, high_water_mark }));
            }
        }
        Event::ReserveReleaseRequested(e) => {
            let amount = e.amount.min(r.state.reserve);
            if amount > Money::zero() {
                let balance_after = r.state.reserve - amount;
                r.emit(Event::ReserveTransferred(ReserveTransferred {
                    kind: ReserveKind::ManualRelease,
                    amount,
                    balance_after,
                }));
            }
        }
        _ => {}
    }
}

fn snapshot(state: &State, kind: SnapshotKind) -> PortfolioSnapshotTaken {
    let equity = equity(state);
    PortfolioSnapshotTaken {
        kind,
        cash: state.cash,
        equity,
        reserve: state.reserve,
        active_pool: active_pool(state),
        positions: u32::try_from(state.positions.len()).unwrap_or(u32::MAX),
        heat: heat(state),
        high_water_mark: state.high_water_mark,
    }
}

fn on_tick(r: &mut Recorder<'_>, tick: TickKind) {
    match tick {
        TickKind::Poll => {
            let ids: Vec<String> = r.state.pending.iter().map(|p| p.recommendation.id.clone()).collect();
            for id in ids {
                let Some(pending) = r.state.pending(&id) else { continue };
                let early = crate::evaluate::early_outcome(r.state, &pending.recommendation, r.at);
                if early.is_some() && early == pending.last_outcome {
                    continue;
                }
                let evaluation = evaluate(r.state, &pending.recommendation, r.at);
                if pending.last_outcome != Some(evaluation.outcome) {
                    evaluation.events.into_iter().for_each(|d| r.emit(d));
                }
            }
        }
        TickKind::Snapshot => r.emit(Event::PortfolioSnapshotTaken(snapshot(r.state, SnapshotKind::Intraday))),
        TickKind::Close => r.emit(Event::PortfolioSnapshotTaken(snapshot(r.state, SnapshotKind::Close))),
        TickKind::RiskTier => risk_tier(r),
        TickKind::Rebalance => {
            let equity = equity(r.state);
            if equity > r.state.high_water_mark {
                let amount = crate::valuation::share_of(
                    r.state.config.high_water_rebalance_pct,
                    equity - r.state.high_water_mark,
                );
                let balance_after = r.state.reserve + amount;
                r.emit(Event::ReserveTransferred(ReserveTransferred {
                    kind: ReserveKind::HighWaterRebalance,
                    amount,
                    balance_after,
                }));
            }
        }
    }
}

/// The minimum number of close snapshots to judge, trades to know a win rate, and the
/// calendar days between tier changes (SPEC 7).
const MIN_CLOSES: usize = 10;
const MIN_TRADES: usize = 5;
const MIN_DAYS_BETWEEN_CHANGES: i64 = 5;

fn risk_tier(r: &mut Recorder<'_>) {
    use rust_decimal::Decimal;
    let state = &*r.state;
    let trades = state.closed_trades.len();
    let closed_trades = u32::try_from(trades).unwrap_or(u32::MAX);
    if state.close_snapshots.len() < MIN_CLOSES {
        r.emit(Event::PerformanceEvaluated(PerformanceEvaluated {
            sharpe: None,
            max_drawdown: None,
            win_rate: None,
            closed_trades,
            reason: Some("insufficient_history".to_owned()),
        }));
        return;
    }
    let equities: Vec<Money> = state.close_snapshots.iter().map(|c| c.equity).collect();
    let sharpe = stats::ratio(stats::sharpe(&equities));
    let drawdown = stats::max_drawdown(&equities);
    let win_rate = (trades >= MIN_TRADES).then(|| {
        let wins = state.closed_trades.iter().filter(|pnl| **pnl > Money::zero()).count();
        tape_events::round4(Decimal::from(wins) / Decimal::from(trades))
    });
    let today = exchange_date(r.at);
    let days_since_change = state.tier_changed_on.map_or(i64::MAX, |d| (today - d).num_days());
    let promote = sharpe >= Decimal::new(15, 1)
        && drawdown <= Decimal::new(5, 2)
        && win_rate.is_some_and(|w| w >= Decimal::new(55, 2))
        && days_since_change >= MIN_DAYS_BETWEEN_CHANGES;
    let demote =
        sharpe < Decimal::ZERO || drawdown > Decimal::new(10, 2) || win_rate.is_some_and(|w| w < Decimal::new(40, 2));
    let tier = state.tier;
    let change = if promote {
        tier.promoted().map(|to| (to, TierChangeReason::Promote))
    } else if demote {
        tier.demoted().map(|to| (to, TierChangeReason::Demote))
    } else {
        None
    };
    r.emit(Event::PerformanceEvaluated(PerformanceEvaluated {
        sharpe: Some(tape_events::Ratio::new(sharpe)),
        max_drawdown: Some(tape_events::Ratio::new(drawdown)),
        win_rate: win_rate.map(tape_events::Ratio::new),
        closed_trades,
        reason: None,
    }));
    if let Some((to, reason)) = change {
        r.emit(Event::RiskTierChanged(RiskTierChanged { from: tier, to, reason }));
    }
}

/// The input a scheduler tick is.
#[must_use]
pub fn tick_input(id: Uuid, at: Timestamp, tick: TickKind) -> Input {
    Input { id, stamped: Stamped::new(at, tape_events::SchedulerTick { tick }) }
}
