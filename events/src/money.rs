//! Money, prices, ratios and share quantities.
//!
//! Every amount of money is a [`Money`]: a `rust_decimal::Decimal` held at exactly two
//! decimal places. Formulas produce raw decimals and pass them through [`cents`] at once
//! (SPEC 2.3: "every amount that a formula produces is rounded to cents at once"), so sums
//! of `Money` are exact. Ratios and multipliers go through [`round4`]. Both round half to
//! even. Nothing here is ever a float.

use std::fmt;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Rounds to cents, half to even, and fixes the scale at 2 (so `100` prints `100.00`).
#[must_use]
pub fn cents(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    rounded.rescale(2);
    rounded
}

/// Rounds to 4 decimal places, half to even, and fixes the scale at 4.
#[must_use]
pub fn round4(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven);
    rounded.rescale(4);
    rounded
}

/// Why a text is not a plain decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{0:?} is not a decimal in plain notation (digits, one optional point, optional sign)")]
    NotPlain(String),
    #[error("{0:?} is out of range for a decimal")]
    OutOfRange(String),
}

/// Parses a decimal written in plain notation: `-12.50`, `0.75`, `.5`, `3.`.
/// Exponent notation (`1e-2`), spaces, `NaN` and the like are refused.
///
/// # Errors
/// [`DecimalError`] when the text is not plain notation or does not fit a `Decimal`.
pub fn parse_plain_decimal(text: &str) -> Result<Decimal, DecimalError> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let mut seen_point = false;
    let mut seen_digit = false;
    for byte in digits.bytes() {
        match byte {
            b'0'..=b'9' => seen_digit = true,
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::NotPlain(text.to_owned())),
        }
    }
    if !seen_digit {
        return Err(DecimalError::NotPlain(text.to_owned()));
    }
    let normalized;
    let parse_from = if digits.ends_with('.') || digits.starts_with('.') {
        let sign = if text.starts_with('-') { "-" } else { "" };
        let body = digits.trim_end_matches('.');
        normalized = format!("{sign}{}{body}", if body.starts_with('.') { "0" } else { "" });
        normalized.as_str()
    } else {
        text.strip_prefix('+').unwrap_or(text)
    };
    Decimal::from_str(parse_from).map_err(|_| DecimalError::OutOfRange(text.to_owned()))
}

/// The decimal that an `f64` stands for, through its shortest round-trip text (SPEC 13:
/// "f64 → decimal goes through the shortest round-trip string").
///
/// # Errors
/// [`DecimalError`] for NaN, infinities and values outside `Decimal`'s range.
pub fn decimal_from_f64(value: f64) -> Result<Decimal, DecimalError> {
    let text = format!("{value}");
    if !value.is_finite() {
        return Err(DecimalError::NotPlain(text));
    }
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).map_err(|_| DecimalError::OutOfRange(text))
}

/// Deserializes a decimal from a JSON/TOML string in plain notation or a number.
struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal as a string in plain notation or a number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_plain_decimal(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        decimal_from_f64(v).map_err(E::custom)
    }
}

/// `serde(with = "decimal_text")` for bare `Decimal` fields: written as a string,
/// read from a string or a number.
pub mod decimal_text {
    use super::{Decimal, DecimalVisitor, Deserializer, Serializer};

    /// # Errors
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// # Errors
    /// When the value is neither a plain decimal string nor a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        deserializer.deserialize_any(DecimalVisitor)
    }

    /// The same for `Option<Decimal>` (null ↔ None).
    pub mod option {
        use super::{Decimal, Deserializer, Serializer};
        use serde::Deserialize;

        /// # Errors
        /// Whatever the serializer reports.
        pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => serializer.collect_str(v),
                None => serializer.serialize_none(),
            }
        }

        /// # Errors
        /// When the value is neither null, a plain decimal string nor a number.
        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
            #[derive(serde::Deserialize)]
            struct Wrap(#[serde(with = "super")] Decimal);
            Ok(Option::<Wrap>::deserialize(deserializer)?.map(|w| w.0))
        }
    }
}

macro_rules! decimal_newtype {
    ($(#[$doc:meta])* $name:ident, $normalize:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(Decimal);

        impl $name {
            /// The underlying decimal.
            #[must_use]
            pub const fn value(self) -> Decimal {
                self.0
            }
            /// Builds the value from a raw decimal, applying this type's rounding.
            #[must_use]
            pub fn new(raw: Decimal) -> Self {
                let normalize: fn(Decimal) -> Decimal = $normalize;
                Self(normalize(raw))
            }
            /// Zero at this type's scale.
            #[must_use]
            pub fn zero() -> Self {
                Self::new(Decimal::ZERO)
            }
            #[must_use]
            pub fn is_zero(self) -> bool {
                self.0.is_zero()
            }
            #[must_use]
            pub fn is_sign_negative(self) -> bool {
                self.0.is_sign_negative() && !self.0.is_zero()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = DecimalError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_plain_decimal(s).map(Self::new)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(DecimalVisitor).map(Self::new)
            }
        }
    };
}

decimal_newtype!(
    /// An amount of money in dollars, always at exactly two decimal places.
    Money,
    cents
);
decimal_newtype!(
    /// A price as quoted or filled, kept at the precision it was given.
    Price,
    |d| d
);
decimal_newtype!(
    /// A ratio or multiplier (correlation, Sharpe, drawdown, win rate, loss fraction),
    /// always at exactly four decimal places.
    Ratio,
    round4
);

impl Money {
    /// `qty × price`, rounded to cents.
    #[must_use]
    pub fn of(qty: Qty, price: Price) -> Self {
        Self::new(Decimal::from(qty.0) * price.0)
    }
    /// `self × factor`, rounded to cents.
    #[must_use]
    pub fn times(self, factor: Decimal) -> Self {
        Self::new(self.0 * factor)
    }
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        if other < self {
            other
        } else {
            self
        }
    }
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }
}

