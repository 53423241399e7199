//! The mock Kubernetes API server of the controllers benchmark. It runs in a child process, so that
//! the operator's process holds only the operator, and answers as an API server does: lists in
//! pages (`limit`/`continue`) filtered by `labelSelector`, watches that replay the changes after
//! their `resourceVersion` and then stream new ones (with bookmarks, closed after their timeout),
//! creates, replaces, status patches refused with 409 when they carry a stale resourceVersion,
//! deletes. Every request is counted by verb and resource (`GET /bench/calls`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::objects;
use super::selector::Selector;
use super::store::{Key, Store, Stored, name_of};
use super::verbs;
use super::watch::{WatchFilter, stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    ScheduledReminders,
    Broadcasts,
    Jobs,
    Pods,
    Events,
    Leases,
}

impl Resource {
    fn parse(group: &str, plural: &str) -> Option<Self> {
        Some(match (group, plural) {
            ("crm.borcelle.io", "scheduledreminders") => Resource::ScheduledReminders,
            ("crm.borcelle.io", "broadcasts") => Resource::Broadcasts,
            ("batch", "jobs") => Resource::Jobs,
            ("", "pods") => Resource::Pods,
            ("events.k8s.io", "events") => Resource::Events,
            ("coordination.k8s.io", "leases") => Resource::Leases,
            _ => return None,
        })
    }

    pub fn plural(self) -> &'static str {
        match self {
            Resource::ScheduledReminders => "scheduledreminders",
            Resource::Broadcasts => "broadcasts",
            Resource::Jobs => "jobs",
            Resource::Pods => "pods",
            Resource::Events => "events",
            Resource::Leases => "leases",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Resource::ScheduledReminders | Resource::Broadcasts => "crm.borcelle.io/v1alpha1",
            Resource::Jobs => "batch/v1",
            Resource::Pods => "v1",
            Resource::Events => "events.k8s.io/v1",
            Resource::Leases => "coordination.k8s.io/v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::ScheduledReminders => "ScheduledReminder",
            Resource::Broadcasts => "Broadcast",
            Resource::Jobs => "Job",
            Resource::Pods => "Pod",
            Resource::Events => "Event",
            Resource::Leases => "Lease",
        }
    }
}

/// What a request's path names.
pub struct Target {
    pub resource: Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some((*namespace).to_owned()), rest),
            _ => (None, rest),
        };
        let (plural, name, subresource) = match rest {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some((*name).to_owned()), None),
            [plural, name, sub] => (*plural, Some((*name).to_owned()), Some((*sub).to_owned())),
            _ => return None,
        };
        Some(Target { resource: Resource::parse(group, plural)?, namespace, name, subresource })
    }

    /// `jobs`, `scheduledreminders/status`: the resource as calls are counted.
    fn counted(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource.plural()),
            None => self.resource.plural().to_owned(),
        }
    }

    pub fn key(&self) -> Key {
        (self.resource, self.namespace.clone().unwrap_or_default(), self.name.clone().unwrap_or_default())
    }
}

/// A refusal, answered as a `Status` object.
pub struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into() }
    }

    fn body(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, [(header::CONTENT_TYPE, "application/json")], self.body().to_string()).into_response()
    }
}

/// How watches behave (the benchmark shortens them).
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Watches close after their `timeoutSeconds`, or this if shorter.
    pub watch_max: Duration,
    pub bookmark_every: Duration,
}

pub struct ApiServer {
    store: Mutex<Store>,
    latest: watch::Sender<u64>,
    calls: Mutex<BTreeMap<String, u64>>,
    behaviour: Behaviour,
}

impl ApiServer {
    /// `count` reminders with their Jobs; no Broadcasts.
    pub fn seeded(count: usize, behaviour: Behaviour) -> Self {
        let mut store = Store::default();
        for i in 0..count {
            let seed = objects::seed(i);
            store.due += usize::from(seed.due);
            for (resource, object) in [(Resource::ScheduledReminders, seed.reminder), (Resource::Jobs, seed.job)] {
                let key = (resource, name_of(&object, "namespace"), name_of(&object, "name"));
                store.put(key, object, "ADDED");
            }
        }
        store.log.clear();
        store.log_from = store.rv;
        let (latest, _) = watch::channel(store.rv);
        ApiServer { store: Mutex::new(store), latest, calls: Mutex::default(), behaviour }
    }

