//! `/api/v1/webhooks/*`: reports from mail providers. No session and no CSRF token (the identity
//! layer lets these paths through): each provider proves itself with its own credentials.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use serde_json::json;

use borcelle_engine::accounts::secrets::hash_token;
use borcelle_engine::feedback::{self, FeedbackSummary};
use borcelle_engine::inbound::{Arrival, FileError, Filed, mailjet_parse};

use crate::config::WebhookCredentials;
use crate::error::{AppError, AppResult};
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

/// The largest batch MailJet may post (it groups many events in one call).
pub const BODY_MAX: usize = 5 * 1024 * 1024;
/// The largest Parse API post: MailJet's 15 MB message limit, in base64 and JSON.
pub const PARSE_BODY_MAX: usize = 24 * 1024 * 1024;

/// Applies a batch of MailJet events (bounces, blocks, spam complaints, unsubscribes)
///
/// MailJet's event webhook: one event (a JSON object) or a batch (an array), authenticated with
/// HTTP basic auth (set the URL in MailJet as `https://user:password@host/api/v1/webhooks/mailjet`
/// with the credentials of `BORCELLE_MAILJET_WEBHOOK_USERNAME` and `…_PASSWORD`). A bounce or a
/// block marks the message `bounced`; a hard bounce, a block blamed on the recipient, a spam
/// complaint or an unsubscribe puts the address on the suppression list of the user who sent the
/// message. Events about messages this server does not know, and other kinds of events (`open`,
/// `click`…), are counted and ignored. MailJet posts a batch again until it gets a 200: a replay
/// changes nothing.
#[utoipa::path(
    post,
    path = "/webhooks/mailjet",
    operation_id = "mailjet_events",
    tag = "webhooks",
    security(()),
    request_body(
        content = serde_json::Value,
        content_type = "application/json",
        description = "A MailJet event object, or an array of them, as MailJet's event API posts them",
    ),
    responses(
        (status = 200, description = "Applied (including events naming unknown messages, which change nothing)", body = FeedbackSummary),
        (status = 400, description = "Not a MailJet event or batch: the message names the offending value", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`WWW-Authenticate: Basic`)", body = ErrorBody),
        (status = 404, description = "The webhook is off: no credentials are configured", body = ErrorBody),
    )
)]
pub async fn mailjet(State(state): State<AppState>, request: Request) -> AppResult<Response> {
    let Some(expected) = &state.settings.consent.mailjet_webhook else {
        return Err(AppError::not_found("webhook"));
    };
    let Some(body) = authenticated_body(&state, request, expected, BODY_MAX).await? else {
        return Ok(unauthorized());
    };
    let events = feedback::parse_mailjet(&body)
        .map_err(|err| AppError::MalformedBody(format!("not a MailJet event or batch of events: {err}")))?;
    let summary = feedback::apply_mailjet(&state.db, &events).await?;
    tracing::info!(
        events = summary.events,
        matched = summary.matched,
        unknown = summary.unknown,
        ignored = summary.ignored,
        bounced = summary.bounced,
        suppressed = summary.suppressed,
        "MailJet events applied"
    );
    Ok(Json(summary).into_response())
}

/// What a Parse API post became.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ParseOutcome {
    /// `reply`, `auto_reply`, `bounce`, `unsubscribe` or `report` when filed; `duplicate` when
    /// filed before; `unknown` when it answers no message of this server (nothing is kept).
    pub filed: String,
    /// The inbound message's id, when filed now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<uuid::Uuid>,
}

