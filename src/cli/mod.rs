//! One module per subcommand: argument structs and the glue to the library crates.

pub mod scenario;
pub mod simulate;
