//! `tape replay`: verify an account's recorded days against a replay of the core, or
//! replay them under another configuration (what-if). See `docs/replay.md`.
//!
//! Exit codes: 0 clean (or a what-if ran), 1 a divergence, 2 an error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tape_replay::whatif::{DecisionOutcome, Override, Report};
use tape_services::db;
use tape_services::replay::{self, ReplayProgress, VerifyReport, Window};
use tape_services::store::EventStore;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Verify recorded days (`--verify`) or replay them under another config (`--set`, `--config`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The account (stream `account-<id>`).
    #[arg(long)]
    account: String,
    /// One exchange day (America/New_York), `YYYY-MM-DD`.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    day: Option<NaiveDate>,
    /// First day of a range (inclusive).
    #[arg(long, requires = "to")]
    from: Option<NaiveDate>,
    /// Last day of a range (inclusive).
    #[arg(long, requires = "from")]
    to: Option<NaiveDate>,
    /// Compare the replayed decisions and a scratch rebuild of the projections with the record.
    #[arg(long, conflicts_with_all = ["sets", "config"])]
    verify: bool,
    /// What-if: override a config key over the config in force, e.g.
    /// `tiers.conservative.min_confidence=0.70`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// What-if: run under this decision config (tape.toml format, over the defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// The database URL (default: TAPE_DATABASE_URL, ./tape.toml, or the built-in default).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

struct Bar(Option<ProgressBar>);

impl ReplayProgress for Bar {
    fn events(&mut self, read: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(read);
        }
    }
}

