//! `tape breaker reset`: the operator input that clears circuit breakers (SPEC 5, 13).

use std::process::ExitCode;

use tape_events::{BreakerKind, BreakerResetRequested, Event};

#[derive(Debug, clap::Subcommand)]
pub enum BreakerCommand {
    /// Clear the active breakers of a kind (optionally for one ticker), recorded with who and why.
    Reset(ResetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// single_position, volatility, daily_loss or emergency.
    #[arg(long)]
    pub kind: String,
    /// Only this ticker's breaker (single_position); every one of the kind when absent.
    #[arg(long)]
    pub ticker: Option<String>,
    #[command(flatten)]
    pub operator: super::account::Operator,
}

/// Runs the subcommand.
///
/// # Errors
/// A bad argument or configuration, or a refused operation.
pub fn run(command: &BreakerCommand) -> anyhow::Result<ExitCode> {
    let BreakerCommand::Reset(args) = command;
    let kind = BreakerKind::parse(&args.kind).ok_or_else(|| {
        anyhow::anyhow!("invalid --kind {:?}: must be single_position, volatility, daily_loss or emergency", args.kind)
    })?;
    let ticker = args.ticker.clone();
    let submitted = args.operator.submit(|actor, reason| BreakerResetRequested { kind, ticker, actor, reason })?;
    let cleared: Vec<String> = submitted
        .events
        .iter()
        .filter_map(|(_, s, _)| match &s.event {
            Event::CircuitBreakerCleared(c) => {
                Some(format!("{}{}", c.kind, c.ticker.as_ref().map(|t| format!(" {t}")).unwrap_or_default()))
            }
            _ => None,
        })
        .collect();
    if cleared.is_empty() {
        println!("recorded the reset by {}; no active {} breaker to clear", args.operator.actor, args.kind);
    } else {
        println!("recorded the reset by {}; cleared: {}", args.operator.actor, cleared.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
