//! Prometheus metrics with bounded label sets (route templates, never raw paths or error texts).

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailLabels {
    transport: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily<RouteLabels>,
    mail: Family<MailLabels, Counter>,
    websockets: Gauge,
    websocket_ends: Family<WebSocketEndLabels, Counter>,
    events_retained: Gauge,
    events_retained_bytes: Gauge,
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
        let mail = Family::<MailLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer an HTTP request", durations.clone());
        registry.register("mail", "Emails handed to the transport, by outcome", mail.clone());
        let websockets = Gauge::default();
        let websocket_ends = Family::<WebSocketEndLabels, Counter>::default();
        registry.register("websocket_connections", "Open WebSocket connections (/ws)", websockets.clone());
        registry.register(
            "websocket_ends",
            "WebSocket connections ended, by reason (closed by the client, dropped because it did not read)",
            websocket_ends.clone(),
        );
        let (events_retained, events_retained_bytes) = (Gauge::default(), Gauge::default());
        registry.register(
            "events_retained",
            "Events this process keeps for WebSocket clients that reconnect (in-process events only)",
            events_retained.clone(),
        );
        registry.register(
            "events_retained_bytes",
            "What the events kept for reconnecting clients take (in-process events only)",
            events_retained_bytes.clone(),
        );
        Self { registry, requests, durations, mail, websockets, websocket_ends, events_retained, events_retained_bytes }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.requests.get_or_create(&RequestLabels { method: method.clone(), route: route.clone(), status }).inc();
        self.durations.get_or_create(&RouteLabels { method, route }).observe(seconds);
    }

    pub fn mail_sent(&self, transport: &'static str, outcome: &'static str) {
        self.mail.get_or_create(&MailLabels { transport, outcome }).inc();
    }

    /// Counts an open WebSocket until the guard is dropped, with the reason it ended.
    pub fn websocket_opened(self: &std::sync::Arc<Self>) -> WebSocketGuard {
        self.websockets.inc();
        WebSocketGuard { metrics: self.clone(), reason: "closed" }
    }

    /// Records how many events are kept for replay, and their size.
    pub fn set_events_retained(&self, events: usize, bytes: usize) {
        self.events_retained.set(i64::try_from(events).unwrap_or(i64::MAX));
        self.events_retained_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
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
