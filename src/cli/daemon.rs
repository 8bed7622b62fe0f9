//! `tape daemon`: the live daemon (SPEC 8), plus the configuration loading that the
//! operational subcommands share (`tape.toml` + `TAPE_*`: service tables through
//! `services::config`, decision keys through `commands::config::load`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tape_services::clock::SystemClock;
use tape_services::daemon::{self, BrokerTable, DaemonTable, QuoteFeed, Settings};
use tape_services::ServiceConfig;

/// Run the live daemon for one or more accounts until SIGINT/SIGTERM.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// An account to run (repeatable; added to [daemon] accounts).
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<String>,
    /// Where /healthz and /metrics are served (overrides [daemon] listen).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Override one decision key, e.g. `--set max_open_positions=8`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Every configuration layer, validated, with errors naming the key.
pub struct Loaded {
    pub service: ServiceConfig,
    pub decision: tape_events::Config,
    pub daemon: DaemonTable,
    pub broker: BrokerTable,
}

/// Reads `tape.toml` (the given path, else ./tape.toml if present) and the environment.
///
/// # Errors
/// An unreadable file or a bad key (named).
pub fn load(path: Option<&Path>, sets: &[String]) -> anyhow::Result<Loaded> {
    let service = ServiceConfig::load(path)?;
    let file_path = path.map(Path::to_path_buf).or_else(|| {
        let default = PathBuf::from("tape.toml");
        default.exists().then_some(default)
    });
    let text = file_path
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display())))
        .transpose()?;
    let name = file_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let layers = tape_commands::config::Layers {
        file: text.as_deref().map(|t| (name.as_str(), t)),
        env: std::env::vars().filter(|(k, _)| k.starts_with("TAPE_")).collect(),
        sets,
    };
    let decision = tape_commands::config::load(&layers)?;
    let daemon = DaemonTable::parse(service.daemon.as_ref())?;
    let broker = BrokerTable::parse(service.broker.as_ref())?;
    Ok(Loaded { service, decision, daemon, broker })
}

/// Starts tracing (text or JSON lines on stderr; `RUST_LOG` filters, default `info`).
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Completes on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs the subcommand.
///
/// # Errors
/// A bad configuration (naming the key) or a daemon that cannot start.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let loaded = load(args.config.as_deref(), &args.sets)?;
    init_logging(args.log_format, "info");
    let mut table = loaded.daemon;
    if let Some(listen) = args.listen {
        table.listen = listen;
    }
    let mut accounts = table.accounts.clone();
    for a in args.accounts {
        if !accounts.contains(&a) {
            accounts.push(a);
        }
    }
    table.accounts.clone_from(&accounts);
    table.validate()?;
    let alpaca = &loaded.broker.alpaca;
    // Keys from the environment only, read once; checked before anything starts.
    let credentials = if loaded.broker.kind == "alpaca" || table.quote_source == "alpaca" {
        Some(tape_services::broker::alpaca::Credentials::from_env()?)
    } else {
        None
    };
    let quotes = match (table.quote_source.as_str(), &credentials) {
        ("table", _) => QuoteFeed::Table { interval: Duration::from_millis(table.quote_poll_millis) },
        ("alpaca", Some(credentials)) => {
            QuoteFeed::Alpaca { settings: Box::new(alpaca.clone()), credentials: credentials.clone() }
        }
        _ => anyhow::bail!(
            "invalid daemon.quote_source \"simulated\": the simulated market needs bars and a clock; use `tape demo`"
        ),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let broker: Arc<dyn tape_services::broker::Broker> = match (loaded.broker.kind.as_str(), credentials) {
            ("alpaca", Some(credentials)) => {
                Arc::new(tape_services::broker::alpaca::AlpacaBroker::start(alpaca.clone(), credentials)?)
            }
            _ => Arc::new(tape_services::broker::PaperBroker::new()),
        };
        let settings = Settings {
            accounts,
            database: loaded.service.database,
            redis: loaded.service.redis,
            decision: loaded.decision,
            daemon: table,
            clock: Arc::new(SystemClock),
            broker,
            quotes,
            actor: "tape daemon".to_owned(),
            broker_adapter: true,
        };
        daemon::run(settings, signal()).await.map_err(anyhow::Error::msg)
    })?;
    Ok(ExitCode::SUCCESS)
}
