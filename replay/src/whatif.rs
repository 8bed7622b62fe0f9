//! What-if replay, the pure half: the recorded inputs of a window re-run under another
//! configuration, next to the record.
//!
//! Semantics (`docs/replay.md`):
//! - The state at the start of the window is the record's. A `ConfigActivated` with the
//!   what-if configuration is injected at the window's first instant. A recorded
//!   `ConfigActivated` inside the window is re-applied with the `--set` overrides on top
//!   (or replaced by the `--config` file's configuration).
//! - Recorded scheduler ticks are not replayed: the schedule of SPEC 7 is run again
//!   (pending recommendations may need polls the record never had). A tick the record
//!   has at the same instant keeps its id.
//! - Orders are matched by (recommendation or causing input, ticker, side, reason). A
//!   what-if order whose match exists live with the same quantity gets the live order's
//!   broker inputs (submits, fills, rejects, cancels), with the order id rewritten. Other
//!   what-if orders are filled by the paper fill model at the next recorded quote of
//!   their ticker. Broker inputs of live orders with no what-if match are dropped.

use std::collections::BTreeMap;

use tape_commands::schedule::TickCursor;
use tape_commands::{paper, valuation, Engine, Input, State, StepOutcome};
use tape_events::{ids, Config, ConfigActivated, Event, Money, Outcome, SkipReason, Stamped, TickKind, Timestamp};
use uuid::Uuid;

use crate::recorded::{steps, Recorded};

/// The seed of the ids of ticks the what-if schedules that the record does not have.
const TICK_ID_SEED: u16 = 0x3f1f;

/// The configuration the what-if runs under.
#[derive(Debug, Clone)]
pub enum Override {
    /// `--set key=value …`, applied over the configuration in force.
    Sets(Vec<String>),
    /// `--config file`: this configuration replaces the one in force.
    Replace(Box<Config>),
}

impl Override {
    fn apply(&self, base: &Config) -> Result<Config, tape_commands::config::ConfigError> {
        match self {
            Self::Sets(sets) => tape_commands::config::apply_sets(base, sets),
            Self::Replace(config) => Ok((**config).clone()),
        }
    }
}

/// A recommendation's last decision in the window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecisionOutcome {
    pub decision: Outcome,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub skip_reason: Option<SkipReason>,
    pub shares: Option<u64>,
}

/// One recommendation, live and what-if.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecisionDiff {
    pub recommendation_id: String,
    pub live: Option<DecisionOutcome>,
    pub what_if: Option<DecisionOutcome>,
}

/// Figures of one side over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Figures {
    /// Realized P&L of the trades closed in the window.
    pub realized_pnl: Money,
    /// Trades closed in the window.
    pub trades: u64,
    pub orders: u64,
    pub fills: u64,
    pub end_equity: Money,
}

/// The what-if's outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub config_hash_live: String,
    pub config_hash_what_if: String,
    pub start_equity: Money,
    pub live: Figures,
    pub what_if: Figures,
    /// Recommendations decided in the window, in order of first decision.
    pub decisions: Vec<DecisionDiff>,
    /// Broker inputs of live orders the what-if does not have (dropped).
    pub dropped_broker_inputs: u64,
    /// What-if orders filled by the paper model.
    pub paper_fills: u64,
}

impl Report {
    /// The recommendations whose decision differs.
    pub fn changed(&self) -> impl Iterator<Item = &DecisionDiff> {
        self.decisions.iter().filter(|d| d.live != d.what_if)
    }
}

