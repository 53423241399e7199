//! A send to a tag is queued in chunks, each committed on its own (issue #17): delivery starts
//! with the first chunk, the task is done only once the last is written, a writer that stops
//! anywhere is taken over from its cursor, and every recipient gets exactly one ledger row.

use std::collections::HashMap;

use borcelle_store::Owner;
use borcelle_store::tasks::{self, NewTask, Queueing};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, seed_contacts, spawn_app_with};

/// Recipients per chunk in these tests: small, so that a few dozen contacts make several chunks.
const CHUNK: usize = 7;

async fn chunked_app(email: &str) -> TestApp {
    let mut app = spawn_app_with(|s| s.delivery.queue_chunk = CHUNK).await;
    app.signed_in_user(email).await;
    app
}

async fn user_id(app: &TestApp, email: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_one(&app.db).await.unwrap()
}

/// The task's row as the API shows it.
async fn task(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/v1/tasks/{id}")).await.json().await.unwrap()
}

/// The task's ledger: recipient address → rows, and rows per status.
async fn ledger(app: &TestApp, id: Uuid) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT to_email, status FROM messages WHERE task_id = $1")
        .bind(id)
        .fetch_all(&app.db)
        .await
        .unwrap();
    let (mut recipients, mut statuses) = (HashMap::new(), HashMap::new());
    for (to, status) in rows {
        *recipients.entry(to).or_default() += 1;
        *statuses.entry(status).or_default() += 1;
    }
    (recipients, statuses)
}

async fn done_notifications(app: &TestApp) -> usize {
    let notes: Value = app.get("/api/v1/notifications").await.json().await.unwrap();
    notes["notifications"].as_array().unwrap().iter().filter(|n| n["kind"] == "task_done").count()
}

async fn suppress(app: &TestApp, emails: &[String]) {
    for email in emails {
        let added = app.post_json("/api/v1/suppressions", &json!({ "email": email, "detail": "asked" })).await;
        assert!(added.status().is_success(), "{}", added.status());
    }
}

#[tokio::test]
async fn a_send_to_a_tag_of_any_size_reaches_each_contact_once_across_chunk_boundaries() {
    let email = "chunks@example.com";
    let app = chunked_app(email).await;
    // Around every boundary: one chunk short of full, full, one over, several, with a remainder.
    let sizes = [1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 5 * CHUNK + 3];
    for size in sizes {
        seed_contacts(&app.db, email, &format!("size{size}-"), size as i32, &format!("size{size}")).await;
    }
    // Contacts of other tags are not recipients.
    seed_contacts(&app.db, email, "other-", 20, "other").await;
    // Some recipients of the largest send, in its first and its last chunks, are on the list.
    let largest = 5 * CHUNK + 3;
    let listed: Vec<String> =
        [1, 2, largest - 1, largest].iter().map(|i| format!("size{largest}-{i}@example.com")).collect();
    suppress(&app, &listed).await;

    let mut tasks = Vec::new();
    for size in sizes {
        let queued: Value = app
            .post_json("/api/v1/messages", &json!({ "tag": format!("size{size}"), "subject": "Hello", "body": "Hi" }))
            .await
            .json()
            .await
            .unwrap();
        let suppressed = if size == largest { listed.len() } else { 0 };
        assert_eq!(queued["total"], json!(size), "{size}: {queued}");
        assert_eq!(queued["suppressed"], json!(suppressed), "{size}: {queued}");
        let id: Uuid = queued["task_id"].as_str().unwrap().parse().unwrap();
        let (recipients, statuses) = ledger(&app, id).await;
        assert_eq!(recipients.len(), size, "{size}: one row per contact of the tag");
        assert!(recipients.values().all(|n| *n == 1), "{size}: no contact twice");
        assert!(recipients.keys().all(|to| to.starts_with(&format!("size{size}-"))), "{size}: only the tag's contacts");
        assert_eq!(statuses.get("suppressed").copied().unwrap_or(0), suppressed, "{size}");
        tasks.push((size, suppressed, id));
    }

    app.deliver_all().await;
    for (size, suppressed, id) in tasks {
        let task = task(&app, &id.to_string()).await;
        assert_eq!(task["status"], "done", "{size}: {task}");
        assert_eq!(
            (task["sent"].as_u64(), task["total"].as_u64()),
            (Some((size - suppressed) as u64), Some(size as u64))
        );
        assert_eq!(task["suppressed"].as_u64(), Some(suppressed as u64), "{size}");
    }
    let outbox: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT message_id) FROM outbox").fetch_one(&app.db).await.unwrap();
    let expected: usize = sizes.iter().sum::<usize>() - listed.len();
    assert_eq!(outbox as usize, expected, "one email per recipient not on the list");
    assert_eq!(done_notifications(&app).await, sizes.len(), "each send told done once");
}

