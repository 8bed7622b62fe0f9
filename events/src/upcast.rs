//! Schema versions and the upcaster chain (SPEC 11: "an old version is upcast on read,
//! and replay goes through the same upcasters").
//!
//! A stored payload carries its schema version. [`decode`] lifts it one version at a
//! time through [`upcast_one`] until it reaches the version this code writes, then
//! parses it. Writing always uses the current version; old rows are never rewritten
//! (the log is immutable), so every upcaster stays forever.
//!
//! The history so far:
//! - `SecurityUpdated` v1 → v2: v1 (the seed system's shape) wrote `earnings_date` as a
//!   string, empty when unknown, and `sector` as a string, empty when unknown. v2 names
//!   the field `next_earnings_date` and uses `null` for unknown in both fields.

use serde_json::{Map, Value};

use crate::payload::{DecodeError, Event};

/// Reads a stored payload of any known schema version.
///
/// # Errors
/// [`DecodeError`] for an unknown type or version, a failed upcast, or a payload that
/// does not parse.
/// A payload at the current version is read in place; an older one is copied once to be
/// lifted.
pub fn decode(event_type: &str, schema_version: i32, payload: &Value) -> Result<Event, DecodeError> {
    let newest = Event::current_version(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
    if schema_version < 1 || schema_version > newest {
        return Err(DecodeError::UnknownVersion { event_type: event_type.to_owned(), version: schema_version, newest });
    }
    if schema_version == newest {
        return Event::from_current_payload(event_type, payload);
    }
    let mut lifted = payload.clone();
    for from in schema_version..newest {
        lifted = upcast_one(event_type, from, lifted)?;
    }
    Event::from_current_payload(event_type, &lifted)
}

/// Lifts one payload from version `from` to `from + 1`.
///
/// # Errors
/// [`DecodeError::Upcast`] when the old payload lacks what the step needs.
pub fn upcast_one(event_type: &str, from: i32, payload: Value) -> Result<Value, DecodeError> {
    let fail = |message: String| DecodeError::Upcast { event_type: event_type.to_owned(), from, message };
    match (event_type, from) {
        ("SecurityUpdated", 1) => {
            let Value::Object(mut old) = payload else {
                return Err(fail("payload is not an object".into()));
            };
            let blank_to_null = |v: Option<Value>| match v {
                Some(Value::String(s)) if s.trim().is_empty() => Value::Null,
                Some(v) => v,
                None => Value::Null,
            };
            let ticker = old.remove("ticker").ok_or_else(|| fail("missing ticker".into()))?;
            let mut new = Map::new();
            new.insert("ticker".into(), ticker);
            new.insert("sector".into(), blank_to_null(old.remove("sector")));
            new.insert("next_earnings_date".into(), blank_to_null(old.remove("earnings_date")));
            if let Some(extra) = old.keys().next() {
                return Err(fail(format!("unexpected v1 field {extra:?}")));
            }
            Ok(Value::Object(new))
        }
        _ => Err(fail(format!("no upcaster from v{from}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::SecurityUpdated;
    use serde_json::json;

    #[test]
    fn security_updated_v1_rows_still_load() {
        let v1 = json!({"ticker": "AAPL", "sector": "Information Technology", "earnings_date": "2024-05-02"});
        let Event::SecurityUpdated(e) = decode("SecurityUpdated", 1, &v1).unwrap() else { panic!("wrong type") };
        assert_eq!(e.sector.as_deref(), Some("Information Technology"));
        assert_eq!(e.next_earnings_date.unwrap().to_string(), "2024-05-02");

        let v1_unknown = json!({"ticker": "XYZ", "sector": "", "earnings_date": ""});
        let Event::SecurityUpdated(e) = decode("SecurityUpdated", 1, &v1_unknown).unwrap() else { panic!() };
        assert_eq!(e, SecurityUpdated { ticker: "XYZ".into(), sector: None, next_earnings_date: None });
    }

    #[test]
    fn current_rows_load_and_bad_versions_are_named() {
        let v2 = json!({"ticker": "XYZ", "sector": null, "next_earnings_date": null});
        assert!(decode("SecurityUpdated", 2, &v2).is_ok());
        let e = decode("SecurityUpdated", 3, &v2).unwrap_err();
        assert_eq!(e.to_string(), "event type SecurityUpdated has no schema version 3 (newest is 2)");
        assert!(matches!(decode("Nope", 1, &json!({})), Err(DecodeError::UnknownType(_))));
        let e = decode("SecurityUpdated", 1, &json!({"ticker": "X", "earnings_date": "", "color": "red"})).unwrap_err();
        assert!(e.to_string().contains("unexpected v1 field \"color\""), "{e}");
    }
}
