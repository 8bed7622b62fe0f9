//! Every event of tape (SPEC 2–7, 12, 13) and the [`Event`] enum over them.
//!
//! Each payload struct serializes to exactly the fields SPEC 12 names; the event's type
//! and `at` travel beside it (in the store's columns, or in the first two fields of a
//! `simulate --out` line). Inputs are facts from outside, recorded as observed; decisions
//! are what the core derived from them.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::config::{Config, RiskTier};
use crate::kinds::{
    AccountMode, BreakerKind, CheckName, OrderReason, Outcome, ReserveKind, Side, SizingStep, SkipReason, SnapshotKind,
    TickKind, TierChangeReason,
};
use crate::money::{Money, Price, Qty, Ratio};
use crate::time::Timestamp;

// ----------------------------------------------------------------------------------------
// Inputs
// ----------------------------------------------------------------------------------------

/// Opens the account: cash, high-water mark and day-start equity become `initial_cash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountOpened {
    pub account_id: String,
    pub initial_cash: Money,
    pub mode: AccountMode,
}

/// The decision configuration in force from now on, with its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigActivated {
    /// Boxed: a configuration is large, and every `Event` is as large as its largest variant.
    pub config: Box<Config>,
    pub hash: String,
}

/// Reference data for a ticker. `sector: None` is sector `UNKNOWN`;
/// `next_earnings_date: None` means unknown and clears a stored date (SPEC 13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityUpdated {
    pub ticker: String,
    pub sector: Option<String>,
    pub next_earnings_date: Option<NaiveDate>,
}

/// A daily bar, known only after its day. Only `close` affects decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyBarObserved {
    pub ticker: String,
    pub date: NaiveDate,
    pub close: Price,
}

/// A last-trade quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteObserved {
    pub ticker: String,
    pub price: Price,
}

/// A recommendation as captured, every field as received: validation (SPEC 4 step 0) is
/// a decision, so a malformed row is recorded and rejected, never dropped. Non-string
/// values are kept as their JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationReceived {
    pub recommendation_id: String,
    pub ticker: Option<String>,
    pub action: Option<String>,
    pub confidence: Option<String>,
    pub mode: Option<String>,
    pub generated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A scheduler tick (SPEC 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerTick {
    pub tick: TickKind,
}

/// The broker accepted an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSubmitted {
    pub order_id: Uuid,
    pub broker_order_id: String,
}

/// A (possibly partial) fill. Idempotent by `fill_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderFilled {
    pub order_id: Uuid,
    pub fill_id: String,
    pub ticker: String,
    pub side: Side,
    pub qty: Qty,
    pub price: Price,
}

/// The broker refused an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub reason: String,
}

/// The order ended without (further) fills: canceled or expired at the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderCanceled {
    pub order_id: Uuid,
    pub reason: String,
}

/// Operator: clear matching active breakers (`tape breaker reset`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerResetRequested {
    pub kind: BreakerKind,
    #[serde(default)]
    pub ticker: Option<String>,
    pub actor: String,
    pub reason: String,
}

/// Operator: move money out of the reserve (`tape reserve release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveReleaseRequested {
    pub amount: Money,
    pub actor: String,
    pub reason: String,
}

/// The broker and our log disagree in a way reconciliation cannot explain. Recorded
/// so that an operator sees it; it never books a synthetic fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerDiscrepancyObserved {
    pub order_id: Option<Uuid>,
    pub broker_order_id: Option<String>,
    pub description: String,
}

// ----------------------------------------------------------------------------------------
// Decisions
// ----------------------------------------------------------------------------------------

/// One of checks a–f, passed or not; `detail` holds the values it compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreTradeCheckEvaluated {
    pub recommendation_id: String,
    pub check: CheckName,
    pub passed: bool,
    pub detail: Value,
}

impl PreTradeCheckEvaluated {
    /// The recommendation this check consumed: a passed dedupe check (SPEC 4 check d)
    /// marks its id as used, so a redelivery is a duplicate.
    #[must_use]
    pub fn consumed(&self) -> Option<&str> {
        (self.check == CheckName::Dedupe && self.passed).then_some(self.recommendation_id.as_str())
    }
}

/// One sizing step with the dollar amount before and after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingStepApplied {
    pub recommendation_id: String,
    pub step: SizingStep,
    pub dollars_before: Money,
    pub dollars_after: Money,
    pub detail: Value,
}

/// The outcome of one evaluation of a recommendation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingDecisionRecorded {
    pub recommendation_id: String,
    /// Echoed as received (it may be invalid).
    pub ticker: Option<String>,
    /// The action as received (`buy`, `sell`, or the invalid text).
    pub side: Option<String>,
    pub decision: Outcome,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub skip_reason: Option<SkipReason>,
    pub shares: Option<Qty>,
    pub dollar_amount: Option<Money>,
    pub price: Option<Price>,
    pub risk_tier: RiskTier,
}

