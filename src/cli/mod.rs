//! One module per subcommand: argument structs and the glue to the library crates.

pub mod account;
pub mod audit;
pub mod bench;
pub mod breaker;
pub mod daemon;
pub mod demo;
pub mod ingest;
pub mod migrate;
pub mod projections;
pub mod replay;
pub mod reserve;
pub mod scenario;
pub mod simulate;
pub mod store;
