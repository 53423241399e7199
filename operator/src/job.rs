//! The Jobs that run occurrences: how one is built, and what an owned Job tells about its run.

use std::collections::BTreeMap;

use borcelle_crds::contract::{ENV_SPEC, ENV_TERMINATION_LOG, EXIT_PERMANENT, TERMINATION_LOG, TerminationReport};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapEnvSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, LocalObjectReference,
    Pod, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretEnvSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::context::JobSettings;
use crate::error::Error;
use crate::kinds::{Kind, Occurring};
use crate::names;
use crate::time::to_chrono;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_KIND: &str = "crm.borcelle.io/kind";
pub const LABEL_RESOURCE: &str = "crm.borcelle.io/resource";
pub const ANNOTATION_SCHEDULED_TIME: &str = "crm.borcelle.io/scheduled-time";
/// The label the Job controller puts on a Job's pods.
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const MANAGED_BY: &str = "borcelle-operator";
/// The non-root user the worker runs as (distroless "nonroot").
pub const WORKER_UID: i64 = 65532;

/// The labels of every Job (and its pods) run for `kind`'s resource `name`.
pub fn labels(kind: Kind, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "borcelle".to_owned()),
        (LABEL_COMPONENT.to_owned(), "occurrence".to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_KIND.to_owned(), kind.as_str().to_owned()),
        (LABEL_RESOURCE.to_owned(), names::label_value(name)),
    ])
}

/// The label selector of the Jobs run for `kind`'s resource `name`.
pub fn selector(kind: Kind, name: &str) -> String {
    format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_KIND}={},{LABEL_RESOURCE}={}",
        kind.as_str(),
        names::label_value(name)
    )
}

/// The selector of every Job of `kind` this operator manages (for the controller's Job watch).
pub fn kind_selector(kind: Kind) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_KIND}={}", kind.as_str())
}

pub use borcelle_crds::status::rfc3339;

fn quantity(value: &str) -> Quantity {
    Quantity(value.to_owned())
}

/// The Job that runs `obj`'s occurrence `scheduled`.
pub fn build_job<K: Occurring>(obj: &K, scheduled: DateTime<Utc>, settings: &JobSettings) -> Result<Job, Error> {
    let name = obj.name_any();
    let namespace = obj.namespace().ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let uid = obj.uid().ok_or_else(|| Error::MissingUid(name.clone()))?;
    let kind = K::KIND;
    let job_name = names::job_name(kind, &name, scheduled);
    let labels = labels(kind, &name);
    let scheduled_text = rfc3339(scheduled);
    let annotations = BTreeMap::from([(ANNOTATION_SCHEDULED_TIME.to_owned(), scheduled_text.clone())]);
    let owner = OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let args = [
        "worker",
        "occurrence",
        "--kind",
        kind.as_str(),
        "--namespace",
        &namespace,
        "--name",
        &name,
        "--uid",
        &uid,
        "--scheduled",
        &scheduled_text,
    ]
    .map(str::to_owned)
    .to_vec();
    let mut env_from = vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource { name: settings.env_secret.clone(), optional: Some(false) }),
        ..EnvFromSource::default()
    }];
    if let Some(config_map) = &settings.env_configmap {
        env_from.push(EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: config_map.clone(), optional: Some(false) }),
            ..EnvFromSource::default()
        });
    }
    let container = Container {
        name: "worker".to_owned(),
        image: Some(settings.image.clone()),
        command: Some(vec!["borcelle".to_owned()]),
        args: Some(args),
        env: Some(vec![
            EnvVar { name: ENV_SPEC.to_owned(), value: Some(obj.spec_json()?), value_from: None },
            EnvVar { name: ENV_TERMINATION_LOG.to_owned(), value: Some(TERMINATION_LOG.to_owned()), value_from: None },
        ]),
        env_from: Some(env_from),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
            ..SecurityContext::default()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity("50m")),
                ("memory".to_owned(), quantity("64Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), quantity("256Mi"))])),
            claims: None,
        }),
        // The root file system is read-only; the worker may still need a scratch directory.
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("Never".to_owned()),
        service_account_name: Some(settings.service_account.clone()),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        image_pull_secrets: (!settings.image_pull_secrets.is_empty()).then(|| {
            settings.image_pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect()
        }),
        volumes: Some(vec![Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(quantity("64Mi")),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: Some(namespace),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(settings.backoff_limit),
            active_deadline_seconds: Some(settings.active_deadline_seconds),
            // `borcelle worker occurrence` exits 3 when the occurrence can never run (an unknown
            // owner, a deleted note): retrying would not help, so the Job fails at once.
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "FailJob".to_owned(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "In".to_owned(),
                        values: vec![i32::from(EXIT_PERMANENT)],
                    }),
                    on_pod_conditions: None,
                }],
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// Where an owned Job's run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed,
}