/// A market order, whole shares, day time in force. `order_id` is the broker's
/// `client_order_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub recommendation_id: Option<String>,
    pub ticker: String,
    pub side: Side,
    pub qty: Qty,
    pub reason: OrderReason,
}

/// A position went back to zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeClosed {
    pub ticker: String,
    pub qty: Qty,
    pub entry_price: Ratio,
    pub exit_price: Ratio,
    pub realized_pnl: Money,
    pub opened_at: Timestamp,
    pub closed_at: Timestamp,
}

/// A quote reached a position's stop price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopLossTriggered {
    pub ticker: String,
    pub price: Price,
    pub stop_price: Money,
    pub qty: Qty,
}

/// A breaker tripped; it is active while `now < until` (`until: None` never expires).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerTripped {
    pub kind: BreakerKind,
    pub ticker: Option<String>,
    pub until: Option<Timestamp>,
}

/// An operator's reset cleared a breaker. Clearing `emergency` re-bases the
/// high-water mark to the current equity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerCleared {
    pub kind: BreakerKind,
    pub ticker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_water_mark: Option<Money>,
}

/// Money moved into (or, for `manual_release`, out of) the reserve pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveTransferred {
    pub kind: ReserveKind,
    pub amount: Money,
    pub balance_after: Money,
}

/// The portfolio's valuation at a snapshot or close tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortfolioSnapshotTaken {
    pub kind: SnapshotKind,
    pub cash: Money,
    pub equity: Money,
    pub reserve: Money,
    pub active_pool: Money,
    pub positions: u32,
    pub heat: Money,
    pub high_water_mark: Money,
}

/// The risk tier controller's reading (SPEC 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceEvaluated {
    pub sharpe: Option<Ratio>,
    pub max_drawdown: Option<Ratio>,
    pub win_rate: Option<Ratio>,
    pub closed_trades: u32,
    pub reason: Option<String>,
}

/// The risk tier moved one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskTierChanged {
    pub from: RiskTier,
    pub to: RiskTier,
    pub reason: TierChangeReason,
}

/// Inputs or decisions: SPEC 2.2's two classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    Input,
    Decision,
}

/// A payload that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event type {event_type} has no schema version {version} (newest is {newest})")]
    UnknownVersion { event_type: String, version: i32, newest: i32 },
    #[error("{event_type} v{version} payload does not parse: {source}")]
    Payload {
        event_type: String,
        version: i32,
        #[source]
        source: serde_json::Error,
    },
    #[error("upcasting {event_type} from v{from}: {message}")]
    Upcast { event_type: String, from: i32, message: String },
}

macro_rules! events {
    ($($class:ident $variant:ident = $version:literal),+ $(,)?) => {
        /// Every event of tape.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Event {
            $($variant($variant)),+
        }

        $(
            impl From<$variant> for Event {
                fn from(payload: $variant) -> Self {
                    Self::$variant(payload)
                }
            }
        )+

        impl Event {
            /// Every event type name.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The type name (the `type` field / column).
            #[must_use]
            pub const fn event_type(&self) -> &'static str {
                match self { $(Self::$variant(_) => stringify!($variant)),+ }
            }

            /// Input or decision.
            #[must_use]
            pub const fn class(&self) -> EventClass {
                match self { $(Self::$variant(_) => EventClass::$class),+ }
            }

            /// The schema version this code writes for an event type.
            #[must_use]
            pub fn current_version(event_type: &str) -> Option<i32> {
                match event_type { $(stringify!($variant) => Some($version),)+ _ => None }
            }

            /// The class of an event type, by name.
            #[must_use]
            pub fn class_of(event_type: &str) -> Option<EventClass> {
                match event_type { $(stringify!($variant) => Some(EventClass::$class),)+ _ => None }
            }

            /// The schema version of this event as written now.
            #[must_use]
            pub fn schema_version(&self) -> i32 {
                match self { $(Self::$variant(_) => $version),+ }
            }

            /// Appends the payload's JSON (an object, fields in declaration order) to `out`.
            ///
            /// # Panics
            /// Never for these types (their `Serialize` cannot fail): `Invariant:`.
            pub fn write_payload(&self, out: &mut Vec<u8>) {
                let result = match self { $(Self::$variant(p) => serde_json::to_writer(&mut *out, p)),+ };
                result.unwrap_or_else(|e| panic!("Invariant: payload serializes: {e}"));
            }

            /// The payload as a JSON value (for the store's `jsonb` column and hashing).
            ///
            /// # Panics
            /// Never for these types: `Invariant:`.
            #[must_use]
            pub fn payload_value(&self) -> Value {
                let result = match self { $(Self::$variant(p) => serde_json::to_value(p)),+ };
                result.unwrap_or_else(|e| panic!("Invariant: payload serializes: {e}"))
            }

            /// Reads a payload of the current schema version.
            ///
            /// # Errors
            /// [`DecodeError`] for an unknown type or a payload that does not parse.
            pub fn from_current_payload(event_type: &str, payload: &Value) -> Result<Self, DecodeError> {
                let parse_error = |source| DecodeError::Payload {
                    event_type: event_type.to_owned(),
                    version: Self::current_version(event_type).unwrap_or(0),
                    source,
                };
                match event_type {
                    $(stringify!($variant) => <$variant as serde::Deserialize>::deserialize(payload)
                        .map(Self::$variant)
                        .map_err(parse_error),)+
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }
    };
}

