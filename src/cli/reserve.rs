//! `tape reserve release`: the operator input that moves money out of the reserve pool.

use std::process::ExitCode;

use tape_events::{Event, Money, ReserveReleaseRequested};

#[derive(Debug, clap::Subcommand)]
pub enum ReserveCommand {
    /// Move money out of the reserve (never below 0), recorded with who and why.
    Release(ReleaseArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The amount to move out of the reserve (capped at the balance).
    #[arg(long)]
    pub amount: String,
    #[command(flatten)]
    pub operator: super::account::Operator,
}

/// Runs the subcommand.
///
/// # Errors
/// A bad argument or configuration, or a refused operation.
pub fn run(command: &ReserveCommand) -> anyhow::Result<ExitCode> {
    let ReserveCommand::Release(args) = command;
    let amount: Money = args.amount.parse().map_err(|e| anyhow::anyhow!("invalid --amount {:?}: {e}", args.amount))?;
    let submitted = args.operator.submit(|actor, reason| ReserveReleaseRequested { amount, actor, reason })?;
    let moved = submitted.events.iter().find_map(|(_, s, _)| match &s.event {
        Event::ReserveTransferred(t) => Some((t.amount, t.balance_after)),
        _ => None,
    });
    match moved {
        Some((amount, after)) => println!("released {amount} from the reserve; balance {after}"),
        None => println!("recorded the request by {}; the reserve is empty, nothing moved", args.operator.actor),
    }
    Ok(ExitCode::SUCCESS)
}
