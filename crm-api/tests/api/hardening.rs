//! Attacks on the account flows that a review found, each pinned by a test.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_pre_registered_address_cannot_be_hijacked_by_whoever_registered_it_first() {
    let mut app = spawn_app().await;
    // The attacker registers the victim's address with a password of their own…
    app.post_json(
        "/api/v1/auth/register",
        &json!({ "email": "victim@example.com", "display_name": "Attacker", "password": "attacker's password" }),
    )
    .await;
    app.outbox_for("victim@example.com", 1).await;
    // …then the victim registers, and verifies with the link their own registration sent.
    app.register("victim@example.com", "Victim").await;
    let token = app.mailed_token("victim@example.com", "/verify", 2).await;
    assert_eq!(app.post_json("/api/v1/auth/verify", &json!({ "token": token })).await.status(), 200);

    assert_eq!(app.login("victim@example.com", "attacker's password").await.status(), 401);
    assert_eq!(app.login("victim@example.com", PASSWORD).await.status(), 200);
    let session: Value = app.get("/api/v1/auth/session").await.json().await.unwrap();
    assert_eq!(session["user"]["display_name"], "Victim");
    // The attacker's older link no longer works once the address is verified.
    let messages = app.outbox_for("victim@example.com", 2).await;
    let attackers = token_from_text(messages[1]["text_body"].as_str().unwrap(), &app.url("/verify"));
    assert_ne!(attackers, token);
    let (status, code, _) = error_of(app.post_json("/api/v1/auth/verify", &json!({ "token": attackers })).await).await;
    assert_eq!((status, code.as_str()), (409, "token_used"));
    let retired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_tokens WHERE purpose = 'verify_email' AND used_at IS NULL")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(retired, 0, "verifying retires every other verification link");
}

#[tokio::test]
async fn parallel_password_guesses_cannot_slip_past_the_throttle() {
    let app = spawn_app().await;
    app.verified_user("parallel@example.com", borcelle_store::users::Role::User).await;
    let guesses = (0..12).map(|i| {
        let client = browser_client();
        let url = app.url("/api/v1/auth/login");
        async move {
            client
                .post(url)
                .json(&json!({ "email": "parallel@example.com", "password": format!("wrong guess {i}") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(tried + throttled, 12, "{statuses:?}");
    assert!(tried <= 5, "at most 5 guesses were checked, got {tried}: {statuses:?}");
    let mut app = app;
    assert_eq!(app.login("parallel@example.com", PASSWORD).await.status(), 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_forwarded_address_is_throttled() {
    let app = spawn_app_with(|s| {
        s.http.trust_forwarded_for = true;
        s.auth.login_failures_per_ip.max = 3;
    })
    .await;
    let attempt = |spoofed: &'static str| {
        let client = browser_client();
        let url = app.url("/api/v1/auth/login");
        async move {
            client
                .post(url)
                .header("X-Forwarded-For", format!("{spoofed}, 203.0.113.7"))
                .json(&json!({ "email": format!("{}@example.com", spoofed.replace('.', "-")), "password": "wrong guess" }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Rotating the client-supplied part does not help: the proxy's entry is the same.
    assert_eq!(attempt("1.1.1.1").await, 401);
    assert_eq!(attempt("2.2.2.2").await, 401);
    assert_eq!(attempt("3.3.3.3").await, 401);
    assert_eq!(attempt("4.4.4.4").await, 429);
    // An unparseable or huge header falls back to the peer address instead of failing.
    let response = browser_client()
        .post(app.url("/api/v1/auth/login"))
        .header("X-Forwarded-For", "x".repeat(4000))
        .json(&json!({ "email": "huge@example.com", "password": "wrong guess" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn login_redirects_only_to_paths_on_this_site() {
    let app = spawn_app().await;
    app.verified_user("redirect@example.com", borcelle_store::users::Role::User).await;
    for next in [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "https://evil.example/",
        "/\n",
        "/ok path",
        "javascript:alert(1)",
    ] {
        let client = browser_client();
        let response = client
            .post(app.url("/login"))
            .header("Origin", app.origin())
            .form(&[("email", "redirect@example.com"), ("password", PASSWORD), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/", "{next:?}");
    }
}

#[tokio::test]
async fn a_logged_in_user_can_use_the_public_forms_and_a_refusal_is_a_page() {
    let mut app = spawn_app().await;
    app.signed_in_user("switcher@example.com").await;
    app.verified_user("other@example.com", borcelle_store::users::Role::User).await;
    let page = app.get("/login").await.text().await.unwrap();
    let csrf = app.csrf.clone().unwrap();
    assert!(page.contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")), "the login form carries the token");

    let refused = app.post_form("/login", &[("email", "other@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "a page, not JSON");

    let switched =
        app.post_form("/login", &[("email", "other@example.com"), ("password", PASSWORD), ("csrf_token", &csrf)]).await;
    assert_eq!(switched.status(), 303);
    let sessions: Vec<String> = sqlx::query_scalar("SELECT u.email FROM sessions s JOIN users u ON u.id = s.user_id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions, vec!["other@example.com".to_owned()], "logging in again ended the previous session");
}

#[tokio::test]
async fn the_mail_throttle_reveals_nothing_about_which_addresses_exist() {
    let app = spawn_app().await;
    app.verified_user("exists@example.com", borcelle_store::users::Role::User).await;
    for email in ["exists@example.com", "unknown@example.com"] {
        for _ in 0..3 {
            assert_eq!(app.register(email, "Probe").await.status(), 202);
        }
        let resend = app.post_json("/api/v1/auth/resend", &json!({ "email": email })).await;
        assert_eq!(resend.status(), 429, "{email}");
    }
}

#[tokio::test]
async fn a_reset_revokes_every_api_token() {
    let mut app = spawn_app().await;
    app.signed_in_user("tokens-reset@example.com").await;
    let created: Value = app.post_json("/api/v1/tokens", &json!({ "name": "laptop" })).await.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    app.post_json("/api/v1/auth/password/forgot", &json!({ "email": "tokens-reset@example.com" })).await;
    let token = app.mailed_token("tokens-reset@example.com", "/reset", 1).await;
    let reset = browser_client()
        .post(app.url("/api/v1/auth/password/reset"))
        .json(&json!({ "token": token, "password": "a brand new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let response =
        reqwest::Client::new().get(app.url("/api/v1/auth/session")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(error_of(response).await.1, "invalid_token");
}

#[tokio::test]
async fn a_made_up_reset_token_is_refused_before_any_hashing() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(
        app.post_json(
            "/api/v1/auth/password/reset",
            &json!({ "token": "made-up", "password": "a long enough password" }),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "token_invalid"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/login", "/api/v1/auth/session", "/no-such-page"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
    }
    let css = app.get("/static/app.css").await;
    assert_eq!(css.headers()["cache-control"], "public, max-age=3600");
}

#[tokio::test]
async fn text_that_postgresql_cannot_store_is_a_422_not_a_500() {
    let app = spawn_app().await;
    let (status, _, field) = error_of(app.get("/api/v1/admin/outbox?to=%00").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("to")));
}

#[tokio::test]
async fn a_form_route_refuses_other_content_types() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/login"))
        .header("Origin", app.origin())
        .header("Content-Type", "text/plain")
        .body("email=a@example.com&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}