events! {
    Input AccountOpened = 1,
    Input ConfigActivated = 1,
    Input SecurityUpdated = 2,
    Input DailyBarObserved = 1,
    Input QuoteObserved = 1,
    Input RecommendationReceived = 1,
    Input SchedulerTick = 1,
    Input OrderSubmitted = 1,
    Input OrderFilled = 1,
    Input OrderRejected = 1,
    Input OrderCanceled = 1,
    Input BreakerResetRequested = 1,
    Input ReserveReleaseRequested = 1,
    Input BrokerDiscrepancyObserved = 1,
    Decision PreTradeCheckEvaluated = 1,
    Decision SizingStepApplied = 1,
    Decision TradingDecisionRecorded = 1,
    Decision OrderPlaced = 1,
    Decision TradeClosed = 1,
    Decision StopLossTriggered = 1,
    Decision CircuitBreakerTripped = 1,
    Decision CircuitBreakerCleared = 1,
    Decision ReserveTransferred = 1,
    Decision PortfolioSnapshotTaken = 1,
    Decision PerformanceEvaluated = 1,
    Decision RiskTierChanged = 1,
}

impl Event {
    /// Whether this is an input (a fact from outside).
    #[must_use]
    pub fn is_input(&self) -> bool {
        self.class() == EventClass::Input
    }

    /// The recommendation an event is about, if any.
    #[must_use]
    pub fn recommendation_id(&self) -> Option<&str> {
        match self {
            Self::RecommendationReceived(e) => Some(&e.recommendation_id),
            Self::PreTradeCheckEvaluated(e) => Some(&e.recommendation_id),
            Self::SizingStepApplied(e) => Some(&e.recommendation_id),
            Self::TradingDecisionRecorded(e) => Some(&e.recommendation_id),
            Self::OrderPlaced(e) => e.recommendation_id.as_deref(),
            _ => None,
        }
    }

    /// The ticker an event is about, if any.
    #[must_use]
    pub fn ticker(&self) -> Option<&str> {
        match self {
            Self::SecurityUpdated(e) => Some(&e.ticker),
            Self::DailyBarObserved(e) => Some(&e.ticker),
            Self::QuoteObserved(e) => Some(&e.ticker),
            Self::RecommendationReceived(e) => e.ticker.as_deref(),
            Self::OrderFilled(e) => Some(&e.ticker),
            Self::TradingDecisionRecorded(e) => e.ticker.as_deref(),
            Self::OrderPlaced(e) => Some(&e.ticker),
            Self::TradeClosed(e) => Some(&e.ticker),
            Self::StopLossTriggered(e) => Some(&e.ticker),
            Self::CircuitBreakerTripped(e) => e.ticker.as_deref(),
            Self::CircuitBreakerCleared(e) => e.ticker.as_deref(),
            Self::BreakerResetRequested(e) => e.ticker.as_deref(),
            _ => None,
        }
    }
}

/// An event with its time: the unit the core consumes and produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub at: Timestamp,
    pub event: Event,
}

impl Stamped {
    #[must_use]
    pub fn new(at: Timestamp, event: impl Into<Event>) -> Self {
        Self { at, event: event.into() }
    }

    /// Appends this event as one `simulate --out` line (without the newline):
    /// `{"type":…,"at":…,<payload fields>}`.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(self.event.event_type().as_bytes());
        out.extend_from_slice(b"\",\"at\":\"");
        out.extend_from_slice(&self.at.to_canonical_bytes());
        out.push(b'"');
        let start = out.len();
        self.event.write_payload(out);
        // The payload is an object `{…}`: splice its fields after ours.
        if out.len() - start > 2 {
            out[start] = b',';
        } else {
            out.truncate(start);
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_puts_type_and_at_first() {
        let at = Timestamp::parse("2024-03-04T14:35:00Z").unwrap();
        let quote = Stamped::new(at, QuoteObserved { ticker: "AAA".into(), price: "100.00".parse().unwrap() });
        let mut out = Vec::new();
        quote.write_json_line(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"QuoteObserved","at":"2024-03-04T14:35:00.000000Z","ticker":"AAA","price":"100.00"}"#
        );
    }

    #[test]
    fn every_type_has_a_version_and_a_class() {
        for name in Event::TYPES {
            assert!(Event::current_version(name).is_some());
            assert!(Event::class_of(name).is_some());
        }
    }
}
