//! Position sizing (SPEC 4 steps 1–8 and SPEC 13): each step takes the dollar amount
//! from the one before and records what it did. A rejecting step ends the run with
//! `dollars_after` 0.00 and `detail.reject`.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tape_events::{Money, Price, Qty, RejectReason, SizingStep};

use crate::state::State;
use crate::stats;
use crate::valuation::{active_pool, available_cash, heat, open_buy_notional, open_buys, share_of};

/// The sector of a ticker with no known sector.
pub const UNKNOWN_SECTOR: &str = "UNKNOWN";

/// What to size.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub state: &'a State,
    pub ticker: &'a str,
    pub confidence: Decimal,
    /// The last quote's price (P), known fresh.
    pub price: Price,
    /// Today's exchange date.
    pub today: NaiveDate,
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step: SizingStep,
    pub before: Money,
    pub after: Money,
    pub detail: Value,
}

/// The steps taken and the result: shares and dollar amount, or the reject.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub steps: Vec<Step>,
    pub result: Result<(Qty, Money), RejectReason>,
}

struct Run {
    steps: Vec<Step>,
    dollars: Money,
}

impl Run {
    fn record(&mut self, step: SizingStep, after: Money, detail: Value) {
        self.steps.push(Step { step, before: self.dollars, after, detail });
        self.dollars = after;
    }

    fn reject(mut self, step: SizingStep, reason: RejectReason, mut detail: Map<String, Value>) -> Sizing {
        detail.insert("reject".into(), json!(reason));
        self.record(step, Money::zero(), Value::Object(detail));
        Sizing { steps: self.steps, result: Err(reason) }
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The sector of a ticker (`UNKNOWN` when not known).
#[must_use]
pub fn sector_of<'a>(state: &'a State, ticker: &str) -> &'a str {
    state.securities.get(ticker).and_then(|s| s.sector.as_deref()).unwrap_or(UNKNOWN_SECTOR)
}

