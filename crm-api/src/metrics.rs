//! The process's Prometheus registry: the web's metrics (requests by route template, WebSockets)
//! beside the engine's (mail, events kept). Label sets are bounded: route templates, never raw
//! paths or error texts.

use std::sync::Arc;

use axum::extract::MatchedPath;
use axum::http::Method;
use borcelle_engine::metrics::EngineMetrics;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Route,
}

/// A request's route template (`/api/v1/contacts/{id}`), or `unmatched`: the router's own shared
/// text, so that counting a request copies no string (two copies of the method and route per
/// request took about 2 % of serve's CPU on a page of contacts).
#[derive(Clone, Debug)]
pub enum Route {
    Matched(MatchedPath),
    Unmatched,
}

impl Route {
    fn as_str(&self) -> &str {
        match self {
            Route::Matched(path) => path.as_str(),
            Route::Unmatched => "unmatched",
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The method as a label: the standard ones by name, any other as `other` (a client can send any
/// token as a method; each must not become a series of its own).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily<RouteLabels>,
    websockets: Gauge,
    websocket_ends: Family<WebSocketEndLabels, Counter>,
    /// What the engine counts (mail, events kept), in the same registry.
    pub engine: Arc<EngineMetrics>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebSocketEndLabels {
    reason: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("borcelle");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer an HTTP request", durations.clone());
        let engine = Arc::new(EngineMetrics::register(&mut registry));
        let websockets = Gauge::default();
        let websocket_ends = Family::<WebSocketEndLabels, Counter>::default();
        registry.register("websocket_connections", "Open WebSocket connections (/ws)", websockets.clone());
        registry.register(
            "websocket_ends",
            "WebSocket connections ended, by reason (closed by the client, dropped because it did not read)",
            websocket_ends.clone(),
        );
        Self { registry, requests, durations, websockets, websocket_ends, engine }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &Method, route: Route, status: u16, seconds: f64) {
        let method = method_label(method);
        self.requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).inc();
        self.durations.get_or_create(&RouteLabels { method, route }).observe(seconds);
    }

    /// Counts an open WebSocket until the guard is dropped, with the reason it ended.
    pub fn websocket_opened(self: &std::sync::Arc<Self>) -> WebSocketGuard {
        self.websockets.inc();
        WebSocketGuard { metrics: self.clone(), reason: "closed" }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// An open WebSocket, counted in the metrics while it lives.
pub struct WebSocketGuard {
    metrics: std::sync::Arc<Metrics>,
    reason: &'static str,
}

impl WebSocketGuard {
    /// Why the connection will have ended (`closed` unless said otherwise).
    pub fn ending(&mut self, reason: &'static str) {
        self.reason = reason;
    }
}

impl Drop for WebSocketGuard {
    fn drop(&mut self) {
        self.metrics.websockets.dec();
        self.metrics.websocket_ends.get_or_create(&WebSocketEndLabels { reason: self.reason }).inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn requests_are_counted_by_route_template_and_a_known_method_only() {
        let metrics = Metrics::default();
        metrics.observe_request(&Method::GET, Route::Unmatched, 404, 0.001);
        metrics.observe_request(&Method::from_bytes(b"BREW").unwrap(), Route::Unmatched, 405, 0.001);
        metrics.observe_request(&Method::from_bytes(b"PROPFIND").unwrap(), Route::Unmatched, 405, 0.001);
        let text = metrics.render().unwrap();
        assert!(
            text.contains(r#"borcelle_http_requests_total{method="GET",route="unmatched",status="404"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"borcelle_http_requests_total{method="other",route="unmatched",status="405"} 2"#),
            "{text}"
        );
        assert!(!text.contains("BREW") && !text.contains("PROPFIND"), "no series per unknown method: {text}");
    }
}
