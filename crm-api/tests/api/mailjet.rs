//! The MailJet Send API v3.1 transport, against a local HTTP server standing in for MailJet.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::post;
use base64::Engine;
use borcelle::config::{MailjetSettings, TransportSettings};
use borcelle_mail::{MailError, MailTransport, Mailbox, MailjetTransport, OutgoingEmail};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::*;

/// What the stand-in received, and the answers it will give in order (then 200 success).
#[derive(Default)]
pub struct StandIn {
    pub received: Mutex<Vec<(HeaderMap, Value)>>,
    pub answers: Mutex<VecDeque<(u16, String)>>,
    /// When each call arrived.
    pub calls: Mutex<Vec<Instant>>,
    /// The `Retry-After` every 429 answer carries, if any.
    pub retry_after: Mutex<Option<&'static str>>,
    /// Messages received so far (their MailJet MessageIDs follow from it).
    pub messages: std::sync::atomic::AtomicU64,
}

/// The first message MailJet receives gets this `MessageID`; each later one the next number.
pub const FIRST_MESSAGE_ID: u64 = 288230379631515999;

/// MailJet's result for one accepted message.
fn accepted(custom_id: &str, to: &str, message_id: u64) -> Value {
    json!({
        "Status": "success", "CustomID": custom_id,
        "To": [{
            "Email": to, "MessageUUID": "1ab23cd4", "MessageID": message_id,
            "MessageHref": format!("https://api.mailjet.com/v3/REST/message/{message_id}")
        }],
        "Cc": [], "Bcc": []
    })
}

/// MailJet's answer to a call none of whose messages was scripted: each accepted, or refused
/// when its recipient's address starts with `invalid` (as MailJet refuses a malformed address:
/// the whole call answers 400, the others still go).
fn answer_each(request: &Value, first_message_id: u64) -> (u16, String) {
    let mut refused_any = false;
    let results: Vec<Value> = request["Messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let custom_id = message["CustomID"].as_str().unwrap_or_default();
            let to = message["To"][0]["Email"].as_str().unwrap_or_default();
            if to.starts_with("invalid") {
                refused_any = true;
                json!({"Status": "error", "CustomID": custom_id, "Errors": [{
                    "ErrorIdentifier": "f987", "ErrorCode": "mj-0013", "StatusCode": 400,
                    "ErrorMessage": format!("\"{to}\" is an invalid email address."),
                    "ErrorRelatedTo": ["To[0].Email"]
                }]})
            } else {
                accepted(custom_id, to, first_message_id + i as u64)
            }
        })
        .collect();
    (if refused_any { 400 } else { 200 }, json!({ "Messages": results }).to_string())
}

async fn send(
    State(stand_in): State<Arc<StandIn>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap, String) {
    stand_in.calls.lock().unwrap().push(Instant::now());
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    // MailJet's MessageIDs: the next numbers, one per message of the call.
    let count = value["Messages"].as_array().map_or(1, Vec::len) as u64;
    let first = FIRST_MESSAGE_ID + stand_in.messages.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
    let scripted = stand_in.answers.lock().unwrap().pop_front();
    let (status, body) = scripted.unwrap_or_else(|| answer_each(&value, first));
    stand_in.received.lock().unwrap().push((headers, value));
    let mut answer_headers = HeaderMap::new();
    if let (429, Some(after)) = (status, *stand_in.retry_after.lock().unwrap()) {
        answer_headers.insert(header::RETRY_AFTER, HeaderValue::from_static(after));
    }
    (StatusCode::from_u16(status).unwrap(), answer_headers, body)
}

pub async fn start_stand_in() -> (Url, Arc<StandIn>) {
    let stand_in = Arc::new(StandIn::default());
    let app = Router::new().route("/v3.1/send", post(send)).with_state(stand_in.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, stand_in)
}

pub fn settings(api_url: Url, sandbox: bool) -> MailjetSettings {
    MailjetSettings {
        api_key: "public-key".to_owned(),
        api_secret: SecretString::from("private-secret".to_owned()),
        api_url,
        sandbox,
        timeout: Duration::from_secs(5),
    }
}

fn email() -> OutgoingEmail {
    OutgoingEmail {
        from: Mailbox { name: Some("Borcelle".to_owned()), email: "noreply@borcelle.test".to_owned() },
        to: Mailbox { name: Some("Ada".to_owned()), email: "ada@example.com".to_owned() },
        reply_to: None,
        subject: "Hello".to_owned(),
        text: "Hi Ada".to_owned(),
        html: "<p>Hi Ada</p>".to_owned(),
        message_id: "<m-1@borcelle.test>".to_owned(),
        date: SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
    }
}

