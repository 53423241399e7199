//! The MailJet transport: its throttle and request body, and what it reports for MailJet's
//! answers, against a local HTTP server standing in for MailJet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;

#[test]
fn a_pause_follows_retry_after_else_doubles_from_one_second_to_a_minute_and_resets_on_success() {
    let start = Instant::now();
    let mut state = ThrottleState::default();
    assert_eq!(state.remaining(start), None);
    assert_eq!(state.throttled(start, Some(Duration::from_secs(7))), Duration::from_secs(7));
    assert_eq!(state.remaining(start + Duration::from_secs(2)), Some(Duration::from_secs(5)));
    assert_eq!(state.remaining(start + Duration::from_secs(7)), None);

    let pauses: Vec<u64> = (0..8).map(|_| state.throttled(start, None).as_secs()).collect();
    assert_eq!(pauses, [2, 4, 8, 16, 32, 60, 60, 60], "the first 429 (with Retry-After) counted too");
    state.succeeded();
    assert_eq!(state.throttled(start, None), FIRST_PAUSE);
}

#[test]
fn a_pause_is_never_shortened_and_a_wild_retry_after_is_capped() {
    let start = Instant::now();
    let mut state = ThrottleState::default();
    state.throttled(start, Some(Duration::from_secs(30)));
    state.throttled(start + Duration::from_secs(1), Some(Duration::from_secs(1)));
    assert_eq!(state.remaining(start), Some(Duration::from_secs(30)));
    assert_eq!(state.throttled(start, Some(Duration::from_secs(86_400))), LONGEST_PAUSE);
}

#[test]
fn retry_after_is_read_in_seconds() {
    let mut headers = HeaderMap::new();
    assert_eq!(retry_after(&headers), None);
    headers.insert(RETRY_AFTER, "3".parse().unwrap());
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
    assert_eq!(retry_after(&headers), None);
}

#[test]
fn custom_id_is_the_ledger_row_and_bulk_mail_carries_the_unsubscribe_headers() {
    let mut email = OutgoingEmail {
        from: Mailbox { name: None, email: "noreply@borcelle.test".to_owned() },
        to: Mailbox { name: None, email: "ada@example.com".to_owned() },
        reply_to: None,
        subject: "Hi".to_owned(),
        text: "x".to_owned(),
        html: "x".to_owned(),
        message_id: "<m-1@borcelle.test>".to_owned(),
        date: SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
    };
    let body = serde_json::to_value(request_body(std::slice::from_ref(&email), false)).unwrap();
    assert_eq!(body["Messages"][0]["CustomID"], "m-1@borcelle.test", "no row: the Message-ID");
    assert!(body["Messages"][0]["Headers"].get("List-Unsubscribe").is_none());

    email.ledger_id = Some("0193a1b2-0000-7000-8000-000000000001".to_owned());
    email.unsubscribe = Some(Unsubscribe { https: "https://crm.test/unsubscribe/t".to_owned(), mailto: None });
    let body = serde_json::to_value(request_body(std::slice::from_ref(&email), false)).unwrap();
    assert_eq!(body["Messages"][0]["CustomID"], "0193a1b2-0000-7000-8000-000000000001");
    assert_eq!(body["Messages"][0]["Headers"]["List-Unsubscribe"], "<https://crm.test/unsubscribe/t>");
    assert_eq!(body["Messages"][0]["Headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
}

/// One answer of the stand-in: its status, `Retry-After` and body.
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: String,
}

/// How the stand-in answers a call, given its number (from 0) and the request body.
type Script = Box<dyn Fn(usize, &Value) -> Reply + Send + Sync>;

/// A local HTTP server standing in for MailJet: it records each call and answers by its script.
struct StandIn {
    calls: Mutex<Vec<(Instant, Value)>>,
    script: Script,
}

impl StandIn {
    fn requests(&self) -> Vec<Value> {
        self.calls.lock().unwrap().iter().map(|(_, request)| request.clone()).collect()
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.requests().iter().map(|request| messages(request).len()).collect()
    }
}

async fn answer(State(stand_in): State<Arc<StandIn>>, body: String) -> (axum::http::StatusCode, HeaderMap, String) {
    let request: Value = serde_json::from_str(&body).unwrap();
    let call = {
        let mut calls = stand_in.calls.lock().unwrap();
        calls.push((Instant::now(), request.clone()));
        calls.len() - 1
    };
    let reply = (stand_in.script)(call, &request);
    let mut headers = HeaderMap::new();
    if let Some(after) = reply.retry_after {
        headers.insert(RETRY_AFTER, after.parse().unwrap());
    }
    (axum::http::StatusCode::from_u16(reply.status).unwrap(), headers, reply.body)
}

/// A transport talking to a new stand-in that answers by `script`.
async fn stand_in(
    sandbox: bool,
    script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
) -> (MailjetTransport, Arc<StandIn>) {
    let stand_in = Arc::new(StandIn { calls: Mutex::default(), script: Box::new(script) });
    let app = Router::new().route("/v3.1/send", post(answer)).with_state(stand_in.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (MailjetTransport::new(settings(url, sandbox)).unwrap(), stand_in)
}

fn settings(api_url: url::Url, sandbox: bool) -> MailjetSettings {
    MailjetSettings {
        api_key: "public-key".to_owned(),
        api_secret: SecretString::from("private-secret".to_owned()),
        api_url,
        sandbox,
        timeout: Duration::from_secs(5),
    }
}

/// Emails for rows `row-0`, `row-1`, … to `{kind}-{i}@example.com`, the kind saying how the
/// stand-in's [`by_recipient`] treats it.
fn emails(kinds: &[&str]) -> Vec<OutgoingEmail> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| OutgoingEmail {
            from: Mailbox { name: Some("Borcelle".to_owned()), email: "news@borcelle.test".to_owned() },
            to: Mailbox { name: None, email: format!("{kind}-{i}@example.com") },
            reply_to: None,
            subject: "News".to_owned(),
            text: "Hello".to_owned(),
            html: "<p>Hello</p>".to_owned(),
            message_id: format!("<m-{i}@borcelle.test>"),
            date: SystemTime::now(),
            attachments: Vec::new(),
            unsubscribe: None,
            ledger_id: Some(format!("row-{i}")),
            envelope_from: None,
        })
        .collect()
}

