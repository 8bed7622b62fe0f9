//! `tape-replay`: historical runs of the pure core, with no database.
//!
//! - [`scenario`]: reads scenario files (SPEC 12), naming the line and field of bad input.
//! - [`simulate`]: streams a scenario through `commands::Engine` with the paper fill model
//!   and the schedule of SPEC 7, writing every event as JSON Lines.
//! - [`summary`]: the end-of-run figures.
//! - [`recorded`], [`verify`], [`whatif`]: the pure halves of `tape replay`: steps of a
//!   recorded stream re-run and compared, or re-run under another configuration.
//! - [`from_bars`]: builds a scenario file from real daily bars, with a seeded intraday
//!   path model and a seeded momentum recommendation feed (`docs/scenario-format.md`).
//!
//! Architecture invariant: nothing here reads the wall clock or the OS's randomness;
//! a run is a function of its input file, config and flags.

pub mod from_bars;
pub mod recorded;
pub mod scenario;
pub mod simulate;
pub mod summary;

#[cfg(test)]
mod golden_tests;
pub mod verify;
pub mod whatif;
