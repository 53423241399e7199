//! The mock API server (kube's ApiServerVerifier pattern) and fixtures shared by the tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Request, Response};
use borcelle_crds::decide::ConcurrencyPolicy;
use borcelle_crds::{Broadcast, BroadcastSpec, Recipients, ScheduledReminder, ScheduledReminderSpec};
use borcelle_operator::context::{Context, JobSettings, fixed_clock};
use borcelle_operator::metrics::Metrics;
use borcelle_operator::time::to_jiff;
use borcelle_operator::{Kind, Occurring, job};
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use serde::Serialize;
use serde_json::{Value, json};

pub const NS: &str = "team-a";
pub const UID: &str = "0b6f8f1e-5a2c-4f0e-9a51-1f2d3c4b5a69";
pub const IMAGE: &str = "registry.example/borcelle:1.4.0";

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The API server's side of a mocked client: each test states the requests it expects, in order.
pub struct ApiServer {
    handle: Handle,
}

/// One request the client made, and the way to answer it.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Value,
    respond: tower_test::mock::SendResponse<Response<Body>>,
}

impl ApiServer {
    /// The next request (fails after 5 s without one).
    pub async fn next(&mut self) -> Call {
        let (request, respond) = tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
            .await
            .expect("timed out waiting for the next request")
            .expect("the client went away before the next expected request");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") };
        let query = parts.uri.query().map(|q| serde_urlencoded::from_str(q).expect("query")).unwrap_or_default();
        Call { method: parts.method, path: parts.uri.path().to_owned(), query, headers: parts.headers, body, respond }
    }

    /// The next request, asserted to be `method path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!((call.method.as_str(), call.path.as_str()), (method.as_str(), path), "unexpected request");
        call
    }

    /// Asserts that no further request comes.
    pub async fn expect_no_more(&mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await
        {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

impl Call {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    pub fn respond(self, status: u16, body: &impl Serialize) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.respond.send_response(Response::builder().status(status).body(Body::from(bytes)).unwrap());
    }

    /// Answers a create with the object as stored (uid and resourceVersion added).
    pub fn respond_created(self) {
        let mut object = self.body.clone();
        object["metadata"]["uid"] = json!("11111111-2222-3333-4444-555555555555");
        object["metadata"]["resourceVersion"] = json!("100");
        self.respond(201, &object)
    }

    /// Answers with a `Status` failure.
    pub fn respond_error(self, code: u16, reason: &str) {
        let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": reason});
        self.respond(code, &status)
    }

    /// Answers a status apply with `object` carrying the applied status.
    pub fn respond_applied(self, object: &impl Serialize) {
        let mut object = serde_json::to_value(object).unwrap();
        object["status"] = self.body["status"].clone();
        self.respond(200, &object)
    }
}

/// A context whose client talks to the returned mock server, with the clock fixed at `now`.
pub fn context(now: DateTime<Utc>) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let jobs = JobSettings { image: IMAGE.to_owned(), ..JobSettings::default() };
    let ctx = Context::new(client, jobs, fixed_clock(now), Arc::new(Metrics::new()));
    // As after the Job watch's first list (an empty one): reconciles may decide.
    for kind in [Kind::ScheduledReminder, Kind::Broadcast] {
        ctx.jobs_cache.of(kind).apply(&kube::runtime::watcher::Event::InitDone);
    }
    (Arc::new(ctx), ApiServer { handle })
}

/// Runs `work` while `scenario` plays the API server, then checks that no request is left over.
/// A failed assertion in the scenario is reported as the test's failure.
pub async fn verify<T, S, SF>(server: ApiServer, scenario: S, work: impl Future<Output = T>) -> T
where
    S: FnOnce(ApiServer) -> SF,
    SF: Future<Output = ApiServer> + Send + 'static,
{
    let scenario = move |server| {
        let played = scenario(server);
        async move { (played.await, ()) }
    };
    verify_with(server, scenario, work).await.0
}

/// [`verify`], where the scenario also hands back something it saw (such as an applied status).
pub async fn verify_with<T, R, S, SF>(server: ApiServer, scenario: S, work: impl Future<Output = T>) -> (T, R)
where
    S: FnOnce(ApiServer) -> SF,
    SF: Future<Output = (ApiServer, R)> + Send + 'static,
    R: Send + 'static,
{
    let (result, seen, _) = verify_session(server, scenario, work).await;
    (result, seen)
}

