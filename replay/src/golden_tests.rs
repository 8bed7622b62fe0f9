//! Golden files: `simulate` over the shipped real-data sample (`data/sample/scenario.jsonl`).
//! `replay/tests/golden/` holds the summary, every decision that matters to a reviewer
//! (decisions, orders, fills, trade closes, breakers, reserve, tiers) and the SHA-256 of
//! the full output. Regenerate with `UPDATE_EXPECT=1 cargo test -p tape-replay golden` and
//! review the diff.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tape_events::Config;

use crate::simulate::{self, Options, Quiet};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_EXPECT=1 to create it)", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a);
        panic!(
            "{} differs from this run (first differing line {:?}); if the change is intended, \
             regenerate with UPDATE_EXPECT=1 and review the diff",
            path.display(),
            first.map(|i| i + 1)
        );
    }
}

#[test]
fn golden_sample_run() {
    let input = std::fs::read(root().join("../data/sample/scenario.jsonl")).unwrap();
    let mut out = Vec::new();
    let (summary, _) =
        simulate::run(&input[..], &mut out, &Options { config: Config::default(), ..Options::default() }, &mut Quiet)
            .unwrap();
    let digest = hex::encode(Sha256::digest(&out));
    let mut decisions = String::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let event_type = line.split('"').nth(3).unwrap_or_default();
        let keep = matches!(
            event_type,
            "TradingDecisionRecorded"
                | "OrderPlaced"
                | "OrderFilled"
                | "TradeClosed"
                | "StopLossTriggered"
                | "CircuitBreakerTripped"
                | "ReserveTransferred"
                | "RiskTierChanged"
        );
        if keep && !(event_type == "TradingDecisionRecorded" && line.contains("\"final\":false")) {
            decisions.push_str(line);
            decisions.push('\n');
        }
    }
    check("sample.summary.txt", &format!("{summary}\nsha256 of the full output: {digest}\n"));
    check("sample.decisions.jsonl", &decisions);
}
