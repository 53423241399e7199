//! The benchmark's objects, shaped as a real API server returns them: ScheduledReminders applied
//! with `kubectl apply` whose status an earlier leader wrote, and their finished Jobs as the Job
//! controller left them (server defaults, controller labels, full status, managedFields). Jobs are
//! built by the operator's own `build_job`, so labels, owner references and pod templates are the
//! real ones; statuses are built by the same rules the operator applies.

use borcelle_crds::decide::{Decision, Missed, Observed, decide_timing};
use borcelle_crds::status::{Outlook, RunState, decision_note, rfc3339};
use borcelle_crds::{RunRef, RunSummary, ScheduledReminder, Timing};
use borcelle_operator::Kind;
use borcelle_operator::context::JobSettings;
use borcelle_operator::job::build_job;
use borcelle_operator::names::job_name;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value, json};

pub const NAMESPACES: usize = 20;
const IMAGE: &str = "registry.example/borcelle:1.4.0";

/// (schedule, time zone): the first three have an occurrence at 09:00 UTC, due at [`now`]; the
/// other three had theirs before and are not due.
const SCHEDULES: [(&str, Option<&str>); 6] = [
    ("0 * * * *", None),
    ("0 10 * * *", Some("Europe/Berlin")),
    ("0 4 * * 1-5", Some("America/New_York")),
    ("30 * * * *", None),
    ("0 */2 * * *", None),
    ("30 9 * * 1-5", Some("Europe/Berlin")),
];

/// The operator's fixed clock, and the time the mock API server stamps on what it writes.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 30).single().expect("a valid time")
}

pub fn job_settings() -> JobSettings {
    JobSettings { image: IMAGE.to_owned(), ..JobSettings::default() }
}

fn stamp(t: DateTime<Utc>) -> String {
    rfc3339(t)
}

/// A reminder, its last (finished) Job, and whether an occurrence is due at [`now`].
pub struct Seed {
    pub reminder: Value,
    pub job: Value,
    pub due: bool,
}

/// The `managedFields` tree (FieldsV1) of `value`: what a field manager owns when it set it all.
pub fn fields_v1(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut fields: Map<String, Value> = map.iter().map(|(k, v)| (format!("f:{k}"), owned(v))).collect();
            fields.remove("f:resourceVersion");
            Value::Object(fields)
        }
        _ => json!({}),
    }
}

fn owned(value: &Value) -> Value {
    match value {
        Value::Object(_) => {
            let mut fields = fields_v1(value);
            fields["."] = json!({});
            fields
        }
        Value::Array(items) if items.iter().all(|i| i.get("name").is_some() || i.get("type").is_some()) => {
            let mut fields = Map::new();
            for item in items {
                let key = match (item.get("name"), item.get("type")) {
                    (Some(name), _) => json!({ "name": name }),
                    (None, Some(type_)) => json!({ "type": type_ }),
                    (None, None) => json!({}),
                };
                fields.insert(format!("k:{key}"), owned(item));
            }
            Value::Object(fields)
        }
        _ => json!({}),
    }
}

fn managed(manager: &str, operation: &str, subresource: Option<&str>, at: DateTime<Utc>, set: &Value) -> Value {
    let api_version = set.get("apiVersion").cloned().unwrap_or(json!("v1"));
    let mut fields = fields_v1(set);
    if let Some(fields) = fields.as_object_mut() {
        fields.remove("f:apiVersion");
    }
    let mut entry = json!({"manager": manager, "operation": operation, "apiVersion": api_version,
        "time": stamp(at), "fieldsType": "FieldsV1", "fieldsV1": fields});
    if let Some(subresource) = subresource {
        entry["subresource"] = json!(subresource);
    }
    entry
}

