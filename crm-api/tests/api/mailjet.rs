//! The MailJet Send API v3.1 transport, against a local HTTP server standing in for MailJet.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use borcelle::config::{MailjetSettings, TransportSettings};
use borcelle_mail::{MailTransport, Mailbox, MailjetTransport, OutgoingEmail};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use crate::helpers::*;

/// What the stand-in received, and the answers it will give in order (then 200 success).
#[derive(Default)]
pub struct StandIn {
    pub received: Mutex<Vec<(HeaderMap, Value)>>,
    pub answers: Mutex<VecDeque<(u16, String)>>,
}

const SUCCESS: &str = r#"{"Messages":[{"Status":"success","CustomID":"","To":[{"Email":"x@example.com","MessageUUID":"1ab23cd4","MessageID":288230379631515999,"MessageHref":"https://api.mailjet.com/v3/REST/message/288230379631515999"}],"Cc":[],"Bcc":[]}]}"#;

async fn send(State(stand_in): State<Arc<StandIn>>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let value = serde_json::from_str(&body).unwrap_or(Value::Null);
    stand_in.received.lock().unwrap().push((headers, value));
    let (status, body) = stand_in.answers.lock().unwrap().pop_front().unwrap_or((200, SUCCESS.to_owned()));
    (StatusCode::from_u16(status).unwrap(), body)
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
async fn throttling_and_server_errors_are_transient_and_rejections_permanent() {
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
    assert!(!rejected.is_transient());
    assert!(
        rejected.to_string().contains("mj-0013") && rejected.to_string().contains("invalid email address"),
        "{rejected}"
    );
    let unauthorized = transport.send(&email()).await.unwrap_err();
    assert!(!unauthorized.is_transient());
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
