//! Registration, email verification and login, through the JSON API and the HTML pages.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_new_user_registers_verifies_through_the_outbox_link_and_logs_in() {
    let mut app = spawn_app().await;
    let response = app.register("  Ada@Example.COM ", "Ada Lovelace").await;
    assert_eq!(response.status(), 202);

    let token = app.mailed_token("ada@example.com", "/verify", 1).await;
    let response = app.post_json("/api/v1/auth/verify", &json!({ "token": token })).await;
    assert_eq!(response.status(), 200);

    let response = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let session: Value = app.get("/api/v1/auth/session").await.json().await.unwrap();
    assert_eq!(session["user"]["email"], "ada@example.com");
    assert_eq!(session["user"]["display_name"], "Ada Lovelace");
    assert_eq!(session["user"]["role"], "user");
}

#[tokio::test]
async fn an_unverified_user_is_refused_with_the_reason_and_can_ask_again() {
    let mut app = spawn_app().await;
    app.register("grace@example.com", "Grace").await;

    let (status, code, _) = error_of(app.login("grace@example.com", PASSWORD).await).await;
    assert_eq!((status, code.as_str()), (403, "email_not_verified"));
    // A wrong password on an unverified account gets the generic answer: nothing is revealed.
    let (status, code, _) = error_of(app.login("grace@example.com", "not the password at all").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_credentials"));

    let response = app.post_json("/api/v1/auth/resend", &json!({ "email": "grace@example.com" })).await;
    assert_eq!(response.status(), 202);
    let token = app.mailed_token("grace@example.com", "/verify", 2).await;
    assert_eq!(app.post_json("/api/v1/auth/verify", &json!({ "token": token })).await.status(), 200);
    assert_eq!(app.login("grace@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn wrong_credentials_get_one_generic_answer() {
    let mut app = spawn_app().await;
    app.verified_user("known@example.com", borcelle_store::users::Role::User).await;
    let wrong_password = app.login("known@example.com", "wrong password here").await;
    let unknown_user = app.login("nobody@example.com", PASSWORD).await;
    let a = wrong_password.status();
    let b = unknown_user.status();
    let body_a: Value = wrong_password.json().await.unwrap();
    let body_b: Value = unknown_user.json().await.unwrap();
    assert_eq!((a, b), (reqwest::StatusCode::UNAUTHORIZED, reqwest::StatusCode::UNAUTHORIZED));
    assert_eq!(body_a, body_b);
}

#[tokio::test]
async fn a_verification_link_works_once() {
    let app = spawn_app().await;
    app.register("once@example.com", "Once").await;
    let token = app.mailed_token("once@example.com", "/verify", 1).await;
    assert_eq!(app.post_json("/api/v1/auth/verify", &json!({ "token": token })).await.status(), 200);
    let (status, code, field) = error_of(app.post_json("/api/v1/auth/verify", &json!({ "token": token })).await).await;
    assert_eq!((status, code.as_str(), field.as_deref()), (409, "token_used", Some("token")));
}

#[tokio::test]
async fn an_expired_or_unknown_verification_link_is_refused() {
    let mut app = spawn_app().await;
    app.register("late@example.com", "Late").await;
    let token = app.mailed_token("late@example.com", "/verify", 1).await;
    sqlx::query("UPDATE user_tokens SET expires_at = now() - interval '1 second'").execute(&app.db).await.unwrap();

    let (status, code, _) = error_of(app.post_json("/api/v1/auth/verify", &json!({ "token": token })).await).await;
    assert_eq!((status, code.as_str()), (409, "token_expired"));
    let (status, code, _) = error_of(app.post_json("/api/v1/auth/verify", &json!({ "token": "made-up" })).await).await;
    assert_eq!((status, code.as_str()), (404, "token_invalid"));
    let (status, code, _) = error_of(app.login("late@example.com", PASSWORD).await).await;
    assert_eq!((status, code.as_str()), (403, "email_not_verified"), "an expired link verifies nothing");
}

#[tokio::test]
async fn verification_tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    app.register("hash@example.com", "Hash").await;
    let token = app.mailed_token("hash@example.com", "/verify", 1).await;
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM user_tokens").fetch_all(&app.db).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token.as_bytes());
    assert_eq!(stored[0], borcelle_engine::accounts::secrets::hash_token(&token));
}

#[tokio::test]
async fn registering_a_taken_email_answers_exactly_like_a_fresh_one() {
    let app = spawn_app().await;
    app.verified_user("taken@example.com", borcelle_store::users::Role::User).await;

    let fresh = app.register("fresh@example.com", "Fresh").await;
    let taken = app.register("TAKEN@example.com", "Impostor").await;
    assert_eq!(fresh.status(), taken.status());
    let headers = |r: &reqwest::Response| {
        let mut names: Vec<String> =
            r.headers().keys().map(|k| k.to_string()).filter(|k| k != "date" && k != "x-request-id").collect();
        names.sort();
        names
    };
    assert_eq!(headers(&fresh), headers(&taken));
    assert_eq!(fresh.text().await.unwrap(), taken.text().await.unwrap());

    // Nothing changed for the owner, who is told that someone tried.
    let users: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM users WHERE email = 'taken@example.com' AND display_name = 'Test User'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(users, 1);
    let mail = app.outbox_for("taken@example.com", 1).await;
    assert_eq!(mail[0]["subject"], "Someone tried to sign up with your email");
}

#[tokio::test]
async fn the_html_pages_walk_a_new_user_from_sign_up_to_home() {
    let app = spawn_app().await;
    let page = app.get("/register").await.text().await.unwrap();
    assert!(page.contains("<label for=\"email\">"), "labelled inputs");

    let response = app
        .post_form("/register", &[("email", "pages@example.com"), ("display_name", "Page"), ("password", PASSWORD)])
        .await;
    // POST/redirect/GET: a reload of the answer signs up nobody again.
    assert_eq!(response.status(), 303);
    let answer = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(answer, "/register/sent?email=pages%40example.com");
    let page = app.get(&answer).await.text().await.unwrap();
    assert!(page.contains("Check your inbox") && page.contains(r#"value="pages@example.com""#), "{page}");

    // The outbox page lists the mail (sent in the background); its page shows the link.
    app.outbox_for("pages@example.com", 1).await;
    let outbox = app.get("/outbox").await.text().await.unwrap();
    let id_start = outbox.find("/outbox/").expect("a message link") + "/outbox/".len();
    let id = &outbox[id_start..id_start + 36];
    let message = app.get(&format!("/outbox/{id}")).await.text().await.unwrap();
    assert!(message.contains("Verify your email for Borcelle"));
    let token = token_from_text(&message, &app.url("/verify"));

    // Opening the link shows a confirmation; only the button consumes the token.
    let confirm = app.get(&format!("/verify?token={token}")).await.text().await.unwrap();
    assert!(confirm.contains("Verify my email"));
    let verified = app.post_form("/verify", &[("token", &token)]).await;
    assert_eq!(verified.status(), 200);
    assert!(verified.text().await.unwrap().contains("Email verified"));

    let login =
        app.post_form("/login", &[("email", "pages@example.com"), ("password", PASSWORD), ("next", "/account")]).await;
    assert_eq!(login.status(), 303);
    assert_eq!(login.headers()["location"], "/account");
    let home = app.get("/").await.text().await.unwrap();
    assert!(home.contains("Welcome, Page"), "{home}");
}

#[tokio::test]
async fn the_login_page_shows_errors_next_to_the_form_and_offers_a_resend_when_unverified() {
    let app = spawn_app().await;
    app.register("page-unverified@example.com", "Unverified").await;
    let response = app.post_form("/login", &[("email", "page-unverified@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 403);
    let html = response.text().await.unwrap();
    assert!(html.contains("verify your email"), "{html}");
    assert!(html.contains("action=\"/resend\""), "a resend button");

    let response =
        app.post_form("/register", &[("email", "not-an-email"), ("display_name", "X"), ("password", PASSWORD)]).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"email-error\""), "the error sits next to the email field: {html}");
    assert!(html.contains("value=\"not-an-email\""), "the typed value is kept");
}

#[tokio::test]
async fn pages_that_need_a_login_send_visitors_to_the_login_page_and_back() {
    let app = spawn_app().await;
    let response = app.get("/account").await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login?next=%2Faccount");
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("Not found"));
}

#[tokio::test]
async fn outside_dev_mode_only_admins_read_the_outbox() {
    let mut app = spawn_app_with(|s| s.dev_mode = false).await;
    assert_eq!(error_of(app.get("/api/v1/admin/outbox").await).await.0, 401);
    app.signed_in_user("user@example.com").await;
    assert_eq!(error_of(app.get("/api/v1/admin/outbox").await).await.0, 403);
    assert_eq!(app.get("/outbox").await.status(), 403);

    app.verified_user("admin@example.com", borcelle_store::users::Role::Admin).await;
    app.client = browser_client();
    app.login("admin@example.com", PASSWORD).await;
    let response = app.get("/api/v1/admin/outbox").await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.get("/outbox").await.status(), 200);
}
