//! Output: the one-screen text of `explain`, and tables as text, CSV or stable JSON.

use std::fmt::Write as _;

use serde_json::Value;
use tape_commands::calendar::exchange_time;
use tape_events::{Outcome, Timestamp};

use super::explain::{EvaluationLine, Explanation, OrderTrail};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(format!("unknown format {other:?}: expected table, json or csv")),
        }
    }
}

/// An instant in exchange time, as a person reads it: `2024-03-04 09:36:00 ET`.
#[must_use]
pub fn et(at: Timestamp) -> String {
    exchange_time(at).format("%Y-%m-%d %H:%M:%S ET").to_string()
}

fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "–".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What a check compared, in words.
#[must_use]
pub fn describe_check(check: &str, d: &Value) -> String {
    if d.get("not_applicable_to_sell").is_some() {
        return "not applicable to a sell".to_owned();
    }
    let f = |k: &str| text(d.get(k));
    match check {
        "circuit_breaker" => match d.get("active").and_then(Value::as_array) {
            Some(active) if !active.is_empty() => {
                let list: Vec<String> = active
                    .iter()
                    .map(|b| {
                        format!("{} {} until {}", text(b.get("kind")), text(b.get("ticker")), text(b.get("until")))
                    })
                    .collect();
                format!("active: {}", list.join("; "))
            }
            _ => format!("no breaker active for {}", f("ticker")),
        },
        "trading_window" => format!(
            "{} {} [{}, {}){}",
            f("now_et"),
            if d.get("trading_day") == Some(&Value::Bool(false)) {
                "is not a trading day; window"
            } else {
                "vs window"
            },
            f("start"),
            f("end"),
            ""
        ),
        "confidence" => format!("confidence {} vs min {} ({} tier)", f("confidence"), f("min_confidence"), f("tier")),
        "dedupe" => {
            if d.get("consumed_before") == Some(&Value::Bool(true)) {
                "this id was consumed before".to_owned()
            } else {
                "first time this id is consumed".to_owned()
            }
        }
        "declining_positions" => format!(
            "{} of {} positions down more than {} (fraction {}, max {})",
            f("declining"),
            f("open_positions"),
            f("declining_loss_pct"),
            f("fraction"),
            f("declining_fraction")
        ),
        "max_open_positions" => format!(
            "{} positions + {} open buys for unheld tickers vs max {} (held {}, open buy {})",
            f("open_positions"),
            f("open_buy_orders_unheld"),
            f("max"),
            f("held"),
            f("open_buy")
        ),
        _ => d.to_string(),
    }
}

