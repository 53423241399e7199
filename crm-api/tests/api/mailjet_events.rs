//! MailJet's event webhook (`POST /api/v1/webhooks/mailjet`): batches shaped as MailJet posts
//! them mark ledger rows bounced and put addresses on their sender's suppression list, a replay
//! changes nothing, and only the configured credentials get in.

use borcelle::config::WebhookCredentials;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const HOOK_USER: &str = "mailjet-events";
const HOOK_PASSWORD: &str = "a long webhook password";
/// A MailJet `MessageID` (beyond 2^53, as real ones are).
const MAILJET_ID: u64 = 13_792_286_917_004_336;

async fn spawn_with_webhook() -> TestApp {
    spawn_app_with(|s| {
        s.consent.mailjet_webhook = Some(WebhookCredentials {
            username: HOOK_USER.to_owned(),
            password: SecretString::from(HOOK_PASSWORD.to_owned()),
        });
    })
    .await
}

/// Posts a body as MailJet does: no session, basic auth from the URL's credentials.
async fn post_events(
    app: &TestApp,
    credentials: Option<(&str, &str)>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(app.url("/api/v1/webhooks/mailjet"))
        .header("Content-Type", "application/json")
        .body(body);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await.unwrap()
}

async fn post_batch(app: &TestApp, batch: &Value) -> Value {
    let response = post_events(app, Some((HOOK_USER, HOOK_PASSWORD)), batch.to_string()).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.json().await.unwrap()
}

