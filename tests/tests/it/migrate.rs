//! `tape migrate`: creates the database, applies everything once, is idempotent.

use tape_services::migrate;
use tape_tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_database_then_applies_nothing_the_second_time() {
    let db = TestDb::new().await;
    assert!(db.migration.created_database, "the first run creates the database");
    let known = migrate::known_migrations();
    assert_eq!(db.migration.applied, known, "the first run applies every migration");
    assert!(known.len() >= 3);

    let again = migrate::migrate(&db.url).await.unwrap();
    assert!(!again.created_database);
    assert!(again.applied.is_empty(), "second run applied {:?}", again.applied);
    assert_eq!(again.current_version, known.last().map(|m| m.version));

    // The upstream tables of SPEC 8 exist with their columns.
    let admin = db.admin().await;
    let columns: Vec<String> = admin
        .query(
            "SELECT table_name || '.' || column_name FROM information_schema.columns \
             WHERE table_name IN ('recommendations', 'market_quotes', 'securities', 'daily_bars') \
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "recommendations.account_id",
        "recommendations.confidence",
        "market_quotes.observed_at",
        "securities.next_earnings_date",
        "daily_bars.volume",
    ] {
        assert!(columns.iter().any(|c| c == expected), "missing column {expected}: {columns:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_of_one_database_take_turns() {
    let db = TestDb::new().await;
    let (a, b) = tokio::join!(migrate::migrate(&db.url), migrate::migrate(&db.url));
    assert!(a.unwrap().applied.is_empty());
    assert!(b.unwrap().applied.is_empty());
}
