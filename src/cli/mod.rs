//! One module per subcommand: argument structs and the glue to the library crates.

pub mod simulate;
pub mod scenario;
