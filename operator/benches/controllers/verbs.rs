//! The mock API server's answers to lists, gets, creates, replaces, patches and deletes.

use std::collections::BTreeMap;
use std::ops::Bound;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::api_server::{ApiError, ApiServer, Resource, Target, json_response};
use super::objects;
use super::selector::Selector;
use super::store::{Store, Stored, name_of};

fn resource_version(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty())
}

fn conflict(target: &Target) -> ApiError {
    let name = target.name.as_deref().unwrap_or_default();
    let message = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        target.resource.plural()
    );
    ApiError::new(409, "Conflict", message)
}

pub fn list(server: &ApiServer, target: &Target, query: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let selector = Selector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|err| ApiError::new(400, "BadRequest", err))?;
    // kube's watcher sends no resourceVersion with a limit: the pages are a consistent list (from
    // etcd on a real server), never the whole watch cache at once.
    let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let resource = target.resource;
    let namespace = target.namespace.clone();
    let (items, rv, next) = {
        let store = server.store();
        // `continue`: "{resourceVersion}/{namespace}/{name}" of the last item sent.
        let (rv, start) = match query.get("continue").and_then(|c| c.split_once('/')) {
            Some((rv, after)) => {
                let (ns, name) = after.split_once('/').unwrap_or_default();
                let key = (resource, ns.to_owned(), name.to_owned());
                (rv.parse().unwrap_or(store.rv), Bound::Excluded(key))
            }
            None => (store.rv, Bound::Included((resource, namespace.clone().unwrap_or_default(), String::new()))),
        };
        if resource == Resource::Pods {
            (pods_of_finished_jobs(&store, namespace.as_deref(), &selector), rv, None)
        } else {
            let mut items = Vec::new();
            let mut last = None;
            let mut more = false;
            let candidates = store
                .objects
                .range((start, Bound::Unbounded))
                .take_while(|((r, ns, _), _)| *r == resource && namespace.as_ref().is_none_or(|n| n == ns))
                .filter(|(_, stored)| selector.matches(&stored.labels));
            for ((_, ns, name), stored) in candidates {
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(stored.json.clone());
                last = Some((ns, name));
            }
            let next = last.filter(|_| more).map(|(ns, name)| format!("{rv}/{ns}/{name}"));
            (items, rv, next)
        }
    };
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    let head = format!(
        r#"{{"apiVersion":"{}","kind":"{}List","metadata":{metadata},"items":["#,
        resource.api_version(),
        resource.kind()
    );
    let mut body = Vec::with_capacity(head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    body.extend_from_slice(head.as_bytes());
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, body.into()))
}

/// The pods of the finished Jobs the selector names (`batch.kubernetes.io/job-name=…`).
fn pods_of_finished_jobs(store: &Store, namespace: Option<&str>, selector: &Selector) -> Vec<Bytes> {
    let Some(job) = selector.equals("batch.kubernetes.io/job-name") else { return Vec::new() };
    let key = (Resource::Jobs, namespace.unwrap_or_default().to_owned(), job.to_owned());
    let Some(stored) = store.objects.get(&key) else { return Vec::new() };
    let job = stored.value();
    if !objects::is_complete(&job) {
        return Vec::new();
    }
    vec![Bytes::from(serde_json::to_vec(&objects::pod(&job)).expect("JSON"))]
}

pub fn get_object(server: &ApiServer, target: &Target) -> Result<Response, ApiError> {
    let store = server.store();
    match store.objects.get(&target.key()) {
        Some(stored) => Ok(json_response(StatusCode::OK, stored.json.clone())),
        None => Err(ApiError::new(404, "NotFound", format!("{} not found", target.resource.plural()))),
    }
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::new(400, "BadRequest", err.to_string()))
}

pub fn create(server: &ApiServer, target: &Target, body: &[u8]) -> Result<Response, ApiError> {
    let mut object = parse(body)?;
    let namespace = target.namespace.clone().unwrap_or_default();
    let name = name_of(&object, "name");
    if name.is_empty() {
        return Err(ApiError::new(422, "Invalid", "metadata.name: Required value"));
    }
    let mut store = server.store();
    let uid = store.uid();
    object["metadata"]["namespace"] = json!(namespace);
    if target.resource == Resource::Events {
        // Counted, not kept: nothing watches events.
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["resourceVersion"] = json!(store.rv.to_string());
        return Ok(json_response(StatusCode::CREATED, serde_json::to_vec(&object).expect("JSON").into()));
    }
    let key = (target.resource, namespace, name);
    if store.objects.contains_key(&key) {
        let message = format!("{} \"{}\" already exists", target.resource.plural(), key.2);
        return Err(ApiError::new(409, "AlreadyExists", message));
    }
    let object = if target.resource == Resource::Jobs {
        objects::created_job(object, &uid, objects::now())
    } else {
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["creationTimestamp"] = json!(borcelle_crds::status::rfc3339(objects::now()));
        object
    };
    let created = store.put(key.clone(), object, "ADDED");
    if target.resource == Resource::Jobs {
        // The Job controller starts its pod at once.
        store.started.push(key.clone());
        let mut running = created.value();
        objects::running(&mut running, objects::now());
        store.put(key, running, "MODIFIED");
    }
    drop(store);
    server.changed();
    Ok(json_response(StatusCode::CREATED, created.json))
}

