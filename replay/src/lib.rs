//! `tape-replay`: historical runs of the pure core, with no database.
//!
//! - [`simulate`]: streams a scenario file (SPEC 12) through `commands::Engine` with the
//!   paper fill model and the schedule of SPEC 7, writing every event as JSON Lines.
//! - [`from_bars`]: builds a scenario file from real daily bars, with a seeded intraday
//!   path model and a seeded momentum recommendation feed (`docs/scenario-format.md`).
//!
//! Architecture invariant: nothing here reads the wall clock or the OS's randomness;
//! a run is a function of its input file, config and flags.

pub mod from_bars;