fn accepted_emails(count: usize) -> Vec<OutgoingEmail> {
    emails(&vec!["ok"; count])
}

fn messages(request: &Value) -> &Vec<Value> {
    request["Messages"].as_array().unwrap()
}

/// The `MessageID` the stand-in gives the accepted message of row `row-{i}`.
fn provider_id(i: usize) -> String {
    (288_230_379_631_515_999_u64 + i as u64).to_string()
}

/// MailJet's result for a message it accepted.
fn accepted(message: &Value) -> Value {
    let row: usize = message["CustomID"].as_str().unwrap().trim_start_matches("row-").parse().unwrap();
    json!({
        "Status": "success", "CustomID": message["CustomID"],
        "To": [{ "Email": message["To"][0]["Email"], "MessageUUID": format!("uuid-{row}"), "MessageID": provider_id(row).parse::<u64>().unwrap() }],
        "Cc": [], "Bcc": []
    })
}

/// MailJet's result for a message it refused.
fn refused(message: &Value, code: &str, text: String, related: &str) -> Value {
    json!({
        "Status": "error", "CustomID": message["CustomID"],
        "Errors": [{ "ErrorIdentifier": "e-1", "ErrorCode": code, "StatusCode": 400, "ErrorMessage": text, "ErrorRelatedTo": [related] }]
    })
}

/// The result MailJet gives a message by its recipient's kind: `invalid-…` is an invalid
/// address, `unauthorized-…` meets a sender refused for it, anything else is accepted.
fn by_recipient(message: &Value) -> Value {
    let to = message["To"][0]["Email"].as_str().unwrap();
    if to.starts_with("invalid-") {
        refused(message, "mj-0013", format!("\"{to}\" is an invalid email address."), "To[0].Email")
    } else if to.starts_with("unauthorized-") {
        refused(message, "send-0008", format!("sender not authorized for {to}"), "From")
    } else {
        accepted(message)
    }
}

/// As MailJet answers: 400 for the call when any message failed, the others sent all the same.
fn reply(results: Vec<Value>) -> Reply {
    let status = if results.iter().all(|result| result["Status"] == "success") { 200 } else { 400 };
    Reply { status, retry_after: None, body: json!({ "Messages": results }).to_string() }
}

fn accept_all(_call: usize, request: &Value) -> Reply {
    reply(messages(request).iter().map(accepted).collect())
}

