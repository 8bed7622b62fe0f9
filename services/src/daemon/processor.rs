//! The one ordered processor per account: owns the [`AccountLedger`], takes messages
//! from the account's bounded queue, and steps them through the core in arrival order.
//!
//! - When the queue is deep it takes up to `max_batch_inputs` messages and appends all
//!   their whole steps in one transaction.
//! - Before each input it runs the scheduler ticks due by the input's time (one
//!   [`TickCursor`], as `simulate` does) and, with the paper broker, the paper fills of
//!   a quote before that quote (`commands::paper::next_fill`).
//! - Inputs are stamped in arrival order: `at` never goes backwards in the stream.
//! - A batch that fails to commit is retried (same inputs, capped backoff) until it
//!   commits: while PostgreSQL is away nothing new is decided (fail closed).

#![allow(clippy::disallowed_methods)] // input ids are minted here (UUIDv7)

use std::sync::Arc;
use std::time::Duration;

use tape_commands::engine::tick_input;
use tape_commands::schedule::TickCursor;
use tape_commands::{paper, Input, State};
use tape_events::{BrokerDiscrepancyObserved, Event, Stamped, Timestamp};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

use crate::ledger::{AccountLedger, LedgerError, Prelude, Submitted};
use crate::store::AppendError;

use super::metrics as m;
use super::Shared;

/// A message for an account's processor.
#[derive(Debug, Clone)]
pub enum Msg {
    /// An input (its `at` is raised to keep the stream's time order).
    Input(Input),
    /// Run the ticks due by this time (the schedulers' wake-ups).
    Advance(Timestamp),
}

/// A new input id (UUIDv7).
#[must_use]
pub fn new_input_id() -> Uuid {
    Uuid::now_v7()
}

/// An input stamped now.
#[must_use]
pub fn input_now(at: Timestamp, event: impl Into<Event>) -> Msg {
    Msg::Input(Input { id: new_input_id(), stamped: Stamped::new(at, event) })
}

/// What comes before each input: due ticks, then paper fills before a quote.
#[derive(Debug, Clone)]
pub struct Plan {
    cursor: Option<TickCursor>,
    config_hash: String,
    paper: bool,
}

impl Plan {
    /// A plan whose ticks run strictly after `done_through` (the stream's last `at`).
    #[must_use]
    pub fn new(done_through: Option<Timestamp>, state: &State, paper: bool) -> Self {
        let opened = state.account.as_ref().map(|a| a.opened_at);
        let from = match (done_through, opened) {
            (Some(d), Some(o)) => Some(d.max(o)),
            (d, o) => d.or(o),
        };
        Self { cursor: from.map(TickCursor::after), config_hash: state.config_hash.clone(), paper }
    }
}

impl Prelude for Plan {
    fn before(&mut self, state: &State, at: Timestamp, next: Option<&Input>) -> Option<Input> {
        let opened_at = state.account.as_ref()?.opened_at;
        if self.cursor.is_none() || self.config_hash != state.config_hash {
            // The day's schedule is cached in the cursor: rebuild it when the config
            // (its holidays) changes (docs/decisions.md 24).
            let from = self.cursor.as_ref().map_or(opened_at, TickCursor::done_through).max(opened_at);
            self.cursor = Some(TickCursor::after(from));
            self.config_hash.clone_from(&state.config_hash);
        }
        let cursor = self.cursor.as_mut()?;
        if let Some(tick) = cursor.next_due(at, state.has_pending(), &state.config) {
            return Some(tick_input(new_input_id(), tick.at, tick.kind));
        }
        if self.paper {
            if let Some(Event::QuoteObserved(quote)) = next.map(|i| &i.stamped.event) {
                if let Some(fill) = paper::next_fill(state, &quote.ticker, quote.price, at) {
                    return Some(Input { id: new_input_id(), stamped: Stamped::new(at, fill) });
                }
            }
        }
        cursor.advance_to(at);
        None
    }
}

/// The processor of one account.
pub struct Processor {
    pub account: String,
    pub ledger: AccountLedger,
    pub plan: Plan,
    pub receiver: mpsc::Receiver<Msg>,
    pub shared: Arc<Shared>,
    /// Woken after a commit that placed an order.
    pub outbox: Arc<Notify>,
    /// Consumed recommendation ids and breaker changes for the Redis caches.
    pub cache: mpsc::Sender<super::redis_tasks::CacheDelta>,
    /// The breaker cache's value, for rebuilds.
    pub breakers: watch::Sender<String>,
    pub max_batch: usize,
    /// The stream's last `at`: inputs are never stamped before it.
    pub last_at: Timestamp,
    pub shutdown: watch::Receiver<bool>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Processor {
    /// Runs until shutdown or until every sender is gone.
    ///
    /// # Errors
    /// A ledger error that retrying cannot cure (a stream that does not decode).
    pub async fn run(mut self) -> Result<(), LedgerError> {
        let mut messages = Vec::with_capacity(self.max_batch);
        let mut carry: Vec<Input> = Vec::new();
        loop {
            messages.clear();
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return Ok(()),
                n = self.receiver.recv_many(&mut messages, self.max_batch) => if n == 0 { return Ok(()) },
            }
            m::queue_depth(&self.account, self.receiver.len());
            let mut inputs: Vec<Input> = std::mem::take(&mut carry);
            let mut until: Option<Timestamp> = None;
            for message in messages.drain(..) {
                match message {
                    Msg::Input(mut input) => {
                        if input.stamped.at < self.last_at {
                            input.stamped.at = self.last_at;
                        }
                        self.last_at = input.stamped.at;
                        inputs.push(input);
                    }
                    Msg::Advance(at) => until = Some(until.map_or(at, |u: Timestamp| u.max(at))),
                }
            }
            let until = until.map(|u| u.max(self.last_at));
            if let Some(u) = until {
                self.last_at = u;
            }
            carry = self.commit(&inputs, until).await?;
        }
    }

