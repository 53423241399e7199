//! An engine that starts again under its previous run's name takes that run's claims back at
//! once, but only when no live process holds the name (a PostgreSQL advisory lock says).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use borcelle_engine::delivery::instance;
use borcelle_store::messages;
use borcelle_store::testing::TestDb;

/// `n` queued messages of one task.
async fn queued(db: &TestDb, n: i32) {
    let owner = db.user("sender@example.com").await;
    sqlx::query(
        "WITH task AS (
             INSERT INTO tasks (id, owner_id, kind, subject, body, total)
             VALUES (gen_random_uuid(), $1, 'message', 'Hi', 'Hello', $2) RETURNING id
         ), written AS (
             INSERT INTO ledger (id, owner_id, task_id, to_email, message_id)
             SELECT gen_random_uuid(), $1, task.id, 'r' || i || '@example.com', '<m' || i || '@borcelle.test>'
             FROM task, generate_series(1, $2) i
             RETURNING id, task_id
         )
         INSERT INTO deliveries (id, owner_id, task_id) SELECT id, $1, task_id FROM written",
    )
    .bind(owner.id())
    .bind(n)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn sending_under(db: &TestDb, name: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE status = 'sending' AND claimed_by = $1")
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_restarted_engine_takes_its_claims_back_at_once_but_never_a_live_ones() {
    let db = TestDb::new("borcelle_engine_test").await;
    queued(&db, 5).await;
    let name = "pod-7f9c:worker";
    // A run that died holding three claims under a two-minute lease.
    assert_eq!(messages::claim_due(&db.pool, 3, 120.0, name).await.unwrap().len(), 3);

    // The next run under the name: nobody holds it, so the claims come back, attempts untouched.
    let (running_as, lock) = instance::take_over(&db.pool, name).await;
    assert_eq!(running_as, name);
    assert_eq!(sending_under(&db, name).await, 0);
    let (queued, attempts): (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE status = 'queued'), sum(attempts) FROM messages")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((queued, attempts), (5, 0), "given back as if never claimed");

    // That run claims again; a second process started under the same name meanwhile must not take
    // them: it runs under a name of its own.
    assert_eq!(messages::claim_due(&db.pool, 2, 120.0, name).await.unwrap().len(), 2);
    let (other, _other_lock) = instance::take_over(&db.pool, name).await;
    assert_ne!(other, name);
    assert!(other.starts_with(name));
    assert_eq!(sending_under(&db, name).await, 2, "a live run's claims stay its own");

    // Once the live run is gone (its connection, and so its lock, with it), the name is free again.
    drop(lock);
    let (again, _lock) = instance::take_over(&db.pool, name).await;
    assert_eq!(again, name);
    assert_eq!(sending_under(&db, name).await, 0);
}
