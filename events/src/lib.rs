//! `tape-events`: the vocabulary of the ledger.
//!
//! Every event of the SPEC as typed Rust ([`payload`]), the small closed vocabularies they
//! use ([`kinds`]), money and time types ([`money`], [`time`]), the decision
//! configuration ([`config`]), the store's envelope ([`envelope`]), canonical JSON
//! ([`canonical`]), schema upcasters ([`upcast`]), the SHA-256 chain ([`chain`]) and
//! deterministic ids ([`ids`]).
//!
//! Architecture invariant: this crate does no I/O and reads no clock or randomness. It
//! depends on nothing async.

pub mod canonical;
pub mod chain;
pub mod config;
pub mod envelope;
pub mod ids;
pub mod kinds;
pub mod money;
pub mod payload;
pub mod time;
pub mod upcast;

pub use config::{Config, RiskTier};
pub use envelope::{Metadata, NewEvent, StoredEvent};
pub use kinds::*;
pub use money::{average_cost_after_buy, cents, realized_pnl, round4, Money, Price, Qty, Ratio};
pub use payload::*;
pub use time::Timestamp;