async fn contact(app: &TestApp, email: &str) -> String {
    let response = app.post_json("/api/v1/contacts", &json!({ "name": "Someone", "email": email })).await;
    assert_eq!(response.status(), 201, "creating {email}");
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Sends one message to the contacts, delivers it through the outbox, and returns the task id.
async fn send_and_deliver(app: &TestApp, contact_ids: &[String]) -> String {
    let response = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": contact_ids, "subject": "News", "body": "Hello" }))
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    app.deliver_all().await;
    queued["task_id"].as_str().unwrap().to_owned()
}

/// The ledger row of a task to an address.
async fn row_of(app: &TestApp, task_id: &str, email: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM messages WHERE task_id = $1::uuid AND to_email = $2")
        .bind(task_id)
        .bind(email)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Switches the app's client to another signed-in user.
async fn sign_in_as(app: &mut TestApp, email: &str) {
    app.client = browser_client();
    app.csrf = None;
    let response = app.login(email, PASSWORD).await;
    assert_eq!(response.status(), 200, "login of {email}");
}

/// Everything a batch may change: the ledger, the suppression lists and the tasks' counters.
async fn snapshot(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT row_to_json(x)::text FROM (
             SELECT 'message' AS kind, id::text AS key, status, last_error AS detail, updated_at::text AS at FROM messages
             UNION ALL
             SELECT 'suppression', owner_id::text || ' ' || email, reason, detail, created_at::text FROM suppressions
             UNION ALL
             SELECT 'task', id::text, bounced::text, sent::text, finished_at::text FROM tasks
         ) x ORDER BY kind, key",
    )
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// MailJet's common event fields, with `CustomID` and `MessageID` as given.
fn event(kind: &str, email: &str, custom_id: &str, message_id: u64) -> Value {
    json!({
        "event": kind,
        "time": 1_733_400_000,
        "MessageID": message_id,
        "Message_GUID": "1ab23cd4-e567-8901-2345-6789f0ab1c2d",
        "email": email,
        "mj_campaign_id": 0,
        "mj_contact_id": 0,
        "customcampaign": "",
        "CustomID": custom_id,
        "Payload": "",
    })
}

fn with(mut event: Value, fields: Value) -> Value {
    for (key, value) in fields.as_object().unwrap() {
        event[key] = value.clone();
    }
    event
}

#[tokio::test]
async fn a_batch_marks_bounces_and_suppresses_for_the_sender_only_and_a_replay_changes_nothing() {
    let mut app = spawn_with_webhook().await;
    // Bob mails the address that will hard-bounce for Alice.
    app.verified_user("alice-events@example.com", borcelle_store::users::Role::User).await;
    app.signed_in_user("bob-events@example.com").await;
    let bobs_contact = contact(&app, "hard@example.com").await;
    let bobs_first = send_and_deliver(&app, std::slice::from_ref(&bobs_contact)).await;
    let bobs_row = row_of(&app, &bobs_first, "hard@example.com").await;

    sign_in_as(&mut app, "alice-events@example.com").await;
    let addresses = [
        "hard@example.com",
        "soft@example.com",
        "blocked@example.com",
        "blocked-domain@example.com",
        "spam@example.com",
        "unsub@example.com",
        "by-id@example.com",
    ];
    let mut contacts = Vec::new();
    for address in addresses {
        contacts.push(contact(&app, address).await);
    }
    let task = send_and_deliver(&app, &contacts).await;
    let mut rows = std::collections::HashMap::new();
    for address in addresses {
        rows.insert(address, row_of(&app, &task, address).await.to_string());
    }
    // The outbox records ids of its own; this row was sent through MailJet as far as the ledger knows.
    sqlx::query("UPDATE deliveries SET provider_id = $1 WHERE id = $2::uuid")
        .bind(MAILJET_ID.to_string())
        .bind(&rows["by-id@example.com"])
        .execute(&app.db)
        .await
        .unwrap();
    let sent: Value = app.get(&format!("/api/v1/tasks/{task}")).await.json().await.unwrap();
    assert_eq!((sent["sent"].as_i64(), sent["bounced"].as_i64()), (Some(7), Some(0)), "{sent}");

    let hard = with(
        event("bounce", "hard@example.com", &rows["hard@example.com"], 1001),
        json!({ "blocked": false, "hard_bounce": true, "error_related_to": "recipient", "error": "user unknown",
                "comment": "550 5.1.1 The email account that you tried to reach does not exist" }),
    );
    let batch = json!([
        hard.clone(),
        with(
            event("bounce", "soft@example.com", &rows["soft@example.com"], 1002),
            json!({ "blocked": false, "hard_bounce": false, "error_related_to": "domain", "error": "greylisted" }),
        ),
        with(
            event("blocked", "blocked@example.com", &rows["blocked@example.com"], 1003),
            json!({ "error_related_to": "recipient", "error": "user unknown" }),
        ),
        with(
            event("blocked", "blocked-domain@example.com", &rows["blocked-domain@example.com"], 1004),
            json!({ "error_related_to": "domain", "error": "no mail host" }),
        ),
        with(event("spam", "spam@example.com", &rows["spam@example.com"], 1005), json!({ "source": "JMRPP" })),
        with(
            event("unsub", "unsub@example.com", &rows["unsub@example.com"], 1006),
            json!({ "mj_list_id": 1, "ip": "127.0.0.1", "geo": "FR", "agent": "Mozilla/5.0" }),
        ),
        // The same event twice in one batch.
        hard,
        // A message of another system sharing the MailJet account.
        with(
            event("bounce", "stranger@example.com", &Uuid::new_v4().to_string(), 1007),
            json!({ "hard_bounce": true, "error_related_to": "recipient", "error": "user unknown" }),
        ),
        // No CustomID (MailJet sends it empty): found by MessageID.
        with(
            event("bounce", "by-id@example.com", "", MAILJET_ID),
            json!({ "hard_bounce": true, "error_related_to": "recipient", "error": "mailbox inactive" }),
        ),
        // Counted and ignored.
        with(
            event("open", "hard@example.com", &rows["hard@example.com"], 1001),
            json!({ "ip": "127.0.0.1", "geo": "FR", "agent": "Mozilla/5.0" }),
        ),
        event("sent", "soft@example.com", &rows["soft@example.com"], 1002),
    ]);

    let summary = post_batch(&app, &batch).await;
    assert_eq!(
        summary,
        json!({ "events": 11, "matched": 8, "unknown": 1, "ignored": 2, "bounced": 5, "suppressed": 5 }),
        "the answer to MailJet says what the batch did"
    );

    let bounced: Value = app.get("/api/v1/messages?status=bounced").await.json().await.unwrap();
    let mut bounced: Vec<(String, String)> = bounced["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["to_email"].as_str().unwrap().to_owned(), m["last_error"].as_str().unwrap().to_owned()))
        .collect();
    bounced.sort();
    assert_eq!(
        bounced,
        [
            ("blocked-domain@example.com".to_owned(), "blocked (domain): no mail host".to_owned()),
            ("blocked@example.com".to_owned(), "blocked (recipient): user unknown".to_owned()),
            ("by-id@example.com".to_owned(), "hard bounce: mailbox inactive".to_owned()),
            (
                "hard@example.com".to_owned(),
                "hard bounce: user unknown 550 5.1.1 The email account that you tried to reach does not exist"
                    .to_owned()
            ),
            ("soft@example.com".to_owned(), "soft bounce: greylisted".to_owned()),
        ]
    );
    let still_sent: Value = app.get("/api/v1/messages?status=sent").await.json().await.unwrap();
    let mut still_sent: Vec<&str> =
        still_sent["messages"].as_array().unwrap().iter().map(|m| m["to_email"].as_str().unwrap()).collect();
    still_sent.sort_unstable();
    assert_eq!(still_sent, ["spam@example.com", "unsub@example.com"], "a complaint or unsubscribe was delivered");

    let list: Value = app.get("/api/v1/suppressions").await.json().await.unwrap();
    let mut suppressed: Vec<(String, String, String)> = list["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["detail"].as_str().is_some_and(|d| !d.is_empty()), "{s}");
            let email = s["email"].as_str().unwrap().to_owned();
            assert_eq!(s["message_id"], rows[email.as_str()].as_str(), "the row that caused it");
            (email, s["reason"].as_str().unwrap().to_owned(), s["detail"].as_str().unwrap().to_owned())
        })
        .collect();
    suppressed.sort();
    let reasons: Vec<(&str, &str)> = suppressed.iter().map(|(e, r, _)| (e.as_str(), r.as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("blocked@example.com", "hard_bounce"),
            ("by-id@example.com", "hard_bounce"),
            ("hard@example.com", "hard_bounce"),
            ("spam@example.com", "complaint"),
            ("unsub@example.com", "unsubscribed"),
        ]
    );
    assert_eq!(suppressed[3].2, "marked as spam (via JMRPP)");
    let counted: Value = app.get(&format!("/api/v1/tasks/{task}")).await.json().await.unwrap();
    assert_eq!((counted["sent"].as_i64(), counted["bounced"].as_i64()), (Some(7), Some(5)), "{counted}");

    // MailJet posts the batch again (it retries for 24 hours): nothing changes.
    let before = snapshot(&app).await;
    let replayed = post_batch(&app, &batch).await;
    assert_eq!(
        replayed,
        json!({ "events": 11, "matched": 8, "unknown": 1, "ignored": 2, "bounced": 0, "suppressed": 0 })
    );
    assert_eq!(snapshot(&app).await, before, "a replayed batch changes nothing");
    let single = post_batch(&app, &batch[0]).await;
    assert_eq!(single["events"], 1, "one event alone, not in an array: {single}");
    assert_eq!(snapshot(&app).await, before);

    // Bob's list holds nothing of Alice's, and his next mail to the address goes out.
    sign_in_as(&mut app, "bob-events@example.com").await;
    let bobs_list: Value = app.get("/api/v1/suppressions").await.json().await.unwrap();
    assert_eq!(bobs_list["suppressions"], json!([]), "{bobs_list}");
    let bobs_history: Value = app.get("/api/v1/messages").await.json().await.unwrap();
    assert_eq!(bobs_history["messages"][0]["status"], "sent", "{bobs_history}");
    assert_eq!(bobs_history["messages"][0]["id"], bobs_row.to_string());
    let bobs_next = send_and_deliver(&app, &[bobs_contact]).await;
    let bobs_task: Value = app.get(&format!("/api/v1/tasks/{bobs_next}")).await.json().await.unwrap();
    assert_eq!((bobs_task["sent"].as_i64(), bobs_task["suppressed"].as_i64()), (Some(1), Some(0)), "{bobs_task}");
}

#[tokio::test]
async fn a_wrong_or_missing_credential_is_refused_with_a_basic_challenge_and_changes_nothing() {
    let mut app = spawn_with_webhook().await;
    app.signed_in_user("guarded@example.com").await;
    let ada = contact(&app, "ada@example.com").await;
    let task = send_and_deliver(&app, &[ada]).await;
    let row = row_of(&app, &task, "ada@example.com").await;
    let batch = json!([with(
        event("bounce", "ada@example.com", &row.to_string(), 1),
        json!({ "hard_bounce": true, "error_related_to": "recipient", "error": "user unknown" }),
    )]);
    let before = snapshot(&app).await;

    for credentials in
        [Some((HOOK_USER, "the wrong password")), Some(("someone-else", HOOK_PASSWORD)), Some((HOOK_USER, "")), None]
    {
        let response = post_events(&app, credentials, batch.to_string()).await;
        assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"mailjet\"", "{credentials:?}");
        let (status, code, _) = error_of(response).await;
        assert_eq!((status, code.as_str()), (401, "authentication_required"), "{credentials:?}");
    }
    // The user's own session is no credential here.
    let with_session = app.client.post(app.url("/api/v1/webhooks/mailjet")).json(&batch).send().await.unwrap();
    assert_eq!(with_session.status(), 401);
    assert_eq!(snapshot(&app).await, before);

    let applied = post_batch(&app, &batch).await;
    assert_eq!(applied["bounced"], 1);
}

#[tokio::test]
async fn without_configured_credentials_the_webhook_is_off() {
    let app = spawn_app().await;
    let response = post_events(&app, Some((HOOK_USER, HOOK_PASSWORD)), "[]").await;
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn a_malformed_batch_is_a_400_naming_what_is_wrong_and_applies_nothing() {
    let mut app = spawn_with_webhook().await;
    app.signed_in_user("malformed@example.com").await;
    let ada = contact(&app, "ada@example.com").await;
    let task = send_and_deliver(&app, &[ada]).await;
    let row = row_of(&app, &task, "ada@example.com").await.to_string();
    let before = snapshot(&app).await;

    let auth = Some((HOOK_USER, HOOK_PASSWORD));
    let unsub = event("unsub", "ada@example.com", &row, 1);
    let cases = [
        (r#"[{"event": "unsub", "#.to_owned(), "not valid JSON"),
        (
            json!([unsub.clone(), with(event("spam", "ada@example.com", &row, 1), json!({ "MessageID": "1" }))])
                .to_string(),
            "[1].MessageID",
        ),
        (json!([with(unsub.clone(), json!({ "hard_bounce": "yes" }))]).to_string(), "[0].hard_bounce"),
        (json!([{ "MessageID": 1 }]).to_string(), "missing field `event`"),
        ("\"unsub\"".to_owned(), "a JSON object"),
    ];
    for (body, named) in cases {
        let response = post_events(&app, auth, body.clone()).await;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        assert_eq!((status, answer["error"]["code"].as_str()), (400, Some("malformed_body")), "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
    }
    assert_eq!(snapshot(&app).await, before, "a batch is applied whole or not at all");
}

#[tokio::test]
async fn a_batch_larger_than_the_api_body_limit_is_accepted() {
    let app = spawn_with_webhook().await;
    // The test server's API limit is 64 KiB; MailJet groups many events in one call.
    let opens: Vec<Value> = (0..1000)
        .map(|i| with(event("open", "ada@example.com", "", 5000 + i), json!({ "ip": "127.0.0.1", "geo": "FR" })))
        .collect();
    let body = Value::from(opens).to_string();
    assert!(body.len() > 128 * 1024, "{} bytes", body.len());
    let summary = post_batch(&app, &serde_json::from_str(&body).unwrap()).await;
    assert_eq!((summary["events"].as_u64(), summary["ignored"].as_u64()), (Some(1000), Some(1000)));
}
