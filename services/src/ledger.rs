//! The write path of one account: its stream folded into the core's state, and inputs run
//! through the engine and appended with their decisions.
//!
//! `submit` takes a batch of inputs, steps each through the pure core (each decision is
//! applied as it is made), and appends every recorded step of the batch in one
//! transaction: a transaction carries several whole steps, never part of one (SPEC 2.2).
//! The append names the version the state was folded to; if another writer got there
//! first, the ledger reloads the stream and decides the same inputs again (SPEC 2.1). A
//! lost reply is retried with the same events, which the store makes idempotent.
//!
//! Event ids: an input keeps its own id (UUIDv7 minted by the caller, or deterministic in
//! `simulate --store`); the `i`-th decision of an input gets `ids::decision_event_id(input,
//! i)`, and every order id is derived the same way, so replay reproduces them.

use futures_util::StreamExt;
use tape_commands::{Engine, Input, InputError, State, StepOutcome};
use tape_events::{ids, Metadata, NewEvent, Stamped, Timestamp};
use uuid::Uuid;

use crate::store::{AppendError, AppendOutcome, EventStore, StoreError};

/// How often a version conflict is answered by reloading and deciding again.
const MAX_CONFLICT_RETRIES: usize = 5;
/// How often a lost reply is retried with the same events.
const MAX_LOST_REPLY_RETRIES: usize = 3;

/// Why a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("reading stream {stream}: {source}")]
    Read {
        stream: String,
        #[source]
        source: StoreError,
    },
    #[error("stream {stream} version {version} does not decode: {source}")]
    Decode {
        stream: String,
        version: i64,
        #[source]
        source: tape_events::DecodeError,
    },
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("stream {stream}: still conflicting after {attempts} reloads (another writer is active)")]
    Contended { stream: String, attempts: usize },
}

/// An input the core refused (nothing was recorded for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub input_id: Uuid,
    pub error: InputError,
}

/// What a batch recorded.
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    /// Every recorded event with its id and the id of the input that caused it, in stream
    /// order (an input's own entry names itself).
    pub events: Vec<(Uuid, Stamped, Uuid)>,
    /// Where they landed (`None` when nothing was recorded).
    pub appended: Option<AppendOutcome>,
    /// Inputs the core refused, with the reason.
    pub refused: Vec<Refused>,
    /// Inputs that would change nothing and were not recorded.
    pub unchanged: Vec<Uuid>,
}

/// Inputs that must be stepped before the next one (see [`AccountLedger::submit_with`]).
pub trait Prelude {
    /// The next input to step before `next` (or, with `next: None`, due by `at`); `None`
    /// when there is nothing (more) to put first.
    fn before(&mut self, state: &State, at: Timestamp, next: Option<&Input>) -> Option<Input>;
}

/// No prelude.
#[derive(Debug, Clone, Copy)]
struct NoPrelude;
impl Prelude for NoPrelude {
    fn before(&mut self, _: &State, _: Timestamp, _: Option<&Input>) -> Option<Input> {
        None
    }
}

/// One account's stream and the state folded from it.
#[derive(Debug)]
pub struct AccountLedger {
    store: EventStore,
    stream_id: String,
    engine: Engine,
    version: i64,
    actor: String,
    /// The engine has decided inputs that may not be stored: reload before the next batch.
    dirty: bool,
}

impl AccountLedger {
    /// Folds the account's stream (`account-{id}`) from version 1.
    ///
    /// # Errors
    /// [`LedgerError`] when the stream cannot be read or an event does not decode.
    pub async fn load(store: EventStore, account_id: &str, actor: &str) -> Result<Self, LedgerError> {
        let stream_id = ids::account_stream(account_id);
        let (engine, version) = fold_stream(&store, &stream_id).await?;
        Ok(Self { store, stream_id, engine, version, actor: actor.to_owned(), dirty: false })
    }

    #[must_use]
    pub const fn state(&self) -> &State {
        self.engine.state()
    }

    /// The stream version the state is folded to.
    #[must_use]
    pub const fn version(&self) -> i64 {
        self.version
    }

    #[must_use]
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    #[must_use]
    pub const fn store(&self) -> &EventStore {
        &self.store
    }

    /// Re-reads the stream from the store.
    ///
    /// # Errors
    /// [`LedgerError`] when the stream cannot be read or decoded.
    pub async fn reload(&mut self) -> Result<(), LedgerError> {
        let (engine, version) = fold_stream(&self.store, &self.stream_id).await?;
        self.engine = engine;
        self.version = version;
        self.dirty = false;
        Ok(())
    }

    /// Runs the inputs through the core and appends every recorded step in one
    /// transaction.
    ///
    /// # Errors
    /// [`LedgerError`]: the store failed (after retries of the same events), or another
    /// writer kept winning. On error the ledger reloads before its next batch.
    pub async fn submit(&mut self, inputs: &[Input]) -> Result<Submitted, LedgerError> {
        self.submit_with(inputs, None, &NoPrelude).await.map(|(submitted, _)| submitted)
    }

