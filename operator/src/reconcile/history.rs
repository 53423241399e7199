//! Finished runs: reporting each once (event, `lastRun`, counts from the worker's termination
//! message) and pruning them beyond the history limits.

use std::cmp::Reverse;
use std::collections::HashSet;

use borcelle_crds::RunSummary;
use borcelle_crds::status::RunOutcome;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::events::EventType;

use super::Reconciler;
use crate::context::ReportedRun;
use crate::error::Error;
use crate::job::{self, JobOutcome, OwnedJob};
use crate::kinds::Occurring;

impl<K: Occurring> Reconciler<'_, K> {
    /// Reports the Jobs that finished since the status was written (those it lists as active,
    /// and those that finished after its `lastRun`), each once, and folds them into the status.
    pub(super) async fn observe_finished(&mut self, owned: &[OwnedJob]) -> Result<(), Error> {
        let was_active: HashSet<&str> = self.before.active.iter().map(|r| r.name.as_str()).collect();
        let last_finished = self.before.last_run.as_ref().map(|r| r.finished_at.unwrap_or(r.occurrence));
        let mut newly = Vec::new();
        for job in owned.iter().filter(|j| j.is_finished()) {
            if was_active.contains(job.name.as_str()) || last_finished.is_none_or(|t| job.history_time() > t) {
                newly.push(job);
            } else {
                // The status read already accounts for it.
                self.ctx.reported.remove(&self.namespace, &job.name);
            }
        }
        newly.sort_by_key(|j| (j.history_time(), j.occurrence));
        for finished in newly {
            let run = match self.ctx.reported.get(&self.namespace, &finished.name) {
                Some(run) => run,
                None => {
                    let run = self.report_finished(finished).await?;
                    self.ctx.reported.insert(&self.namespace, &finished.name, run.clone());
                    run
                }
            };
            self.fold_finished(run, finished.history_time());
        }
        Ok(())
    }

    /// Reads the run's counts from its pods and publishes `SawCompletedJob`.
    async fn report_finished(&self, finished: &OwnedJob) -> Result<ReportedRun, Error> {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("{}={}", job::LABEL_JOB_NAME, finished.name));
        let pods = pods.list(&params).await?;
        let counts = job::counts_from_pods(&pods.items).unwrap_or_default();
        let succeeded = finished.outcome == JobOutcome::Succeeded;
        let outcome = if succeeded { RunOutcome::Succeeded } else { RunOutcome::Failed }.as_str();
        tracing::info!(job = %finished.name, outcome, delivered = counts.delivered, failed = counts.failed, "run finished");
        let note = format!(
            "Saw completed job: {}, status: {}, delivered: {}, failed: {}",
            finished.name,
            if succeeded { "Complete" } else { "Failed" },
            counts.delivered,
            counts.failed
        );
        self.event(EventType::Normal, "SawCompletedJob", "ObserveJob", note).await;
        Ok(ReportedRun {
            summary: RunSummary {
                occurrence: finished.occurrence,
                name: finished.name.clone(),
                outcome: outcome.to_owned(),
                delivered: counts.delivered,
                failed: counts.failed,
                finished_at: finished.finished_at,
                error: if succeeded { None } else { counts.error.clone() },
            },
            succeeded,
            recipients: Some(counts.recipients.unwrap_or(counts.delivered)),
        })
    }

    fn fold_finished(&mut self, run: ReportedRun, finished_at: DateTime<Utc>) {
        self.state.finished(run.summary, finished_at, run.recipients);
    }

    /// Deletes finished Jobs beyond the history limits, oldest first.
    pub(super) async fn prune_history(&mut self, owned: &mut [OwnedJob]) -> Result<(), Error> {
        let limits = self.obj.history_limits();
        for (outcome, keep) in [(JobOutcome::Succeeded, limits.succeeded), (JobOutcome::Failed, limits.failed)] {
            let mut finished: Vec<&mut OwnedJob> =
                owned.iter_mut().filter(|j| j.is_finished() && j.outcome == outcome).collect();
            finished.sort_by_key(|j| Reverse((j.history_time(), j.occurrence)));
            let mut excess: Vec<&mut OwnedJob> = finished.into_iter().skip(keep).collect();
            excess.reverse();
            for old in excess {
                self.delete_job(&old.name).await?;
                tracing::info!(job = %old.name, "pruned finished Job beyond the history limit");
                self.ctx.reported.remove(&self.namespace, &old.name);
                old.deleting = true;
            }
        }
        Ok(())
    }

    /// Deletes a Job and its pods (in the background); one already gone is fine.
    pub(super) async fn delete_job(&self, name: &str) -> Result<(), Error> {
        match self.jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(err) if crate::error::status_code(&err) == Some(404) => {}
            Err(err) => return Err(err.into()),
        }
        self.ctx.jobs_cache.of(K::KIND).deleting(&self.uid, name);
        Ok(())
    }
}
