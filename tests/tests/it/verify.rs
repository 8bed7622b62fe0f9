//! Tamper tests: a superuser who gets past the triggers is caught by the chain.

use std::collections::BTreeMap;

use tape_services::store::{parse_hash_hex, ProblemKind};
use tape_tests::{sample_events, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_changed_with_triggers_off_is_named_by_its_position() {
    let db = TestDb::new().await;
    let store = db.store();
    let a = store.append("account-a", 0, &sample_events(5)).await.unwrap();
    let b = store.append("account-b", 0, &sample_events(3)).await.unwrap();
    let clean = store.verify_all(&BTreeMap::new()).await.unwrap();
    assert!(clean.is_intact(), "{:?}", clean.problems);
    assert_eq!(clean.events_checked, 8);
    assert_eq!(clean.streams.len(), 2);
    assert_eq!(clean.streams[0].head_hash, hex_of(&a.head_hash));

    // A superuser disables the triggers for the session and edits a payload of stream a
    // (version 3), and one of stream b (version 2, at a later position).
    let admin = db.admin().await;
    admin
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE events SET payload = jsonb_set(payload, '{price}', '\"1.00\"') \
               WHERE stream_id = 'account-a' AND stream_version = 3; \
             UPDATE events SET payload = jsonb_set(payload, '{qty}', '999') \
               WHERE stream_id = 'account-b' AND stream_version = 2; \
             RESET session_replication_role",
        )
        .await
        .unwrap();

    let report = store.verify_all(&BTreeMap::new()).await.unwrap();
    let first = report.first_problem().expect("tampering is detected");
    assert_eq!(first.position, Some(a.events[2].position));
    assert_eq!((first.stream_id.as_str(), first.stream_version), ("account-a", 3));
    assert_eq!(first.kind, ProblemKind::HashMismatch);
    assert!(first.to_string().starts_with(&format!("position {} (stream account-a version 3)", a.events[2].position)));
    assert_eq!(report.problems.len(), 2);
    assert_eq!(report.problems[1].position, Some(b.events[1].position));
    // The heads of broken streams are the last good event's.
    assert_eq!(report.streams[0].version, 2);
    assert!(!report.streams[0].intact);

    let one = store.verify_stream("account-b", None).await.unwrap();
    assert_eq!(one.first_problem().unwrap().position, Some(b.events[1].position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_events_is_caught_by_the_head_kept_outside() {
    let db = TestDb::new().await;
    let store = db.store();
    store.append("account-a", 0, &sample_events(4)).await.unwrap();
    let kept = store.verify_stream("account-a", None).await.unwrap();
    let kept_head = parse_hash_hex(&kept.streams[0].head_hash).unwrap();
    // The stream grows after the head was kept: still fine.
    store.append("account-a", 4, &sample_events(2)).await.unwrap();
    assert!(store.verify_stream("account-a", Some(&kept_head)).await.unwrap().is_intact());

    // A superuser deletes the two newest events *and* rewinds the streams row, so the
    // database is self-consistent again; only the kept head tells.
    let admin = db.admin().await;
    admin
        .batch_execute(
            "SET session_replication_role = replica; \
             DELETE FROM events WHERE stream_id = 'account-a' AND stream_version > 2; \
             UPDATE streams SET version = 2, \
               head_hash = (SELECT hash FROM events WHERE stream_id = 'account-a' AND stream_version = 2) \
               WHERE stream_id = 'account-a'; \
             RESET session_replication_role",
        )
        .await
        .unwrap();
    assert!(store.verify_stream("account-a", None).await.unwrap().is_intact(), "undetectable without a kept head");
    let mut expected = BTreeMap::new();
    expected.insert("account-a".to_owned(), kept_head);
    let report = store.verify_all(&expected).await.unwrap();
    let problem = report.first_problem().expect("the kept head is missing");
    assert!(matches!(problem.kind, ProblemKind::ExpectedHeadMissing { .. }), "{problem}");
    assert_eq!(problem.position, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_middle_event_or_an_inconsistent_head_row_is_reported() {
    let db = TestDb::new().await;
    let store = db.store();
    let a = store.append("account-a", 0, &sample_events(4)).await.unwrap();
    let admin = db.admin().await;
    admin
        .batch_execute(
            "SET session_replication_role = replica; \
             DELETE FROM events WHERE stream_id = 'account-a' AND stream_version = 2; \
             RESET session_replication_role",
        )
        .await
        .unwrap();
    let report = store.verify_all(&BTreeMap::new()).await.unwrap();
    let problem = report.first_problem().unwrap();
    assert_eq!(problem.kind, ProblemKind::VersionGap { expected: 2, found: 3 });
    assert_eq!(problem.position, Some(a.events[2].position));

    // Newest event deleted, streams row left alone: the row disagrees with the chain.
    let db2 = TestDb::new().await;
    let store2 = db2.store();
    store2.append("account-a", 0, &sample_events(3)).await.unwrap();
    db2.admin()
        .await
        .batch_execute(
            "SET session_replication_role = replica; \
             DELETE FROM events WHERE stream_version = 3; RESET session_replication_role",
        )
        .await
        .unwrap();
    let report = store2.verify_all(&BTreeMap::new()).await.unwrap();
    assert!(
        matches!(report.first_problem().unwrap().kind, ProblemKind::HeadRowMismatch { row_version: Some(3), .. }),
        "{:?}",
        report.problems
    );
}

fn hex_of(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