/// What the reconciler needs to know about one of its Jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedJob {
    pub name: String,
    /// The occurrence it runs (its annotation; its creation time if the annotation is missing).
    pub occurrence: DateTime<Utc>,
    pub outcome: JobOutcome,
    /// When it finished, if it has.
    pub finished_at: Option<DateTime<Utc>>,
    /// Being deleted (replaced or pruned): neither active nor history.
    pub deleting: bool,
}

impl OwnedJob {
    /// Reads a Job; `None` for a Job without a name or any time to place it at.
    pub fn from_job(job: &Job) -> Option<Self> {
        let name = job.metadata.name.clone()?;
        let occurrence = job
            .annotations()
            .get(ANNOTATION_SCHEDULED_TIME)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| to_chrono(t.0)))?;
        let (outcome, finished_at) = finished(job);
        Some(OwnedJob { name, occurrence, outcome, finished_at, deleting: job.metadata.deletion_timestamp.is_some() })
    }

    /// Still running and not on its way out.
    pub fn is_active(&self) -> bool {
        self.outcome == JobOutcome::Running && !self.deleting
    }

    /// Finished, and kept as history.
    pub fn is_finished(&self) -> bool {
        self.outcome != JobOutcome::Running && !self.deleting
    }

    /// When it finished, else its occurrence: the order history is kept in.
    pub fn history_time(&self) -> DateTime<Utc> {
        self.finished_at.unwrap_or(self.occurrence)
    }
}

/// Whether `job` is controlled by the object with `uid`.
pub fn controlled_by(job: &Job, uid: &str) -> bool {
    job.owner_references().iter().any(|owner| owner.uid == uid && owner.controller == Some(true))
}

/// A Job's terminal condition (Complete or Failed, status True) and when it was reached.
fn finished(job: &Job) -> (JobOutcome, Option<DateTime<Utc>>) {
    let Some(status) = &job.status else { return (JobOutcome::Running, None) };
    for condition in status.conditions.iter().flatten() {
        if condition.status != "True" {
            continue;
        }
        let at = condition.last_transition_time.as_ref().map(|t| to_chrono(t.0));
        match condition.type_.as_str() {
            "Complete" => {
                return (JobOutcome::Succeeded, status.completion_time.as_ref().map(|t| to_chrono(t.0)).or(at));
            }
            "Failed" => return (JobOutcome::Failed, at),
            _ => {}
        }
    }
    (JobOutcome::Running, None)
}

/// The counts in the termination message of the most recently terminated container of `pods`
/// (a Job's pods: one per attempt). `None` when no terminated container left a readable message.
pub fn counts_from_pods(pods: &[Pod]) -> Option<TerminationReport> {
    pods.iter()
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|status| status.container_statuses.iter().flatten())
        .filter_map(|container| container.state.as_ref()?.terminated.as_ref())
        .filter_map(|terminated| {
            let counts = TerminationReport::parse(terminated.message.as_deref()?)?;
            Some((terminated.finished_at.as_ref().map(|t| t.0), counts))
        })
        .max_by_key(|(finished_at, _)| *finished_at)
        .map(|(_, counts)| counts)
}
