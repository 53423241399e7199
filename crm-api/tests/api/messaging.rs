//! Sending to contacts: the ledger, the delivery engine against a real SMTP server, live progress
//! over a real WebSocket, retries through an outage, and privacy.

use std::collections::HashMap;
use std::time::Duration;

use borcelle::config::TransportSettings;
use serde_json::{Value, json};

use crate::helpers::*;

/// Runs the server's delivery engine until nothing is due, then returns the task as the API shows
/// it, which must be done.
async fn delivered(app: &TestApp, task_id: &str) -> Value {
    app.deliver_all().await;
    let task: Value = app.get(&format!("/api/v1/tasks/{task_id}")).await.json().await.unwrap();
    assert_eq!(task["status"], "done", "the task is done once nothing is due: {task}");
    task
}

/// Makes the messages waiting for a retry due now, as the passing of their delay would.
async fn retry_delays_pass(app: &TestApp, task_id: &str) {
    sqlx::query("UPDATE deliveries SET next_attempt_at = now() WHERE task_id = $1::uuid AND status = 'retrying'")
        .bind(task_id)
        .execute(&app.db)
        .await
        .unwrap();
}

async fn ledger_counts(app: &TestApp, task_id: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM messages WHERE task_id = $1::uuid GROUP BY status")
            .bind(task_id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn a_message_to_one_contact_is_queued_sent_and_in_its_history() {
    let smtp = MailServer::start().await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(smtp.smtp_settings())).await;
    app.signed_in_user("sender@example.com").await;
    let contact: Value = app
        .post_json("/api/v1/contacts", &json!({ "name": "Ada <Lovelace>", "email": "ada@example.com" }))
        .await
        .json()
        .await
        .unwrap();
    let contact_id = contact["id"].as_str().unwrap();
    let response = app
        .post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": [contact_id], "subject": "Hello Ada", "body": "First line\nsecond line\n\n<b>not bold</b>" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["total"], 1);
    let task_id = queued["task_id"].as_str().unwrap();
    let task = delivered(&app, task_id).await;
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(1), Some(0)));

    let id = smtp.wait_for("ada@example.com").await;
    let source = smtp.part(id, "source").await;
    assert!(source.contains("Reply-To: \"Test User\" <sender@example.com>"), "replies go to the sender: {source}");
    assert!(source.contains("From: \"Test User via Borcelle\" <noreply@borcelle.test>"), "{source}");
    let html = smtp.part(id, "html").await;
    assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;") && html.contains("First line<br>second line"), "{html}");

    let timeline: Value = app.get(&format!("/api/v1/contacts/{contact_id}/messages")).await.json().await.unwrap();
    let entry = &timeline["messages"][0];
    assert_eq!(entry["status"], "sent");
    assert_eq!(entry["subject"], "Hello Ada");
    assert_eq!(entry["attempts"], 1);
    assert!(entry["sent_at"].is_string() && entry["provider_id"].is_string());
    let message_id = entry["message_id"].as_str().unwrap();
    assert!(source.contains(&format!("Message-ID: {message_id}")), "the ledger's Message-ID is the one sent");

    let notes: Value = app.get("/api/v1/notifications").await.json().await.unwrap();
    assert_eq!(notes["notifications"][0]["title"], "Message sent to 1 contact");
    assert_eq!(notes["unread"], 1);
}