impl Add for Money {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}
impl Sub for Money {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}
impl Neg for Money {
    type Output = Self;
    fn neg(self) -> Self {
        Self(-self.0)
    }
}
impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Self) {
        self.0 += rhs.0;
    }
}
impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Self) {
        self.0 -= rhs.0;
    }
}
impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::zero(), |a, b| a + b)
    }
}

/// A whole number of shares (SPEC 6: "whole shares").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Qty(pub u64);

impl Qty {
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
    #[must_use]
    pub fn decimal(self) -> Decimal {
        Decimal::from(self.0)
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The average cost of a position after buying `bought` shares at `price` onto `held`
/// shares at `avg` (SPEC 6: to 4 places, no intermediate rounding). The one rule the
/// core's fold, the `positions` projection and `tape audit explain` book fills with.
#[must_use]
pub fn average_cost_after_buy(held: Qty, avg: Decimal, bought: Qty, price: Price) -> Decimal {
    let total = held.0.saturating_add(bought.0).max(1);
    round4((held.decimal() * avg + bought.decimal() * price.value()) / Decimal::from(total))
}

/// The realized P&L of selling `qty` shares at `price` against the average cost `avg`.
#[must_use]
pub fn realized_pnl(price: Price, avg: Decimal, qty: Qty) -> Money {
    Money::new((price.value() - avg) * qty.decimal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_book_at_average_cost() {
        let first = average_cost_after_buy(Qty(0), Decimal::ZERO, Qty(3), Price::new(d("10.00005")));
        assert_eq!(first.to_string(), "10.0000", "a new position: the price to 4 places");
        let second = average_cost_after_buy(Qty(3), d("10"), Qty(1), Price::new(d("11")));
        assert_eq!(second.to_string(), "10.2500");
        assert_eq!(realized_pnl(Price::new(d("12")), second, Qty(2)).to_string(), "3.50");
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn cents_rounds_half_to_even_and_fixes_scale() {
        assert_eq!(cents(d("95.095")).to_string(), "95.10");
        assert_eq!(cents(d("94.905")).to_string(), "94.90");
        assert_eq!(cents(d("2733.3333")).to_string(), "2733.33");
        assert_eq!(cents(d("100")).to_string(), "100.00");
        assert_eq!(cents(d("0.125")).to_string(), "0.12");
        assert_eq!(cents(d("0.135")).to_string(), "0.14");
    }

    #[test]
    fn round4_fixes_scale() {
        assert_eq!(round4(d("0.83333333")).to_string(), "0.8333");
        assert_eq!(round4(d("0.6")).to_string(), "0.6000");
        assert_eq!(round4(d("0.00005")).to_string(), "0.0000");
        assert_eq!(round4(d("0.00015")).to_string(), "0.0002");
    }

    #[test]
    fn plain_decimals_parse_and_exponents_do_not() {
        assert_eq!(parse_plain_decimal("0.75").unwrap(), d("0.75"));
        assert_eq!(parse_plain_decimal("-12.50").unwrap(), d("-12.50"));
        assert_eq!(parse_plain_decimal("+3").unwrap(), d("3"));
        assert_eq!(parse_plain_decimal(".5").unwrap(), d("0.5"));
        assert_eq!(parse_plain_decimal("5.").unwrap(), d("5"));
        for bad in ["", ".", "-", "1e-2", "1E2", " 1", "1 ", "NaN", "1.2.3", "0x10", "inf"] {
            assert!(parse_plain_decimal(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn floats_convert_through_shortest_text() {
        assert_eq!(decimal_from_f64(0.1).unwrap(), d("0.1"));
        assert_eq!(decimal_from_f64(0.05).unwrap(), d("0.05"));
        assert!(decimal_from_f64(f64::NAN).is_err());
    }

    #[test]
    fn money_reads_strings_and_numbers_and_writes_two_places() {
        let m: Money = serde_json::from_str("\"100\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"100.00\"");
        let m: Money = serde_json::from_str("2500.755").unwrap();
        assert_eq!(m.to_string(), "2500.76");
        assert!(serde_json::from_str::<Money>("\"1e3\"").is_err());
        let p: Price = serde_json::from_str("176.15").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"176.15\"");
    }
}
