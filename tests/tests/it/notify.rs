//! NOTIFY on append (`tape_events`) and on upstream recommendations
//! (`tape_recommendations`).

use std::time::Duration;

use futures_util::StreamExt;
use tape_services::store::{NotifyMode, StoreOptions};
use tape_tests::{sample_events, TestDb};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// A LISTENing connection whose notifications arrive on the returned channel.
async fn listen(url: &str, channel: &str) -> (tokio_postgres::Client, mpsc::UnboundedReceiver<(String, String)>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = sender.send((n.channel().to_owned(), n.payload().to_owned()));
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await.unwrap();
    (client, receiver)
}

async fn next(receiver: &mut mpsc::UnboundedReceiver<(String, String)>) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv())
        .await
        .expect("a notification within 5 s")
        .expect("the listener is alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_announced_with_their_stream_in_either_mode() {
    let db = TestDb::new().await;
    let (_listener, mut notifications) = listen(&db.url, "tape_events").await;
    for (mode, stream) in [(NotifyMode::AfterCommit, "account-after"), (NotifyMode::InTransaction, "account-in")] {
        let store = db.store_with(StoreOptions { notify: mode, ..StoreOptions::default() });
        store.append(stream, 0, &sample_events(2)).await.unwrap();
        assert_eq!(next(&mut notifications).await, ("tape_events".to_owned(), stream.to_owned()), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_recommendation_is_announced() {
    let db = TestDb::new().await;
    let (_listener, mut notifications) = listen(&db.url, "tape_recommendations").await;
    db.admin()
        .await
        .batch_execute(
            "INSERT INTO recommendations (id, ticker, action, confidence, mode, generated_at, source) \
             VALUES ('r-1', 'AAPL', 'buy', 0.82, 'paper_eligible', now(), 'test')",
        )
        .await
        .unwrap();
    let (channel, payload) = next(&mut notifications).await;
    assert_eq!(channel, "tape_recommendations");
    let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload, serde_json::json!({"id": "r-1", "account_id": null}));
}
