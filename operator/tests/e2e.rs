//! End-to-end against a real cluster: runs only when `BORCELLE_E2E_KUBECONFIG` names a kubeconfig.
//!
//! Installs the Helm chart's CRDs (`charts/borcelle/crds`, server-side apply) and the chart's
//! operator ServiceAccount and RBAC (rendered by Helm's engine through `charts/tests/render.py`;
//! run `scripts/chart-check` once to install it) into a fresh namespace, starts the real
//! `borcelle-operator` binary under that ServiceAccount (impersonated) watching the namespace,
//! creates resources, waits for their Jobs, marks Jobs complete by patching their status (the
//! cluster may have no nodes to run them), and checks the resources' status, events and
//! `kubectl get` output (when `kubectl` is on PATH). The namespace is deleted afterwards. The
//! kubeconfig's user must be allowed to impersonate. The helpers are in `e2e_support/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::BTreeSet;
use std::time::Duration;

use borcelle_crds::decide::ConcurrencyPolicy;
use borcelle_crds::{Broadcast, BroadcastPhase, Recipients, ScheduledReminder, ScheduledReminderSpec};
use chrono::{DateTime, Timelike, Utc};
use e2e_support::{Env, Operator, cluster, complete, event_reasons, first_job, jobs_of, kubectl_next_cell, wait_for};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// How long the leader has to become ready.
const READY_IN: Duration = Duration::from_secs(60);

/// A reminder of `subject` from ana@example.com to bo@example.com on `schedule` (UTC).
fn reminder_spec(subject: &str, schedule: &str, concurrency_policy: ConcurrencyPolicy) -> ScheduledReminderSpec {
    ScheduledReminderSpec {
        owner: "ana@example.com".to_owned(),
        recipients: Recipients { emails: vec!["bo@example.com".to_owned()], ..Recipients::default() },
        subject: subject.to_owned(),
        body: Some("An end-to-end reminder.".to_owned()),
        note_id: None,
        attachments: Vec::new(),
        schedule: schedule.to_owned(),
        time_zone: None,
        suspend: false,
        concurrency_policy,
        starting_deadline_seconds: None,
        successful_runs_history_limit: None,
        failed_runs_history_limit: None,
    }
}

/// Every `null` in `value`, by path: server-side apply reads a `null` as a field that is set,
/// and refuses one the schema does not declare.
fn nulls(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Null => out.push(path.to_owned()),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, item)| nulls(item, &format!("{path}[{i}]"), out))
        }
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| nulls(v, &format!("{path}.{k}"), out)),
        _ => {}
    }
}

// The suite's own helpers, checked without a cluster (the chart one needs Helm's library).

#[test]
fn the_charts_operator_rbac_renders_into_typed_objects_in_the_test_namespace() {
    const TEST_NAME: &str = "the_charts_operator_rbac_renders_into_typed_objects_in_the_test_namespace";
    let rbac = match e2e_support::render_chart_rbac("e2e-ns") {
        Ok(rbac) => rbac,
        Err(err) => return e2e_support::note(TEST_NAME, &format!("skipped: the chart does not render here: {err}")),
    };
    assert!(!rbac.roles.is_empty() && !rbac.bindings.is_empty());
    let roles: Vec<_> = rbac.roles.iter().map(|role| serde_json::to_value(role).unwrap()).collect();
    let bindings: Vec<_> = rbac.bindings.iter().map(|binding| serde_json::to_value(binding).unwrap()).collect();
    let account = serde_json::to_value(&rbac.account).unwrap();
    // What is applied: no nulls, every object in the test's namespace, and no Role with subjects.
    for doc in roles.iter().chain(&bindings).chain([&account]) {
        let mut found = Vec::new();
        nulls(doc, "", &mut found);
        assert!(found.is_empty(), "null fields {found:?} in {doc}");
        assert_eq!(doc["metadata"]["namespace"], "e2e-ns", "{doc}");
    }
    for role in &roles {
        assert!(role.get("subjects").is_none(), "a Role has no subjects: {role}");
    }
    for binding in &rbac.bindings {
        let subjects = binding.subjects.as_deref().unwrap_or_default();
        assert!(!subjects.is_empty(), "{binding:?}");
        for subject in subjects {
            assert_eq!(
                (subject.name.as_str(), subject.namespace.as_deref()),
                (rbac.account.name_any().as_str(), Some("e2e-ns"))
            );
        }
    }
}

