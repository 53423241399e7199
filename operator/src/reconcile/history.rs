//! Finished runs: reporting each once (event, `lastRun`, counts from the worker's termination
//! message) and pruning them beyond the history limits.

use std::cmp::Reverse;
use std::collections::HashSet;

use borcelle_crds::RunSummary;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::events::EventType;

use super::Reconciler;
use crate::error::Error;
use crate::job::{self, JobOutcome, OwnedJob};
use crate::kinds::Occurring;

impl<K: Occurring> Reconciler<'_, K> {
    /// Reports the Jobs that finished since the status was written: those it lists as active,
    /// and those newer than its `lastRun`.
    pub(super) async fn observe_finished(&mut self, owned: &[OwnedJob]) -> Result<(), Error> {
        let was_active: HashSet<&str> = self.before.active.iter().map(|r| r.name.as_str()).collect();
        let last_occurrence = self.before.last_run.as_ref().map(|r| r.occurrence);
        let mut newly: Vec<&OwnedJob> = owned
            .iter()
            .filter(|j| j.is_finished())
            .filter(|j| was_active.contains(j.name.as_str()) || last_occurrence.is_none_or(|o| j.occurrence > o))
            .filter(|j| !self.ctx.reported.contains(&self.namespace, &j.name))
            .collect();
        newly.sort_by_key(|j| (j.history_time(), j.occurrence));
        for finished in newly {
            self.report_finished(finished).await?;
        }
        Ok(())
    }

    async fn report_finished(&mut self, finished: &OwnedJob) -> Result<(), Error> {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let params = ListParams::default().labels(&format!("{}={}", job::LABEL_JOB_NAME, finished.name));
        let pods = pods.list(&params).await?;
        let counts = job::counts_from_pods(&pods.items).unwrap_or_default();
        let succeeded = finished.outcome == JobOutcome::Succeeded;
        let outcome = if succeeded { job::SUCCEEDED } else { job::FAILED };
        tracing::info!(job = %finished.name, outcome, delivered = counts.delivered, failed = counts.failed, "run finished");
        self.event(
            EventType::Normal,
            "SawCompletedJob",
            "ObserveJob",
            format!(
                "Saw completed job: {}, status: {}, delivered: {}, failed: {}",
                finished.name,
                if succeeded { "Complete" } else { "Failed" },
                counts.delivered,
                counts.failed
            ),
        )
        .await;
        self.ctx.reported.insert(&self.namespace, &finished.name);
        let finished_at = finished.finished_at;
        let is_latest = self
            .state
            .last_run
            .as_ref()
            .and_then(|run| run.finished_at)
            .is_none_or(|previous| finished.history_time() >= previous);
        if is_latest {
            self.state.last_run = Some(RunSummary {
                occurrence: finished.occurrence,
                name: finished.name.clone(),
                outcome: outcome.to_owned(),
                delivered: counts.delivered,
                failed: counts.failed,
                finished_at,
            });
            self.state.recipients = Some(counts.recipients.unwrap_or(counts.delivered));
        }
        if succeeded {
            let at = finished.history_time();
            self.state.last_successful_time = self.state.last_successful_time.max(Some(at));
        }
        Ok(())
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
            Ok(_) => Ok(()),
            Err(err) if crate::error::status_code(&err) == Some(404) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}
