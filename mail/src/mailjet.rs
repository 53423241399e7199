//! The MailJet Send API v3.1 (`POST /v3.1/send`, HTTP basic auth with the API key and secret).
//!
//! Each email is sent with its ledger row id as `CustomID`, which MailJet's event webhook hands
//! back (see `borcelle_engine::feedback`); MailJet's `MessageID` is what a delivery records as
//! the provider id, so that an event without `CustomID` still finds its row. A 429 pauses every
//! send of the transport (see [`Throttle`]), not only the message that met it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Delivery, MailError, MailTransport, Mailbox, OutgoingEmail, Unsubscribe};
use crate::{MailjetSettings, SetupError};

pub struct MailjetTransport {
    settings: MailjetSettings,
    client: reqwest::Client,
    endpoint: url::Url,
    throttle: Throttle,
}

impl MailjetTransport {
    pub fn new(settings: MailjetSettings) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder().timeout(settings.timeout).build()?;
        let endpoint = settings.api_url.join("v3.1/send")?;
        Ok(Self { settings, client, endpoint, throttle: Throttle::default() })
    }
}

/// The first pause after a 429 that says no `Retry-After`; each further 429 doubles it.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause doubling reaches.
const LONGEST_DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// The longest pause a `Retry-After` may impose (a wild value must not stop mail for a day).
const LONGEST_PAUSE: Duration = Duration::from_secs(15 * 60);
/// The longest a send waits for a pause to end. A longer pause fails the send at once as
/// transient (the engine retries it later) rather than hold its claim on the row that long.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// MailJet's throttling, shared by every send of one transport: after a 429 no send calls the API
/// until the pause has passed. The pause is `Retry-After` (seconds) when MailJet says it, else
/// [`FIRST_PAUSE`] doubling with each 429 up to [`LONGEST_DEFAULT_PAUSE`], back to the first
/// after a success.
#[derive(Debug, Default)]
struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Clone, Copy)]
struct ThrottleState {
    paused_until: Option<Instant>,
    next_pause: Duration,
}

impl Default for ThrottleState {
    fn default() -> Self {
        Self { paused_until: None, next_pause: FIRST_PAUSE }
    }
}

impl ThrottleState {
    /// A 429 answered at `now`: pauses (never shortening a pause already longer) and returns the
    /// pause.
    fn throttled(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let pause = retry_after.unwrap_or(self.next_pause).min(LONGEST_PAUSE);
        self.next_pause = (self.next_pause * 2).min(LONGEST_DEFAULT_PAUSE);
        let until = now + pause;
        self.paused_until = Some(self.paused_until.map_or(until, |current| current.max(until)));
        pause
    }

    /// A message was accepted: the next 429 without `Retry-After` starts from the first pause
    /// again. (A pause already set stays: the success may have been asked for before it.)
    fn succeeded(&mut self) {
        self.next_pause = FIRST_PAUSE;
    }

    /// What is left of the pause at `now`, if anything.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.paused_until.map(|until| until.saturating_duration_since(now)).filter(|left| !left.is_zero())
    }
}

impl Throttle {
    fn state(&self) -> MutexGuard<'_, ThrottleState> {
        // The state is two plain values, valid whatever a panicking holder left.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no pause is in force; a pause longer than [`LONGEST_WAIT`] fails at once.
    async fn ready(&self) -> Result<(), MailError> {
        loop {
            // Read again after each wait: another send may have met a 429 meanwhile. (The lock
            // is released at the end of this statement, never held across the wait.)
            let remaining = self.state().remaining(Instant::now());
            let Some(left) = remaining else { return Ok(()) };
            if left > LONGEST_WAIT {
                return Err(MailError::Transient(format!(
                    "MailJet asked to slow down: every send is paused for {} more seconds",
                    left.as_secs().max(1)
                )));
            }
            tokio::time::sleep(left).await;
        }
    }

    fn throttled(&self, retry_after: Option<Duration>) -> Duration {
        self.state().throttled(Instant::now(), retry_after)
    }

