//! The MailJet Send API v3.1 (`POST /v3.1/send`, HTTP basic auth with the API key and secret).
//!
//! Each email is sent with its ledger row id as `CustomID`, which MailJet's event webhook hands
//! back (see `borcelle_engine::feedback`); MailJet's `MessageID` is what a delivery records as
//! the provider id, so that an event without `CustomID` still finds its row. Up to
//! [`BATCH_SIZE`] emails go in one call, each with its own result (see [`answer`]). A 429 pauses
//! every send of the transport (see [`Throttle`]), not only the messages that met it.

mod answer;

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
use serde::Serialize;
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

/// The most messages MailJet takes in one call of the Send API.
const BATCH_SIZE: usize = 50;

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

/// Builds the request body for up to [`BATCH_SIZE`] emails, each as [`message_body`] makes it.
pub fn request_body(emails: &[OutgoingEmail], sandbox: bool) -> SendRequest<'_> {
    SendRequest { sandbox_mode: sandbox, messages: emails.iter().map(message_body).collect() }
}

/// One email in `Messages`: `CustomID` is the ledger row id (the Message-ID without its brackets
/// for mail that has no row, such as account mail).
fn message_body(email: &OutgoingEmail) -> SendMessage<'_> {
    let bare_id = email.message_id.trim_start_matches('<').trim_end_matches('>');
    let mut headers = BTreeMap::from([("X-Borcelle-Message-ID", Cow::Borrowed(email.message_id.as_str()))]);
    if let Some(unsubscribe) = &email.unsubscribe {
        headers.insert("List-Unsubscribe", Cow::Owned(unsubscribe.header()));
        headers.insert("List-Unsubscribe-Post", Cow::Borrowed(Unsubscribe::POST));
    }
    SendMessage {
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
    }
}

impl MailjetTransport {
    /// Sends up to [`BATCH_SIZE`] emails in one call: one result per email, in order. A failure
    /// of the whole call (a pause too long to wait for, MailJet unreachable, its answer cut off)
    /// is every email's.
    async fn send_one_call(&self, emails: &[OutgoingEmail]) -> Vec<Result<Delivery, MailError>> {
        let request = request_body(emails, self.settings.sandbox);
        let custom_ids: Vec<&str> = request.messages.iter().map(|message| message.custom_id).collect();
        let results = match self.call(&request).await {
            Ok((status, body)) => answer::read_answer(status, &body, &custom_ids),
            Err(error) => vec![Err(error); emails.len()],
        };
        if results.iter().any(Result::is_ok) {
            self.throttle.succeeded();
        }
        results
    }

    /// `POST /v3.1/send` once the throttle allows it: the answer's status and body.
    async fn call(&self, request: &SendRequest<'_>) -> Result<(StatusCode, String), MailError> {
        self.throttle.ready().await?;
        let response = self
            .client
            .post(self.endpoint.clone())
            .basic_auth(&self.settings.api_key, Some(self.settings.api_secret.expose_secret()))
            .json(request)
            .send()
            .await
            .map_err(|err| MailError::Transient(format!("reaching MailJet: {err}")))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let pause = self.throttle.throttled(retry_after(response.headers()));
            tracing::warn!(
                pause_secs = pause.as_secs_f64(),
                messages = request.messages.len(),
                "MailJet is throttling: every send pauses"
            );
        }
        let body =
            response.text().await.map_err(|err| MailError::Transient(format!("reading MailJet's answer: {err}")))?;
        Ok((status, body))
    }
}

impl MailTransport for MailjetTransport {
    fn name(&self) -> &'static str {
        "mailjet"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Result<Delivery, MailError>> {
        Box::pin(async move {
            let results = self.send_one_call(std::slice::from_ref(email)).await;
            // One result per email sent, so there is exactly one.
            results.into_iter().next().unwrap_or_else(|| Err(MailError::Permanent("MailJet gave no result".to_owned())))
        })
    }

    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    /// One call per [`BATCH_SIZE`] emails (more are sent in several calls, one after another, so
    /// that a 429 on one pauses the next); none for no email.
    fn send_batch<'a>(&'a self, emails: &'a [OutgoingEmail]) -> BoxFuture<'a, Vec<Result<Delivery, MailError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(emails.len());
            for batch in emails.chunks(BATCH_SIZE) {
                results.extend(self.send_one_call(batch).await);
            }
            results
        })
    }
}

#[cfg(test)]
mod tests;
