//! Identifiers: validated names, and the deterministic derivation of decision, order and
//! fill ids (SPEC 2.2: "Decision event ids and order ids are UUIDv5 derived from the
//! input event's id and the decision's index, so replay reproduces them exactly").

use uuid::Uuid;

use crate::time::Timestamp;

/// The namespace of every UUIDv5 tape derives.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_7a2e_58d4_4f0b_9a55_3e2b_8d7c_41a9);

fn derive(parent: Uuid, kind: &str, index: u64) -> Uuid {
    let mut name = [0u8; 16 + 1 + 16 + 8];
    name[..16].copy_from_slice(parent.as_bytes());
    name[16] = b'/';
    let kind = kind.as_bytes();
    let len = kind.len().min(16);
    name[17..17 + len].copy_from_slice(&kind[..len]);
    name[33..].copy_from_slice(&index.to_be_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

/// The event id of the `index`-th decision (0-based) derived from an input.
#[must_use]
pub fn decision_event_id(input_id: Uuid, index: usize) -> Uuid {
    derive(input_id, "decision", index as u64)
}

/// The id of an order placed by the `index`-th decision derived from an input; the
/// broker's `client_order_id`.
#[must_use]
pub fn order_id(input_id: Uuid, index: usize) -> Uuid {
    derive(input_id, "order", index as u64)
}

/// The id of the `n`-th fill the paper broker books for an order.
#[must_use]
pub fn paper_fill_id(order_id: Uuid, n: u64) -> Uuid {
    derive(order_id, "paper-fill", n)
}

/// A UUIDv7 made from an instant, a seed and a sequence number instead of the clock and
/// the OS's randomness: the ids `simulate` gives its inputs, so that a run is
/// reproducible byte for byte. Distinct (seed, sequence) pairs give distinct ids (the
/// 62 random bits hold the seed and the sequence, less the version and variant bits).
#[must_use]
pub fn deterministic_v7(at: Timestamp, seed: u16, sequence: u64) -> Uuid {
    let millis = u64::try_from(at.unix_micros().div_euclid(1000)).unwrap_or(0);
    let mut random = [0u8; 10];
    random[..2].copy_from_slice(&seed.to_be_bytes());
    random[2..].copy_from_slice(&sequence.to_be_bytes());
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// `^[a-z0-9][a-z0-9_-]{0,62}$` (SPEC 2.1).
#[must_use]
pub fn is_valid_account_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes[1..].iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `^[A-Z][A-Z0-9.-]{0,9}$` (SPEC 4 step 0).
#[must_use]
pub fn is_valid_ticker(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 10
        && bytes[0].is_ascii_uppercase()
        && bytes[1..].iter().all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// The event stream of an account: `account-{account_id}`.
#[must_use]
pub fn account_stream(account_id: &str) -> String {
    format!("account-{account_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let input = Uuid::from_u128(42);
        assert_eq!(order_id(input, 3), order_id(input, 3));
        assert_ne!(order_id(input, 3), order_id(input, 4));
        assert_ne!(order_id(input, 3), decision_event_id(input, 3));
        assert_eq!(order_id(input, 0).get_version_num(), 5);
        let at = Timestamp::parse("2024-03-04T14:36:00Z").unwrap();
        let v7 = deterministic_v7(at, 9, 1);
        assert_eq!(v7.get_version_num(), 7);
        assert_ne!(v7, deterministic_v7(at, 9, 2));
        assert_ne!(v7, deterministic_v7(at, 8, 1));
    }

    #[test]
    fn names_follow_the_spec_patterns() {
        for ok in ["AAPL", "BRK.B", "A", "BF-B", "X1234567890"[..10].as_ref()] {
            assert!(is_valid_ticker(ok), "{ok}");
        }
        for bad in ["", "aapl", "1AB", "ABCDEFGHIJK", "A B", "Ä"] {
            assert!(!is_valid_ticker(bad), "{bad}");
        }
        for ok in ["demo", "a", "0x_1-b"] {
            assert!(is_valid_account_id(ok), "{ok}");
        }
        for bad in ["", "Demo", "-a", "_a", &"a".repeat(64)] {
            assert!(!is_valid_account_id(bad), "{bad}");
        }
    }
}
