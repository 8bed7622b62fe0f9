//! Reading a scenario file (SPEC 12): JSON Lines, one input per line, `type` and `at`
//! plus the payload's fields. Decimal values may be strings or plain JSON numbers.
//!
//! The hot path (quotes, recommendations) parses a line once into a borrowed struct; any
//! line that fails it is parsed again through `serde_json::Value` so that the error names
//! the field and the value. A recommendation keeps every field as received (non-string
//! values as their JSON text), so that validation is recorded as a decision.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tape_events::{Event, Price, QuoteObserved, RecommendationReceived, Stamped, Timestamp};

/// Why a line is not an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteLine<'a> {
    #[serde(rename = "type")]
    _type: &'a str,
    #[serde(borrow)]
    at: Cow<'a, str>,
    #[serde(borrow)]
    ticker: Cow<'a, str>,
    price: Price,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendationLine<'a> {
    #[serde(rename = "type")]
    _type: &'a str,
    #[serde(borrow)]
    at: Cow<'a, str>,
    #[serde(borrow)]
    recommendation_id: &'a RawValue,
    #[serde(default, borrow)]
    ticker: Option<&'a RawValue>,
    #[serde(default, borrow)]
    action: Option<&'a RawValue>,
    #[serde(default, borrow)]
    confidence: Option<&'a RawValue>,
    #[serde(default, borrow)]
    mode: Option<&'a RawValue>,
    #[serde(default, borrow)]
    generated_at: Option<&'a RawValue>,
    #[serde(default, borrow)]
    source: Option<&'a RawValue>,
    #[serde(default, borrow)]
    account_id: Option<&'a RawValue>,
}

/// A raw JSON value as text: a string's content, `None` for null, other values as their
/// JSON text (so `0.82` stays `0.82` and `1e-1` stays `1e-1`, which validation refuses).
fn raw_text(raw: Option<&RawValue>) -> Option<String> {
    let text = raw?.get().trim();
    if text == "null" {
        return None;
    }
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).ok();
    }
    Some(text.to_owned())
}

fn parse_at(line: u64, text: &str) -> Result<Timestamp, LineError> {
    Timestamp::parse(text).map_err(|e| LineError { line, message: format!("field at: {e}") })
}

/// The `type` of a line written as `{"type":"…",`, without parsing the rest.
fn peek_type(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix("{\"type\":\"")?;
    rest.split_once('"').map(|(t, _)| t)
}

/// Parses one line into an input. `line` is its 1-based number.
///
/// # Errors
/// [`LineError`] naming the line, the field and the value.
pub fn parse_line(line: u64, text: &str) -> Result<Stamped, LineError> {
    match peek_type(text) {
        Some("QuoteObserved") => {
            if let Ok(q) = serde_json::from_str::<QuoteLine<'_>>(text) {
                let at = parse_at(line, &q.at)?;
                return Ok(Stamped::new(at, QuoteObserved { ticker: q.ticker.into_owned(), price: q.price }));
            }
        }
        Some("RecommendationReceived") => {
            if let Ok(r) = serde_json::from_str::<RecommendationLine<'_>>(text) {
                let at = parse_at(line, &r.at)?;
                return recommendation(line, at, &r);
            }
        }
        _ => {}
    }
    parse_slow(line, text)
}

fn recommendation(line: u64, at: Timestamp, r: &RecommendationLine<'_>) -> Result<Stamped, LineError> {
    let id = raw_text(Some(r.recommendation_id))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| LineError { line, message: "field recommendation_id: missing or empty".into() })?;
    let _ = r.account_id;
    Ok(Stamped::new(
        at,
        RecommendationReceived {
            recommendation_id: id,
            ticker: raw_text(r.ticker),
            action: raw_text(r.action),
            confidence: raw_text(r.confidence),
            mode: raw_text(r.mode),
            generated_at: raw_text(r.generated_at),
            source: raw_text(r.source),
        },
    ))
}

fn parse_slow(line: u64, text: &str) -> Result<Stamped, LineError> {
    let fail = |message: String| LineError { line, message };
    let value: Value = serde_json::from_str(text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(fail("not a JSON object".into()));
    };
    let event_type = match fields.remove("type") {
        Some(Value::String(t)) => t,
        Some(other) => return Err(fail(format!("field type: {other} is not an event type name"))),
        None => return Err(fail("field type: missing".into())),
    };
    let at = match fields.remove("at") {
        Some(Value::String(at)) => parse_at(line, &at)?,
        Some(other) => return Err(fail(format!("field at: {other} is not an RFC 3339 timestamp"))),
        None => return Err(fail("field at: missing".into())),
    };
    match Event::class_of(&event_type) {
        None => return Err(fail(format!("field type: unknown event type {event_type:?}"))),
        Some(tape_events::EventClass::Decision) => {
            return Err(fail(format!("field type: {event_type} is a decision, not an input")));
        }
        Some(tape_events::EventClass::Input) => {}
    }
    if event_type == "RecommendationReceived" {
        // The borrowed form keeps a number's text exactly (`1e-1` must stay invalid),
        // whatever the order of the line's keys.
        if let Ok(r) = serde_json::from_str::<RecommendationLine<'_>>(text) {
            return recommendation(line, at, &r);
        }
        return recommendation_slow(line, at, fields);
    }
    let event = decode_payload(&event_type, fields).map_err(|message| fail(format!("{event_type}: {message}")))?;
    Ok(Stamped { at, event })
}

