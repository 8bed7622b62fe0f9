//! Valuation (SPEC 2.3): market values, equity, active pool, available cash, stop
//! prices and portfolio heat. Every amount is rounded to cents where it is produced.

use rust_decimal::Decimal;
use tape_events::{Money, Price, Side};

use crate::state::{OpenOrder, Position, State};

/// The last quoted price of a ticker, if it ever had one.
#[must_use]
pub fn last_price(state: &State, ticker: &str) -> Option<Price> {
    state.quotes.get(ticker).map(|q| q.price)
}

/// The price a position is valued at: its last quote, or its average cost if it never
/// had one (SPEC 13).
#[must_use]
pub fn mark(state: &State, ticker: &str, position: &Position) -> Decimal {
    last_price(state, ticker).map_or(position.avg_cost, Price::value)
}

/// `cash + Σ market value` (each position's `value` is `qty × last price` in cents, kept
/// current by `apply`).
#[must_use]
pub fn equity(state: &State) -> Money {
    debug_assert_eq!(state.positions_value, state.positions.values().map(|p| p.value).sum::<Money>());
    state.cash + state.positions_value
}

/// `equity − reserve`.
#[must_use]
pub fn active_pool(state: &State) -> Money {
    equity(state) - state.reserve
}

/// An open buy order's notional: remaining qty × last price, rounded per order.
#[must_use]
pub fn open_buy_notional(state: &State, order: &OpenOrder) -> Money {
    let price = last_price(state, &order.ticker).map_or(Decimal::ZERO, Price::value);
    Money::new(order.remaining().decimal() * price)
}

/// The open buy orders, in placement order.
pub fn open_buys(state: &State) -> impl Iterator<Item = &OpenOrder> {
    state.open_orders.iter().filter(|o| o.side == Side::Buy)
}

/// `cash − reserve − Σ open buy notional`.
#[must_use]
pub fn available_cash(state: &State) -> Money {
    open_buys(state).fold(state.cash - state.reserve, |sum, o| sum - open_buy_notional(state, o))
}

/// `avg_cost × (1 − stop_loss_pct)` for the current tier, rounded to cents.
#[must_use]
pub fn stop_price(state: &State, position: &Position) -> Money {
    let pct = state.config.tier(state.tier).stop_loss_pct;
    Money::new(position.avg_cost * (Decimal::ONE - pct))
}

/// Portfolio heat (SPEC 4 step 7): `Σ qty × max(0, last − stop)` over positions plus
/// `Σ open buy notional × stop_loss_pct`, each term rounded to cents.
#[must_use]
pub fn heat(state: &State) -> Money {
    let pct = state.config.tier(state.tier).stop_loss_pct;
    let positions = state.positions.iter().map(|(ticker, p)| {
        let gap = (mark(state, ticker, p) - stop_price(state, p).value()).max(Decimal::ZERO);
        Money::new(p.qty.decimal() * gap)
    });
    let orders = open_buys(state).map(|o| Money::new(open_buy_notional(state, o).value() * pct));
    positions.chain(orders).sum()
}

/// `(last − avg_cost) / avg_cost`, rounded to 4 places (SPEC 13).
#[must_use]
pub fn loss_fraction(price: Decimal, avg_cost: Decimal) -> Decimal {
    if avg_cost.is_zero() {
        return Decimal::ZERO;
    }
    tape_events::round4((price - avg_cost) / avg_cost)
}

/// A threshold `base × (1 − pct)`, rounded to cents (SPEC 13).
#[must_use]
pub fn threshold(base: Money, pct: Decimal) -> Money {
    Money::new(base.value() * (Decimal::ONE - pct))
}

/// `pct × amount`, rounded to cents.
#[must_use]
pub fn share_of(pct: Decimal, amount: Money) -> Money {
    Money::new(pct * amount.value())
}
