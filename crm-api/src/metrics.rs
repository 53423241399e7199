//! The process's Prometheus registry: the web's metrics (requests by route template, WebSockets)
//! beside the engine's (mail, events kept). Label sets are bounded: route templates, never raw
//! paths or error texts.

use std::sync::Arc;

use borcelle_engine::metrics::EngineMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
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
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
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