/// Why a sizing step did what it did, in words.
#[must_use]
pub fn describe_step(step: &str, d: &Value) -> String {
    let f = |k: &str| text(d.get(k));
    let reject = d.get("reject").map(|r| format!(" → reject {}", text(Some(r)))).unwrap_or_default();
    let why = match step {
        "base" => format!(
            "pool {} × pct {} (max {} × 0.5 × {} / {})",
            f("active_pool"),
            f("pct"),
            f("max_position_pct"),
            f("confidence"),
            f("min_confidence")
        ),
        "correlation" => match d.get("rho_bar") {
            Some(Value::Null) | None => "no other held ticker with enough aligned returns".to_owned(),
            _ => {
                let rhos = d
                    .get("rho")
                    .and_then(Value::as_object)
                    .map(|m| m.iter().map(|(t, r)| format!("{t} {}", text(Some(r)))).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                let factor = d.get("factor").map(|x| format!(", factor {}", text(Some(x)))).unwrap_or_default();
                format!("ρ̄ {} over {}{factor}", f("rho_bar"), rhos)
            }
        },
        "sector" => format!(
            "{}: cap {} − held {} − open buys {} = headroom {}",
            f("sector"),
            f("cap"),
            f("held"),
            f("open_buy_notional"),
            f("headroom")
        ),
        "diversification" => {
            let held = d.get("held_sectors").map(|v| text(Some(v))).unwrap_or_default();
            if d.get("bonus_applied") == Some(&Value::Bool(true)) {
                format!("new sector {} (held: {held}) → bonus", f("sector"))
            } else {
                format!("no bonus: sector {} (held: {held})", f("sector"))
            }
        }
        "earnings" => match d.get("days") {
            Some(Value::Null) | None => "no upcoming earnings date".to_owned(),
            _ => format!("earnings {} in {} days", f("next_earnings_date"), f("days")),
        },
        "absolute_cap" => format!(
            "min(position cap {}, max_position_dollars {}, available cash {})",
            f("position_cap"),
            f("max_position_dollars"),
            f("available_cash")
        ),
        "portfolio_heat" => {
            let reduced = d.get("reduced_to").map(|r| format!(" → reduced to {}", text(Some(r)))).unwrap_or_default();
            format!("heat {} + added {} vs limit {}{reduced}", f("heat"), f("added_heat"), f("limit"))
        }
        "share_rounding" => format!("floor(dollars / {}) = {} shares", f("price"), f("shares")),
        _ => d.to_string(),
    };
    format!("{why}{reject}")
}

fn evaluation(out: &mut String, n: usize, e: &EvaluationLine) {
    let d = &e.decision;
    let hash: String = e.config_hash.chars().take(12).collect();
    let _ = writeln!(
        out,
        "evaluation {n} ({} at {}, position {})  tier {}  config {hash}",
        e.trigger,
        et(e.place.at),
        e.place.position,
        e.risk_tier
    );
    for c in &e.checks {
        let mark = if c.passed { "pass" } else { "FAIL" };
        let _ = writeln!(out, "  {mark} {:<20} {}", c.check, describe_check(&c.check, &c.detail));
    }
    if !e.steps.is_empty() {
        for s in &e.steps {
            let _ = writeln!(
                out,
                "  step {:<16} {:>11} → {:<11} {}",
                s.step,
                s.dollars_before.to_string(),
                s.dollars_after.to_string(),
                describe_step(&s.step, &s.detail)
            );
        }
    }
    let finality = if d.is_final { "final" } else { "transient: stays pending" };
    match d.decision {
        Outcome::Act => {
            let _ = writeln!(
                out,
                "  => ACT {} {} shares at {} = {} ({finality})",
                text(d.side.as_ref().map(|s| Value::String(s.clone())).as_ref()),
                d.shares.map_or(0, |s| s.0),
                d.price.map(|p| p.to_string()).unwrap_or_default(),
                d.dollar_amount.map(|m| m.to_string()).unwrap_or_default()
            );
        }
        Outcome::Skip => {
            let reason = d.skip_reason.map(|r| r.to_string()).unwrap_or_default();
            let _ = writeln!(out, "  => SKIP {reason} ({finality})");
        }
    }
}

fn order(out: &mut String, label: &str, o: &OrderTrail) {
    let p = &o.order;
    let _ = writeln!(
        out,
        "{label} {} {} {} {} ({}) placed {} position {}",
        p.order_id,
        p.side,
        p.qty,
        p.ticker,
        p.reason,
        et(o.place.at),
        o.place.position
    );
    if let Some((at, broker_id)) = &o.submitted {
        let _ = writeln!(out, "  submitted {} broker order {broker_id}", et(*at));
    }
    for f in &o.fills {
        let after = match &f.position_avg_cost_after {
            Some(avg) => format!("position {} @ {avg}", f.position_qty_after),
            None => "position closed".to_owned(),
        };
        let _ = writeln!(
            out,
            "  filled {} {} @ {} (fill {}) → {after}",
            et(f.place.at),
            f.fill.qty,
            f.fill.price,
            f.fill.fill_id
        );
    }
    if let Some((at, why)) = &o.ended {
        let _ = writeln!(out, "  {why} at {}", et(*at));
    }
}

/// The one-screen text of an explanation.
#[must_use]
pub fn explanation_text(x: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "recommendation {} ({})", x.recommendation_id, x.stream_id);
    for c in &x.captures {
        let r = &c.fields;
        let _ = writeln!(
            out,
            "captured {} position {}: ticker {} action {} confidence {} mode {} generated_at {}{}",
            et(c.place.at),
            c.place.position,
            r.ticker.as_deref().unwrap_or("–"),
            r.action.as_deref().unwrap_or("–"),
            r.confidence.as_deref().unwrap_or("–"),
            r.mode.as_deref().unwrap_or("–"),
            r.generated_at.as_deref().unwrap_or("–"),
            r.source.as_deref().map(|s| format!(" source {s}")).unwrap_or_default()
        );
    }
    for (i, e) in x.evaluations.iter().enumerate() {
        evaluation(&mut out, i + 1, e);
    }
    for o in &x.orders {
        order(&mut out, "order", o);
    }
    if let Some(a) = &x.aftermath {
        for (at, s) in &a.stop_losses {
            let _ = writeln!(
                out,
                "stop-loss {} {} at {} (stop {}) qty {}",
                et(*at),
                s.ticker,
                s.price,
                s.stop_price,
                s.qty
            );
        }
        for o in &a.exits {
            order(&mut out, "exit order", o);
        }
        match &a.trade {
            Some((at, t)) => {
                let _ = writeln!(
                    out,
                    "trade closed {}: {} {} shares, entry {} exit {}, realized P&L {} ({})",
                    et(*at),
                    t.ticker,
                    t.qty,
                    t.entry_price,
                    t.exit_price,
                    t.realized_pnl,
                    if t.realized_pnl > tape_events::Money::zero() { "win" } else { "not a win" }
                );
            }
            None => {
                let _ = writeln!(out, "position still open");
            }
        }
    }
    out
}