#[test]
fn a_job_is_completed_with_its_start_time_kept() {
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "j", "resourceVersion": "7", "creationTimestamp": "2030-01-01T00:00:00Z"},
        "status": {"startTime": "2030-01-01T00:00:10Z", "active": 1, "ready": 0,
                   "conditions": [{"type": "Suspended", "status": "False"}]}
    }))
    .unwrap();
    // This machine's clock behind the API server's: completionTime must still not precede startTime.
    let now = serde_json::from_value(json!("2030-01-01T00:00:05Z")).unwrap();
    let patch = serde_json::to_value(e2e_support::completion_patch(&job, now)).unwrap();
    assert_eq!(patch["metadata"], json!({"resourceVersion": "7"}));
    assert!(patch.get("spec").is_none());
    let status = &patch["status"];
    assert_eq!(status["startTime"], "2030-01-01T00:00:10Z");
    assert_eq!(status["completionTime"], "2030-01-01T00:00:10Z");
    let types: Vec<_> = status["conditions"].as_array().unwrap().iter().map(|c| c["type"].clone()).collect();
    assert_eq!(types, [json!("Suspended"), json!("SuccessCriteriaMet"), json!("Complete")]);
    assert_eq!((status["succeeded"].clone(), status["active"].clone()), (json!(1), json!(0)));
    assert_eq!(status["uncountedTerminatedPods"], json!({"failed": [], "succeeded": []}));

    // Without a startTime yet (the Job controller has not seen the Job): its creation time.
    let fresh: Job = serde_json::from_value(json!({
        "metadata": {"name": "j", "resourceVersion": "3", "creationTimestamp": "2030-01-01T00:00:00Z"}
    }))
    .unwrap();
    let now = serde_json::from_value(json!("2030-01-01T00:00:05Z")).unwrap();
    let patch = serde_json::to_value(e2e_support::completion_patch(&fresh, now)).unwrap();
    assert_eq!(patch["status"]["startTime"], "2030-01-01T00:00:00Z");
    assert_eq!(patch["status"]["completionTime"], "2030-01-01T00:00:05Z");
}

#[test]
fn the_next_cell_is_read_under_its_header_in_kubectl_output() {
    // As kubectl prints it: columns padded with spaces, empty cells blank, headers with spaces.
    let table = "\
NAME    SCHEDULE    TIME ZONE       SUSPEND   NEXT                   LAST   AGE
berlin  0 9 * * *   Europe/Berlin   false     2030-01-02T08:00:00Z          5s
daily   0 9 * * *                   false     2030-01-02T09:00:00Z          7s
";
    assert_eq!(e2e_support::next_cell(table, "daily"), "2030-01-02T09:00:00Z");
    assert_eq!(e2e_support::next_cell(table, "berlin"), "2030-01-02T08:00:00Z");
}

