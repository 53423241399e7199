//! The Jobs and events of the resources under test, and a stand-in for the Job controller.

use std::time::Duration;

use borcelle_operator::error::status_code;
use borcelle_operator::time::to_jiff;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::wait_for;

/// The label selector of the Jobs of resource `name` of `kind`.
pub fn jobs_of(kind: &str, name: &str) -> ListParams {
    ListParams::default().labels(&format!("crm.borcelle.io/kind={kind},crm.borcelle.io/resource={name}"))
}

/// The first Job of resource `name`.
pub async fn first_job(jobs: &Api<Job>, kind: &str, name: &str) -> Job {
    let params = jobs_of(kind, name);
    wait_for(&format!("a Job of {kind} {name}"), Duration::from_secs(100), || async {
        jobs.list(&params).await.ok()?.items.into_iter().next()
    })
    .await
}

/// Marks a Job complete as the Job controller would once its one pod succeeded, so that no pod
/// needs to run (the cluster may have no nodes, and the worker image does not exist). A conflict
/// (the Job controller wrote the status in between) reads the Job again.
pub async fn complete(jobs: &Api<Job>, name: &str) {
    for _ in 0..10 {
        let job = jobs.get_status(name).await.unwrap_or_else(|err| panic!("read Job {name}: {err}"));
        let patch = completion_patch(&job, Time(to_jiff(chrono::Utc::now())));
        match jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return,
            Err(err) if status_code(&err) == Some(409) => continue,
            Err(err) => panic!("mark Job {name} complete: {err}"),
        }
    }
    panic!("mark Job {name} complete: it kept changing under the patch");
}

/// The status merge patch that completes `job` at `now`.
///
/// The API server checks a finished Job's status: `startTime` set, and immutable once set (the
/// Job controller may have set it already: it is kept), `completionTime` not before it, no
/// active, ready, terminating or uncounted pods, and `SuccessCriteriaMet` before `Complete`. The
/// patch carries the resourceVersion read, so that it never overwrites a status written since.
pub fn completion_patch(job: &Job, now: Time) -> Job {
    let status = job.status.clone().unwrap_or_default();
    let start = status.start_time.or_else(|| job.metadata.creation_timestamp.clone()).unwrap_or_else(|| now.clone());
    // The API server's clock set startTime; this machine's may be behind.
    let completed = if now.0 < start.0 { start.clone() } else { now };
    let condition = |type_: &str| JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        reason: Some("CompletionsReached".to_owned()),
        message: Some("Reached expected number of succeeded pods".to_owned()),
        last_probe_time: Some(completed.clone()),
        last_transition_time: Some(completed.clone()),
    };
    // A merge patch replaces the whole list: keep the conditions the Job already has.
    let mut conditions: Vec<JobCondition> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "SuccessCriteriaMet" && c.type_ != "Complete")
        .collect();
    conditions.extend([condition("SuccessCriteriaMet"), condition("Complete")]);
    Job {
        metadata: ObjectMeta { resource_version: job.metadata.resource_version.clone(), ..ObjectMeta::default() },
        spec: None,
        status: Some(JobStatus {
            start_time: Some(start),
            completion_time: Some(completed.clone()),
            conditions: Some(conditions),
            succeeded: Some(1),
            active: Some(0),
            ready: Some(0),
            terminating: Some(0),
            // Empty lists, not an empty object: a merge patch of `{}` would keep what is there.
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                failed: Some(Vec::new()),
                succeeded: Some(Vec::new()),
            }),
            ..JobStatus::default()
        }),
    }
}

/// Reasons of the events about `name`.
pub async fn event_reasons(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = events.list(&ListParams::default()).await else { return Vec::new() };
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}