    /// Commits one batch, retrying until it is in; returns broker discrepancies to record next.
    async fn commit(&mut self, inputs: &[Input], until: Option<Timestamp>) -> Result<Vec<Input>, LedgerError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            match self.ledger.submit_with(inputs, until, &self.plan).await {
                Ok((submitted, plan)) => {
                    self.plan = plan;
                    m::append_seconds(&self.account, started.elapsed().as_secs_f64());
                    self.shared.set_healthy(&self.account, true, None);
                    return Ok(self.after_commit(inputs, &submitted));
                }
                Err(LedgerError::Append(AppendError::DuplicateEventId { event_id, .. })) => {
                    // An earlier attempt committed and its reply was lost: the batch is in.
                    tracing::warn!(account = %self.account, %event_id, "batch was committed before its reply was lost");
                    self.resync().await?;
                    return Ok(Vec::new());
                }
                Err(error @ LedgerError::Decode { .. }) => return Err(error),
                Err(error) => {
                    let text = crate::describe(&error);
                    tracing::warn!(account = %self.account, error = %text, retry_in_ms = backoff.as_millis() as u64, "cannot commit; not deciding until PostgreSQL answers");
                    self.shared.set_healthy(&self.account, false, Some(text));
                    m::postgres_up(false);
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        _ = shutdown.changed() => return Ok(Vec::new()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Reloads the stream and rebuilds the tick cursor from its last event.
    async fn resync(&mut self) -> Result<(), LedgerError> {
        self.ledger.reload().await?;
        let last = last_event_at(&self.ledger).await;
        self.plan = Plan::new(last, self.ledger.state(), self.plan.paper);
        if let Some(last) = last {
            self.last_at = self.last_at.max(last);
        }
        Ok(())
    }

    fn after_commit(&mut self, inputs: &[Input], submitted: &Submitted) -> Vec<Input> {
        m::postgres_up(true);
        let mut consumed = Vec::new();
        let mut placed = false;
        for (_, stamped, _) in &submitted.events {
            match &stamped.event {
                Event::TradingDecisionRecorded(d) => m::decision(&self.account, d),
                Event::OrderPlaced(o) => {
                    placed = true;
                    m::order(&self.account, o.reason);
                }
                Event::OrderFilled(_) => m::fill(&self.account),
                Event::PreTradeCheckEvaluated(c) => consumed.extend(c.consumed().map(str::to_owned)),
                _ => {}
            }
        }
        if placed {
            self.outbox.notify_one();
        }
        let state = self.ledger.state();
        let breakers = super::redis_tasks::breaker_json(state, self.last_at);
        self.breakers.send_if_modified(|current| {
            let changed = *current != breakers;
            if changed {
                current.clone_from(&breakers);
            }
            changed
        });
        if !consumed.is_empty() {
            let _ = self.cache.try_send(super::redis_tasks::CacheDelta { consumed });
        }
        self.shared.update_status(&self.account, |s| {
            s.version = self.ledger.version();
            s.observe(state, self.last_at);
        });
        m::state(&self.account, state, self.last_at);
        let mut carry = Vec::new();
        for refused in &submitted.refused {
            let input = inputs.iter().find(|i| i.id == refused.input_id);
            let event_type = input.map_or("input", |i| i.stamped.event.event_type());
            tracing::warn!(account = %self.account, input = %refused.input_id, event_type, error = %refused.error, "input refused by the core; not recorded");
            m::refused(&self.account, event_type);
            // A broker reply that contradicts the log is recorded as a discrepancy
            // (docs/decisions.md 12), never booked.
            if let Some(input) = input.filter(|i| is_broker_input(&i.stamped.event)) {
                let order_id = broker_order_id_of(&input.stamped.event);
                carry.push(Input {
                    id: new_input_id(),
                    stamped: Stamped::new(
                        self.last_at,
                        BrokerDiscrepancyObserved {
                            order_id,
                            broker_order_id: None,
                            description: format!("{event_type} refused: {}", refused.error),
                        },
                    ),
                });
                m::discrepancy(&self.account);
            }
        }
        carry
    }
}

fn is_broker_input(event: &Event) -> bool {
    matches!(
        event,
        Event::OrderFilled(_) | Event::OrderSubmitted(_) | Event::OrderCanceled(_) | Event::OrderRejected(_)
    )
}

fn broker_order_id_of(event: &Event) -> Option<Uuid> {
    match event {
        Event::OrderFilled(e) => Some(e.order_id),
        Event::OrderSubmitted(e) => Some(e.order_id),
        Event::OrderCanceled(e) => Some(e.order_id),
        Event::OrderRejected(e) => Some(e.order_id),
        _ => None,
    }
}

/// The `at` of the stream's newest event.
pub async fn last_event_at(ledger: &AccountLedger) -> Option<Timestamp> {
    if ledger.version() == 0 {
        return None;
    }
    let events = ledger.store().read_stream(ledger.stream_id(), ledger.version(), 1).await.ok()?;
    events.first().map(|e| e.at)
}
