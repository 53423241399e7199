//! The session cookie: HttpOnly, SameSite=Lax, Secure (and `__Host-` prefixed) over https.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::HttpSettings;

const PLAIN_NAME: &str = "borcelle_session";
const SECURE_NAME: &str = "__Host-borcelle_session";

fn name(http: &HttpSettings) -> &'static str {
    if http.cookies_secure() { SECURE_NAME } else { PLAIN_NAME }
}

/// `Set-Cookie` for a new session that lives at most `max_age_secs`.
pub fn session_cookie(http: &HttpSettings, token: &str, max_age_secs: u64) -> HeaderValue {
    let secure = if http.cookies_secure() { "; Secure" } else { "" };
    let value = format!("{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}", name(http));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(http: &HttpSettings) -> HeaderValue {
    let secure = if http.cookies_secure() { "; Secure" } else { "" };
    let value = format!("{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}", name(http));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session token from the request's cookies, if any.
pub fn session_token(http: &HttpSettings, headers: &HeaderMap) -> Option<String> {
    let wanted = name(http);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == wanted)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}
