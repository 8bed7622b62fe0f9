//! `tape simulate --store`: the simulator's driver (scenario, paper broker, schedule) with
//! the event store as its sink, through the same write path as the daemon
//! ([`AccountLedger::submit`]). No daemon is needed; the scenario's history lands in the
//! account's stream exactly as `simulate --out` would write it (same input ids, same
//! derived decision and order ids).
//!
//! The driver is synchronous (it is `replay::simulate`'s); the sink bridges to the async
//! ledger with `Handle::block_on` on a blocking thread. It keeps a mirror of the core's
//! state (the driver reads it for paper fills and ticks) and submits the recorded inputs
//! to the ledger every `batch_steps` steps: 1 (the default) is one transaction per step;
//! the benchmark setup batches many steps per append. After each submit the ledger must
//! have recorded exactly what the mirror did, else the run stops (another writer).

use std::io::BufRead;

use tape_commands::{Engine, Input, State, StepOutcome};
use tape_events::Stamped;
use tape_replay::simulate::{self, Observer, Options, SimulateError, Sink, SinkError};
use tape_replay::summary::Summary;
use tokio::runtime::Handle;

use crate::describe;
use crate::ledger::AccountLedger;
use crate::store::{EventStore, MAX_BATCH};

/// The actor recorded in the metadata of a stored simulation.
pub const ACTOR: &str = "simulate";

/// What a stored run did.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub summary: Summary,
    /// The account's stream and its version at the end.
    pub stream_id: String,
    pub version: i64,
    /// Transactions committed.
    pub appends: u64,
}

struct LedgerSink {
    handle: Handle,
    store: EventStore,
    mirror: Engine,
    ledger: Option<AccountLedger>,
    queue: Vec<Input>,
    /// Events the mirror recorded for the queued inputs.
    queued_events: usize,
    batch_steps: usize,
    appends: u64,
}

impl LedgerSink {
    fn flush(&mut self) -> Result<(), SinkError> {
        if self.queue.is_empty() {
            return Ok(());
        }
        if self.ledger.is_none() {
            let Some(account) = self.mirror.state().account.as_ref().map(|a| a.account_id.clone()) else {
                return Ok(());
            };
            let ledger = self
                .handle
                .block_on(AccountLedger::load(self.store.clone(), &account, ACTOR))
                .map_err(|e| SinkError::Failed(describe(&e)))?;
            if ledger.version() != 0 {
                return Err(SinkError::Failed(format!(
                    "stream {} already holds {} events: simulate --store opens a new account",
                    ledger.stream_id(),
                    ledger.version()
                )));
            }
            self.ledger = Some(ledger);
        }
        let Some(ledger) = self.ledger.as_mut() else { return Ok(()) };
        let submitted =
            self.handle.block_on(ledger.submit(&self.queue)).map_err(|e| SinkError::Failed(describe(&e)))?;
        if submitted.events.len() != self.queued_events || !submitted.refused.is_empty() {
            return Err(SinkError::Failed(format!(
                "stream {}: the ledger recorded {} events where the simulation recorded {} (another writer?)",
                ledger.stream_id(),
                submitted.events.len(),
                self.queued_events
            )));
        }
        self.appends += 1;
        self.queue.clear();
        self.queued_events = 0;
        Ok(())
    }
}

impl Sink for LedgerSink {
    fn state(&self) -> &State {
        self.mirror.state()
    }

    fn step(&mut self, input: Input, out: &mut Vec<Stamped>) -> Result<StepOutcome, SinkError> {
        let before = out.len();
        let outcome = self.mirror.step(input.clone(), out)?;
        if let StepOutcome::Recorded { .. } = outcome {
            let recorded = out.len() - before;
            if self.queued_events + recorded > MAX_BATCH {
                self.flush()?;
            }
            self.queue.push(input);
            self.queued_events += recorded;
            if self.queue.len() >= self.batch_steps {
                self.flush()?;
            }
        }
        Ok(outcome)
    }
}

/// Runs a scenario into the store: one account stream, `batch_steps` steps per
/// transaction (1: one per step). Must be called inside a tokio runtime; the driver
/// runs on a blocking thread.
///
/// # Errors
/// [`SimulateError`]: a bad line, or the store failed ([`SimulateError::Sink`]); steps
/// committed before stay committed.
pub async fn run<R, O>(
    store: EventStore,
    input: R,
    options: Options,
    batch_steps: usize,
    mut observer: O,
) -> Result<StoredRun, SimulateError>
where
    R: BufRead + Send + 'static,
    O: Observer + Send + 'static,
{
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let sink = LedgerSink {
            handle,
            store,
            mirror: Engine::default(),
            ledger: None,
            queue: Vec::new(),
            queued_events: 0,
            batch_steps: batch_steps.max(1),
            appends: 0,
        };
        let (summary, mut sink) = simulate::run_with(input, std::io::sink(), sink, &options, &mut observer)?;
        sink.flush().map_err(|e| SimulateError::Sink(e.to_string()))?;
        let (stream_id, version) =
            sink.ledger.as_ref().map_or((String::new(), 0), |l| (l.stream_id().to_owned(), l.version()));
        Ok(StoredRun { summary, stream_id, version, appends: sink.appends })
    });
    task.await.map_err(|e| SimulateError::Sink(format!("the simulation thread failed: {e}")))?
}