#[test]
#[should_panic(expected = "kubectl get shows <invalid>")]
fn a_future_time_shown_as_an_age_fails_the_kubectl_check() {
    let table = "NAME    SCHEDULE    TIME ZONE   SUSPEND   NEXT        LAST   AGE\ndaily   0 9 * * *               false     <invalid>          5s\n";
    e2e_support::next_cell(table, "daily");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_becomes_ready_on_a_real_cluster() {
    let Some(mut env) = Env::start("the_leader_becomes_ready_on_a_real_cluster").await else { return };
    env.operator.wait_leader_ready(READY_IN).await;
    let leases: Api<Lease> = env.api();
    let lease = leases.get(&env.operator.lease).await.expect("the leader's Lease");
    let holder = lease.spec.and_then(|spec| spec.holder_identity).unwrap_or_default();
    assert!(holder.starts_with(&format!("{}_", Operator::POD_NAME)), "the Lease is held by {holder:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reminder_due_every_minute_runs_as_jobs_on_a_real_cluster() {
    let Some(env) = Env::start("a_reminder_due_every_minute_runs_as_jobs_on_a_real_cluster").await else { return };
    let reminders: Api<ScheduledReminder> = env.api();
    let mut spec = reminder_spec("Every minute", "* * * * *", ConcurrencyPolicy::Forbid);
    spec.time_zone = Some("Europe/Berlin".to_owned());
    let created =
        reminders.create(&PostParams::default(), &ScheduledReminder::new("every-minute", spec)).await.unwrap();

    let jobs: Api<Job> = env.api();
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
        let reasons = event_reasons(&env.client, env.ns(), "every-minute").await;
        (reasons.iter().any(|r| r == "SuccessfulCreate") && reasons.iter().any(|r| r == "SawCompletedJob"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_now_broadcast_is_delivered_on_a_real_cluster() {
    let Some(env) = Env::start("a_send_now_broadcast_is_delivered_on_a_real_cluster").await else { return };
    let broadcasts: Api<Broadcast> = env.api();
    let spec = serde_json::from_value(json!({"title": "E2E", "message": "An end-to-end broadcast."})).unwrap();
    broadcasts.create(&PostParams::default(), &Broadcast::new("now", spec)).await.unwrap();

    let jobs: Api<Job> = env.api();
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

/// The times of a reminder's status that must never move back. `None` orders before any time,
/// so comparing these also fails when a time that was set disappears.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Progress {
    last_schedule_time: Option<DateTime<Utc>>,
    last_run_occurrence: Option<DateTime<Utc>>,
    last_run_finished_at: Option<DateTime<Utc>>,
}

impl Progress {
    fn of(reminder: &ScheduledReminder) -> Self {
        let status = reminder.status.as_ref();
        let last_run = status.and_then(|s| s.last_run.as_ref());
        Progress {
            last_schedule_time: status.and_then(|s| s.last_schedule_time),
            last_run_occurrence: last_run.map(|run| run.occurrence),
            last_run_finished_at: last_run.and_then(|run| run.finished_at),
        }
    }

    /// Which of the times moved back from `earlier`.
    fn regressions(&self, earlier: &Progress) -> Vec<&'static str> {
        let mut back = Vec::new();
        if self.last_schedule_time < earlier.last_schedule_time {
            back.push("lastScheduleTime");
        }
        if self.last_run_occurrence < earlier.last_run_occurrence {
            back.push("lastRun.occurrence");
        }
        if self.last_run_finished_at < earlier.last_run_finished_at {
            back.push("lastRun.finishedAt");
        }
        back
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn last_run_never_goes_backwards_on_a_real_cluster() {
    const WINDOW: Duration = Duration::from_secs(180);
    let Some(mut env) = Env::start("last_run_never_goes_backwards_on_a_real_cluster").await else { return };
    env.operator.wait_leader_ready(READY_IN).await;
    let reminders: Api<ScheduledReminder> = env.api();
    let spec = reminder_spec("Replace", "* * * * *", ConcurrencyPolicy::Replace);
    reminders.create(&PostParams::default(), &ScheduledReminder::new("replace", spec)).await.unwrap();
    let jobs: Api<Job> = env.api();
    let params = jobs_of("ScheduledReminder", "replace");

    // The window opens with the first Job, so that it spans three occurrences: the first Job is
    // completed, the second left running until the third replaces it, the third completed.
    first_job(&jobs, "ScheduledReminder", "replace").await;
    let end = tokio::time::Instant::now() + WINDOW;
    let mut seen: Vec<String> = Vec::new();
    let mut outcomes = BTreeSet::new();
    let mut history: Vec<Progress> = Vec::new();
    while tokio::time::Instant::now() < end {
        // A failed read is not what this test is about: try again next second.
        if let Ok(list) = jobs.list(&params).await {
            let mut new: Vec<Job> = list
                .items
                .into_iter()
                .filter(|job| job.metadata.deletion_timestamp.is_none() && !seen.contains(&job.name_any()))
                .collect();
            new.sort_by_key(|job| job.metadata.creation_timestamp.as_ref().map(|t| t.0));
            for job in new {
                // Every other Job completes; the others run until the next occurrence replaces them.
                if seen.len().is_multiple_of(2) {
                    complete(&jobs, &job.name_any()).await;
                }
                seen.push(job.name_any());
            }
        }
        if let Ok(reminder) = reminders.get("replace").await {
            let now = Progress::of(&reminder);
            if let Some(before) = history.last() {
                let back = now.regressions(before);
                assert!(back.is_empty(), "{back:?} went backwards: {now:?} after {history:#?}");
            }
            if history.last() != Some(&now) {
                history.push(now);
            }
            outcomes.extend(reminder.status.and_then(|s| s.last_run).map(|run| run.outcome));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(seen.len() >= 3, "three occurrences in {WINDOW:?}, saw Jobs {seen:?}");
    for outcome in ["Succeeded", "Replaced"] {
        assert!(outcomes.contains(outcome), "no lastRun {outcome} in {WINDOW:?}: saw {outcomes:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_shows_the_next_occurrence_as_a_time_on_a_real_cluster() {
    const TEST_NAME: &str = "kubectl_get_shows_the_next_occurrence_as_a_time_on_a_real_cluster";
    let Some((client, kubeconfig)) = cluster().await else {
        e2e_support::skipped(TEST_NAME);
        return;
    };
    let Some(kubectl) = e2e_support::on_path("kubectl") else {
        e2e_support::note(TEST_NAME, "skipped: no kubectl on PATH to check `kubectl get` output with");
        return;
    };
    let mut env = Env::on(client, kubeconfig).await;
    env.operator.wait_leader_ready(READY_IN).await;

    // Both due hours from now (the reminder daily at this time of day plus two hours): future
    // times, and no Job starts while the test runs.
    let later = Utc::now() + chrono::Duration::hours(2);
    let schedule = format!("{} {} * * *", later.minute(), later.hour());
    let reminders: Api<ScheduledReminder> = env.api();
    let spec = reminder_spec("Daily", &schedule, ConcurrencyPolicy::Forbid);
    reminders.create(&PostParams::default(), &ScheduledReminder::new("daily", spec)).await.unwrap();
    let broadcasts: Api<Broadcast> = env.api();
    let at = borcelle_crds::status::whole_seconds(Utc::now() + chrono::Duration::days(1));
    let spec = serde_json::from_value(json!({"title": "Later", "message": "Tomorrow.", "at": at})).unwrap();
    broadcasts.create(&PostParams::default(), &Broadcast::new("later", spec)).await.unwrap();

    let reminder_next = wait_for("the reminder's nextScheduleTime", Duration::from_secs(30), || async {
        reminders.get("daily").await.ok()?.status?.next_schedule_time
    })
    .await;
    let broadcast_next = wait_for("the broadcast's nextScheduleTime", Duration::from_secs(30), || async {
        broadcasts.get("later").await.ok()?.status?.next_schedule_time
    })
    .await;
    assert_eq!(broadcast_next, at);

    for (resource, name, next) in
        [("scheduledreminders", "daily", reminder_next), ("broadcasts", "later", broadcast_next)]
    {
        let cell = kubectl_next_cell(&kubectl, &env.kubeconfig, resource, env.ns(), name);
        let shown = DateTime::parse_from_rfc3339(&cell).map(|t| t.with_timezone(&Utc));
        assert_eq!(shown, Ok(next), "kubectl get {resource}: NEXT reads {cell:?}, not the RFC 3339 time {next}");
    }
}

/// A ValidatingWebhookConfiguration that sends the test namespace's reminders and broadcasts to
/// `url`, trusting `ca`; deleted on drop.
struct TestWebhook {
    client: kube::Client,
    name: String,
}

impl TestWebhook {
    async fn create(client: &kube::Client, namespace: &str, url: String, ca: &str) -> TestWebhook {
        use k8s_openapi::ByteString;
        use k8s_openapi::api::admissionregistration::v1::{
            RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
        let name = format!("{namespace}-operator");
        let configuration = ValidatingWebhookConfiguration {
            metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
            webhooks: Some(vec![ValidatingWebhook {
                name: "scheduledreminders.crm.borcelle.io".to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                side_effects: "None".to_owned(),
                failure_policy: Some("Fail".to_owned()),
                timeout_seconds: Some(10),
                // Only the test's namespace: other tests and the cluster's own never call it.
                namespace_selector: Some(LabelSelector {
                    match_labels: Some([("kubernetes.io/metadata.name".to_owned(), namespace.to_owned())].into()),
                    ..LabelSelector::default()
                }),
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["crm.borcelle.io".to_owned()]),
                    api_versions: Some(vec!["v1alpha1".to_owned()]),
                    operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                    resources: Some(vec!["scheduledreminders".to_owned(), "broadcasts".to_owned()]),
                    scope: Some("Namespaced".to_owned()),
                }]),
                client_config: WebhookClientConfig {
                    url: Some(url),
                    ca_bundle: Some(ByteString(ca.as_bytes().to_vec())),
                    service: None,
                },
                ..ValidatingWebhook::default()
            }]),
        };
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        api.create(&PostParams::default(), &configuration).await.expect("create the webhook configuration");
        TestWebhook { client: client.clone(), name }
    }
}

impl Drop for TestWebhook {
    fn drop(&mut self) {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let name = self.name.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = api.delete(&name, &kube::api::DeleteParams::default()).await;
            })
        });
    }
}

/// The operator serves the admission webhook (a certificate from files, as cert-manager mounts
/// them) and the API server calls it: unschedulable reminders and broadcasts are refused at
/// creation with the reason, nothing of them is stored, good ones pass, and `kubectl apply`
/// fails the same way. The API server reaches the operator, which runs beside the test, at
/// `BORCELLE_E2E_WEBHOOK_HOST` (127.0.0.1 by default: an API server on this machine).
#[tokio::test(flavor = "multi_thread")]
async fn unschedulable_resources_are_refused_at_admission_on_a_real_cluster() {
    const TEST_NAME: &str = "unschedulable_resources_are_refused_at_admission_on_a_real_cluster";
    let Some((client, kubeconfig)) = cluster().await else {
        e2e_support::skipped(TEST_NAME);
        return;
    };
    let host = std::env::var("BORCELLE_E2E_WEBHOOK_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let pems = borcelle_operator::webhook::self_signed(std::slice::from_ref(&host)).unwrap();
    let dir = std::env::temp_dir().join(format!("borcelle-e2e-webhook-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), &pems.cert).unwrap();
    std::fs::write(dir.join("tls.key"), &pems.key).unwrap();
    let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let args = ["--webhook", "--webhook-listen", &format!("0.0.0.0:{port}"), "--webhook-cert-dir"]
        .map(str::to_owned)
        .into_iter()
        .chain([dir.display().to_string()])
        .collect::<Vec<_>>();
    let mut env = Env::with_operator_args(client.clone(), kubeconfig.clone(), &args).await;
    let _webhook = TestWebhook::create(&client, env.ns(), format!("https://{host}:{port}/validate"), &pems.ca).await;
    env.operator.wait_leader_ready(READY_IN).await;
    let reminders: Api<ScheduledReminder> = env.api();

    // The API server caches webhook configurations for a moment: wait until ours is called.
    let bad = |name: &str, schedule: &str, zone: Option<&str>| {
        let mut spec = reminder_spec("Refused", schedule, ConcurrencyPolicy::Forbid);
        spec.time_zone = zone.map(str::to_owned);
        ScheduledReminder::new(name, spec)
    };
    let message = wait_for("the webhook to answer", Duration::from_secs(60), || async {
        match reminders.create(&PostParams::default(), &bad("sixty-one", "61 * * * *", None)).await {
            Err(kube::Error::Api(status)) if status.message.contains("denied the request") => Some(status.message),
            Err(_) => None,
            Ok(created) => panic!("61 * * * * was stored: {created:?}"),
        }
    })
    .await;
    assert!(message.contains("61 is outside 0-59"), "{message}");

    for (name, schedule, zone, reason) in [
        ("six-fields", "0 0 9 * * 1", None, "five fields"),
        ("mars", "0 9 * * *", Some("Mars/Olympus_Mons"), "Mars/Olympus_Mons"),
    ] {
        match reminders.create(&PostParams::default(), &bad(name, schedule, zone)).await {
            Err(kube::Error::Api(status)) => assert!(status.message.contains(reason), "{name}: {}", status.message),
            Ok(created) => panic!("{name} was stored: {created:?}"),
            Err(err) => panic!("{name}: {err}"),
        }
    }
    assert!(reminders.list(&ListParams::default()).await.unwrap().items.is_empty(), "nothing refused is stored");

    // A good one passes, and a change that breaks it is refused while it stays as it was.
    let good = reminders.create(&PostParams::default(), &bad("weekly", "0 9 * * 1", None)).await.unwrap();
    let mut broken = good.clone();
    broken.spec.schedule = "0 25 * * *".to_owned();
    let refused = reminders.replace("weekly", &PostParams::default(), &broken).await;
    assert!(matches!(&refused, Err(kube::Error::Api(s)) if s.message.contains("25 is outside 0-23")), "{refused:?}");
    assert_eq!(reminders.get("weekly").await.unwrap().spec.schedule, "0 9 * * 1");

    let broadcasts: Api<Broadcast> = env.api();
    let spec =
        serde_json::from_value(json!({"title": "News", "message": "Weekly.", "schedule": "every monday"})).unwrap();
    let refused = broadcasts.create(&PostParams::default(), &Broadcast::new("weekly-news", spec)).await;
    assert!(matches!(&refused, Err(kube::Error::Api(s)) if s.message.contains("denied the request")), "{refused:?}");

    if let Some(kubectl) = e2e_support::on_path("kubectl") {
        let manifest = serde_json::to_string(&bad("applied", "61 * * * *", None)).unwrap();
        let mut apply = std::process::Command::new(kubectl)
            .args(["--kubeconfig", &kubeconfig.display().to_string(), "-n", env.ns(), "apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        apply.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
        let output = apply.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "kubectl apply accepted 61 * * * *");
        assert!(stderr.contains("denied the request") && stderr.contains("61 is outside 0-59"), "{stderr}");
    } else {
        e2e_support::note(TEST_NAME, "no kubectl on PATH: `kubectl apply` not checked");
    }
    let _ = std::fs::remove_dir_all(dir);
}
