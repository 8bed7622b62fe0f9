//! Recorded events as replay reads them: the stored payload (not yet typed, so that it
//! can be compared field by field) with the envelope fields replay checks.

use serde_json::Value;
use tape_events::payload::{DecodeError, EventClass};
use tape_events::{upcast, Event, Stamped, Timestamp};
use uuid::Uuid;

/// One stored event of an account's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub position: i64,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
    pub at: Timestamp,
    pub config_hash: Option<String>,
    pub causation_id: Option<Uuid>,
}

impl Recorded {
    /// Whether the event is an input (which starts a step). Unknown types count as
    /// decisions (and then fail to compare).
    #[must_use]
    pub fn is_input(&self) -> bool {
        Event::class_of(&self.event_type) == Some(EventClass::Input)
    }

    /// The typed event, upcast to the current schema.
    ///
    /// # Errors
    /// [`DecodeError`] when the payload does not read.
    pub fn decode(&self) -> Result<Stamped, DecodeError> {
        let event = upcast::decode(&self.event_type, self.schema_version, &self.payload)?;
        Ok(Stamped { at: self.at, event })
    }

    /// The payload at the current schema version (upcast when stored older).
    ///
    /// # Errors
    /// [`DecodeError`] when an old payload cannot be upcast.
    pub fn current_payload(&self) -> Result<std::borrow::Cow<'_, Value>, DecodeError> {
        if Event::current_version(&self.event_type) == Some(self.schema_version) {
            Ok(std::borrow::Cow::Borrowed(&self.payload))
        } else {
            Ok(std::borrow::Cow::Owned(self.decode()?.event.payload_value()))
        }
    }
}

/// Splits a run of events into steps: an input and the decisions after it. Events
/// before the first input (none in a well-formed stream) form a step of their own.
pub fn steps(events: &[Recorded]) -> impl Iterator<Item = &[Recorded]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest[1..].iter().position(Recorded::is_input).map_or(rest.len(), |i| i + 1);
        let (step, tail) = rest.split_at(end);
        rest = tail;
        Some(step)
    })
}

/// Where two JSON values first differ, as `(path, recorded, replayed)` in canonical form;
/// every differing leaf, depth first, keys in canonical order.
#[must_use]
pub fn json_differences(recorded: &Value, replayed: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    diff(recorded, replayed, &mut String::new(), &mut out);
    out
}

fn canonical(value: Option<&Value>) -> String {
    value.map_or_else(
        || "(absent)".to_owned(),
        |v| String::from_utf8_lossy(&tape_events::canonical::value_to_canonical_vec(v)).into_owned(),
    )
}

fn diff(a: &Value, b: &Value, path: &mut String, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort_unstable_by(|p, q| p.as_bytes().cmp(q.as_bytes()));
            keys.dedup();
            for key in keys {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => diff(p, q, path, out),
                    (p, q) => out.push((path.clone(), canonical(p), canonical(q))),
                }
                path.truncate(len);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff(p, q, path, out);
                path.truncate(len);
            }
        }
        (p, q) if p == q => {}
        (p, q) => out.push((
            if path.is_empty() { "(payload)".to_owned() } else { path.clone() },
            canonical(Some(p)),
            canonical(Some(q)),
        )),
    }
}