    pub fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("store")
    }

    fn count(&self, what: String) {
        self.counted(what, 1);
    }

    /// Adds `n` to the count of `what`.
    pub fn counted(&self, what: String, n: u64) {
        *self.calls.lock().expect("calls").entry(what).or_default() += n;
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// Wakes the watches.
    pub fn changed(&self) {
        let rv = self.store().rv;
        self.latest.send_replace(rv);
    }
}

pub fn json_response(code: StatusCode, body: Bytes) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The API: every request, counted by verb and resource (and by status when refused).
async fn api(
    State(server): State<Arc<ApiServer>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(target) = Target::parse(uri.path()) else {
        server.count(format!("{method} {} (unknown)", uri.path()));
        return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response();
    };
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "other",
    };
    let what = format!("{verb} {}", target.counted());
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let result = match verb {
        "watch" => watch(&server, &target, &query),
        "list" => verbs::list(&server, &target, &query),
        "get" => verbs::get_object(&server, &target),
        "create" => verbs::create(&server, &target, &body),
        "update" => verbs::replace(&server, &target, &body),
        "patch" => verbs::patch(&server, &target, content_type, &body),
        "delete" => verbs::delete(&server, &target),
        _ => Err(ApiError::new(405, "MethodNotAllowed", "not supported")),
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    if !response.status().is_success() {
        server.count(format!("{what} → {}", response.status().as_u16()));
    }
    server.count(what);
    response
}

fn watch(server: &Arc<ApiServer>, target: &Target, query: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let selector = Selector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|err| ApiError::new(400, "BadRequest", err))?;
    let filter = WatchFilter { resource: target.resource, namespace: target.namespace.clone(), selector };
    // Without a resourceVersion (or "0"), a real server first sends the current objects; the
    // operator never asks so (it lists first), and this one starts from now.
    let since = query.get("resourceVersion").and_then(|v| v.parse().ok()).filter(|v| *v > 0);
    let since = since.unwrap_or_else(|| server.store().rv);
    let max = server.behaviour.watch_max;
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse().ok()).map_or(max, Duration::from_secs).min(max);
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let mut response = Response::new(Body::from_stream(stream(server.clone(), filter, since, timeout, bookmarks)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(response)
}

#[derive(serde::Deserialize)]
struct Finish {
    per_second: u32,
}

/// The mock Job controller: finishes the Jobs created so far, `per_second` a second.
async fn finish_jobs(State(server): State<Arc<ApiServer>>, Query(finish): Query<Finish>) -> StatusCode {
    let started = server.store().started.clone();
    let every = Duration::from_secs(1) / finish.per_second.max(1);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        for key in started {
            ticker.tick().await;
            let mut store = server.store();
            let Some(mut job) = store.objects.get(&key).map(Stored::value) else { continue };
            if objects::is_complete(&job) {
                continue;
            }
            objects::complete(&mut job, objects::now() + chrono::Duration::seconds(30));
            store.put(key, job, "MODIFIED");
            drop(store);
            server.changed();
        }
    });
    StatusCode::ACCEPTED
}

/// The calls so far, and what is stored.
async fn calls(State(server): State<Arc<ApiServer>>) -> Response {
    let calls = server.calls.lock().expect("calls").clone();
    let store = server.store();
    let mut objects = BTreeMap::<&str, usize>::new();
    for (resource, _, _) in store.objects.keys() {
        *objects.entry(resource.plural()).or_default() += 1;
    }
    let body = json!({"calls": calls, "objects": objects, "due": store.due, "resourceVersion": store.rv,
        "changes": store.log.len(), "started": store.started.len()});
    json_response(StatusCode::OK, body.to_string().into())
}

pub fn router(server: Arc<ApiServer>) -> Router {
    Router::new()
        .route("/bench/calls", get(calls))
        .route("/bench/finish-jobs", post(finish_jobs))
        .fallback(api)
        .with_state(server)
}
