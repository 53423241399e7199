//! Test data: contacts inserted directly, a message queued the way the web app does it.

use borcelle_store::PgPool;
use serde_json::{Value, json};

use super::TestApp;

/// Inserts `count` contacts for a user directly (test setup), emails `prefix{i}@example.com`.
pub async fn seed_contacts(db: &PgPool, owner_email: &str, prefix: &str, count: i32, tag: &str) -> Vec<uuid::Uuid> {
    sqlx::query_scalar(
        "INSERT INTO contacts (id, owner_id, name, email, tags)
         SELECT gen_random_uuid(), u.id, 'Contact ' || i, $2 || i || '@example.com', ARRAY[$4]
         FROM users u, generate_series(1, $3) i WHERE u.email = $1
         RETURNING id",
    )
    .bind(owner_email)
    .bind(prefix)
    .bind(count)
    .bind(tag)
    .fetch_all(db)
    .await
    .expect("seed contacts")
}

/// Creates a contact for the signed-in user and queues one message to it; the task id.
pub async fn message_one_new_contact(app: &TestApp) -> String {
    let contact: Value = app
        .post_json("/api/v1/contacts", &json!({ "name": "Ada", "email": "ada@example.com" }))
        .await
        .json()
        .await
        .expect("contact");
    let response = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": [contact["id"]], "subject": "Hi", "body": "Hello" }))
        .await;
    assert_eq!(response.status(), 202, "queueing the message");
    let queued: Value = response.json().await.expect("json");
    queued["task_id"].as_str().expect("task id").to_owned()
}
