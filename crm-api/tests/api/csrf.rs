//! Cross-site request forgery: every state-changing request with the session cookie needs the
//! session's CSRF token and must not come from another site.

use serde_json::json;

use crate::helpers::*;

const CHANGE: &str = "/api/v1/auth/password/change";

fn change_body() -> serde_json::Value {
    json!({ "current_password": PASSWORD, "new_password": "another long password" })
}

#[tokio::test]
async fn a_cross_site_request_with_a_valid_session_is_refused() {
    let mut app = spawn_app().await;
    app.signed_in_user("victim@example.com").await;
    let csrf = app.csrf.clone().unwrap();

    // Even with the token, another site's Origin is refused.
    let response = app
        .client
        .post(app.url(CHANGE))
        .header("Origin", "https://evil.example")
        .header("X-CSRF-Token", &csrf)
        .json(&change_body())
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (403, "csrf_rejected"));

    // A browser that sends no Origin but marks the request cross-site is refused too.
    let response = app
        .client
        .post(app.url(CHANGE))
        .header("Sec-Fetch-Site", "cross-site")
        .header("X-CSRF-Token", &csrf)
        .json(&change_body())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.1, "csrf_rejected");

    // A classic forged form post from another site: the cookie rides along, the Origin gives it away.
    let response = app
        .client
        .post(app.url("/account/password"))
        .header("Origin", "https://evil.example")
        .form(&[("current_password", PASSWORD), ("new_password", "pwned by a forged form")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Nothing changed: the old password still logs in.
    app.client = browser_client();
    assert_eq!(app.login("victim@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_same_site_call_without_the_csrf_token_is_refused_and_with_it_accepted() {
    let mut app = spawn_app().await;
    app.signed_in_user("token@example.com").await;
    let csrf = app.csrf.take().unwrap();

    let (status, code, _) = error_of(app.post_json(CHANGE, &change_body()).await).await;
    assert_eq!((status, code.as_str()), (403, "csrf_rejected"));
    app.csrf = Some("forged".to_owned());
    assert_eq!(error_of(app.post_json(CHANGE, &change_body()).await).await.1, "csrf_rejected");

    app.csrf = Some(csrf);
    assert_eq!(app.post_json(CHANGE, &change_body()).await.status(), 200);
}

#[tokio::test]
async fn forms_carry_the_token_in_a_hidden_field() {
    let mut app = spawn_app().await;
    app.signed_in_user("forms@example.com").await;
    let csrf = app.csrf.clone().unwrap();
    let page = app.get("/account").await.text().await.unwrap();
    assert!(page.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")), "the account page embeds the token");

    let refused = app.post_form("/account/tokens", &[("name", "no token")]).await;
    assert_eq!(refused.status(), 403);
    let accepted = app.post_form("/account/tokens", &[("name", "laptop"), ("csrf_token", &csrf)]).await;
    // POST/redirect/GET: the page the redirect leads to shows the secret once; a reload does not,
    // and creates no second token.
    assert_eq!(accepted.status(), 303);
    let page = app.get("/account").await.text().await.unwrap();
    let shown = page.find(r#"<code id="new-token">"#).expect("the new token, once");
    let secret = &page[shown + r#"<code id="new-token">"#.len()..];
    let secret = &secret[..secret.find('<').unwrap()];
    assert!(secret.len() > 20, "{secret}");
    let again = app.get("/account").await.text().await.unwrap();
    assert!(!again.contains("new-token") && !again.contains(secret), "shown once only");
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens").fetch_one(&app.db).await.unwrap();
    assert_eq!(tokens, 1);
    // The secret shown works.
    let me = reqwest::Client::new().get(app.url("/api/v1/auth/session")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn a_cross_site_login_is_refused() {
    let app = spawn_app().await;
    app.verified_user("login-csrf@example.com", borcelle_store::users::Role::User).await;
    let response = app
        .client
        .post(app.url("/login"))
        .header("Origin", "https://evil.example")
        .form(&[("email", "login-csrf@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn api_tokens_need_no_csrf_token() {
    let mut app = spawn_app().await;
    app.signed_in_user("bearer@example.com").await;
    let created: serde_json::Value =
        app.post_json("/api/v1/tokens", &json!({ "name": "ci" })).await.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    let response =
        reqwest::Client::new().post(app.url(CHANGE)).bearer_auth(secret).json(&change_body()).send().await.unwrap();
    assert_eq!(response.status(), 200);
}
