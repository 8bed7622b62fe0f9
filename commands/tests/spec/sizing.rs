//! SPEC 4 steps 1–8: each step shown binding, each reject shown.

use tape_events::*;

use crate::harness::*;

fn dates(n: usize) -> Vec<String> {
    // n consecutive calendar days ending 2024-03-01 (closes need not be trading days).
    let end = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
    (0..n).rev().map(|i| (end - chrono::Duration::days(i as i64)).to_string()).collect()
}

/// Closes from a return pattern: +25% on `true`, −20% on `false`.
fn closes(mut g: Given, ticker: &str, pattern: &[bool]) -> Given {
    let days = dates(pattern.len() + 1);
    let mut level = rust_decimal::Decimal::from(100);
    g = g.close(ticker, &days[0], &level.to_string());
    for (day, up) in days[1..].iter().zip(pattern) {
        level = if *up { level * dec("1.25") } else { level * dec("0.8") };
        g = g.close(ticker, day, &level.round_dp(6).to_string());
    }
    g
}

fn base() -> Given {
    given()
        .security("AAA", Some("Tech"), None)
        .at(t("14:35"))
        .quote("AAA", "100.00")
        .quote("BBB", "100.00")
        .at(t("14:36"))
}

#[test]
fn base_uses_unrounded_pct_and_caps_at_max_position_pct() {
    // 0.05 × 0.5 × 0.82/0.75 = 0.027333… → 2733.33 (a rounded pct would give 2730.00).
    let g = given().at(t("14:35")).quote("AAPL", "176.15").at(t("14:36"));
    let then = g.when_rec("r", "AAPL", "buy", "0.82");
    assert_eq!(then.step(SizingStep::Base), ("100000.00".into(), "2733.33".into()));
    then.acts(18, "3170.70");
    // Confidence 1.0 would give 0.0333…, capped by min(0.05, …) only above 1.5 × min_confidence.
    let then = base().when_rec("big", "AAA", "buy", "1.0");
    assert_eq!(then.step(SizingStep::Base).1, "3333.33");
}

#[test]
fn correlation_reduces_between_the_thresholds() {
    // 16 agreeing and 4 disagreeing days of ±: ρ = (16 − 4)/20 = 0.6 → factor 0.8333.
    let a: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
    let mut b = a.clone();
    for i in [0, 1, 2, 3] {
        b[i] = !b[i];
    }
    // Keep 10 ups and 10 downs in each series so both means match the hand arithmetic.
    let g =
        closes(closes(base(), "AAA", &a), "BBB", &b).holding("AAA", 30, "100.00").security("BBB", Some("Health"), None);
    let then = g.at(t("14:37")).when_rec("r", "BBB", "buy", "0.75");
    let (before, after) = then.step(SizingStep::Correlation);
    assert_eq!(before, "2500.00");
    let rho = then.find(|e| match e {
        Event::SizingStepApplied(s) if s.step == SizingStep::Correlation => Some(&s.detail),
        _ => None,
    });
    let rho_bar: rust_decimal::Decimal = rho.unwrap()["rho_bar"].as_str().unwrap().parse().unwrap();
    assert!(rho_bar > dec("0.5") && rho_bar <= dec("0.8"), "{rho_bar}");
    let factor = tape_events::round4(dec("1") - dec("0.5") * (rho_bar - dec("0.5")) / dec("0.3"));
    assert_eq!(after, tape_events::cents(dec("2500.00") * factor).to_string());
}

#[test]
fn correlation_above_reject_rejects_and_no_later_step_is_recorded() {
    let pattern: Vec<bool> = (0..20).map(|i| i % 3 == 0).collect();
    let g = closes(closes(base(), "AAA", &pattern), "BBB", &pattern).holding("AAA", 30, "100.00");
    let then = g.at(t("14:37")).when_rec("r", "BBB", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Correlation), ("2500.00".into(), "0.00".into()));
    assert_eq!(then.steps().len(), 2);
    then.skips("correlation", true);
}

#[test]
fn correlation_passes_with_too_few_aligned_returns_and_ignores_the_recommended_ticker() {
    let pattern: Vec<bool> = (0..19).map(|i| i % 3 == 0).collect();
    let g = closes(closes(base(), "AAA", &pattern), "BBB", &pattern).holding("AAA", 30, "100.00");
    let then = g.at(t("14:37")).when_rec("r", "BBB", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Correlation), ("2500.00".into(), "2500.00".into()));
    // The recommended ticker itself is held: excluded even though it correlates perfectly.
    let pattern: Vec<bool> = (0..25).map(|i| i % 3 == 0).collect();
    let g = closes(base(), "AAA", &pattern).holding("AAA", 10, "100.00");
    let then = g.at(t("14:37")).when_rec("again", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Correlation), ("2500.00".into(), "2500.00".into()));
}