/// Stable, pretty JSON (field order fixed by the types, maps sorted).
///
/// # Panics
/// Never: the explanation's types always serialize (`Invariant:`).
#[must_use]
pub fn explanation_json(x: &Explanation) -> String {
    serde_json::to_string_pretty(x).unwrap_or_else(|e| panic!("Invariant: an explanation serializes: {e}"))
}

/// Rows of a listing with named columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    #[must_use]
    pub fn new(columns: &[&'static str]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Aligned text columns.
    #[must_use]
    pub fn table(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                let _ = write!(s, "{cell:<w$}");
            }
            s.trim_end().to_owned()
        };
        let mut out = line(self.columns.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }

    /// RFC 4180 CSV with a header line.
    #[must_use]
    pub fn csv(&self) -> String {
        let cell = |c: &str| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.to_owned()
            }
        };
        let mut out = self.columns.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for row in &self.rows {
            out.push_str(&row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// A JSON array of objects, one per row, keys in column order.
    #[must_use]
    pub fn json(&self) -> String {
        let mut out = String::from("[");
        for (i, row) in self.rows.iter().enumerate() {
            out.push_str(if i == 0 { "\n  {" } else { ",\n  {" });
            for (j, (column, value)) in self.columns.iter().zip(row).enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{}: {}", Value::String((*column).to_owned()), Value::String(value.clone()));
            }
            out.push('}');
        }
        out.push_str(if self.rows.is_empty() { "]\n" } else { "\n]\n" });
        out
    }

    /// In the chosen format.
    #[must_use]
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Json => self.json(),
            Format::Csv => self.csv(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_render_in_three_formats() {
        let mut rows = Rows::new(&["ticker", "note"]);
        rows.push(vec!["AAPL".into(), "a, \"quoted\" note".into()]);
        assert_eq!(rows.table(), "ticker  note\nAAPL    a, \"quoted\" note\n");
        assert_eq!(rows.csv(), "ticker,note\nAAPL,\"a, \"\"quoted\"\" note\"\n");
        assert_eq!(rows.json(), "[\n  {\"ticker\": \"AAPL\", \"note\": \"a, \\\"quoted\\\" note\"}\n]\n");
        assert_eq!(Rows::new(&["a"]).json(), "[]\n");
    }
}
