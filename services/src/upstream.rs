//! The upstream tables of SPEC 8 (`recommendations`, `market_quotes`, `securities`,
//! `daily_bars`): the daemon's reads, and `tape ingest`, which loads CSV or JSON Lines
//! files into them with row-level validation.
//!
//! Recommendations are read as text, every field as stored, so that validation stays a
//! decision of the core (SPEC 4 step 0): a row with a bad ticker, confidence, mode or
//! `generated_at` is captured and rejected with `invalid:<field>`, never dropped.

use std::collections::BTreeMap;
use std::io::BufRead;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tape_events::{RecommendationReceived, Timestamp};
use tokio_postgres::Client;

use crate::describe;

/// The seed's filter, with the two widenings that keep garbage from being dropped: rows
/// with a null `generated_at` or a mode that is no valid mode are captured too (the core
/// rejects them). `$1` account, `$2` cutoff (`now − recommendation_max_age` on the
/// daemon's clock), `$3` modes a valid row may have for this account.
const CANDIDATES: &str = "SELECT id, ticker, action, confidence::text, mode, \
     to_char(generated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), source \
     FROM recommendations \
     WHERE (account_id IS NULL OR account_id = $1) \
       AND action IN ('buy', 'sell') \
       AND (generated_at IS NULL OR generated_at > $2) \
       AND (mode IS NULL OR mode = ANY($3) OR mode NOT IN ('paper_eligible', 'live_eligible'))";

/// The modes a valid row may carry for an account (`live` accounts take only
/// `live_eligible`; SPEC 4 step 0).
#[must_use]
pub fn eligible_modes(live: bool) -> Vec<String> {
    if live {
        vec!["live_eligible".to_owned()]
    } else {
        vec!["paper_eligible".to_owned(), "live_eligible".to_owned()]
    }
}

/// Rows of `recommendations` eligible for `account` (all of the window, or only `ids`).
///
/// # Errors
/// The database's error.
pub async fn candidate_recommendations(
    client: &Client,
    account: &str,
    cutoff: Timestamp,
    modes: &[String],
    ids: Option<&[String]>,
) -> Result<Vec<RecommendationReceived>, tokio_postgres::Error> {
    let cutoff = cutoff.datetime();
    let rows = match ids {
        Some(ids) => {
            let sql = format!("{CANDIDATES} AND id = ANY($4) ORDER BY generated_at NULLS FIRST, id");
            client.query(&sql, &[&account, &cutoff, &modes, &ids]).await?
        }
        None => {
            let sql = format!("{CANDIDATES} ORDER BY generated_at NULLS FIRST, id");
            client.query(&sql, &[&account, &cutoff, &modes]).await?
        }
    };
    Ok(rows
        .iter()
        .map(|row| RecommendationReceived {
            recommendation_id: row.get(0),
            ticker: row.get(1),
            action: row.get(2),
            confidence: row.get(3),
            mode: row.get(4),
            generated_at: row.get::<_, Option<String>>(5).filter(|t| !t.is_empty()),
            source: row.get(6),
        })
        .collect())
}

/// Security reference data and the last `closes` daily closes per ticker.
///
/// # Errors
/// The database's error.
pub async fn reference_data(
    client: &Client,
    closes: i64,
) -> Result<(Vec<tape_events::SecurityUpdated>, Vec<tape_events::DailyBarObserved>), tokio_postgres::Error> {
    let securities = client
        .query(
            "SELECT ticker, sector, next_earnings_date FROM securities WHERE ticker IS NOT NULL ORDER BY ticker",
            &[],
        )
        .await?
        .iter()
        .map(|r| tape_events::SecurityUpdated { ticker: r.get(0), sector: r.get(1), next_earnings_date: r.get(2) })
        .collect();
    let bars = client
        .query(
            "SELECT ticker, date, close::text FROM (SELECT ticker, date, close, row_number() OVER \
             (PARTITION BY ticker ORDER BY date DESC) AS n FROM daily_bars WHERE close IS NOT NULL) b \
             WHERE n <= $1 ORDER BY date, ticker",
            &[&closes],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let close: String = r.get(2);
            Some(tape_events::DailyBarObserved {
                ticker: r.get(0),
                date: r.get(1),
                close: tape_events::Price::new(close.parse().ok()?),
            })
        })
        .collect();
    Ok((securities, bars))
}

