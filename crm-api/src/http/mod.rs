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
use tower_http::set_header::SetResponseHeaderLayer;
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
                    tracing::info_span!("request", method = %request.method(), route, request_id = id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
                // `same-origin`, not `no-referrer`: with no-referrer, Chromium sends `Origin: null`
                // on same-origin form posts, which the CSRF guard must refuse. Other sites still
                // get no referrer.
                .layer(security_header(header::REFERRER_POLICY, "same-origin"))
                .layer(security_header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                .layer(security_header(header::CACHE_CONTROL, "no-store"))
                .layer(CatchPanicLayer::custom(|_| AppError::internal("handler panicked").into_response())),
        )
        .with_state(state)
}

/// Pages load only their own assets, cannot be framed, and post only to this site.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Sets a header on every response that does not set it itself (static assets set their caching).
fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
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
