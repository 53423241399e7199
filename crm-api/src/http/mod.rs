//! The HTTP surface: pages, the JSON API, operations endpoints, and the layers around them
//! (request id, tracing, metrics, identity and CSRF, body limit, panic catching).

pub mod access;
pub mod api;
pub mod cookies;
pub mod db_gate;
pub mod extract;
pub mod identity;
pub mod openapi;
pub mod openapi_rules;
pub mod ops;
pub mod pages;
mod ws;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::metrics::Route;
use crate::state::AppState;
use extract::MaybeUser;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit;
    Router::new()
        .merge(api::mounted(&state.settings).0)
        .merge(pages::router())
        .route("/ws", get(ws::connect))
        .fallback(page_not_found)
        .layer(middleware::from_fn_with_state(state.clone(), identity::resolve))
        .layer(middleware::from_fn_with_state(state.clone(), db_gate::guard))
        .merge(ops::probes(ops::Operations {
            db: state.db.clone(),
            events: Some(state.events.clone()),
            metrics: state.metrics.clone(),
        }))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                    let id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = request.method().as_str(), route, request_id = id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .map_response(security_headers)
                .layer(CatchPanicLayer::custom(|_| AppError::internal("handler panicked").into_response())),
        )
        .with_state(state)
}

/// Pages load only their own assets, cannot be framed, and post only to this site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every response carries unless it sets them itself (static assets set their
/// caching). `same-origin`, not `no-referrer`, for the referrer: with no-referrer, Chromium sends
/// `Origin: null` on same-origin form posts, which the CSRF guard must refuse. Other sites still
/// get no referrer.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
    (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
];

/// Adds [`SECURITY_HEADERS`] a response does not set, in one layer (five `SetResponseHeader`
/// layers cost five nested futures on every request).
fn security_headers<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if let header::Entry::Vacant(entry) = headers.entry(name) {
            entry.insert(value);
        }
    }
    response
}

/// Records each answer in the request metrics, keyed by the route template, and counts the
/// request in flight while it runs (the delivery engine yields to a busy web).
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = state.web_load.begin();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned().map_or(Route::Unmatched, Route::Matched);
    let response = next.run(request).await;
    state.metrics.observe_request(&method, route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn page_not_found(State(state): State<AppState>, MaybeUser(identity): MaybeUser) -> Response {
    pages::not_found(&state, identity.as_ref())
}