    fn succeeded(&self) {
        self.state().succeeded();
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by MailJet and reads as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The request body of `POST /v3.1/send`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendRequest<'a> {
    pub sandbox_mode: bool,
    pub messages: Vec<SendMessage<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendMessage<'a> {
    pub from: Address<'a>,
    pub to: Vec<Address<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Address<'a>>,
    pub subject: Cow<'a, str>,
    pub text_part: &'a str,
    #[serde(rename = "HTMLPart")]
    pub html_part: &'a str,
    /// The ledger row id, which MailJet's events carry back.
    #[serde(rename = "CustomID")]
    pub custom_id: &'a str,
    pub headers: BTreeMap<&'static str, Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentBody<'a>>,
}

/// A file in `Attachments`, its bytes in base64.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachmentBody<'a> {
    pub content_type: &'a str,
    pub filename: &'a str,
    pub base64_content: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Address<'a> {
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Cow<'a, str>>,
}

impl<'a> From<&'a Mailbox> for Address<'a> {
    fn from(mailbox: &'a Mailbox) -> Self {
        Address { email: &mailbox.email, name: mailbox.name.as_deref().map(crate::header_line) }
    }
}

/// Builds the request body for one email: `CustomID` is the ledger row id (the Message-ID without
/// its brackets for mail that has no row, such as account mail).
pub fn request_body(email: &OutgoingEmail, sandbox: bool) -> SendRequest<'_> {
    let bare_id = email.message_id.trim_start_matches('<').trim_end_matches('>');
    let mut headers = BTreeMap::from([("X-Borcelle-Message-ID", Cow::Borrowed(email.message_id.as_str()))]);
    if let Some(unsubscribe) = &email.unsubscribe {
        headers.insert("List-Unsubscribe", Cow::Owned(unsubscribe.header()));
        headers.insert("List-Unsubscribe-Post", Cow::Borrowed(Unsubscribe::POST));
    }
    SendRequest {
        sandbox_mode: sandbox,
        messages: vec![SendMessage {
            from: (&email.from).into(),
            to: vec![(&email.to).into()],
            reply_to: email.reply_to.as_ref().map(Address::from),
            subject: crate::header_line(&email.subject),
            text_part: &email.text,
            html_part: &email.html,
            custom_id: email.ledger_id.as_deref().unwrap_or(bare_id),
            headers,
            attachments: email
                .attachments
                .iter()
                .map(|a| AttachmentBody {
                    content_type: &a.content_type,
                    filename: &a.filename,
                    base64_content: STANDARD.encode(&a.bytes),
                })
                .collect(),
        }],
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendResponse {
    #[serde(default)]
    messages: Vec<MessageResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageResult {
    status: String,
    #[serde(default)]
    to: Vec<RecipientResult>,
    #[serde(default)]
    errors: Vec<MessageErrorDetail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecipientResult {
    /// A number (beyond 2^53: kept exact as read); what the event webhook's `MessageID` says.
    #[serde(rename = "MessageID")]
    message_id: Option<serde_json::Value>,
    #[serde(rename = "MessageUUID")]
    message_uuid: Option<String>,
}

impl RecipientResult {
    /// The id to record: `MessageID` (the events carry it), else `MessageUUID`.
    fn provider_id(self) -> Option<String> {
        let id = match self.message_id {
            Some(serde_json::Value::Number(number)) => Some(number.to_string()),
            Some(serde_json::Value::String(text)) if !text.is_empty() => Some(text),
            _ => None,
        };
        id.or(self.message_uuid.filter(|uuid| !uuid.is_empty()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageErrorDetail {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    error_related_to: Vec<String>,
}

/// MailJet's code for "… is an invalid email address" (the same code also names a bad sender,
/// which `ErrorRelatedTo` tells apart).
const INVALID_ADDRESS: &str = "mj-0013";

impl MessageErrorDetail {
    /// The recipient's address itself is refused: it will never be deliverable.
    fn refuses_recipient(&self) -> bool {
        self.error_code.eq_ignore_ascii_case(INVALID_ADDRESS)
            && self.error_related_to.iter().any(|field| is_recipient_field(field))
    }

    fn describe(&self) -> String {
        if self.error_related_to.is_empty() {
            format!("{}: {}", self.error_code, self.error_message)
        } else {
            format!("{}: {} ({})", self.error_code, self.error_message, self.error_related_to.join(", "))
        }
    }
}

/// `To[0].Email`, `Cc[1].Email`, `Bcc`…: a field of a recipient (not `From`, `ReplyTo`, …).
fn is_recipient_field(field: &str) -> bool {
    let name = field.split(['[', '.']).next().unwrap_or_default();
    ["To", "Cc", "Bcc"].iter().any(|recipient| name.eq_ignore_ascii_case(recipient))
}

/// Turns MailJet's answer into a delivery or a classified error: throttling and MailJet's own
/// failures are transient; a message refused only because the recipient's address is invalid is
/// [`MailError::Rejected`] (the engine suppresses the address for its sender); every other
/// per-message error (a sender not validated, a malformed field, a refused key) is permanent.
fn interpret(status: StatusCode, body: &str) -> Result<Delivery, MailError> {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(MailError::Transient(format!("MailJet answered {status}: {}", snippet(body))));
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(MailError::Permanent(format!(
            "MailJet refused the API key or secret ({status}); check BORCELLE_MAILJET_API_KEY and BORCELLE_MAILJET_API_SECRET"
        )));
    }
    let parsed: SendResponse = serde_json::from_str(body).map_err(|err| {
        MailError::Permanent(format!("MailJet answered {status} with an unreadable body ({err}): {}", snippet(body)))
    })?;
    let Some(result) = parsed.messages.into_iter().next() else {
        return Err(MailError::Permanent(format!("MailJet answered {status} without a message result")));
    };
    if result.status == "success" && status.is_success() {
        let provider_id = result
            .to
            .into_iter()
            .next()
            .and_then(RecipientResult::provider_id)
            .unwrap_or_else(|| "accepted".to_owned());
        return Ok(Delivery { provider_id });
    }
    let reasons: Vec<String> = result.errors.iter().map(MessageErrorDetail::describe).collect();
    let reason = if reasons.is_empty() { format!("status {}", result.status) } else { reasons.join("; ") };
    if !result.errors.is_empty() && result.errors.iter().all(MessageErrorDetail::refuses_recipient) {
        return Err(MailError::Rejected(format!("MailJet refused the recipient's address: {reason}")));
    }
    Err(MailError::Permanent(format!("MailJet rejected the message: {reason}")))
}

fn snippet(body: &str) -> &str {
    let end = body.char_indices().nth(300).map_or(body.len(), |(i, _)| i);
    &body[..end]
}

impl MailTransport for MailjetTransport {
    fn name(&self) -> &'static str {
        "mailjet"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Result<Delivery, MailError>> {
        Box::pin(async move {
            self.throttle.ready().await?;
            let response = self
                .client
                .post(self.endpoint.clone())
                .basic_auth(&self.settings.api_key, Some(self.settings.api_secret.expose_secret()))
                .json(&request_body(email, self.settings.sandbox))
                .send()
                .await
                .map_err(|err| MailError::Transient(format!("reaching MailJet: {err}")))?;
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let pause = self.throttle.throttled(retry_after(response.headers()));
                tracing::warn!(pause_secs = pause.as_secs_f64(), "MailJet is throttling: every send pauses");
            }
            let body = response
                .text()
                .await
                .map_err(|err| MailError::Transient(format!("reading MailJet's answer: {err}")))?;
            let result = interpret(status, &body);
            if result.is_ok() {
                self.throttle.succeeded();
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_yields_the_message_id() {
        let body = r#"{"Messages":[{"Status":"success","To":[{"Email":"a@b.io","MessageUUID":"u-1","MessageID":576460,"MessageHref":"x"}]}]}"#;
        assert_eq!(interpret(StatusCode::OK, body).unwrap().provider_id, "576460");
    }

    #[test]
    fn a_message_id_beyond_the_doubles_is_kept_exact() {
        let body = r#"{"Messages":[{"Status":"success","To":[{"Email":"a@b.io","MessageUUID":"u-1","MessageID":288230379631515999}]}]}"#;
        assert_eq!(interpret(StatusCode::OK, body).unwrap().provider_id, "288230379631515999");
        let uuid_only = r#"{"Messages":[{"Status":"success","To":[{"Email":"a@b.io","MessageUUID":"u-1"}]}]}"#;
        assert_eq!(interpret(StatusCode::OK, uuid_only).unwrap().provider_id, "u-1");
    }

    #[test]
    fn an_invalid_recipient_address_is_a_rejection_and_explained() {
        let body = r#"{"Messages":[{"Status":"error","Errors":[{"ErrorIdentifier":"x","ErrorCode":"mj-0013","StatusCode":400,"ErrorMessage":"\"bad\" is an invalid email address.","ErrorRelatedTo":["To[0].Email"]}]}]}"#;
        let err = interpret(StatusCode::BAD_REQUEST, body).unwrap_err();
        assert!(matches!(err, MailError::Rejected(_)), "{err:?}");
        assert!(err.to_string().contains("mj-0013"), "{err}");
        assert!(err.to_string().contains("To[0].Email"), "{err}");
    }

    #[test]
    fn other_per_message_errors_are_permanent() {
        for body in [
            // The same code about the sender: our configuration, not the recipient.
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0013","ErrorMessage":"\"x\" is an invalid email address.","ErrorRelatedTo":["From.Email"]}]}]}"#,
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"send-0008","ErrorMessage":"not an authorized sender","ErrorRelatedTo":["From"]}]}]}"#,
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0004","ErrorMessage":"Type mismatch","ErrorRelatedTo":["To"]}]}]}"#,
            // The recipient and something else: the something else is ours to fix.
            r#"{"Messages":[{"Status":"error","Errors":[{"ErrorCode":"mj-0013","ErrorRelatedTo":["To[0].Email"]},{"ErrorCode":"mj-0013","ErrorRelatedTo":["ReplyTo.Email"]}]}]}"#,
            r#"{"Messages":[{"Status":"error"}]}"#,
        ] {
            let err = interpret(StatusCode::BAD_REQUEST, body).unwrap_err();
            assert!(matches!(err, MailError::Permanent(_)), "{body}: {err:?}");
        }
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(interpret(StatusCode::TOO_MANY_REQUESTS, "").unwrap_err().is_transient());
        assert!(interpret(StatusCode::BAD_GATEWAY, "<html>").unwrap_err().is_transient());
        assert!(!interpret(StatusCode::UNAUTHORIZED, "").unwrap_err().is_transient());
    }

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
        let mut email = crate::OutgoingEmail {
            from: Mailbox { name: None, email: "noreply@borcelle.test".to_owned() },
            to: Mailbox { name: None, email: "ada@example.com".to_owned() },
            reply_to: None,
            subject: "Hi".to_owned(),
            text: "x".to_owned(),
            html: "x".to_owned(),
            message_id: "<m-1@borcelle.test>".to_owned(),
            date: std::time::SystemTime::now(),
            attachments: Vec::new(),
            unsubscribe: None,
            ledger_id: None,
            envelope_from: None,
        };
        let body = serde_json::to_value(request_body(&email, false)).unwrap();
        assert_eq!(body["Messages"][0]["CustomID"], "m-1@borcelle.test", "no row: the Message-ID");
        assert!(body["Messages"][0]["Headers"].get("List-Unsubscribe").is_none());

        email.ledger_id = Some("0193a1b2-0000-7000-8000-000000000001".to_owned());
        email.unsubscribe = Some(Unsubscribe { https: "https://crm.test/unsubscribe/t".to_owned(), mailto: None });
        let body = serde_json::to_value(request_body(&email, false)).unwrap();
        assert_eq!(body["Messages"][0]["CustomID"], "0193a1b2-0000-7000-8000-000000000001");
        assert_eq!(body["Messages"][0]["Headers"]["List-Unsubscribe"], "<https://crm.test/unsubscribe/t>");
        assert_eq!(body["Messages"][0]["Headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
    }
}
