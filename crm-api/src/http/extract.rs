//! Extractors: the caller's identity, the client, and JSON/form bodies whose every rejection is a
//! JSON error that names the field to fix. Who may do what (admins, path ids) is in
//! [`super::access`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

use borcelle_engine::accounts::ClientInfo;
use borcelle_engine::input::{backticked, field_error};

use super::identity::Identity;
use crate::error::AppError;
use crate::state::AppState;

/// An authenticated caller (401 otherwise).
pub struct CurrentUser(pub Identity);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Identity>().cloned().map(CurrentUser).ok_or(AppError::Unauthenticated)
    }
}

/// The caller, when authenticated.
pub struct MaybeUser(pub Option<Identity>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(MaybeUser(parts.extensions.get::<Identity>().cloned()))
    }
}

/// Where the request comes from.
pub struct Client(pub ClientInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<ClientInfo>().cloned();
        Ok(Client(info.unwrap_or(ClientInfo { ip: "unknown".to_owned(), user_agent: None })))
    }
}

/// A JSON body. Wrong content type → 415, over the limit → 413, not JSON → 400, wrong shape
/// (missing, unknown or mistyped field) → 422 naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(AppError::UnsupportedMediaType("application/json (Content-Type: application/json)"));
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

async fn read_body(request: Request, state: &AppState) -> Result<Bytes, AppError> {
    let limit = state.settings.http.body_limit;
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge { limit }
        } else {
            AppError::MalformedBody(format!("the request body could not be read: {rejection}"))
        }
    })
}

/// Parses JSON, reporting the path of the offending field. Every body is an object: serde would
/// also read an array as a struct's fields in order, which no operation documents. (Objects inside
/// a body, the specs of reminders and broadcasts, are read by the engine's `parse_value`, which is
/// as strict at every depth.)
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        let err = <serde_json::Error as serde::de::Error>::invalid_type(serde::de::Unexpected::Seq, &"a JSON object");
        return Err(classify(String::new(), err));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        classify(path, err.into_inner())
    })?;
    deserializer.end().map_err(|err| classify(String::new(), err))?;
    Ok(value)
}

fn classify(path: String, err: serde_json::Error) -> AppError {
    if err.classify() != serde_json::error::Category::Data {
        return AppError::MalformedBody(format!("the body is not valid JSON: {err}"));
    }
    let (field, message) = field_error(path, &err);
    AppError::validation(field, message)
}

/// The body of a URL-encoded form (415 for any other type).
async fn form_bytes(request: Request, state: &AppState) -> Result<Bytes, AppError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(AppError::UnsupportedMediaType("a form (Content-Type: application/x-www-form-urlencoded)"));
    }
    read_body(request, state).await
}

/// A URL-encoded form body, with the same error rules as [`ApiJson`].
pub struct FormBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for FormBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = form_bytes(request, state).await?;
        let deserializer = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(&bytes));
        serde_path_to_error::deserialize(deserializer).map(FormBody).map_err(|err| {
            let message = err.inner().to_string();
            let field = backticked(&message).map(str::to_owned).unwrap_or_else(|| err.path().to_string());
            AppError::validation(field, message)
        })
    }
}

/// A URL-encoded form body as its pairs, in order: for forms that repeat a name (a checkbox per
/// table row), which a struct cannot take.
pub struct FormFields(pub Vec<(String, String)>);

impl FormFields {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

impl FromRequest<AppState> for FormFields {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = form_bytes(request, state).await?;
        Ok(FormFields(url::form_urlencoded::parse(&bytes).into_owned().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u8,
    }

    fn field_of(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()) {
            Err(err @ AppError::Domain(_)) => err.field().unwrap_or_default().to_owned(),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"age": 3}"#), "email");
        assert_eq!(field_of(r#"{"email": "a", "age": "x"}"#), "age");
        assert_eq!(field_of(r#"{"email": "a", "age": 3, "admin": true}"#), "admin");
        assert!(matches!(parse_json::<Body>(b"{\"email\": "), Err(AppError::MalformedBody(_))));
        assert!(matches!(parse_json::<Body>(br#"{"email":"a","age":1} x"#), Err(AppError::MalformedBody(_))));
    }
}
