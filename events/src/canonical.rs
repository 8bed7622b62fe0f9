//! Canonical JSON: exactly one byte form per value.
//!
//! Objects are written with their keys sorted by their UTF-8 bytes, no insignificant
//! white space, strings escaped as `serde_json` escapes them, numbers as `serde_json`
//! prints them. Money, prices and ratios are strings in our payloads, so no float ever
//! reaches this form. The hash chain and replay's field-by-field comparison both use it.

use serde::Serialize;
use serde_json::Value;

/// The canonical bytes of any serializable value.
///
/// # Panics
/// Only if `value`'s `Serialize` implementation fails, which for our payload types (no
/// maps with non-string keys) would be a bug: `Invariant:`.
#[must_use]
pub fn to_canonical_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).unwrap_or_else(|e| panic!("Invariant: payload serializes to JSON: {e}"));
    let mut out = Vec::with_capacity(256);
    write_canonical(&value, &mut out);
    out
}

/// The canonical bytes of a JSON value.
#[must_use]
pub fn value_to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

/// Appends the canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        other => {
            // null, bool and numbers have one form in serde_json's output.
            serde_json::to_writer(&mut *out, other).unwrap_or_else(|e| panic!("Invariant: scalar JSON writes: {e}"));
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).unwrap_or_else(|e| panic!("Invariant: string JSON writes: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth_and_there_is_no_space() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": true}], "c": "é\n"}});
        assert_eq!(
            String::from_utf8(value_to_canonical_vec(&v)).unwrap(),
            r#"{"a":{"c":"é\n","z":[3,{"x":true,"y":null}]},"b":1}"#
        );
    }

    #[test]
    fn equal_values_have_equal_bytes_whatever_their_input_order() {
        let a: Value = serde_json::from_str(r#"{"x":"1.00","y":[1,2],"z":{"q":1,"p":2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"z":{"p":2,"q":1},"y":[1,2],"x":"1.00"}"#).unwrap();
        assert_eq!(value_to_canonical_vec(&a), value_to_canonical_vec(&b));
    }
}