#[tokio::test]
async fn a_note_to_1000_contacts_arrives_once_each_with_live_progress_that_never_goes_back() {
    let dir = std::env::temp_dir().join(unique("borcelle-sink-"));
    let sink = SmtpSink::start(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(sink.smtp_settings())).await;
    app.signed_in_user("bulk@example.com").await;
    seed_contacts(&app.db, "bulk@example.com", "reader", 1000, "newsletter").await;
    let note: Value = app
        .post_json("/api/v1/notes", &json!({ "title": "Q3 update", "body": "Numbers are up." }))
        .await
        .json()
        .await
        .unwrap();

    let mut socket = open_socket(&app, app.session_cookie.as_deref().unwrap()).await;
    let snapshot = next_event(&mut socket).await.expect("snapshot");
    assert_eq!(snapshot["type"], "snapshot");

    let response = app
        .post_json(&format!("/api/v1/notes/{}/send", note["id"].as_str().unwrap()), &json!({ "tag": "Newsletter" }))
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["total"], 1000);
    let task_id = queued["task_id"].as_str().unwrap().to_owned();
    let drained = app.deliver_all().await;
    assert_eq!((drained.sent, drained.failed), (1000, 0));

    // Progress over the WebSocket: counts only grow, and end at 1000 of 1000.
    let (mut last_sent, mut events, mut notified) = (-1i64, 0, None);
    while notified.is_none() {
        let event = next_event(&mut socket).await.expect("an event within 30 s");
        match event["type"].as_str() {
            Some("task_progress") if event["task_id"] == task_id.as_str() => {
                let sent = event["sent"].as_i64().unwrap();
                assert!(sent >= last_sent, "progress went back from {last_sent} to {sent}");
                last_sent = sent;
                events += 1;
            }
            Some("notification") => notified = Some(event),
            _ => {}
        }
    }
    assert_eq!(last_sent, 1000);
    assert!(events >= 3, "progress came in steps, not only at the end ({events} events)");
    assert_eq!(notified.unwrap()["notification"]["title"], "Note sent to 1,000 contacts");

    // Every one of the 1000 arrived exactly once, each with its ledger row's Message-ID (the sink
    // stores a message before it accepts it).
    let arrived = sink.messages();
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (to, _) in &arrived {
        *seen.entry(to.clone()).or_default() += 1;
    }
    assert_eq!(arrived.len(), 1000, "1000 messages arrived");
    assert_eq!(seen.len(), 1000, "1000 different recipients");
    let ledger_ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM messages WHERE task_id = $1::uuid")
        .bind(&task_id)
        .fetch_all(&app.db)
        .await
        .unwrap();
    let mut arrived_ids: Vec<&String> = arrived.iter().map(|(_, id)| id).collect();
    arrived_ids.sort();
    let mut expected: Vec<&String> = ledger_ids.iter().collect();
    expected.sort();
    assert_eq!(arrived_ids, expected, "what arrived is exactly the ledger");

    // The task and the ledger agree.
    let task = delivered(&app, &task_id).await;
    assert_eq!(
        (task["sent"].as_i64(), task["failed"].as_i64(), task["total"].as_i64()),
        (Some(1000), Some(0), Some(1000))
    );
    assert_eq!(ledger_counts(&app, &task_id).await, HashMap::from([("sent".to_owned(), 1000)]));
}

