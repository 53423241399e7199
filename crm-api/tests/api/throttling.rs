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