    /// Like [`AccountLedger::submit`], but before each input (and once more at `until`,
    /// if given) asks `prelude` for inputs that must come first, given the state at that
    /// point: the daemon's due scheduler ticks and the paper broker's fills before a quote
    /// (SPEC 6, 7), exactly as `simulate` interleaves them. Each attempt (a conflict
    /// decides again) starts from a fresh clone of `prelude`; the clone of the attempt
    /// that committed is returned, so its progress (a tick cursor) is kept only then.
    ///
    /// # Errors
    /// As [`AccountLedger::submit`].
    pub async fn submit_with<P: Prelude + Clone>(
        &mut self,
        inputs: &[Input],
        until: Option<Timestamp>,
        prelude: &P,
    ) -> Result<(Submitted, P), LedgerError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            if self.dirty {
                self.reload().await?;
            }
            self.dirty = true;
            let mut attempt = prelude.clone();
            let mut submitted = self.decide_with(inputs, until, Some(&mut attempt));
            if submitted.events.is_empty() {
                self.dirty = false;
                return Ok((submitted, attempt));
            }
            let batch: Vec<NewEvent> = submitted
                .events
                .iter()
                .map(|(id, stamped, input_id)| NewEvent::new(*id, stamped, self.metadata(*id, *input_id)))
                .collect();
            match self.append_retrying(&batch).await {
                Ok(outcome) => {
                    self.version = outcome.version;
                    self.dirty = false;
                    submitted.appended = Some(outcome);
                    return Ok((submitted, attempt));
                }
                Err(error) if error.is_conflict() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(LedgerError::Contended { stream: self.stream_id.clone(), attempts: MAX_CONFLICT_RETRIES })
    }

    fn decide_with<P: Prelude>(
        &mut self,
        inputs: &[Input],
        until: Option<Timestamp>,
        mut prelude: Option<&mut P>,
    ) -> Submitted {
        let mut submitted = Submitted::default();
        let mut out = Vec::new();
        for input in inputs {
            if let Some(prelude) = prelude.as_deref_mut() {
                while let Some(first) = prelude.before(self.engine.state(), input.stamped.at, Some(input)) {
                    self.step_one(first, &mut out, &mut submitted);
                }
            }
            self.step_one(input.clone(), &mut out, &mut submitted);
        }
        if let (Some(prelude), Some(until)) = (prelude, until) {
            while let Some(first) = prelude.before(self.engine.state(), until, None) {
                self.step_one(first, &mut out, &mut submitted);
            }
        }
        submitted
    }

    fn step_one(&mut self, input: Input, out: &mut Vec<Stamped>, submitted: &mut Submitted) {
        out.clear();
        let input_id = input.id;
        match self.engine.step(input, out) {
            Ok(StepOutcome::Recorded { .. }) => {
                // The input first, then its decisions, each id derived from the input's.
                for (index, stamped) in out.drain(..).enumerate() {
                    let id = if index == 0 { input_id } else { ids::decision_event_id(input_id, index - 1) };
                    submitted.events.push((id, stamped, input_id));
                }
            }
            Ok(StepOutcome::Unchanged) => submitted.unchanged.push(input_id),
            Err(error) => submitted.refused.push(Refused { input_id, error }),
        }
    }

    /// Decisions name their input as cause and correlation; inputs carry neither.
    fn metadata(&self, event_id: Uuid, input_id: Uuid) -> Metadata {
        let caused = (event_id != input_id).then_some(input_id);
        Metadata {
            causation_id: caused,
            correlation_id: caused,
            actor: Some(self.actor.clone()),
            code_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            config_hash: Some(self.engine.state().config_hash.clone()),
        }
    }

    async fn append_retrying(&self, batch: &[NewEvent]) -> Result<AppendOutcome, AppendError> {
        let mut attempt = 0;
        loop {
            match self.store.append(&self.stream_id, self.version, batch).await {
                Err(error @ (AppendError::Database { .. } | AppendError::Pool { .. }))
                    if attempt + 1 < MAX_LOST_REPLY_RETRIES =>
                {
                    attempt += 1;
                    tracing::warn!(stream = %self.stream_id, attempt, error = %error, "append failed; retrying the same events");
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// Reads a whole stream and folds it.
async fn fold_stream(store: &EventStore, stream_id: &str) -> Result<(Engine, i64), LedgerError> {
    let read = |source| LedgerError::Read { stream: stream_id.to_owned(), source };
    let mut rows = store.stream_stream(stream_id, 1).await.map_err(read)?;
    let mut engine = Engine::default();
    let mut version = 0;
    while let Some(row) = rows.next().await {
        let stored = row.map_err(read)?.event;
        let stamped = stored.decode().map_err(|source| LedgerError::Decode {
            stream: stream_id.to_owned(),
            version: stored.stream_version,
            source,
        })?;
        engine.apply(&stamped);
        version = stored.stream_version;
    }
    Ok((engine, version))
}
