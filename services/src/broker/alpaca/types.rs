//! The JSON shapes of Alpaca's published APIs that the adapter reads and writes: the
//! Trading API v2 order object and its error body, `POST /v2/orders`, the `FILL` account
//! activity, the `trade_updates` stream messages, and market data v2 latest trades.
//!
//! Only the fields the adapter uses are declared; unknown fields are ignored, so a new
//! field at Alpaca never breaks parsing. Quantities and prices of the Trading API are
//! strings (`"10"`, `"179.08"`) and are parsed where they are mapped ([`super::mapping`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tape_events::Price;

/// An order as `GET/POST /v2/orders…` and the `trade_updates` stream return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Alpaca's order id (a UUID string).
    pub id: String,
    pub client_order_id: String,
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Shares ordered (absent for notional orders, which tape never places).
    #[serde(default)]
    pub qty: Option<String>,
    /// Shares filled so far (cumulative).
    #[serde(default = "zero")]
    pub filled_qty: String,
    #[serde(default)]
    pub filled_avg_price: Option<String>,
    /// `new`, `accepted`, `pending_new`, `partially_filled`, `filled`, `canceled`, …
    pub status: String,
    #[serde(rename = "type", default)]
    pub order_type: Option<String>,
    #[serde(default)]
    pub time_in_force: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub submitted_at: Option<String>,
}

fn zero() -> String {
    "0".to_owned()
}

/// The body of `POST /v2/orders` for a market order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub symbol: String,
    pub qty: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub time_in_force: String,
    pub client_order_id: String,
}

/// An error body: `{"code": 40010001, "message": "client_order_id must be unique"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: u64,
    #[serde(default)]
    pub message: String,
}

/// Alpaca's code for a request that is not valid (a duplicate `client_order_id` among them).
pub const CODE_INVALID_REQUEST: u64 = 40_010_001;

/// One `FILL` activity of `GET /v2/account/activities/FILL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillActivity {
    /// `{time}::{uuid}`; also the page token of the next page.
    pub id: String,
    #[serde(default)]
    pub activity_type: Option<String>,
    #[serde(default)]
    pub transaction_time: Option<String>,
    /// `fill` or `partial_fill`.
    #[serde(rename = "type", default)]
    pub fill_type: Option<String>,
    pub price: String,
    pub qty: String,
    pub side: String,
    pub symbol: String,
    #[serde(default)]
    pub leaves_qty: Option<String>,
    /// Alpaca's order id.
    pub order_id: String,
    /// Shares filled on the order after this fill.
    pub cum_qty: String,
    #[serde(default)]
    pub order_status: Option<String>,
}

/// A message of the trading stream (`wss://…/stream`): `{"stream": …, "data": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMessage {
    pub stream: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// `data` of an `authorization` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    #[serde(default)]
    pub action: Option<String>,
    /// `authorized` or `unauthorized`.
    pub status: String,
}

/// `data` of a `trade_updates` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeUpdate {
    /// `new`, `fill`, `partial_fill`, `canceled`, `expired`, `done_for_day`, `replaced`,
    /// `rejected`, `pending_new`, `stopped`, `pending_cancel`, `pending_replace`,
    /// `calculated`, `suspended`, `order_replace_rejected`, `order_cancel_rejected`, …
    pub event: String,
    /// Present on executions (`fill`, `partial_fill`): the execution's stable id.
    #[serde(default)]
    pub execution_id: Option<String>,
    pub order: Order,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// This execution's price (fills only).
    #[serde(default)]
    pub price: Option<String>,
    /// This execution's shares (fills only).
    #[serde(default)]
    pub qty: Option<String>,
    #[serde(default)]
    pub position_qty: Option<String>,
}

/// The body of market data v2 `GET /v2/stocks/trades/latest?symbols=…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestTrades {
    #[serde(default)]
    pub trades: BTreeMap<String, Trade>,
}

/// One trade of market data v2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// RFC 3339 with nanoseconds.
    pub t: String,
    /// Price (a JSON number).
    pub p: Price,
    /// Size.
    #[serde(default)]
    pub s: Option<u64>,
}
