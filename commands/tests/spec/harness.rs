//! Given/when/then for the pure core: `given()` is a recorded history (events folded with
//! `apply`, as a store would replay them), `when` runs one input through the engine, and
//! `Then` reads the decisions it recorded.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use tape_commands::{Engine, Input, InputError, State, StepOutcome};
use tape_events::*;
use uuid::Uuid;

/// `2024-03-04T{hh:mm[:ss]}Z`: 2024-03-04 is a Monday in EST (ET = UTC−5).
pub fn t(hm: &str) -> Timestamp {
    let full = if hm.len() == 5 { format!("{hm}:00") } else { hm.to_owned() };
    Timestamp::parse(&format!("2024-03-04T{full}Z")).unwrap()
}

pub fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

pub fn money(text: &str) -> Money {
    Money::from_str(text).unwrap()
}

pub fn price(text: &str) -> Price {
    Price::from_str(text).unwrap()
}

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

#[derive(Clone)]
pub struct Given {
    pub engine: Engine,
    pub at: Timestamp,
    sequence: u128,
}

/// An account `t` with 100000.00 opened at 14:00Z under the default config.
pub fn given() -> Given {
    given_with(|_| {})
}

/// The same under a changed config.
pub fn given_with(change: impl FnOnce(&mut Config)) -> Given {
    given_account(AccountMode::Paper, "100000.00", change)
}

/// An account of any mode and cash.
pub fn given_account(mode: AccountMode, cash: &str, change: impl FnOnce(&mut Config)) -> Given {
    let mut config = Config::default();
    change(&mut config);
    config.validate().unwrap();
    let hash = config.hash();
    let mut g = Given { engine: Engine::default(), at: t("14:00"), sequence: 0 };
    g = g.event(AccountOpened { account_id: "t".into(), initial_cash: money(cash), mode });
    g.event(ConfigActivated { config: Box::new(config), hash })
}

impl Given {
    fn next_id(&mut self) -> Uuid {
        self.sequence += 1;
        Uuid::from_u128(self.sequence)
    }

    /// Moves the clock.
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// Folds an already-recorded event.
    pub fn event(mut self, event: impl Into<Event>) -> Self {
        self.engine.apply(&Stamped::new(self.at, event));
        self
    }

    /// Runs an input through the engine (with its decisions) as history.
    pub fn input(mut self, event: impl Into<Event>) -> Self {
        let id = self.next_id();
        let mut out = Vec::new();
        self.engine.step(Input { id, stamped: Stamped::new(self.at, event) }, &mut out).unwrap();
        self
    }

    pub fn security(self, ticker: &str, sector: Option<&str>, earnings: Option<&str>) -> Self {
        self.event(SecurityUpdated {
            ticker: ticker.into(),
            sector: sector.map(Into::into),
            next_earnings_date: earnings.map(|d| d.parse().unwrap()),
        })
    }

    pub fn quote(self, ticker: &str, p: &str) -> Self {
        self.event(QuoteObserved { ticker: ticker.into(), price: price(p) })
    }

    pub fn close(self, ticker: &str, date: &str, p: &str) -> Self {
        self.event(DailyBarObserved { ticker: ticker.into(), date: date.parse().unwrap(), close: price(p) })
    }

    /// An open order placed now (as a decision would have placed it).
    pub fn order(self, ticker: &str, side: Side, qty: u64, reason: OrderReason) -> Self {
        let order_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{ticker}-{side}-{}", self.at).as_bytes());
        self.event(OrderPlaced {
            order_id,
            recommendation_id: None,
            ticker: ticker.into(),
            side,
            qty: Qty(qty),
            reason,
        })
    }

    /// A filled buy: a position of `qty` at `p` (and the quote that priced it).
    pub fn holding(self, ticker: &str, qty: u64, p: &str) -> Self {
        let g = self.order(ticker, Side::Buy, qty, OrderReason::Entry);
        let order = g.engine.state().open_orders.last().unwrap().clone();
        g.event(OrderFilled {
            order_id: order.order_id,
            fill_id: format!("fill-{}", order.order_id),
            ticker: ticker.into(),
            side: Side::Buy,
            qty: Qty(qty),
            price: price(p),
        })
        .quote(ticker, p)
    }

    pub fn state(&self) -> &State {
        self.engine.state()
    }

    /// Runs one input and returns what it recorded.
    pub fn when(mut self, event: impl Into<Event>) -> Then {
        let id = self.next_id();
        let mut out = Vec::new();
        let outcome = self.engine.step(Input { id, stamped: Stamped::new(self.at, event) }, &mut out);
        Then { outcome, events: out, engine: self.engine, at: self.at, sequence: self.sequence }
    }

