//! Reminders and broadcasts as resources in a Kubernetes cluster (`BORCELLE_SCHEDULER=kubernetes`):
//! the API creates, lists, changes and deletes `ScheduledReminder` and `Broadcast` objects, and
//! the operator runs them. Each object carries its owner in a label; a user only ever sees and
//! touches objects with their own label.

use borcelle_crds::{Broadcast, ScheduledReminder};
use borcelle_store::Owner;
use borcelle_store::schedules::{BROADCAST, REMINDER};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{ScheduleStore, ScheduleView, Scope, name_taken};
use crate::{Error, Result};

/// The user a reminder belongs to (or the admin who created a broadcast), by account id.
pub const OWNER_LABEL: &str = "crm.borcelle.io/owner";
/// The name the user gave it (object names carry a suffix that keeps users' names apart).
pub const NAME_LABEL: &str = "crm.borcelle.io/name";
/// Field manager of the API's writes.
const MANAGER: &str = "borcelle-api";
/// Most objects listed at once.
const LIST_MAX: u32 = 1000;

/// A cluster and the namespace the resources live in.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

fn resource_of(kind: &str) -> ApiResource {
    if kind == BROADCAST { ApiResource::erase::<Broadcast>(&()) } else { ApiResource::erase::<ScheduledReminder>(&()) }
}

/// The object's name: a broadcast's own name (administrators share one list); a reminder's name
/// with a short suffix of its owner's id, so that two users may both have a "weekly" reminder.
pub fn object_name(scope: Scope, name: &str) -> String {
    match scope.owner {
        Some(owner) if scope.kind == REMINDER => format!("{name}-{}", &owner.id().simple().to_string()[..8]),
        _ => name.to_owned(),
    }
}

/// The Kubernetes API could not be reached or failed.
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes API: {0}")]
struct ApiUnavailable(kube::Error);

fn unavailable(err: kube::Error) -> Error {
    Error::Unavailable(Box::new(ApiUnavailable(err)))
}

impl Cluster {
    /// Connects with the in-cluster service account or the local kubeconfig; the namespace is the
    /// given one or the client's default.
    pub async fn connect(namespace: Option<String>) -> std::result::Result<Cluster, crate::SetupError> {
        let client = kube::Client::try_default().await.map_err(|err| {
            crate::SetupError::new("connecting to the Kubernetes API (BORCELLE_SCHEDULER=kubernetes)", err)
        })?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Cluster { client, namespace })
    }

    fn api(&self, kind: &str) -> (Api<DynamicObject>, ApiResource) {
        let resource = resource_of(kind);
        (Api::namespaced_with(self.client.clone(), &self.namespace, &resource), resource)
    }

    /// The object if it is the caller's (a reminder of another user is not found).
    async fn find(&self, scope: Scope, name: &str) -> Result<DynamicObject> {
        let (api, _) = self.api(scope.kind);
        let object = match api.get_opt(&object_name(scope, name)).await.map_err(unavailable)? {
            Some(object) => object,
            None => return Err(Error::NotFound(scope.noun())),
        };
        if let Some(owner) = scope.owner
            && object.metadata.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)) != Some(&owner.to_string())
        {
            return Err(Error::NotFound(scope.noun()));
        }
        Ok(object)
    }
}

