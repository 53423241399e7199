//! The engine's Prometheus metrics, registered into the process's registry (the web layer adds its
//! own there). Label sets are bounded: transport names and fixed outcomes, never error texts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MailLabels {
    transport: &'static str,
    outcome: &'static str,
}

/// What the delivery engine and the event bus count.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    mail: Family<MailLabels, Counter>,
    events_retained: Gauge,
    events_retained_bytes: Gauge,
}

impl EngineMetrics {
    /// The engine's metrics, registered into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register("mail", "Emails handed to the transport, by outcome", metrics.mail.clone());
        registry.register(
            "events_retained",
            "Events this process keeps for WebSocket clients that reconnect (in-process events only)",
            metrics.events_retained.clone(),
        );
        registry.register(
            "events_retained_bytes",
            "What the events kept for reconnecting clients take (in-process events only)",
            metrics.events_retained_bytes.clone(),
        );
        metrics
    }

    /// One email handed to `transport`: `sent`, `retrying` or `failed`.
    pub fn mail_sent(&self, transport: &'static str, outcome: &'static str) {
        self.mail.get_or_create(&MailLabels { transport, outcome }).inc();
    }

    /// Records how many events are kept for replay, and their size.
    pub fn set_events_retained(&self, events: usize, bytes: usize) {
        self.events_retained.set(i64::try_from(events).unwrap_or(i64::MAX));
        self.events_retained_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
