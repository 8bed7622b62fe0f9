//! The one integration-test binary (matklad: one binary, not many). Every test runs
//! against a real PostgreSQL (`TAPE_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) in a database of its own, created,
//! migrated and dropped by `tape_tests::TestDb`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc, clippy::disallowed_methods)]

mod alpaca;
mod append;
mod audit;
mod bench;
mod concurrency;
mod daemon;
mod immutability;
mod ledger;
mod migrate;
mod notify;
mod projections;
mod purity;
mod read;
mod verify;
