//! End-to-end against a real cluster: runs only when `BORCELLE_E2E_KUBECONFIG` names a kubeconfig.
//!
//! Installs the Helm chart's CRDs (`charts/borcelle/crds`, server-side apply) and the chart's
//! operator ServiceAccount and RBAC (rendered by Helm's engine through `charts/tests/render.py`;
//! run `scripts/chart-check` once to install it) into a fresh namespace, starts the real
//! `borcelle-operator` binary under that ServiceAccount (impersonated) watching the namespace,
//! creates resources, waits for their Jobs, marks a Job complete by patching its status (the
//! cluster may have no nodes to run it), and checks the resource's status and events. The
//! namespace is deleted afterwards. The kubeconfig's user must be allowed to impersonate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use borcelle_crds::{Broadcast, BroadcastPhase, Recipients, ScheduledReminder, ScheduledReminderSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use serde_json::json;

const SKIP: &str = "skipped: set BORCELLE_E2E_KUBECONFIG to run against a real cluster";

/// Says the test was skipped where `cargo test` shows it (the test harness captures `println!`,
/// not the process's stderr).
fn skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "e2e {test}: {SKIP}");
}

/// The cluster of `BORCELLE_E2E_KUBECONFIG`, if set.
async fn cluster() -> Option<(Client, PathBuf)> {
    let path = PathBuf::from(std::env::var_os("BORCELLE_E2E_KUBECONFIG")?);
    let kubeconfig = Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Some((Client::try_from(config).expect("client"), path))
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/borcelle/crds");
    for entry in std::fs::read_dir(&dir).expect("deploy/crds") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("borcelle-e2e").force(), &Patch::Apply(&crd)).await.expect("apply CRD");
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established).await.expect("CRD established in 30 s").unwrap();
    }
}

/// The chart's ServiceAccount and RBAC for an operator watching `namespace`, rendered by Helm's
/// engine and applied there; returns the ServiceAccount's and the Lease's names.
async fn install_chart_rbac(client: &Client, namespace: &str) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/tests/render.py");
    let values = json!({ "operator": { "watchNamespace": namespace } }).to_string();
    let output = std::process::Command::new("python3").arg(&script).arg(values).output().expect("python3");
    assert!(
        output.status.success(),
        "rendering the chart failed (run scripts/chart-check once to install Helm's library): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let documents: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("rendered manifests");
    let mut account = None;
    for mut doc in documents {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if !matches!(kind.as_str(), "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
            || !name.ends_with("-operator") && !name.ends_with("-operator-leader-election")
        {
            continue;
        }
        assert!(!kind.starts_with("Cluster"), "an operator watching one namespace needs no cluster-wide {kind}");
        doc["metadata"]["namespace"] = json!(namespace);
        if let Some(subjects) = doc["subjects"].as_array_mut() {
            for subject in subjects {
                subject["namespace"] = json!(namespace);
            }
        }
        if kind == "ServiceAccount" {
            account = Some(name.clone());
        }
        let (group, version) = match doc["apiVersion"].as_str().unwrap_or("v1").split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), "v1".to_owned()),
        };
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(&group, &version, &kind));
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        api.patch(&name, &PatchParams::apply("borcelle-e2e").force(), &Patch::Apply(&doc))
            .await
            .unwrap_or_else(|err| panic!("apply {kind} {name}: {err}"));
    }
    let account = account.expect("the chart renders the operator's ServiceAccount");
    // The chart lets the operator update only the Lease named after it.
    (account.clone(), account)
}

/// A fresh namespace, deleted on drop.
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client) -> Self {
        let name = format!("borcelle-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
        TestNamespace { client: client.clone(), name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = namespaces.delete(&name, &DeleteParams::background()).await;
            })
        });
    }
}

/// The operator binary under the chart's ServiceAccount (impersonated), watching `namespace` (its
/// Lease there too); killed on drop.
async fn start_operator(client: &Client, kubeconfig: &Path, namespace: &str) -> tokio::process::Child {
    let (account, lease) = install_chart_rbac(client, namespace).await;
    tokio::process::Command::new(env!("CARGO_BIN_EXE_borcelle-operator"))
        .env("KUBECONFIG", kubeconfig)
        .env("KUBE_RS_DEBUG_IMPERSONATE_USER", format!("system:serviceaccount:{namespace}:{account}"))
        .env("RUST_LOG", "info,borcelle_operator=debug")
        .args(["--namespace", namespace, "--lease-namespace", namespace, "--lease-name", &lease, "--pod-name", "e2e"])
        .args(["--listen", "127.0.0.1:0", "--log-format", "text", "--worker-image", "registry.example/borcelle:e2e"])
        .kill_on_drop(true)
        .spawn()
        .expect("start borcelle-operator")
}

/// Polls `probe` every second until it yields a value, for at most `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The first Job of resource `name`.
async fn first_job(jobs: &Api<Job>, kind: &str, name: &str) -> Job {
    let selector = format!("crm.borcelle.io/kind={kind},crm.borcelle.io/resource={name}");
    wait_for(&format!("a Job of {kind} {name}"), Duration::from_secs(100), || async {
        jobs.list(&ListParams::default().labels(&selector)).await.ok()?.items.into_iter().next()
    })
    .await
}

