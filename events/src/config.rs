//! The decision configuration (SPEC 3): every key that can change a decision.
//!
//! A [`Config`] is data: it is recorded in `ConfigActivated` with its SHA-256, so replay
//! always uses the configuration that was in force. Reading it from `tape.toml` and
//! `--set` overrides is `commands::config`'s job; this module owns the shape, the
//! defaults, the validation and the hash. Service settings (database, redis, broker)
//! never live here.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use chrono::{NaiveDate, NaiveTime};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical;
use crate::money::{decimal_text, Money};

/// The three risk tiers, from least to most risk (SPEC 3, 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    Conservative,
    Moderate,
    Aggressive,
}

impl RiskTier {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Conservative => "conservative",
            Self::Moderate => "moderate",
            Self::Aggressive => "aggressive",
        }
    }
    /// One step more risk, if there is one.
    #[must_use]
    pub const fn promoted(self) -> Option<Self> {
        match self {
            Self::Conservative => Some(Self::Moderate),
            Self::Moderate => Some(Self::Aggressive),
            Self::Aggressive => None,
        }
    }
    /// One step less risk, if there is one.
    #[must_use]
    pub const fn demoted(self) -> Option<Self> {
        match self {
            Self::Conservative => None,
            Self::Moderate => Some(Self::Conservative),
            Self::Aggressive => Some(Self::Moderate),
        }
    }
}

impl fmt::Display for RiskTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The five per-tier limits (SPEC 3's table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    #[serde(with = "decimal_text")]
    pub min_confidence: Decimal,
    #[serde(with = "decimal_text")]
    pub max_position_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub max_sector_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub max_portfolio_heat: Decimal,
    #[serde(with = "decimal_text")]
    pub stop_loss_pct: Decimal,
}

/// `[tiers.conservative]`, `[tiers.moderate]`, `[tiers.aggressive]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    pub conservative: TierLimits,
    pub moderate: TierLimits,
    pub aggressive: TierLimits,
}

impl Tiers {
    #[must_use]
    pub const fn get(&self, tier: RiskTier) -> &TierLimits {
        match tier {
            RiskTier::Conservative => &self.conservative,
            RiskTier::Moderate => &self.moderate,
            RiskTier::Aggressive => &self.aggressive,
        }
    }
}

/// A duration written as `"2h"`, `"30m"`, `"15m"`, `"90s"` or a combination (`"1h30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationText {
    pub secs: i64,
}

impl DurationText {
    #[must_use]
    pub const fn from_secs(secs: i64) -> Self {
        Self { secs }
    }
    #[must_use]
    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.secs)
    }

    /// Parses `"2h"`, `"90m"`, `"1h30m"`, `"45s"`.
    ///
    /// # Errors
    /// A message naming the text when it is not of that form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a duration such as \"2h\", \"30m\", \"1h30m\" or \"45s\"");
        let mut secs: i64 = 0;
        let mut number: Option<i64> = None;
        for ch in text.chars() {
            if let Some(digit) = ch.to_digit(10) {
                let next = number.unwrap_or(0).checked_mul(10).and_then(|n| n.checked_add(i64::from(digit)));
                number = Some(next.ok_or_else(bad)?);
                continue;
            }
            let unit = match ch {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                _ => return Err(bad()),
            };
            let value = number.take().ok_or_else(bad)?;
            secs = value.checked_mul(unit).and_then(|v| secs.checked_add(v)).ok_or_else(bad)?;
        }
        if number.is_some() || text.is_empty() {
            return Err(bad());
        }
        Ok(Self { secs })
    }
}

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.secs / 3600, self.secs % 3600 / 60, self.secs % 60);
        if self.secs == 0 {
            return f.write_str("0s");
        }
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `trading_window = { start = "09:35", end = "15:45" }`: the half-open interval
/// `[start, end)` in exchange time (SPEC 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradingWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TradingWindowText {
    start: String,
    end: String,
}

impl Serialize for TradingWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TradingWindowText { start: self.start.format("%H:%M").to_string(), end: self.end.format("%H:%M").to_string() }
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TradingWindow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = TradingWindowText::deserialize(deserializer)?;
        let parse = |field: &str, value: &str| {
            NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| {
                serde::de::Error::custom(format!("trading_window.{field} {value:?} is not a time of day HH:MM"))
            })
        };
        Ok(Self { start: parse("start", &text.start)?, end: parse("end", &text.end)? })
    }
}

