//! Forgotten passwords, resets and changes.

use serde_json::json;

use crate::helpers::*;

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn a_reset_link_sets_a_new_password_and_ends_every_session() {
    let mut app = spawn_app().await;
    app.signed_in_user("forgetful@example.com").await;
    let other_device = app.client.clone();

    let mut anonymous = spawn_client(&app);
    let response =
        anonymous.post_json("/api/v1/auth/password/forgot", &json!({ "email": "forgetful@example.com" })).await;
    assert_eq!(response.status(), 202);
    let token = app.mailed_token("forgetful@example.com", "/reset", 1).await;
    let response =
        anonymous.post_json("/api/v1/auth/password/reset", &json!({ "token": token, "password": NEW_PASSWORD })).await;
    assert_eq!(response.status(), 200);

    let stale = other_device.get(app.url("/api/v1/auth/session")).send().await.unwrap();
    assert_eq!(stale.status(), 401, "the reset ended the other session");
    assert_eq!(anonymous.login("forgetful@example.com", PASSWORD).await.status(), 401);
    assert_eq!(anonymous.login("forgetful@example.com", NEW_PASSWORD).await.status(), 200);

    // The link worked once.
    let anonymous = spawn_client(&app);
    let (status, code, _) = error_of(
        anonymous
            .post_json("/api/v1/auth/password/reset", &json!({ "token": token, "password": "yet another passphrase" }))
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "token_used"));
}

/// A second client on the same server with its own cookie jar.
fn spawn_client(app: &TestApp) -> ClientOf<'_> {
    ClientOf { app, client: browser_client(), csrf: None }
}

struct ClientOf<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    csrf: Option<String>,
}

impl ClientOf<'_> {
    async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        let mut request = self.client.post(self.app.url(path)).header("Origin", self.app.origin()).json(body);
        if let Some(csrf) = &self.csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send().await.unwrap()
    }

    async fn login(&mut self, email: &str, password: &str) -> reqwest::Response {
        self.post_json("/api/v1/auth/login", &json!({ "email": email, "password": password })).await
    }
}

#[tokio::test]
async fn an_expired_reset_link_is_refused_and_changes_nothing() {
    let mut app = spawn_app().await;
    app.verified_user("slow@example.com", borcelle_store::users::Role::User).await;
    app.post_json("/api/v1/auth/password/forgot", &json!({ "email": "slow@example.com" })).await;
    let token = app.mailed_token("slow@example.com", "/reset", 1).await;
    sqlx::query("UPDATE user_tokens SET expires_at = now() - interval '1 second'").execute(&app.db).await.unwrap();
    let (status, code, _) = error_of(
        app.post_json("/api/v1/auth/password/reset", &json!({ "token": token, "password": NEW_PASSWORD })).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "token_expired"));
    assert_eq!(app.login("slow@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn forgot_password_answers_the_same_for_unknown_addresses() {
    let app = spawn_app().await;
    app.verified_user("real@example.com", borcelle_store::users::Role::User).await;
    let known = app.post_json("/api/v1/auth/password/forgot", &json!({ "email": "real@example.com" })).await;
    let unknown = app.post_json("/api/v1/auth/password/forgot", &json!({ "email": "imaginary@example.com" })).await;
    assert_eq!(known.status(), unknown.status());
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    // Both requests were handled the same way in the background; this waits for both to finish.
    let messages = app.outbox_for("real@example.com", 1).await;
    assert_eq!(messages[0]["subject"], "Reset your Borcelle password");
    let none = borcelle_store::outbox::list(&app.db, Some("imaginary@example.com"), 10).await.unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let mut app = spawn_app().await;
    app.signed_in_user("changer@example.com").await;
    let first_device = app.client.clone();
    app.client = browser_client();
    app.login("changer@example.com", PASSWORD).await;

    let wrong = app
        .post_json(
            "/api/v1/auth/password/change",
            &json!({ "current_password": "not my password", "new_password": NEW_PASSWORD }),
        )
        .await;
    let (status, _, field) = error_of(wrong).await;
    assert_eq!((status, field.as_deref()), (403, Some("current_password")));
    let short = app
        .post_json("/api/v1/auth/password/change", &json!({ "current_password": PASSWORD, "new_password": "short" }))
        .await;
    assert_eq!(error_of(short).await.2.as_deref(), Some("new_password"));

    let ok = app
        .post_json(
            "/api/v1/auth/password/change",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(app.get("/api/v1/auth/session").await.status(), 200, "this session stays");
    let other = first_device.get(app.url("/api/v1/auth/session")).send().await.unwrap();
    assert_eq!(other.status(), 401, "the other session ended");

    app.client = browser_client();
    assert_eq!(app.login("changer@example.com", NEW_PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn the_reset_page_flow_works_in_the_browser() {
    let app = spawn_app().await;
    app.verified_user("pagereset@example.com", borcelle_store::users::Role::User).await;
    let response = app.post_form("/forgot", &[("email", "pagereset@example.com")]).await;
    assert_eq!(response.status(), 200);
    let token = app.mailed_token("pagereset@example.com", "/reset", 1).await;
    let form = app.get(&format!("/reset?token={token}")).await.text().await.unwrap();
    assert!(form.contains(&format!("value=\"{token}\"")));
    let short = app.post_form("/reset", &[("token", &token), ("password", "short")]).await;
    assert_eq!(short.status(), 422);
    assert!(short.text().await.unwrap().contains("id=\"password-error\""));
    let done = app.post_form("/reset", &[("token", &token), ("password", NEW_PASSWORD)]).await;
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Password changed"));
}