#[tokio::test]
async fn when_the_smtp_server_goes_down_mid_run_messages_retry_and_all_arrive_once_it_is_back() {
    let dir = std::env::temp_dir().join(unique("borcelle-sink-"));
    let port = free_port();
    let sink = SmtpSink::start(port, &dir).await;
    let mut app = spawn_app_with(|s| {
        let mut smtp_settings = sink.smtp_settings();
        smtp_settings.timeout = Duration::from_secs(2);
        s.mail.transport = TransportSettings::Smtp(smtp_settings);
        s.delivery.concurrency = 30;
        // Retries wait for the test (`retry_delays_pass`), however slowly a loaded machine runs
        // the nine batches of the outage.
        s.delivery.retry_base = Duration::from_secs(30);
        s.delivery.retry_cap = Duration::from_secs(60);
    })
    .await;
    app.signed_in_user("outage@example.com").await;
    seed_contacts(&app.db, "outage@example.com", "patient", 300, "all").await;
    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "tag": "all", "subject": "Through the outage", "body": "Hello" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap().to_owned();

    // A first batch arrives, then the server goes away and the rest are put back for a retry.
    assert_eq!(app.engine().run_once().await.unwrap().sent, 30);
    drop(sink);
    let down = app.deliver_all().await;
    assert_eq!((down.sent, down.retrying, down.failed), (0, 270, 0), "the rest wait for a retry, none failed");
    assert_eq!(ledger_counts(&app, &task_id).await.get("retrying").copied(), Some(270));

    // Nothing is marked sent that did not arrive.
    let arrived: Vec<String> = maildir_messages(&dir.join("new")).into_iter().map(|(to, _)| to).collect();
    let marked: Vec<String> =
        sqlx::query_scalar("SELECT to_email FROM messages WHERE task_id = $1::uuid AND status = 'sent'")
            .bind(&task_id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(marked.len(), 30);
    let phantom: Vec<&String> = marked.iter().filter(|to| !arrived.contains(to)).collect();
    assert!(phantom.is_empty(), "marked sent but never arrived: {phantom:?}");

    // Back up: once their retry delay has passed, they go, and the task is done.
    let back = SmtpSink::start(port, &dir).await;
    retry_delays_pass(&app, &task_id).await;
    let task = delivered(&app, &task_id).await;
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(300), Some(0)));
    let all = back.messages();
    let _ = std::fs::remove_dir_all(&dir);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (to, _) in all {
        *seen.entry(to).or_default() += 1;
    }
    assert_eq!(seen.len(), 300);
    assert!(seen.values().all(|n| *n == 1), "each arrived exactly once");
    let retried: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE task_id = $1::uuid AND attempts > 1")
        .bind(&task_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(retried > 0, "some messages needed more than one attempt");
}

#[tokio::test]
async fn permanent_failures_are_recorded_with_the_reason_and_can_be_retried() {
    // MailJet answers the first request with a per-message error that is not about the recipient
    // (so the address is not suppressed), then accepts.
    let (url, stand_in) = crate::mailjet::start_stand_in().await;
    stand_in.answers.lock().unwrap().push_back((
        400,
        r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"send-0008","StatusCode":403,"ErrorMessage":"not an authorized sender","ErrorRelatedTo":["From"]}]}]}"#.to_owned(),
    ));
    let mut app =
        spawn_app_with(|s| s.mail.transport = TransportSettings::Mailjet(crate::mailjet::settings(url, false))).await;
    app.signed_in_user("retrier@example.com").await;
    let ids = seed_contacts(&app.db, "retrier@example.com", "r", 1, "x").await;
    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": ids, "subject": "Try", "body": "Hello" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap().to_owned();
    let task = delivered(&app, &task_id).await;
    assert_eq!(task["failed"], 1);
    let history: Value = app.get("/api/v1/messages?status=failed").await.json().await.unwrap();
    let failed = &history["messages"][0];
    assert!(failed["last_error"].as_str().unwrap().contains("not an authorized sender"), "{failed}");
    let notes: Value = app.get("/api/v1/notifications").await.json().await.unwrap();
    assert_eq!(notes["notifications"][0]["title"], "Message sent to 0 of 1 contact; 1 failed");

    let message_id = failed["id"].as_str().unwrap();
    let retry = app.post_json(&format!("/api/v1/messages/{message_id}/retry"), &json!({})).await;
    assert_eq!(retry.status(), 202);
    let task = delivered(&app, &task_id).await;
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(1), Some(0)));
    let again = app.post_json(&format!("/api/v1/messages/{message_id}/retry"), &json!({})).await;
    assert_eq!(error_of(again).await.0, 409, "a sent message cannot be retried");
}

