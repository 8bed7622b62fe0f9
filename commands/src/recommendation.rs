//! A captured recommendation and its validation (SPEC 4 step 0, SPEC 13's order).

use rust_decimal::Decimal;
use tape_events::ids::is_valid_ticker;
use tape_events::money::parse_plain_decimal;
use tape_events::{AccountMode, RecommendationField, RecommendationReceived, Side, Timestamp};

/// The fields of a recommendation that passed step 0's validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidFields {
    pub ticker: String,
    pub side: Side,
    pub confidence: Decimal,
    pub generated_at: Timestamp,
}

/// Whether the captured fields passed validation, and if not, the first bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    Valid(ValidFields),
    Invalid(RecommendationField),
}

/// A recommendation as captured: its raw fields and what validation made of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub id: String,
    /// The ticker exactly as received (echoed in decisions).
    pub raw_ticker: Option<String>,
    /// The action exactly as received (echoed as `side`).
    pub raw_action: Option<String>,
    pub validity: Validity,
}

impl Recommendation {
    /// Captures and validates a received recommendation for an account of `mode`.
    #[must_use]
    pub fn capture(received: &RecommendationReceived, mode: AccountMode) -> Self {
        Self {
            id: received.recommendation_id.clone(),
            raw_ticker: received.ticker.clone(),
            raw_action: received.action.clone(),
            validity: validate(received, mode),
        }
    }
}

/// Step 0: ticker, action, confidence, mode, generated_at, in that order (SPEC 13).
#[must_use]
pub fn validate(received: &RecommendationReceived, mode: AccountMode) -> Validity {
    use RecommendationField as F;
    let Some(ticker) = received.ticker.as_deref().filter(|t| is_valid_ticker(t)) else {
        return Validity::Invalid(F::Ticker);
    };
    let side = match received.action.as_deref() {
        Some("buy") => Side::Buy,
        Some("sell") => Side::Sell,
        _ => return Validity::Invalid(F::Action),
    };
    let confidence = match received.confidence.as_deref().map(parse_plain_decimal) {
        Some(Ok(c)) if c >= Decimal::ZERO && c <= Decimal::ONE => c,
        _ => return Validity::Invalid(F::Confidence),
    };
    match (received.mode.as_deref(), mode) {
        (Some("live_eligible"), _) | (Some("paper_eligible"), AccountMode::Paper) => {}
        _ => return Validity::Invalid(F::Mode),
    }
    let Some(generated_at) = received.generated_at.as_deref().and_then(|t| Timestamp::parse(t).ok()) else {
        return Validity::Invalid(F::GeneratedAt);
    };
    Validity::Valid(ValidFields { ticker: ticker.to_owned(), side, confidence, generated_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ticker: &str, action: &str, confidence: &str, mode: &str, generated_at: &str) -> RecommendationReceived {
        RecommendationReceived {
            recommendation_id: "r".into(),
            ticker: Some(ticker.into()),
            action: Some(action.into()),
            confidence: Some(confidence.into()),
            mode: Some(mode.into()),
            generated_at: Some(generated_at.into()),
            source: None,
        }
    }

    #[test]
    fn fields_are_checked_in_spec_order() {
        use RecommendationField as F;
        let at = "2024-03-04T14:36:00Z";
        let invalid = |r: &RecommendationReceived, m| match validate(r, m) {
            Validity::Invalid(f) => Some(f),
            Validity::Valid(_) => None,
        };
        assert_eq!(invalid(&rec("aapl", "hold", "2", "x", "y"), AccountMode::Paper), Some(F::Ticker));
        assert_eq!(invalid(&rec("AAPL", "BUY", "0.5", "paper_eligible", at), AccountMode::Paper), Some(F::Action));
        assert_eq!(invalid(&rec("AAPL", "buy", "1.01", "paper_eligible", at), AccountMode::Paper), Some(F::Confidence));
        assert_eq!(invalid(&rec("AAPL", "buy", "1e-1", "paper_eligible", at), AccountMode::Paper), Some(F::Confidence));
        assert_eq!(invalid(&rec("AAPL", "buy", "-0.1", "paper_eligible", at), AccountMode::Paper), Some(F::Confidence));
        assert_eq!(invalid(&rec("AAPL", "buy", "0.5", "research", at), AccountMode::Paper), Some(F::Mode));
        assert_eq!(invalid(&rec("AAPL", "buy", "0.5", "paper_eligible", at), AccountMode::Live), Some(F::Mode));
        assert_eq!(
            invalid(&rec("AAPL", "buy", "0.5", "live_eligible", "soon"), AccountMode::Live),
            Some(F::GeneratedAt)
        );
        assert_eq!(invalid(&rec("AAPL", "sell", "1", "live_eligible", at), AccountMode::Paper), None);
        assert_eq!(invalid(&rec("BRK.B", "buy", "0", "paper_eligible", at), AccountMode::Paper), None);
    }
}
