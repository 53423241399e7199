//! One status, two runtimes. Each scenario runs twice: through `serve`'s in-process scheduler
//! (created and read back through the JSON API, as the web pages show it), and through the
//! operator (`reconcile` against a simulated API server whose "kubelet" runs each Job's container,
//! the real `borcelle worker occurrence`, on a database of the cluster's own, and reports its exit
//! code and termination message as Kubernetes does). After every step the two statuses must say
//! the same: conditions (reason, message, transition time), times, active runs, the last run and,
//! for a Broadcast, its phase and recipients. Only what belongs to one runtime is left out: a run's
//! name (a Job's, an occurrence id) and when it finished (the simulated clock, the database's).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Response};
use borcelle_crds::contract::{ENV_SPEC, ENV_TERMINATION_LOG, EXIT_PERMANENT, TERMINATION_LOG};
use borcelle_crds::{Broadcast, ScheduledReminder};
use borcelle_operator::context::{Context, JobSettings};
use borcelle_operator::metrics::Metrics;
use borcelle_operator::time::to_jiff;
use borcelle_operator::{Occurring, reconcile};
use borcelle_store::testing::TestDb;
use borcelle_store::users::Role;
use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::client::Body;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_borcelle");
const OWNER: &str = "chief@example.com";
/// The owner's one contact, in both databases.
const CONTACT: &str = "bo1@example.com";
const NAMESPACE: &str = "crm";

/// What happens to the runs started at a step before anyone looks again.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// They run to their end: the Jobs' containers run; serve's delivery engine drains.
    Run,
    /// They are still running when the status is read: serve's delivery engine does not run; a
    /// Job's container starts its occurrence and keeps trying to send (its SMTP server refuses
    /// connections, and the retry is an hour away) until it is deleted or the test ends.
    Leave,
}