fn uid(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// The `i`th reminder and its Job.
pub fn seed(i: usize) -> Seed {
    let name = format!("reminder-{i:05}");
    let namespace = format!("tenant-{:02}", i % NAMESPACES);
    let (schedule, zone) = SCHEDULES[i % SCHEDULES.len()];
    let mut spec = json!({
        "owner": format!("user{}@example.com", i % 300),
        "recipients": {"emails": [format!("contact{i}@example.com"), format!("contact{}@example.com", i + 1)]},
        "subject": "Follow up on the quarterly review",
        "body": "Hello, a quick reminder to follow up on the points we discussed in the quarterly review.",
        "schedule": schedule,
        "concurrencyPolicy": "Forbid"
    });
    if let Some(zone) = zone {
        spec["timeZone"] = json!(zone);
    }
    // A quarter keep one successful run: their previous Job is pruned once the next one finishes.
    if i.is_multiple_of(4) {
        spec["successfulRunsHistoryLimit"] = json!(1);
    }
    let created = Utc.with_ymd_and_hms(2026, 11, 20, 8, 59, 0).single().expect("a valid time");
    let applied = json!({"apiVersion": "crm.borcelle.io/v1alpha1", "kind": "ScheduledReminder",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "sales"}}, "spec": spec});
    let mut reminder = json!({
        "apiVersion": "crm.borcelle.io/v1alpha1",
        "kind": "ScheduledReminder",
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid(i), "generation": 1,
            "creationTimestamp": stamp(created), "labels": {"team": "sales"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")},
        },
        "spec": spec,
    });
    let typed: ScheduledReminder = serde_json::from_value(reminder.clone()).expect("a valid reminder");
    let timing = typed.spec.timing().expect("a valid schedule");
    let policy = typed.spec.policy();
    let Timing::Repeat(cron, tz) = &timing else { unreachable!("reminders repeat") };
    // The last occurrence before 09:00 ran and finished a minute later.
    let cutoff = now() - Duration::seconds(90);
    let prev = cron.occurrences(cutoff - Duration::days(8), *tz).take_while(|t| *t <= cutoff).last().expect("one");
    let finished = prev + Duration::seconds(60);
    let job = job_name(Kind::ScheduledReminder, &name, prev);

    // The status an earlier leader wrote: the Job started at `prev`, seen finished at `finished`.
    let outlook = Outlook { suspended: policy.suspend, expired: false };
    let observed = Observed { created, last_scheduled: Some(prev), active_runs: 0 };
    let waited = decide_timing(&timing, &policy, &observed, finished);
    let started =
        Decision::Start { scheduled: prev, replace_active: false, missed: Missed::default(), next: waited.next() };
    let mut state = RunState { observed_generation: Some(1), last_schedule_time: Some(prev), ..RunState::default() };
    state.active = vec![RunRef { name: job.clone(), scheduled_time: prev }];
    state.decided(&started, outlook, decision_note(&started), prev);
    state.active.clear();
    let summary = RunSummary {
        occurrence: prev,
        name: job.clone(),
        outcome: "Succeeded".to_owned(),
        delivered: 2,
        failed: 0,
        finished_at: Some(finished),
        error: None,
    };
    state.finished(summary, finished, Some(2));
    state.decided(&waited, outlook, decision_note(&waited), finished);
    let status = serde_json::to_value(state.reminder_status()).expect("a status");
    let due = matches!(decide_timing(&timing, &policy, &observed, now()), Decision::Start { .. });

    reminder["metadata"]["managedFields"] = json!([
        managed(
            "kubectl-client-side-apply",
            "Update",
            None,
            created,
            &json!({"apiVersion": "crm.borcelle.io/v1alpha1",
            "metadata": {"annotations": reminder["metadata"]["annotations"], "labels": reminder["metadata"]["labels"]},
            "spec": spec})
        ),
        managed(
            "borcelle-operator",
            "Apply",
            Some("status"),
            finished,
            &json!({"apiVersion": "crm.borcelle.io/v1alpha1",
            "status": status})
        ),
    ]);
    reminder["status"] = status;

    let built = build_job(&typed, prev, &job_settings()).expect("a Job");
    let mut job =
        created_job(serde_json::to_value(built).expect("a Job"), &format!("11111111-0000-4000-8000-{i:012}"), prev);
    running(&mut job, prev + Duration::seconds(1));
    complete(&mut job, finished);
    Seed { reminder, job, due }
}

/// A Job as the API server stores it when the operator creates `submitted`: uid, defaults,
/// the controller's labels and selector, and the creator's managedFields.
pub fn created_job(submitted: Value, uid: &str, at: DateTime<Utc>) -> Value {
    let mut job = submitted;
    let name = job["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    let creator = managed(
        "borcelle-operator",
        "Update",
        None,
        at,
        &json!({"apiVersion": "batch/v1",
        "metadata": {"labels": job["metadata"]["labels"], "annotations": job["metadata"]["annotations"],
            "ownerReferences": job["metadata"]["ownerReferences"]}, "spec": job["spec"]}),
    );
    let controller_labels = json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name});
    let metadata = &mut job["metadata"];
    metadata["uid"] = json!(uid);
    metadata["generation"] = json!(1);
    metadata["creationTimestamp"] = json!(stamp(at));
    metadata["managedFields"] = json!([creator]);
    let spec = &mut job["spec"];
    for (key, value) in [
        ("parallelism", json!(1)),
        ("completions", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ("selector", json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})),
    ] {
        spec[key] = value;
    }
    let template = &mut spec["template"];
    for (key, value) in controller_labels.as_object().into_iter().flatten() {
        template["metadata"]["labels"][key] = value.clone();
    }
    let pod = &mut template["spec"];
    pod["dnsPolicy"] = json!("ClusterFirst");
    pod["schedulerName"] = json!("default-scheduler");
    pod["terminationGracePeriodSeconds"] = json!(30);
    for container in pod["containers"].as_array_mut().into_iter().flatten() {
        container["terminationMessagePath"] = json!("/dev/termination-log");
        container["imagePullPolicy"] = json!("IfNotPresent");
    }
    job["status"] = json!({});
    job
}