impl ScheduleStore for Cluster {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn list(&self, scope: Scope) -> BoxFuture<'_, Result<Vec<ScheduleView>>> {
        Box::pin(async move {
            let (api, _) = self.api(scope.kind);
            let mut params = ListParams::default().limit(LIST_MAX);
            if let Some(owner) = scope.owner {
                params = params.labels(&format!("{OWNER_LABEL}={owner}"));
            }
            let list = api.list(&params).await.map_err(unavailable)?;
            let mut views: Vec<ScheduleView> = list.items.into_iter().map(|o| view(scope.kind, o)).collect();
            views.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(views)
        })
    }

    fn get<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<ScheduleView>> {
        Box::pin(async move { Ok(view(scope.kind, self.find(scope, name).await?)) })
    }

    fn spec<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<Value>> {
        Box::pin(
            async move { Ok(self.find(scope, name).await?.data.get("spec").cloned().unwrap_or_else(|| json!({}))) },
        )
    }

    /// Creates the object with a checked spec, labelled with its owner and name.
    fn create<'a>(
        &'a self,
        scope: Scope,
        creator: Owner,
        name: &'a str,
        spec: Value,
    ) -> BoxFuture<'a, Result<ScheduleView>> {
        Box::pin(async move {
            let (api, resource) = self.api(scope.kind);
            let mut object = DynamicObject::new(&object_name(scope, name), &resource);
            object.metadata.labels = Some(
                [
                    (OWNER_LABEL.to_owned(), scope.owner.unwrap_or(creator).to_string()),
                    (NAME_LABEL.to_owned(), name.to_owned()),
                    // The operator's admission webhook skips objects with this label (the chart's
                    // objectSelector): they were checked here, and must not wait for the operator.
                    ("app.kubernetes.io/managed-by".to_owned(), "borcelle".to_owned()),
                ]
                .into(),
            );
            object.data = json!({ "spec": spec });
            let params = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
            match api.create(&params, &object).await {
                Ok(created) => Ok(view(scope.kind, created)),
                Err(kube::Error::Api(status)) if status.code == 409 => Err(name_taken(scope, name)),
                Err(kube::Error::Api(status)) if status.code == 422 => {
                    Err(Error::invalid("spec", status.message.clone()))
                }
                Err(err) => Err(unavailable(err)),
            }
        })
    }

    /// Replaces the spec of the caller's object (already merged and checked).
    fn replace_spec<'a>(&'a self, scope: Scope, name: &'a str, spec: Value) -> BoxFuture<'a, Result<ScheduleView>> {
        Box::pin(async move {
            self.find(scope, name).await?;
            let (api, _) = self.api(scope.kind);
            let patch = Patch::Merge(json!({ "spec": spec }));
            let params = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
            match api.patch(&object_name(scope, name), &params, &patch).await {
                Ok(object) => Ok(view(scope.kind, object)),
                Err(kube::Error::Api(status)) if status.code == 404 => Err(Error::NotFound(scope.noun())),
                Err(kube::Error::Api(status)) if status.code == 422 => {
                    Err(Error::invalid("spec", status.message.clone()))
                }
                Err(err) => Err(unavailable(err)),
            }
        })
    }

    fn delete<'a>(&'a self, scope: Scope, name: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.find(scope, name).await?;
            let (api, _) = self.api(scope.kind);
            match api.delete(&object_name(scope, name), &DeleteParams::background()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(status)) if status.code == 404 => Err(Error::NotFound(scope.noun())),
                Err(err) => Err(unavailable(err)),
            }
        })
    }
}

