//! Who is asking, resolved once per request, and the CSRF guard for state-changing requests.
//!
//! A request is authenticated by `Authorization: Bearer <api token>` or by the session cookie.
//! Every state-changing request (not GET/HEAD/OPTIONS) is refused when a browser says it comes
//! from another site (`Origin`, else `Sec-Fetch-Site`). A cookie-authenticated one must also carry
//! the session's CSRF token: the `X-CSRF-Token` header or a `csrf_token` form field (never the URL).

use std::net::{IpAddr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use uuid::Uuid;

use super::cookies;
use crate::error::AppError;
use crate::state::AppState;
use borcelle_engine::accounts::{ClientInfo, secrets, session_cache};
use borcelle_store::sessions::{self, ActiveSession};
use borcelle_store::{Owner, api_tokens, users::Role};

pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";
/// Sessions record activity at most this often, so reads do not turn into writes.
const TOUCH_EVERY_SECS: i64 = 60;

/// How a request proved who it is.
#[derive(Debug, Clone)]
pub enum AuthVia {
    Session { id_hash: Vec<u8>, csrf_token: String },
    ApiToken { token_id: Uuid },
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// The account's time zone for pages, when set.
    pub time_zone: Option<String>,
    pub via: AuthVia,
}

impl Identity {
    fn new(session: ActiveSession, via: AuthVia) -> Self {
        Self {
            user_id: session.user_id,
            email: session.email,
            display_name: session.display_name,
            role: session.role,
            time_zone: session.time_zone,
            via,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The user as the owner whose data a request may read and change.
    pub fn owner(&self) -> Owner {
        Owner::new(self.user_id)
    }

    /// The CSRF token pages put in their forms (empty for API tokens, which need none).
    pub fn csrf_token(&self) -> &str {
        match &self.via {
            AuthVia::Session { csrf_token, .. } => csrf_token,
            AuthVia::ApiToken { .. } => "",
        }
    }

    pub fn session_hash(&self) -> Option<&[u8]> {
        match &self.via {
            AuthVia::Session { id_hash, .. } => Some(id_hash),
            AuthVia::ApiToken { .. } => None,
        }
    }
}

/// Middleware: resolves the client and the identity, then applies the CSRF guard.
pub async fn resolve(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let page = !request.uri().path().starts_with("/api/");
    match authenticate(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(err) if page => crate::http::pages::error_page(&state, err),
        Err(err) => err.into_response(),
    }
}

fn client_info(state: &AppState, request: &Request) -> ClientInfo {
    // A trusted proxy appends the address it saw, so the right-most entry is the one to believe;
    // whatever the client itself sent stands to its left.
    let forwarded = state
        .settings
        .http
        .trust_forwarded_for
        .then(|| {
            request.headers().get("x-forwarded-for")?.to_str().ok()?.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        })
        .flatten()
        .map(|ip| ip.to_string());
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip().to_string());
    ClientInfo {
        ip: forwarded.or(peer).unwrap_or_else(|| "unknown".to_owned()),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(300).collect()),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn authenticate(state: &AppState, mut request: Request) -> Result<Request, AppError> {
    let client = client_info(state, &request);
    let http = &state.settings.http;
    let identity = if let Some(token) = bearer(request.headers()) {
        let (token_id, session) =
            api_tokens::authenticate(&state.db, &secrets::hash_token(token)).await?.ok_or(AppError::InvalidApiToken)?;
        Some(Identity::new(session, AuthVia::ApiToken { token_id }))
    } else if let Some(token) = cookies::session_token(http, request.headers()) {
        let id_hash = secrets::hash_token(&token);
        session(state, &id_hash).await?.map(|session| {
            let csrf_token = session.csrf_token.clone();
            Identity::new(session, AuthVia::Session { id_hash, csrf_token })
        })
    } else {
        None
    };

    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Authorised by what they carry, never by a session: an unsubscribe link's signed token
    // (posted by a mailbox provider's one-click button, from anywhere) and a provider's webhook
    // credentials. Their handlers ignore any session the request may also have.
    let path = request.uri().path();
    let carries_own_authority = path.starts_with("/unsubscribe/") || path.starts_with("/api/v1/webhooks/");
    if !safe && !carries_own_authority {
        let via_token = matches!(identity, Some(Identity { via: AuthVia::ApiToken { .. }, .. }));
        if !via_token {
            check_origin(state, request.headers())?;
        }
        if let Some(Identity { via: AuthVia::Session { csrf_token, .. }, .. }) = &identity {
            let (checked, presented) = presented_csrf_token(request, http.body_limit).await?;
            request = checked;
            if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), csrf_token.as_bytes())) {
                return Err(AppError::CsrfRejected(
                    "missing or wrong CSRF token: send the X-CSRF-Token header from GET /api/v1/auth/session, or reload the page",
                ));
            }
        }
    }

    request.extensions_mut().insert(client);
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity);
    }
    Ok(request)
}