#[test]
fn sector_headroom_binds_and_rejects_counting_open_buys() {
    let g = given_with(|c| c.tiers.conservative.max_sector_pct = dec("0.04"))
        .security("AAA", Some("Tech"), None)
        .security("BBB", Some("Tech"), None)
        .security("CCC", Some("Tech"), None)
        .at(t("14:35"))
        .holding("AAA", 30, "100.00")
        .quote("BBB", "100.00")
        .quote("CCC", "100.00")
        .at(t("14:36"));
    let then = g.when_rec("b", "BBB", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Sector), ("2500.00".into(), "1000.00".into()));
    assert_eq!(then.step(SizingStep::Diversification), ("1000.00".into(), "1000.00".into()));
    then.acts(10, "1000.00");
    let g = then.and().at(t("14:37"));
    let then = g.when_rec("c", "CCC", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Sector), ("2500.00".into(), "0.00".into()));
    then.skips("sector_cap", true);
}

#[test]
fn diversification_follows_the_sector_cap_and_stops_at_three_sectors() {
    let g = given_with(|c| c.tiers.conservative.max_sector_pct = dec("0.02"))
        .at(t("14:35"))
        .quote("AAA", "100.00")
        .at(t("14:36"));
    let then = g.when_rec("r", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Sector).1, "2000.00");
    assert_eq!(then.step(SizingStep::Diversification).1, "2400.00");
    then.acts(24, "2400.00");

    let g = given()
        .security("AAA", Some("Tech"), None)
        .security("BBB", Some("Health"), None)
        .security("CCC", Some("Energy"), None)
        .security("DDD", Some("Utilities"), None)
        .at(t("14:40"))
        .holding("AAA", 30, "100.00")
        .holding("BBB", 30, "100.00")
        .holding("CCC", 30, "100.00")
        .quote("DDD", "100.00")
        .at(t("14:41"));
    let then = g.when_rec("d", "DDD", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Diversification), ("2500.00".into(), "2500.00".into()));
    then.acts(25, "2500.00");
}

#[test]
fn unknown_sector_is_a_sector_of_its_own() {
    let g = given().at(t("14:35")).holding("XXX", 30, "100.00").quote("AAA", "100.00").at(t("14:36"));
    // Both are UNKNOWN: held sector → no bonus.
    let then = g.when_rec("r", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::Diversification), ("2500.00".into(), "2500.00".into()));
}

#[test]
fn earnings_reject_halve_and_pass_by_calendar_days_in_et() {
    for (date, expect) in [
        ("2024-03-04", Err("earnings")),
        ("2024-03-05", Err("earnings")),
        ("2024-03-06", Ok("1500.00")),
        ("2024-03-07", Ok("1500.00")),
        ("2024-03-08", Ok("3000.00")),
        ("2024-03-01", Ok("3000.00")),
    ] {
        let g = given().security("AAA", None, Some(date)).at(t("14:35")).quote("AAA", "100.00").at(t("14:36"));
        let then = g.when_rec("e", "AAA", "buy", "0.75");
        match expect {
            Err(reason) => {
                assert_eq!(then.step(SizingStep::Earnings), ("3000.00".into(), "0.00".into()), "{date}");
                then.skips(reason, true);
            }
            Ok(after) => assert_eq!(then.step(SizingStep::Earnings).1, after, "{date}"),
        }
    }
    // 21:30Z on 03-04 is still 03-04 in ET (16:30 EST): d = 0 → reject.
    let g = given().security("AAA", None, Some("2024-03-04")).at(t("21:29")).quote("AAA", "100.00").at(t("21:30"));
    let then = g.when_rec("late", "AAA", "buy", "0.75");
    then.skips("trading_window", false);
}

#[test]
fn absolute_cap_binds_on_each_of_its_limits_and_rejects() {
    // max_position_dollars
    let then = given_with(|c| c.max_position_dollars = money("1000.00"))
        .at(t("14:35"))
        .quote("AAA", "100.00")
        .at(t("14:36"))
        .when_rec("r", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::AbsoluteCap), ("3000.00".into(), "1000.00".into()));
    then.acts(10, "1000.00");
    // position cap: 0.05 × A − held
    let then = base().holding("AAA", 30, "100.00").when_rec("again", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::AbsoluteCap), ("2500.00".into(), "2000.00".into()));
    // position cap below zero → position_cap
    let g = base().holding("AAA", 40, "100.00").at(t("14:45")).quote("AAA", "130.00").at(t("14:46"));
    let then = g.when_rec("more", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::AbsoluteCap), ("2530.00".into(), "0.00".into()));
    then.skips("position_cap", true);
}