/// Runs the eight steps.
#[must_use]
#[allow(clippy::too_many_lines)] // eight steps, one after the other, as SPEC 4 lists them
pub fn size(request: &Request<'_>) -> Sizing {
    let state = request.state;
    let config = &*state.config;
    let tier = config.tier(state.tier);
    let ticker = request.ticker;
    let pool = active_pool(state);
    let mut run = Run { steps: Vec::with_capacity(8), dollars: pool };

    // 1. base: pct = min(max_pct, max_pct × 0.5 × confidence / min_confidence), unrounded.
    let scaled = tier.max_position_pct * Decimal::new(5, 1) * request.confidence / tier.min_confidence;
    let pct = tier.max_position_pct.min(scaled);
    let base = Money::new(pool.value() * pct);
    run.record(
        SizingStep::Base,
        base,
        json!({
            "active_pool": pool,
            "pct": pct.normalize().to_string(),
            "confidence": request.confidence.to_string(),
            "min_confidence": tier.min_confidence.to_string(),
            "max_position_pct": tier.max_position_pct.to_string(),
        }),
    );

    // 2. correlation against the other held tickers, weighted by market value.
    let own_closes = state.closes.get(ticker);
    let mut weighted = Decimal::ZERO;
    let mut weights = Decimal::ZERO;
    let mut per_ticker = Map::new();
    let window = config.correlation_window as usize;
    let (mut xs, mut ys) = (Vec::with_capacity(window), Vec::with_capacity(window));
    for (held, position) in state.positions.iter().filter(|(t, _)| t.as_str() != ticker) {
        let (Some(own), Some(theirs)) = (own_closes, state.closes.get(held)) else { continue };
        stats::aligned_returns_into(own, theirs, &mut xs, &mut ys);
        if xs.len() < config.correlation_min_returns as usize {
            continue;
        }
        let rho = stats::ratio(stats::pearson(&xs, &ys));
        let mv = position.value;
        weighted += mv.value() * rho;
        weights += mv.value();
        per_ticker.insert(held.clone(), Value::String(rho.to_string()));
    }
    let rho_bar = (!weights.is_zero()).then(|| tape_events::round4(weighted / weights));
    let mut detail = object(json!({
        "rho_bar": rho_bar.map(|r| r.to_string()),
        "rho": per_ticker,
        "weight": Money::new(weights),
    }));
    match rho_bar {
        Some(rho) if rho > config.correlation_reject => {
            return run.reject(SizingStep::Correlation, RejectReason::Correlation, detail);
        }
        Some(rho) if rho > config.correlation_reduce => {
            let span = config.correlation_reject - config.correlation_reduce;
            let factor =
                tape_events::round4(Decimal::ONE - Decimal::new(5, 1) * (rho - config.correlation_reduce) / span);
            detail.insert("factor".into(), json!(factor.to_string()));
            let after = run.dollars.times(factor);
            run.record(SizingStep::Correlation, after, Value::Object(detail));
        }
        _ => run.record(SizingStep::Correlation, run.dollars, Value::Object(detail)),
    }

    // 3. sector headroom: cap − (held in the sector + open buy notional in the sector).
    let sector = sector_of(state, ticker);
    let cap = share_of(tier.max_sector_pct, pool);
    let held_in_sector: Money =
        state.positions.iter().filter(|(t, _)| sector_of(state, t) == sector).map(|(_, p)| p.value).sum();
    let open_in_sector: Money =
        open_buys(state).filter(|o| sector_of(state, &o.ticker) == sector).map(|o| open_buy_notional(state, o)).sum();
    let headroom = cap - held_in_sector - open_in_sector;
    let detail = object(json!({
        "sector": sector,
        "cap": cap,
        "held": held_in_sector,
        "open_buy_notional": open_in_sector,
        "headroom": headroom,
    }));
    if headroom <= Money::zero() {
        return run.reject(SizingStep::Sector, RejectReason::SectorCap, detail);
    }
    let after = run.dollars.min(headroom);
    run.record(SizingStep::Sector, after, Value::Object(detail));

    // 4. diversification bonus for a new sector while few are held (follows the cap).
    let held_sectors: BTreeSet<&str> = state.positions.keys().map(|t| sector_of(state, t)).collect();
    let bonus = !held_sectors.contains(sector) && held_sectors.len() < config.diversification_max_sectors as usize;
    let after = if bonus { run.dollars.times(config.diversification_bonus) } else { run.dollars };
    run.record(
        SizingStep::Diversification,
        after,
        json!({ "sector": sector, "held_sectors": held_sectors, "bonus_applied": bonus }),
    );

    // 5. earnings: reject within reject_days, halve within halve_days (calendar days, ET).
    let earnings = state.securities.get(ticker).and_then(|s| s.next_earnings_date);
    let days = earnings.map(|date| (date - request.today).num_days());
    let detail = object(json!({ "next_earnings_date": earnings, "days": days }));
    let (reject_days, halve_days) = (i64::from(config.earnings_reject_days), i64::from(config.earnings_halve_days));
    match days {
        Some(d) if (0..=reject_days).contains(&d) => {
            return run.reject(SizingStep::Earnings, RejectReason::Earnings, detail);
        }
        Some(d) if d > reject_days && d <= halve_days => {
            let after = run.dollars.times(Decimal::new(5, 1));
            run.record(SizingStep::Earnings, after, Value::Object(detail));
        }
        _ => run.record(SizingStep::Earnings, run.dollars, Value::Object(detail)),
    }

    // 6. absolute cap: available cash, position cap, max_position_dollars.
    let available = available_cash(state);
    let held_in_ticker = state.positions.get(ticker).map_or_else(Money::zero, |p| p.value);
    let position_cap = share_of(tier.max_position_pct, pool) - held_in_ticker;
    let detail = object(json!({
        "available_cash": available,
        "position_cap": position_cap,
        "held_in_ticker": held_in_ticker,
        "max_position_dollars": config.max_position_dollars,
    }));
    if available <= Money::zero() {
        return run.reject(SizingStep::AbsoluteCap, RejectReason::InsufficientCash, detail);
    }
    let after = run.dollars.min(position_cap).min(config.max_position_dollars).min(available);
    if after <= Money::zero() {
        return run.reject(SizingStep::AbsoluteCap, RejectReason::PositionCap, detail);
    }
    run.record(SizingStep::AbsoluteCap, after, Value::Object(detail));

    // 7. portfolio heat: reduce so that heat + dollars × stop_loss_pct stays within the limit.
    let current = heat(state);
    let limit = share_of(tier.max_portfolio_heat, pool);
    let added = share_of(tier.stop_loss_pct, run.dollars);
    let mut detail = object(json!({
        "heat": current,
        "limit": limit,
        "added_heat": added,
        "stop_loss_pct": tier.stop_loss_pct.to_string(),
    }));
    if current + added > limit {
        let reduced = Money::new((limit - current).value() / tier.stop_loss_pct);
        detail.insert("reduced_to".into(), json!(reduced));
        if reduced <= Money::zero() {
            return run.reject(SizingStep::PortfolioHeat, RejectReason::PortfolioHeat, detail);
        }
        run.record(SizingStep::PortfolioHeat, reduced, Value::Object(detail));
    } else {
        run.record(SizingStep::PortfolioHeat, run.dollars, Value::Object(detail));
    }

    // 8. whole shares at P.
    let price = request.price.value();
    let shares = if price > Decimal::ZERO { (run.dollars.value() / price).floor() } else { Decimal::ZERO };
    let shares = Qty(u64::try_from(shares.mantissa() / 10i128.pow(shares.scale())).unwrap_or(0));
    let detail = object(json!({ "price": request.price, "shares": shares }));
    if shares.is_zero() {
        return run.reject(SizingStep::ShareRounding, RejectReason::BelowOneShare, detail);
    }
    let amount = Money::of(shares, request.price);
    run.record(SizingStep::ShareRounding, amount, Value::Object(detail));
    Sizing { steps: run.steps, result: Ok((shares, amount)) }
}