/// Why a what-if cannot run.
#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    #[error(transparent)]
    Config(#[from] tape_commands::config::ConfigError),
    #[error("the what-if configuration is refused: {0}")]
    Input(#[from] tape_commands::InputError),
    #[error("recorded event at position {position} does not decode: {source}")]
    Decode {
        position: i64,
        #[source]
        source: tape_events::DecodeError,
    },
}

type OrderKey = (String, String, &'static str, &'static str);

/// The what-if run. [`WhatIf::start`] at the window's start, [`WhatIf::day`] for each
/// day's recorded events in order, [`WhatIf::finish`].
#[derive(Debug)]
pub struct WhatIf {
    live: State,
    engine: Engine,
    cursor: TickCursor,
    over: Override,
    sequence: u64,
    /// Live order id → what-if order id.
    mapped: BTreeMap<Uuid, Uuid>,
    /// What-if orders that take live broker input (not paper-filled).
    live_backed: BTreeMap<Uuid, Uuid>,
    decisions: BTreeMap<String, (u64, Option<DecisionOutcome>, Option<DecisionOutcome>)>,
    seen: u64,
    live_figures: Figures,
    what_if_figures: Figures,
    start_equity: Money,
    dropped: u64,
    paper_fills: u64,
    last_at: Timestamp,
    out: Vec<Stamped>,
}

fn outcome(d: &tape_events::TradingDecisionRecorded) -> DecisionOutcome {
    DecisionOutcome {
        decision: d.decision,
        is_final: d.is_final,
        skip_reason: d.skip_reason,
        shares: d.shares.map(|q| q.0),
    }
}

impl WhatIf {
    /// Starts from the record's state at `window_start`, activating the what-if config.
    ///
    /// # Errors
    /// [`WhatIfError`] for a configuration the core refuses.
    pub fn start(state: State, window_start: Timestamp, over: Override) -> Result<Self, WhatIfError> {
        let config = over.apply(&state.config)?;
        let start_equity = valuation::equity(&state);
        let mut engine = Engine::new(state.clone());
        let mut out = Vec::new();
        let id = ids::deterministic_v7(window_start, TICK_ID_SEED, 0, 0);
        let activated = ConfigActivated { hash: config.hash(), config: Box::new(config) };
        engine.step(Input { id, stamped: Stamped::new(window_start, activated) }, &mut out)?;
        let before = window_start.minus(chrono::Duration::microseconds(1));
        Ok(Self {
            live: state,
            engine,
            cursor: TickCursor::after(before),
            over,
            sequence: 0,
            mapped: BTreeMap::new(),
            live_backed: BTreeMap::new(),
            decisions: BTreeMap::new(),
            seen: 0,
            live_figures: Figures::default(),
            what_if_figures: Figures::default(),
            start_equity,
            dropped: 0,
            paper_fills: 0,
            last_at: window_start,
            out,
        })
    }

    /// Runs one day's recorded events (whole steps, in stream order).
    ///
    /// # Errors
    /// [`WhatIfError::Decode`] for an event that does not decode.
    pub fn day(&mut self, events: &[Recorded]) -> Result<(), WhatIfError> {
        let decode = |r: &Recorded| r.decode().map_err(|source| WhatIfError::Decode { position: r.position, source });
        // Live orders of the day by key, and the ids of its ticks.
        let mut live_orders: BTreeMap<OrderKey, (Uuid, u64)> = BTreeMap::new();
        let mut tick_ids: BTreeMap<(Timestamp, TickKind), Uuid> = BTreeMap::new();
        for step in steps(events) {
            let input_id = step[0].event_id;
            for recorded in step {
                match recorded.event_type.as_str() {
                    "OrderPlaced" => {
                        if let Event::OrderPlaced(o) = decode(recorded)?.event {
                            live_orders.insert(key(&o, input_id), (o.order_id, o.qty.0));
                        }
                    }
                    "SchedulerTick" => {
                        if let Event::SchedulerTick(t) = decode(recorded)?.event {
                            tick_ids.insert((recorded.at, t.tick), recorded.event_id);
                        }
                    }
                    _ => {}
                }
            }
        }
        for step in steps(events) {
            let mut typed = Vec::with_capacity(step.len());
            for recorded in step {
                typed.push(decode(recorded)?);
            }
            self.live_step(&typed);
            let input = &step[0];
            if !input.is_input() {
                continue;
            }
            let stamped = typed.swap_remove(0);
            let at = stamped.at;
            self.last_at = at;
            self.ticks(at, &tick_ids, &live_orders);
            match stamped.event {
                Event::SchedulerTick(_) => {}
                Event::ConfigActivated(e) => {
                    let config = self.over.apply(&e.config)?;
                    let activated = ConfigActivated { hash: config.hash(), config: Box::new(config) };
                    self.what_if_step(input.event_id, Stamped::new(at, activated), &live_orders);
                }
                Event::OrderSubmitted(mut e) => match self.mapped.get(&e.order_id) {
                    Some(id) => {
                        e.order_id = *id;
                        self.what_if_step(input.event_id, Stamped::new(at, e), &live_orders);
                    }
                    None => self.dropped += 1,
                },
                Event::OrderRejected(mut e) => match self.mapped.get(&e.order_id) {
                    Some(id) => {
                        e.order_id = *id;
                        self.what_if_step(input.event_id, Stamped::new(at, e), &live_orders);
                    }
                    None => self.dropped += 1,
                },
                Event::OrderCanceled(mut e) => match self.mapped.get(&e.order_id) {
                    Some(id) => {
                        e.order_id = *id;
                        self.what_if_step(input.event_id, Stamped::new(at, e), &live_orders);
                    }
                    None => self.dropped += 1,
                },
                Event::OrderFilled(mut e) => match self.mapped.get(&e.order_id) {
                    Some(id) => {
                        e.order_id = *id;
                        self.what_if_step(input.event_id, Stamped::new(at, e), &live_orders);
                    }
                    None => self.dropped += 1,
                },
                Event::QuoteObserved(q) => {
                    loop {
                        let state = self.engine.state();
                        let order = state.open_orders.iter().find(|o| {
                            o.ticker == q.ticker && o.placed_at < at && !self.live_backed.contains_key(&o.order_id)
                        });
                        let Some(order) = order else { break };
                        let fill = paper::fill_for(order, q.price, &state.config);
                        let id = self.next_id(at);
                        self.paper_fills += 1;
                        if !self.what_if_step(id, Stamped::new(at, fill), &live_orders) {
                            break;
                        }
                    }
                    self.what_if_step(input.event_id, Stamped::new(at, q), &live_orders);
                }
                event => {
                    self.what_if_step(input.event_id, Stamped { at, event }, &live_orders);
                }
            }
            self.cursor.advance_to(at);
        }
        Ok(())
    }

    fn next_id(&mut self, at: Timestamp) -> Uuid {
        self.sequence += 1;
        ids::deterministic_v7(at, TICK_ID_SEED, 0, self.sequence)
    }

    fn ticks(
        &mut self,
        limit: Timestamp,
        tick_ids: &BTreeMap<(Timestamp, TickKind), Uuid>,
        live_orders: &BTreeMap<OrderKey, (Uuid, u64)>,
    ) {
        if !self.engine.state().is_open() {
            return;
        }
        loop {
            let config = self.engine.state().config.clone();
            let want_polls = self.engine.state().has_pending();
            let Some(tick) = self.cursor.next_due(limit, want_polls, &config) else { break };
            let id = tick_ids.get(&(tick.at, tick.kind)).copied().unwrap_or_else(|| self.next_id(tick.at));
            let stamped = Stamped::new(tick.at, tape_events::SchedulerTick { tick: tick.kind });
            self.what_if_step(id, stamped, live_orders);
        }
    }

    /// Steps the what-if engine; false when the input was refused or changed nothing.
    fn what_if_step(&mut self, id: Uuid, stamped: Stamped, live_orders: &BTreeMap<OrderKey, (Uuid, u64)>) -> bool {
        self.out.clear();
        let mut out = std::mem::take(&mut self.out);
        let recorded = matches!(self.engine.step(Input { id, stamped }, &mut out), Ok(StepOutcome::Recorded { .. }));
        for stamped in &out {
            match &stamped.event {
                Event::OrderPlaced(o) => {
                    self.what_if_figures.orders += 1;
                    if let Some((live_id, qty)) = live_orders.get(&key(o, id)) {
                        if *qty == o.qty.0 {
                            self.mapped.insert(*live_id, o.order_id);
                            self.live_backed.insert(o.order_id, *live_id);
                        }
                    }
                }
                Event::OrderFilled(_) => self.what_if_figures.fills += 1,
                Event::TradeClosed(t) => {
                    self.what_if_figures.trades += 1;
                    self.what_if_figures.realized_pnl += t.realized_pnl;
                }
                Event::TradingDecisionRecorded(d) => {
                    let seen = self.seen;
                    let entry = self.decisions.entry(d.recommendation_id.clone()).or_insert((seen, None, None));
                    entry.2 = Some(outcome(d));
                    self.seen += 1;
                }
                _ => {}
            }
        }
        self.out = out;
        recorded
    }

    fn live_step(&mut self, step: &[Stamped]) {
        for stamped in step {
            self.live.apply(stamped);
            match &stamped.event {
                Event::OrderPlaced(_) => self.live_figures.orders += 1,
                Event::OrderFilled(_) => self.live_figures.fills += 1,
                Event::TradeClosed(t) => {
                    self.live_figures.trades += 1;
                    self.live_figures.realized_pnl += t.realized_pnl;
                }
                Event::TradingDecisionRecorded(d) => {
                    let seen = self.seen;
                    let entry = self.decisions.entry(d.recommendation_id.clone()).or_insert((seen, None, None));
                    entry.1 = Some(outcome(d));
                    self.seen += 1;
                }
                _ => {}
            }
        }
    }

    /// Runs the ticks due up to the last recorded event and reports.
    #[must_use]
    pub fn finish(mut self) -> Report {
        let last = self.last_at;
        self.ticks(last, &BTreeMap::new(), &BTreeMap::new());
        self.live_figures.end_equity = valuation::equity(&self.live);
        self.what_if_figures.end_equity = valuation::equity(self.engine.state());
        let mut decisions: Vec<(u64, DecisionDiff)> = self
            .decisions
            .into_iter()
            .map(|(id, (seen, live, what_if))| (seen, DecisionDiff { recommendation_id: id, live, what_if }))
            .collect();
        decisions.sort_by_key(|(seen, _)| *seen);
        Report {
            config_hash_live: self.live.config_hash.clone(),
            config_hash_what_if: self.engine.state().config_hash.clone(),
            start_equity: self.start_equity,
            live: self.live_figures,
            what_if: self.what_if_figures,
            decisions: decisions.into_iter().map(|(_, d)| d).collect(),
            dropped_broker_inputs: self.dropped,
            paper_fills: self.paper_fills,
        }
    }
}

fn key(order: &tape_events::OrderPlaced, input_id: Uuid) -> OrderKey {
    let origin = order.recommendation_id.clone().unwrap_or_else(|| input_id.to_string());
    (origin, order.ticker.clone(), order.side.as_str(), order.reason.as_str())
}