struct Step {
    at: DateTime<Utc>,
    work: Work,
    /// What the status must say (JSON pointer, value), besides being the same in both runtimes.
    expect: Vec<(&'static str, Value)>,
}

fn step(at: DateTime<Utc>, work: Work, expect: &[(&'static str, Value)]) -> Step {
    Step { at, work, expect: expect.to_vec() }
}

/// Midnight UTC two days from now: every scenario's instants are in the future of the wall clock
/// (a broadcast's `at` and `expiresAt` must be), and the schedules are created now.
fn day() -> DateTime<Utc> {
    let today = Utc::now().date_naive();
    Utc.from_utc_datetime(&(today + Span::days(2)).and_hms_opt(0, 0, 0).unwrap())
}

fn at(day: DateTime<Utc>, h: i64, m: i64, s: i64) -> DateTime<Utc> {
    day + Span::hours(h) + Span::minutes(m) + Span::seconds(s)
}

fn rfc3339(t: DateTime<Utc>) -> Value {
    json!(borcelle_crds::status::rfc3339(t))
}

fn reminder_spec(schedule: &str, extra: Value) -> Value {
    let mut spec = json!({
        "owner": OWNER,
        "recipients": { "emails": [CONTACT] },
        "subject": "Pipeline review",
        "body": "Time to review the pipeline.",
        "schedule": schedule,
    });
    merge(&mut spec, extra);
    spec
}

fn broadcast_spec(extra: Value) -> Value {
    let mut spec = json!({
        "title": "Maintenance tonight",
        "message": "Borcelle is down 22:00-23:00 UTC.",
        "audience": { "group": "users", "users": [OWNER] },
        "channels": ["web"],
    });
    merge(&mut spec, extra);
    spec
}

fn merge(spec: &mut Value, extra: Value) {
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
}

/// What both runtimes must agree on: the status without the runs' names and finish times (their
/// presence is kept).
fn comparable(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(active) = status.get_mut("active").and_then(Value::as_array_mut) {
        for run in active {
            run.as_object_mut().map(|r| r.remove("name"));
        }
    }
    if let Some(last) = status.get_mut("lastRun").and_then(Value::as_object_mut) {
        last.remove("name");
        if let Some(finished) = last.get_mut("finishedAt") {
            *finished = json!("(set)");
        }
    }
    for field in ["lastSuccessfulTime", "deliveredAt"] {
        if let Some(time) = status.get_mut(field) {
            *time = json!("(set)");
        }
    }
    status
}

// ---------------------------------------------------------------------------------------------
// serve: the API and the in-process scheduler at chosen instants.

struct Serve {
    app: TestApp,
    kind: &'static str,
    name: String,
    id: Uuid,
}

impl Serve {
    async fn new(kind: &'static str, name: &str, spec: &Value, created: DateTime<Utc>) -> Serve {
        let mut app = spawn_app().await;
        app.verified_user(OWNER, Role::Admin).await;
        assert_eq!(app.login(OWNER, PASSWORD).await.status(), 200);
        seed_contacts(&app.db, OWNER, "bo", 1, "team").await;
        let path = if kind == "Broadcast" { "/api/v1/admin/broadcasts" } else { "/api/v1/reminders" };
        let response = app.post_json(path, &json!({ "name": name, "spec": spec })).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "creating {name}: {body}");
        let id: Uuid = body["uid"].as_str().unwrap().parse().unwrap();
        // Created at the instant the cluster's resource was: the first occurrence counts from it.
        sqlx::query("UPDATE schedules SET created_at = $2, next_run_at = $2 WHERE id = $1")
            .bind(id)
            .bind(created)
            .execute(&app.db)
            .await
            .unwrap();
        Serve { app, kind, name: name.to_owned(), id }
    }

    fn path(&self) -> String {
        let base = if self.kind == "Broadcast" { "/api/v1/admin/broadcasts" } else { "/api/v1/reminders" };
        format!("{base}/{}", self.name)
    }

    /// Stores a spec as an older build (or a hand-edited row) may have: not checked again.
    async fn store_spec(&self, spec: &Value) {
        sqlx::query("UPDATE schedules SET spec = $2 WHERE id = $1")
            .bind(self.id)
            .bind(spec)
            .execute(&self.app.db)
            .await
            .unwrap();
    }

    async fn step(&self, now: DateTime<Utc>, work: Work) -> Value {
        self.app.scheduler().tick(self.id, now).await.unwrap();
        if let Work::Run = work {
            self.app.deliver_all().await;
        }
        let response = self.app.get(&self.path()).await;
        assert_eq!(response.status(), 200);
        let view: Value = response.json().await.unwrap();
        view["status"].clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The operator, against a simulated cluster.

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// What the simulated API server holds.
#[derive(Default)]
struct ClusterState {
    jobs: Vec<Job>,
    /// The operator's Job cache, fed as its Job watch would be.
    watch: borcelle_operator::cache::JobCache,
    /// The containers still running, by Job name: deleting the Job kills its container.
    running: HashMap<String, Child>,
    /// The terminated pod of each Job that ran.
    pods: HashMap<String, Pod>,
    /// The resource as a watch would show it (the last applied status included).
    object: Value,
    /// Requests the simulation does not know: each is a failure of the test.
    unexpected: Vec<String>,
}

struct Cluster<K: Occurring> {
    state: Arc<Mutex<ClusterState>>,
    clock: Arc<Mutex<DateTime<Utc>>>,
    ctx: Arc<Context>,
    server: tokio::task::JoinHandle<()>,
    db: TestDb,
    logs: PathBuf,
    _kind: std::marker::PhantomData<K>,
}

fn status_of(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

impl ClusterState {
    fn answer(&mut self, method: &Method, path: &str, query: &str, body: &[u8], now: DateTime<Utc>) -> (u16, Value) {
        let jobs_path = format!("/apis/batch/v1/namespaces/{NAMESPACE}/jobs");
        let job_name = path.strip_prefix(&format!("{jobs_path}/")).map(str::to_owned);
        let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(body).unwrap() };
        match (method.as_str(), path) {
            ("GET", p) if p == jobs_path => (
                200,
                json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"}, "items": self.jobs}),
            ),
            ("POST", p) if p == jobs_path => {
                let mut job: Job = serde_json::from_value(body).unwrap();
                let name = job.metadata.name.clone().unwrap_or_default();
                if self.jobs.iter().any(|j| j.metadata.name.as_deref() == Some(&name)) {
                    return (409, status_of(409, "AlreadyExists"));
                }
                job.metadata.uid = Some(Uuid::new_v4().to_string());
                job.metadata.creation_timestamp = Some(Time(to_jiff(now)));
                job.status = Some(JobStatus { active: Some(1), ..JobStatus::default() });
                self.jobs.push(job.clone());
                self.watch.apply(&kube::runtime::watcher::Event::Apply(job.clone()));
                (201, serde_json::to_value(job).unwrap())
            }
            ("GET", _) if job_name.is_some() => match self.jobs.iter().find(|j| j.metadata.name == job_name) {
                Some(job) => (200, serde_json::to_value(job).unwrap()),
                None => (404, status_of(404, "NotFound")),
            },
            ("DELETE", _) if job_name.is_some() => {
                let deleted: Vec<Job> = self.jobs.iter().filter(|j| j.metadata.name == job_name).cloned().collect();
                for job in deleted {
                    self.watch.apply(&kube::runtime::watcher::Event::Delete(job));
                }
                self.jobs.retain(|j| j.metadata.name != job_name);
                if let Some(mut container) = job_name.and_then(|name| self.running.remove(&name)) {
                    let _ = container.kill();
                    let _ = container.wait();
                }
                (200, json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}))
            }
            ("POST", p) if p.ends_with("/events") => (201, body),
            ("GET", p) if p == format!("/api/v1/namespaces/{NAMESPACE}/pods") => {
                let selector: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
                let job = selector.get("labelSelector").and_then(|s| s.strip_prefix("batch.kubernetes.io/job-name="));
                let items: Vec<&Pod> = job.and_then(|j| self.pods.get(j)).into_iter().collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("PATCH", p) if p.ends_with("/status") => {
                self.object["status"] = body["status"].clone();
                (200, self.object.clone())
            }
            _ => {
                self.unexpected.push(format!("{method} {path}?{query}"));
                (500, status_of(500, "InternalError"))
            }
        }
    }
}

async fn serve_api(mut handle: Handle, state: Arc<Mutex<ClusterState>>, clock: Arc<Mutex<DateTime<Utc>>>) {
    while let Some((request, respond)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let now = *clock.lock().unwrap();
        let (code, answer) =
            state.lock().unwrap().answer(&parts.method, parts.uri.path(), parts.uri.query().unwrap_or(""), &bytes, now);
        let response = Response::builder().status(code).body(Body::from(serde_json::to_vec(&answer).unwrap()));
        respond.send_response(response.unwrap());
    }
}

impl<K: Occurring> Cluster<K> {
    /// A cluster holding `object`, with a database of its own where the owner and the contact
    /// exist as in serve's.
    async fn new(object: K) -> Cluster<K> {
        let db = TestDb::new("borcelle_parity_cluster").await;
        let owner = db.user(OWNER).await;
        sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1").bind(owner.id()).execute(&db.pool).await.unwrap();
        db.seed_contacts(owner, "bo", 1).await;
        let clock = Arc::new(Mutex::new(Utc::now()));
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let reading = clock.clone();
        let jobs = JobSettings { image: "registry.example/borcelle:test".to_owned(), ..JobSettings::default() };
        let ctx = Context::new(client, jobs, Arc::new(move || *reading.lock().unwrap()), Arc::new(Metrics::new()));
        // As after the Job watch's first list (an empty one): reconciles may decide.
        ctx.jobs_cache.of(K::KIND).apply(&kube::runtime::watcher::Event::InitDone);
        let watch = ctx.jobs_cache.of(K::KIND).clone();
        let object = serde_json::to_value(&object).unwrap();
        let state = Arc::new(Mutex::new(ClusterState { object, watch, ..Default::default() }));
        let server = tokio::spawn(serve_api(handle, state.clone(), clock.clone()));
        let logs = std::env::temp_dir().join(unique("borcelle-parity-"));
        std::fs::create_dir_all(&logs).unwrap();
        Cluster { state, clock, ctx: Arc::new(ctx), server, db, logs, _kind: std::marker::PhantomData }
    }

    /// The operator looks at the resource as the watch shows it now.
    async fn reconcile(&self) {
        let object: K = serde_json::from_value(self.state.lock().unwrap().object.clone()).unwrap();
        let result =
            tokio::time::timeout(std::time::Duration::from_secs(10), reconcile(Arc::new(object), self.ctx.clone()))
                .await
                .expect("reconcile timed out");
        result.expect("reconcile");
        let unexpected = std::mem::take(&mut self.state.lock().unwrap().unexpected);
        assert!(unexpected.is_empty(), "requests the operator should not make: {unexpected:?}");
    }

    async fn step(&self, now: DateTime<Utc>, work: Work) -> Value {
        *self.clock.lock().unwrap() = now;
        self.reconcile().await;
        self.run_new_jobs(work, now).await;
        self.reconcile().await;
        self.state.lock().unwrap().object["status"].clone()
    }

    /// The kubelet: starts the container of every new Job as its spec says (command, args, env;
    /// the env-from Secret gives the cluster database's URL) and, when it exits, records the exit
    /// as the Job controller does: 0 completes the Job, 3 fails it at once (its pod failure
    /// policy). With [`Work::Leave`] the container is left running once its occurrence has
    /// started and its emails wait for their retry.
    async fn run_new_jobs(&self, work: Work, now: DateTime<Utc>) {
        let new: Vec<Job> = {
            let state = self.state.lock().unwrap();
            state
                .jobs
                .iter()
                .filter(|j| j.status.as_ref().and_then(|s| s.active) == Some(1))
                .filter(|j| !j.metadata.name.as_ref().is_some_and(|n| state.running.contains_key(n)))
                .cloned()
                .collect()
        };
        for job in new {
            let name = job.metadata.name.clone().unwrap();
            let pod_spec = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod template");
            let container = &pod_spec.containers[0];
            assert_eq!(container.command.as_deref(), Some(&["borcelle".to_owned()][..]), "the image's binary");
            let args: Vec<String> = container.args.clone().unwrap_or_default();
            let env: Vec<(String, String)> =
                container.env.iter().flatten().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
            assert!(env.iter().any(|(k, _)| k == ENV_SPEC), "{name} carries its spec");
            assert!(env.iter().any(|(k, v)| k == ENV_TERMINATION_LOG && v == TERMINATION_LOG), "{name}: {env:?}");
            // Kubernetes mounts the termination log at that path; here it is a file of the test's.
            let log = self.logs.join(&name);
            let mut command = Command::new(BIN);
            command
                .args(&args)
                .envs(env.iter().filter(|(k, _)| k != ENV_TERMINATION_LOG).map(|(k, v)| (k, v)))
                .env(ENV_TERMINATION_LOG, &log)
                .env("DATABASE_URL", format!("{}/{}", borcelle_store::testing::server_url(), self.db.name))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Work::Leave = work {
                command
                    .env("BORCELLE_MAIL_TRANSPORT", "smtp")
                    .env("BORCELLE_SMTP_HOST", "127.0.0.1")
                    .env("BORCELLE_SMTP_PORT", free_port().to_string())
                    .env("BORCELLE_SMTP_TLS", "none")
                    .env("BORCELLE_DELIVERY_RETRY_BASE_SECS", "3600");
            }
            let mut child = command.spawn().unwrap();
            let exited = match work {
                Work::Run => Some(child.wait().unwrap()),
                Work::Leave => self.until_waiting(&mut child, &args).await,
            };
            match exited {
                Some(status) => {
                    let code = status.code().expect("the worker exited");
                    assert!(code == 0 || code == i32::from(EXIT_PERMANENT), "{name} exited with {code}");
                    let message = std::fs::read_to_string(&log).unwrap_or_default();
                    self.finish(&name, code, message, now);
                }
                None => {
                    self.state.lock().unwrap().running.insert(name, child);
                }
            }
        }
    }

    /// Waits until the occurrence of a Job's container (`args`) has started and its emails all
    /// wait for a retry (`None`: it runs on), or until the container exits.
    async fn until_waiting(&self, child: &mut Child, args: &[String]) -> Option<ExitStatus> {
        let arg = |flag: &str| args.iter().skip_while(|a| *a != flag).nth(1).cloned().unwrap();
        let uid: Uuid = arg("--uid").parse().unwrap();
        let scheduled: DateTime<Utc> = arg("--scheduled").parse().unwrap();
        for _ in 0..400 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            let (waiting, total): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE m.status = 'retrying'), count(*)
                 FROM occurrences o JOIN messages m ON m.task_id = o.task_id
                 WHERE o.resource_uid = $1 AND o.scheduled_at = $2",
            )
            .bind(uid)
            .bind(scheduled)
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
            if total > 0 && waiting == total {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the occurrence of {uid} at {scheduled} did not start within 20 s");
    }

    fn finish(&self, name: &str, exit_code: i32, message: String, at: DateTime<Utc>) {
        let succeeded = exit_code == 0;
        let time = Time(to_jiff(at));
        let condition = |type_: &str| JobCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            last_transition_time: Some(time.clone()),
            ..JobCondition::default()
        };
        let mut state = self.state.lock().unwrap();
        let job = state.jobs.iter_mut().find(|j| j.metadata.name.as_deref() == Some(name)).unwrap();
        job.status = Some(JobStatus {
            active: Some(0),
            succeeded: Some(i32::from(succeeded)),
            failed: Some(i32::from(!succeeded)),
            completion_time: succeeded.then(|| time.clone()),
            conditions: Some(if succeeded {
                vec![condition("SuccessCriteriaMet"), condition("Complete")]
            } else {
                vec![condition("FailureTarget"), condition("Failed")]
            }),
            ..JobStatus::default()
        });
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(format!("{name}-x7k2p")),
                namespace: Some(NAMESPACE.to_owned()),
                labels: Some([("batch.kubernetes.io/job-name".to_owned(), name.to_owned())].into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "worker".to_owned(),
                    image: "registry.example/borcelle:test".to_owned(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code,
                            message: Some(message),
                            finished_at: Some(time.clone()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        state.pods.insert(name.to_owned(), pod);
        // The Job watch shows the finished Job.
        let finished = state.jobs.iter().find(|j| j.metadata.name.as_deref() == Some(name)).cloned();
        if let Some(job) = finished {
            state.watch.apply(&kube::runtime::watcher::Event::Apply(job));
        }
    }
}

impl<K: Occurring> Drop for Cluster<K> {
    fn drop(&mut self) {
        self.server.abort();
        if let Ok(mut state) = self.state.lock() {
            for (_, mut container) in state.running.drain() {
                let _ = container.kill();
                let _ = container.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

fn meta(name: &str, created: DateTime<Utc>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        uid: Some(Uuid::new_v4().to_string()),
        generation: Some(1),
        resource_version: Some("1".to_owned()),
        creation_timestamp: Some(Time(to_jiff(created))),
        ..ObjectMeta::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// Creation time of every scenario's schedule: now, in whole seconds (as Kubernetes keeps it).
fn created() -> DateTime<Utc> {
    borcelle_crds::status::whole_seconds(Utc::now())
}

/// Runs `steps` on a reminder with `spec` in both runtimes (`stored`: a spec the API would refuse,
/// put in place after creation as an older build may have stored it); returns both, to look into.
async fn reminder_parity(
    name: &str,
    spec: Value,
    stored: Option<Value>,
    steps: Vec<Step>,
) -> (Serve, Cluster<ScheduledReminder>) {
    let created = created();
    let serve = Serve::new("ScheduledReminder", name, &spec, created).await;
    if let Some(stored) = &stored {
        serve.store_spec(stored).await;
    }
    let spec = stored.unwrap_or(spec);
    let mut object = ScheduledReminder::new(name, serde_json::from_value(spec).unwrap());
    object.metadata = meta(name, created);
    let cluster = Cluster::new(object).await;
    compare(&serve, &cluster, steps).await;
    (serve, cluster)
}

async fn broadcast_parity(name: &str, spec: Value, steps: Vec<Step>) {
    let created = created();
    let serve = Serve::new("Broadcast", name, &spec, created).await;
    let mut object = Broadcast::new(name, serde_json::from_value(spec).unwrap());
    object.metadata = meta(name, created);
    let cluster = Cluster::new(object).await;
    compare(&serve, &cluster, steps).await;
}

async fn compare<K: Occurring>(serve: &Serve, cluster: &Cluster<K>, steps: Vec<Step>) {
    for (i, step) in steps.iter().enumerate() {
        let standalone = serve.step(step.at, step.work).await;
        let kubernetes = cluster.step(step.at, step.work).await;
        let label = format!("{} step {} at {} ({:?})", serve.name, i + 1, step.at, step.work);
        assert_eq!(
            comparable(&kubernetes),
            comparable(&standalone),
            "{label}: the statuses differ\nkubernetes: {kubernetes:#}\nstandalone: {standalone:#}"
        );
        for (pointer, expected) in &step.expect {
            assert_eq!(kubernetes.pointer(pointer), Some(expected), "{label}: {pointer} in {kubernetes:#}");
        }
    }
}

#[tokio::test]
async fn a_daily_reminder_runs_reports_and_schedules_alike() {
    let d = day();
    let steps = vec![
        step(
            at(d, 9, 0, 30),
            Work::Run,
            &[
                ("/lastRun/outcome", json!("Succeeded")),
                ("/lastRun/delivered", json!(1)),
                ("/lastScheduleTime", rfc3339(at(d, 9, 0, 0))),
                ("/nextScheduleTime", rfc3339(at(d, 33, 0, 0))),
                ("/conditions/1/reason", json!("NextRunScheduled")),
            ],
        ),
        // The next day, and a look in between that changes nothing.
        step(at(d, 12, 0, 0), Work::Run, &[("/lastScheduleTime", rfc3339(at(d, 9, 0, 0)))]),
        step(at(d, 33, 0, 30), Work::Run, &[("/lastRun/occurrence", rfc3339(at(d, 33, 0, 0)))]),
    ];
    reminder_parity("daily", reminder_spec("0 9 * * *", json!({})), None, steps).await;
}

#[tokio::test]
async fn missed_occurrences_and_a_passed_starting_deadline_read_alike() {
    let d = day();
    let steps = vec![
        step(at(d, 6, 0, 30), Work::Run, &[("/lastRun/outcome", json!("Succeeded"))]),
        // Away until 09:00:30: 07:00 and 08:00 were missed, 09:00 runs.
        step(at(d, 9, 0, 30), Work::Run, &[("/lastRun/occurrence", rfc3339(at(d, 9, 0, 0)))]),
    ];
    reminder_parity("hourly", reminder_spec("0 * * * *", json!({})), None, steps).await;

    let steps = vec![step(at(d, 9, 0, 30), Work::Run, &[("/lastScheduleTime", rfc3339(at(d, 9, 0, 0)))])];
    let spec = reminder_spec("0 9 * * *", json!({ "startingDeadlineSeconds": 10 }));
    reminder_parity("deadline", spec, None, steps).await;
}

#[tokio::test]
async fn forbid_skips_and_replace_stops_the_running_occurrence_alike() {
    let d = day();
    let steps = vec![
        step(at(d, 9, 0, 30), Work::Leave, &[("/active/0/scheduledTime", rfc3339(at(d, 9, 0, 0)))]),
        step(
            at(d, 10, 0, 30),
            Work::Leave,
            &[("/active/0/scheduledTime", rfc3339(at(d, 9, 0, 0))), ("/lastScheduleTime", rfc3339(at(d, 10, 0, 0)))],
        ),
    ];
    let spec = reminder_spec("0 * * * *", json!({ "concurrencyPolicy": "Forbid" }));
    reminder_parity("forbid", spec, None, steps).await;

    let steps = vec![
        step(at(d, 9, 0, 30), Work::Leave, &[]),
        step(
            at(d, 10, 0, 30),
            Work::Leave,
            &[("/active/0/scheduledTime", rfc3339(at(d, 10, 0, 0))), ("/lastRun/outcome", json!("Replaced"))],
        ),
    ];
    let spec = reminder_spec("0 * * * *", json!({ "concurrencyPolicy": "Replace" }));
    let (serve, cluster) = reminder_parity("replace", spec, None, steps).await;
    // Replacing stops the older run's emails in both: in Kubernetes, deleting its Job is not
    // enough (any delivery engine would send what it queued), so the newer Job's worker stops them.
    for (runtime, db) in [("standalone", &serve.app.db), ("kubernetes", &cluster.db.pool)] {
        let outcomes: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, last_error FROM messages ORDER BY created_at").fetch_all(db).await.unwrap();
        assert_eq!(outcomes.len(), 2, "{runtime}: one email per occurrence");
        assert_eq!(outcomes[0].0, "failed", "{runtime}: the replaced run's email is not sent");
        assert!(outcomes[0].1.as_deref().is_some_and(|e| e.contains("replaced")), "{runtime}: {outcomes:?}");
        assert_ne!(outcomes[1].0, "failed", "{runtime}: the newer run's email is still to be sent");
    }
}

#[tokio::test]
async fn suspended_invalid_and_failing_reminders_read_alike() {
    let d = day();
    let steps = vec![step(
        at(d, 9, 0, 30),
        Work::Run,
        &[("/conditions/1/status", json!("False")), ("/conditions/1/reason", json!("Suspended"))],
    )];
    let suspended = reminder_spec("0 9 * * *", json!({ "suspend": true }));
    reminder_parity("suspended", suspended, None, steps).await;

    // Stored by an older build that did not check time zones (the CRD cannot list them all).
    let steps = vec![step(
        at(d, 9, 0, 30),
        Work::Run,
        &[("/conditions/0/status", json!("False")), ("/conditions/0/reason", json!("UnknownTimeZone"))],
    )];
    let spec = reminder_spec("0 9 * * *", json!({}));
    let stored = reminder_spec("0 9 * * *", json!({ "timeZone": "Mars/Olympus_Mons" }));
    reminder_parity("mars", spec, Some(stored), steps).await;

    // The note it sends was deleted: the run fails for good, and says why.
    let note_gone = Uuid::new_v4();
    let steps = vec![
        step(at(d, 9, 0, 30), Work::Run, &[("/lastRun/outcome", json!("Failed"))]),
        step(at(d, 9, 5, 0), Work::Run, &[("/lastRun/error", json!(format!("the owner has no note {note_gone}")))]),
    ];
    let spec = reminder_spec("0 9 * * *", json!({ "body": null, "noteId": note_gone.to_string() }));
    let with_body = reminder_spec("0 9 * * *", json!({}));
    reminder_parity("note-gone", with_body, Some(strip_nulls(spec)), steps).await;
}

fn strip_nulls(mut spec: Value) -> Value {
    if let Some(map) = spec.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    spec
}

#[tokio::test]
async fn a_broadcast_is_scheduled_runs_and_is_delivered_alike() {
    let d = day();
    let steps = vec![
        step(
            at(d, 8, 0, 0),
            Work::Run,
            &[("/phase", json!("Scheduled")), ("/nextScheduleTime", rfc3339(at(d, 9, 0, 0)))],
        ),
        step(at(d, 9, 0, 30), Work::Run, &[("/phase", json!("Delivered")), ("/recipients", json!(1))]),
    ];
    broadcast_parity("maintenance", broadcast_spec(json!({ "at": rfc3339(at(d, 9, 0, 0)) })), steps).await;

    // By email too: running while its emails go out.
    let steps = vec![
        step(at(d, 9, 0, 30), Work::Leave, &[("/phase", json!("Running"))]),
        step(
            at(d, 9, 5, 0),
            Work::Leave,
            &[("/phase", json!("Running")), ("/active/0/scheduledTime", rfc3339(at(d, 9, 0, 0)))],
        ),
    ];
    let spec = broadcast_spec(json!({ "at": rfc3339(at(d, 9, 0, 0)), "channels": ["web", "email"] }));
    broadcast_parity("by-email", spec, steps).await;

    // Looked at first after it expired: nothing is delivered.
    let steps = vec![step(
        at(d, 10, 0, 0),
        Work::Run,
        &[("/conditions/1/status", json!("False")), ("/conditions/1/reason", json!("Expired"))],
    )];
    let spec = broadcast_spec(json!({ "at": rfc3339(at(d, 9, 0, 0)), "expiresAt": rfc3339(at(d, 9, 30, 0)) }));
    broadcast_parity("expired", spec, steps).await;
}
