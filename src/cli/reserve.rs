//! `tape reserve release`: the operator input that moves money out of the reserve pool.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tape_events::{Event, Money};

#[derive(Debug, clap::Subcommand)]
pub enum ReserveCommand {
    /// Move money out of the reserve (never below 0), recorded with who and why.
    Release(ReleaseArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    #[arg(long, value_name = "ID")]
    pub account: String,
    #[arg(long)]
    pub amount: String,
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
pub fn run(command: &ReserveCommand) -> anyhow::Result<ExitCode> {
    let ReserveCommand::Release(args) = command;
    let amount: Money = args.amount.parse().map_err(|e| anyhow::anyhow!("invalid --amount {:?}: {e}", args.amount))?;
    if args.actor.trim().is_empty() || args.reason.trim().is_empty() {
        anyhow::bail!("--actor and --reason must not be empty");
    }
    let loaded = super::daemon::load(args.config.as_deref(), &[])?;
    let store = super::account::store(&loaded.service)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let submitted = runtime.block_on(async {
        let mut ledger = tape_services::accounts::load_open(store, &args.account, &args.actor).await?;
        let at = super::account::now();
        anyhow::Ok(tape_services::accounts::release_reserve(&mut ledger, amount, &args.actor, &args.reason, at).await?)
    })?;
    let moved = submitted.events.iter().find_map(|(_, s, _)| match &s.event {
        Event::ReserveTransferred(t) => Some((t.amount, t.balance_after)),
        _ => None,
    });
    match moved {
        Some((amount, after)) => println!("released {amount} from the reserve; balance {after}"),
        None => println!("recorded the request by {}; the reserve is empty, nothing moved", args.actor),
    }
    Ok(ExitCode::SUCCESS)
}
