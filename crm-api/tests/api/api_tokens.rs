//! Personal API tokens.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_token_authenticates_is_listed_without_its_secret_and_can_be_revoked() {
    let mut app = spawn_app().await;
    app.signed_in_user("owner@example.com").await;
    let response = app.post_json("/api/v1/tokens", &json!({ "name": "deploy script" })).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("bor_"));
    let id = created["token"]["id"].as_str().unwrap().to_owned();

    let bare = reqwest::Client::new();
    let session: Value =
        bare.get(app.url("/api/v1/auth/session")).bearer_auth(&secret).send().await.unwrap().json().await.unwrap();
    assert_eq!(session["user"]["email"], "owner@example.com");

    let listed = app.get("/api/v1/tokens").await.text().await.unwrap();
    assert!(listed.contains("deploy script"));
    assert!(!listed.contains(&secret), "the secret is shown only once");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE token_hash = $1")
        .bind(borcelle_engine::accounts::secrets::hash_token(&secret))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the hash is stored");

    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .header("X-CSRF-Token", app.csrf.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = bare.get(app.url("/api/v1/auth/session")).bearer_auth(&secret).send().await.unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
}

#[tokio::test]
async fn a_user_cannot_see_or_revoke_another_users_token() {
    let mut app = spawn_app().await;
    app.signed_in_user("alice@example.com").await;
    let created: Value = app.post_json("/api/v1/tokens", &json!({ "name": "alice's" })).await.json().await.unwrap();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();

    app.client = browser_client();
    app.signed_in_user("bob@example.com").await;
    let listed: Value = app.get("/api/v1/tokens").await.json().await.unwrap();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 0);
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .header("X-CSRF-Token", app.csrf.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 404);
    let page =
        app.post_form(&format!("/account/tokens/{id}/delete"), &[("csrf_token", &app.csrf.clone().unwrap())]).await;
    assert_eq!(page.status(), 404);

    let still: Value = reqwest::Client::new()
        .get(app.url("/api/v1/auth/session"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(still["user"]["email"], "alice@example.com", "alice's token still works");
}

#[tokio::test]
async fn a_made_up_bearer_token_is_refused() {
    let app = spawn_app().await;
    let response =
        reqwest::Client::new().get(app.url("/api/v1/tokens")).bearer_auth("bor_not-a-real-token").send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_of(response).await.1, "invalid_token");
    let anonymous = reqwest::Client::new().get(app.url("/api/v1/tokens")).send().await.unwrap();
    assert_eq!(error_of(anonymous).await.1, "authentication_required");
}
