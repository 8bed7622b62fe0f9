//! Brokers behind one trait: the built-in paper broker and Alpaca (a real asynchronous
//! broker, [`alpaca`]).
//!
//! The order job (SPEC 8) travels from the outbox relay through Redis to the broker
//! adapter ([`crate::daemon`]), which calls [`Broker::submit`] with our order id as the
//! broker's `client_order_id`: submitting the same job twice is harmless, the broker
//! answers with the order it already has. Acknowledgements, fills, cancels and rejects
//! come back as [`BrokerUpdate`]s and become inputs of the account's processor.
//!
//! Two kinds of fill source:
//! - a **synchronous fill model** ([`Broker::fills_on_quotes`]): the paper broker fills
//!   an order at the first quote for its ticker after it was placed, *before* that
//!   quote (SPEC 6). Only the account's processor knows that order of events, so it
//!   asks `commands::paper::next_fill` just before stepping each quote, exactly as
//!   `simulate` does; the broker itself never reports those fills;
//! - an **update stream** ([`Broker::take_updates`]): a real broker reports fills when
//!   they happen; the adapter turns them into inputs (idempotent by fill id).
//!
//! On start the adapter reconciles: each open order of the log is looked up by
//! `client_order_id` ([`Broker::lookup`]), and [`Broker::open_orders`] lists what the
//! broker has open.

pub mod alpaca;
pub mod paper;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tape_events::{OrderReason, Price, Qty, Side};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use paper::PaperBroker;

/// The order job on `{prefix}:queue:broker_orders` (SPEC 8): the seed's job shape plus ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderJob {
    pub order_id: Uuid,
    pub account_id: String,
    pub recommendation_id: Option<String>,
    pub ticker: String,
    /// `buy` or `sell` (the seed's field).
    pub action: Side,
    pub side: Side,
    pub quantity: Qty,
    /// Always `market`.
    pub order_type: String,
    pub reason: OrderReason,
}

impl OrderJob {
    /// The job for a committed `OrderPlaced`.
    #[must_use]
    pub fn from_placed(account_id: &str, placed: &tape_events::OrderPlaced) -> Self {
        Self {
            order_id: placed.order_id,
            account_id: account_id.to_owned(),
            recommendation_id: placed.recommendation_id.clone(),
            ticker: placed.ticker.clone(),
            action: placed.side,
            side: placed.side,
            quantity: placed.qty,
            order_type: "market".to_owned(),
            reason: placed.reason,
        }
    }

    /// The job of an order still open in the account's state (reconciliation).
    #[must_use]
    pub fn from_open(account_id: &str, order: &tape_commands::state::OpenOrder) -> Self {
        Self {
            order_id: order.order_id,
            account_id: account_id.to_owned(),
            recommendation_id: order.recommendation_id.clone(),
            ticker: order.ticker.clone(),
            action: order.side,
            side: order.side,
            quantity: order.qty,
            order_type: "market".to_owned(),
            reason: order.reason,
        }
    }
}

/// Where an order stands at the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerStatus {
    Accepted,
    PartiallyFilled,
    Filled,
    Canceled,
    Rejected,
}

/// An order as the broker knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerOrder {
    pub client_order_id: Uuid,
    pub broker_order_id: String,
    pub status: BrokerStatus,
}

/// Something the broker reports about one of our orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerUpdate {
    Accepted {
        account_id: String,
        order_id: Uuid,
        broker_order_id: String,
    },
    Filled {
        account_id: String,
        order_id: Uuid,
        fill_id: String,
        ticker: String,
        side: Side,
        qty: Qty,
        price: Price,
    },
    Canceled {
        account_id: String,
        order_id: Uuid,
        reason: String,
    },
    Rejected {
        account_id: String,
        order_id: Uuid,
        reason: String,
    },
    /// A difference between the broker and the log that cannot be explained (recorded as
    /// `BrokerDiscrepancyObserved`, never booked).
    Discrepancy {
        account_id: String,
        order_id: Option<Uuid>,
        broker_order_id: Option<String>,
        description: String,
    },
}

impl BrokerUpdate {
    #[must_use]
    pub fn account_id(&self) -> &str {
        match self {
            Self::Accepted { account_id, .. }
            | Self::Filled { account_id, .. }
            | Self::Canceled { account_id, .. }
            | Self::Rejected { account_id, .. }
            | Self::Discrepancy { account_id, .. } => account_id,
        }
    }

    /// The input this update is.
    #[must_use]
    pub fn into_event(self) -> tape_events::Event {
        use tape_events::{BrokerDiscrepancyObserved, OrderCanceled, OrderFilled, OrderRejected, OrderSubmitted};
        match self {
            Self::Accepted { order_id, broker_order_id, .. } => OrderSubmitted { order_id, broker_order_id }.into(),
            Self::Filled { order_id, fill_id, ticker, side, qty, price, .. } => {
                OrderFilled { order_id, fill_id, ticker, side, qty, price }.into()
            }
            Self::Canceled { order_id, reason, .. } => OrderCanceled { order_id, reason }.into(),
            Self::Rejected { order_id, reason, .. } => OrderRejected { order_id, reason }.into(),
            Self::Discrepancy { order_id, broker_order_id, description, .. } => {
                BrokerDiscrepancyObserved { order_id, broker_order_id, description }.into()
            }
        }
    }
}

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Try again later (network, rate limit, broker down).
    #[error("broker {broker} unavailable: {message}")]
    Unavailable { broker: &'static str, message: String },
    /// The broker refused the order for good.
    #[error("broker {broker} refused order {order_id}: {reason}")]
    Refused { broker: &'static str, order_id: Uuid, reason: String },
}

/// A broker.
pub trait Broker: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and metrics (`paper`, `alpaca`).
    fn name(&self) -> &'static str;

    /// Whether fills come from the paper fill model at each quote (the processor makes
    /// them) rather than from [`Broker::take_updates`].
    fn fills_on_quotes(&self) -> bool;

    /// Submits a market order with `client_order_id = job.order_id`. Idempotent: a repeat
    /// returns the order the broker already has.
    fn submit<'a>(&'a self, job: &'a OrderJob) -> BoxFuture<'a, Result<BrokerOrder, BrokerError>>;

    /// The order with this `client_order_id`, if the broker has it.
    fn lookup(&self, client_order_id: Uuid) -> BoxFuture<'_, Result<Option<BrokerOrder>, BrokerError>>;

    /// Every order the broker has open (for reconciliation).
    fn open_orders(&self) -> BoxFuture<'_, Result<Vec<BrokerOrder>, BrokerError>>;

    /// The stream of asynchronous updates (taken once); `None` for a broker without one.
    fn take_updates(&self) -> Option<mpsc::Receiver<BrokerUpdate>>;

    /// Reconciles the open orders of an account's log with the broker, reporting every
    /// difference through [`Broker::take_updates`] (missed acknowledgements and fills,
    /// endings, discrepancies) and submitting what the broker never got. `None` (the
    /// default): the broker leaves reconciliation to the daemon's generic pass
    /// (look up and submit orders without a broker order id).
    fn reconcile<'a>(
        &'a self,
        _account_id: &'a str,
        _open: &'a [tape_commands::state::OpenOrder],
    ) -> Option<BoxFuture<'a, ()>> {
        None
    }
}
