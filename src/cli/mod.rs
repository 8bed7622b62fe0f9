//! One module per subcommand: argument structs and the glue to the library crates.

pub mod bench;
pub mod migrate;
pub mod projections;
pub mod replay;
pub mod scenario;
pub mod simulate;
pub mod store;