#[tokio::test]
async fn another_users_messages_tasks_notes_and_events_stay_private() {
    let mut app = spawn_app().await;
    app.signed_in_user("alice-msg@example.com").await;
    let ids = seed_contacts(&app.db, "alice-msg@example.com", "friend", 2, "friends").await;
    let contact = ids[0].to_string();
    let note: Value =
        app.post_json("/api/v1/notes", &json!({ "title": "Private", "body": "Secret" })).await.json().await.unwrap();
    let note_id = note["id"].as_str().unwrap().to_owned();
    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": [contact], "subject": "Hi", "body": "Hello" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap().to_owned();
    delivered(&app, &task_id).await;
    let message_id: String =
        sqlx::query_scalar("SELECT id::text FROM messages LIMIT 1").fetch_one(&app.db).await.unwrap();

    let alice_cookie = app.session_cookie.clone().unwrap();
    let mut alice_socket = open_socket(&app, &alice_cookie).await;
    next_event(&mut alice_socket).await.expect("alice's snapshot");

    app.client = browser_client();
    app.signed_in_user("bob-msg@example.com").await;
    let mut bob_socket = open_socket(&app, app.session_cookie.as_deref().unwrap()).await;
    let bob_snapshot = next_event(&mut bob_socket).await.expect("bob's snapshot");
    assert_eq!(bob_snapshot["tasks"], json!([]));
    assert_eq!(bob_snapshot["notifications"], json!([]));

    for path in [
        format!("/api/v1/tasks/{task_id}"),
        format!("/api/v1/notes/{note_id}"),
        format!("/api/v1/contacts/{contact}/messages"),
    ] {
        assert_eq!(error_of(app.get(&path).await).await.0, 404, "{path}");
    }
    for (path, body) in [
        ("/api/v1/messages".to_owned(), json!({ "contact_ids": [contact], "subject": "Hi", "body": "Spam" })),
        (format!("/api/v1/notes/{note_id}/send"), json!({ "tag": "friends" })),
        (format!("/api/v1/messages/{message_id}/retry"), json!({})),
        (format!("/api/v1/tasks/{task_id}/retry-failed"), json!({})),
    ] {
        assert_eq!(error_of(app.post_json(&path, &body).await).await.0, 404, "{path}");
    }
    let history: Value = app.get("/api/v1/messages").await.json().await.unwrap();
    assert_eq!(history["messages"], json!([]));
    let tasks: Value = app.get("/api/v1/tasks").await.json().await.unwrap();
    assert_eq!(tasks["tasks"], json!([]));
    // Bob's tag has no contacts: his send cannot reach Alice's "friends".
    let (status, _, field) =
        error_of(app.post_json("/api/v1/messages", &json!({ "tag": "friends", "subject": "Hi", "body": "x" })).await)
            .await;
    assert_eq!((status, field.as_deref()), (404, Some("tag")));

    // Alice sends again: her socket hears about it, Bob's does not.
    let mut alice = spawn_client_of(&app, &alice_cookie);
    alice.csrf = Some(fetch_csrf(&app, &alice_cookie).await);
    let response = alice
        .post_json("/api/v1/messages", &json!({ "contact_ids": [ids[1]], "subject": "Again", "body": "Hello" }))
        .await;
    assert_eq!(response.status(), 202);
    let heard = next_event(&mut alice_socket).await.expect("alice hears her progress");
    assert_eq!(heard["type"], "task_progress");
    let silence = tokio::time::timeout(Duration::from_millis(1500), next_event(&mut bob_socket)).await;
    assert!(silence.is_err(), "bob's socket received {silence:?}");
}

/// A client that carries a given session cookie.
fn spawn_client_of(app: &TestApp, cookie: &str) -> CookieClient {
    CookieClient { base: app.url(""), origin: app.origin(), cookie: cookie.to_owned(), csrf: None }
}

struct CookieClient {
    base: String,
    origin: String,
    cookie: String,
    csrf: Option<String>,
}

impl CookieClient {
    async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .header("Origin", &self.origin)
            .json(body);
        if let Some(csrf) = &self.csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send().await.unwrap()
    }
}