#[test]
fn available_cash_excludes_reserve_and_open_buys() {
    let loose = |c: &mut Config| {
        c.tiers.conservative.min_confidence = dec("0.50");
        c.tiers.conservative.max_position_pct = dec("1.00");
        c.tiers.conservative.max_sector_pct = dec("1.00");
        c.tiers.conservative.max_portfolio_heat = dec("1.00");
    };
    let g = given_account(AccountMode::Paper, "20000.00", loose)
        .security("AAA", Some("Tech"), None)
        .security("BBB", Some("Health"), None)
        .security("CCC", Some("Energy"), None)
        .at(t("14:35"))
        .quote("AAA", "100.00")
        .quote("BBB", "50.00")
        .quote("CCC", "10.00")
        .at(t("14:36"))
        .input(rec("a", "AAA", "buy", "0.6", "2024-03-04T14:35:00Z"));
    let then = g.when_rec("b", "BBB", "buy", "1.0");
    assert_eq!(then.step(SizingStep::AbsoluteCap).1, "5600.00");
    then.acts(112, "5600.00");
    let g = then.and().at(t("14:36"));
    let then = g.when_rec("c", "CCC", "buy", "1.0");
    then.skips("insufficient_cash", true);

    // The reserve is not spendable either.
    let g = given_account(AccountMode::Paper, "20000.00", loose)
        .at(t("14:35"))
        .quote("AAA", "100.00")
        .event(ReserveTransferred {
            kind: ReserveKind::ProfitSiphon,
            amount: money("19000.00"),
            balance_after: money("19000.00"),
        })
        .at(t("14:36"));
    let then = g.when_rec("r", "AAA", "buy", "1.0");
    assert_eq!(then.step(SizingStep::AbsoluteCap).1, "1000.00");
}

#[test]
fn portfolio_heat_reduces_to_the_limit_and_rejects_at_zero() {
    let g = given_with(|c| c.tiers.conservative.max_portfolio_heat = dec("0.002"))
        .security("BBB", Some("Health"), None)
        .at(t("14:35"))
        .holding("AAA", 30, "100.00")
        .quote("BBB", "100.00")
        .at(t("14:41"));
    let then = g.when_rec("b", "BBB", "buy", "0.75");
    assert_eq!(then.step(SizingStep::PortfolioHeat), ("3000.00".into(), "1000.00".into()));
    then.acts(10, "1000.00");
    let g = given_with(|c| c.tiers.conservative.max_portfolio_heat = dec("0.0015"))
        .security("BBB", Some("Health"), None)
        .at(t("14:35"))
        .holding("AAA", 30, "100.00")
        .quote("BBB", "100.00")
        .at(t("14:41"));
    let then = g.when_rec("b", "BBB", "buy", "0.75");
    assert_eq!(then.step(SizingStep::PortfolioHeat), ("3000.00".into(), "0.00".into()));
    then.skips("portfolio_heat", true);
}

#[test]
fn share_rounding_floors_and_rejects_below_one_share() {
    let g = given().at(t("14:35")).quote("BIG", "5000.00").at(t("14:36"));
    let then = g.when_rec("r", "BIG", "buy", "0.75");
    assert_eq!(then.step(SizingStep::ShareRounding), ("3000.00".into(), "0.00".into()));
    then.skips("below_one_share", true);
    let g = given().at(t("14:35")).quote("AAA", "176.15").at(t("14:36"));
    let then = g.when_rec("r", "AAA", "buy", "0.75");
    assert_eq!(then.step(SizingStep::ShareRounding), ("3000.00".into(), "2994.55".into()));
}

#[test]
fn a_shorter_correlation_window_applies_to_the_closes_already_held() {
    let pattern: Vec<bool> = (0..70).map(|i| i % 3 != 0).collect();
    let shorter = Config { correlation_window: 30, ..Config::default() };
    let activated = ConfigActivated { hash: shorter.hash(), config: Box::new(shorter) };
    // Held under the default window, then the window shrinks.
    let shrunk = closes(given(), "AAA", &pattern).event(activated);
    // Held under the shorter window from the start.
    let fresh = closes(given_with(|c| c.correlation_window = 30), "AAA", &pattern);
    let (a, b) = (&shrunk.state().closes["AAA"], &fresh.state().closes["AAA"]);
    assert_eq!(a.dates().len(), 30);
    assert_eq!((a.dates(), a.closes(), a.returns()), (b.dates(), b.closes(), b.returns()));
}
