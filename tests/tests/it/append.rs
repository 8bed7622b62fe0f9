//! Appends: outcomes, conflicts, idempotent retries, reused ids, the app role.

use tape_services::store::{AppendError, EventStore};
use tape_tests::{sample_event, sample_events, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_returns_positions_versions_and_the_new_head() {
    let db = TestDb::new().await;
    let store = db.store();
    let events = sample_events(3);
    let first = store.append("account-a", 0, &events).await.unwrap();
    assert_eq!(first.version, 3);
    assert!(!first.already_stored);
    assert_eq!(first.events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(first.events.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        first.events.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );

    let second = store.append("account-a", 3, &[sample_event(10)]).await.unwrap();
    assert_eq!(second.version, 4);
    assert_eq!(store.stream_head("account-a").await.unwrap(), Some((4, second.head_hash)));

    let stored = store.read_stream("account-a", 1, 100).await.unwrap();
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[3].prev_hash, first.head_hash, "the chain links across appends");
    assert_eq!(stored[0].payload, events[0].payload);
    assert_eq!(stored[0].metadata, events[0].metadata);
    assert_eq!(stored[0].at, events[0].at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expected_version_is_a_typed_conflict_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    store.append("account-a", 0, &sample_events(2)).await.unwrap();
    for expected in [0, 1, 3] {
        let error = store.append("account-a", expected, &[sample_event(5)]).await.unwrap_err();
        match error {
            AppendError::Conflict { ref stream, expected: e, actual } => {
                assert_eq!((stream.as_str(), e, actual), ("account-a", expected, 2));
            }
            other => panic!("expected a conflict, got {other}"),
        }
    }
    let error = store.append("account-missing", 4, &[sample_event(6)]).await.unwrap_err();
    assert!(matches!(error, AppendError::Conflict { actual: 0, .. }), "{error}");
    assert_eq!(store.read_stream("account-a", 1, 100).await.unwrap().len(), 2);
    assert!(store.read_stream("account-missing", 1, 100).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_append_returns_the_original_positions_and_appends_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let batch = sample_events(2);
    let original = store.append("account-a", 0, &batch).await.unwrap();

    // Same store (head cached), a fresh store (nothing cached), and after the stream
    // moved on: always the original positions, never a second copy.
    let retried = store.append("account-a", 0, &batch).await.unwrap();
    assert!(retried.already_stored);
    assert_eq!(retried.events, original.events);
    assert_eq!(retried.head_hash, original.head_hash);

    store.append("account-a", 2, &[sample_event(3)]).await.unwrap();
    let fresh = EventStore::new(db.app_pool());
    let late = fresh.append("account-a", 0, &batch).await.unwrap();
    assert!(late.already_stored);
    assert_eq!(late.events, original.events);
    assert_eq!(late.version, 2);

    let stored = store.read_stream("account-a", 1, 100).await.unwrap();
    assert_eq!(stored.len(), 3, "no duplicate rows");
    let report = store.verify_stream("account-a", None).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_id_reused_elsewhere_is_a_typed_error() {
    let db = TestDb::new().await;
    let store = db.store();
    let event = sample_event(1);
    let first = store.append("account-a", 0, std::slice::from_ref(&event)).await.unwrap();

    let error = store.append("account-b", 0, std::slice::from_ref(&event)).await.unwrap_err();
    match error {
        AppendError::DuplicateEventId { event_id, stream, stored_stream, stored_version, position } => {
            assert_eq!(event_id, event.event_id);
            assert_eq!(stream, "account-b");
            assert_eq!((stored_stream.as_str(), stored_version, position), ("account-a", 1, first.last_position()));
        }
        other => panic!("expected a duplicate event id, got {other}"),
    }
    // The same id at another version of the same stream (the unique index path).
    let error = store.append("account-a", 1, std::slice::from_ref(&event)).await.unwrap_err();
    assert!(matches!(error, AppendError::DuplicateEventId { stored_version: 1, .. }), "{error}");
    // Nothing was written by either, and stream b does not exist.
    assert_eq!(store.stream_head("account-b").await.unwrap(), None);
    assert_eq!(store.read_stream("account-a", 1, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_separate_caches_follow_each_other() {
    let db = TestDb::new().await;
    let one = db.store();
    let two = db.store();
    one.append("account-a", 0, &[sample_event(1)]).await.unwrap();
    two.append("account-a", 1, &[sample_event(2)]).await.unwrap();
    // `one`'s cache says version 1; the caller says 2: the store reads the real head.
    one.append("account-a", 2, &[sample_event(3)]).await.unwrap();
    // `two`'s cache says 2 (stale): a conflict resolves with the actual version.
    let error = two.append("account-a", 2, &[sample_event(4)]).await.unwrap_err();
    assert!(matches!(error, AppendError::Conflict { actual: 3, .. }), "{error}");
    two.append("account-a", 3, &[sample_event(4)]).await.unwrap();
    assert!(one.verify_stream("account-a", None).await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_appends_are_refused_before_the_database() {
    let db = TestDb::new().await;
    let store = db.store();
    let event = sample_event(1);
    let twice = [event.clone(), event];
    for (stream, expected, events) in
        [("", 0, &twice[..1]), ("account-a", -1, &twice[..1]), ("account-a", 0, &[][..]), ("account-a", 0, &twice[..])]
    {
        let error = store.append(stream, expected, events).await.unwrap_err();
        assert!(matches!(error, AppendError::Invalid { .. }), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_as_tape_app() {
    let db = TestDb::new().await;
    let pool = db.app_pool();
    let client = pool.get().await.unwrap();
    let row = client.query_one("SELECT current_user::text, session_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "tape_app");
    assert_eq!(row.get::<_, String>(1), "postgres");
}