// ----------------------------------------------------------------------------------------
// tape ingest
// ----------------------------------------------------------------------------------------

/// Which table a file goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Recommendations,
    Quotes,
    Securities,
    Bars,
}

impl Table {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Recommendations => "recommendations",
            Self::Quotes => "market_quotes",
            Self::Securities => "securities",
            Self::Bars => "daily_bars",
        }
    }

    const fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Recommendations => {
                &["id", "ticker", "action", "confidence", "mode", "generated_at", "source", "account_id"]
            }
            Self::Quotes => &["ticker", "price", "observed_at"],
            Self::Securities => &["ticker", "sector", "next_earnings_date"],
            Self::Bars => &["ticker", "date", "open", "high", "low", "close", "volume"],
        }
    }

    fn sql_type(self, column: &str) -> &'static str {
        match (self, column) {
            (Self::Recommendations, "confidence")
            | (Self::Quotes, "price")
            | (Self::Bars, "open" | "high" | "low" | "close") => "numeric",
            (Self::Recommendations, "generated_at") | (Self::Quotes, "observed_at") => "timestamptz",
            (Self::Securities, "next_earnings_date") | (Self::Bars, "date") => "date",
            (Self::Bars, "volume") => "bigint",
            _ => "text",
        }
    }

    const fn required(self) -> &'static [&'static str] {
        match self {
            Self::Recommendations => &["id"],
            Self::Quotes => &["ticker", "price", "observed_at"],
            Self::Securities => &["ticker"],
            Self::Bars => &["ticker", "date", "close"],
        }
    }
}

/// A row that was not loaded: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: invalid {} {:?}: {}", self.line, self.field, self.value, self.reason)
    }
}

/// Why a file could not be ingested at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {file}: {cause}")]
    Read { file: String, cause: std::io::Error },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("writing {table}: {message}")]
    Database { table: &'static str, message: String },
}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub rows: u64,
    pub loaded: u64,
    pub unchanged: u64,
    pub errors: Vec<RowError>,
}

/// A validated cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Number(Decimal),
    Time(DateTime<Utc>),
    Date(NaiveDate),
    Int(i64),
}

impl Cell {
    fn into_text(self) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Text(t) => Some(t),
            Self::Number(d) => Some(d.to_string()),
            Self::Time(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            Self::Date(d) => Some(d.to_string()),
            Self::Int(i) => Some(i.to_string()),
        }
    }
}

/// Reads a CSV (with a header) or JSON Lines file (by extension `.jsonl`/`.json`, or by
/// a first non-blank character `{`) as `(line, field → text)` records.
/// A file's records: `(line, field → text)`.
type Records = Vec<(u64, BTreeMap<String, Option<String>>)>;

/// Valid rows as `(line, cells)`, and the bad rows.
pub type Parsed = (Vec<(u64, Vec<Cell>)>, Vec<RowError>);

fn read_records(text: &str, file: &str) -> Result<Records, IngestError> {
    let json = file.ends_with(".jsonl") || file.ends_with(".json") || text.trim_start().starts_with('{');
    let mut out = Vec::new();
    if json {
        for (index, line) in text.lines().enumerate() {
            let line_no = index as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    out.push((line_no, BTreeMap::from([("\0".to_owned(), Some(e.to_string()))])));
                    continue;
                }
            };
            let Some(object) = value.as_object() else {
                out.push((line_no, BTreeMap::from([("\0".to_owned(), Some("not a JSON object".to_owned()))])));
                continue;
            };
            let record = object
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    };
                    (k.clone(), text)
                })
                .collect();
            out.push((line_no, record));
        }
    } else {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| IngestError::Format { file: file.to_owned(), message: e.to_string() })?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        for record in reader.records() {
            let record = record.map_err(|e| IngestError::Format { file: file.to_owned(), message: e.to_string() })?;
            let line_no = record.position().map_or(0, csv::Position::line);
            let map = headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.clone(), (!v.is_empty()).then(|| v.to_owned())))
                .collect();
            out.push((line_no, map));
        }
    }
    Ok(out)
}