/// Writes a send's task and first chunk the way `POST /api/v1/messages` does, and stops there:
/// the process that queued it is gone (its lease runs for `lease_secs` more).
async fn first_chunk_only(app: &TestApp, owner: Uuid, tag: &str, lease_secs: f64) -> Uuid {
    let id = Uuid::now_v7();
    let mut tx = app.db.begin().await.unwrap();
    let new = NewTask {
        id,
        owner: Owner::new(owner),
        kind: "message",
        note_id: None,
        subject: "Hello {{ contact.first_name }}",
        body: "Hi",
        message_id_domain: "borcelle.test",
    };
    tasks::insert(&mut tx, &new).await.unwrap();
    let tags = vec![tag.to_owned()];
    tasks::start_queueing(&mut tx, id, &tags, lease_secs).await.unwrap();
    let queueing = Queueing { id, owner_id: owner, tags };
    let written = tasks::queue_chunk(&mut tx, &queueing, CHUNK as i64, "borcelle.test").await.unwrap();
    assert_eq!(written.read, CHUNK as i64);
    tasks::advance(&mut tx, id, &written, true, false, lease_secs).await.unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn a_send_whose_writer_stopped_after_its_first_chunk_is_delivered_in_part_then_taken_over_once() {
    let email = "takeover@example.com";
    let app = chunked_app(email).await;
    let owner = user_id(&app, email).await;
    seed_contacts(&app.db, email, "reader", 30, "readers").await;
    let id = first_chunk_only(&app, owner, "readers", 3600.0).await;

    // Delivery starts with the first chunk; the task is running with what is queued so far, and
    // not done although every queued row is sent.
    let drained = app.deliver_all().await;
    assert_eq!(drained.sent, CHUNK);
    let so_far = task(&app, &id.to_string()).await;
    assert_eq!(
        (so_far["status"].as_str(), so_far["sent"].as_u64(), so_far["total"].as_u64()),
        (Some("running"), Some(CHUNK as u64), Some(CHUNK as u64))
    );
    assert_eq!(done_notifications(&app).await, 0);

    // While the writer's lease runs, nobody takes its send over.
    let messaging = app.messaging();
    assert_eq!(messaging.resume_stalled_once().await.unwrap(), 0);
    assert_eq!(ledger(&app, id).await.0.len(), CHUNK);

    // A contact created after the send is not one of its recipients.
    seed_contacts(&app.db, email, "late", 1, "readers").await;
    sqlx::query("UPDATE tasks SET queue_lease = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    // Two processes look at once: one takes the send over, the other finds nothing to take, and
    // a writer that also goes on (it was only slow) takes turns with it chunk by chunk.
    let (first, second, slow) =
        tokio::join!(messaging.resume_stalled_once(), messaging.resume_stalled_once(), messaging.queue_rest(id));
    assert_eq!(first.unwrap() + second.unwrap() + usize::from(slow.unwrap().is_some()), 1, "finished by one of them");
    let (recipients, _) = ledger(&app, id).await;
    assert_eq!(recipients.len(), 30, "every contact of the tag at the send, and no other");
    assert!(recipients.values().all(|n| *n == 1), "each once");
    assert!(!recipients.contains_key("late1@example.com"));

    app.deliver_all().await;
    let done = task(&app, &id.to_string()).await;
    assert_eq!(
        (done["status"].as_str(), done["sent"].as_u64(), done["total"].as_u64()),
        (Some("done"), Some(30), Some(30))
    );
    assert_eq!(done_notifications(&app).await, 1);
    let mailed: Vec<String> = sqlx::query_scalar("SELECT subject FROM outbox").fetch_all(&app.db).await.unwrap();
    assert_eq!(mailed.len(), 30);
    assert!(mailed.iter().all(|s| s.starts_with("Hello ")), "personalised: {mailed:?}");
}

#[tokio::test]
async fn a_send_whose_last_chunk_holds_only_suppressed_recipients_is_done_as_that_chunk_is_written() {
    let email = "lastchunk@example.com";
    let app = chunked_app(email).await;
    let owner = user_id(&app, email).await;
    seed_contacts(&app.db, email, "fan", (2 * CHUNK) as i32, "fans").await;
    // The second chunk's contacts (the later half in creation order) are all on the list.
    let later: Vec<String> =
        sqlx::query_scalar("SELECT email FROM contacts WHERE owner_id = $1 ORDER BY created_at, id OFFSET $2")
            .bind(owner)
            .bind(CHUNK as i64)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(later.len(), CHUNK);
    suppress(&app, &later).await;
    let id = first_chunk_only(&app, owner, "fans", 0.0).await;
    assert_eq!(app.deliver_all().await.sent, CHUNK);
    assert_eq!(task(&app, &id.to_string()).await["status"], "running");

    // Taken over: the last chunk is all suppressed, so nothing is left to deliver, and the
    // writer of that chunk is the one that tells the owner.
    assert_eq!(app.messaging().resume_stalled_once().await.unwrap(), 1);
    let done = task(&app, &id.to_string()).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        (done["sent"].as_u64(), done["suppressed"].as_u64(), done["total"].as_u64()),
        (Some(CHUNK as u64), Some(CHUNK as u64), Some(2 * CHUNK as u64))
    );
    assert_eq!(done_notifications(&app).await, 1);
    assert_eq!(app.deliver_all().await.sent, 0);
}

#[tokio::test]
async fn a_note_sent_from_its_page_to_a_tag_of_many_chunks_reaches_every_contact_once() {
    let email = "pagesend@example.com";
    let app = chunked_app(email).await;
    seed_contacts(&app.db, email, "member", (5 * CHUNK + 2) as i32, "club").await;
    let csrf = app.csrf.clone().unwrap();
    let response =
        app.post_form("/notes", &[("csrf_token", &csrf), ("title", "Club news"), ("body", "We meet on Friday.")]).await;
    assert_eq!(response.status(), 303);
    let note_url = response.headers()["location"].to_str().unwrap().to_owned();
    // The page answers once the first chunk is in the ledger and shows the send's progress; the
    // rest is written without the request.
    let response =
        app.post_form(&format!("{note_url}/send"), &[("csrf_token", &csrf), ("tag", "club"), ("confirmed", "1")]).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id: Uuid = location.split("?task=").nth(1).unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let queueing: bool =
            sqlx::query_scalar("SELECT queueing FROM tasks WHERE id = $1").bind(id).fetch_one(&app.db).await.unwrap();
        if !queueing {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the send is still being queued after 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (recipients, _) = ledger(&app, id).await;
    assert_eq!(recipients.len(), 5 * CHUNK + 2);
    assert!(recipients.values().all(|n| *n == 1));
    app.deliver_all().await;
    let done = task(&app, &id.to_string()).await;
    assert_eq!((done["status"].as_str(), done["sent"].as_u64()), (Some("done"), Some(5 * CHUNK as u64 + 2)));
    let html = app.get(&location).await.text().await.unwrap();
    assert!(html.contains(&format!("{} sent, 0 failed", 5 * CHUNK + 2)), "the result: {html}");
    assert_eq!(done_notifications(&app).await, 1);
}
