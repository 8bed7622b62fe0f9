//! `tape breaker reset`: the operator input that clears circuit breakers (SPEC 5, 13).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tape_events::{BreakerKind, Event};

#[derive(Debug, clap::Subcommand)]
pub enum BreakerCommand {
    /// Clear the active breakers of a kind (optionally for one ticker), recorded with who and why.
    Reset(ResetArgs),
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// single_position, volatility, daily_loss or emergency.
    #[arg(long)]
    pub kind: String,
    #[arg(long)]
    pub ticker: Option<String>,
    #[arg(long)]
    pub actor: String,
    #[arg(long)]
    pub reason: String,
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Runs the subcommand.
///
/// # Errors
/// A bad argument or configuration, or a refused operation.
pub fn run(command: &BreakerCommand) -> anyhow::Result<ExitCode> {
    let BreakerCommand::Reset(args) = command;
    let kind: BreakerKind = serde_json::from_value(serde_json::Value::String(args.kind.clone())).map_err(|_| {
        anyhow::anyhow!("invalid --kind {:?}: must be single_position, volatility, daily_loss or emergency", args.kind)
    })?;
    if args.actor.trim().is_empty() || args.reason.trim().is_empty() {
        anyhow::bail!("--actor and --reason must not be empty");
    }
    let loaded = super::daemon::load(args.config.as_deref(), &[])?;
    let store = super::account::store(&loaded.service)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let submitted = runtime.block_on(async {
        let mut ledger = tape_services::accounts::load_open(store, &args.account, &args.actor).await?;
        let at = super::account::now();
        anyhow::Ok(
            tape_services::accounts::reset_breaker(
                &mut ledger,
                kind,
                args.ticker.clone(),
                &args.actor,
                &args.reason,
                at,
            )
            .await?,
        )
    })?;
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
        println!("recorded the reset by {}; no active {} breaker to clear", args.actor, args.kind);
    } else {
        println!("recorded the reset by {}; cleared: {}", args.actor, cleared.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
