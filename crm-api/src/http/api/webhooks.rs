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

use crate::config::WebhookCredentials;
use crate::error::{AppError, AppResult};
use crate::http::openapi::ErrorBody;
use crate::state::AppState;

/// The largest batch MailJet may post (it groups many events in one call).
pub const BODY_MAX: usize = 5 * 1024 * 1024;

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
    if !presents(request.headers(), expected) {
        return Ok(unauthorized());
    }
    let body = Bytes::from_request(request, &state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge { limit: BODY_MAX }
        } else {
            AppError::MalformedBody(format!("the request body could not be read: {rejection}"))
        }
    })?;
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
