//! Acting on a decision: start an occurrence's Job (adopting one that exists), replace active
//! runs, or report a skipped or missed occurrence.

use borcelle_crds::RunSummary;
use borcelle_crds::decide::{Decision, Missed, SkipReason};
use borcelle_crds::status::RunOutcome;
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::events::EventType;

use super::Reconciler;
use crate::error::{Error, status_code};
use crate::job::{self, JobOutcome, OwnedJob};
use crate::kinds::Occurring;

impl<K: Occurring> Reconciler<'_, K> {
    pub(super) async fn act(&mut self, decision: &Decision, owned: &mut Vec<OwnedJob>) -> Result<(), Error> {
        match *decision {
            Decision::Wait { .. } | Decision::Suspended { .. } => Ok(()),
            Decision::Start { scheduled, replace_active, missed, .. } => {
                self.report_missed(missed, scheduled).await;
                if replace_active {
                    self.replace_active(owned).await?;
                }
                self.start(scheduled, owned).await?;
                self.state.last_schedule_time = Some(scheduled);
                Ok(())
            }
            Decision::Skip { scheduled, reason, missed, .. } => {
                self.report_missed(missed, scheduled).await;
                match reason {
                    SkipReason::RunAlreadyActive => {
                        let active: Vec<&str> =
                            owned.iter().filter(|j| j.is_active()).map(|j| j.name.as_str()).collect();
                        let note = format!(
                            "Not starting the occurrence of {}: concurrencyPolicy is Forbid and {} is still active",
                            job::rfc3339(scheduled),
                            active.join(", ")
                        );
                        self.event(EventType::Normal, "JobAlreadyActive", "Skip", note).await;
                    }
                    SkipReason::DeadlinePassed => {
                        let note = format!(
                            "Missed the occurrence of {}: it could not start within startingDeadlineSeconds",
                            job::rfc3339(scheduled)
                        );
                        self.event(EventType::Warning, "MissSchedule", "Skip", note).await;
                    }
                }
                tracing::info!(scheduled = %job::rfc3339(scheduled), ?reason, "skipped occurrence");
                self.state.last_schedule_time = Some(scheduled);
                Ok(())
            }
        }
    }

    async fn report_missed(&self, missed: Missed, scheduled: DateTime<Utc>) {
        if missed.count > 0 {
            let note = format!(
                "Missed {} earlier occurrence(s) before {}: only the most recent one runs",
                missed.count,
                job::rfc3339(scheduled)
            );
            self.event(EventType::Warning, "MissSchedule", "Schedule", note).await;
        }
        if missed.too_many {
            let note = format!(
                "More than {} occurrences were missed: set or lower startingDeadlineSeconds, or check that the operator runs",
                borcelle_crds::decide::MAX_MISSED
            );
            self.event(EventType::Warning, "TooManyMissedTimes", "Schedule", note).await;
        }
    }

    /// Stops the active runs (concurrencyPolicy Replace).
    async fn replace_active(&mut self, owned: &mut [OwnedJob]) -> Result<(), Error> {
        for active in owned.iter_mut().filter(|j| j.is_active()) {
            self.delete_job(&active.name).await?;
            active.deleting = true;
            tracing::info!(job = %active.name, "deleted active Job to replace it");
            self.state.last_run = Some(RunSummary {
                occurrence: active.occurrence,
                name: active.name.clone(),
                outcome: RunOutcome::Replaced.as_str().to_owned(),
                delivered: 0,
                failed: 0,
                finished_at: Some(crate::time::whole_seconds(self.now)),
                error: None,
            });
            let note = format!("Deleted job {}: replaced by a newer occurrence", active.name);
            self.event(EventType::Normal, "SuccessfulDelete", "DeleteJob", note).await;
        }
        Ok(())
    }

    /// Creates the occurrence's Job, or adopts the one that already has its name.
    async fn start(&mut self, scheduled: DateTime<Utc>, owned: &mut Vec<OwnedJob>) -> Result<(), Error> {
        let job = job::build_job(self.obj, scheduled, &self.ctx.jobs)?;
        let name = job.name_any();
        let params = PostParams { field_manager: Some(crate::FIELD_MANAGER.to_owned()), ..PostParams::default() };
        match self.jobs.create(&params, &job).await {
            Ok(_) => {
                let lag = (self.now - scheduled).num_milliseconds() as f64 / 1000.0;
                self.ctx.metrics.job_created(K::KIND, lag);
                tracing::info!(job = %name, scheduled = %job::rfc3339(scheduled), lag_seconds = lag, "created Job");
                self.event(EventType::Normal, "SuccessfulCreate", "CreateJob", format!("Created job {name}")).await;
                let created = OwnedJob {
                    name,
                    occurrence: scheduled,
                    outcome: JobOutcome::Running,
                    finished_at: None,
                    deleting: false,
                };
                self.ctx.jobs_cache.of(K::KIND).created(&self.uid, created.clone());
                owned.push(created);
                Ok(())
            }
            Err(err) if status_code(&err) == Some(409) => {
                // Created before (a lost status write, a stale cache, a previous leader): the
                // deterministic name makes this the same run, so adopt it instead of duplicating.
                let existing = self.jobs.get(&name).await?;
                if !job::controlled_by(&existing, &self.uid) {
                    return Err(Error::JobNameTaken(name));
                }
                tracing::info!(job = %name, "adopted existing Job");
                let adopted = OwnedJob::from_job(&existing).unwrap_or(OwnedJob {
                    name,
                    occurrence: scheduled,
                    outcome: JobOutcome::Running,
                    finished_at: None,
                    deleting: false,
                });
                self.ctx.jobs_cache.of(K::KIND).created(&self.uid, adopted.clone());
                if !owned.iter().any(|j| j.name == adopted.name) {
                    owned.push(adopted);
                }
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }
}