#[tokio::test]
async fn the_request_body_is_exactly_the_v3_1_send_shape() {
    let (url, stand_in) = start_stand_in().await;
    let transport = MailjetTransport::new(settings(url, true)).unwrap();
    let delivery = transport.send(&email()).await.unwrap();
    assert_eq!(delivery.provider_id, "288230379631515999");

    let received = stand_in.received.lock().unwrap();
    let (headers, body) = &received[0];
    let expected = json!({
        "SandboxMode": true,
        "Messages": [{
            "From": { "Email": "noreply@borcelle.test", "Name": "Borcelle" },
            "To": [{ "Email": "ada@example.com", "Name": "Ada" }],
            "Subject": "Hello",
            "TextPart": "Hi Ada",
            "HTMLPart": "<p>Hi Ada</p>",
            "CustomID": "m-1@borcelle.test",
            "Headers": { "X-Borcelle-Message-ID": "<m-1@borcelle.test>" }
        }]
    });
    assert_eq!(body, &expected);
    let basic = base64::engine::general_purpose::STANDARD.encode("public-key:private-secret");
    assert_eq!(headers["authorization"], format!("Basic {basic}").as_str());
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient_an_invalid_recipient_rejected_and_a_bad_key_permanent() {
    let (url, stand_in) = start_stand_in().await;
    let transport = MailjetTransport::new(settings(url, false)).unwrap();
    let rejection = r#"{"Messages":[{"Status":"error","Errors":[{"ErrorIdentifier":"f987008f","ErrorCode":"mj-0013","StatusCode":400,"ErrorMessage":"\"ada@\" is an invalid email address.","ErrorRelatedTo":["To[0].Email"]}]}]}"#;
    stand_in.answers.lock().unwrap().extend([
        (429, r#"{"ErrorMessage":"Too many requests"}"#.to_owned()),
        (503, "<html>down</html>".to_owned()),
        (400, rejection.to_owned()),
        (401, r#"{"ErrorMessage":"API key authentication/authorization failure"}"#.to_owned()),
    ]);
    let throttled = transport.send(&email()).await.unwrap_err();
    assert!(throttled.is_transient(), "{throttled}");
    let down = transport.send(&email()).await.unwrap_err();
    assert!(down.is_transient(), "{down}");
    let rejected = transport.send(&email()).await.unwrap_err();
    assert!(matches!(rejected, MailError::Rejected(_)), "an invalid recipient is a hard bounce: {rejected:?}");
    assert!(
        rejected.to_string().contains("mj-0013") && rejected.to_string().contains("invalid email address"),
        "{rejected}"
    );
    let unauthorized = transport.send(&email()).await.unwrap_err();
    assert!(matches!(unauthorized, MailError::Permanent(_)), "{unauthorized:?}");
    assert!(unauthorized.to_string().contains("BORCELLE_MAILJET_API_KEY"), "{unauthorized}");
}

#[tokio::test]
async fn an_unreachable_api_is_a_transient_failure() {
    let url = Url::parse(&format!("http://127.0.0.1:{}/", free_port())).unwrap();
    let transport = MailjetTransport::new(settings(url, false)).unwrap();
    assert!(transport.send(&email()).await.unwrap_err().is_transient());
}

#[tokio::test]
async fn registration_mail_goes_through_mailjet_when_configured() {
    let (url, stand_in) = start_stand_in().await;
    let app = spawn_app_with(|s| s.mail.transport = TransportSettings::Mailjet(settings(url, false))).await;
    app.register("jet@example.com", "Jet <Setter>").await;
    app.account_mail_settled().await;
    let received = stand_in.received.lock().unwrap();
    let message = &received.first().expect("MailJet got the verification mail").1["Messages"][0];
    assert_eq!(message["To"][0], json!({ "Email": "jet@example.com", "Name": "Jet <Setter>" }));
    assert_eq!(message["Subject"], "Verify your email for Borcelle");
    assert!(message["TextPart"].as_str().unwrap().contains(&app.url("/verify?token=")));
    assert!(message["HTMLPart"].as_str().unwrap().contains("Jet &lt;Setter&gt;"), "user content is escaped in HTML");
}

#[tokio::test]
async fn after_a_429_no_send_of_the_transport_reaches_mailjet_until_retry_after_has_passed() {
    let (url, stand_in) = start_stand_in().await;
    *stand_in.retry_after.lock().unwrap() = Some("1");
    stand_in.answers.lock().unwrap().push_back((429, r#"{"ErrorMessage":"Too many requests"}"#.to_owned()));
    let transport = Arc::new(MailjetTransport::new(settings(url, false)).unwrap());

    let throttled = transport.send(&email()).await.unwrap_err();
    assert!(throttled.is_transient(), "the engine retries the throttled message: {throttled}");
    let started = Instant::now();
    let others: Vec<_> = (0..4)
        .map(|i| {
            let transport = transport.clone();
            let mut email = email();
            email.message_id = format!("<m-{i}@borcelle.test>");
            email.ledger_id = Some(format!("row-{i}"));
            tokio::spawn(async move { transport.send(&email).await })
        })
        .collect();
    for sent in futures::future::join_all(others).await {
        sent.unwrap().expect("sent once the pause has passed");
    }

    let calls = stand_in.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 5, "one call each: the pause is waited out, not answered with more calls");
    for later in &calls[1..] {
        let after = later.duration_since(calls[0]);
        assert!(after >= Duration::from_secs(1), "a call {after:?} after the 429, within its Retry-After");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "the pause ends: {:?}", started.elapsed());
    let received = stand_in.received.lock().unwrap();
    let mut custom_ids: Vec<&str> =
        received[1..].iter().map(|(_, body)| body["Messages"][0]["CustomID"].as_str().unwrap()).collect();
    custom_ids.sort_unstable();
    assert_eq!(custom_ids, ["row-0", "row-1", "row-2", "row-3"]);
}

#[tokio::test]
async fn bulk_mail_through_mailjet_names_its_ledger_row_and_offers_one_click_unsubscribe() {
    let (url, stand_in) = start_stand_in().await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Mailjet(settings(url, false))).await;
    app.signed_in_user("bulk-jet@example.com").await;
    let contacts = seed_contacts(&app.db, "bulk-jet@example.com", "jet", 2, "x").await;
    let queued = app
        .post_json("/api/v1/messages", &json!({ "contact_ids": contacts, "subject": "News", "body": "Hello" }))
        .await;
    assert_eq!(queued.status(), 202);
    app.deliver_all().await;

    let rows: Vec<(uuid::Uuid, String, Option<String>, String)> =
        sqlx::query_as("SELECT id, to_email, provider_id, status FROM messages ORDER BY to_email")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    let received = stand_in.received.lock().unwrap();
    assert_eq!(received.len(), 1, "both messages in one call");
    for (id, to_email, _, status) in &rows {
        assert_eq!(status, "sent");
        let message = received[0].1["Messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["To"][0]["Email"] == to_email.as_str())
            .unwrap_or_else(|| panic!("MailJet got the message to {to_email}"));
        assert_eq!(message["CustomID"], id.to_string(), "the ledger row, which MailJet's events carry back");
        let unsubscribe = message["Headers"]["List-Unsubscribe"].as_str().expect("bulk mail carries List-Unsubscribe");
        assert!(unsubscribe.starts_with(&format!("<{}", app.url("/unsubscribe/"))), "{unsubscribe}");
        assert_eq!(message["Headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
        assert!(message["Headers"]["X-Borcelle-Message-ID"].is_string());
    }
    let mut provider_ids: Vec<String> = rows.iter().map(|r| r.2.clone().unwrap()).collect();
    provider_ids.sort();
    let expected = [FIRST_MESSAGE_ID.to_string(), (FIRST_MESSAGE_ID + 1).to_string()];
    assert_eq!(provider_ids, expected, "MailJet's MessageID is the provider id, as its events name it");
}

#[tokio::test]
async fn a_note_to_120_contacts_goes_to_mailjet_in_calls_of_50_and_each_row_gets_its_own_outcome() {
    let (url, stand_in) = start_stand_in().await;
    let mut app = spawn_app_with(|s| {
        s.mail.transport = TransportSettings::Mailjet(settings(url, false));
        s.delivery.concurrency = 200;
    })
    .await;
    app.signed_in_user("batch-jet@example.com").await;
    seed_contacts(&app.db, "batch-jet@example.com", "jet", 119, "crowd").await;
    // One address MailJet refuses, in the middle of a call.
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'batch-jet@example.com'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO contacts (id, owner_id, name, email, tags) VALUES (gen_random_uuid(), $1, 'Bad', 'invalid@@example.com', '{crowd}')",
    )
    .bind(owner)
    .execute(&app.db)
    .await
    .unwrap();
    let queued =
        app.post_json("/api/v1/messages", &json!({ "tag": "crowd", "subject": "News", "body": "Hello" })).await;
    assert_eq!(queued.status(), 202);
    app.deliver_all().await;

    let mut sizes: Vec<usize> =
        stand_in.received.lock().unwrap().iter().map(|(_, body)| body["Messages"].as_array().unwrap().len()).collect();
    // The calls run at once; their order is the network's.
    sizes.sort_unstable();
    assert_eq!(sizes, [20, 50, 50], "120 messages in three calls");
    let rows: Vec<(uuid::Uuid, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, to_email, status, provider_id FROM messages").fetch_all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 120);
    let received = stand_in.received.lock().unwrap().clone();
    let sent_ids: std::collections::HashMap<String, String> = received
        .iter()
        .flat_map(|(_, body)| body["Messages"].as_array().unwrap().clone())
        .map(|m| (m["CustomID"].as_str().unwrap().to_owned(), m["To"][0]["Email"].as_str().unwrap().to_owned()))
        .collect();
    let mut provider_ids = std::collections::HashSet::new();
    for (id, to_email, status, provider_id) in &rows {
        assert_eq!(sent_ids.get(&id.to_string()), Some(to_email), "row {id} went to MailJet once, as its own CustomID");
        if to_email == "invalid@@example.com" {
            assert_eq!(status, "failed", "only the refused address fails");
            continue;
        }
        assert_eq!(status, "sent", "{to_email}");
        assert!(provider_ids.insert(provider_id.clone().unwrap()), "each row has its own MailJet MessageID");
    }
    let suppressed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM suppressions WHERE email = 'invalid@@example.com' AND reason = 'hard_bounce'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(suppressed, 1, "the refused address is suppressed for its sender");
}
