//! `tape-services`: the imperative shell around the pure core.
//!
//! - [`config`]: the service tables of `tape.toml` (`[database]`, `[redis]`) and `TAPE_*`
//!   overrides.
//! - [`db`]: the connection pool (`SET ROLE tape_app`) and administrative connections.
//! - [`migrate`]: the embedded SQL migrations of `migrations/` (`tape migrate`).
//! - [`store`]: the PostgreSQL event store: appends, global and stream reads, chain
//!   verification.
//! - [`ledger`]: one account's write path: fold the stream, step inputs through the core,
//!   append each batch of whole steps in one transaction (reload and decide again on a
//!   conflict).
//! - [`audit`]: `tape audit`: explain a recommendation, list what happened, verify.
//! - [`daemon`]: the live daemon (`tape daemon`, SPEC 8); [`broker`]: brokers behind one
//!   trait (the paper broker); [`quotes`]: quote sources (`market_quotes`, the simulated
//!   market); [`clock`]: the injected clock; [`upstream`]: the upstream tables and
//!   `tape ingest`.
//! - [`projections`]: the read tables: catch up and follow the log, rebuild into shadow
//!   tables and swap, checkpoints and lag.
//! - [`replay`]: `tape replay`: verify a window of an account's stream against a replay
//!   and its projections against a scratch rebuild; what-if under another config.
//! - [`simulate`]: `tape simulate --store`, the simulator's driver into the event store
//!   through the ledger.
//! - [`check`]: `tape store check`, the newcomer's smoke test.
//! - [`bench`]: `tape bench store`, the store against raw PostgreSQL.
//! - [`bench_replay`]: `tape bench replay`, projections rebuild and replay verify against
//!   raw read-out.
//!
//! Architecture invariant: all I/O lives here (and in the binary); the core crates
//! (`events`, `commands`) never depend on this crate.

pub mod accounts;
pub mod audit;
pub mod bench;
pub mod bench_audit;
pub mod bench_replay;
pub mod broker;
pub mod check;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod daemon_bench;
pub mod db;
pub mod demo;
pub mod ledger;
pub mod measure;
pub mod migrate;
pub mod projections;
pub mod quotes;
pub mod replay;
pub mod simulate;
pub mod store;
pub mod upstream;

pub use config::ServiceConfig;

/// An error and all its causes on one line (`a: b: c`), each cause once.
///
/// The crate's errors carry the driver's error as a `cause` field and print it with this,
/// so a message alone (a log line with `%error`) says what PostgreSQL said.
#[must_use]
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}
pub use store::{AppendError, AppendOutcome, EventStore, GlobalCursor, StoreError};
