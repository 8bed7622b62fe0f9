//! Feeds a broker's asynchronous updates ([`Broker::take_updates`], e.g. Alpaca's
//! `trade_updates` stream and its reconciliation) to the account processors as inputs.
//! A discrepancy also raises `tape_broker_discrepancies_total`.
//!
//! An update for an account that is not running right now (restarting) waits for it a
//! bounded time and is then dropped with a warning: the account's reconciliation at its
//! next start asks the broker again, and fills are idempotent by fill id.
//!
//! [`Broker::take_updates`]: crate::broker::Broker::take_updates

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broker::BrokerUpdate;

use super::metrics as m;
use super::processor::input_now;
use super::Shared;

/// How long an update waits for its account's processor, at most.
const ROUTE_WAIT: Duration = Duration::from_secs(10);
const ROUTE_POLL: Duration = Duration::from_millis(50);

/// Runs until the broker drops its sender.
pub async fn forward(mut updates: mpsc::Receiver<BrokerUpdate>, shared: Arc<Shared>) {
    while let Some(update) = updates.recv().await {
        let account = update.account_id().to_owned();
        if matches!(update, BrokerUpdate::Discrepancy { .. }) {
            m::discrepancy(&account);
        }
        let mut route = shared.route(&account);
        let mut waited = Duration::ZERO;
        while route.is_none() && waited < ROUTE_WAIT {
            tokio::time::sleep(ROUTE_POLL).await;
            waited += ROUTE_POLL;
            route = shared.route(&account);
        }
        let Some(route) = route else {
            tracing::warn!(%account, ?update, "broker update for an account that is not running; its next start reconciles");
            continue;
        };
        let at = shared.clock.now();
        if route.send(input_now(at, update.into_event())).await.is_err() {
            tracing::warn!(%account, "the account stopped before a broker update reached it; its next start reconciles");
        }
    }
}
