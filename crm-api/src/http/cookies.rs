//! The session cookie and the device cookie: HttpOnly, SameSite=Lax, Secure (and `__Host-`
//! prefixed) over https. The device cookie outlives sessions: it tells the login throttle that this
//! client has logged in to the account before (see `Accounts::login`).

use axum::http::{HeaderMap, HeaderValue, header};

use crate::config::HttpSettings;

const PLAIN_NAME: &str = "borcelle_session";
const SECURE_NAME: &str = "__Host-borcelle_session";
const DEVICE_PLAIN_NAME: &str = "borcelle_device";
const DEVICE_SECURE_NAME: &str = "__Host-borcelle_device";

fn name(http: &HttpSettings) -> &'static str {
    if http.cookies_secure() { SECURE_NAME } else { PLAIN_NAME }
}

fn device_name(http: &HttpSettings) -> &'static str {
    if http.cookies_secure() { DEVICE_SECURE_NAME } else { DEVICE_PLAIN_NAME }
}

/// `Set-Cookie` for the device token of a client that just logged in, kept `max_age_secs`.
pub fn device_cookie(http: &HttpSettings, token: &str, max_age_secs: u64) -> HeaderValue {
    set_cookie(http, device_name(http), token, "/", "Lax", max_age_secs)
}

/// The device token from the request's cookies, if any.
pub fn device_token(http: &HttpSettings, headers: &HeaderMap) -> Option<String> {
    cookie(headers, device_name(http))
}

/// `Set-Cookie` for a new session that lives at most `max_age_secs`.
pub fn session_cookie(http: &HttpSettings, token: &str, max_age_secs: u64) -> HeaderValue {
    set_cookie(http, name(http), token, "/", "Lax", max_age_secs)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(http: &HttpSettings) -> HeaderValue {
    set_cookie(http, name(http), "", "/", "Lax", 0)
}

const TOKEN_FLASH_PLAIN_NAME: &str = "borcelle_new_token";
const TOKEN_FLASH_SECURE_NAME: &str = "__Secure-borcelle_new_token";

fn token_flash_name(http: &HttpSettings) -> &'static str {
    if http.cookies_secure() { TOKEN_FLASH_SECURE_NAME } else { TOKEN_FLASH_PLAIN_NAME }
}

/// `Set-Cookie` carrying a just-created API token's secret to the account page the creation
/// redirects to (shown once there, then cleared): only for that page, for two minutes at most,
/// never readable by scripts nor sent by another site.
pub fn token_flash_cookie(http: &HttpSettings, secret: &str) -> HeaderValue {
    set_cookie(http, token_flash_name(http), secret, "/account", "Strict", 120)
}

/// `Set-Cookie` that removes the token flash once shown.
pub fn clear_token_flash_cookie(http: &HttpSettings) -> HeaderValue {
    set_cookie(http, token_flash_name(http), "", "/account", "Strict", 0)
}

/// The secret of the API token just created, from the flash cookie.
pub fn token_flash(http: &HttpSettings, headers: &HeaderMap) -> Option<String> {
    cookie(headers, token_flash_name(http))
}

/// The session token from the request's cookies, if any.
pub fn session_token(http: &HttpSettings, headers: &HeaderMap) -> Option<String> {
    cookie(headers, name(http))
}

/// `Set-Cookie` for one of ours: HttpOnly, `Secure` over https, kept `max_age_secs` (0 removes it).
fn set_cookie(
    http: &HttpSettings,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age_secs: u64,
) -> HeaderValue {
    let secure = if http.cookies_secure() { "; Secure" } else { "" };
    let cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite={same_site}; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
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