fn recommendation_slow(line: u64, at: Timestamp, mut fields: Map<String, Value>) -> Result<Stamped, LineError> {
    let fail = |message: String| LineError { line, message: format!("RecommendationReceived: {message}") };
    let mut take = |name: &str| -> Option<String> {
        match fields.remove(name)? {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    };
    let id = take("recommendation_id").filter(|id| !id.is_empty());
    let received = RecommendationReceived {
        recommendation_id: id.ok_or_else(|| fail("field recommendation_id: missing or empty".into()))?,
        ticker: take("ticker"),
        action: take("action"),
        confidence: take("confidence"),
        mode: take("mode"),
        generated_at: take("generated_at"),
        source: take("source"),
    };
    fields.remove("account_id");
    if let Some(extra) = fields.keys().next() {
        return Err(fail(format!("unknown field {extra:?}")));
    }
    Ok(Stamped::new(at, received))
}

fn decode_payload(event_type: &str, fields: Map<String, Value>) -> Result<Event, String> {
    let value = Value::Object(fields);
    macro_rules! typed {
        ($($name:ident),+) => {
            match event_type {
                $(stringify!($name) => serde_path_to_error::deserialize::<_, tape_events::$name>(value)
                    .map(Event::from)
                    .map_err(|e| describe(&e)),)+
                other => Err(format!("{other} cannot appear in a scenario")),
            }
        };
    }
    typed!(
        AccountOpened,
        ConfigActivated,
        SecurityUpdated,
        DailyBarObserved,
        QuoteObserved,
        SchedulerTick,
        OrderSubmitted,
        OrderFilled,
        OrderRejected,
        OrderCanceled,
        BreakerResetRequested,
        ReserveReleaseRequested,
        BrokerDiscrepancyObserved
    )
}

fn describe(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let inner = error.inner().to_string();
    // serde_json appends "at line 1 column N", which means nothing for a Value.
    let inner = inner.split(" at line ").next().unwrap_or(&inner);
    if path == "." {
        inner.to_owned()
    } else {
        format!("field {path}: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_recommendations_take_the_fast_path_and_agree_with_the_slow_one() {
        let lines = [
            r#"{"type":"QuoteObserved","at":"2024-03-04T14:35:00Z","ticker":"AAPL","price":"176.15"}"#,
            r#"{"type":"QuoteObserved","at":"2024-03-04T14:35:00Z","ticker":"AAPL","price":176.15}"#,
            r#"{"type":"RecommendationReceived","at":"2024-03-04T14:36:00Z","recommendation_id":"r-1","ticker":"AAPL","action":"buy","confidence":0.82,"mode":"paper_eligible","generated_at":"2024-03-04T14:35:30Z"}"#,
        ];
        for (i, text) in lines.iter().enumerate() {
            let fast = parse_line(1, text).unwrap();
            let slow = parse_slow(1, text).unwrap();
            assert_eq!(fast, slow, "line {i}");
        }
    }

    #[test]
    fn recommendation_fields_are_kept_as_received() {
        let text = r#"{"at":"2024-03-04T14:36:00Z","type":"RecommendationReceived","recommendation_id":"r","ticker":42,"action":null,"confidence":1e-1}"#;
        let Event::RecommendationReceived(r) = parse_line(3, text).unwrap().event else { panic!() };
        assert_eq!(r.ticker.as_deref(), Some("42"));
        assert_eq!(r.action, None);
        assert_eq!(r.confidence.as_deref(), Some("1e-1"));
        assert_eq!(r.mode, None);
    }

    #[test]
    fn errors_name_line_field_and_value() {
        let cases = [
            (r#"{"type":"QuoteObserved","at":"2024-03-04T14:35:00Z","ticker":"AAPL"}"#, "line 7: QuoteObserved: missing field `price`"),
            (r#"{"type":"QuoteObserved","at":"2024-03-04T14:35:00Z","ticker":"AAPL","price":"1e2"}"#, "line 7: QuoteObserved: field price: \"1e2\" is not a decimal in plain notation (digits, one optional point, optional sign)"),
            (r#"{"type":"QuoteObserved","at":"noon","ticker":"AAPL","price":"1"}"#, "line 7: field at: \"noon\" is not an RFC 3339 timestamp (e.g. 2024-03-04T14:36:00Z)"),
            (r#"{"type":"Teleport","at":"2024-03-04T14:35:00Z"}"#, "line 7: field type: unknown event type \"Teleport\""),
            (r#"{"type":"OrderPlaced","at":"2024-03-04T14:35:00Z"}"#, "line 7: field type: OrderPlaced is a decision, not an input"),
            (r#"{"type":"SecurityUpdated","at":"2024-03-04T14:35:00Z","ticker":"A","sector":"X","next_earnings_date":"soon"}"#, "line 7: SecurityUpdated: field next_earnings_date: input contains invalid characters"),
            (r#"{"type":"QuoteObserved","at":"2024-03-04T14:35:00Z","ticker":"AAPL","price":"1","colour":"red"}"#, "line 7: QuoteObserved: field colour: unknown field `colour`, expected `ticker` or `price`"),
            ("not json", "line 7: not JSON: expected ident at line 1 column 2"),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_line(7, text).unwrap_err().to_string(), expected);
        }
    }
}
