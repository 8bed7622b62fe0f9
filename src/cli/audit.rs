//! `tape audit …`: explain a recommendation, list what happened, verify the ledger.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use tape_events::Timestamp;
use tape_services::audit::render::{explanation_json, explanation_text, Format};
use tape_services::audit::{self, Filter};
use tape_services::db;
use tape_services::store::{parse_hash_hex, EventStore};

/// Where to read from.
#[derive(Debug, clap::Args)]
pub struct Connection {
    /// The config file (default: ./tape.toml if present).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    /// The database URL (overrides the config file and TAPE_DATABASE_URL).
    #[arg(long, value_name = "URL", global = true)]
    database_url: Option<String>,
    /// Output: table (the default on a terminal), json (the default otherwise), csv.
    #[arg(long, value_name = "FORMAT", global = true)]
    format: Option<Format>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: AuditCommand,
}

/// Range and account filters of the listings.
#[derive(Debug, clap::Args)]
struct Range {
    /// Only this account.
    #[arg(long, value_name = "ACCOUNT")]
    account: Option<String>,
    /// From this exchange date (YYYY-MM-DD, America/New_York), inclusive.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    from: Option<NaiveDate>,
    /// To this exchange date, inclusive.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    to: Option<NaiveDate>,
    /// At most this many rows.
    #[arg(long, value_name = "N")]
    limit: Option<i64>,
}

impl Range {
    fn filter(&self) -> Filter {
        Filter {
            stream: self.account.as_deref().map(tape_events::ids::account_stream),
            from: self.from,
            to: self.to,
            since: None,
            limit: self.limit,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// The whole chain of one recommendation: capture, each check with the values it
    /// compared, each sizing step before → after and why, the decision, the order, its
    /// acknowledgement and fills, the position, the trade's result.
    Explain {
        recommendation_id: String,
        /// Read the account's whole stream (the answer is the same; slower).
        #[arg(long)]
        from_log: bool,
    },
    /// Everything that happened to one ticker.
    Ticker {
        ticker: String,
        #[command(flatten)]
        range: Range,
    },
    /// Trading decisions.
    Decisions {
        /// Only this exchange date (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        day: Option<NaiveDate>,
        /// Only skips for this reason (e.g. confidence, invalid:ticker, position_cap).
        #[arg(long, value_name = "REASON")]
        skipped_for: Option<String>,
        /// Only this outcome.
        #[arg(long, value_parser = ["act", "skip"])]
        outcome: Option<String>,
        #[command(flatten)]
        range: Range,
    },
    /// Circuit breaker trips, clears and resets.
    Breakers {
        #[command(flatten)]
        range: Range,
    },
    /// Reserve pool transfers and release requests.
    Reserve {
        #[command(flatten)]
        range: Range,
    },
    /// Performance evaluations and risk tier changes.
    Tiers {
        #[command(flatten)]
        range: Range,
    },
    /// Events of any type.
    Events {
        /// Only events of this type (repeatable), e.g. --type OrderFilled.
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// Only events at or after this instant (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
        since: Option<Timestamp>,
        /// Only this stream (e.g. account-demo).
        #[arg(long, value_name = "STREAM")]
        stream: Option<String>,
        /// At most this many rows.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        limit: i64,
    },
    /// Recompute every hash chain, check that the database refuses UPDATE, DELETE and
    /// TRUNCATE of events, name the first bad position, print the chain heads.
    Verify {
        /// A chain head kept outside the database, `STREAM=HEX` (repeatable): detects the
        /// removal of the newest events.
        #[arg(long = "head", value_name = "STREAM=HASH")]
        heads: Vec<String>,
    },
}

fn parse_date(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("{text:?} is not a date YYYY-MM-DD"))
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| e.to_string())
}

