//! Instants and the exchange calendar's notion of a day.
//!
//! A [`Timestamp`] is a UTC instant at microsecond precision, written
//! `YYYY-MM-DDTHH:MM:SS.ffffffZ` (SPEC 13) and read from any RFC 3339 text.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, SubsecRound, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

/// Why a text is not an RFC 3339 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 timestamp (e.g. 2024-03-04T14:36:00Z)")]
pub struct TimestampError {
    pub text: String,
}

impl Timestamp {
    /// Wraps a `DateTime`, truncating it to microseconds.
    #[must_use]
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        Self(at.trunc_subsecs(6))
    }

    /// The instant `micros` microseconds after the Unix epoch.
    #[must_use]
    pub fn from_unix_micros(micros: i64) -> Self {
        Self(DateTime::from_timestamp_micros(micros).unwrap_or_default())
    }

    #[must_use]
    pub const fn datetime(self) -> DateTime<Utc> {
        self.0
    }

    #[must_use]
    pub fn unix_micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// Parses RFC 3339 text with any offset.
    ///
    /// # Errors
    /// [`TimestampError`] naming the text.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        if let Some(fast) = parse_utc_fast(text.as_bytes()) {
            return Ok(fast);
        }
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self::from_datetime(at.with_timezone(&Utc)))
            .map_err(|_| TimestampError { text: text.to_owned() })
    }

    #[must_use]
    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0 + duration)
    }

    #[must_use]
    pub fn minus(self, duration: Duration) -> Self {
        Self(self.0 - duration)
    }

    /// Writes the canonical form into a fixed buffer (no allocation).
    #[must_use]
    pub fn to_canonical_bytes(self) -> [u8; 27] {
        let naive = self.0.naive_utc();
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let year = u32::try_from(naive.year()).unwrap_or(0) % 10_000;
        put_digits(&mut out[0..4], year);
        put_digits(&mut out[5..7], naive.month());
        put_digits(&mut out[8..10], naive.day());
        put_digits(&mut out[11..13], naive.hour());
        put_digits(&mut out[14..16], naive.minute());
        put_digits(&mut out[17..19], naive.second());
        put_digits(&mut out[20..26], naive.nanosecond() / 1_000 % 1_000_000);
        out
    }
}

fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *byte = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

/// The common `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` form without going through chrono's parser.
fn parse_utc_fast(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if *b.last()? != b'Z' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(digits(&b[0..4])?).ok()?, digits(&b[5..7])?, digits(&b[8..10])?)?;
    let (h, m, s) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let mut micros = 0;
    match &b[19..b.len() - 1] {
        [] => {}
        [b'.', frac @ ..] if !frac.is_empty() && frac.len() <= 9 => {
            let mut value = digits(frac)?;
            for _ in frac.len()..9 {
                value *= 10;
            }
            micros = value / 1_000;
        }
        _ => return None,
    }
    let time = chrono::NaiveTime::from_hms_micro_opt(h, m, s, micros)?;
    Some(Timestamp(NaiveDateTime::new(date, time).and_utc()))
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_canonical_bytes();
        f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.to_canonical_bytes();
        serializer.serialize_str(std::str::from_utf8(&bytes).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self::from_datetime(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_six_fraction_digits_and_z() {
        let t = Timestamp::parse("2024-03-04T14:36:00Z").unwrap();
        assert_eq!(t.to_string(), "2024-03-04T14:36:00.000000Z");
        let t = Timestamp::parse("2024-03-04T09:36:00.1234567-05:00").unwrap();
        assert_eq!(t.to_string(), "2024-03-04T14:36:00.123456Z");
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        for text in [
            "2024-03-04T14:36:00Z",
            "2024-03-04T14:36:00.5Z",
            "2024-03-04T14:36:00.000001Z",
            "2024-12-31T23:59:59.999999999Z",
        ] {
            let fast = parse_utc_fast(text.as_bytes()).unwrap();
            let slow = Timestamp::from_datetime(DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc));
            assert_eq!(fast, slow, "{text}");
        }
    }

    #[test]
    fn refuses_non_instants() {
        for bad in ["", "2024-03-04", "2024-02-30T00:00:00Z", "2024-03-04T25:00:00Z", "yesterday"] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }
}