/// Every decision key of SPEC 3, with its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub tiers: Tiers,
    pub initial_tier: RiskTier,
    pub recommendation_max_age: DurationText,
    pub quote_max_age: DurationText,
    pub trading_window: TradingWindow,
    pub holidays: BTreeSet<NaiveDate>,
    pub max_open_positions: u32,
    #[serde(with = "decimal_text")]
    pub declining_fraction: Decimal,
    #[serde(with = "decimal_text")]
    pub declining_loss_pct: Decimal,
    pub max_position_dollars: Money,
    #[serde(with = "decimal_text")]
    pub correlation_reduce: Decimal,
    #[serde(with = "decimal_text")]
    pub correlation_reject: Decimal,
    pub correlation_window: u32,
    pub correlation_min_returns: u32,
    #[serde(with = "decimal_text")]
    pub diversification_bonus: Decimal,
    pub diversification_max_sectors: u32,
    pub earnings_reject_days: u32,
    pub earnings_halve_days: u32,
    #[serde(with = "decimal_text")]
    pub daily_loss_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub single_position_loss_pct: Decimal,
    pub ticker_cooldown_hours: u32,
    pub volatility_stop_losses: u32,
    pub volatility_window: DurationText,
    pub volatility_pause_hours: u32,
    #[serde(with = "decimal_text")]
    pub emergency_drawdown_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub emergency_reserve_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub profit_siphon_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub high_water_rebalance_pct: Decimal,
    #[serde(with = "decimal_text")]
    pub slippage_bps: Decimal,
}

/// A configuration value that breaks a rule of SPEC 3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config {key} = {value}: {rule}")]
pub struct ConfigValueError {
    pub key: String,
    pub value: String,
    pub rule: &'static str,
}

fn dec(text: &str) -> Decimal {
    crate::money::parse_plain_decimal(text).unwrap_or_else(|e| panic!("Invariant: default {text}: {e}"))
}

const NYSE_HOLIDAYS_CSV: &str = include_str!("../../data/calendar/nyse_holidays.csv");

/// NYSE full-day closures 1998–2028, unscheduled ones included (data/calendar/README.md).
#[must_use]
pub fn nyse_holidays() -> &'static BTreeSet<NaiveDate> {
    static HOLIDAYS: OnceLock<BTreeSet<NaiveDate>> = OnceLock::new();
    HOLIDAYS.get_or_init(|| {
        NYSE_HOLIDAYS_CSV
            .lines()
            .skip(1)
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                NaiveDate::parse_from_str(line.trim(), "%Y-%m-%d")
                    .unwrap_or_else(|e| panic!("Invariant: shipped holiday {line:?}: {e}"))
            })
            .collect()
    })
}

impl Default for Config {
    fn default() -> Self {
        let tier = |c: &str, p: &str, s: &str, h: &str, l: &str| TierLimits {
            min_confidence: dec(c),
            max_position_pct: dec(p),
            max_sector_pct: dec(s),
            max_portfolio_heat: dec(h),
            stop_loss_pct: dec(l),
        };
        Self {
            tiers: Tiers {
                conservative: tier("0.75", "0.05", "0.20", "0.06", "0.05"),
                moderate: tier("0.65", "0.08", "0.30", "0.10", "0.07"),
                aggressive: tier("0.55", "0.12", "0.40", "0.15", "0.10"),
            },
            initial_tier: RiskTier::Conservative,
            recommendation_max_age: DurationText::from_secs(2 * 3600),
            quote_max_age: DurationText::from_secs(15 * 60),
            trading_window: TradingWindow {
                start: NaiveTime::from_hms_opt(9, 35, 0).unwrap_or_default(),
                end: NaiveTime::from_hms_opt(15, 45, 0).unwrap_or_default(),
            },
            holidays: nyse_holidays().clone(),
            max_open_positions: 10,
            declining_fraction: dec("0.50"),
            declining_loss_pct: dec("0.02"),
            max_position_dollars: Money::new(dec("25000.00")),
            correlation_reduce: dec("0.50"),
            correlation_reject: dec("0.80"),
            correlation_window: 60,
            correlation_min_returns: 20,
            diversification_bonus: dec("1.2"),
            diversification_max_sectors: 3,
            earnings_reject_days: 1,
            earnings_halve_days: 3,
            daily_loss_pct: dec("0.05"),
            single_position_loss_pct: dec("0.15"),
            ticker_cooldown_hours: 48,
            volatility_stop_losses: 3,
            volatility_window: DurationText::from_secs(30 * 60),
            volatility_pause_hours: 2,
            emergency_drawdown_pct: dec("0.15"),
            emergency_reserve_pct: dec("0.50"),
            profit_siphon_pct: dec("0.20"),
            high_water_rebalance_pct: dec("0.30"),
            slippage_bps: dec("0"),
        }
    }
}

impl Config {
    /// The limits of one tier.
    #[must_use]
    pub const fn tier(&self, tier: RiskTier) -> &TierLimits {
        self.tiers.get(tier)
    }

    /// The canonical JSON form of this configuration (sorted keys, no spaces).
    #[must_use]
    pub fn canonical_json(&self) -> Vec<u8> {
        canonical::to_canonical_vec(self)
    }

    /// SHA-256 of the canonical JSON, lowercase hex: the `config_hash` of every event
    /// decided under this configuration.
    #[must_use]
    pub fn hash(&self) -> String {
        crate::chain::sha256_hex(&self.canonical_json())
    }

