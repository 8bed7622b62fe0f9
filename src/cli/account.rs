//! `tape account open|list|show`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tape_events::{AccountMode, Money, Timestamp};
use tape_services::clock::{Clock, SystemClock};
use tape_services::store::EventStore;

#[derive(Debug, clap::Subcommand)]
pub enum AccountCommand {
    /// Open an account: AccountOpened, then ConfigActivated with the resolved config.
    Open(OpenArgs),
    /// List the accounts with their stream versions.
    List(Common),
    /// Show an account's state folded from its stream.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// Initial cash.
    #[arg(long, default_value = "100000.00")]
    pub cash: String,
    #[arg(long, value_enum, default_value_t = Mode::Paper)]
    pub mode: Mode,
    /// Override one decision key. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[arg(long, value_name = "ID")]
    pub account: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    Paper,
    Live,
}

/// The app-role store of the configured database.
///
/// # Errors
/// A bad configuration.
pub fn store(config: &tape_services::ServiceConfig) -> anyhow::Result<EventStore> {
    Ok(EventStore::new(tape_services::db::pool(&config.database)?))
}

/// Who gives an operator command on which account, and why (recorded in the input).
#[derive(Debug, clap::Args)]
pub struct Operator {
    #[arg(long, value_name = "ID")]
    pub account: String,
    /// Who gives the command (recorded).
    #[arg(long)]
    pub actor: String,
    /// Why (recorded).
    #[arg(long)]
    pub reason: String,
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<std::path::PathBuf>,
}

impl Operator {
    /// Records the operator input `request(actor, reason)` on the account, stamped now.
    ///
    /// # Errors
    /// An empty actor or reason, a bad configuration, an account that is not open, or a
    /// refused input.
    pub fn submit<E: Into<tape_events::Event>>(
        &self,
        request: impl FnOnce(String, String) -> E,
    ) -> anyhow::Result<tape_services::ledger::Submitted> {
        if self.actor.trim().is_empty() || self.reason.trim().is_empty() {
            anyhow::bail!("--actor and --reason must not be empty");
        }
        let loaded = super::daemon::load(self.config.as_deref(), &[])?;
        let store = store(&loaded.service)?;
        let request = request(self.actor.clone(), self.reason.clone());
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        runtime.block_on(async {
            let mut ledger = tape_services::accounts::load_open(store, &self.account, &self.actor).await?;
            Ok(tape_services::accounts::submit_operator(&mut ledger, request, now()).await?)
        })
    }
}

/// The wall clock's now (operator commands are stamped when they are given).
#[must_use]
pub fn now() -> Timestamp {
    SystemClock.now()
}

/// Runs the subcommand.
///
/// # Errors
/// A bad configuration, an unreachable database, or a refused operation.
pub fn run(command: &AccountCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match command {
        AccountCommand::Open(args) => {
            let loaded = super::daemon::load(args.common.config.as_deref(), &args.sets)?;
            let cash: Money = args.cash.parse().map_err(|e| anyhow::anyhow!("invalid --cash {:?}: {e}", args.cash))?;
            let mode = match args.mode {
                Mode::Paper => AccountMode::Paper,
                Mode::Live => AccountMode::Live,
            };
            let store = store(&loaded.service)?;
            runtime.block_on(tape_services::accounts::open(
                store,
                &args.account,
                cash,
                mode,
                &loaded.decision,
                now(),
                "tape account open",
            ))?;
            println!("opened account {} with {cash} ({mode}), config {}", args.account, &loaded.decision.hash()[..12]);
        }
        AccountCommand::List(common) => {
            let loaded = super::daemon::load(common.config.as_deref(), &[])?;
            let accounts = runtime.block_on(tape_services::accounts::list(&store(&loaded.service)?))?;
            for (account, version) in &accounts {
                println!("{account}\t{version} events");
            }
            if accounts.is_empty() {
                println!("no accounts (tape account open --account ID)");
            }
        }
        AccountCommand::Show(args) => {
            let loaded = super::daemon::load(args.common.config.as_deref(), &[])?;
            let store = store(&loaded.service)?;
            let ledger =
                runtime.block_on(tape_services::accounts::load_open(store, &args.account, "tape account show"))?;
            print!("{}", tape_services::accounts::describe_state(ledger.state(), ledger.version(), now()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
