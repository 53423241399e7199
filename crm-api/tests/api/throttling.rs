//! Throttles on login failures and on requests that send mail.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn repeated_failures_for_one_account_are_throttled_with_retry_after() {
    let mut app = spawn_app().await;
    app.verified_user("target@example.com", borcelle_store::users::Role::User).await;
    for _ in 0..5 {
        assert_eq!(app.login("target@example.com", "wrong password guess").await.status(), 401);
    }
    // Now even the right password waits.
    let response = app.login("target@example.com", PASSWORD).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "Retry-After {retry_after}");
    let (_, code, _) = error_of(response).await;
    assert_eq!(code, "too_many_requests");

    // The page says the same.
    let page = app.post_form("/login", &[("email", "target@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(page.status(), 429);
    assert!(page.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled_across_accounts() {
    let mut app = spawn_app_with(|s| s.auth.login_failures_per_ip.max = 3).await;
    app.verified_user("someone@example.com", borcelle_store::users::Role::User).await;
    for i in 0..3 {
        assert_eq!(app.login(&format!("guess{i}@example.com"), "wrong password guess").await.status(), 401);
    }
    let response = app.login("someone@example.com", PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn the_throttle_lifts_when_its_window_ends() {
    let mut app = spawn_app().await;
    app.verified_user("patient@example.com", borcelle_store::users::Role::User).await;
    for _ in 0..5 {
        app.login("patient@example.com", "wrong password guess").await;
    }
    assert_eq!(app.login("patient@example.com", PASSWORD).await.status(), 429);
    // Fifteen minutes later (the window is moved back rather than waited for).
    sqlx::query("UPDATE rate_limits SET window_start = window_start - interval '15 minutes 1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.login("patient@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn registration_and_resends_share_a_budget_of_three_mails_an_hour_per_address() {
    let app = spawn_app().await;
    app.register("resend@example.com", "Resend").await;
    for _ in 0..2 {
        let response = app.post_json("/api/v1/auth/resend", &json!({ "email": "resend@example.com" })).await;
        assert_eq!(response.status(), 202);
    }
    let response = app.post_json("/api/v1/auth/resend", &json!({ "email": "resend@example.com" })).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(app.outbox_for("resend@example.com", 3).await.len(), 3, "three links were sent, no more");
    // An unknown address is throttled the same way, so the throttle reveals nothing either.
    for _ in 0..3 {
        app.post_json("/api/v1/auth/resend", &json!({ "email": "ghost@example.com" })).await;
    }
    assert_eq!(app.post_json("/api/v1/auth/resend", &json!({ "email": "ghost@example.com" })).await.status(), 429);
}

/// A login from `client` at address `ip` (the server trusts X-Forwarded-For here); its status. A
/// session it opens is closed again, so the client keeps only what outlives it (its device cookie).
async fn login_from(app: &TestApp, client: &reqwest::Client, ip: &str, email: &str, password: &str) -> u16 {
    let response = client
        .post(app.url("/api/v1/auth/login"))
        .header("Origin", app.origin())
        .header("X-Forwarded-For", ip)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        let body: serde_json::Value = response.json().await.unwrap();
        let logout = client
            .post(app.url("/api/v1/auth/logout"))
            .header("Origin", app.origin())
            .header("X-CSRF-Token", body["csrf_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert!(logout.status().is_success(), "logout: {}", logout.status());
    }
    status
}

/// Anyone who knows an email could lock its owner out for 15 minutes with five wrong passwords.
/// Now a stranger's failures hold the stranger (per account and address), many strangers together
/// hold only the clients the account has never seen (per account, 50), and a browser that has
/// logged in to the account before is held only by its own failures.
#[tokio::test]
async fn strangers_cannot_lock_an_owner_out_and_guessing_stays_throttled() {
    let app = spawn_app_with(|s| s.http.trust_forwarded_for = true).await;
    app.verified_user("owner@example.com", borcelle_store::users::Role::User).await;
    let owner = "owner@example.com";
    let known = browser_client();
    assert_eq!(login_from(&app, &known, "203.0.113.7", owner, PASSWORD).await, 200, "the owner's browser");

    // One stranger, one address: five guesses, then even the right password is refused to them.
    let stranger = browser_client();
    for _ in 0..5 {
        assert_eq!(login_from(&app, &stranger, "198.51.100.1", owner, "wrong password guess").await, 401);
    }
    assert_eq!(login_from(&app, &stranger, "198.51.100.1", owner, "another wrong guess").await, 429);
    assert_eq!(login_from(&app, &stranger, "198.51.100.1", owner, PASSWORD).await, 429, "no oracle");
    // The owner is not locked out: from a new browser elsewhere, and from the known one.
    assert_eq!(login_from(&app, &browser_client(), "203.0.113.99", owner, PASSWORD).await, 200);
    assert_eq!(login_from(&app, &known, "203.0.113.8", owner, PASSWORD).await, 200);

    // Many strangers, one guess each from their own address: after 50 failures on the account the
    // clients it has never seen are held...
    let mut held = 0;
    let mut failures = 0;
    for i in 0..70 {
        match login_from(&app, &browser_client(), &format!("10.0.{}.{}", i / 250, i % 250 + 1), owner, "guess").await {
            401 => failures += 1,
            429 => held += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(failures <= 50 && held >= 20, "{failures} failures checked, {held} held");
    assert_eq!(login_from(&app, &browser_client(), "192.0.2.50", owner, PASSWORD).await, 429, "a new client waits");
    // ...but the browser the owner logged in with goes straight in, from any address.
    assert_eq!(login_from(&app, &known, "192.0.2.51", owner, PASSWORD).await, 200);
    // And that browser's own wrong passwords are throttled like anyone's: five, then 429.
    for _ in 0..5 {
        assert_eq!(login_from(&app, &known, "192.0.2.51", owner, "my typo").await, 401);
    }
    assert_eq!(login_from(&app, &known, "192.0.2.51", owner, PASSWORD).await, 429);
}
