//! The SHA-256 hash chain over each stream (SPEC 11).
//!
//! Every stored event carries `prev_hash` (the hash of the previous event of its stream,
//! or 32 zero bytes for version 1) and `hash = SHA-256(prev_hash ‖ canonical bytes)`,
//! where the canonical bytes are [`ChainedFields`] in canonical JSON: stream, version,
//! event id, type, schema version, `at`, payload and metadata. Positions and
//! `recorded_at` are assigned by the database and are not hashed. A changed payload,
//! a removed or reordered event breaks the chain at its first bad version; deleting the
//! newest events is only visible against a chain head kept elsewhere, which is why
//! `tape audit verify` prints the heads.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical;
use crate::envelope::Metadata;
use crate::time::Timestamp;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of a stream's first event.
pub const GENESIS: Hash = [0; 32];

/// SHA-256 of `bytes`, lowercase hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The fields of a stored event that its hash covers.
#[derive(Debug, Serialize)]
pub struct ChainedFields<'a> {
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_id: uuid::Uuid,
    pub event_type: &'a str,
    pub schema_version: i32,
    pub at: Timestamp,
    pub payload: &'a serde_json::Value,
    pub metadata: &'a Metadata,
}

/// `SHA-256(prev ‖ canonical(fields))`.
#[must_use]
pub fn link(prev: &Hash, fields: &ChainedFields<'_>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(canonical::to_canonical_vec(fields));
    hasher.finalize().into()
}

/// Where a stream's chain first disagrees with its stored hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The stored `prev_hash` is not the previous event's hash (an event was removed,
    /// inserted or reordered before this one).
    PrevMismatch { stream_version: i64 },
    /// The stored `hash` does not match the event's content (the event was changed).
    HashMismatch { stream_version: i64 },
    /// Versions are not 1, 2, 3, … (a gap or a duplicate).
    VersionGap { expected: i64, found: i64 },
}

/// Walks one stream's events in version order and checks every link.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_prev: Hash,
    expected_version: i64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { expected_prev: GENESIS, expected_version: 1 }
    }
}

impl ChainVerifier {
    /// Checks the next event; on success remembers its hash as the next `prev`.
    ///
    /// # Errors
    /// The first [`ChainBreak`].
    pub fn check(&mut self, fields: &ChainedFields<'_>, prev_hash: &Hash, hash: &Hash) -> Result<(), ChainBreak> {
        if fields.stream_version != self.expected_version {
            return Err(ChainBreak::VersionGap { expected: self.expected_version, found: fields.stream_version });
        }
        if prev_hash != &self.expected_prev {
            return Err(ChainBreak::PrevMismatch { stream_version: fields.stream_version });
        }
        if &link(prev_hash, fields) != hash {
            return Err(ChainBreak::HashMismatch { stream_version: fields.stream_version });
        }
        self.expected_prev = *hash;
        self.expected_version += 1;
        Ok(())
    }

    /// The hash of the last event checked (the chain head so far).
    #[must_use]
    pub const fn head(&self) -> &Hash {
        &self.expected_prev
    }
}
