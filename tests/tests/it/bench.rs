//! `tape bench audit` end to end at a small size, so the benchmark cannot rot: it builds
//! a multi-account store from the bench data, explains samples of every stratum (the fast
//! path agreeing with `--from-log`), verifies the chains, and drops its scratch database.

use std::path::PathBuf;

use tape_services::bench_audit::{self, AuditBenchOptions};
use tape_services::db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_audit_builds_explains_verifies_and_drops_its_database() {
    let data = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/bench"));
    let options = AuditBenchOptions {
        admin_url: tape_tests::admin_url(),
        bars: data.join("sp500_50_2013_2018.csv.gz"),
        sectors: data.join("sectors.csv"),
        events: 40_000,
        accounts: 2,
        samples: 9,
        command_samples: 0,
        from_log_samples: 2,
        tape_exe: None,
        keep: false,
        existing: None,
    };
    let report = bench_audit::run(&options, |_| {}).await.unwrap();
    assert!(report.events >= 40_000 && report.streams == 2, "{} events, {} streams", report.events, report.streams);
    assert!(report.setup.as_ref().is_some_and(|s| s.events == report.events));
    assert_eq!(report.explain.samples, report.explain_warm.samples);
    assert!(report.explain.samples >= 6 && report.explanations >= report.explain.samples, "{report:?}");
    assert!(report.strata.iter().all(|(_, n)| *n > 0), "every stratum sampled: {:?}", report.strata);
    assert_eq!(report.from_log_agreed, 2);
    assert!(report.verify_intact && report.immutability_refused == 3);
    assert_eq!((report.raw.events, report.verify.events), (report.events, report.events));

    let admin = db::connect(&tape_tests::admin_url()).await.unwrap();
    let left: i64 = admin
        .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&report.database])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the scratch database {} is dropped", report.database);
}