pub fn replace(server: &ApiServer, target: &Target, body: &[u8]) -> Result<Response, ApiError> {
    let mut object = parse(body)?;
    let mut store = server.store();
    let key = target.key();
    let Some(current) = store.objects.get(&key).map(Stored::value) else {
        return Err(ApiError::new(404, "NotFound", format!("{} not found", target.resource.plural())));
    };
    if resource_version(&object).is_some_and(|v| Some(v) != resource_version(&current)) {
        return Err(conflict(target));
    }
    object["metadata"]["uid"] = current["metadata"]["uid"].clone();
    object["metadata"]["creationTimestamp"] = current["metadata"]["creationTimestamp"].clone();
    let stored = store.put(key, object, "MODIFIED");
    drop(store);
    server.changed();
    Ok(json_response(StatusCode::OK, stored.json))
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(fields), Some(changes)) => {
            for (key, change) in changes {
                if change.is_null() {
                    fields.remove(key);
                } else {
                    merge(fields.entry(key.clone()).or_insert(Value::Null), change);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

pub fn patch(server: &ApiServer, target: &Target, content_type: &str, body: &[u8]) -> Result<Response, ApiError> {
    let patch = parse(body)?;
    if target.resource == Resource::Events {
        return Ok(json_response(StatusCode::OK, Bytes::copy_from_slice(body)));
    }
    let mut store = server.store();
    let key = target.key();
    let Some(mut object) = store.objects.get(&key).map(Stored::value) else {
        return Err(ApiError::new(404, "NotFound", format!("{} not found", target.resource.plural())));
    };
    if resource_version(&patch).is_some_and(|v| Some(v) != resource_version(&object)) {
        return Err(conflict(target));
    }
    let apply = content_type.starts_with("application/apply-patch");
    match target.subresource.as_deref() {
        Some("status") if apply => {
            // Server-side apply by the status's only (forcing) manager: the status is what it applied.
            let dropped = running_jobs_dropped(&store, &key.1, &object["status"], &patch["status"]);
            if dropped > 0 {
                server.counted("status writes that dropped a running Job from status.active".to_owned(), dropped);
            }
            object["status"] = patch["status"].clone();
            let entry = json!({"manager": "borcelle-operator", "operation": "Apply",
                "apiVersion": object["apiVersion"], "time": borcelle_crds::status::rfc3339(objects::now()),
                "fieldsType": "FieldsV1", "subresource": "status",
                "fieldsV1": objects::fields_v1(&json!({"status": patch["status"]}))});
            if let Some(fields) = object["metadata"]["managedFields"].as_array_mut() {
                fields.retain(|f| !(f["manager"] == "borcelle-operator" && f["subresource"] == "status"));
                fields.push(entry);
            }
        }
        Some("status") => merge(&mut object["status"], &patch["status"]),
        Some(other) => return Err(ApiError::new(404, "NotFound", format!("no subresource {other}"))),
        None if apply => return Err(ApiError::new(415, "UnsupportedMediaType", "apply is only served for status")),
        None => {
            let mut changes = patch;
            if let Some(metadata) = changes["metadata"].as_object_mut() {
                metadata.remove("resourceVersion");
            }
            merge(&mut object, &changes);
        }
    }
    let stored = store.put(key, object, "MODIFIED");
    drop(store);
    server.changed();
    Ok(json_response(StatusCode::OK, stored.json))
}

/// How many Jobs listed in `before.active` are missing from `after.active` although they still
/// run: a status written from a Job cache that did not know them.
fn running_jobs_dropped(store: &Store, namespace: &str, before: &Value, after: &Value) -> u64 {
    let names = |status: &Value| -> Vec<String> {
        status["active"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    };
    let kept = names(after);
    let running = |name: &String| {
        let key = (Resource::Jobs, namespace.to_owned(), name.clone());
        store.objects.get(&key).is_some_and(|job| !objects::is_complete(&job.value()))
    };
    names(before).iter().filter(|name| !kept.contains(name) && running(name)).count() as u64
}

pub fn delete(server: &ApiServer, target: &Target) -> Result<Response, ApiError> {
    let mut store = server.store();
    let key = target.key();
    let Some(object) = store.objects.get(&key).map(Stored::value) else {
        return Err(ApiError::new(404, "NotFound", format!("{} not found", target.resource.plural())));
    };
    let stored = store.put(key, object, "DELETED");
    drop(store);
    server.changed();
    Ok(json_response(StatusCode::OK, stored.json))
}