fn set_status(job: &mut Value, status: Value, at: DateTime<Utc>) {
    let entry = managed(
        "kube-controller-manager",
        "Update",
        Some("status"),
        at,
        &json!({"apiVersion": "batch/v1", "status": status}),
    );
    if let Some(fields) = job["metadata"]["managedFields"].as_array_mut() {
        fields.retain(|f| f["manager"] != "kube-controller-manager");
        fields.push(entry);
    }
    job["status"] = status;
}

/// The Job controller has started the Job's pod.
pub fn running(job: &mut Value, at: DateTime<Utc>) {
    let status = json!({"startTime": stamp(at), "active": 1, "ready": 0, "terminating": 0,
        "uncountedTerminatedPods": {}});
    set_status(job, status, at);
}

/// The Job's pod succeeded at `at`.
pub fn complete(job: &mut Value, at: DateTime<Utc>) {
    let started = job["status"]["startTime"].clone();
    let condition = |type_: &str| json!({"type": type_, "status": "True", "lastProbeTime": stamp(at), "lastTransitionTime": stamp(at)});
    let status = json!({"startTime": started, "completionTime": stamp(at), "succeeded": 1, "ready": 0,
        "terminating": 0, "uncountedTerminatedPods": {},
        "conditions": [condition("SuccessCriteriaMet"), condition("Complete")]});
    set_status(job, status, at);
}

/// Whether the Job has finished.
pub fn is_complete(job: &Value) -> bool {
    job["status"]["completionTime"].is_string()
}

/// The finished pod of a finished Job, with the worker's termination report.
pub fn pod(job: &Value) -> Value {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let finished = job["status"]["completionTime"].clone();
    let mut spec = job["spec"]["template"]["spec"].clone();
    spec["nodeName"] = json!("worker-3");
    spec["serviceAccount"] = spec["serviceAccountName"].clone();
    spec["enableServiceLinks"] = json!(true);
    spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    spec["priority"] = json!(0);
    spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    ]);
    let report = r#"{"delivered":2,"failed":0,"recipients":2}"#;
    let condition =
        |type_: &str, status: &str| json!({"type": type_, "status": status, "lastTransitionTime": finished});
    let status = json!({
        "phase": "Succeeded", "hostIP": "10.0.0.13", "podIP": "10.244.3.17", "qosClass": "Burstable",
        "startTime": job["status"]["startTime"],
        "conditions": [condition("PodReadyToStartContainers", "False"), condition("Initialized", "True"),
            condition("Ready", "False"), condition("ContainersReady", "False"), condition("PodScheduled", "True")],
        "containerStatuses": [{"name": "worker", "image": IMAGE, "imageID": format!("{IMAGE}@sha256:{}", "0".repeat(64)),
            "containerID": format!("containerd://{}", "1".repeat(64)), "ready": false, "started": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": report,
                "startedAt": job["status"]["startTime"], "finishedAt": finished, "containerID": format!("containerd://{}", "1".repeat(64))}}}]
    });
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{name}-x7k2p"), "generateName": format!("{name}-"), "namespace": job["metadata"]["namespace"],
            "uid": format!("22222222{}", &job["metadata"]["uid"].as_str().unwrap_or_default().get(8..).unwrap_or_default()),
            "resourceVersion": job["metadata"]["resourceVersion"], "creationTimestamp": job["metadata"]["creationTimestamp"],
            "labels": job["spec"]["template"]["metadata"]["labels"], "annotations": job["spec"]["template"]["metadata"]["annotations"],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true}],
            "finalizers": [],
        },
        "spec": spec,
        "status": status,
    });
    pod["metadata"]["managedFields"] = json!([
        managed(
            "kube-controller-manager",
            "Update",
            None,
            now(),
            &json!({"apiVersion": "v1",
            "metadata": {"labels": pod["metadata"]["labels"], "ownerReferences": pod["metadata"]["ownerReferences"]}, "spec": pod["spec"]})
        ),
        managed("kubelet", "Update", Some("status"), now(), &json!({"apiVersion": "v1", "status": pod["status"]})),
    ]);
    pod
}
