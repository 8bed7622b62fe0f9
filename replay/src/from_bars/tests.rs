//! Tests of the whole generator over the shipped sample bars (`data/sample/`).

use std::path::PathBuf;

use serde_json::Value;

use super::*;

const SAMPLE_BARS: &str = include_str!("../../../data/sample/bars.csv");
const SAMPLE_SECTORS: &str = include_str!("../../../data/sample/sectors.csv");
const SAMPLE_TICKERS: &str = "AAPL,AMZN,BA,JNJ,JPM,MSFT,PG,XOM";
/// The shipped `data/sample/scenario.jsonl` is made with exactly these (see its README).
const SAMPLE_SEED: u64 = 20_170_103;

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn sources_for(tickers: &BTreeSet<String>) -> (BarSet, SectorSet) {
    let bars = read_bars(SAMPLE_BARS.as_bytes(), "bars.csv", tickers).unwrap();
    let sectors = read_sectors(SAMPLE_SECTORS.as_bytes(), "sectors.csv").unwrap();
    (bars, sectors)
}

fn params(tickers: &str, from: &str, to: &str, seed: u64) -> Params {
    Params {
        tickers: parse_tickers(tickers).unwrap(),
        from: date(from),
        to: date(to),
        seed,
        account_id: "demo".into(),
        initial_cash: parse_initial_cash("100000.00").unwrap(),
        interval_minutes: 5,
    }
}

fn run(params: &Params) -> Result<(Vec<u8>, Summary), FromBarsError> {
    let (bars, sectors) = sources_for(&params.tickers);
    run_with(params, &bars, &sectors)
}

fn run_with(params: &Params, bars: &BarSet, sectors: &SectorSet) -> Result<(Vec<u8>, Summary), FromBarsError> {
    let holidays = tape_events::config::nyse_holidays();
    let mut out = Vec::new();
    let summary = generate(params, &Sources { bars, sectors, holidays }, &mut out)?;
    Ok((out, summary))
}

