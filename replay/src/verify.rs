//! `tape replay --verify`, the pure half: re-run `decide` on every recorded input of a
//! window and compare what it decides with what was recorded, field by field.
//!
//! The verifier keeps two states: the *replay* (the engine that decides again) and the
//! *record* (a fold of the recorded events). While they agree they are the same state.
//! When a step diverges, its recorded events are folded and the replay restarts from the
//! record, so each later step is judged on its own, not as a consequence of the first.
//!
//! Compared for every event of a step, in order: the type, the event id (decision ids are
//! derived from the input's id and the decision's index), `at`, the payload (canonical
//! JSON, every differing field named), the metadata's `causation_id`, and its
//! `config_hash` against the replayed state's — a recorded hash that differs means the
//! decision was made under another configuration or by another code path.

use serde_json::Value;
use tape_commands::{Engine, Input, State, StepOutcome};
use tape_events::{ids, Stamped};

use crate::recorded::{json_differences, Recorded};

/// One difference between the record and the replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The recorded event (or the step's input, when the replay has an extra event).
    pub position: i64,
    pub stream_version: i64,
    pub event_id: String,
    pub event_type: String,
    /// `event_type`, `event_id`, `at`, `causation_id`, `config_hash`, a payload path such
    /// as `shares` or `detail.rho`, `(missing)` or `(extra)`, or `input`.
    pub field: String,
    pub recorded: String,
    pub replayed: String,
}

/// Counts over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyCounts {
    /// Events folded before the window.
    pub folded: u64,
    /// Inputs re-run.
    pub inputs: u64,
    /// Recorded decisions compared.
    pub decisions: u64,
    /// Steps with at least one divergence.
    pub divergent_steps: u64,
    /// Every divergence found (only the first few are kept).
    pub divergences: u64,
}

/// How many divergences are kept for the report.
pub const KEEP_DIVERGENCES: usize = 20;

/// The verifier. Feed it every event before the window with [`Verifier::fold`], then
/// every step of the window with [`Verifier::step`].
#[derive(Debug, Default)]
pub struct Verifier {
    record: State,
    replay: Option<Engine>,
    out: Vec<Stamped>,
    pub counts: VerifyCounts,
    pub divergences: Vec<Divergence>,
}

impl Verifier {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds an event before the window.
    ///
    /// # Errors
    /// A recorded event that does not decode.
    pub fn fold(&mut self, recorded: &Recorded) -> Result<(), tape_events::DecodeError> {
        let stamped = recorded.decode()?;
        self.record.apply(&stamped);
        self.counts.folded += 1;
        Ok(())
    }

    /// The record's state (a fold of every event given so far).
    #[must_use]
    pub const fn record(&self) -> &State {
        &self.record
    }

    fn note(&mut self, recorded: &Recorded, field: &str, was: String, now: String) {
        self.counts.divergences += 1;
        if self.divergences.len() < KEEP_DIVERGENCES {
            self.divergences.push(Divergence {
                position: recorded.position,
                stream_version: recorded.stream_version,
                event_id: recorded.event_id.to_string(),
                event_type: recorded.event_type.clone(),
                field: field.to_owned(),
                recorded: was,
                replayed: now,
            });
        }
    }

    /// Re-runs one recorded step (its input first) and compares.
    pub fn step(&mut self, step: &[Recorded]) {
        let Some(first) = step.first() else { return };
        let before = self.counts.divergences;
        let mut engine = self.replay.take().unwrap_or_else(|| Engine::new(self.record.clone()));
        self.out.clear();
        let mut out = std::mem::take(&mut self.out);
        let mut agreed = false;
        match (first.is_input(), first.decode()) {
            (true, Ok(stamped)) => {
                self.counts.inputs += 1;
                let input = Input { id: first.event_id, stamped };
                match engine.step(input, &mut out) {
                    Ok(StepOutcome::Recorded { .. }) => {
                        self.compare(step, &out, engine.state().config_hash.as_str());
                        agreed = self.counts.divergences == before;
                    }
                    Ok(StepOutcome::Unchanged) => {
                        self.note(
                            first,
                            "input",
                            "recorded".into(),
                            "changes nothing now (would not be recorded)".into(),
                        );
                    }
                    Err(error) => self.note(first, "input", "recorded".into(), format!("refused: {error}")),
                }
            }
            (false, _) => self.note(first, "input", "a decision with no input before it".into(), String::new()),
            (true, Err(error)) => self.note(first, "payload", "does not decode".into(), error.to_string()),
        }
        self.counts.decisions += (step.len() - 1) as u64;
        if agreed {
            // The replay decided exactly the record: fold the same typed events.
            for stamped in &out {
                self.record.apply(stamped);
            }
            self.replay = Some(engine);
        } else {
            self.counts.divergent_steps += 1;
            for recorded in step {
                if let Ok(stamped) = recorded.decode() {
                    self.record.apply(&stamped);
                }
            }
            self.replay = None;
        }
        self.out = out;
    }

    fn compare(&mut self, step: &[Recorded], replayed: &[Stamped], config_hash: &str) {
        let input_id = step[0].event_id;
        for index in 0..step.len().max(replayed.len()) {
            let id = if index == 0 { input_id } else { ids::decision_event_id(input_id, index - 1) };
            match (step.get(index), replayed.get(index)) {
                (Some(recorded), Some(stamped)) => self.compare_event(recorded, stamped, id, input_id, config_hash),
                (Some(recorded), None) => {
                    self.note(recorded, "(missing)", "recorded".into(), "not decided by the replay".into())
                }
                (None, Some(stamped)) => {
                    let mut line = Vec::new();
                    stamped.write_json_line(&mut line);
                    let last = &step[step.len() - 1];
                    self.note(last, "(extra)", "not recorded".into(), String::from_utf8_lossy(&line).into_owned());
                }
                (None, None) => {}
            }
        }
    }

    fn compare_event(
        &mut self,
        recorded: &Recorded,
        stamped: &Stamped,
        id: uuid::Uuid,
        input_id: uuid::Uuid,
        hash: &str,
    ) {
        let event_type = stamped.event.event_type();
        if recorded.event_type != event_type {
            self.note(recorded, "event_type", recorded.event_type.clone(), event_type.to_owned());
            return;
        }
        if recorded.event_id != id {
            self.note(recorded, "event_id", recorded.event_id.to_string(), id.to_string());
        }
        if recorded.at != stamped.at {
            self.note(recorded, "at", recorded.at.to_string(), stamped.at.to_string());
        }
        let cause = (recorded.event_id != input_id).then_some(input_id);
        if recorded.event_id != input_id && recorded.causation_id != cause {
            let show = |c: Option<uuid::Uuid>| c.map_or_else(|| "null".to_owned(), |c| c.to_string());
            self.note(recorded, "causation_id", show(recorded.causation_id), show(cause));
        }
        if recorded.config_hash.as_deref() != Some(hash) {
            self.note(
                recorded,
                "config_hash",
                recorded.config_hash.clone().unwrap_or_else(|| "null".to_owned()),
                format!("{hash} (recorded under another config or code path)"),
            );
        }
        if recorded.event_id == input_id {
            return; // the input itself: the replay echoes what was decoded
        }
        let replayed: Value = stamped.event.payload_value();
        match recorded.current_payload() {
            Ok(payload) if *payload == replayed => {}
            Ok(payload) => {
                for (path, was, now) in json_differences(&payload, &replayed) {
                    self.note(recorded, &path, was, now);
                }
            }
            Err(error) => self.note(recorded, "payload", "does not decode".into(), error.to_string()),
        }
    }
}