/// [`verify_with`] that also returns the server, for another round with the same context.
pub async fn verify_session<T, R, S, SF>(
    server: ApiServer,
    scenario: S,
    work: impl Future<Output = T>,
) -> (T, R, ApiServer)
where
    S: FnOnce(ApiServer) -> SF,
    SF: Future<Output = (ApiServer, R)> + Send + 'static,
    R: Send + 'static,
{
    let played = scenario(server);
    let scenario = tokio::spawn(async move {
        let (mut server, seen) = played.await;
        server.expect_no_more().await;
        (server, seen)
    });
    let result = tokio::time::timeout(Duration::from_secs(10), work).await;
    let (server, seen) = match tokio::time::timeout(Duration::from_secs(10), scenario).await {
        Ok(Ok(done)) => done,
        Ok(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Ok(Err(err)) => panic!("scenario failed: {err}"),
        Err(_) => panic!("scenario timed out"),
    };
    (result.expect("reconcile timed out"), seen, server)
}

/// `obj` with the status a scenario saw applied.
pub fn with_status<K: Occurring>(obj: &K, status: &Value) -> K {
    let mut value = serde_json::to_value(obj).unwrap();
    value["status"] = status.clone();
    serde_json::from_value(value).unwrap()
}

pub fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

/// 2026-11-24T09:00:30Z: half a minute after the 09:00 occurrence of a daily schedule.
pub fn now() -> DateTime<Utc> {
    utc(2026, 11, 24, 9, 0, 30)
}

pub fn reminder_spec(schedule: &str) -> ScheduledReminderSpec {
    ScheduledReminderSpec {
        owner: "ana@example.com".to_owned(),
        recipients: Recipients { emails: vec!["bo@example.com".to_owned()], ..Recipients::default() },
        subject: "Weekly pipeline review".to_owned(),
        body: Some("Time to review the pipeline.".to_owned()),
        note_id: None,
        attachments: Vec::new(),
        schedule: schedule.to_owned(),
        time_zone: None,
        suspend: false,
        concurrency_policy: ConcurrencyPolicy::Allow,
        starting_deadline_seconds: None,
        successful_runs_history_limit: None,
        failed_runs_history_limit: None,
    }
}

fn stamp<K: kube::Resource>(obj: &mut K, created: DateTime<Utc>) {
    let meta = obj.meta_mut();
    meta.namespace = Some(NS.to_owned());
    meta.uid = Some(UID.to_owned());
    meta.generation = Some(1);
    meta.resource_version = Some("42".to_owned());
    meta.creation_timestamp = Some(Time(to_jiff(created)));
}

/// A ScheduledReminder in [`NS`], created on 2026-11-23 at noon.
pub fn reminder(name: &str, spec: ScheduledReminderSpec) -> ScheduledReminder {
    let mut reminder = ScheduledReminder::new(name, spec);
    stamp(&mut reminder, utc(2026, 11, 23, 12, 0, 0));
    reminder
}

pub fn broadcast_spec() -> BroadcastSpec {
    serde_json::from_value(json!({"title": "Maintenance tonight", "message": "Borcelle is down 22:00-23:00 UTC."}))
        .unwrap()
}

/// A Broadcast in [`NS`] created at `created`.
pub fn broadcast(name: &str, spec: BroadcastSpec, created: DateTime<Utc>) -> Broadcast {
    let mut broadcast = Broadcast::new(name, spec);
    stamp(&mut broadcast, created);
    broadcast
}

/// The Job the operator builds for `obj`'s `occurrence`, as the API server returns it.
pub fn job_for<K: Occurring>(obj: &K, occurrence: DateTime<Utc>) -> Job {
    let settings = JobSettings { image: IMAGE.to_owned(), ..JobSettings::default() };
    let mut job = job::build_job(obj, occurrence, &settings).unwrap();
    job.metadata.uid = Some(format!("job-{}", occurrence.timestamp()));
    job.metadata.creation_timestamp = Some(Time(to_jiff(occurrence)));
    job.status = Some(JobStatus { active: Some(1), ..JobStatus::default() });
    job
}

/// `job` finished at `at`: Complete when `succeeded`, else Failed.
pub fn finished(mut job: Job, succeeded: bool, at: DateTime<Utc>) -> Job {
    let condition = |type_: &str| JobCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        last_transition_time: Some(Time(to_jiff(at))),
        ..JobCondition::default()
    };
    job.status = Some(JobStatus {
        active: Some(0),
        succeeded: Some(i32::from(succeeded)),
        failed: Some(i32::from(!succeeded)),
        completion_time: succeeded.then(|| Time(to_jiff(at))),
        conditions: Some(if succeeded {
            vec![condition("SuccessCriteriaMet"), condition("Complete")]
        } else {
            vec![condition("FailureTarget"), condition("Failed")]
        }),
        ..JobStatus::default()
    });
    job
}

