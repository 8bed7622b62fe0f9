//! The rows of the projection tables, one struct per table (column for column, see
//! `migrations/V4__projections.sql`).

use rust_decimal::Decimal;
use serde_json::Value;
use tape_events::Timestamp;
use uuid::Uuid;

/// `trading_decisions`: one row per `TradingDecisionRecorded`, with the checks and sizing
/// steps of the same recommendation in the same step.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub recommendation_id: String,
    pub ticker: Option<String>,
    pub side: Option<String>,
    pub decision: &'static str,
    pub is_final: bool,
    pub skip_reason: Option<String>,
    pub shares: Option<u64>,
    pub dollar_amount: Option<Decimal>,
    pub price: Option<Decimal>,
    pub risk_tier: &'static str,
    pub config_hash: Option<String>,
    /// `[{"check", "passed", "detail"}, …]` in evaluation order.
    pub checks: Value,
    /// `[{"step", "dollars_before", "dollars_after", "detail"}, …]` in order.
    pub sizing: Value,
}

/// An order's life cycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrderStatus {
    Placed,
    Submitted,
    PartiallyFilled,
    Filled,
    Rejected,
    Canceled,
}

impl OrderStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Submitted => "submitted",
            Self::PartiallyFilled => "partially_filled",
            Self::Filled => "filled",
            Self::Rejected => "rejected",
            Self::Canceled => "canceled",
        }
    }

    /// The status named `text`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Placed, Self::Submitted, Self::PartiallyFilled, Self::Filled, Self::Rejected, Self::Canceled]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Whether more broker input can come for the order.
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Placed | Self::Submitted | Self::PartiallyFilled)
    }
}

/// `orders`: one row per `OrderPlaced`, kept current by the broker's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub order_id: Uuid,
    pub account_id: String,
    pub recommendation_id: Option<String>,
    pub ticker: String,
    pub side: &'static str,
    pub qty: u64,
    pub reason: &'static str,
    pub placed_at: Timestamp,
    pub placed_position: i64,
    pub broker_order_id: Option<String>,
    pub filled_qty: u64,
    /// Σ qty × price over the fills (exact).
    pub filled_notional: Decimal,
    pub status: OrderStatus,
    /// A rejection's or cancellation's reason.
    pub status_reason: Option<String>,
    pub updated_at: Timestamp,
}

/// `fills`: one row per `OrderFilled`.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRow {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub order_id: Uuid,
    pub fill_id: String,
    pub ticker: String,
    pub side: &'static str,
    pub qty: u64,
    pub price: Decimal,
}

/// `positions`: the open positions (a row is deleted when its position goes back to 0).
#[derive(Debug, Clone, PartialEq)]
pub struct PositionRow {
    pub account_id: String,
    pub ticker: String,
    pub qty: u64,
    /// 4 places, as the core's fold.
    pub avg_cost: Decimal,
    /// Realized over the open trade's life so far (cents).
    pub realized_pnl: Decimal,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `portfolio_snapshots`: one row per `PortfolioSnapshotTaken`.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub kind: &'static str,
    pub cash: Decimal,
    pub equity: Decimal,
    pub reserve: Decimal,
    pub active_pool: Decimal,
    pub positions: u32,
    pub heat: Decimal,
    pub high_water_mark: Decimal,
}

/// `reserve_pool_ledger`: one row per `ReserveTransferred`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveRow {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub kind: &'static str,
    pub amount: Decimal,
    pub balance_after: Decimal,
}

/// `circuit_breaker_trips`: one row per `CircuitBreakerTripped`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerTripRow {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub kind: &'static str,
    pub ticker: Option<String>,
    pub until: Option<Timestamp>,
}

/// A `CircuitBreakerCleared`: sets `cleared_at` on the matching trips that were still
/// active at `at` and recorded before it (same rule as the core's fold).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerClear {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub kind: &'static str,
    pub ticker: Option<String>,
}

/// `risk_tier_history`: one row per `RiskTierChanged`.
#[derive(Debug, Clone, PartialEq)]
pub struct TierRow {
    pub event_id: Uuid,
    pub position: i64,
    pub account_id: String,
    pub at: Timestamp,
    pub from_tier: &'static str,
    pub to_tier: &'static str,
    pub reason: &'static str,
}
