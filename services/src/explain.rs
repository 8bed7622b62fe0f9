//! Reading a whole account stream, and re-deciding it through the core from scratch:
//! `tape demo`'s end-of-day check (every recorded decision decided again, byte for byte).
//! Explanations are `tape audit explain`'s ([`crate::audit`]).

use futures_util::StreamExt;
use tape_commands::{Engine, Input, StepOutcome};
use tape_events::Stamped;
use uuid::Uuid;

use crate::store::{EventStore, StoreError};

/// A stream read whole: `(event id, event)` in version order.
///
/// # Errors
/// [`StoreError`] when it cannot be read or decoded.
pub async fn read_account(store: &EventStore, account: &str) -> Result<Vec<(Uuid, Stamped)>, StoreError> {
    let stream = tape_events::ids::account_stream(account);
    let mut rows = store.stream_stream(&stream, 1).await?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().await {
        let stored = row?.event;
        // A check that skipped what it cannot read would vouch for a stream it never saw.
        let stamped = stored
            .decode()
            .map_err(|error| StoreError::Corrupt { position: stored.position, reason: error.to_string() })?;
        out.push((stored.event_id, stamped));
    }
    Ok(out)
}

/// The outcome of [`redecide`].
#[derive(Debug, Clone, Default)]
pub struct Redecided {
    /// Inputs decided again.
    pub inputs: u64,
    /// Decisions compared.
    pub decisions: u64,
    /// The first divergences (at most 10), each naming the stream position.
    pub divergences: Vec<String>,
}

/// Folds the stream from scratch and decides every input again through the core,
/// comparing each recorded decision with the replayed one (same ids, same payloads).
#[must_use]
pub fn redecide(events: &[(Uuid, Stamped)]) -> Redecided {
    let mut engine = Engine::default();
    let mut report = Redecided::default();
    let mut out = Vec::new();
    let mut i = 0;
    let diverge = |report: &mut Redecided, text: String| {
        if report.divergences.len() < 10 {
            report.divergences.push(text);
        }
    };
    while i < events.len() {
        let (id, stamped) = &events[i];
        if !stamped.event.is_input() {
            diverge(
                &mut report,
                format!("version {}: decision {} without its input", i + 1, stamped.event.event_type()),
            );
            engine.apply(stamped);
            i += 1;
            continue;
        }
        report.inputs += 1;
        out.clear();
        match engine.step(Input { id: *id, stamped: stamped.clone() }, &mut out) {
            Ok(StepOutcome::Recorded { decisions }) => {
                for (k, decided) in out.iter().enumerate().skip(1) {
                    let recorded = events.get(i + k);
                    let expected_id = tape_events::ids::decision_event_id(*id, k - 1);
                    match recorded {
                        Some((rid, r)) if *rid == expected_id && r == decided => {}
                        _ => diverge(
                            &mut report,
                            format!(
                                "version {}: recomputed {} differs from the record",
                                i + k + 1,
                                decided.event.event_type()
                            ),
                        ),
                    }
                }
                report.decisions += decisions as u64;
                i += 1 + decisions;
            }
            Ok(StepOutcome::Unchanged) => {
                diverge(
                    &mut report,
                    format!("version {}: recorded {} changes nothing now", i + 1, stamped.event.event_type()),
                );
                engine.apply(stamped);
                i += 1;
            }
            Err(error) => {
                diverge(
                    &mut report,
                    format!("version {}: recorded {} is refused now: {error}", i + 1, stamped.event.event_type()),
                );
                engine.apply(stamped);
                i += 1;
            }
        }
    }
    report
}
