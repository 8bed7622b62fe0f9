//! Verification: every stream's hash chain recomputed from the stored rows.
//!
//! Each stream is read in version order (streamed) and checked with
//! [`ChainVerifier`]: versions 1, 2, 3…, each `prev_hash` the previous `hash`, each
//! `hash` the hash of the event's content. The report names every broken stream's first
//! bad event, and the first bad global position overall. It also returns each stream's
//! head hash (hex) to keep outside the database, and checks heads kept earlier: an
//! expected head must still be a hash of the chain, else the newest events were removed
//! or rewritten. Finally each chain's end must match the stream's row in `streams`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use futures_util::StreamExt;
use tape_events::chain::{ChainBreak, ChainVerifier, Hash};
use tokio_postgres::types::ToSql;

use super::read::{decode_row, EVENT_COLUMNS};
use super::{EventStore, StoreError};

/// One stream's verified head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub stream_id: String,
    /// The version of the last event whose link verified (0: none).
    pub version: i64,
    /// That event's hash, lowercase hex: keep it outside the database.
    pub head_hash: String,
    /// Events of the stream read.
    pub events: u64,
    /// Whether the whole stream verified.
    pub intact: bool,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The event's content does not hash to its stored `hash` (it was changed).
    HashMismatch,
    /// The event's `prev_hash` is not the previous event's hash (an event before it was
    /// removed, inserted or reordered).
    PrevMismatch,
    /// Versions skip or repeat.
    VersionGap { expected: i64, found: i64 },
    /// The row does not decode (wrong hash length, metadata of another shape).
    Unreadable { reason: String },
    /// A head kept outside the database is not in the chain any more.
    ExpectedHeadMissing { expected: String },
    /// The chain's end and the stream's `streams` row disagree.
    HeadRowMismatch { row_version: Option<i64>, row_hash: Option<String> },
}

/// The first problem of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub stream_id: String,
    pub stream_version: i64,
    /// The global position of the bad event, when there is one (a missing head has none).
    pub position: Option<i64>,
    pub kind: ProblemKind,
}

impl fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => {
                write!(f, "position {position} (stream {} version {}): ", self.stream_id, self.stream_version)?
            }
            None => write!(f, "stream {} after version {}: ", self.stream_id, self.stream_version)?,
        }
        match &self.kind {
            ProblemKind::HashMismatch => f.write_str("content does not match its hash (changed)"),
            ProblemKind::PrevMismatch => {
                f.write_str("prev_hash is not the previous event's hash (an event removed or inserted before it)")
            }
            ProblemKind::VersionGap { expected, found } => write!(f, "version {found} where {expected} was expected"),
            ProblemKind::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            ProblemKind::ExpectedHeadMissing { expected } => {
                write!(f, "the kept head {expected} is not in the chain (newest events removed or rewritten)")
            }
            ProblemKind::HeadRowMismatch { row_version, row_hash } => write!(
                f,
                "the streams row says version {} head {}",
                row_version.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                row_hash.as_deref().unwrap_or("none")
            ),
        }
    }
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub events_checked: u64,
    /// Every stream, by stream id.
    pub streams: Vec<StreamHead>,
    /// Each broken stream's first problem, by global position (those without one last).
    pub problems: Vec<ChainProblem>,
}

impl VerifyReport {
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problem at the lowest global position.
    #[must_use]
    pub fn first_problem(&self) -> Option<&ChainProblem> {
        self.problems.first()
    }
}

/// Parses a 64-digit hex hash (a kept head).
///
/// # Errors
/// [`StoreError::Invalid`] naming the text.
pub fn parse_hash_hex(text: &str) -> Result<Hash, StoreError> {
    let invalid =
        |reason: &str| StoreError::Invalid { what: "head hash", value: text.to_owned(), reason: reason.to_owned() };
    let bytes = hex::decode(text.trim()).map_err(|_| invalid("not hexadecimal"))?;
    Hash::try_from(bytes.as_slice()).map_err(|_| invalid("must be 64 hex digits"))
}

/// Checks one stream's rows as they come.
struct StreamCheck {
    stream_id: String,
    verifier: ChainVerifier,
    version: i64,
    events: u64,
    problem: Option<ChainProblem>,
    expected_head: Option<Hash>,
    expected_seen: bool,
}

impl StreamCheck {
    fn new(stream_id: String, expected_head: Option<Hash>) -> Self {
        Self {
            stream_id,
            verifier: ChainVerifier::default(),
            version: 0,
            events: 0,
            problem: None,
            expected_seen: false,
            expected_head,
        }
    }

    fn problem(&mut self, stream_version: i64, position: Option<i64>, kind: ProblemKind) {
        if self.problem.is_none() {
            self.problem = Some(ChainProblem { stream_id: self.stream_id.clone(), stream_version, position, kind });
        }
    }

    fn row(&mut self, row: Result<super::GlobalEvent, StoreError>, position_hint: i64, version_hint: i64) {
        self.events += 1;
        if self.problem.is_some() {
            return;
        }
        let event = match row {
            Ok(event) => event.event,
            Err(error) => {
                self.problem(version_hint, Some(position_hint), ProblemKind::Unreadable { reason: error.to_string() });
                return;
            }
        };
        match self.verifier.check(&event.chained(), &event.prev_hash, &event.hash) {
            Ok(()) => {
                self.version = event.stream_version;
                if self.expected_head == Some(event.hash) {
                    self.expected_seen = true;
                }
            }
            Err(ChainBreak::HashMismatch { stream_version }) => {
                self.problem(stream_version, Some(event.position), ProblemKind::HashMismatch);
            }
            Err(ChainBreak::PrevMismatch { stream_version }) => {
                self.problem(stream_version, Some(event.position), ProblemKind::PrevMismatch);
            }
            Err(ChainBreak::VersionGap { expected, found }) => {
                self.problem(found, Some(event.position), ProblemKind::VersionGap { expected, found });
            }
        }
    }