/// Runs `tape audit`.
///
/// # Errors
/// Invalid settings, or a database that cannot be reached or refuses.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config =
        super::migrate::database_url(args.connection.config.as_deref(), args.connection.database_url.as_deref())?;
    let format =
        args.connection.format.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Reads run as the read-only role; the immutability probe as the login itself
        // (the owner, often a superuser): the strongest "no".
        let mut reader = config.database.clone();
        reader.role = "tape_reader".to_owned();
        let store = EventStore::new(db::pool(&reader)?);
        let print = |text: String| {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        };
        match args.command {
            AuditCommand::Explain { recommendation_id, from_log } => {
                let explanations = if from_log {
                    audit::explain_from_log(&store, &recommendation_id).await?
                } else {
                    audit::explain_fast(&store, &recommendation_id).await?
                };
                if explanations.is_empty() {
                    eprintln!("recommendation {recommendation_id:?} was never captured");
                    return Ok(ExitCode::from(1));
                }
                for x in &explanations {
                    match format {
                        Format::Json => println!("{}", explanation_json(x)),
                        Format::Table | Format::Csv => print!("{}", explanation_text(x)),
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Ticker { ticker, range } => print(
                audit::timeline(&store, audit::TICKER_TYPES, &range.filter(), Some(&ticker)).await?.render(format),
            ),
            AuditCommand::Decisions { day, skipped_for, outcome, range } => {
                let mut filter = range.filter();
                if let Some(day) = day {
                    filter.from = Some(day);
                    filter.to = Some(day);
                }
                let rows = audit::decisions(&store, &filter, outcome.as_deref(), skipped_for.as_deref()).await?;
                print(rows.render(format))
            }
            AuditCommand::Breakers { range } => {
                print(audit::timeline(&store, audit::BREAKER_TYPES, &range.filter(), None).await?.render(format))
            }
            AuditCommand::Reserve { range } => {
                print(audit::timeline(&store, audit::RESERVE_TYPES, &range.filter(), None).await?.render(format))
            }
            AuditCommand::Tiers { range } => {
                print(audit::timeline(&store, audit::TIER_TYPES, &range.filter(), None).await?.render(format))
            }
            AuditCommand::Events { types, since, stream, limit } => {
                let filter = Filter { stream, since, limit: Some(limit), ..Filter::default() };
                print(audit::events(&store, &types, &filter).await?.render(format))
            }
            AuditCommand::Verify { heads } => {
                let mut expected = BTreeMap::new();
                for head in &heads {
                    let (stream, hash) = head
                        .split_once('=')
                        .with_context(|| format!("invalid --head {head:?}: expected STREAM=HASH"))?;
                    expected.insert(stream.to_owned(), parse_hash_hex(hash)?);
                }
                let owner = EventStore::new(db::pool(&tape_services::config::DatabaseConfig {
                    role: String::new(),
                    ..config.database.clone()
                })?);
                let (report, immutability) = audit::verify(&owner, &expected).await?;
                verify_output(&report, &immutability, format)
            }
        }
    })
}

fn verify_output(
    report: &tape_services::store::VerifyReport,
    immutability: &[audit::ImmutabilityCheck],
    format: Format,
) -> anyhow::Result<ExitCode> {
    let intact = report.is_intact() && immutability.iter().all(|c| c.refused);
    if format == Format::Json {
        let value = serde_json::json!({
            "intact": intact,
            "events_checked": report.events_checked,
            "first_bad_position": report.first_problem().and_then(|p| p.position),
            "problems": report.problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "immutability": immutability.iter().map(|c| serde_json::json!({
                "statement": c.statement, "refused": c.refused, "message": c.message,
            })).collect::<Vec<_>>(),
            "heads": report.streams.iter().map(|h| serde_json::json!({
                "stream": h.stream_id, "version": h.version, "head": h.head_hash, "intact": h.intact,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("checked {} events in {} streams", report.events_checked, report.streams.len());
        for c in immutability {
            println!("{} {:<48} {}", if c.refused { "refused" } else { "ALLOWED" }, c.statement, c.message);
        }
        for problem in &report.problems {
            println!("BROKEN  {problem}");
        }
        if let Some(first) = report.first_problem() {
            match first.position {
                Some(position) => println!("first bad position: {position}"),
                None => println!("first problem: {first}"),
            }
        }
        println!("chain heads (keep them outside the database; pass them back with --head STREAM=HASH):");
        for head in &report.streams {
            println!(
                "  {}={}  version {}{}",
                head.stream_id,
                head.head_hash,
                head.version,
                if head.intact { "" } else { "  BROKEN" }
            );
        }
        println!("{}", if intact { "ledger intact" } else { "LEDGER NOT INTACT" });
    }
    Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
