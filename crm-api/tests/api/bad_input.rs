//! Bad input gets a 4xx JSON error that names what to fix; never a 500, never a half-written row.

use serde_json::{Value, json};

use crate::helpers::*;

async fn send_raw(app: &TestApp, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.client.post(app.url(path)).header("Content-Type", content_type).body(body).send().await.unwrap()
}

#[tokio::test]
async fn each_bad_registration_gets_a_4xx_naming_the_field() {
    let app = spawn_app().await;
    let long = "x".repeat(300);
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "email": "not-an-email", "display_name": "A", "password": PASSWORD }), "email"),
        (json!({ "email": format!("{long}@example.com"), "display_name": "A", "password": PASSWORD }), "email"),
        (json!({ "email": "a@example.com", "display_name": "A", "password": "short" }), "password"),
        (json!({ "email": "a@example.com", "display_name": "A", "password": "p".repeat(129) }), "password"),
        (json!({ "email": "a@example.com", "display_name": long, "password": PASSWORD }), "display_name"),
        (json!({ "email": "a@example.com", "display_name": "   ", "password": PASSWORD }), "display_name"),
        (json!({ "email": "a@example.com", "password": PASSWORD }), "display_name"),
        (json!({ "display_name": "A", "password": PASSWORD }), "email"),
        (json!({ "email": 42, "display_name": "A", "password": PASSWORD }), "email"),
        (json!({ "email": "a@example.com", "display_name": "A", "password": PASSWORD, "role": "admin" }), "role"),
    ];
    for (body, field) in cases {
        let (status, code, named) = error_of(app.post_json("/api/v1/auth/register", &body).await).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(code, "invalid_field", "{body}");
        assert_eq!(named.as_deref(), Some(field), "{body}");
    }
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(users, 0, "nothing was written");
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = spawn_app().await;
    let path = "/api/v1/auth/register";
    let (status, code, _) = error_of(send_raw(&app, path, "application/json", "{\"email\": ").await).await;
    assert_eq!((status, code.as_str()), (400, "malformed_body"));
    let trailing =
        format!("{{\"email\":\"a@example.com\",\"display_name\":\"A\",\"password\":\"{PASSWORD}\"}} trailing");
    let (status, code, _) = error_of(send_raw(&app, path, "application/json", trailing).await).await;
    assert_eq!((status, code.as_str()), (400, "malformed_body"));
    let (status, code, _) = error_of(send_raw(&app, path, "application/json", "[1, 2]").await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));
    let (status, code, _) = error_of(send_raw(&app, path, "text/plain", "email=a").await).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    let (status, code, _) = error_of(send_raw(&app, path, "application/json", vec![b' '; 65 * 1024]).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    let (status, code, _) = error_of(send_raw(&app, path, "application/json", vec![0xff, 0xfe, 0x00]).await).await;
    assert_eq!((status, code.as_str()), (400, "malformed_body"));
}

