//! Reading daily bars and sectors from CSV (plain or gzip-compressed), reporting every
//! bad row with its line number, field and value, and repairing or skipping it by the
//! rules of `docs/scenario-format.md`:
//!
//! - a row with the wrong number of fields, a blank or unparsable ticker, date or close,
//!   or a close ≤ 0 is **skipped**;
//! - a later row for a (ticker, date) already read is **skipped** (the first one wins);
//! - a blank, unparsable or non-positive open is **repaired** to the previous close of
//!   the ticker (its own close when it has none); a bad high becomes `max(open, close)`,
//!   a bad low `min(open, close)`;
//! - a high below `max(open, close)` is **raised** to it; a low above `min(open, close)`
//!   is **lowered** to it;
//! - a zero volume is **kept** (volume plays no part in the path model) and reported.
//!
//! Only rows of the wanted tickers are examined, so a report never drowns in other
//! tickers' quirks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, BufReader, Read};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::FromBarsError;

/// One validated (and perhaps repaired) daily bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyBar {
    pub date: NaiveDate,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    /// The close exactly as written in the file (its scale is kept).
    pub close: Decimal,
}

/// What happened to a bad row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueAction {
    Skipped,
    Repaired(String),
    Kept,
}

/// A bad row (or field) of an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIssue {
    /// The 1-based line in the file.
    pub line: u64,
    /// `TICKER DATE` when known.
    pub row: String,
    pub field: String,
    pub value: String,
    pub problem: String,
    pub action: IssueAction,
}

impl fmt::Display for RowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if !self.row.is_empty() {
            write!(f, " ({})", self.row)?;
        }
        write!(f, ": {} {:?} {}", self.field, self.value, self.problem)?;
        match &self.action {
            IssueAction::Skipped => write!(f, "; row skipped"),
            IssueAction::Repaired(how) => write!(f, "; repaired: {how}"),
            IssueAction::Kept => write!(f, "; kept"),
        }
    }
}

/// The bars of the wanted tickers, by ticker and date, and what was wrong on the way.
#[derive(Debug, Clone, Default)]
pub struct BarSet {
    pub bars: BTreeMap<String, BTreeMap<NaiveDate, DailyBar>>,
    pub issues: Vec<RowIssue>,
}

/// Sector per ticker, and what was wrong on the way.
#[derive(Debug, Clone, Default)]
pub struct SectorSet {
    pub sectors: BTreeMap<String, String>,
    pub issues: Vec<RowIssue>,
}

/// Wraps a reader, decompressing it when it starts with the gzip magic bytes.
fn maybe_gunzip<'a>(reader: impl Read + 'a, file: &str) -> Result<Box<dyn Read + 'a>, FromBarsError> {
    let mut buffered = BufReader::new(reader);
    let head = buffered.fill_buf().map_err(|source| FromBarsError::Read { file: file.to_owned(), source })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

fn csv_error(file: &str, error: csv::Error) -> FromBarsError {
    let line = error.position().map_or(0, csv::Position::line);
    FromBarsError::Csv { file: file.to_owned(), line, message: error.to_string() }
}

/// The index of the first header among `names` (case-insensitive).
fn column(headers: &csv::StringRecord, names: &[&str], file: &str) -> Result<usize, FromBarsError> {
    headers.iter().position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n))).ok_or_else(|| {
        FromBarsError::MissingColumn {
            file: file.to_owned(),
            column: names.join(" or "),
            found: headers.iter().collect::<Vec<_>>().join(","),
        }
    })
}

/// A price field as read: a positive decimal, or why not.
fn price_field(text: &str) -> Result<Decimal, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is blank");
    }
    match tape_events::money::parse_plain_decimal(text) {
        Ok(value) if value > Decimal::ZERO => Ok(value),
        Ok(_) => Err("is not positive"),
        Err(_) => Err("is not a decimal number"),
    }
}