    /// Checks the rules no type can express: ratios within their ranges, the correlation
    /// thresholds ordered, a non-empty trading window, positive windows and counts.
    ///
    /// # Errors
    /// The first [`ConfigValueError`], naming the key and the value.
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        let err = |key: &str, value: String, rule| Err(ConfigValueError { key: key.to_owned(), value, rule });
        let unit = |key: &str, v: Decimal| -> Result<(), ConfigValueError> {
            if v < Decimal::ZERO || v > Decimal::ONE {
                return err(key, v.to_string(), "must be within [0, 1]");
            }
            Ok(())
        };
        for tier in [RiskTier::Conservative, RiskTier::Moderate, RiskTier::Aggressive] {
            let limits = self.tier(tier);
            let name = |field: &str| format!("tiers.{tier}.{field}");
            unit(&name("min_confidence"), limits.min_confidence)?;
            if limits.min_confidence.is_zero() {
                return err(&name("min_confidence"), "0".into(), "must be above 0 (it divides the base size)");
            }
            for (field, v) in [
                ("max_position_pct", limits.max_position_pct),
                ("max_sector_pct", limits.max_sector_pct),
                ("max_portfolio_heat", limits.max_portfolio_heat),
            ] {
                unit(&name(field), v)?;
            }
            if limits.stop_loss_pct <= Decimal::ZERO || limits.stop_loss_pct >= Decimal::ONE {
                return err(&name("stop_loss_pct"), limits.stop_loss_pct.to_string(), "must be within (0, 1)");
            }
        }
        for (key, v) in [
            ("declining_fraction", self.declining_fraction),
            ("declining_loss_pct", self.declining_loss_pct),
            ("daily_loss_pct", self.daily_loss_pct),
            ("single_position_loss_pct", self.single_position_loss_pct),
            ("emergency_drawdown_pct", self.emergency_drawdown_pct),
            ("emergency_reserve_pct", self.emergency_reserve_pct),
            ("profit_siphon_pct", self.profit_siphon_pct),
            ("high_water_rebalance_pct", self.high_water_rebalance_pct),
        ] {
            unit(key, v)?;
        }
        if self.correlation_reduce >= self.correlation_reject {
            return err("correlation_reduce", self.correlation_reduce.to_string(), "must be below correlation_reject");
        }
        if self.trading_window.start >= self.trading_window.end {
            return err("trading_window", format!("{:?}", self.trading_window), "start must be before end");
        }
        if self.max_position_dollars.is_sign_negative() {
            return err("max_position_dollars", self.max_position_dollars.to_string(), "must not be negative");
        }
        if self.diversification_bonus < Decimal::ZERO {
            return err("diversification_bonus", self.diversification_bonus.to_string(), "must not be negative");
        }
        if self.slippage_bps < Decimal::ZERO || self.slippage_bps >= Decimal::from(10_000) {
            return err("slippage_bps", self.slippage_bps.to_string(), "must be within [0, 10000)");
        }
        if self.correlation_window < 2 {
            return err("correlation_window", self.correlation_window.to_string(), "must be at least 2 closes");
        }
        if self.earnings_halve_days < self.earnings_reject_days {
            return err(
                "earnings_halve_days",
                self.earnings_halve_days.to_string(),
                "must not be below earnings_reject_days",
            );
        }
        for (key, d) in [
            ("recommendation_max_age", self.recommendation_max_age),
            ("quote_max_age", self.quote_max_age),
            ("volatility_window", self.volatility_window),
        ] {
            if d.secs <= 0 {
                return err(key, format!("{d}"), "must be a positive duration");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let config = Config::default();
        config.validate().unwrap();
        let json = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.hash(), config.hash());
        assert!(config.holidays.contains(&NaiveDate::from_ymd_opt(2024, 3, 29).unwrap()));
        assert!(config.holidays.contains(&NaiveDate::from_ymd_opt(2012, 10, 29).unwrap()));
        assert!(config.holidays.contains(&NaiveDate::from_ymd_opt(2018, 12, 5).unwrap()));
    }

    #[test]
    fn durations_parse_and_print() {
        for (text, secs, back) in
            [("2h", 7200, "2h"), ("90m", 5400, "1h30m"), ("1h30m", 5400, "1h30m"), ("45s", 45, "45s")]
        {
            let d = DurationText::parse(text).unwrap();
            assert_eq!(d.secs, secs);
            assert_eq!(d.to_string(), back);
        }
        for bad in ["", "h", "2", "2d", "-1h", "1.5h"] {
            assert!(DurationText::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = Config::default();
        config.tiers.moderate.max_position_pct = dec("1.5");
        let e = config.validate().unwrap_err();
        assert_eq!(e.key, "tiers.moderate.max_position_pct");
        assert_eq!(e.to_string(), "invalid config tiers.moderate.max_position_pct = 1.5: must be within [0, 1]");
    }
}