/// The live session of a cookie: from this process's [`session_cache`] when it was read less than
/// its TTL ago, else from the database (recording activity at most every [`TOUCH_EVERY_SECS`]).
async fn session(state: &AppState, id_hash: &[u8]) -> Result<Option<ActiveSession>, AppError> {
    let idle = state.settings.auth.session_idle;
    let cache = session_cache::process();
    if let Some(session) = cache.get(id_hash, idle) {
        return Ok(Some(session));
    }
    let ticket = cache.ticket();
    let Some(mut found) = sessions::find_active(&state.db, id_hash, idle.as_secs_f64()).await? else {
        return Ok(None);
    };
    if (Utc::now() - found.session.last_seen_at).num_seconds() >= TOUCH_EVERY_SECS {
        sessions::touch(&state.db, id_hash).await?;
        found.session.last_seen_at = Utc::now();
    }
    cache.insert(ticket, id_hash, &found);
    Ok(Some(found.session))
}

/// Refuses requests that a browser marks as coming from another site.
fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if state.settings.http.origin_allowed(origin) {
            return Ok(());
        }
        return Err(AppError::CsrfRejected("cross-site request refused: its Origin is not this site"));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(_) => Err(AppError::CsrfRejected("cross-site request refused")),
    }
}

/// Compares two secrets in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Finds the CSRF token in the header or a URL-encoded form body (never the URL, which leaks
/// through logs and Referer). The body is read (within the body limit) and put back for the handler.
/// How much of a multipart body is read to find its first part (the form's CSRF field).
const MULTIPART_PREFIX: usize = 4096;

fn multipart_boundary(content_type: &str) -> Option<String> {
    let rest = content_type.strip_prefix("multipart/form-data")?;
    rest.split(';').map(str::trim).find_map(|p| p.strip_prefix("boundary=")).map(|b| b.trim_matches('"').to_owned())
}

/// The CSRF field of a multipart form (an upload from a page without JavaScript), which the page
/// puts first: only the body's first few KiB are read, and the body goes on unchanged.
async fn multipart_csrf_token(request: Request, boundary: &str) -> Result<(Request, Option<String>), AppError> {
    use futures::StreamExt;
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut prefix: Vec<u8> = Vec::new();
    while prefix.len() < MULTIPART_PREFIX {
        match stream.next().await {
            Some(Ok(chunk)) => prefix.extend_from_slice(&chunk),
            Some(Err(_)) => return Err(AppError::MalformedBody("the request body could not be read".into())),
            None => break,
        }
    }
    let token = first_field(&prefix, boundary, CSRF_FIELD);
    let head = futures::stream::once(async move { Ok::<_, axum::Error>(bytes::Bytes::from(prefix)) });
    let body = Body::from_stream(head.chain(stream));
    Ok((Request::from_parts(parts, body), token))
}

/// The value of `name` when it is the first part of a multipart body.
fn first_field(body: &[u8], boundary: &str, name: &str) -> Option<String> {
    let text = std::str::from_utf8(&body[..body.len().min(MULTIPART_PREFIX)]).ok().or_else(|| {
        // The prefix may end inside a multi-byte character of a later part: cut at the last valid one.
        let valid = std::str::from_utf8(body).err()?.valid_up_to();
        std::str::from_utf8(&body[..valid]).ok()
    })?;
    let start = format!("--{boundary}\r\n");
    let rest = text.strip_prefix(&start)?;
    let (headers, rest) = rest.split_once("\r\n\r\n")?;
    let wanted = format!("name=\"{name}\"");
    if !headers.lines().any(|l| l.to_ascii_lowercase().starts_with("content-disposition:") && l.contains(&wanted)) {
        return None;
    }
    let (value, _) = rest.split_once(&format!("\r\n--{boundary}"))?;
    Some(value.to_owned())
}

async fn presented_csrf_token(request: Request, limit: usize) -> Result<(Request, Option<String>), AppError> {
    if let Some(value) = request.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        let value = value.to_owned();
        return Ok((request, Some(value)));
    }
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if let Some(boundary) = multipart_boundary(&content_type) {
        return multipart_csrf_token(request, &boundary).await;
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| AppError::PayloadTooLarge { limit })?;
    let token = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_field_is_read_from_the_first_part_of_a_multipart_body() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc123\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nname,email\r\n--XyZ--\r\n";
        assert_eq!(first_field(body.as_bytes(), "XyZ", CSRF_FIELD).as_deref(), Some("abc123"));
        assert_eq!(multipart_boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(), Some("XyZ"));
        // Not first, or another name: not taken.
        let later = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc\r\n--XyZ--";
        assert_eq!(first_field(later.as_bytes(), "XyZ", CSRF_FIELD), None);
        assert_eq!(first_field(b"garbage", "XyZ", CSRF_FIELD), None);
    }
}
