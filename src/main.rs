//! `tape`: one binary for the live daemon, replay and simulation, audit, and operations.
//!
//! `main` only parses arguments and maps the outcome to an exit code; every command's
//! work lives in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// tape — an event-sourced trading ledger.
#[derive(Debug, Parser)]
#[command(name = "tape", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pure core over a scenario file with the paper broker, no database (SPEC 9).
    Simulate(cli::simulate::Args),
    /// Make scenario files for `tape simulate`.
    Scenario(cli::scenario::ScenarioArgs),
    /// Create the database if needed and apply the migrations (idempotent).
    Migrate(cli::migrate::Args),
    /// Event store tools (`tape store check`).
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
    /// Benchmarks (`tape bench store`).
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// The read tables: run (catch up and follow), rebuild, status.
    #[command(subcommand)]
    Projections(cli::projections::ProjectionsCommand),
    /// Verify recorded days against a replay, or replay them under another config (SPEC 9).
    Replay(cli::replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Scenario(args) => cli::scenario::run(args),
        Command::Migrate(args) => cli::migrate::run(&args),
        Command::Store(command) => cli::store::run(&command),
        Command::Bench(command) => cli::bench::run(&command),
        Command::Projections(command) => cli::projections::run(&command),
        Command::Replay(args) => cli::replay::run(&args),
    }
}