struct RawRow {
    line: u64,
    open: Result<Decimal, (&'static str, String)>,
    high: Result<Decimal, (&'static str, String)>,
    low: Result<Decimal, (&'static str, String)>,
    close: Decimal,
}

/// Reads daily bars (`date,open,high,low,close,volume,Name`; the ticker column may also
/// be called `ticker` or `symbol`; `volume` is optional) for the `wanted` tickers.
///
/// # Errors
/// [`FromBarsError`] when the file cannot be read, is not CSV, or lacks a column. Bad
/// rows are not errors: they are in [`BarSet::issues`].
pub fn read_bars(reader: impl Read, file: &str, wanted: &BTreeSet<String>) -> Result<BarSet, FromBarsError> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(maybe_gunzip(reader, file)?);
    let headers = csv.headers().map_err(|e| csv_error(file, e))?.clone();
    let date_col = column(&headers, &["date"], file)?;
    let open_col = column(&headers, &["open"], file)?;
    let high_col = column(&headers, &["high"], file)?;
    let low_col = column(&headers, &["low"], file)?;
    let close_col = column(&headers, &["close"], file)?;
    let volume_col = column(&headers, &["volume"], file).ok();
    let ticker_col = column(&headers, &["name", "ticker", "symbol"], file)?;

    let mut set = BarSet::default();
    let mut raw: BTreeMap<String, BTreeMap<NaiveDate, RawRow>> = BTreeMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(file, e)),
        }
        let line = record.position().map_or(0, csv::Position::line);
        let mut issue = |row: String, field: &str, value: &str, problem: String, action| {
            set.issues.push(RowIssue { line, row, field: field.to_owned(), value: value.to_owned(), problem, action });
        };
        if record.len() != headers.len() {
            // Which field is the ticker is unknowable here: report it whatever its ticker.
            issue(
                String::new(),
                "row",
                &record.iter().collect::<Vec<_>>().join(","),
                format!("has {} fields, expected {}", record.len(), headers.len()),
                IssueAction::Skipped,
            );
            continue;
        }
        let ticker = record.get(ticker_col).unwrap_or("").trim();
        if !wanted.contains(ticker) {
            continue;
        }
        let field = |index: usize| record.get(index).unwrap_or("");
        let Ok(date) = NaiveDate::parse_from_str(field(date_col).trim(), "%Y-%m-%d") else {
            issue(
                ticker.to_owned(),
                "date",
                field(date_col),
                "is not a date (YYYY-MM-DD)".into(),
                IssueAction::Skipped,
            );
            continue;
        };
        let row = format!("{ticker} {date}");
        let close = match price_field(field(close_col)) {
            Ok(close) => close,
            Err(problem) => {
                issue(row, "close", field(close_col), problem.into(), IssueAction::Skipped);
                continue;
            }
        };
        if let Some(volume_col) = volume_col {
            let volume = field(volume_col).trim();
            if volume.parse::<u64>() == Ok(0) {
                issue(row.clone(), "volume", volume, "is zero".into(), IssueAction::Kept);
            }
        }
        let keep = |index: usize| price_field(field(index)).map_err(|p| (p, field(index).to_owned()));
        let parsed = RawRow { line, open: keep(open_col), high: keep(high_col), low: keep(low_col), close };
        let rows = raw.entry(ticker.to_owned()).or_default();
        if let Some(first) = rows.get(&date) {
            let problem = format!("repeats the row of line {}", first.line);
            issue(row, "date", &date.to_string(), problem, IssueAction::Skipped);
            continue;
        }
        rows.insert(date, parsed);
    }

    for (ticker, rows) in raw {
        let mut previous_close: Option<Decimal> = None;
        let mut bars = BTreeMap::new();
        for (date, row) in rows {
            let mut issue = |field: &str, value: &str, problem: String, how: String| {
                set.issues.push(RowIssue {
                    line: row.line,
                    row: format!("{ticker} {date}"),
                    field: field.to_owned(),
                    value: value.to_owned(),
                    problem,
                    action: IssueAction::Repaired(how),
                });
            };
            let close = row.close;
            let open = match row.open {
                Ok(open) => open,
                Err((problem, value)) => {
                    let (open, how) = match previous_close {
                        Some(prev) => (prev, format!("open = previous close {prev}")),
                        None => (close, format!("open = close {close} (no previous close)")),
                    };
                    issue("open", &value, problem.into(), how);
                    open
                }
            };
            let top = open.max(close);
            let bottom = open.min(close);
            let high = match row.high {
                Ok(high) if high >= top => high,
                Ok(high) => {
                    issue(
                        "high",
                        &high.to_string(),
                        format!("is below max(open, close) = {top}"),
                        format!("high = {top}"),
                    );
                    top
                }
                Err((problem, value)) => {
                    issue("high", &value, problem.into(), format!("high = max(open, close) = {top}"));
                    top
                }
            };
            let low = match row.low {
                Ok(low) if low <= bottom => low,
                Ok(low) => {
                    issue(
                        "low",
                        &low.to_string(),
                        format!("is above min(open, close) = {bottom}"),
                        format!("low = {bottom}"),
                    );
                    bottom
                }
                Err((problem, value)) => {
                    issue("low", &value, problem.into(), format!("low = min(open, close) = {bottom}"));
                    bottom
                }
            };
            previous_close = Some(close);
            bars.insert(date, DailyBar { date, open, high, low, close });
        }
        set.bars.insert(ticker, bars);
    }
    set.issues.sort_by_key(|issue| issue.line);
    Ok(set)
}

