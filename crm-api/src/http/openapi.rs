//! The JSON API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types, and served at `GET /api/v1/openapi.json`.
//!
//! Routes and their documentation are registered together (`utoipa_axum::routes!` in
//! [`super::api::router`]), so a route cannot be served without being described. The answers that
//! the layers around every handler give (an invalid API token, the CSRF guard, a body that is not
//! JSON or too large, a database that is down) are added here to every operation they apply to,
//! from what each operation is: authenticated or not, state-changing or not, with a body, path or
//! query parameters.

use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Serialize;
use utoipa::openapi::path::{HttpMethod, Operation, ParameterIn};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, ToSchema};
use uuid::Uuid;

/// The security scheme of personal API tokens.
pub const BEARER: &str = "api_token";
/// The security scheme of the browser session cookie.
pub const SESSION: &str = "session_cookie";

/// An error: what went wrong, as a stable code and a sentence, and the field to fix when there is one.
#[derive(Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The details of an error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `invalid_field`, `malformed_body`, `unsupported_media_type`,
    /// `payload_too_large`, `authentication_required`, `invalid_token`, `invalid_credentials`,
    /// `email_not_verified`, `forbidden`, `csrf_rejected`, `not_found`, `duplicate_email`,
    /// `name_taken`, `not_failed`, `token_invalid`, `token_used`, `token_expired`,
    /// `too_many_requests`, `unavailable`, `internal`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// The request field to fix (a JSON path such as `spec.schedule`, a query parameter or a form field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `too_many_requests`: seconds until a new attempt may succeed (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// With `duplicate_email`: the contact that already has this address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<Uuid>,
    /// With `invalid_field` when several fields are wrong: each of them, in order (`field` and
    /// `message` above are the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorDetail>>,
}

/// One wrong field.
#[derive(Serialize, ToSchema)]
pub struct FieldErrorDetail {
    pub field: String,
    pub message: String,
}

/// A confirmation sentence.
#[derive(Serialize, ToSchema)]
pub struct MessageAnswer {
    pub message: &'static str,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Borcelle API",
        description = "The JSON API of Borcelle, a CRM with email at its core. Authenticate with \
            `Authorization: Bearer <api token>` (tokens from `POST /api/v1/tokens`), or with the session \
            cookie set by `POST /api/v1/auth/login`; state-changing calls made with the cookie carry the \
            `X-CSRF-Token` header whose value login and `GET /api/v1/auth/session` return. Errors are \
            `{\"error\": {\"code\", \"message\", \"field\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ErrorBody, ErrorDetail, FieldErrorDetail)),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "tokens", description = "Personal API tokens"),
        (name = "contacts", description = "A user's private contacts, CSV import and export"),
        (name = "messages", description = "Sending to contacts and the delivery history"),
        (name = "notes", description = "Private notes, and sending one to contacts"),
        (name = "tasks", description = "Sends and their counters"),
        (name = "notifications", description = "The bell"),
        (name = "attachments", description = "Files to send with messages"),
        (name = "suppressions", description = "Addresses never mailed again: unsubscribed, bounced, complained, or added by hand"),
        (name = "webhooks", description = "Reports from mail providers (their own credentials, no session)"),
        (name = "reminders", description = "Scheduled reminder emails (ScheduledReminder resources)"),
        (name = "admin", description = "Broadcasts and the dev outbox (administrators)"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal API token (`POST /api/v1/tokens`): `Authorization: Bearer <secret>`. \
                         Calls made with a token need no CSRF token.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            SESSION,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "borcelle_session",
                "The session cookie set by `POST /api/v1/auth/login` (`__Host-borcelle_session` over https). \
                 State-changing calls must also send the `X-CSRF-Token` header.",
            ))),
        );
    }
}

/// The document's starting point: title, tags, security schemes, the error schema.
pub fn base() -> OpenApi {
    <ApiDoc as utoipa::OpenApi>::openapi()
}

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
        .into()
}

/// Adds to `operation` the answers of the layers around its handler, unless it documents that
/// status itself.
fn add_common_responses(method: &HttpMethod, operation: &mut Operation) {
    let public = operation.security.as_ref().is_some_and(|s| s.iter().all(|r| r == &SecurityRequirement::default()));
    if operation.security.is_none() {
        operation.security = Some(vec![
            SecurityRequirement::new(BEARER, Vec::<String>::new()),
            SecurityRequirement::new(SESSION, Vec::<String>::new()),
        ]);
    }
    let state_changing = !matches!(method, HttpMethod::Get | HttpMethod::Head | HttpMethod::Options);
    let params = operation.parameters.as_deref().unwrap_or_default();
    let located = |place: ParameterIn| params.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place));
    let (has_path, has_query) = (located(ParameterIn::Path), located(ParameterIn::Query));
    let json_body =
        matches!(&operation.request_body, Some(RefOr::T(body)) if body.content.contains_key("application/json"));
    let any_body = operation.request_body.is_some();

    let mut common: Vec<(&str, &str)> = Vec::new();
    if json_body {
        common.push(("400", "The body is not JSON."));
        common.push(("422", "A field is missing, unknown, mistyped or invalid: `field` names it."));
    }
    if public {
        common.push(("401", "The `Authorization` header carries an API token that is not valid."));
    } else {
        common.push(("401", "Not authenticated: log in or send a valid API token."));
    }
    if state_changing {
        common.push((
            "403",
            "Refused by the CSRF guard: a cookie-authenticated call without the `X-CSRF-Token` header, \
             or a browser request from another site.",
        ));
    }
    if has_path {
        common
            .push(("404", "Not found: the caller has nothing with this id or name (another user's answers the same)."));
    }
    if any_body {
        common.push(("413", "The body is larger than the limit."));
        common.push(("415", "The body is not of the documented content type."));
    }
    if has_query {
        common.push(("422", "A query parameter is unknown or invalid: `field` names it."));
    }
    common.push(("503", "The database is unavailable; try again shortly."));

    for (status, description) in common {
        if !operation.responses.responses.contains_key(status) {
            operation.responses.responses.insert(status.to_owned(), error_response(description));
        }
    }
}

/// Completes a document whose operations were registered with their routes.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    for item in doc.paths.paths.values_mut() {
        for (method, operation) in operations_mut(item) {
            add_common_responses(&method, operation);
        }
    }
    doc
}

/// The operations of a path item with their methods.
pub fn operations_mut(item: &mut utoipa::openapi::PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Options, item.options.as_mut()),
        (HttpMethod::Head, item.head.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Trace, item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
    .collect()
}

/// The document, serialized once.
#[derive(Clone)]
pub struct Document(pub Bytes);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_document",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = serde_json::Value))
)]
pub async fn serve(Extension(Document(json)): Extension<Document>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json)
}
