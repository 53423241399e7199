//! Who may do what, as extractors: a route that takes [`Admin`] is for administrators only, and a
//! path id is read by [`Id`], which answers the same 404 for an id that is not a UUID as for one
//! that names nothing of the caller's. Owner scoping itself is the store's (`borcelle_store::Owner`):
//! handlers pass `identity.owner()`, never a bare user id.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, OriginalUri, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::identity::Identity;
use crate::error::AppError;
use crate::state::AppState;

/// An authenticated administrator: 401 without a login, 403 for anyone else. On a page the
/// answers are pages (the login form, a "not allowed" page).
pub struct Admin(pub Identity);

/// What only administrators may do, in the 403 message.
const ADMINS_ONLY: &str = "only administrators may do this";

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match (parts.extensions.get::<Identity>().cloned(), is_api(parts)) {
            (Some(identity), _) if identity.is_admin() => Ok(Admin(identity)),
            (Some(_), true) => Err(AppError::forbidden(ADMINS_ONLY).into_response()),
            (Some(identity), false) => {
                Err(super::pages::error_page_for(state, Some(&identity), AppError::forbidden(ADMINS_ONLY)))
            }
            (None, true) => Err(AppError::Unauthenticated.into_response()),
            // A page sends the visitor to log in first.
            (None, false) => match super::pages::PageUser::from_request_parts(parts, state).await {
                Err(redirect) => Err(redirect.into_response()),
                Ok(super::pages::PageUser(identity)) => Ok(Admin(identity)),
            },
        }
    }
}

/// Whether the request is for the JSON API (its answers are JSON, a page's are pages). The API is
/// nested, so its handlers see the path without the prefix: the original URI says.
fn is_api(parts: &Parts) -> bool {
    let path = parts.extensions.get::<OriginalUri>().map_or(parts.uri.path(), |OriginalUri(uri)| uri.path());
    path.starts_with(&format!("{}/", super::api::PREFIX))
}

/// What a path id names, for its 404 (`contact not found`).
pub trait Named {
    const NAME: &'static str;
}

/// The id in a route's path (its one parameter), read as a UUID; anything else is the 404 of
/// `K`: to a caller, an id that is not a UUID and an id of another user's data look alike.
pub struct Id<K>(Uuid, PhantomData<K>);

impl<K> Id<K> {
    pub fn get(&self) -> Uuid {
        self.0
    }
}

impl<K: Named> Id<K> {
    /// Reads one id of a path with several (`/notes/{id}/tasks/{task}`).
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        raw.parse().map(|id| Id(id, PhantomData)).map_err(|_| AppError::not_found(K::NAME))
    }
}

impl<K: Named + Send + Sync> FromRequestParts<AppState> for Id<K> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(raw)) => raw,
            // Not one UTF-8 segment: still nothing of the caller's.
            Err(_) => String::new(),
        };
        Self::parse(&raw).map_err(|err| {
            if is_api(parts) {
                err.into_response()
            } else {
                super::pages::error_page_for(state, parts.extensions.get::<Identity>(), err)
            }
        })
    }
}

/// The name in a route's path (a reminder's, a broadcast's), as text; a segment that is not UTF-8
/// is the 404 of `K` (as a page on a page), never the router's bare-text 400.
pub struct Name<K>(String, PhantomData<K>);

impl<K> Name<K> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<K: Named + Send + Sync> FromRequestParts<AppState> for Name<K> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(raw)) => Ok(Name(raw, PhantomData)),
            Err(_) => Err(not_found::<K>(parts, state)),
        }
    }
}

/// The 404 of `K`, as JSON for the API and as a page for a page.
pub fn not_found<K: Named>(parts: &Parts, state: &AppState) -> Response {
    let err = AppError::not_found(K::NAME);
    if is_api(parts) {
        err.into_response()
    } else {
        super::pages::error_page_for(state, parts.extensions.get::<Identity>(), err)
    }
}

/// What a reminder's name names, for its 404.
pub struct Reminder;
impl Named for Reminder {
    const NAME: &'static str = "reminder";
}

/// What a broadcast's name names, for its 404.
pub struct Broadcast;
impl Named for Broadcast {
    const NAME: &'static str = "broadcast";
}

impl Named for borcelle_store::contacts::Contact {
    const NAME: &'static str = "contact";
}
impl Named for borcelle_store::notes::Note {
    const NAME: &'static str = "note";
}
impl Named for borcelle_store::tasks::Task {
    const NAME: &'static str = "task";
}
impl Named for borcelle_store::messages::Message {
    const NAME: &'static str = "message";
}
impl Named for borcelle_store::notifications::Notification {
    const NAME: &'static str = "notification";
}
impl Named for borcelle_store::api_tokens::ApiToken {
    const NAME: &'static str = "token";
}
impl Named for borcelle_store::attachments::Attachment {
    const NAME: &'static str = "attachment";
}
impl Named for borcelle_store::users::Listed {
    const NAME: &'static str = "user";
}
impl Named for borcelle_store::inbound::InboundMessage {
    const NAME: &'static str = "reply";
}
impl Named for borcelle_store::outbox::OutboxMessage {
    const NAME: &'static str = "message";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_that_is_not_a_uuid_is_the_kinds_404() {
        for raw in ["", "nope", "0190", "%FF", "00000000-0000-0000-0000-00000000000g"] {
            let err = Id::<borcelle_store::contacts::Contact>::parse(raw).err().map(|e| (e.status(), e.to_string()));
            assert_eq!(err, Some((axum::http::StatusCode::NOT_FOUND, "contact not found".to_owned())), "{raw:?}");
        }
        let id = Uuid::now_v7();
        assert_eq!(Id::<borcelle_store::notes::Note>::parse(&id.to_string()).map(|i| i.get()).ok(), Some(id));
    }
}