fn provider_ids(results: Vec<Result<Delivery, MailError>>) -> Vec<String> {
    results.into_iter().map(|result| result.unwrap().provider_id).collect()
}

#[tokio::test]
async fn a_hundred_and_twenty_emails_take_three_calls_of_fifty_fifty_and_twenty() {
    let (transport, stand_in) = stand_in(true, accept_all).await;
    assert_eq!(transport.batch_size(), 50);
    let results = transport.send_batch(&accepted_emails(120)).await;

    assert_eq!(stand_in.batch_sizes(), [50, 50, 20]);
    assert_eq!(provider_ids(results), (0..120).map(provider_id).collect::<Vec<_>>());
    let requests = stand_in.requests();
    let custom_ids: Vec<&str> =
        requests.iter().flat_map(messages).map(|message| message["CustomID"].as_str().unwrap()).collect();
    assert_eq!(custom_ids, (0..120).map(|i| format!("row-{i}")).collect::<Vec<_>>(), "each row once, in order");
    assert!(requests.iter().all(|request| request["SandboxMode"] == true), "sandbox mode as configured");
}

#[tokio::test]
async fn each_email_gets_its_own_result_by_custom_id_when_mailjet_answers_in_another_order() {
    let (transport, stand_in) =
        stand_in(false, |_, request| reply(messages(request).iter().rev().map(by_recipient).collect())).await;
    let results = transport.send_batch(&emails(&["ok", "invalid", "ok", "unauthorized", "ok", "invalid"])).await;

    assert_eq!(stand_in.batch_sizes(), [6], "one call");
    assert_eq!(stand_in.requests()[0]["SandboxMode"], false);
    assert_eq!(results[0].as_ref().unwrap().provider_id, provider_id(0));
    assert_eq!(results[2].as_ref().unwrap().provider_id, provider_id(2), "accepted although the call answered 400");
    assert_eq!(results[4].as_ref().unwrap().provider_id, provider_id(4));
    for i in [1, 5] {
        let error = results[i].as_ref().unwrap_err();
        assert!(matches!(error, MailError::Rejected(_)), "an invalid address is a hard bounce: {error:?}");
        assert!(
            error.to_string().contains(&format!("invalid-{i}@")) && error.to_string().contains("mj-0013"),
            "{error}"
        );
    }
    let error = results[3].as_ref().unwrap_err();
    assert!(matches!(error, MailError::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("unauthorized-3@") && error.to_string().contains("send-0008"), "{error}");
}

#[tokio::test]
async fn a_429_gives_every_email_of_the_batch_a_transient_failure_and_pauses_the_next_call() {
    let (transport, stand_in) = stand_in(false, |call, request| match call {
        0 => Reply { status: 429, retry_after: Some("1"), body: r#"{"ErrorMessage":"Too many requests"}"#.to_owned() },
        _ => accept_all(call, request),
    })
    .await;
    let throttled = transport.send_batch(&accepted_emails(3)).await;
    assert_eq!(throttled.len(), 3);
    assert!(throttled.iter().all(|result| result.as_ref().is_err_and(MailError::is_transient)), "{throttled:?}");

    let sent = transport.send_batch(&accepted_emails(3)).await;
    assert_eq!(provider_ids(sent), (0..3).map(provider_id).collect::<Vec<_>>());
    let calls: Vec<Instant> = stand_in.calls.lock().unwrap().iter().map(|(at, _)| *at).collect();
    assert_eq!(calls.len(), 2, "the pause is waited out, not answered with more calls");
    let after = calls[1].duration_since(calls[0]);
    assert!(after >= Duration::from_secs(1), "the next call came {after:?} after the 429, within its Retry-After");
}

#[tokio::test]
async fn a_server_error_gives_every_email_of_the_batch_a_transient_failure() {
    let (transport, stand_in) =
        stand_in(false, |_, _| Reply { status: 500, retry_after: None, body: "<html>down</html>".to_owned() }).await;
    let results = transport.send_batch(&accepted_emails(4)).await;
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|result| result.as_ref().is_err_and(MailError::is_transient)), "{results:?}");
    assert_eq!(stand_in.batch_sizes(), [4]);
}

