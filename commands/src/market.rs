//! Market events (SPEC 5, 6): stop-losses and circuit breakers on quotes, trade closes
//! and profit siphons on fills, and the valuation checks after both.

use rust_decimal::Decimal;
use tape_events::{
    BreakerKind, CircuitBreakerTripped, Event, Money, OrderPlaced, OrderReason, QuoteObserved, ReserveKind,
    ReserveTransferred, Side, StopLossTriggered, TradeClosed,
};
use uuid::Uuid;

use crate::calendar::exchange_date;
use crate::recorder::Recorder;
use crate::valuation::{active_pool, equity, loss_fraction, share_of, stop_price};

fn hours(h: u32) -> chrono::Duration {
    chrono::Duration::hours(i64::from(h))
}

fn sell(ticker: &str, qty: tape_events::Qty, reason: OrderReason) -> Event {
    Event::OrderPlaced(OrderPlaced {
        order_id: Uuid::nil(),
        recommendation_id: None,
        ticker: ticker.to_owned(),
        side: Side::Sell,
        qty,
        reason,
    })
}

fn breaker_active(r: &Recorder<'_>, kind: BreakerKind, ticker: Option<&str>) -> bool {
    r.state.breakers.iter().any(|b| b.kind == kind && b.ticker.as_deref() == ticker && b.is_active(r.at))
}

/// After a quote was applied: single_position, stop-loss and volatility for a held
/// ticker, then the valuation checks.
pub fn on_quote(r: &mut Recorder<'_>, quote: &QuoteObserved) {
    let ticker = quote.ticker.as_str();
    if let Some(position) = r.state.positions.get(ticker) {
        let (qty, avg_cost) = (position.qty, position.avg_cost);
        let stop = stop_price(r.state, position);
        let config = r.state.config.clone();
        let price = quote.price.value();
        let mut tripped = false;
        if loss_fraction(price, avg_cost) < -config.single_position_loss_pct
            && !breaker_active(r, BreakerKind::SinglePosition, Some(ticker))
        {
            r.emit(Event::CircuitBreakerTripped(CircuitBreakerTripped {
                kind: BreakerKind::SinglePosition,
                ticker: Some(ticker.to_owned()),
                until: Some(r.at.plus(hours(config.ticker_cooldown_hours))),
            }));
            tripped = true;
            if !r.state.has_open_order(ticker, Side::Sell) {
                r.emit(sell(ticker, qty, OrderReason::Breaker));
            }
        }
        if !tripped && price <= stop.value() && !r.state.has_open_order(ticker, Side::Sell) {
            r.emit(Event::StopLossTriggered(StopLossTriggered {
                ticker: ticker.to_owned(),
                price: quote.price,
                stop_price: stop,
                qty,
            }));
            r.emit(sell(ticker, qty, OrderReason::StopLoss));
            let horizon = r.at.minus(config.volatility_window.chrono());
            let recent = r.state.stop_loss_times.iter().filter(|t| **t >= horizon).count();
            if recent >= config.volatility_stop_losses as usize && !breaker_active(r, BreakerKind::Volatility, None) {
                r.emit(Event::CircuitBreakerTripped(CircuitBreakerTripped {
                    kind: BreakerKind::Volatility,
                    ticker: None,
                    until: Some(r.at.plus(hours(config.volatility_pause_hours))),
                }));
            }
        }
    }
    valuation_checks(r);
}

/// After a fill was applied: `TradeClosed` and the profit siphon when it closed a
/// position, then the valuation checks.
pub fn on_fill(r: &mut Recorder<'_>) {
    if let Some(closing) = r.state.closing.clone() {
        let p = &closing.position;
        let exit = if p.sold_qty.is_zero() { Decimal::ZERO } else { p.sold_notional / p.sold_qty.decimal() };
        let pnl = p.realized;
        r.emit(Event::TradeClosed(TradeClosed {
            ticker: closing.ticker.clone(),
            qty: p.sold_qty,
            entry_price: tape_events::Ratio::new(p.avg_cost),
            exit_price: tape_events::Ratio::new(exit),
            realized_pnl: pnl,
            opened_at: p.opened_at,
            closed_at: closing.closed_at,
        }));
        if pnl > Money::zero() {
            let amount = share_of(r.state.config.profit_siphon_pct, pnl);
            let balance_after = r.state.reserve + amount;
            r.emit(Event::ReserveTransferred(ReserveTransferred {
                kind: ReserveKind::ProfitSiphon,
                amount,
                balance_after,
            }));
        }
    }
    valuation_checks(r);
}

/// daily_loss, then emergency (SPEC 5 steps 3–4, SPEC 13's order).
pub fn valuation_checks(r: &mut Recorder<'_>) {
    let now_equity = equity(r.state);
    if now_equity >= r.state.daily_loss_floor && now_equity >= r.state.emergency_floor {
        return;
    }
    let config = r.state.config.clone();
    let today = exchange_date(r.at);
    if now_equity < r.state.daily_loss_floor && r.state.daily_loss_tripped_on != Some(today) {
        r.emit(Event::CircuitBreakerTripped(CircuitBreakerTripped {
            kind: BreakerKind::DailyLoss,
            ticker: None,
            until: Some(r.at.plus(hours(config.volatility_pause_hours))),
        }));
    }
    if now_equity < r.state.emergency_floor && !breaker_active(r, BreakerKind::Emergency, None) {
        r.emit(Event::CircuitBreakerTripped(CircuitBreakerTripped {
            kind: BreakerKind::Emergency,
            ticker: None,
            until: None,
        }));
        let to_sell: Vec<(String, tape_events::Qty)> = r
            .state
            .positions
            .iter()
            .filter(|(t, _)| !r.state.has_open_order(t, Side::Sell))
            .map(|(t, p)| (t.clone(), p.qty))
            .collect();
        for (ticker, qty) in to_sell {
            r.emit(sell(&ticker, qty, OrderReason::Liquidation));
        }
        let amount = share_of(config.emergency_reserve_pct, active_pool(r.state));
        if amount > Money::zero() {
            let balance_after = r.state.reserve + amount;
            r.emit(Event::ReserveTransferred(ReserveTransferred {
                kind: ReserveKind::EmergencyLiquidation,
                amount,
                balance_after,
            }));
        }
    }
}