async fn fetch_csrf(app: &TestApp, cookie: &str) -> String {
    let session: Value = reqwest::Client::new()
        .get(app.url("/api/v1/auth/session"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["csrf_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_websocket_from_another_site_or_without_a_session_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut app = spawn_app().await;
    app.signed_in_user("ws@example.com").await;
    let mut request = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    request.headers_mut().insert("Cookie", app.session_cookie.clone().unwrap().parse().unwrap());
    request.headers_mut().insert("Origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err(), "cross-site handshake refused");
    let anonymous = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    assert!(tokio_tungstenite::connect_async(anonymous).await.is_err(), "anonymous handshake refused");
}

#[tokio::test]
async fn bad_sends_get_a_4xx_naming_the_problem_and_write_nothing() {
    // A send may name up to 10,000 contacts: the body limit must let the 10,001st be refused by name.
    let mut app = spawn_app_with(|s| s.http.body_limit = 1024 * 1024).await;
    app.signed_in_user("bad-sends@example.com").await;
    let ids = seed_contacts(&app.db, "bad-sends@example.com", "c", 1, "t").await;
    let many: Vec<String> = (0..10_001).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let cases = [
        (json!({ "contact_ids": ids, "body": "x" }), 422, "subject"),
        (json!({ "contact_ids": ids, "subject": "", "body": "x" }), 422, "subject"),
        (json!({ "contact_ids": ids, "subject": "line\nbreak", "body": "x" }), 422, "subject"),
        (json!({ "contact_ids": ids, "subject": "s", "body": "   " }), 422, "body"),
        (json!({ "subject": "s", "body": "x" }), 422, "contact_ids"),
        (json!({ "contact_ids": [], "subject": "s", "body": "x" }), 422, "contact_ids"),
        (json!({ "contact_ids": ids, "tag": "t", "subject": "s", "body": "x" }), 422, "contact_ids"),
        (json!({ "contact_ids": many, "subject": "s", "body": "x" }), 422, "contact_ids"),
        (json!({ "contact_ids": ["not-a-uuid"], "subject": "s", "body": "x" }), 422, "contact_ids[0]"),
        (json!({ "tag": "nobody", "subject": "s", "body": "x" }), 404, "tag"),
        (json!({ "contact_ids": ids, "subject": "s", "body": "x", "cc": "x" }), 422, "cc"),
    ];
    for (body, status, field) in cases {
        let (got, _, named) = error_of(app.post_json("/api/v1/messages", &body).await).await;
        assert_eq!(
            (got, named.as_deref()),
            (status, Some(field)),
            "{}",
            body.to_string().chars().take(120).collect::<String>()
        );
    }
    let (status, _, _) = error_of(
        app.post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": [uuid::Uuid::new_v4()], "subject": "s", "body": "x" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404, "an id that is not one of my contacts is not found");
    for (path, field) in [
        ("/api/v1/messages?status=lost", "status"),
        ("/api/v1/messages?since=yesterday", "since"),
        ("/api/v1/messages?contact_id=12", "contact_id"),
        ("/api/v1/messages?limit=500", "limit"),
        ("/api/v1/tasks?status=maybe", "status"),
    ] {
        let (status, _, named) = error_of(app.get(path).await).await;
        assert_eq!((status, named.as_deref()), (422, Some(field)), "{path}");
    }
    let (status, code, named) = error_of(app.get("/api/v1/messages?cursor=%%%").await).await;
    assert_eq!((status, code.as_str(), named.as_deref()), (404, "cursor_not_found", Some("cursor")));
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(&app.db).await.unwrap();
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&app.db).await.unwrap();
    assert_eq!((tasks, messages), (0, 0), "no half-written send");
}

#[tokio::test]
async fn retry_failed_on_a_task_resends_every_failed_message_of_it() {
    let (url, stand_in) = crate::mailjet::start_stand_in().await;
    let rejection = r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0004","StatusCode":400,"ErrorMessage":"rejected","ErrorRelatedTo":["To"]}]}]}"#;
    stand_in.answers.lock().unwrap().extend([(400, rejection.to_owned()), (400, rejection.to_owned())]);
    let mut app = spawn_app_with(|s| {
        s.mail.transport = TransportSettings::Mailjet(crate::mailjet::settings(url, false));
        s.delivery.concurrency = 1;
    })
    .await;
    app.signed_in_user("task-retry@example.com").await;
    let ids = seed_contacts(&app.db, "task-retry@example.com", "tr", 3, "x").await;
    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": ids, "subject": "Try", "body": "Hello" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap().to_owned();
    let task = delivered(&app, &task_id).await;
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(1), Some(2)));

    let retry = app.post_json(&format!("/api/v1/tasks/{task_id}/retry-failed"), &json!({})).await;
    assert_eq!(retry.status(), 202);
    let task = delivered(&app, &task_id).await;
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(3), Some(0)));
    assert_eq!(ledger_counts(&app, &task_id).await, HashMap::from([("sent".to_owned(), 3)]));
    let notes: Value = app.get("/api/v1/notifications").await.json().await.unwrap();
    let titles: Vec<&str> =
        notes["notifications"].as_array().unwrap().iter().map(|n| n["title"].as_str().unwrap()).collect();
    assert_eq!(titles, vec!["Message sent to 3 contacts", "Message sent to 1 of 3 contacts; 2 failed"]);
}

