//! The end-of-run summary: recommendations by final outcome, skip reasons, trades, win
//! rate, P&L, final equity, reserve and tier. Built by watching the event stream, so it
//! describes exactly what was recorded.

use std::collections::BTreeMap;
use std::fmt;

use tape_events::{Event, Money, Outcome, RiskTier, Stamped};

use tape_commands::valuation;
use tape_commands::State;

/// Counts and amounts of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub inputs: u64,
    pub decisions: u64,
    pub bad_lines: u64,
    pub recommendations: u64,
    pub acted: u64,
    pub skipped: BTreeMap<String, u64>,
    pub pending_at_end: u64,
    pub orders: u64,
    pub fills: u64,
    pub trades: u64,
    pub wins: u64,
    pub realized_pnl: Money,
    pub breaker_trips: BTreeMap<String, u64>,
    pub tier_changes: u64,
    pub final_cash: Money,
    pub final_equity: Money,
    pub initial_cash: Money,
    pub reserve: Money,
    pub open_positions: u64,
    pub tier: Option<RiskTier>,
}

impl Summary {
    /// Counts one recorded event.
    pub fn observe(&mut self, stamped: &Stamped) {
        self.events += 1;
        if stamped.event.is_input() {
            self.inputs += 1;
        } else {
            self.decisions += 1;
        }
        match &stamped.event {
            Event::RecommendationReceived(_) => self.recommendations += 1,
            Event::TradingDecisionRecorded(d) if d.is_final => match (d.decision, d.skip_reason) {
                (Outcome::Act, _) => self.acted += 1,
                (Outcome::Skip, Some(reason)) => *self.skipped.entry(reason.to_string()).or_default() += 1,
                (Outcome::Skip, None) => *self.skipped.entry("unknown".into()).or_default() += 1,
            },
            Event::OrderPlaced(_) => self.orders += 1,
            Event::OrderFilled(_) => self.fills += 1,
            Event::TradeClosed(t) => {
                self.trades += 1;
                self.realized_pnl += t.realized_pnl;
                if t.realized_pnl > Money::zero() {
                    self.wins += 1;
                }
            }
            Event::CircuitBreakerTripped(b) => *self.breaker_trips.entry(b.kind.to_string()).or_default() += 1,
            Event::RiskTierChanged(_) => self.tier_changes += 1,
            _ => {}
        }
    }

    /// Reads the final figures off the end state.
    pub fn finish(&mut self, state: &State) {
        self.final_cash = state.cash;
        self.final_equity = valuation::equity(state);
        self.initial_cash = state.account.as_ref().map_or_else(Money::zero, |a| a.initial_cash);
        self.reserve = state.reserve;
        self.open_positions = state.positions.len() as u64;
        self.pending_at_end = state.pending.len() as u64;
        self.tier = state.account.as_ref().map(|_| state.tier);
    }

    /// Final decisions that skipped.
    #[must_use]
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "events         {} ({} inputs, {} decisions)", self.events, self.inputs, self.decisions)?;
        if self.bad_lines > 0 {
            writeln!(f, "bad lines      {} (skipped)", self.bad_lines)?;
        }
        writeln!(
            f,
            "recommendations {} received: {} acted, {} skipped, {} still pending",
            self.recommendations,
            self.acted,
            self.skipped_total(),
            self.pending_at_end
        )?;
        for (reason, count) in &self.skipped {
            writeln!(f, "  skip {reason:<22} {count}")?;
        }
        writeln!(f, "orders         {} placed, {} fills", self.orders, self.fills)?;
        let win_rate = if self.trades > 0 {
            format!("{:.1}%", 100.0 * self.wins as f64 / self.trades as f64)
        } else {
            "n/a".into()
        };
        writeln!(
            f,
            "trades         {} closed, {} wins, win rate {win_rate}, realized P&L {}",
            self.trades, self.wins, self.realized_pnl
        )?;
        if !self.breaker_trips.is_empty() {
            let trips: Vec<String> = self.breaker_trips.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(f, "breaker trips  {}", trips.join(", "))?;
        }
        writeln!(
            f,
            "final equity   {} (initial {}, cash {}, {} open positions)",
            self.final_equity, self.initial_cash, self.final_cash, self.open_positions
        )?;
        writeln!(f, "reserve        {}", self.reserve)?;
        match self.tier {
            Some(tier) => write!(f, "risk tier      {tier} ({} changes)", self.tier_changes),
            None => write!(f, "risk tier      n/a (no account opened)"),
        }
    }
}
