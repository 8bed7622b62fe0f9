//! The paper broker's fill model (SPEC 6), shared by the built-in broker, `simulate` and
//! what-if replay: an order placed at t fills completely at the first quote for its
//! ticker with `at > t`, at `price × (1 ± slippage_bps/10000)` (+ for buys), rounded to
//! cents; the fill is processed before that quote.

use rust_decimal::Decimal;
use tape_events::{ids, Config, OrderFilled, Price, Side, Timestamp};

use crate::state::{OpenOrder, State};

/// The fill price for an order side at a quote.
#[must_use]
pub fn fill_price(quote: Price, side: Side, config: &Config) -> Price {
    let slip = config.slippage_bps / Decimal::from(10_000);
    let factor = match side {
        Side::Buy => Decimal::ONE + slip,
        Side::Sell => Decimal::ONE - slip,
    };
    Price::new(tape_events::cents(quote.value() * factor))
}

/// The fill for an open order at a quote.
#[must_use]
pub fn fill_for(order: &OpenOrder, quote: Price, config: &Config) -> OrderFilled {
    OrderFilled {
        order_id: order.order_id,
        fill_id: ids::paper_fill_id(order.order_id, order.filled.0).to_string(),
        ticker: order.ticker.clone(),
        side: order.side,
        qty: order.remaining(),
        price: fill_price(quote, order.side, config),
    }
}

/// The next fill a quote for `ticker` at `at` causes: the earliest-placed open order for
/// the ticker placed before `at`. Call it again after processing each fill.
#[must_use]
pub fn next_fill(state: &State, ticker: &str, quote: Price, at: Timestamp) -> Option<OrderFilled> {
    state
        .open_orders
        .iter()
        .find(|o| o.ticker == ticker && o.placed_at < at)
        .map(|order| fill_for(order, quote, &state.config))
}
