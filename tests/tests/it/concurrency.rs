//! Concurrent writers on one stream: one winner per version, typed conflicts for the
//! others, and a chain without a fork.

use std::sync::Arc;

use tape_services::store::{AppendError, EventStore};
use tape_tests::{sample_event, TestDb};
use tokio::sync::Barrier;

const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_racing_for_each_version_one_wins_the_rest_conflict() {
    let db = TestDb::new().await;
    let pool = db.app_pool();
    // Each writer has its own store (its own head cache), as separate processes would.
    let stores: Vec<EventStore> = (0..WRITERS).map(|_| EventStore::new(pool.clone())).collect();
    const ROUNDS: i64 = 12;
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for (w, store) in stores.iter().enumerate() {
            let store = store.clone();
            let barrier = barrier.clone();
            let event = sample_event(u64::try_from(round).unwrap() * 100 + u64::try_from(w).unwrap());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                (event.event_id, store.append("account-race", round, &[event]).await)
            }));
        }
        let mut won = Vec::new();
        for task in tasks {
            let (event_id, result) = task.await.unwrap();
            match result {
                Ok(outcome) => {
                    assert_eq!(outcome.version, round + 1);
                    won.push(event_id);
                }
                Err(AppendError::Conflict { expected, actual, .. }) => {
                    assert_eq!((expected, actual), (round, round + 1));
                }
                Err(other) => panic!("round {round}: unexpected error {other}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one winner, got {}", won.len());
        winners.push(won[0]);
    }

    let store = &stores[0];
    let stored = store.read_stream("account-race", 1, 1000).await.unwrap();
    assert_eq!(stored.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=ROUNDS).collect::<Vec<_>>());
    assert_eq!(stored.iter().map(|e| e.event_id).collect::<Vec<_>>(), winners);
    let report = store.verify_stream("account-race", None).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.streams[0].version, ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_that_lose_reload_and_retry_build_one_unforked_chain() {
    let db = TestDb::new().await;
    let store = db.store();
    const PER_WRITER: u64 = 15;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            let mut expected = 0;
            for i in 0..PER_WRITER {
                let event = sample_event(u64::try_from(w).unwrap() * 1000 + i);
                loop {
                    match store.append("account-busy", expected, std::slice::from_ref(&event)).await {
                        Ok(outcome) => {
                            expected = outcome.version;
                            break;
                        }
                        Err(AppendError::Conflict { actual, .. }) => {
                            conflicts += 1;
                            expected = actual;
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let total = i64::try_from(PER_WRITER).unwrap() * i64::try_from(WRITERS).unwrap();
    let report = store.verify_stream("account-busy", None).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.streams[0].version, total);
    assert_eq!(report.events_checked, u64::try_from(total).unwrap());
    eprintln!("{total} appends by {WRITERS} writers, {conflicts} conflicts");
}