/// A claim is given back only by the engine that holds it: once its lease ran out and another
/// engine claimed the row again, the first engine's late release (after a database outage, or at
/// the end of a shutdown grace period) must not take the row from the second, which would send it
/// twice.
#[tokio::test]
async fn releasing_a_claim_leaves_a_row_claimed_again_since_alone() {
    use borcelle_store::messages;
    // No engine in this process: the test plays two engines by hand.
    let mut app = spawn_app_with(|s| s.delivery.in_serve = false).await;
    app.signed_in_user("claims@example.com").await;
    message_one_new_contact(&app).await;

    // The first engine claims with a lease that is over at once; the second claims it again.
    let first = messages::claim_due(&app.db, 10, 0.0, "test").await.unwrap();
    assert_eq!((first.len(), first[0].attempts), (1, 1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = messages::claim_due(&app.db, 10, 120.0, "test").await.unwrap();
    assert_eq!((second.len(), second[0].id, second[0].attempts), (1, first[0].id, 2));

    let stale = messages::release(&app.db, &[(first[0].id, first[0].attempts)]).await.unwrap();
    assert_eq!(stale, 0, "the first engine's claim is no longer its own");
    let (status, attempts): (String, i32) = sqlx::query_as("SELECT status, attempts FROM messages WHERE id = $1")
        .bind(first[0].id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("sending", 2), "still the second engine's");

    let released = messages::release(&app.db, &[(second[0].id, second[0].attempts)]).await.unwrap();
    assert_eq!(released, 1);
    let (status, attempts): (String, i32) = sqlx::query_as("SELECT status, attempts FROM messages WHERE id = $1")
        .bind(first[0].id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("retrying", 1), "given back; the unsent attempt is not counted");
    let due = messages::claim_due(&app.db, 10, 120.0, "test").await.unwrap();
    assert_eq!(due.len(), 1, "due again at once");
}

/// The dev outbox keeps one copy per Message-ID: a send repeated because a crash lost its
/// outcome (the row is `sending` again under an expired lease, as a killed engine leaves it)
/// adds nothing.
#[tokio::test]
async fn a_send_repeated_after_a_crash_leaves_one_copy_in_the_dev_outbox() {
    let mut app = spawn_app().await;
    app.signed_in_user("crash@example.com").await;
    let task = message_one_new_contact(&app).await;
    assert_eq!(app.deliver_all().await.sent, 1);
    // The outcome "was not recorded": the row is back under a lease that has run out, and the task
    // has not counted it.
    sqlx::query(
        "WITH lost AS (
             UPDATE deliveries SET status = 'sending', lease_until = now() - interval '1 second', next_attempt_at = NULL
             WHERE task_id = $1::uuid RETURNING task_id
         )
         UPDATE tasks SET sent = 0, status = 'running', finished_at = NULL WHERE id IN (SELECT task_id FROM lost)",
    )
    .bind(&task)
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(app.deliver_all().await.sent, 1, "sent again, as after a crash");
    let copies = borcelle_store::outbox::list(&app.db, Some("ada@example.com"), 10).await.unwrap();
    assert_eq!(copies.len(), 1, "one copy in the outbox");
}

/// People first: while serve's web is busy (16 clients listing contacts without pause), its
/// delivery engine takes a large send at no more than its yield rate, yet never stops; once the
/// web is quiet the send finishes, every recipient once.
#[tokio::test]
async fn a_large_send_yields_to_a_busy_web_keeps_moving_and_finishes_once_it_is_quiet() {
    const RATE: u32 = 40;
    const RECIPIENTS: i32 = 1500;
    let mut app = spawn_app_with(|s| {
        s.delivery.in_serve = true;
        s.delivery.concurrency = 16;
        s.delivery.rate_while_web_busy = Some(RATE);
        // Busy by its rate (what shows a saturated web), never by requests in flight.
        s.delivery.web_busy_requests = 1000;
        s.delivery.web_busy_requests_per_sec = 100;
    })
    .await;
    app.signed_in_user("busy@example.com").await;
    seed_contacts(&app.db, "busy@example.com", "reader", RECIPIENTS, "all").await;

    let quiet = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (client, url, quiet) = (app.client.clone(), app.url("/api/v1/contacts?limit=50"), quiet.clone());
        readers.spawn(async move {
            let mut pages = 0u32;
            while !quiet.load(std::sync::atomic::Ordering::Relaxed) {
                let page = client.get(&url).send().await.unwrap();
                assert_eq!(page.status(), 200);
                pages += 1;
            }
            pages
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let queued: Value = app
        .post_json("/api/v1/messages", &json!({ "tag": "all", "subject": "Busy day", "body": "Hello" }))
        .await
        .json()
        .await
        .unwrap();
    let task_id = queued["task_id"].as_str().unwrap().to_owned();
    let queued_at = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent_while_busy = ledger_counts(&app, &task_id).await.get("sent").copied().unwrap_or(0);
    let busy_for = queued_at.elapsed().as_secs_f64();
    // What the engine may claim while the web is busy: a quarter second's worth at once, then
    // `RATE` a second.
    let allowed = (f64::from(RATE) / 4.0 + f64::from(RATE) * busy_for).ceil() as i64;
    assert!(sent_while_busy > 0, "a send never stops altogether, even while the web is busy");
    assert!(
        sent_while_busy <= allowed,
        "{sent_while_busy} sent in {busy_for:.1} s of a busy web: at most {allowed} at {RATE} a second"
    );

    quiet.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut pages = 0;
    while let Some(read) = readers.join_next().await {
        pages += read.unwrap();
    }
    assert!(pages > 100, "the web was busy: {pages} pages read");
    let waited = tokio::time::Instant::now();
    loop {
        let task: Value = app.get(&format!("/api/v1/tasks/{task_id}")).await.json().await.unwrap();
        if task["status"] == "done" {
            assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(i64::from(RECIPIENTS)), Some(0)));
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(120), "the send did not finish once the web was quiet: {task}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ledger_counts(&app, &task_id).await, HashMap::from([("sent".to_owned(), i64::from(RECIPIENTS))]));
    let copies: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox o JOIN messages m ON m.message_id = o.message_id WHERE m.task_id = $1::uuid",
    )
    .bind(&task_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(copies, i64::from(RECIPIENTS), "every recipient once in the outbox");
}
