//! `tape-commands`: the pure decision core (SPEC 2–7, 13).
//!
//! `decide(&State, &Input) -> Vec<Stamped>` and `State::apply(&Stamped)`: no clock, no
//! randomness, no I/O, no hash-map iteration order reaches a decision. The [`Engine`]
//! runs both in one pass (each decision is applied the moment it is made, so later rules
//! see it); [`schedule`] is the tick schedule shared with the daemon; [`paper`] is the
//! paper broker's fill model; [`config`] reads `tape.toml` and `--set` overrides.
//!
//! Architecture invariant: `commands` never does I/O. It depends on `events` and on
//! pure crates only (no tokio, postgres, redis or tracing), which a test over
//! `cargo metadata` enforces.

pub mod calendar;
pub mod config;
pub mod engine;
pub mod evaluate;
pub mod market;
pub mod paper;
pub mod recommendation;
pub mod recorder;
pub mod schedule;
pub mod sizing;
pub mod state;
pub mod stats;
pub mod valuation;

pub use engine::{Engine, Input, InputError, StepOutcome};
pub use state::State;

use tape_events::Stamped;

/// SPEC 2.2's `decide`: the events one input records — the input itself first, when it
/// changes anything, then its decisions — computed on a copy of the state.
///
/// # Errors
/// [`InputError`] when the input cannot be recorded.
pub fn decide(state: &State, input: &Input) -> Result<Vec<Stamped>, InputError> {
    let mut engine = Engine::new(state.clone());
    let mut out = Vec::new();
    engine.step(input.clone(), &mut out)?;
    Ok(out)
}

/// Folds a recorded stream from an empty state.
#[must_use]
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Stamped>) -> State {
    let mut state = State::default();
    for event in events {
        state.apply(event);
    }
    state
}