fn view(kind: &str, object: DynamicObject) -> ScheduleView {
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let name = labels.get(NAME_LABEL).cloned().or(object.metadata.name.clone()).unwrap_or_default();
    let created = object
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32))
        .unwrap_or_else(Utc::now);
    ScheduleView {
        kind: kind.to_owned(),
        name,
        uid: object.metadata.uid.as_deref().and_then(|u| u.parse().ok()).unwrap_or_default(),
        spec: object.data.get("spec").cloned().unwrap_or_else(|| json!({})),
        status: object.data.get("status").cloned().unwrap_or_else(|| json!({})),
        creation_timestamp: created,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use http::{Request, Response};
    use kube::client::Body;
    use uuid::Uuid;

    use super::*;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    const OWNER: &str = "0195f0a1-7c4e-7b1a-9d2e-3f4a5b6c7d8e";
    const PATH: &str = "/apis/crm.borcelle.io/v1alpha1/namespaces/crm/scheduledreminders";

    fn cluster() -> (Cluster, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Cluster { client: kube::Client::new(service, "crm"), namespace: "crm".into() }, handle)
    }

    fn scope() -> Scope {
        Scope::reminders(Owner::new(OWNER.parse().unwrap()))
    }

    /// The next request: method, path, query and JSON body; answered with `status` and `body`.
    async fn answer(handle: &mut Handle, status: u16, body: Value) -> (String, String, String, Value) {
        let (request, respond) = handle.next_request().await.expect("a request");
        let (parts, request_body) = request.into_parts();
        let bytes = request_body.collect_bytes().await.unwrap();
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        let query = parts.uri.query().unwrap_or("").to_owned();
        respond.send_response(
            Response::builder().status(status).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap(),
        );
        (parts.method.to_string(), parts.uri.path().to_owned(), query, json)
    }

    fn stored(name: &str, owner: &str) -> Value {
        json!({
            "apiVersion": "crm.borcelle.io/v1alpha1", "kind": "ScheduledReminder",
            "metadata": { "name": format!("{name}-0195f0a1"), "namespace": "crm", "uid": "11111111-2222-3333-4444-555555555555",
                          "creationTimestamp": "2026-11-24T08:00:00Z",
                          "labels": { OWNER_LABEL: owner, NAME_LABEL: name } },
            "spec": { "owner": "a@example.com", "schedule": "@daily" },
            "status": { "nextScheduleTime": "2026-11-25T00:00:00Z" }
        })
    }

    fn failure(code: u16, message: &str) -> Value {
        json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "message": message, "reason": "Invalid" })
    }

    #[tokio::test]
    async fn create_labels_the_owner_and_keeps_users_names_apart() {
        let (cluster, mut handle) = cluster();
        let spec = json!({ "owner": "a@example.com", "schedule": "@daily" });
        let work = tokio::spawn(async move { cluster.create(scope(), Owner::new(Uuid::nil()), "weekly", spec).await });
        let (method, path, _, body) = answer(&mut handle, 201, stored("weekly", OWNER)).await;
        assert_eq!((method.as_str(), path.as_str()), ("POST", PATH));
        assert_eq!(body["metadata"]["name"], "weekly-0195f0a1");
        assert_eq!(body["metadata"]["labels"][OWNER_LABEL], OWNER);
        assert_eq!(body["metadata"]["labels"][NAME_LABEL], "weekly");
        // The chart's admission webhook skips what carries it (the API checks its own objects).
        assert_eq!(body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "borcelle");
        assert_eq!(body["spec"]["schedule"], "@daily");
        let view = work.await.unwrap().unwrap();
        assert_eq!((view.name.as_str(), view.kind.as_str()), ("weekly", "ScheduledReminder"));
        assert_eq!(view.status["nextScheduleTime"], "2026-11-25T00:00:00Z", "the operator's status shows through");
    }

    #[tokio::test]
    async fn the_list_asks_for_the_callers_objects_only() {
        let (cluster, mut handle) = cluster();
        let work = tokio::spawn(async move { cluster.list(scope()).await });
        let list = json!({ "apiVersion": "crm.borcelle.io/v1alpha1", "kind": "ScheduledReminderList", "metadata": {}, "items": [stored("weekly", OWNER)] });
        let (method, path, query, _) = answer(&mut handle, 200, list).await;
        assert_eq!((method.as_str(), path.as_str()), ("GET", PATH));
        let query: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap();
        assert!(query.contains(&("labelSelector".into(), format!("{OWNER_LABEL}={OWNER}"))), "{query:?}");
        assert_eq!(work.await.unwrap().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn another_users_object_is_not_found_and_never_touched() {
        let (cluster, mut handle) = cluster();
        let other = "99999999-2222-3333-4444-555555555555";
        let work = tokio::spawn(async move { cluster.delete(scope(), "weekly").await });
        let (method, path, _, _) = answer(&mut handle, 200, stored("weekly", other)).await;
        assert_eq!((method.as_str(), path.as_str()), ("GET", format!("{PATH}/weekly-0195f0a1").as_str()));
        assert!(matches!(work.await.unwrap(), Err(Error::NotFound("reminder"))));
        let next = tokio::time::timeout(std::time::Duration::from_millis(200), handle.next_request()).await;
        assert!(!matches!(next, Ok(Some(_))), "no DELETE follows");
    }

    #[tokio::test]
    async fn the_api_servers_refusals_become_clear_client_errors() {
        let (cluster, mut handle) = cluster();
        let spec = json!({ "owner": "a@example.com", "schedule": "@daily" });
        let taken = {
            let cluster = cluster.clone();
            let spec = spec.clone();
            tokio::spawn(async move { cluster.create(scope(), Owner::new(Uuid::nil()), "weekly", spec).await })
        };
        answer(&mut handle, 409, failure(409, "already exists")).await;
        assert!(matches!(taken.await.unwrap(), Err(Error::Conflict { code: "name_taken", .. })));
        let invalid =
            tokio::spawn(async move { cluster.create(scope(), Owner::new(Uuid::nil()), "weekly", spec).await });
        answer(&mut handle, 422, failure(422, "spec: Invalid value: set exactly one of body and noteId")).await;
        match invalid.await.unwrap() {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "spec");
                assert!(message.contains("set exactly one of body and noteId"), "{message}");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
}
