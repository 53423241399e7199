//! Reminders and broadcasts as resources in a Kubernetes cluster (`BORCELLE_SCHEDULER=kubernetes`):
//! the API creates, lists, changes and deletes `ScheduledReminder` and `Broadcast` objects, and
//! the operator runs them. Each object carries its owner in a label; a user only ever sees and
//! touches objects with their own label.

use borcelle_crds::{Broadcast, ScheduledReminder};
use chrono::{DateTime, Utc};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::db::schedules::{BROADCAST, REMINDER};
use crate::error::{AppError, AppResult};
use crate::schedules::{ScheduleView, Scope};

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
        Some(owner) if scope.kind == REMINDER => format!("{name}-{}", &owner.simple().to_string()[..8]),
        _ => name.to_owned(),
    }
}

fn unavailable(err: kube::Error) -> AppError {
    AppError::Unavailable(anyhow::anyhow!("the Kubernetes API: {err}"))
}

fn noun(scope: Scope) -> &'static str {
    if scope.kind == BROADCAST { "broadcast" } else { "reminder" }
}

impl Cluster {
    /// Connects with the in-cluster service account or the local kubeconfig; the namespace is the
    /// given one or the client's default.
    pub async fn connect(namespace: Option<String>) -> anyhow::Result<Cluster> {
        let client = kube::Client::try_default().await?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Cluster { client, namespace })
    }

    fn api(&self, kind: &str) -> (Api<DynamicObject>, ApiResource) {
        let resource = resource_of(kind);
        (Api::namespaced_with(self.client.clone(), &self.namespace, &resource), resource)
    }

    /// The object if it is the caller's (a reminder of another user is not found).
    async fn find(&self, scope: Scope, name: &str) -> AppResult<DynamicObject> {
        let (api, _) = self.api(scope.kind);
        let object = match api.get_opt(&object_name(scope, name)).await.map_err(unavailable)? {
            Some(object) => object,
            None => return Err(AppError::NotFound(noun(scope))),
        };
        if let Some(owner) = scope.owner
            && object.metadata.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)) != Some(&owner.to_string())
        {
            return Err(AppError::NotFound(noun(scope)));
        }
        Ok(object)
    }

    pub async fn list(&self, scope: Scope) -> AppResult<Vec<ScheduleView>> {
        let (api, _) = self.api(scope.kind);
        let mut params = ListParams::default().limit(LIST_MAX);
        if let Some(owner) = scope.owner {
            params = params.labels(&format!("{OWNER_LABEL}={owner}"));
        }
        let list = api.list(&params).await.map_err(unavailable)?;
        let mut views: Vec<ScheduleView> = list.items.into_iter().map(|o| view(scope.kind, o)).collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(views)
    }

    pub async fn get(&self, scope: Scope, name: &str) -> AppResult<ScheduleView> {
        Ok(view(scope.kind, self.find(scope, name).await?))
    }

    /// Creates the object with a checked spec, labelled with its owner and name.
    pub async fn create(&self, scope: Scope, creator: Uuid, name: &str, spec: Value) -> AppResult<ScheduleView> {
        let (api, resource) = self.api(scope.kind);
        let mut object = DynamicObject::new(&object_name(scope, name), &resource);
        object.metadata.labels = Some(
            [
                (OWNER_LABEL.to_owned(), scope.owner.unwrap_or(creator).to_string()),
                (NAME_LABEL.to_owned(), name.to_owned()),
                ("app.kubernetes.io/managed-by".to_owned(), "borcelle".to_owned()),
            ]
            .into(),
        );
        object.data = json!({ "spec": spec });
        match api.create(&PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() }, &object).await {
            Ok(created) => Ok(view(scope.kind, created)),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(AppError::Conflict {
                code: "name_taken",
                field: "name",
                message: format!("a {} named {name:?} exists already", noun(scope)),
                existing_id: None,
            }),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                Err(AppError::validation("spec", status.message.clone()))
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// The caller's object's current spec.
    pub async fn spec(&self, scope: Scope, name: &str) -> AppResult<Value> {
        Ok(self.find(scope, name).await?.data.get("spec").cloned().unwrap_or_else(|| json!({})))
    }

    /// Replaces the spec of the caller's object (already merged and checked).
    pub async fn replace_spec(&self, scope: Scope, name: &str, spec: Value) -> AppResult<ScheduleView> {
        self.find(scope, name).await?;
        let (api, _) = self.api(scope.kind);
        let patch = Patch::Merge(json!({ "spec": spec }));
        match api
            .patch(
                &object_name(scope, name),
                &PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() },
                &patch,
            )
            .await
        {
            Ok(object) => Ok(view(scope.kind, object)),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(AppError::NotFound(noun(scope))),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                Err(AppError::validation("spec", status.message.clone()))
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    pub async fn delete(&self, scope: Scope, name: &str) -> AppResult<()> {
        self.find(scope, name).await?;
        let (api, _) = self.api(scope.kind);
        match api.delete(&object_name(scope, name), &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(AppError::NotFound(noun(scope))),
            Err(err) => Err(unavailable(err)),
        }
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

    use axum::http::{Request, Response};
    use kube::client::Body;

    use super::*;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    const OWNER: &str = "0195f0a1-7c4e-7b1a-9d2e-3f4a5b6c7d8e";
    const PATH: &str = "/apis/crm.borcelle.io/v1alpha1/namespaces/crm/scheduledreminders";

    fn cluster() -> (Cluster, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (Cluster { client: kube::Client::new(service, "crm"), namespace: "crm".into() }, handle)
    }

    fn scope() -> Scope {
        Scope::reminders(OWNER.parse().unwrap())
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
        let work = tokio::spawn(async move { cluster.create(scope(), Uuid::nil(), "weekly", spec).await });
        let (method, path, _, body) = answer(&mut handle, 201, stored("weekly", OWNER)).await;
        assert_eq!((method.as_str(), path.as_str()), ("POST", PATH));
        assert_eq!(body["metadata"]["name"], "weekly-0195f0a1");
        assert_eq!(body["metadata"]["labels"][OWNER_LABEL], OWNER);
        assert_eq!(body["metadata"]["labels"][NAME_LABEL], "weekly");
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
        assert!(matches!(work.await.unwrap(), Err(AppError::NotFound("reminder"))));
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
            tokio::spawn(async move { cluster.create(scope(), Uuid::nil(), "weekly", spec).await })
        };
        answer(&mut handle, 409, failure(409, "already exists")).await;
        assert!(matches!(taken.await.unwrap(), Err(AppError::Conflict { code: "name_taken", .. })));
        let invalid = tokio::spawn(async move { cluster.create(scope(), Uuid::nil(), "weekly", spec).await });
        answer(&mut handle, 422, failure(422, "spec: Invalid value: set exactly one of body and noteId")).await;
        match invalid.await.unwrap() {
            Err(AppError::Validation { field, message }) => {
                assert_eq!(field, "spec");
                assert!(message.contains("set exactly one of body and noteId"), "{message}");
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }
}