    /// A buy or sell recommendation generated a minute before now.
    pub fn when_rec(self, id: &str, ticker: &str, action: &str, confidence: &str) -> Then {
        let generated_at = self.at.minus(chrono::Duration::minutes(1)).to_string();
        self.when(rec(id, ticker, action, confidence, &generated_at))
    }

    pub fn when_tick(self, tick: TickKind) -> Then {
        self.when(SchedulerTick { tick })
    }
}

pub fn rec(id: &str, ticker: &str, action: &str, confidence: &str, generated_at: &str) -> RecommendationReceived {
    RecommendationReceived {
        recommendation_id: id.into(),
        ticker: Some(ticker.into()),
        action: Some(action.into()),
        confidence: Some(confidence.into()),
        mode: Some("paper_eligible".into()),
        generated_at: Some(generated_at.into()),
        source: None,
    }
}

pub struct Then {
    pub outcome: Result<StepOutcome, InputError>,
    pub events: Vec<Stamped>,
    pub engine: Engine,
    at: Timestamp,
    sequence: u128,
}

/// No account yet.
pub fn unopened() -> Given {
    Given { engine: Engine::default(), at: t("14:00"), sequence: 1000 }
}

impl Then {
    /// Goes on from the state this step left.
    pub fn and(self) -> Given {
        Given { engine: self.engine, at: self.at, sequence: self.sequence }
    }

    /// The decisions (everything after the recorded input).
    pub fn decisions(&self) -> Vec<&Event> {
        let skip = usize::from(matches!(self.outcome, Ok(StepOutcome::Recorded { .. })));
        self.events.iter().skip(skip).map(|s| &s.event).collect()
    }

    pub fn types(&self) -> Vec<&'static str> {
        self.decisions().iter().map(|e| e.event_type()).collect()
    }

    pub fn recorded(&self) -> bool {
        matches!(self.outcome, Ok(StepOutcome::Recorded { .. }))
    }

    /// The last trading decision.
    pub fn decision(&self) -> &TradingDecisionRecorded {
        self.decisions()
            .into_iter()
            .rev()
            .find_map(|e| match e {
                Event::TradingDecisionRecorded(d) => Some(d),
                _ => None,
            })
            .expect("a TradingDecisionRecorded")
    }

    /// (check, passed) in order.
    pub fn checks(&self) -> Vec<(CheckName, bool)> {
        self.decisions()
            .into_iter()
            .filter_map(|e| match e {
                Event::PreTradeCheckEvaluated(c) => Some((c.check, c.passed)),
                _ => None,
            })
            .collect()
    }

    pub fn check_detail(&self, check: CheckName) -> Value {
        self.decisions()
            .into_iter()
            .find_map(|e| match e {
                Event::PreTradeCheckEvaluated(c) if c.check == check => Some(c.detail.clone()),
                _ => None,
            })
            .expect("the check")
    }

    /// (step, before, after) in order, as text.
    pub fn steps(&self) -> Vec<(SizingStep, String, String)> {
        self.decisions()
            .into_iter()
            .filter_map(|e| match e {
                Event::SizingStepApplied(s) => {
                    Some((s.step, s.dollars_before.to_string(), s.dollars_after.to_string()))
                }
                _ => None,
            })
            .collect()
    }

    pub fn step(&self, step: SizingStep) -> (String, String) {
        self.steps().into_iter().find(|s| s.0 == step).map(|s| (s.1, s.2)).expect("the step")
    }

    pub fn orders(&self) -> Vec<&OrderPlaced> {
        self.decisions()
            .into_iter()
            .filter_map(|e| match e {
                Event::OrderPlaced(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    pub fn find<T>(&self, pick: impl Fn(&Event) -> Option<&T>) -> Option<&T> {
        self.decisions().into_iter().find_map(pick)
    }

    /// Asserts an act of `shares` for `dollars`.
    pub fn acts(&self, shares: u64, dollars: &str) {
        let d = self.decision();
        assert_eq!((d.decision, d.is_final, d.skip_reason), (Outcome::Act, true, None), "{:#?}", self.types());
        assert_eq!(d.shares, Some(Qty(shares)));
        assert_eq!(d.dollar_amount.unwrap().to_string(), dollars);
    }

    /// Asserts a skip with this reason and finality.
    pub fn skips(&self, reason: &str, is_final: bool) {
        let d = self.decision();
        assert_eq!(d.decision, Outcome::Skip);
        assert_eq!(d.skip_reason.map(|r| r.to_string()).as_deref(), Some(reason));
        assert_eq!(d.is_final, is_final);
        assert_eq!((d.shares, d.dollar_amount, d.price), (None, None, None));
    }
}
