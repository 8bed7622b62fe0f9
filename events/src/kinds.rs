//! The small closed vocabularies events use: sides, reasons, tick and breaker kinds,
//! check and sizing-step names, skip reasons.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// The value named `text`, if any.
            #[must_use]
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
                Self::parse(&text).ok_or_else(|| {
                    let expected: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    serde::de::Error::custom(format!(
                        "unknown {} {:?}: expected one of {}",
                        stringify!($name), text, expected.join(", ")
                    ))
                })
            }
        }
    };
}

text_enum!(
    /// `paper` accounts accept both recommendation modes, `live` only `live_eligible`.
    AccountMode { Paper => "paper", Live => "live" }
);
text_enum!(
    /// Buy or sell.
    Side { Buy => "buy", Sell => "sell" }
);
text_enum!(
    /// Why an order was placed (SPEC 4, 5).
    OrderReason {
        Entry => "entry",
        Exit => "exit",
        StopLoss => "stop_loss",
        Breaker => "breaker",
        Liquidation => "liquidation",
    }
);
text_enum!(
    /// The scheduler's ticks (SPEC 7).
    TickKind {
        Poll => "poll",
        Snapshot => "snapshot",
        Close => "close",
        RiskTier => "risk_tier",
        Rebalance => "rebalance",
    }
);
text_enum!(
    /// Circuit breakers (SPEC 5).
    BreakerKind {
        SinglePosition => "single_position",
        Volatility => "volatility",
        DailyLoss => "daily_loss",
        Emergency => "emergency",
    }
);
text_enum!(
    /// Reserve pool transfers (SPEC 7).
    ReserveKind {
        ProfitSiphon => "profit_siphon",
        HighWaterRebalance => "high_water_rebalance",
        EmergencyLiquidation => "emergency_liquidation",
        ManualRelease => "manual_release",
    }
);
text_enum!(
    /// Portfolio snapshots: every 15 minutes, and the day's close.
    SnapshotKind { Intraday => "intraday", Close => "close" }
);
text_enum!(
    /// A trading decision's outcome.
    Outcome { Act => "act", Skip => "skip" }
);
text_enum!(
    /// Pre-trade checks a–f (SPEC 4), in evaluation order.
    CheckName {
        CircuitBreaker => "circuit_breaker",
        TradingWindow => "trading_window",
        Confidence => "confidence",
        Dedupe => "dedupe",
        DecliningPositions => "declining_positions",
        MaxOpenPositions => "max_open_positions",
    }
);
text_enum!(
    /// The eight position-sizing steps (SPEC 4), in order.
    SizingStep {
        Base => "base",
        Correlation => "correlation",
        Sector => "sector",
        Diversification => "diversification",
        Earnings => "earnings",
        AbsoluteCap => "absolute_cap",
        PortfolioHeat => "portfolio_heat",
        ShareRounding => "share_rounding",
    }
);
text_enum!(
    /// The fields step 0 validates, in validation order (SPEC 13).
    RecommendationField {
        Ticker => "ticker",
        Action => "action",
        Confidence => "confidence",
        Mode => "mode",
        GeneratedAt => "generated_at",
    }
);
text_enum!(
    /// Why a sizing step rejected a buy (SPEC 4).
    RejectReason {
        Correlation => "correlation",
        SectorCap => "sector_cap",
        Earnings => "earnings",
        InsufficientCash => "insufficient_cash",
        PositionCap => "position_cap",
        PortfolioHeat => "portfolio_heat",
        BelowOneShare => "below_one_share",
    }
);
text_enum!(
    /// Tier changes at the risk_tier tick.
    TierChangeReason { Promote => "promote", Demote => "demote" }
);

/// Why a recommendation was skipped: `invalid:<field>`, `stale`, a check's name, a
/// sell or buy path reason, or a sizing reject word (SPEC 12: "skip reasons are the check
/// name or the reject word").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    Invalid(RecommendationField),
    Stale,
    Check(CheckName),
    NoPosition,
    ExitPending,
    EntryPending,
    NoPrice,
    Rejected(RejectReason),
}

impl SkipReason {
    /// The reason's text, as recorded.
    #[must_use]
    pub fn as_text(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Invalid(field) => format!("invalid:{field}").into(),
            Self::Stale => "stale".into(),
            Self::Check(check) => check.as_str().into(),
            Self::NoPosition => "no_position".into(),
            Self::ExitPending => "exit_pending".into(),
            Self::EntryPending => "entry_pending".into(),
            Self::NoPrice => "no_price".into(),
            Self::Rejected(reason) => reason.as_str().into(),
        }
    }

    /// Reads a recorded reason.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(field) = text.strip_prefix("invalid:") {
            return RecommendationField::parse(field).map(Self::Invalid);
        }
        Some(match text {
            "stale" => Self::Stale,
            "no_position" => Self::NoPosition,
            "exit_pending" => Self::ExitPending,
            "entry_pending" => Self::EntryPending,
            "no_price" => Self::NoPrice,
            other => {
                CheckName::parse(other).map(Self::Check).or_else(|| RejectReason::parse(other).map(Self::Rejected))?
            }
        })
    }

    /// Whether the recommendation stays pending (transient checks a–c only).
    #[must_use]
    pub const fn is_transient(self) -> bool {
        matches!(self, Self::Check(CheckName::CircuitBreaker | CheckName::TradingWindow | CheckName::Confidence))
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

impl Serialize for SkipReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_text())
    }
}

impl<'de> Deserialize<'de> for SkipReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown skip reason {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_round_trip() {
        let mut all = vec![
            SkipReason::Stale,
            SkipReason::NoPosition,
            SkipReason::ExitPending,
            SkipReason::EntryPending,
            SkipReason::NoPrice,
        ];
        all.extend(RecommendationField::ALL.iter().map(|f| SkipReason::Invalid(*f)));
        all.extend(CheckName::ALL.iter().map(|c| SkipReason::Check(*c)));
        all.extend(RejectReason::ALL.iter().map(|r| SkipReason::Rejected(*r)));
        for reason in all {
            assert_eq!(SkipReason::parse(&reason.as_text()), Some(reason));
        }
        assert_eq!(SkipReason::Invalid(RecommendationField::GeneratedAt).to_string(), "invalid:generated_at");
        assert_eq!(SkipReason::parse("nonsense"), None);
    }
}
