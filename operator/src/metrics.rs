//! Prometheus metrics. Every label has a small fixed set of values (kind, error reason).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::kinds::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    reason: &'static str,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// Seconds between an occurrence's time and its Job's creation: 0.1 s … ~14 min.
fn lag_histogram() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0])
}

/// Seconds a reconcile takes.
fn duration_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0])
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    schedule_lag: HistogramFamily,
    reconcile_duration: HistogramFamily,
    jobs_created: Family<KindLabels, Counter>,
    event_failures: Counter,
    leader: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("borcelle_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let schedule_lag: HistogramFamily = Family::new_with_constructor(lag_histogram);
        let reconcile_duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        let jobs_created = Family::<KindLabels, Counter>::default();
        let event_failures = Counter::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register("reconciles", "Reconciles run, by kind", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed, by kind and reason", errors.clone());
        registry.register(
            "schedule_lag_seconds",
            "Seconds between an occurrence's scheduled time and the creation of its Job",
            schedule_lag.clone(),
        );
        registry.register("reconcile_duration_seconds", "Time a reconcile takes", reconcile_duration.clone());
        registry.register("jobs_created", "Jobs created for occurrences, by kind", jobs_created.clone());
        registry.register(
            "event_publish_failures",
            "Kubernetes events that could not be published",
            event_failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without election)",
            leader.clone(),
        );
        Metrics { registry, reconciles, errors, schedule_lag, reconcile_duration, jobs_created, event_failures, leader }
    }

    pub fn reconciled(&self, kind: Kind, seconds: f64) {
        self.reconciles.get_or_create(&KindLabels { kind: kind.as_str() }).inc();
        self.reconcile_duration.get_or_create(&KindLabels { kind: kind.as_str() }).observe(seconds);
    }

    pub fn failed(&self, kind: Kind, reason: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.as_str(), reason }).inc();
    }

    pub fn job_created(&self, kind: Kind, lag_seconds: f64) {
        self.jobs_created.get_or_create(&KindLabels { kind: kind.as_str() }).inc();
        self.schedule_lag.get_or_create(&KindLabels { kind: kind.as_str() }).observe(lag_seconds.max(0.0));
    }

    pub fn event_failed(&self) {
        self.event_failures.inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition (OpenMetrics).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_by_kind_and_bounded_reasons() {
        let metrics = Metrics::new();
        metrics.reconciled(Kind::Broadcast, 0.01);
        metrics.failed(Kind::ScheduledReminder, "server_error");
        metrics.job_created(Kind::ScheduledReminder, 1.5);
        let text = metrics.encode().unwrap_or_default();
        assert!(text.contains("borcelle_operator_reconciles_total{kind=\"Broadcast\"} 1"), "{text}");
        assert!(text.contains(
            "borcelle_operator_reconcile_errors_total{kind=\"ScheduledReminder\",reason=\"server_error\"} 1"
        ));
        assert!(text.contains("borcelle_operator_jobs_created_total{kind=\"ScheduledReminder\"} 1"));
        assert!(
            text.contains("borcelle_operator_schedule_lag_seconds_bucket{le=\"2.5\",kind=\"ScheduledReminder\"} 1"),
            "{text}"
        );
    }
}
