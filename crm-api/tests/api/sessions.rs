//! Session cookies and their expiry.

use std::time::Duration;

use url::Url;

use crate::helpers::*;

fn set_cookie(response: &reqwest::Response) -> String {
    response.headers().get("set-cookie").expect("Set-Cookie").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_lax_and_not_secure_over_http() {
    let mut app = spawn_app().await;
    app.verified_user("cookie@example.com", borcelle_store::users::Role::User).await;
    let cookie = set_cookie(&app.login("cookie@example.com", PASSWORD).await);
    assert!(cookie.starts_with("borcelle_session="), "{cookie}");
    let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Lax"), "{cookie}");
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    assert!(attributes.contains(&"Max-Age=1209600"), "14 days absolute: {cookie}");
    assert!(!attributes.contains(&"Secure"), "{cookie}");
}

#[tokio::test]
async fn behind_https_the_cookie_is_secure_and_host_prefixed() {
    let app = spawn_app_with(|s| s.http.public_url = Url::parse("https://crm.example.com/").unwrap()).await;
    app.verified_user("tls@example.com", borcelle_store::users::Role::User).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("Origin", "https://crm.example.com")
        .json(&serde_json::json!({ "email": "tls@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response);
    assert!(cookie.starts_with("__Host-borcelle_session="), "{cookie}");
    assert!(cookie.split("; ").any(|a| a == "Secure"), "{cookie}");
}

#[tokio::test]
async fn logging_out_ends_the_session() {
    let mut app = spawn_app().await;
    app.signed_in_user("bye@example.com").await;
    assert_eq!(app.get("/api/v1/auth/session").await.status(), 200);
    let response = app.post_json("/api/v1/auth/logout", &serde_json::json!({})).await;
    assert_eq!(response.status(), 204);
    assert!(set_cookie(&response).contains("Max-Age=0"));
    let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(&app.db).await.unwrap();
    assert_eq!(remaining, 0);
    assert_eq!(error_of(app.get("/api/v1/auth/session").await).await.0, 401);
}

#[tokio::test]
async fn an_idle_session_expires() {
    let mut app = spawn_app().await;
    app.signed_in_user("idle@example.com").await;
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '49 hours'").execute(&app.db).await.unwrap();
    assert_eq!(error_of(app.get("/api/v1/auth/session").await).await.0, 401);
}

#[tokio::test]
async fn a_session_expires_at_its_absolute_limit_even_when_active() {
    let mut app = spawn_app().await;
    app.signed_in_user("absolute@example.com").await;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second', last_seen_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(error_of(app.get("/api/v1/auth/session").await).await.0, 401);
}

#[tokio::test]
async fn activity_pushes_back_the_idle_expiry() {
    let mut app = spawn_app().await;
    app.signed_in_user("active@example.com").await;
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '47 hours'").execute(&app.db).await.unwrap();
    assert_eq!(app.get("/api/v1/auth/session").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let idle: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now() - last_seen_at)::float8 FROM sessions")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(idle < 60.0, "last_seen_at was refreshed, idle for {idle} s");
}

/// Logs in from another browser and returns its session cookie (`name=value`).
async fn login_elsewhere(app: &TestApp, email: &str, password: &str) -> String {
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .header("Origin", app.origin())
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "login of {email}");
    set_cookie(&response).split(';').next().expect("cookie").to_owned()
}

/// A client that sends this session cookie and nothing else (as a copied cookie would be sent).
async fn get_with_cookie(app: &TestApp, cookie: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(app.url(path)).header("Cookie", cookie).send().await.expect("request")
}

#[tokio::test]
async fn a_logged_out_session_is_refused_at_once_though_it_was_just_used() {
    let mut app = spawn_app().await;
    app.signed_in_user("gone@example.com").await;
    let cookie = app.session_cookie.clone().expect("session cookie");
    // Used a moment ago: this process remembers it (see auth::session_cache).
    assert_eq!(get_with_cookie(&app, &cookie, "/api/v1/auth/session").await.status(), 200);
    assert_eq!(app.post_json("/api/v1/auth/logout", &serde_json::json!({})).await.status(), 204);
    assert_eq!(error_of(get_with_cookie(&app, &cookie, "/api/v1/contacts").await).await.0, 401);
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_at_once_and_keeps_this_one() {
    let mut app = spawn_app().await;
    app.signed_in_user("changer@example.com").await;
    let this_one = app.session_cookie.clone().expect("session cookie");
    let other_cookie = login_elsewhere(&app, "changer@example.com", PASSWORD).await;
    assert_eq!(get_with_cookie(&app, &other_cookie, "/api/v1/contacts").await.status(), 200);

    let changed = app
        .post_json(
            "/api/v1/auth/password/change",
            &serde_json::json!({ "current_password": PASSWORD, "new_password": "another long password" }),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(error_of(get_with_cookie(&app, &other_cookie, "/api/v1/contacts").await).await.0, 401);
    assert_eq!(get_with_cookie(&app, &this_one, "/api/v1/contacts").await.status(), 200);
}

#[tokio::test]
async fn a_session_used_a_moment_ago_still_expires_when_idle_and_when_ended_elsewhere() {
    let mut app = spawn_app().await;
    app.signed_in_user("cached@example.com").await;
    let cookie = app.session_cookie.clone().expect("session cookie");
    assert_eq!(get_with_cookie(&app, &cookie, "/api/v1/auth/session").await.status(), 200);
    // Another process (a replica, an administrator's SQL) cannot tell this one: it takes effect
    // here within the cache's TTL.
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '49 hours'").execute(&app.db).await.unwrap();
    tokio::time::sleep(borcelle_engine::accounts::session_cache::TTL + Duration::from_millis(100)).await;
    assert_eq!(error_of(get_with_cookie(&app, &cookie, "/api/v1/auth/session").await).await.0, 401);

    let cookie = login_elsewhere(&app, "cached@example.com", PASSWORD).await;
    assert_eq!(get_with_cookie(&app, &cookie, "/api/v1/auth/session").await.status(), 200);
    sqlx::query("DELETE FROM sessions").execute(&app.db).await.unwrap();
    tokio::time::sleep(borcelle_engine::accounts::session_cache::TTL + Duration::from_millis(100)).await;
    assert_eq!(error_of(get_with_cookie(&app, &cookie, "/api/v1/auth/session").await).await.0, 401);
}