#[tokio::test]
async fn every_account_route_refuses_bad_fields_without_a_server_error() {
    let mut app = spawn_app().await;
    let anonymous_cases: Vec<(&str, Value)> = vec![
        ("/api/v1/auth/login", json!({ "email": "nope", "password": "x" })),
        ("/api/v1/auth/login", json!({ "email": "a@example.com", "password": "" })),
        ("/api/v1/auth/login", json!({ "email": "a@example.com" })),
        ("/api/v1/auth/verify", json!({ "token": "" })),
        ("/api/v1/auth/verify", json!({ "token": "t".repeat(5000) })),
        ("/api/v1/auth/resend", json!({ "email": "@@" })),
        ("/api/v1/auth/password/forgot", json!({ "email": "" })),
        ("/api/v1/auth/password/reset", json!({ "token": "abc", "password": "short" })),
        ("/api/v1/auth/password/reset", json!({ "token": "", "password": PASSWORD })),
    ];
    for (path, body) in anonymous_cases {
        let (status, _, field) = error_of(app.post_json(path, &body).await).await;
        assert_eq!(status, 422, "{path} {body}");
        assert!(field.is_some(), "{path} {body} names a field");
    }
    app.signed_in_user("input@example.com").await;
    let (status, _, field) = error_of(app.post_json("/api/v1/tokens", &json!({ "name": "  " })).await).await;
    assert_eq!((status, field.as_deref()), (422, Some("name")));
    let (status, _, field) = error_of(app.post_json("/api/v1/tokens", &json!({ "name": "n".repeat(101) })).await).await;
    assert_eq!((status, field.as_deref()), (422, Some("name")));
    let response = app
        .client
        .delete(app.url("/api/v1/tokens/not-a-uuid"))
        .header("X-CSRF-Token", app.csrf.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 404);
    let (status, _, field) = error_of(app.get("/api/v1/admin/outbox?limit=10000").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("limit")));
    let (status, _, _) = error_of(app.get("/api/v1/admin/outbox?limit=abc").await).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn unknown_api_routes_answer_json_404() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(app.get("/api/v1/nothing-here").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn a_form_with_garbage_gets_a_4xx() {
    let app = spawn_app().await;
    let response = send_raw(&app, "/login", "application/x-www-form-urlencoded", "email=%ZZ&password").await;
    assert_eq!(response.status(), 422, "a lenient decode still fails validation, never a 500");
    let response = app.post_form("/register", &[("email", ""), ("display_name", ""), ("password", "")]).await;
    assert_eq!(response.status(), 422);
}

/// Every page with an id or name in its path, given odd path values (a newline, an invalid UTF-8
/// byte, NUL, CR/LF, a traversal, an over-long value, a right-to-left override): an HTML page
/// with a 4xx, never a 5xx or a bare text error, and nothing done. An attacker's
/// `POST /notes/%0A/tasks/<own task>/retry` retried the task and then answered `500 text/plain`.
#[tokio::test]
async fn odd_values_in_page_paths_get_an_html_4xx_and_change_nothing() {
    let mut app = spawn_app().await;
    app.verified_user("odd@example.com", borcelle_store::users::Role::Admin).await;
    assert_eq!(app.login("odd@example.com", PASSWORD).await.status(), 200);
    let csrf = app.csrf.clone().unwrap();
    let task = message_one_new_contact(&app).await;
    sqlx::query("UPDATE deliveries SET status = 'failed', last_error = 'refused', next_attempt_at = NULL WHERE task_id = $1::uuid")
        .bind(&task)
        .execute(&app.db)
        .await
        .unwrap();
    let long = "x".repeat(300);
    let odd = ["%0A", "%FF", "%00", "a%0D%0ALocation:%20evil", "..%2F..%2Fadmin", long.as_str(), "%E2%80%AE"];
    let posts = [
        "/account/tokens/{}/delete",
        "/notifications/{}/read",
        "/admin/broadcasts/{}/delete",
        "/admin/users/{}/role",
        "/notes/{}",
        "/notes/{}/delete",
        "/notes/{}/send",
        "/reminders/{}/suspend",
        "/reminders/{}/resume",
        "/reminders/{}/delete",
        "/contacts/{}/edit",
        "/contacts/{}/delete",
        "/contacts/{}/messages",
    ];
    let gets = ["/notes/{}", "/contacts/{}", "/contacts/{}/edit", "/contacts/{}/delete", "/outbox/{}"];
    let check = |what: String, response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        assert!(content_type.as_deref().is_some_and(|t| t.starts_with("text/html")), "{what}: {content_type:?} {body}");
        assert!(body.contains("</html>"), "{what}: a whole page: {body}");
    };
    for value in odd {
        for template in posts {
            let path = template.replace("{}", value);
            let form =
                [("csrf_token", csrf.as_str()), ("role", "admin"), ("tag", "x"), ("subject", "s"), ("body", "b")];
            check(format!("POST {path}"), app.post_form(&path, &form).await).await;
        }
        for template in gets {
            let path = template.replace("{}", value);
            check(format!("GET {path}"), app.get(&path).await).await;
        }
        // The reported case: a bad note id with the caller's own task.
        let path = format!("/notes/{value}/tasks/{task}/retry");
        check(format!("POST {path}"), app.post_form(&path, &[("csrf_token", &csrf)]).await).await;
    }
    let retried: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE task_id = $1::uuid AND status <> 'failed'")
            .bind(&task)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(retried, 0, "no request with a bad path retried the task");
}

/// The gaps between what the API document promised and what the server did: a positional array
/// taken for an object (at the top and inside a spec), a path byte that is not UTF-8 answered in
/// plain text, and messages that named the wrong problem.
#[tokio::test]
async fn objects_are_objects_bad_paths_are_json_404s_and_messages_name_the_problem() {
    let mut app = spawn_app().await;
    app.signed_in_user("contract@example.com").await;
    // `{"name", "email"}` written as `["name", "email"]` was created (201).
    let (status, code, _) = error_of(app.post_json("/api/v1/contacts", &json!(["Ada", "ada@example.com"])).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_field"));
    let spec = json!({ "recipients": [[], ["ada@example.com"]], "subject": "Hi", "body": "x", "schedule": "@daily" });
    let (status, _, field) =
        error_of(app.post_json("/api/v1/reminders", &json!({ "name": "r", "spec": spec })).await).await;
    assert_eq!((status, field.as_deref()), (422, Some("spec.recipients")));
    let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&app.db).await.unwrap();
    assert_eq!(contacts, 0);

    // A path segment that is not UTF-8 was `400 text/plain`.
    let response = app.get("/api/v1/contacts/%FF").await;
    assert_eq!(response.status(), 404);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));

    // 21 attachments on a reminder were "not your attachments"; a control character in a search
    // was "at most 100 characters".
    let ids: Vec<String> = (0..21).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let spec = json!({ "recipients": { "emails": ["a@example.com"] }, "subject": "Hi", "body": "x", "schedule": "@daily", "attachments": ids });
    let response = app.post_json("/api/v1/reminders", &json!({ "name": "r", "spec": spec })).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "spec.attachments");
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 20 attachments"), "{body}");
    let suggestions: serde_json::Value =
        app.get("/api/v1/contacts/autocomplete?q=abc%07def").await.json().await.unwrap();
    assert_eq!(suggestions["suggestions"], json!([]), "a control character matches nothing, and is no error");
}