#[tokio::test]
async fn a_refused_key_an_unreadable_answer_and_an_unreachable_api_fail_every_email_of_the_batch() {
    let (transport, _) = stand_in(false, |call, _| match call {
        0 => Reply {
            status: 401,
            retry_after: None,
            body: r#"{"ErrorMessage":"API key authentication/authorization failure"}"#.to_owned(),
        },
        _ => Reply { status: 200, retry_after: None, body: "<html>a proxy's page</html>".to_owned() },
    })
    .await;
    for (expected, results) in [
        ("BORCELLE_MAILJET_API_KEY", transport.send_batch(&accepted_emails(3)).await),
        ("unreadable body", transport.send_batch(&accepted_emails(3)).await),
    ] {
        assert_eq!(results.len(), 3);
        for result in results {
            let error = result.unwrap_err();
            assert!(matches!(error, MailError::Permanent(_)) && error.to_string().contains(expected), "{error:?}");
        }
    }

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable =
        MailjetTransport::new(settings(url::Url::parse(&format!("http://127.0.0.1:{closed_port}/")).unwrap(), false))
            .unwrap();
    let results = unreachable.send_batch(&accepted_emails(3)).await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|result| result.as_ref().is_err_and(MailError::is_transient)), "{results:?}");
}

#[tokio::test]
async fn a_result_missing_from_the_answer_fails_only_its_email() {
    let (transport, _) = stand_in(false, |_, request| {
        reply(messages(request).iter().filter(|message| message["CustomID"] != "row-2").map(accepted).collect())
    })
    .await;
    let results = transport.send_batch(&accepted_emails(4)).await;
    for i in [0, 1, 3] {
        assert_eq!(results[i].as_ref().unwrap().provider_id, provider_id(i));
    }
    let error = results[2].as_ref().unwrap_err();
    assert!(matches!(error, MailError::Permanent(_)), "{error:?}");
    assert!(error.to_string().contains("without a result for this message"), "{error}");
}

#[tokio::test]
async fn no_email_makes_no_call_and_one_email_makes_a_call_of_one() {
    let (transport, stand_in) = stand_in(false, accept_all).await;
    assert!(transport.send_batch(&[]).await.is_empty());
    assert!(stand_in.batch_sizes().is_empty());

    let delivery = transport.send(&accepted_emails(1)[0]).await.unwrap();
    assert_eq!(delivery.provider_id, provider_id(0));
    assert_eq!(stand_in.batch_sizes(), [1]);
}

/// Batches of 1 to 50 emails, each accepted, refused for its address or refused for its sender;
/// the order MailJet answers in; whether its results name their `CustomID` (those that do not
/// come in the order sent, as they are then paired by position).
fn batches() -> impl Strategy<Value = (Vec<&'static str>, Vec<usize>, bool)> {
    proptest::collection::vec(prop_oneof![Just("ok"), Just("invalid"), Just("unauthorized")], 1..=50).prop_flat_map(
        |kinds| {
            let order = Just((0..kinds.len()).collect::<Vec<_>>()).prop_shuffle();
            (Just(kinds), order, proptest::bool::ANY)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn result_i_is_for_email_i_whatever_the_batch_and_the_order_of_the_answer((kinds, order, named) in batches()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime.block_on(async {
            let (transport, _) = stand_in(false, move |_, request| {
                let messages = messages(request);
                if named {
                    reply(order.iter().map(|&i| by_recipient(&messages[i])).collect())
                } else {
                    let mut results: Vec<Value> = messages.iter().map(by_recipient).collect();
                    results.iter_mut().for_each(|result| result["CustomID"] = json!(""));
                    reply(results)
                }
            })
            .await;
            transport.send_batch(&emails(&kinds)).await
        });
        prop_assert_eq!(results.len(), kinds.len());
        for (i, (kind, result)) in kinds.iter().zip(results).enumerate() {
            match (*kind, result) {
                ("ok", Ok(delivery)) => prop_assert_eq!(delivery.provider_id, provider_id(i)),
                ("invalid", Err(MailError::Rejected(reason))) => {
                    prop_assert!(reason.contains(&format!("\"invalid-{i}@")), "{}", reason);
                }
                ("unauthorized", Err(MailError::Permanent(reason))) => {
                    prop_assert!(reason.contains(&format!(" unauthorized-{i}@")), "{}", reason);
                }
                (kind, result) => prop_assert!(false, "email {} ({}) got {:?}", i, kind, result),
            }
        }
    }
}