fn cell(table: Table, field: &str, text: Option<&String>) -> Result<Cell, String> {
    let Some(text) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) else {
        return if table.required().contains(&field) { Err("is required".to_owned()) } else { Ok(Cell::Null) };
    };
    match (table, field) {
        (Table::Recommendations, "confidence")
        | (Table::Quotes, "price")
        | (Table::Bars, "open" | "high" | "low" | "close") => {
            let value = tape_events::money::parse_plain_decimal(text).map_err(|_| "is not a decimal number")?;
            if table != Table::Recommendations && value <= Decimal::ZERO {
                return Err("must be above 0".to_owned());
            }
            Ok(Cell::Number(value))
        }
        (Table::Recommendations, "generated_at") | (Table::Quotes, "observed_at") => DateTime::parse_from_rfc3339(text)
            .map(|t| Cell::Time(t.with_timezone(&Utc)))
            .map_err(|e| format!("is not an RFC 3339 time ({e})")),
        (Table::Securities, "next_earnings_date") | (Table::Bars, "date") => {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(Cell::Date).map_err(|_| "is not a date YYYY-MM-DD".into())
        }
        (Table::Bars, "volume") => text.parse::<i64>().map(Cell::Int).map_err(|_| "is not a whole number".into()),
        (Table::Quotes | Table::Securities | Table::Bars, "ticker") if !tape_events::ids::is_valid_ticker(text) => {
            Err("must match ^[A-Z][A-Z0-9.-]{0,9}$".into())
        }
        // Recommendation text fields are kept as received: validating them is the core's
        // job (a bad ticker becomes a recorded `invalid:ticker`).
        _ => Ok(Cell::Text(text.to_owned())),
    }
}

/// Parses and validates a file for `table`: the valid rows, and an error per bad row.
///
/// # Errors
/// [`IngestError`] when the file is not CSV or JSON Lines at all.
pub fn parse_file(table: Table, reader: impl BufRead, file: &str) -> Result<Parsed, IngestError> {
    let mut text = String::new();
    let mut reader = reader;
    reader.read_to_string(&mut text).map_err(|cause| IngestError::Read { file: file.to_owned(), cause })?;
    let columns = table.columns();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    'rows: for (line, record) in read_records(&text, file)? {
        if let Some(Some(message)) = record.get("\0") {
            errors.push(RowError { line, field: "line".into(), value: String::new(), reason: message.clone() });
            continue;
        }
        if let Some(unknown) = record.keys().find(|k| !columns.contains(&k.as_str()) && k.as_str() != "name") {
            errors.push(RowError {
                line,
                field: unknown.clone(),
                value: record.get(unknown).cloned().flatten().unwrap_or_default(),
                reason: format!("is not a column of {} ({})", table.name(), columns.join(", ")),
            });
            continue;
        }
        let mut cells = Vec::with_capacity(columns.len());
        for field in columns {
            // The sample bars name the ticker column `Name`.
            let text = record.get(*field).or_else(|| (*field == "ticker").then(|| record.get("name")).flatten());
            match cell(table, field, text.and_then(Option::as_ref)) {
                Ok(c) => cells.push(c),
                Err(reason) => {
                    let value = text.cloned().flatten().unwrap_or_default();
                    errors.push(RowError { line, field: (*field).to_owned(), value, reason });
                    continue 'rows;
                }
            }
        }
        rows.push((line, cells));
    }
    Ok((rows, errors))
}