/// Files an inbound message MailJet's Parse API received (a reply, an automatic answer, a bounce)
///
/// For installations that receive through MailJet rather than with their own MX: point the Parse
/// route of the inbound domain at `https://user:password@host/api/v1/webhooks/mailjet/parse`
/// (the event webhook's credentials). The message takes the same path as one Borcelle's SMTP
/// receiver accepts: filed under the message its reply address (or its `In-Reply-To`) names, kept
/// raw in storage, once however often it is posted. A post about no message of this server is
/// answered 200 (`unknown`) so that MailJet stops posting it; a storage failure answers 503 and
/// MailJet posts it again.
#[utoipa::path(
    post,
    path = "/webhooks/mailjet/parse",
    operation_id = "mailjet_parse",
    tag = "webhooks",
    security(()),
    request_body(content = serde_json::Value, content_type = "application/json", description = "A MailJet Parse API payload"),
    responses(
        (status = 200, description = "Filed, filed before, or about no message of this server", body = ParseOutcome),
        (status = 400, description = "Not a Parse API payload: the message says what is wrong", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials (`WWW-Authenticate: Basic`)", body = ErrorBody),
        (status = 404, description = "The webhook is off: no credentials, or inbound mail is not configured", body = ErrorBody),
        (status = 503, description = "The message could not be kept now: post it again", body = ErrorBody),
    )
)]
pub async fn mailjet_parse(State(state): State<AppState>, request: Request) -> AppResult<Response> {
    let (Some(expected), Some(inbox)) = (&state.settings.consent.mailjet_webhook, &state.inbox) else {
        return Err(AppError::not_found("webhook"));
    };
    let Some(body) = authenticated_body(&state, request, expected, PARSE_BODY_MAX).await? else {
        return Ok(unauthorized());
    };
    let post = mailjet_parse::read_post(&body)
        .map_err(|err| AppError::MalformedBody(format!("not a MailJet Parse API payload: {err}")))?;
    let recipients = inbox.addresses.parse(&post.recipient).into_iter().collect();
    let arrival = Arrival { envelope_from: post.sender, recipients, raw: post.raw.into(), via: "mailjet" };
    // Filed even if MailJet hangs up: the row and its object exist afterwards, or neither.
    let filing = {
        let inbox = inbox.clone();
        async move { inbox.file(arrival).await }
    };
    let filed = state.tasks.spawn(filing).await.map_err(|err| AppError::internal(format!("filing stopped: {err}")))?;
    let outcome = match filed {
        Ok(Filed::Stored { id, kind }) => ParseOutcome { filed: kind.to_owned(), id: Some(id) },
        Ok(Filed::Duplicate) => ParseOutcome { filed: "duplicate".to_owned(), id: None },
        Err(FileError::Unknown) => ParseOutcome { filed: "unknown".to_owned(), id: None },
        Err(err) => {
            tracing::error!(error = %err, "filing a MailJet Parse post failed; MailJet will post it again");
            return Err(AppError::Domain(borcelle_engine::Error::Unavailable("message storage".into())));
        }
    };
    Ok(Json(outcome).into_response())
}

/// The body of a request that presents the webhook's credentials (`None` when it does not), read
/// up to `limit` bytes.
async fn authenticated_body(
    state: &AppState,
    request: Request,
    expected: &WebhookCredentials,
    limit: usize,
) -> AppResult<Option<Bytes>> {
    if !presents(request.headers(), expected) {
        return Ok(None);
    }
    let body = Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge { limit }
        } else {
            AppError::MalformedBody(format!("the request body could not be read: {rejection}"))
        }
    })?;
    Ok(Some(body))
}

/// Whether the request carries the expected basic-auth credentials, compared in time that depends
/// on neither secret (their SHA-256 digests are compared whole).
fn presents(headers: &HeaderMap, expected: &WebhookCredentials) -> bool {
    let Some((username, password)) = basic_credentials(headers) else {
        return false;
    };
    let same = |presented: &str, wanted: &str| {
        hash_token(presented).iter().zip(hash_token(wanted)).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    };
    // `&`, not `&&`: both are compared whatever the first says.
    same(&username, &expected.username) & same(&password, expected.password.expose_secret())
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

/// 401 with the challenge that makes a client (and MailJet's URL credentials) send basic auth.
fn unauthorized() -> Response {
    let body = json!({ "error": {
        "code": "authentication_required",
        "message": "send the MailJet webhook's credentials (HTTP basic auth)",
    }});
    let challenge = HeaderValue::from_static("Basic realm=\"mailjet\"");
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn expected() -> WebhookCredentials {
        WebhookCredentials { username: "mailjet".to_owned(), password: SecretString::from("s3cret:part".to_owned()) }
    }

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn only_the_configured_user_and_password_pass() {
        let basic = |pair: &str| with_authorization(&format!("Basic {}", STANDARD.encode(pair)));
        assert!(presents(&basic("mailjet:s3cret:part"), &expected()), "a password may hold a colon");
        assert!(presents(
            &with_authorization(&format!("basic  {}", STANDARD.encode("mailjet:s3cret:part"))),
            &expected()
        ));
        assert!(!presents(&basic("mailjet:s3cret"), &expected()));
        assert!(!presents(&basic("mailjet:s3cret:partx"), &expected()));
        assert!(!presents(&basic("other:s3cret:part"), &expected()));
        assert!(!presents(&basic("mailjet"), &expected()));
        assert!(!presents(&with_authorization("Bearer mailjet:s3cret:part"), &expected()));
        assert!(!presents(&with_authorization("Basic %%%"), &expected()));
        assert!(!presents(&HeaderMap::new(), &expected()));
    }
}
