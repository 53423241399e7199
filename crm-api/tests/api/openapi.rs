//! The OpenAPI document: served without authentication, and true to the router — every route
//! under `/api/v1` is documented, and every documented operation is routed.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

/// `(METHOD, /path/{param})` pairs.
type Operations = BTreeSet<(String, String)>;

fn documented(doc: &Value) -> Operations {
    let mut operations = Operations::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "options", "head", "patch", "trace"] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

/// The routes of an axum router, read from its `Debug` form (axum is pinned: this reads
/// `RouteId(n): MethodRouter(MethodRouter { get: …, head: …, … })` and the node's
/// `RouteId(n): "/path"`). Axum's own catch-alls for a nested router's fallback are left out.
fn routed(router: &axum::Router<borcelle::state::AppState>) -> Operations {
    let text = format!("{router:?}");
    let fallback = text.find("fallback_router:").expect("a Router's Debug names its fallback router");
    let main = &text[..fallback];
    let mut paths = std::collections::HashMap::new();
    let nodes = main.find("node: Node").expect("the path router's node");
    let mut rest = &main[nodes..];
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let quoted = rest.split('"').nth(1).expect("a quoted path").to_owned();
        paths.insert(id, quoted);
    }
    let mut operations = Operations::new();
    let mut rest = &main[..nodes];
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let end = rest.find("allow_header").unwrap_or(rest.len());
        let methods = &rest[..end];
        let path = paths.get(&id).unwrap_or_else(|| panic!("route {id} has no path in {main}"));
        if path.contains("__private__axum") {
            continue;
        }
        for method in ["get", "delete", "options", "patch", "post", "put", "trace", "connect"] {
            let set = methods.split(&format!(" {method}: ")).nth(1).is_some_and(|after| !after.starts_with("None"));
            if set {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[test]
fn every_routed_operation_is_documented_and_every_documented_one_is_routed() {
    let settings = base_settings("postgres://unused/unused", "127.0.0.1:1".parse().unwrap());
    let (router, doc) = borcelle::http::api::mounted(&settings);
    let doc = serde_json::to_value(&doc).unwrap();
    let routed = routed(&router);
    let documented = documented(&doc);
    assert!(routed.len() >= 45, "the router's routes could not be read: {routed:?}");
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routed but not documented"
    );
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not routed"
    );
}

#[tokio::test]
async fn the_document_is_served_without_authentication_and_each_operation_answers() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("api_token") && schemes.contains_key("session_cookie"), "{schemes:?}");
    assert!(doc["components"]["schemas"]["Error"].is_object());

    // Each documented operation, called without credentials, reaches its route: never the JSON
    // API's "route not found", never 405. (401 proves the route is there and guarded.)
    let operations = documented(&doc);
    assert!(operations.len() >= 45, "{operations:?}");
    for (method, path) in &operations {
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace("{name}", "nothing");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap();
        let status = response.status().as_u16();
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(body["error"]["message"], "route not found", "{method} {path} is documented but not routed");
        assert!(status < 500, "{method} {path} answered {status}");

        // What it answered is documented for it.
        let documented_statuses = doc["paths"][path][method.as_str().to_lowercase()]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>();
        assert!(
            documented_statuses.contains(&status.to_string()),
            "{method} {path} answered {status}, documented: {documented_statuses:?}"
        );
    }

    // An unknown route under /api/v1 is still the JSON 404.
    let (status, code, _) = error_of(app.get("/api/v1/no-such-thing").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn every_operation_documents_its_error_answers() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no id"));
            assert!(responses.contains_key("401") && responses.contains_key("503"), "{id}: {responses:?}");
            if method != "get" {
                assert!(responses.contains_key("403"), "{id} is state-changing: the CSRF guard answers 403");
            }
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{id} has a path parameter");
            }
            if operation["requestBody"]["content"].get("application/json").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{id} takes JSON: {status}");
                }
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                        "{id} {status}"
                    );
                }
            }
        }
    }
    let ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "operation ids are unique: {ids:?}");
}

/// Found while documenting: the preview's query string was read with axum's bare `Query`, whose
/// rejection is a plain-text 400 rather than the API's JSON error.
#[tokio::test]
async fn a_bad_schedule_preview_query_is_a_json_422_naming_the_parameter() {
    let mut app = spawn_app().await;
    app.signed_in_user("previewer@example.com").await;
    for (query, field) in
        [("count=many&schedule=@daily", "count"), ("timeZone=UTC", "schedule"), ("schedule=@daily&x=1", "x")]
    {
        let response = app.get(&format!("/api/v1/reminders/preview?{query}")).await;
        assert_eq!(response.headers()["content-type"], "application/json", "{query}");
        let (status, code, named) = error_of(response).await;
        assert_eq!((status, code.as_str(), named.as_deref()), (422, "invalid_field", Some(field)), "{query}");
    }
    let response = app.get("/api/v1/reminders/preview?schedule=@daily&count=2").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["runs"].as_array().unwrap().len(), 2);
    assert_eq!(body["timeZone"], "UTC");
}
