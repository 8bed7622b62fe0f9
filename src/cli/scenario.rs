//! `tape scenario …`: making scenario files (SPEC 12) for `tape simulate`.
//!
//! `from-bars` reads real daily bars and writes a scenario to standard output; bad input
//! rows are reported on standard error, and so is a one-line summary.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tape_replay::from_bars::{self, FromBarsError, Params, Sources};

/// `tape scenario`.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    pub command: ScenarioCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Turn real daily bars into a scenario: seeded intraday quotes and a seeded
    /// momentum recommendation feed (docs/scenario-format.md). Writes to stdout.
    FromBars(FromBarsArgs),
}

/// `tape scenario from-bars`.
#[derive(Debug, Args)]
pub struct FromBarsArgs {
    /// Daily bars CSV, plain or gzip (`date,open,high,low,close,volume,Name`).
    #[arg(long, value_name = "FILE")]
    pub bars: PathBuf,
    /// Sectors CSV (`Symbol,…,Sector,…`).
    #[arg(long, value_name = "FILE")]
    pub sectors: PathBuf,
    /// Comma-separated tickers, e.g. AAPL,MSFT.
    #[arg(long, value_name = "LIST")]
    pub tickers: String,
    /// First day (YYYY-MM-DD); the run starts on the first trading day from here.
    #[arg(long, value_name = "DATE")]
    pub from: String,
    /// Last day (YYYY-MM-DD), inclusive.
    #[arg(long, value_name = "DATE")]
    pub to: String,
    /// Seed of the path model and the feed: the same seed gives the same bytes.
    #[arg(long)]
    pub seed: u64,
    /// Account id of the `AccountOpened` line.
    #[arg(long, default_value = "demo")]
    pub account: String,
    /// Initial cash of the account.
    #[arg(long, default_value = "100000.00", value_name = "AMOUNT")]
    pub initial_cash: String,
    /// Time between generated quotes (1m..120m, or 1h/2h).
    #[arg(long, default_value = "5m")]
    pub interval: String,
}

/// Runs `tape scenario …`.
pub fn run(args: ScenarioArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ScenarioCommand::FromBars(args) => from_bars(&args),
    }
}

fn open(path: &PathBuf, what: &str) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("cannot open {what} file {}", path.display()))
}

fn from_bars(args: &FromBarsArgs) -> anyhow::Result<ExitCode> {
    let tickers = from_bars::parse_tickers(&args.tickers)?;
    let params = Params {
        from: from_bars::parse_date("--from", &args.from)?,
        to: from_bars::parse_date("--to", &args.to)?,
        seed: args.seed,
        account_id: args.account.clone(),
        initial_cash: from_bars::parse_initial_cash(&args.initial_cash)?,
        interval_minutes: from_bars::parse_interval(&args.interval)?,
        tickers,
    };
    let bars_name = args.bars.display().to_string();
    let bars = from_bars::read_bars(open(&args.bars, "bars")?, &bars_name, &params.tickers)?;
    for issue in &bars.issues {
        eprintln!("warning: {bars_name} {issue}");
    }
    let sectors_name = args.sectors.display().to_string();
    let sectors = from_bars::read_sectors(open(&args.sectors, "sectors")?, &sectors_name)?;
    for issue in &sectors.issues {
        eprintln!("warning: {sectors_name} {issue}");
    }
    let holidays = tape_events::config::nyse_holidays();
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let sources = Sources { bars: &bars, sectors: &sectors, holidays };
    let summary = match from_bars::generate(&params, &sources, &mut out) {
        // The reader went away (`| head`): stop quietly, like other Unix tools.
        Err(FromBarsError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other?,
    };
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        other => other.context("writing the scenario to stdout")?,
    }
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "wrote {} lines: {} trading days {}..{}, {} tickers, {} quotes, {} daily bars, {} security updates, \
         {} buy and {} sell recommendations ({} deliberately malformed)",
        summary.lines,
        summary.trading_days,
        summary.first_day.map(|d| d.to_string()).unwrap_or_default(),
        summary.last_day.map(|d| d.to_string()).unwrap_or_default(),
        params.tickers.len(),
        summary.quotes,
        summary.daily_bars,
        summary.security_updates,
        summary.buys,
        summary.sells,
        summary.invalid_recommendations,
    );
    Ok(ExitCode::SUCCESS)
}