    fn finish(mut self, row: Option<(i64, Vec<u8>)>) -> (StreamHead, Option<ChainProblem>) {
        let head = *self.verifier.head();
        if self.problem.is_none() {
            if let Some(expected) = self.expected_head {
                if !self.expected_seen {
                    self.problem(
                        self.version,
                        None,
                        ProblemKind::ExpectedHeadMissing { expected: hex::encode(expected) },
                    );
                }
            }
        }
        if self.problem.is_none() {
            let matches = row.as_ref().is_some_and(|(v, h)| *v == self.version && h.as_slice() == head.as_slice());
            if !matches {
                let (row_version, row_hash) = match row {
                    Some((v, h)) => (Some(v), Some(hex::encode(h))),
                    None => (None, None),
                };
                self.problem(self.version, None, ProblemKind::HeadRowMismatch { row_version, row_hash });
            }
        }
        let summary = StreamHead {
            stream_id: self.stream_id,
            version: self.version,
            head_hash: hex::encode(head),
            events: self.events,
            intact: self.problem.is_none(),
        };
        (summary, self.problem)
    }
}

const STREAM_ROWS_SQL: &str = "SELECT stream_id, version, head_hash FROM streams";

impl EventStore {
    /// Verifies every stream. `expected_heads` are heads kept outside the database
    /// (stream id → hash); each must still be in its stream's chain.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure (a bad row is a problem in the report).
    pub async fn verify_all(&self, expected_heads: &BTreeMap<String, Hash>) -> Result<VerifyReport, StoreError> {
        self.verify(None, expected_heads).await
    }

    /// Verifies one stream, against a kept head if given.
    ///
    /// # Errors
    /// [`StoreError`] on a database failure (a bad row is a problem in the report).
    pub async fn verify_stream(
        &self,
        stream_id: &str,
        expected_head: Option<&Hash>,
    ) -> Result<VerifyReport, StoreError> {
        let expected: BTreeMap<String, Hash> = expected_head.map(|h| (stream_id.to_owned(), *h)).into_iter().collect();
        self.verify(Some(stream_id), &expected).await
    }

    async fn verify(
        &self,
        only: Option<&str>,
        expected_heads: &BTreeMap<String, Hash>,
    ) -> Result<VerifyReport, StoreError> {
        let client = self.inner.pool.get().await?;
        // One repeatable-read snapshot for the rows and the heads, so concurrent appends
        // cannot make them disagree.
        let mut client = client;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;

        let mut head_rows: BTreeMap<String, (i64, Vec<u8>)> = BTreeMap::new();
        let rows = match only {
            Some(stream) => tx.query(&format!("{STREAM_ROWS_SQL} WHERE stream_id = $1"), &[&stream]).await?,
            None => tx.query(STREAM_ROWS_SQL, &[]).await?,
        };
        for row in rows {
            head_rows.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }

        let filter = if only.is_some() { "WHERE stream_id = $1" } else { "" };
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events {filter} ORDER BY stream_id, stream_version");
        let params: Vec<&(dyn ToSql + Sync)> = match &only {
            Some(stream) => vec![stream],
            None => vec![],
        };
        let rows = tx.query_raw(&sql, params).await?;
        futures_util::pin_mut!(rows);

        let mut report = VerifyReport::default();
        let mut problems = Vec::new();
        let mut current: Option<StreamCheck> = None;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        while let Some(row) = rows.next().await {
            let row = row?;
            report.events_checked += 1;
            let stream_id: String = row.try_get(2)?;
            let position: i64 = row.try_get(0)?;
            let version: i64 = row.try_get(3)?;
            if current.as_ref().is_none_or(|c| c.stream_id != stream_id) {
                if let Some(done) = current.take() {
                    let head_row = head_rows.remove(&done.stream_id);
                    let (summary, problem) = done.finish(head_row);
                    report.streams.push(summary);
                    problems.extend(problem);
                }
                seen.insert(stream_id.clone());
                let expected = expected_heads.get(&stream_id).copied();
                current = Some(StreamCheck::new(stream_id, expected));
            }
            if let Some(check) = current.as_mut() {
                check.row(decode_row(&row), position, version);
            }
        }
        if let Some(done) = current.take() {
            let head_row = head_rows.remove(&done.stream_id);
            let (summary, problem) = done.finish(head_row);
            report.streams.push(summary);
            problems.extend(problem);
        }
        // Streams with a head (or a kept head) but no events left at all.
        let mut empty: BTreeSet<String> = head_rows.keys().cloned().collect();
        empty.extend(
            expected_heads.keys().filter(|s| !seen.contains(*s) && only.is_none_or(|o| o == s.as_str())).cloned(),
        );
        for stream_id in empty {
            let expected = expected_heads.get(&stream_id).copied();
            let check = StreamCheck::new(stream_id.clone(), expected);
            let (summary, problem) = check.finish(head_rows.remove(&stream_id));
            report.streams.push(summary);
            problems.extend(problem);
        }
        tx.commit().await?;

        report.streams.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        problems.sort_by_key(|p| (p.position.is_none(), p.position, p.stream_id.clone()));
        report.problems = problems;
        Ok(report)
    }
}