/// Marks a Job complete as the Job controller would (no pod needs to run).
async fn complete(jobs: &Api<Job>, name: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |type_: &str| {
        json!({"type": type_, "status": "True", "reason": "CompletionsReached",
               "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now})
    };
    let patch = json!({"status": {
        "startTime": now, "completionTime": now, "active": 0, "ready": 0, "succeeded": 1,
        "uncountedTerminatedPods": {},
        "conditions": [condition("SuccessCriteriaMet"), condition("Complete")]
    }});
    jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("mark the Job complete");
}

/// Reasons of the events about `name`.
async fn event_reasons(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = events.list(&ListParams::default()).await else { return Vec::new() };
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_due_every_minute_runs_as_jobs_on_a_real_cluster() {
    const TEST_NAME: &str = "a_reminder_due_every_minute_runs_as_jobs_on_a_real_cluster";
    let Some((client, kubeconfig)) = cluster().await else {
        skipped(TEST_NAME);
        return;
    };
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let ns = namespace.name.as_str();
    let _operator = start_operator(&client, &kubeconfig, ns).await;

    let reminders: Api<ScheduledReminder> = Api::namespaced(client.clone(), ns);
    let spec = ScheduledReminderSpec {
        owner: "ana@example.com".to_owned(),
        recipients: Recipients { emails: vec!["bo@example.com".to_owned()], ..Recipients::default() },
        subject: "Every minute".to_owned(),
        body: Some("An end-to-end reminder.".to_owned()),
        note_id: None,
        attachments: Vec::new(),
        schedule: "* * * * *".to_owned(),
        time_zone: Some("Europe/Berlin".to_owned()),
        suspend: false,
        concurrency_policy: borcelle_crds::decide::ConcurrencyPolicy::Forbid,
        starting_deadline_seconds: None,
        successful_runs_history_limit: None,
        failed_runs_history_limit: None,
    };
    let created =
        reminders.create(&PostParams::default(), &ScheduledReminder::new("every-minute", spec)).await.unwrap();

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = first_job(&jobs, "ScheduledReminder", "every-minute").await;
    let owner = &job.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("ScheduledReminder", created.uid().unwrap().as_str()));
    assert_eq!(owner.controller, Some(true));
    assert!(job.annotations().contains_key("crm.borcelle.io/scheduled-time"));
    let job_name = job.name_any();

    wait_for("the Job in status.active", Duration::from_secs(30), || async {
        let sr = reminders.get(&created.name_any()).await.ok()?;
        sr.status?.active.iter().any(|r| r.name == job_name).then_some(())
    })
    .await;

    complete(&jobs, &job_name).await;
    let status = wait_for("lastRun", Duration::from_secs(30), || async {
        let status = reminders.get(&created.name_any()).await.ok()?.status?;
        status.last_run.as_ref().filter(|run| run.name == job_name).map(|_| status.clone())
    })
    .await;
    assert_eq!(status.last_run.as_ref().unwrap().outcome, "Succeeded");
    assert!(status.last_successful_time.is_some());
    assert!(status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));

    wait_for("SuccessfulCreate and SawCompletedJob events", Duration::from_secs(30), || async {
        let reasons = event_reasons(&client, ns, "every-minute").await;
        (reasons.iter().any(|r| r == "SuccessfulCreate") && reasons.iter().any(|r| r == "SawCompletedJob"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_now_broadcast_is_delivered_on_a_real_cluster() {
    const TEST_NAME: &str = "a_send_now_broadcast_is_delivered_on_a_real_cluster";
    let Some((client, kubeconfig)) = cluster().await else {
        skipped(TEST_NAME);
        return;
    };
    install_crds(&client).await;
    let namespace = TestNamespace::create(&client).await;
    let ns = namespace.name.as_str();
    let _operator = start_operator(&client, &kubeconfig, ns).await;

    let broadcasts: Api<Broadcast> = Api::namespaced(client.clone(), ns);
    let spec = serde_json::from_value(json!({"title": "E2E", "message": "An end-to-end broadcast."})).unwrap();
    broadcasts.create(&PostParams::default(), &Broadcast::new("now", spec)).await.unwrap();

    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = first_job(&jobs, "Broadcast", "now").await;
    let job_name = job.name_any();
    assert!(job_name.starts_with("now-bc-"), "{job_name}");
    wait_for("phase Running", Duration::from_secs(30), || async {
        (broadcasts.get("now").await.ok()?.status?.phase? == BroadcastPhase::Running).then_some(())
    })
    .await;

    complete(&jobs, &job_name).await;
    let status = wait_for("phase Delivered", Duration::from_secs(30), || async {
        let status = broadcasts.get("now").await.ok()?.status?;
        (status.phase? == BroadcastPhase::Delivered).then_some(status)
    })
    .await;
    assert!(status.delivered_at.is_some());
    assert_eq!(status.last_run.unwrap().name, job_name);
    // Delivered once: no second Job.
    let all = jobs.list(&ListParams::default().labels("crm.borcelle.io/resource=now")).await.unwrap();
    assert_eq!(all.items.len(), 1);
}
