//! What every reconcile shares: the client, the Job settings, the clock, metrics and backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use borcelle_crds::RunSummary;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::backoff::ErrorBackoff;
use crate::cache::JobCaches;
use crate::metrics::Metrics;

/// The current time. Injected so that tests and benchmarks fix "now".
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// A clock that always reads `now`.
pub fn fixed_clock(now: DateTime<Utc>) -> Clock {
    Arc::new(move || now)
}

/// How the Jobs that run occurrences are built (operator flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// The image with the `borcelle` binary.
    pub image: String,
    pub backoff_limit: i32,
    pub active_deadline_seconds: i64,
    /// Secret whose keys become the worker's environment.
    pub env_secret: String,
    /// Optional ConfigMap whose keys become the worker's environment.
    pub env_configmap: Option<String>,
    pub service_account: String,
    /// Secrets the Job's pod pulls the image with (`imagePullSecrets`), in the Job's namespace.
    pub image_pull_secrets: Vec<String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            image: "borcelle:latest".to_owned(),
            backoff_limit: 3,
            active_deadline_seconds: 3600,
            env_secret: "borcelle-env".to_owned(),
            env_configmap: None,
            service_account: "borcelle-worker".to_owned(),
            image_pull_secrets: Vec::new(),
        }
    }
}

/// Shared by every reconcile of both controllers.
pub struct Context {
    pub client: Client,
    /// Who publishes events (controller name and pod).
    pub reporter: Reporter,
    pub jobs: JobSettings,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub backoff: ErrorBackoff,
    /// Finished Jobs whose `SawCompletedJob` this process has reported.
    pub reported: ReportedRuns,
    /// The owned Jobs, from the controllers' Job watches.
    pub jobs_cache: JobCaches,
}

/// What was reported about a finished Job.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedRun {
    pub summary: RunSummary,
    pub succeeded: bool,
    pub recipients: Option<i64>,
}

/// Finished Jobs this process has reported (`SawCompletedJob`), by `namespace/name`, until the
/// resource's status read from the watch cache says the same: a reconcile that runs on a status
/// older than its own last write neither reports a run twice nor forgets it.
#[derive(Debug, Default)]
pub struct ReportedRuns(Mutex<HashMap<String, ReportedRun>>);

/// Entries kept at most (Jobs deleted by someone else are never removed one by one).
const MAX_REPORTED: usize = 100_000;

impl ReportedRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ReportedRun>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, namespace: &str, job: &str) -> Option<ReportedRun> {
        let reported = self.lock();
        if reported.is_empty() {
            return None;
        }
        reported.get(&format!("{namespace}/{job}")).cloned()
    }

    pub fn insert(&self, namespace: &str, job: &str, run: ReportedRun) {
        let mut reported = self.lock();
        if reported.len() >= MAX_REPORTED {
            reported.clear();
        }
        reported.insert(format!("{namespace}/{job}"), run);
    }

    pub fn remove(&self, namespace: &str, job: &str) {
        let mut reported = self.lock();
        if !reported.is_empty() {
            reported.remove(&format!("{namespace}/{job}"));
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Context {
    pub fn new(client: Client, jobs: JobSettings, clock: Clock, metrics: Arc<Metrics>) -> Self {
        Context {
            client,
            reporter: Reporter { controller: crate::FIELD_MANAGER.to_owned(), instance: None },
            jobs,
            clock,
            metrics,
            backoff: ErrorBackoff::default(),
            reported: ReportedRuns::default(),
            jobs_cache: JobCaches::default(),
        }
    }

    /// Names the reporting instance (the pod) on events.
    pub fn with_instance(mut self, instance: Option<String>) -> Self {
        self.reporter.instance = instance;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Publishes an event about `regarding`. Events are best effort: a failure is logged and
    /// counted, never fails the reconcile (the work it reports has been done).
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        // A recorder per event: kube's recorder folds repeated reasons into a series whose note
        // stays the first one, which would hide which Job an event is about.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let event =
            Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None };
        if let Err(err) = recorder.publish(&event, regarding).await {
            tracing::warn!(reason, error = %err, "could not publish event");
            self.metrics.event_failed();
        }
    }
}