fn lines(out: &[u8]) -> Vec<Value> {
    std::str::from_utf8(out).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn at(line: &Value) -> Timestamp {
    Timestamp::parse(line["at"].as_str().unwrap()).unwrap()
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let p = params("AAPL,MSFT,XOM", "2017-01-03", "2017-01-31", 7);
    let (a, _) = run(&p).unwrap();
    let (b, _) = run(&p).unwrap();
    assert_eq!(a, b);
    let (c, _) = run(&Params { seed: 8, ..p.clone() }).unwrap();
    assert_ne!(a, c);
    // The order of --tickers does not matter.
    let (d, _) = run(&Params { tickers: parse_tickers("XOM,AAPL,MSFT,AAPL").unwrap(), ..p }).unwrap();
    assert_eq!(a, d);
}

#[test]
fn output_is_a_time_ordered_scenario_with_opening_and_warmup() {
    let p = params("AAPL,JPM", "2017-01-03", "2017-01-06", 1);
    let (out, summary) = run(&p).unwrap();
    let lines = lines(&out);
    assert_eq!(lines[0]["type"], "AccountOpened");
    assert_eq!(lines[0]["at"], "2017-01-03T13:00:00.000000Z", "08:00 ET");
    assert_eq!(lines[0]["initial_cash"], "100000.00");
    assert_eq!(lines[1]["type"], "SecurityUpdated");
    assert_eq!(lines[1]["ticker"], "AAPL");
    assert_eq!(lines[1]["sector"], "Information Technology");
    assert_eq!(lines[2]["ticker"], "JPM");
    let warmup: Vec<&Value> =
        lines.iter().filter(|l| l["type"] == "DailyBarObserved" && at(l) == at(&lines[0])).collect();
    assert_eq!(warmup.len(), 2 * WARMUP_DAYS);
    assert_eq!(warmup.last().unwrap()["date"], "2016-12-30");
    for pair in lines.windows(2) {
        assert!(at(&pair[0]) <= at(&pair[1]), "at decreases: {} then {}", pair[0], pair[1]);
    }
    // 4 days × 2 tickers × 79 quotes, one bar per ticker and day.
    assert_eq!(summary.trading_days, 4);
    assert_eq!(summary.quotes, 4 * 2 * 79);
    assert_eq!(summary.daily_bars, 2 * (4 + WARMUP_DAYS as u64));
    assert_eq!(summary.lines, lines.len() as u64);
    let bar = lines.iter().find(|l| l["type"] == "DailyBarObserved" && l["date"] == "2017-01-03").unwrap();
    assert_eq!(bar["at"], "2017-01-03T21:30:00.000000Z", "16:30 ET, after its day");
    assert_eq!(bar["close"], "116.15");
}

#[test]
fn quote_times_are_utc_correct_across_dst() {
    // DST began on Sunday 2017-03-12.
    let (out, _) = run(&params("AAPL", "2017-03-10", "2017-03-13", 3)).unwrap();
    let quotes: Vec<Value> = lines(&out).into_iter().filter(|l| l["type"] == "QuoteObserved").collect();
    assert_eq!(quotes.len(), 2 * 79);
    assert_eq!(quotes[0]["at"], "2017-03-10T14:30:00.000000Z");
    assert_eq!(quotes[78]["at"], "2017-03-10T21:00:00.000000Z");
    assert_eq!(quotes[79]["at"], "2017-03-13T13:30:00.000000Z");
    assert_eq!(quotes[157]["at"], "2017-03-13T20:00:00.000000Z");
    // The day's path starts at the open and ends at the close of the file.
    assert_eq!(quotes[0]["price"], "139.25"); // AAPL 2017-03-10 open
    assert_eq!(quotes[78]["price"], "139.14"); // close
}

#[test]
fn the_feed_uses_nothing_it_could_not_have_known() {
    let p = params(SAMPLE_TICKERS, "2017-01-03", "2017-03-31", SAMPLE_SEED);
    let (out, summary) = run(&p).unwrap();
    assert!(summary.buys > 0 && summary.sells > 0, "{summary:?}");
    // Replay the stream and recompute each recommendation from what was visible at its
    // generated_at: earlier DailyBarObserved lines and earlier quotes only.
    let mut closes: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    let mut quotes: BTreeMap<String, Vec<(Timestamp, Decimal)>> = BTreeMap::new();
    let mut checked = 0;
    let all = lines(&out);
    for (index, line) in all.iter().enumerate() {
        match line["type"].as_str().unwrap() {
            "DailyBarObserved" => {
                let close = line["close"].as_str().unwrap().parse().unwrap();
                closes
                    .entry(line["ticker"].as_str().unwrap().into())
                    .or_default()
                    .insert(line["date"].as_str().unwrap().into(), close);
            }
            "QuoteObserved" => {
                let price = line["price"].as_str().unwrap().parse().unwrap();
                quotes.entry(line["ticker"].as_str().unwrap().into()).or_default().push((at(line), price));
            }
            "RecommendationReceived" => {
                checked += 1;
                let Ok(generated_at) = Timestamp::parse(line["generated_at"].as_str().unwrap()) else {
                    continue;
                };
                let ticker = line["ticker"].as_str().unwrap().to_ascii_uppercase();
                let seconds = (at(line).unix_micros() - generated_at.unix_micros()) / 1_000_000;
                assert!((5..=180).contains(&seconds), "{line}");
                // Every line written before generated_at is on file above this one.
                assert!(all[..index].iter().all(|l| at(l) <= at(line)));
                let known: Vec<Decimal> = closes[&ticker].values().copied().collect();
                let momentum = feed::Momentum::from_closes(&known).unwrap();
                let price = quotes[&ticker].iter().rev().find(|(t, _)| *t <= generated_at).unwrap().1;
                let z = momentum.z_at(price);
                let confidence = line["confidence"].as_str().unwrap();
                match line["action"].as_str().unwrap().to_ascii_lowercase().as_str() {
                    "buy" if confidence != "1.2" && !confidence.contains('e') => {
                        assert_eq!(feed::buy_confidence(z).unwrap().to_string(), confidence, "{line}");
                    }
                    "sell" => assert!(z <= 0.0, "{line}"),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(checked as u64, summary.buys + summary.sells);
}

#[test]
fn later_bars_do_not_change_earlier_days() {
    let tickers = parse_tickers("AAPL,JNJ,XOM").unwrap();
    let (full, sectors) = sources_for(&tickers);
    let mut cut = full.clone();
    for bars in cut.bars.values_mut() {
        bars.retain(|d, _| *d <= date("2017-02-15"));
    }
    let p = params("AAPL,JNJ,XOM", "2017-01-03", "2017-02-15", 11);
    assert_eq!(run_with(&p, &full, &sectors).unwrap().0, run_with(&p, &cut, &sectors).unwrap().0);
    // And a longer run starts with the shorter one (the earnings updates aside, which
    // look ahead by design: they are reference data, published in advance).
    let (short, _) = run_with(&p, &full, &sectors).unwrap();
    let (long, _) = run_with(&Params { to: date("2017-03-31"), ..p }, &full, &sectors).unwrap();
    assert!(long.starts_with(&short));
}

#[test]
fn a_few_recommendations_are_malformed_on_purpose() {
    let p = params(SAMPLE_TICKERS, "2017-01-03", "2017-06-30", SAMPLE_SEED);
    let (out, summary) = run(&p).unwrap();
    let total = summary.buys + summary.sells;
    assert!(summary.invalid_recommendations > 0 && summary.invalid_recommendations * 50 < total, "{summary:?}");
    let malformed = lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "RecommendationReceived")
        .filter(|l| {
            let ticker = l["ticker"].as_str().unwrap();
            let action = l["action"].as_str().unwrap();
            let confidence = l["confidence"].as_str().unwrap();
            !tape_events::ids::is_valid_ticker(ticker)
                || !["buy", "sell"].contains(&action)
                || tape_events::money::parse_plain_decimal(confidence).map_or(true, |c| c > Decimal::ONE)
                || l["mode"] != "paper_eligible"
                || Timestamp::parse(l["generated_at"].as_str().unwrap()).is_err()
        })
        .count();
    assert_eq!(malformed as u64, summary.invalid_recommendations);
}

#[test]
fn arguments_the_data_cannot_serve_are_clear_errors() {
    let message = |p: Params| run(&p).unwrap_err().to_string();
    assert_eq!(
        message(params("AAPL,ZZZZ", "2017-01-03", "2017-01-31", 1)),
        r#"unknown ticker "ZZZZ" in --tickers: the bars file has no rows for it"#
    );
    assert_eq!(
        message(params("AAPL", "2017-02-01", "2017-01-31", 1)),
        "empty range: --from 2017-02-01 is after --to 2017-01-31"
    );
    assert_eq!(
        message(params("AAPL", "2017-01-01", "2017-01-02", 1)),
        "no trading day between --from 2017-01-01 and --to 2017-01-02"
    );
    assert_eq!(
        message(params("AAPL", "2018-01-02", "2018-01-31", 1)),
        r#"ticker "AAPL" has no bars between --from 2018-01-02 and --to 2018-01-31"#
    );
    assert_eq!(
        parse_date("--from", "2017-13-01").unwrap_err().to_string(),
        r#"invalid --from "2017-13-01": expected a date YYYY-MM-DD (input is out of range)"#
    );
    assert_eq!(
        parse_tickers("AAPL,msft").unwrap_err().to_string(),
        r#"invalid --tickers "msft": a ticker must match ^[A-Z][A-Z0-9.-]{0,9}$"#
    );
    assert!(parse_tickers(" , ").is_err());
    assert_eq!(parse_interval("5m").unwrap(), 5);
    assert_eq!(parse_interval("1h").unwrap(), 60);
    for bad in ["0m", "3h", "5", "m", "-5m", "5s"] {
        assert!(parse_interval(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_initial_cash("-5").unwrap_err().to_string(),
        r#"invalid --initial-cash "-5": expected a positive amount like 100000.00"#
    );
}

/// The shipped `data/sample/scenario.jsonl` is what the documented command makes.
/// `UPDATE_EXPECT=1 cargo test -p tape-replay shipped_sample` rewrites it.
#[test]
fn shipped_sample_scenario_is_up_to_date() {
    let p = params(SAMPLE_TICKERS, "2017-01-03", "2017-03-31", SAMPLE_SEED);
    let (out, _) = run(&p).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/sample/scenario.jsonl");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let shipped = std::fs::read(&path).unwrap_or_default();
    assert!(
        shipped == out,
        "{} is out of date: regenerate it with UPDATE_EXPECT=1 cargo test -p tape-replay shipped_sample",
        path.display()
    );
}
