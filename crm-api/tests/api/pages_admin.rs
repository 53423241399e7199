//! The notification page and the administrators' broadcast page, through their HTML forms.

use borcelle_store::users::Role;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn an_admin_sends_a_broadcast_from_the_page_and_users_find_it_in_their_notifications() {
    let mut admin = spawn_app().await;
    admin.verified_user("boss@example.com", Role::Admin).await;
    assert_eq!(admin.login("boss@example.com", PASSWORD).await.status(), 200);
    let csrf = admin.csrf.clone().unwrap();

    // A bad schedule is shown next to its field, with what was typed kept.
    let response = admin
        .post_form(
            "/admin/broadcasts",
            &[
                ("csrf_token", &csrf),
                ("name", "weekly-news"),
                ("title", "Weekly news"),
                ("message", "Read all about it"),
                ("web", "on"),
                ("when", "repeat"),
                ("schedule", "every monday"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"id="schedule-error""#), "the error sits next to the schedule field");
    assert!(html.contains("Weekly news"), "the typed title is kept");

    let response = admin
        .post_form(
            "/admin/broadcasts",
            &[
                ("csrf_token", &csrf),
                ("name", "hello-all"),
                ("title", "Hello everyone"),
                ("message", "Welcome to Borcelle"),
                ("severity", "info"),
                ("audience", "all"),
                ("web", "on"),
                ("when", "now"),
            ],
        )
        .await;
    // POST/redirect/GET: a reload of the page that follows posts nothing again.
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin/broadcasts?created=hello-all");
    let html = admin.get("/admin/broadcasts?created=hello-all").await.text().await.unwrap();
    assert!(html.contains("Broadcast hello-all created."));

    // The scheduler delivers it at once; the list shows it Delivered with the count.
    assert_eq!(admin.scheduler().run_due(chrono::Utc::now()).await.unwrap(), 1);
    let html = admin.get("/admin/broadcasts").await.text().await.unwrap();
    assert!(html.contains(r#"<td class="phase">Delivered"#), "the broadcast reaches phase Delivered: {html}");

    // A user sees it on the notification page and marks it read.
    admin.verified_user("reader@example.com", Role::User).await;
    let mut reader = Browser::of(&admin);
    reader.login("reader@example.com").await;
    let html = reader.get("/notifications").await.text().await.unwrap();
    assert!(!html.contains("Hello everyone"), "a user created after the broadcast did not get it");
    let list: Value = admin.get("/api/v1/notifications").await.json().await.unwrap();
    let note =
        list["notifications"].as_array().unwrap().iter().find(|n| n["kind"] == "broadcast").expect("the admin got it");
    let id = note["id"].as_str().unwrap();
    let html = admin.get("/notifications").await.text().await.unwrap();
    assert!(html.contains("Hello everyone") && html.contains(&format!("/notifications/{id}/read")));
    let response = admin.post_form(&format!("/notifications/{id}/read"), &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    let html = admin.get("/notifications").await.text().await.unwrap();
    assert!(!html.contains(&format!("/notifications/{id}/read")), "read: no more button");

    // Without the CSRF field the form is refused.
    let response = admin.post_form("/admin/broadcasts/hello-all/delete", &[]).await;
    assert_eq!(response.status(), 403);
    let response = admin.post_form("/admin/broadcasts/hello-all/delete", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
}

#[tokio::test]
async fn the_broadcast_page_is_for_administrators_only() {
    let mut app = spawn_app().await;
    app.signed_in_user("plain@example.com").await;
    let response = app.get("/admin/broadcasts").await;
    assert_eq!(response.status(), 403);
    let csrf = app.csrf.clone().unwrap();
    let response = app
        .post_form(
            "/admin/broadcasts",
            &[("csrf_token", &csrf), ("name", "x"), ("title", "t"), ("message", "m"), ("web", "on")],
        )
        .await;
    assert_eq!(response.status(), 403);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM schedules").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_user_creates_suspends_resumes_and_deletes_a_reminder_from_the_page() {
    let mut app = spawn_app().await;
    app.signed_in_user("planner@example.com").await;
    seed_contacts(&app.db, "planner@example.com", "team", 2, "team").await;
    let csrf = app.csrf.clone().unwrap();

    // A bad time zone is shown next to its field.
    let response = app
        .post_form(
            "/reminders",
            &[
                ("csrf_token", &csrf),
                ("name", "standup"),
                ("subject", "Stand-up"),
                ("body", "In five minutes"),
                ("tag", "team"),
                ("schedule", "0 9 * * 1-5"),
                ("time_zone", "Europe/Atlantis"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(r#"id="time_zone-error""#) && html.contains("Europe/Atlantis"),
        "error beside the field, value kept"
    );

    let response = app
        .post_form(
            "/reminders",
            &[
                ("csrf_token", &csrf),
                ("name", "standup"),
                ("subject", "Stand-up"),
                ("body", "In five minutes"),
                ("tag", "team"),
                ("schedule", "0 9 * * 1-5"),
                ("time_zone", "Europe/Berlin"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303, "POST/redirect/GET");
    assert_eq!(response.headers()["location"], "/reminders?created=standup");
    let html = app.get("/reminders?created=standup").await.text().await.unwrap();
    assert!(html.contains("Reminder standup created."));
    assert!(html.contains(r#"data-name="standup""#) && html.contains("Europe/Berlin"));
    let shown: Value = app.get("/api/v1/reminders/standup").await.json().await.unwrap();
    assert!(shown["status"]["nextScheduleTime"].is_string(), "a next run is shown: {shown}");

    let response = app.post_form("/reminders/standup/suspend", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    let html = app.get("/reminders").await.text().await.unwrap();
    assert!(html.contains("<em>suspended</em>") && html.contains("/reminders/standup/resume"));
    let response = app.post_form("/reminders/standup/resume", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    let shown: Value = app.get("/api/v1/reminders/standup").await.json().await.unwrap();
    assert_eq!(shown["spec"]["suspend"], false);

    let response = app.post_form("/reminders/standup/delete", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(app.get("/api/v1/reminders/standup").await.status(), 404);
    // Someone else's (or a missing) reminder is not found, never touched.
    let response = app.post_form("/reminders/standup/suspend", &[("csrf_token", &csrf)]).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_note_is_written_sent_to_a_tag_and_its_progress_page_shows_the_result() {
    let mut app = spawn_app().await;
    app.signed_in_user("writer@example.com").await;
    seed_contacts(&app.db, "writer@example.com", "club", 5, "club").await;
    let csrf = app.csrf.clone().unwrap();

    let response = app.post_form("/notes", &[("csrf_token", &csrf), ("title", ""), ("body", "text")]).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains(r#"id="title-error""#));

    let response =
        app.post_form("/notes", &[("csrf_token", &csrf), ("title", "Club news"), ("body", "We meet on Friday.")]).await;
    assert_eq!(response.status(), 303);
    let note_url = response.headers()["location"].to_str().unwrap().to_owned();

    // A tag nobody has is reported next to the tag field; nothing is queued.
    let response = app.post_form(&format!("{note_url}/send"), &[("csrf_token", &csrf), ("tag", "nobody")]).await;
    assert_eq!(response.status(), 404, "the tag names no contact");
    assert!(response.text().await.unwrap().contains(r#"id="tag-error""#));

    // The first POST shows the count and queues nothing; the confirmed one queues.
    let response = app.post_form(&format!("{note_url}/send"), &[("csrf_token", &csrf), ("tag", "club")]).await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("Send “Club news” to 5 contacts?"), "the confirmation names the count: {html}");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(queued, 0, "nothing queued before the confirmation");
    let response =
        app.post_form(&format!("{note_url}/send"), &[("csrf_token", &csrf), ("tag", "club"), ("confirmed", "1")]).await;
    assert_eq!(response.status(), 303);
    let progress_url = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(progress_url.contains("?task="));
    // The outbox delivers at once; the page then shows the result instead of a running count.
    assert_eq!(app.deliver_all().await.sent, 5);
    let html = app.get(&progress_url).await.text().await.unwrap();
    assert!(html.contains(r#"id="task-progress""#) && html.contains(r#"max="5""#), "a progress bar for 5");
    assert!(html.contains("5 sent, 0 failed"), "the result: {html}");
    assert!(html.contains(r#"id="retry-form""#) && html.contains("hidden"), "no retry without failures");
}

#[tokio::test]
async fn an_admin_promotes_and_demotes_users_from_the_page_but_not_themselves() {
    let mut admin = spawn_app().await;
    admin.verified_user("root@example.com", Role::Admin).await;
    admin.verified_user("worker@example.com", Role::User).await;
    assert_eq!(admin.login("root@example.com", PASSWORD).await.status(), 200);
    let csrf = admin.csrf.clone().unwrap();
    let html = admin.get("/admin/users").await.text().await.unwrap();
    assert!(html.contains("worker@example.com") && html.contains("Promote to admin"));
    let id_of = |email: &str| {
        let db = admin.db.clone();
        let email = email.to_owned();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    let worker = id_of("worker@example.com").await;
    let role = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE email = 'worker@example.com'")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let response =
        admin.post_form(&format!("/admin/users/{worker}/role"), &[("csrf_token", &csrf), ("role", "admin")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(role(admin.db.clone()).await, "admin");
    let response =
        admin.post_form(&format!("/admin/users/{worker}/role"), &[("csrf_token", &csrf), ("role", "user")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(role(admin.db.clone()).await, "user");
    let me = id_of("root@example.com").await;
    let response =
        admin.post_form(&format!("/admin/users/{me}/role"), &[("csrf_token", &csrf), ("role", "user")]).await;
    assert_eq!(response.status(), 422, "no one demotes themselves");

    // A plain user sees neither the list nor the action.
    let mut plain = spawn_app().await;
    plain.signed_in_user("nobody@example.com").await;
    assert_eq!(plain.get("/admin/users").await.status(), 403);
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_pages_at_once() {
    let mut root = spawn_app().await;
    root.verified_user("root2@example.com", Role::Admin).await;
    root.verified_user("deputy@example.com", Role::Admin).await;
    assert_eq!(root.login("root2@example.com", PASSWORD).await.status(), 200);
    let mut deputy = Browser::of(&root);
    deputy.login("deputy@example.com").await;
    assert_eq!(deputy.get("/admin/users").await.status(), 200, "the deputy is an admin");
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'deputy@example.com'")
        .fetch_one(&root.db)
        .await
        .unwrap();
    let csrf = root.csrf.clone().unwrap();
    let response = root.post_form(&format!("/admin/users/{id}/role"), &[("csrf_token", &csrf), ("role", "user")]).await;
    assert_eq!(response.status(), 303);
    // No wait for the session cache: the change applies to the deputy's next request.
    assert_eq!(deputy.get("/admin/users").await.status(), 403);
}
