//! `tape-services`: the imperative shell around the pure core.
//!
//! - [`config`]: the service tables of `tape.toml` (`[database]`, `[redis]`) and `TAPE_*`
//!   overrides.
//! - [`db`]: the connection pool (`SET ROLE tape_app`) and administrative connections.
//! - [`migrate`]: the embedded SQL migrations of `migrations/` (`tape migrate`).
//! - [`store`]: the PostgreSQL event store: appends, global and stream reads, chain
//!   verification.
//! - [`check`]: `tape store check`, the newcomer's smoke test.
//! - [`bench`]: `tape bench store`, the store against raw PostgreSQL.
//!
//! Architecture invariant: all I/O lives here (and in the binary); the core crates
//! (`events`, `commands`) never depend on this crate.

pub mod bench;
pub mod check;
pub mod config;
pub mod db;
pub mod migrate;
pub mod store;

pub use config::ServiceConfig;
pub use store::{AppendError, AppendOutcome, EventStore, GlobalCursor, StoreError};
