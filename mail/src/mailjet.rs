//! The MailJet Send API v3.1 (`POST /v3.1/send`, HTTP basic auth with the API key and secret).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{Delivery, MailError, MailTransport, Mailbox, OutgoingEmail};
use crate::{MailjetSettings, SetupError};

pub struct MailjetTransport {
    settings: MailjetSettings,
    client: reqwest::Client,
    endpoint: url::Url,
}

impl MailjetTransport {
    pub fn new(settings: MailjetSettings) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder().timeout(settings.timeout).build()?;
        let endpoint = settings.api_url.join("v3.1/send")?;
        Ok(Self { settings, client, endpoint })
    }
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
    #[serde(rename = "CustomID")]
    pub custom_id: &'a str,
    pub headers: BTreeMap<&'static str, &'a str>,
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

/// Builds the request body for one email.
pub fn request_body(email: &OutgoingEmail, sandbox: bool) -> SendRequest<'_> {
    let bare_id = email.message_id.trim_start_matches('<').trim_end_matches('>');
    SendRequest {
        sandbox_mode: sandbox,
        messages: vec![SendMessage {
            from: (&email.from).into(),
            to: vec![(&email.to).into()],
            reply_to: email.reply_to.as_ref().map(Address::from),
            subject: crate::header_line(&email.subject),
            text_part: &email.text,
            html_part: &email.html,
            custom_id: bare_id,
            headers: BTreeMap::from([("X-Borcelle-Message-ID", email.message_id.as_str())]),
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
    #[serde(rename = "MessageID")]
    message_id: Option<serde_json::Value>,
    #[serde(rename = "MessageUUID")]
    message_uuid: Option<String>,
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

/// Turns MailJet's answer into a delivery or a classified error.
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
        let recipient = result.to.into_iter().next();
        let provider_id = recipient
            .and_then(|r| r.message_id.map(|id| id.to_string().trim_matches('"').to_owned()).or(r.message_uuid))
            .unwrap_or_else(|| "accepted".to_owned());
        return Ok(Delivery { provider_id });
    }
    let reasons: Vec<String> = result
        .errors
        .iter()
        .map(|e| {
            let related = if e.error_related_to.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.error_related_to.join(", "))
            };
            format!("{}: {}{related}", e.error_code, e.error_message)
        })
        .collect();
    let reason = if reasons.is_empty() { format!("status {}", result.status) } else { reasons.join("; ") };
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
            let response = self
                .client
                .post(self.endpoint.clone())
                .basic_auth(&self.settings.api_key, Some(self.settings.api_secret.expose_secret()))
                .json(&request_body(email, self.settings.sandbox))
                .send()
                .await
                .map_err(|err| MailError::Transient(format!("reaching MailJet: {err}")))?;
            let status = response.status();
            let body = response
                .text()
                .await
                .map_err(|err| MailError::Transient(format!("reading MailJet's answer: {err}")))?;
            interpret(status, &body)
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
    fn per_message_errors_are_permanent_and_explained() {
        let body = r#"{"Messages":[{"Status":"error","Errors":[{"ErrorIdentifier":"x","ErrorCode":"mj-0013","StatusCode":400,"ErrorMessage":"\"bad\" is an invalid email address.","ErrorRelatedTo":["To[0].Email"]}]}]}"#;
        let err = interpret(StatusCode::BAD_REQUEST, body).unwrap_err();
        assert!(!err.is_transient());
        assert!(err.to_string().contains("mj-0013"), "{err}");
        assert!(err.to_string().contains("To[0].Email"), "{err}");
    }

    #[test]
    fn throttling_and_server_errors_are_transient() {
        assert!(interpret(StatusCode::TOO_MANY_REQUESTS, "").unwrap_err().is_transient());
        assert!(interpret(StatusCode::BAD_GATEWAY, "<html>").unwrap_err().is_transient());
        assert!(!interpret(StatusCode::UNAUTHORIZED, "").unwrap_err().is_transient());
    }
}