/// Loads a file into its table: valid rows are inserted (recommendations: a known id is
/// left as it is; the others are upserted), bad rows reported.
///
/// # Errors
/// [`IngestError`] when the file cannot be read or the database refuses.
pub async fn ingest(
    client: &Client,
    table: Table,
    reader: impl BufRead,
    file: &str,
) -> Result<IngestReport, IngestError> {
    let (rows, errors) = parse_file(table, reader, file)?;
    let mut report = IngestReport { rows: (rows.len() + errors.len()) as u64, errors, ..IngestReport::default() };
    let columns = table.columns();
    let placeholders: Vec<String> =
        columns.iter().enumerate().map(|(i, c)| format!("${}::text::{}", i + 1, table.sql_type(c))).collect();
    let conflict = match table {
        Table::Recommendations => "ON CONFLICT (id) DO NOTHING".to_owned(),
        Table::Bars => format!(
            "ON CONFLICT (ticker, date) DO UPDATE SET {}",
            columns[2..].iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ")
        ),
        _ => format!(
            "ON CONFLICT (ticker) DO UPDATE SET {}",
            columns[1..].iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ")
        ),
    };
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({}) {conflict}",
        table.name(),
        columns.join(", "),
        placeholders.join(", ")
    );
    let db = |e: tokio_postgres::Error| IngestError::Database { table: table.name(), message: describe(&e) };
    let statement = client.prepare(&sql).await.map_err(db)?;
    for (_line, cells) in rows {
        let texts: Vec<Option<String>> = cells.into_iter().map(Cell::into_text).collect();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            texts.iter().map(|t| t as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let changed = client.execute(&statement, &refs).await.map_err(db)?;
        if changed == 0 {
            report.unchanged += 1;
        } else {
            report.loaded += 1;
        }
    }
    Ok(report)
}

/// Inserts a recommendation row (the demo's feed, tests and benchmarks).
///
/// # Errors
/// The database's error.
pub async fn insert_recommendation(
    client: &Client,
    rec: &RecommendationReceived,
    account_id: Option<&str>,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO recommendations (id, ticker, action, confidence, mode, generated_at, source, account_id) \
             VALUES ($1, $2, $3, $4::text::numeric, $5, $6::text::timestamptz, $7, $8) ON CONFLICT (id) DO NOTHING",
            &[
                &rec.recommendation_id,
                &rec.ticker,
                &rec.action,
                &rec.confidence,
                &rec.mode,
                &rec.generated_at,
                &rec.source,
                &account_id,
            ],
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_name_line_field_and_value_and_good_rows_load() {
        let csv = "ticker,price,observed_at\nAAPL,176.15,2024-03-04T14:35:00Z\nMSFT,abc,2024-03-04T14:35:00Z\n\
                   bad ticker,1,2024-03-04T14:35:00Z\nIBM,5,yesterday\n";
        let (rows, errors) = parse_file(Table::Quotes, csv.as_bytes(), "q.csv").unwrap();
        assert_eq!(rows.len(), 1);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text[0], "line 3: invalid price \"abc\": is not a decimal number");
        assert!(text[1].starts_with("line 4: invalid ticker \"bad ticker\""), "{}", text[1]);
        assert!(text[2].starts_with("line 5: invalid observed_at \"yesterday\""), "{}", text[2]);
    }

    #[test]
    fn recommendation_text_fields_are_kept_for_the_core_to_judge() {
        let jsonl =
            "{\"id\":\"r-1\",\"ticker\":\"not a ticker\",\"action\":\"buy\",\"confidence\":0.8,\"mode\":\"x\"}\n\
                     {\"id\":\"r-2\",\"confidence\":\"high\"}\n{\"ticker\":\"AAPL\"}\n";
        let (rows, errors) = parse_file(Table::Recommendations, jsonl.as_bytes(), "r.jsonl").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(errors[0].to_string(), "line 2: invalid confidence \"high\": is not a decimal number");
        assert_eq!(errors[1].to_string(), "line 3: invalid id \"\": is required");
    }
}