/// Runs `tape replay`.
///
/// # Errors
/// Bad arguments or config, an unreachable database, an unreadable stream.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let window = match (args.day, args.from, args.to) {
        (Some(day), _, _) => Window { from: day, to: day },
        (None, Some(from), Some(to)) if from <= to => Window { from, to },
        (None, Some(from), Some(to)) => bail!("invalid range --from {from} --to {to}: --from must not be after --to"),
        _ => bail!("give --day D, or --from D1 --to D2"),
    };
    let over = if args.verify {
        None
    } else if let Some(path) = &args.config {
        let config = super::simulate::load_config(Some(path), &args.sets)?;
        Some(Override::Replace(Box::new(config)))
    } else if !args.sets.is_empty() {
        Some(Override::Sets(args.sets.clone()))
    } else {
        bail!("give --verify, or a what-if with --set KEY=VALUE or --config FILE");
    };
    let settings = super::migrate::database_url(None, args.database_url.as_deref())?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} replay [{elapsed_precise}] {pos} events read ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut progress = Bar(bar);
    let result = runtime.block_on(async {
        let store = EventStore::new(db::pool(&settings.database)?);
        match over {
            None => {
                let mut client = db::connect(&settings.database.url).await?;
                let report = replay::verify(&store, &mut client, &args.account, window, &mut progress).await?;
                anyhow::Ok(Outcome::Verified(Box::new(report)))
            }
            Some(over) => {
                let report = replay::what_if(&store, &args.account, window, over, &mut progress).await?;
                anyhow::Ok(Outcome::WhatIf(Box::new(report)))
            }
        }
    });
    if let Some(bar) = &progress.0 {
        bar.finish_and_clear();
    }
    match result? {
        Outcome::Verified(report) => {
            match args.format {
                Format::Table => print_verify(&report),
                Format::Json => println!("{}", verify_json(&report)),
            }
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Outcome::WhatIf(report) => {
            match args.format {
                Format::Table => print_what_if(&args.account, window, &report),
                Format::Json => println!("{}", what_if_json(&args.account, window, &report)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

enum Outcome {
    Verified(Box<VerifyReport>),
    WhatIf(Box<Report>),
}

fn print_verify(report: &VerifyReport) {
    let c = &report.counts;
    println!("verify {} {}..={}", report.stream_id, report.window.from, report.window.to);
    println!("  events read        {}", report.events_read);
    println!("  folded before      {}", c.folded);
    println!("  inputs replayed    {}", c.inputs);
    println!("  decisions compared {}", c.decisions);
    println!("  divergent steps    {}", c.divergent_steps);
    println!("  divergences        {}", c.divergences);
    for d in &report.divergences {
        println!(
            "  DIVERGENCE position {} (version {}) {} {} field {}: recorded {} / replayed {}",
            d.position, d.stream_version, d.event_type, d.event_id, d.field, d.recorded, d.replayed
        );
    }
    println!("  projections (live vs scratch rebuild, rows of the window):");
    for t in &report.tables {
        let mark = if t.differing_rows == 0 { "ok  " } else { "DIFF" };
        println!(
            "  {mark} {:<22} live {:>7}  rebuilt {:>7}  differing {:>5}",
            t.table.name(),
            t.live_rows,
            t.rebuilt_rows,
            t.differing_rows
        );
        for (key, path, live, rebuilt) in &t.first {
            println!("       row {key} {path}: live {live} / rebuilt {rebuilt}");
        }
    }
    println!("{}", if report.is_clean() { "verify passed" } else { "verify FAILED" });
}

fn verify_json(report: &VerifyReport) -> serde_json::Value {
    let c = &report.counts;
    json!({
        "stream_id": report.stream_id,
        "from": report.window.from.to_string(),
        "to": report.window.to.to_string(),
        "clean": report.is_clean(),
        "events_read": report.events_read,
        "counts": {
            "folded": c.folded, "inputs": c.inputs, "decisions": c.decisions,
            "divergent_steps": c.divergent_steps, "divergences": c.divergences,
        },
        "divergences": report.divergences.iter().map(|d| json!({
            "position": d.position, "stream_version": d.stream_version, "event_id": d.event_id,
            "event_type": d.event_type, "field": d.field, "recorded": d.recorded, "replayed": d.replayed,
        })).collect::<Vec<_>>(),
        "tables": report.tables.iter().map(|t| json!({
            "table": t.table.name(), "live_rows": t.live_rows, "rebuilt_rows": t.rebuilt_rows,
            "differing_rows": t.differing_rows,
            "first": t.first.iter().map(|(k, p, l, r)| json!({"key": k, "field": p, "live": l, "rebuilt": r})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn show(outcome: Option<&DecisionOutcome>) -> String {
    match outcome {
        None => "-".to_owned(),
        Some(o) => {
            let reason = o.skip_reason.map(|r| format!(" {r}")).unwrap_or_default();
            let shares = o.shares.map(|s| format!(" {s} sh")).unwrap_or_default();
            let pending = if o.is_final { "" } else { " (pending)" };
            format!("{}{reason}{shares}{pending}", o.decision)
        }
    }
}

fn print_what_if(account: &str, window: Window, report: &Report) {
    println!("what-if account {account} {}..={}", window.from, window.to);
    println!("  config live    {}", report.config_hash_live);
    println!("  config what-if {}", report.config_hash_what_if);
    let changed: Vec<_> = report.changed().collect();
    println!("  decisions: {} recommendations, {} changed", report.decisions.len(), changed.len());
    if !changed.is_empty() {
        println!("  {:<24} {:<34} {:<34}", "recommendation", "live", "what-if");
        for d in changed {
            println!("  {:<24} {:<34} {:<34}", d.recommendation_id, show(d.live.as_ref()), show(d.what_if.as_ref()));
        }
    }
    println!("  {:<16} {:>14} {:>14}", "", "live", "what-if");
    println!("  {:<16} {:>14} {:>14}", "start equity", report.start_equity, report.start_equity);
    println!("  {:<16} {:>14} {:>14}", "realized P&L", report.live.realized_pnl, report.what_if.realized_pnl);
    println!("  {:<16} {:>14} {:>14}", "trades closed", report.live.trades, report.what_if.trades);
    println!("  {:<16} {:>14} {:>14}", "orders", report.live.orders, report.what_if.orders);
    println!("  {:<16} {:>14} {:>14}", "fills", report.live.fills, report.what_if.fills);
    println!("  {:<16} {:>14} {:>14}", "end equity", report.live.end_equity, report.what_if.end_equity);
    println!(
        "  paper fills for what-if orders: {}; live broker inputs dropped: {}",
        report.paper_fills, report.dropped_broker_inputs
    );
}

fn what_if_json(account: &str, window: Window, report: &Report) -> serde_json::Value {
    json!({
        "account": account,
        "from": window.from.to_string(),
        "to": window.to.to_string(),
        "report": report,
        "changed": report.changed().map(|d| d.recommendation_id.clone()).collect::<Vec<_>>(),
    })
}
