//! The envelope of SPEC 11: what the store keeps around each payload.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::chain::{ChainedFields, Hash};
use crate::payload::{DecodeError, Event, Stamped};
use crate::time::Timestamp;
use crate::upcast;

/// Who and what caused an event. Hashed with it; never read by the core.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The event that caused this one (a decision's input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The first event of the chain of causes (a recommendation's capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// Who caused it: `daemon`, `simulate`, an operator's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The `tape` version that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_version: Option<String>,
    /// SHA-256 of the decision configuration in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

/// An event ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub at: Timestamp,
}

impl NewEvent {
    /// Wraps a typed event at the current schema version.
    #[must_use]
    pub fn new(event_id: Uuid, stamped: &Stamped, metadata: Metadata) -> Self {
        Self {
            event_id,
            event_type: stamped.event.event_type(),
            schema_version: stamped.event.schema_version(),
            payload: stamped.event.payload_value(),
            metadata,
            at: stamped.at,
        }
    }

    /// The fields the hash chain covers, at a given place in a stream.
    #[must_use]
    pub fn chained<'a>(&'a self, stream_id: &'a str, stream_version: i64) -> ChainedFields<'a> {
        ChainedFields {
            stream_id,
            stream_version,
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            at: self.at,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Global position: unique, increasing in insertion order.
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub at: Timestamp,
    pub recorded_at: Timestamp,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl StoredEvent {
    /// The fields the hash chain covers.
    #[must_use]
    pub fn chained(&self) -> ChainedFields<'_> {
        ChainedFields {
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_id: self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            at: self.at,
            payload: &self.payload,
            metadata: &self.metadata,
        }
    }

    /// The typed event, upcast to the current schema.
    ///
    /// # Errors
    /// [`DecodeError`] when the stored type, version or payload is not readable.
    pub fn decode(&self) -> Result<Stamped, DecodeError> {
        let event = upcast::decode(&self.event_type, self.schema_version, &self.payload)?;
        Ok(Stamped { at: self.at, event })
    }
}

impl Event {
    /// Wraps this event for the store, at the current schema version.
    #[must_use]
    pub fn into_new(self, event_id: Uuid, at: Timestamp, metadata: Metadata) -> NewEvent {
        NewEvent::new(event_id, &Stamped { at, event: self }, metadata)
    }
}
