//! Global and per-stream reads; the watermark under out-of-order commits.

use std::time::Duration;

use futures_util::TryStreamExt;
use tape_events::chain::GENESIS;
use tape_services::store::GlobalCursor;
use tape_tests::{insert_in_transaction, read_all_until, sample_event, sample_events, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_reader_never_skips_a_transaction_that_commits_late() {
    let db = TestDb::new().await;
    let store = db.store();
    let mut admin = db.admin().await;

    // Writer A inserts first (takes the lower position and the older transaction id)
    // and stays open.
    let event_a = sample_event(1);
    let tx_a = admin.transaction().await.unwrap();
    let (position_a, _) = insert_in_transaction(&tx_a, "account-a", 1, &GENESIS, &event_a).await;

    // Writer B appends through the store and commits first, at a higher position.
    let outcome_b = store.append("account-b", 0, &[sample_event(2)]).await.unwrap();
    let position_b = outcome_b.last_position();
    assert!(position_b > position_a, "B's position {position_b} is after A's {position_a}");

    // A reader now must not return B: were it to, its cursor would pass A's position
    // and A would be skipped once it commits. (Repeat to be sure it is not timing.)
    let mut cursor = GlobalCursor::START;
    for _ in 0..5 {
        let seen = store.read_all(cursor, 100).await.unwrap();
        assert!(seen.iter().all(|e| e.event.position != position_b), "B was returned while A was open");
        if let Some(last) = seen.last() {
            cursor = last.cursor;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let streamed: Vec<_> = store.stream_all(GlobalCursor::START).await.unwrap().try_collect().await.unwrap();
    assert!(streamed.iter().all(|e| e.event.position != position_b));

    tx_a.commit().await.unwrap();

    // From the same cursor, both arrive, A first (the older transaction): nothing skipped.
    let seen = read_all_until(&store, cursor, 2, Duration::from_secs(10)).await;
    let positions: Vec<i64> = seen.iter().map(|e| e.event.position).collect();
    assert_eq!(positions, [position_a, position_b]);
    assert!(seen[0].cursor < seen[1].cursor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_the_stream_read_the_same_events_in_the_same_order() {
    let db = TestDb::new().await;
    let store = db.store();
    for (i, stream) in ["account-a", "account-b", "account-c"].iter().enumerate() {
        store.append(stream, 0, &sample_events(3)).await.unwrap();
        store.append(stream, 3, &[sample_event(100 + u64::try_from(i).unwrap())]).await.unwrap();
    }
    let all = read_all_until(&store, GlobalCursor::START, 12, Duration::from_secs(10)).await;
    assert_eq!(all.len(), 12);

    let mut paged = Vec::new();
    let mut cursor = GlobalCursor::START;
    loop {
        let page = store.read_all(cursor, 5).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.cursor;
        paged.extend(page);
    }
    let streamed: Vec<_> = store.stream_all(GlobalCursor::START).await.unwrap().try_collect().await.unwrap();
    assert_eq!(paged, all);
    assert_eq!(streamed, all);
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));

    // Resuming from the middle returns exactly the rest.
    let rest = store.read_all(all[6].cursor, 100).await.unwrap();
    assert_eq!(rest, all[7..]);

    let b: Vec<_> = store.stream_stream("account-b", 2).await.unwrap().try_collect().await.unwrap();
    assert_eq!(b.iter().map(|e| e.event.stream_version).collect::<Vec<_>>(), [2, 3, 4]);
    let b_page = store.read_stream("account-b", 2, 2).await.unwrap();
    assert_eq!(b_page.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [2, 3]);

    // One type only (the outbox relay's read): up to the head, or to the last returned
    // event when the limit is reached.
    let versions = |events: &[tape_events::StoredEvent]| events.iter().map(|e| e.stream_version).collect::<Vec<_>>();
    let (upto, first) = store.read_stream_type("account-b", 0, "OrderFilled", 3).await.unwrap();
    assert_eq!((upto, versions(&first)), (3, vec![1, 2, 3]));
    let (upto, rest) = store.read_stream_type("account-b", upto, "OrderFilled", 3).await.unwrap();
    assert_eq!((upto, versions(&rest)), (4, vec![4]));
    let (upto, none) = store.read_stream_type("account-b", upto, "OrderFilled", 3).await.unwrap();
    assert_eq!((upto, none.len()), (4, 0));
    let (upto, other) = store.read_stream_type("account-b", 0, "OrderPlaced", 3).await.unwrap();
    assert_eq!((upto, other.len()), (4, 0), "no such event up to the head");
    assert_eq!(store.read_stream_type("account-none", 0, "OrderPlaced", 3).await.unwrap(), (0, Vec::new()));
}
