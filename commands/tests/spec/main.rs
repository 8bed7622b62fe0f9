//! The rules of SPEC 4–7 as given/when/then tests, and the core's properties.
//! One test binary (STYLE: "one integration-test binary rather than many").

mod harness;

mod checks;
mod market;
mod properties;
mod scheduled;
mod sizing;
