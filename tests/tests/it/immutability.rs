//! UPDATE, DELETE and TRUNCATE of events are refused by the database itself: on an empty
//! table too, for the owner (a superuser here) and for tape_app.

use tape_tests::{sample_events, TestDb};

const MUTATIONS: [&str; 4] = [
    "UPDATE events SET payload = '{}'",
    "DELETE FROM events",
    "TRUNCATE events",
    "DELETE FROM events WHERE position = -1",
];

async fn refused(client: &tokio_postgres::Client, role: Option<&str>) {
    if let Some(role) = role {
        client.batch_execute(&format!("SET ROLE {role}")).await.unwrap();
    }
    for statement in MUTATIONS {
        let error =
            client.batch_execute(statement).await.expect_err(&format!("{statement} as {role:?} must be refused"));
        let db_error = error.as_db_error().expect("a database error");
        let message = db_error.message();
        match role {
            // The owner gets past privileges; the trigger stops it.
            None => {
                assert!(message.contains("append-only"), "{statement}: {message}");
                assert_eq!(db_error.code().code(), "23001", "{statement}: restrict_violation");
            }
            // tape_app has no UPDATE, DELETE or TRUNCATE privilege at all.
            Some(_) => assert!(
                message.contains("permission denied") || message.contains("append-only"),
                "{statement}: {message}"
            ),
        }
    }
    client.batch_execute("RESET ROLE").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_refused_on_an_empty_table() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let owner: String =
        admin.query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'events'", &[]).await.unwrap().get(0);
    assert_eq!(owner, "postgres", "the test connects as the owner");
    refused(&admin, None).await;
    refused(&admin, Some("tape_app")).await;
    refused(&admin, Some("tape_reader")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_are_refused_with_events_present_and_nothing_changes() {
    let db = TestDb::new().await;
    let store = db.store();
    store.append("account-a", 0, &sample_events(3)).await.unwrap();
    let admin = db.admin().await;
    refused(&admin, None).await;
    refused(&admin, Some("tape_app")).await;
    // Also through the application's own pool.
    let app = db.app_pool().get().await.unwrap();
    for statement in MUTATIONS {
        assert!(app.batch_execute(statement).await.is_err(), "{statement} through the app pool");
    }
    // Stream heads cannot be removed either.
    for statement in ["DELETE FROM streams", "TRUNCATE streams"] {
        let error = admin.batch_execute(statement).await.unwrap_err();
        assert!(error.as_db_error().unwrap().message().contains("append-only"), "{statement}");
    }
    let count: i64 = admin.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(count, 3);
    assert!(store.verify_all(&Default::default()).await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tape_app_may_append_and_read_but_tape_reader_only_read() {
    let db = TestDb::new().await;
    let admin = db.admin().await;
    let privileges = |role: &'static str, privilege: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one("SELECT has_table_privilege($1, 'events', $2)", &[&role, &privilege])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(privileges("tape_app", "INSERT").await);
    assert!(privileges("tape_app", "SELECT").await);
    assert!(!privileges("tape_app", "UPDATE").await);
    assert!(!privileges("tape_app", "DELETE").await);
    assert!(!privileges("tape_app", "TRUNCATE").await);
    assert!(privileges("tape_reader", "SELECT").await);
    assert!(!privileges("tape_reader", "INSERT").await);
}