/// Reads sectors (`Symbol,…,Sector,…`; the ticker column may also be called `ticker`).
///
/// # Errors
/// [`FromBarsError`] when the file cannot be read, is not CSV, or lacks a column. Rows
/// with a blank ticker or sector, or a repeated ticker, are in [`SectorSet::issues`].
pub fn read_sectors(reader: impl Read, file: &str) -> Result<SectorSet, FromBarsError> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(maybe_gunzip(reader, file)?);
    let headers = csv.headers().map_err(|e| csv_error(file, e))?.clone();
    let ticker_col = column(&headers, &["symbol", "ticker"], file)?;
    let sector_col = column(&headers, &["sector"], file)?;
    let mut set = SectorSet::default();
    for record in csv.records() {
        let record = record.map_err(|e| csv_error(file, e))?;
        let line = record.position().map_or(0, csv::Position::line);
        let ticker = record.get(ticker_col).unwrap_or("").trim();
        let sector = record.get(sector_col).unwrap_or("").trim();
        let problem = if ticker.is_empty() {
            Some(("ticker", ticker, "is blank".to_owned()))
        } else if sector.is_empty() {
            Some(("sector", sector, "is blank".to_owned()))
        } else if set.sectors.contains_key(ticker) {
            Some(("ticker", ticker, "repeats an earlier row".to_owned()))
        } else {
            None
        };
        if let Some((field, value, problem)) = problem {
            set.issues.push(RowIssue {
                line,
                row: ticker.to_owned(),
                field: field.to_owned(),
                value: value.to_owned(),
                problem,
                action: IssueAction::Skipped,
            });
            continue;
        }
        set.sectors.insert(ticker.to_owned(), sector.to_owned());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn wanted(tickers: &[&str]) -> BTreeSet<String> {
        tickers.iter().map(|t| (*t).to_owned()).collect()
    }

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    const BAD: &str = "\
date,open,high,low,close,volume,Name
2016-01-11,88.00,89.00,87.00,88.21,1000,DHR
2016-01-12,,,,88.55,0,DHR
2014-05-19,23.89,23.595,23.85,24.445,1944854,AOS
2014-05-20,x,25,24,24.5,10,AOS
2014-05-21,24,25,24,,10,AOS
2014-05-22,24,25,24,24.5,10,AOS
2014-05-22,24,25,24,24.9,10,AOS
2014-05-23,24,25,24,24.5,AOS
2014-5-x,24,25,24,24.5,10,AOS
2014-05-26,24,25,24,24.5,10,ZZZ
2014-05-27,24,25,24.2,24.1,10,AOS
";

    #[test]
    fn bad_rows_are_reported_with_line_field_and_value_and_repaired_or_skipped() {
        let set = read_bars(BAD.as_bytes(), "bad.csv", &wanted(&["DHR", "AOS"])).unwrap();
        let lines: Vec<String> = set.issues.iter().map(ToString::to_string).collect();
        let expect = [
            r#"line 3 (DHR 2016-01-12): volume "0" is zero; kept"#,
            r#"line 3 (DHR 2016-01-12): open "" is blank; repaired: open = previous close 88.21"#,
            r#"line 3 (DHR 2016-01-12): high "" is blank; repaired: high = max(open, close) = 88.55"#,
            r#"line 3 (DHR 2016-01-12): low "" is blank; repaired: low = min(open, close) = 88.21"#,
            r#"line 4 (AOS 2014-05-19): high "23.595" is below max(open, close) = 24.445; repaired: high = 24.445"#,
            r#"line 5 (AOS 2014-05-20): open "x" is not a decimal number; repaired: open = previous close 24.445"#,
            r#"line 6 (AOS 2014-05-21): close "" is blank; row skipped"#,
            r#"line 8 (AOS 2014-05-22): date "2014-05-22" repeats the row of line 7; row skipped"#,
            r#"line 9: row "2014-05-23,24,25,24,24.5,AOS" has 6 fields, expected 7; row skipped"#,
            r#"line 10 (AOS): date "2014-5-x" is not a date (YYYY-MM-DD); row skipped"#,
            r#"line 12 (AOS 2014-05-27): low "24.2" is above min(open, close) = 24; repaired: low = 24"#,
        ];
        assert_eq!(lines, expect);
        let dhr = &set.bars["DHR"][&NaiveDate::from_ymd_opt(2016, 1, 12).unwrap()];
        assert_eq!((dhr.open, dhr.high, dhr.low, dhr.close), (dec("88.21"), dec("88.55"), dec("88.21"), dec("88.55")));
        let aos = &set.bars["AOS"];
        assert_eq!(aos.len(), 4, "19th, 20th, the first 22nd and 27th");
        assert_eq!(aos[&NaiveDate::from_ymd_opt(2014, 5, 22).unwrap()].close, dec("24.5"));
        assert!(!set.bars.contains_key("ZZZ"), "unwanted tickers are not read");
    }

    #[test]
    fn gzip_is_detected_by_its_magic_bytes() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(BAD.as_bytes()).unwrap();
        let gz = encoder.finish().unwrap();
        let plain = read_bars(BAD.as_bytes(), "a.csv", &wanted(&["DHR", "AOS"])).unwrap();
        let unzipped = read_bars(gz.as_slice(), "a.csv.gz", &wanted(&["DHR", "AOS"])).unwrap();
        assert_eq!(plain.bars, unzipped.bars);
    }

    #[test]
    fn a_missing_column_is_an_error_naming_it() {
        let error = read_bars("date,open,high,low,Name\n".as_bytes(), "x.csv", &wanted(&["A"])).unwrap_err();
        assert_eq!(error.to_string(), r#"x.csv has no column "close" (its header is "date,open,high,low,Name")"#);
    }

    #[test]
    fn sectors_keep_quoted_commas_and_report_blanks() {
        let text =
            "Symbol,Name,Sector\nGE,\"General Electric, a GE Company\",Industrials\nXX,Blank,\nGE,Again,Energy\n";
        let set = read_sectors(text.as_bytes(), "s.csv").unwrap();
        assert_eq!(set.sectors.get("GE").map(String::as_str), Some("Industrials"));
        assert_eq!(set.issues.len(), 2);
        assert_eq!(set.issues[0].to_string(), r#"line 3 (XX): sector "" is blank; row skipped"#);
    }
}