/// A `JobList` (or any list) of `items`.
pub fn list<T: Serialize>(kind: &str, api_version: &str, items: &[T]) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "500"}, "items": items})
}

pub fn job_list(items: &[Job]) -> Value {
    list("JobList", "batch/v1", items)
}

/// A pod of `job` whose container terminated with `message`.
pub fn pod_with_message(job_name: &str, message: &str, finished_at: DateTime<Utc>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{job_name}-x7k2p"), "namespace": NS, "labels": {"batch.kubernetes.io/job-name": job_name}},
        "status": {"containerStatuses": [{
            "name": "worker", "image": IMAGE, "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": message, "finishedAt": job::rfc3339(finished_at)}}
        }]}
    })
}

pub const JOBS_PATH: &str = "/apis/batch/v1/namespaces/team-a/jobs";
pub const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/team-a/events";
pub const PODS_PATH: &str = "/api/v1/namespaces/team-a/pods";

pub fn reminder_status_path(name: &str) -> String {
    format!("/apis/crm.borcelle.io/v1alpha1/namespaces/team-a/scheduledreminders/{name}/status")
}

pub fn broadcast_status_path(name: &str) -> String {
    format!("/apis/crm.borcelle.io/v1alpha1/namespaces/team-a/broadcasts/{name}/status")
}

/// Puts `jobs` into the context's Job cache, as the controller's Job watch would have.
pub fn index_jobs(ctx: &Context, kind: Kind, jobs: &[Job]) {
    for job in jobs {
        ctx.jobs_cache.of(kind).apply(&kube::runtime::watcher::Event::Apply(job.clone()));
    }
}

/// Expects the Job list of `kind`'s resource `name`, answering with `jobs`.
pub async fn expect_job_list(server: &mut ApiServer, kind: &str, name: &str, jobs: &[Job]) {
    let call = server.expect(Method::GET, JOBS_PATH).await;
    assert_eq!(
        call.query("labelSelector"),
        Some(
            format!("app.kubernetes.io/managed-by=borcelle-operator,crm.borcelle.io/kind={kind},crm.borcelle.io/resource={name}")
                .as_str()
        )
    );
    call.respond(200, &job_list(jobs));
}

/// Expects an event with `reason` about the object `name`, and returns its body.
pub async fn expect_event(server: &mut ApiServer, reason: &str, name: &str) -> Value {
    let call = server.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(call.body["reason"], reason, "event {}", call.body);
    assert_eq!(call.body["regarding"]["name"], name);
    assert_eq!(call.body["reportingController"], "borcelle-operator");
    let body = call.body.clone();
    call.respond_created();
    body
}

/// Expects a status apply on `path` and answers it with `object`; returns the applied status.
pub async fn expect_status_apply(server: &mut ApiServer, path: &str, object: &impl Serialize) -> Value {
    let call = server.expect(Method::PATCH, path).await;
    assert_eq!(call.query("fieldManager"), Some("borcelle-operator"));
    assert_eq!(call.query("force"), Some("true"));
    assert_eq!(call.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/apply-patch+yaml"));
    assert_eq!(call.body["apiVersion"], "crm.borcelle.io/v1alpha1");
    let status = call.body["status"].clone();
    call.respond_applied(object);
    status
}

/// The condition of `type_` in an applied status.
pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == type_)).expect("condition")
}
