//! The built-in paper broker (SPEC 6): accepts every order at once (`OrderSubmitted`
//! with broker order id `paper-{order_id}`), and fills by the paper fill model, which the
//! account's processor applies before each quote (`commands::paper`). It keeps the orders
//! it accepted in memory, so a repeated submit or a lookup answers the same.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Broker, BrokerError, BrokerOrder, BrokerStatus, BrokerUpdate, OrderJob};

/// The paper broker.
#[derive(Debug, Default)]
pub struct PaperBroker {
    accepted: Mutex<BTreeMap<Uuid, BrokerOrder>>,
}

impl PaperBroker {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The broker order id the paper broker gives an order.
    #[must_use]
    pub fn broker_order_id(order_id: Uuid) -> String {
        format!("paper-{order_id}")
    }

    fn accepted(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, BrokerOrder>> {
        self.accepted.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Broker for PaperBroker {
    fn name(&self) -> &'static str {
        "paper"
    }

    fn fills_on_quotes(&self) -> bool {
        true
    }

    fn submit<'a>(&'a self, job: &'a OrderJob) -> BoxFuture<'a, Result<BrokerOrder, BrokerError>> {
        let order = self
            .accepted()
            .entry(job.order_id)
            .or_insert_with(|| BrokerOrder {
                client_order_id: job.order_id,
                broker_order_id: Self::broker_order_id(job.order_id),
                status: BrokerStatus::Accepted,
            })
            .clone();
        Box::pin(async move { Ok(order) })
    }

    fn lookup(&self, client_order_id: Uuid) -> BoxFuture<'_, Result<Option<BrokerOrder>, BrokerError>> {
        let order = self.accepted().get(&client_order_id).cloned();
        Box::pin(async move { Ok(order) })
    }

    fn open_orders(&self) -> BoxFuture<'_, Result<Vec<BrokerOrder>, BrokerError>> {
        // Paper fills live in the log; the paper broker holds nothing open of its own.
        Box::pin(async { Ok(Vec::new()) })
    }

    fn take_updates(&self) -> Option<mpsc::Receiver<BrokerUpdate>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tape_events::{OrderReason, Qty, Side};

    #[tokio::test]
    async fn a_repeated_submit_answers_the_same_order() {
        let broker = PaperBroker::new();
        let job = OrderJob {
            order_id: Uuid::from_u128(7),
            account_id: "a".into(),
            recommendation_id: Some("r-1".into()),
            ticker: "AAPL".into(),
            action: Side::Buy,
            side: Side::Buy,
            quantity: Qty(3),
            order_type: "market".into(),
            reason: OrderReason::Entry,
        };
        let first = broker.submit(&job).await.unwrap();
        let second = broker.submit(&job).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.broker_order_id, format!("paper-{}", job.order_id));
        assert_eq!(broker.lookup(job.order_id).await.unwrap(), Some(first));
        assert_eq!(broker.lookup(Uuid::from_u128(8)).await.unwrap(), None);
    }
}
