//! Mail that respects consent, end to end against a real SMTP server (aiosmtpd, refusing some
//! recipients as receiving servers do): personalised notes, the unsubscribe headers and link,
//! one-click unsubscribe without a session, the suppression list on every later send, hard
//! bounces suppressed and greylisting retried, and templates refused when saved.

use borcelle::config::TransportSettings;
use mail_parser::MessageParser;
use serde_json::{Value, json};

use crate::helpers::*;

/// A received email, parsed.
struct Received {
    to: String,
    subject: String,
    text: String,
    html: String,
    list_unsubscribe: Option<String>,
    list_unsubscribe_post: Option<String>,
}

fn received(sink: &SmtpSink) -> Vec<Received> {
    sink.raw_messages()
        .iter()
        .map(|raw| {
            let message = MessageParser::default().parse(raw).expect("a MIME message");
            let header = |name: &str| {
                message.header_raw(name).map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
            };
            Received {
                to: message.to().and_then(|to| to.first()).and_then(|a| a.address()).unwrap_or_default().to_owned(),
                subject: message.subject().unwrap_or_default().to_owned(),
                text: message.body_text(0).unwrap_or_default().into_owned(),
                html: message.body_html(0).unwrap_or_default().into_owned(),
                list_unsubscribe: header("List-Unsubscribe"),
                list_unsubscribe_post: header("List-Unsubscribe-Post"),
            }
        })
        .collect()
}

async fn contact(app: &TestApp, name: &str, email: &str) -> String {
    let response = app.post_json("/api/v1/contacts", &json!({ "name": name, "email": email })).await;
    assert_eq!(response.status(), 201, "creating {email}");
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, ids: &[&str], subject: &str, body: &str) -> Value {
    let response =
        app.post_json("/api/v1/messages", &json!({ "contact_ids": ids, "subject": subject, "body": body })).await;
    assert_eq!(response.status(), 202);
    response.json().await.unwrap()
}

async fn task(app: &TestApp, id: &Value) -> Value {
    app.get(&format!("/api/v1/tasks/{}", id.as_str().unwrap())).await.json().await.unwrap()
}

async fn status_of(app: &TestApp, task: &Value, email: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, last_error FROM messages WHERE task_id = $1::uuid AND to_email = $2")
        .bind(task.as_str().unwrap())
        .bind(email)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// The link in `List-Unsubscribe`: `<https…>` → `https…`.
fn link_of(header: &str) -> String {
    header.trim().trim_start_matches('<').split('>').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_note_is_personalised_carries_one_click_unsubscribe_and_the_list_is_honoured_afterwards() {
    let dir = std::env::temp_dir().join(unique("borcelle-consent-"));
    let sink = SmtpSink::start_refusing(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(sink.smtp_settings())).await;
    app.signed_in_user("sender@example.com").await;
    let ada = contact(&app, "Ada Lovelace", "ada@example.com").await;
    let grace = contact(&app, "Grace Brewster Hopper", "grace@example.com").await;
    let emilie = contact(&app, "Châtelet, Émilie", "emilie@example.com").await;

    let subject = "Hello {{ contact.first_name }}";
    let body = "Dear {{ contact.first_name | default(\"friend\") }},\n\nsee you soon.\n{{ sender.name }}";
    let queued = send(&app, &[&ada, &grace, &emilie], subject, body).await;
    assert_eq!(queued["total"], 3);
    assert_eq!(queued["suppressed"], 0);
    app.deliver_all().await;
    let mails = sink.wait_for_count(3, 10).await;
    assert_eq!(mails.len(), 3);

    let mut links = std::collections::HashMap::new();
    for mail in received(&sink) {
        let first = match mail.to.as_str() {
            "ada@example.com" => "Ada",
            "grace@example.com" => "Grace",
            "emilie@example.com" => "Émilie",
            other => panic!("unexpected recipient {other}"),
        };
        assert_eq!(mail.subject, format!("Hello {first}"));
        assert!(mail.text.starts_with(&format!("Dear {first},")), "{}", mail.text);
        assert!(mail.html.contains(&format!("Dear {first},")), "{}", mail.html);
        let header = mail.list_unsubscribe.expect("bulk mail carries List-Unsubscribe");
        assert_eq!(mail.list_unsubscribe_post.as_deref(), Some("List-Unsubscribe=One-Click"));
        let link = link_of(&header);
        assert!(link.starts_with(&app.url("/unsubscribe/")), "{link}");
        assert!(mail.text.contains(&link), "the visible link in the text part: {}", mail.text);
        assert!(mail.html.contains(&format!("href=\"{link}\"")), "the visible link in the HTML part");
        links.insert(mail.to.clone(), link);
    }
    assert_eq!(links.values().collect::<std::collections::HashSet<_>>().len(), 3, "one link per recipient");
    // The history shows each recipient's subject as it was sent.
    let timeline: Value = app.get(&format!("/api/v1/contacts/{emilie}/messages")).await.json().await.unwrap();
    assert_eq!(timeline["messages"][0]["subject"], "Hello Émilie", "{timeline}");
    let page = app.get(&format!("/contacts/{grace}")).await.text().await.unwrap();
    assert!(
        page.contains("Hello Grace") && !page.contains("contact.first_name }}</strong>"),
        "the timeline of the page"
    );

    // A mailbox provider's one-click POST: no session, no CSRF token, from another site.
    let stranger = reqwest::Client::new();
    let clicked = stranger
        .post(&links["ada@example.com"])
        .header("Origin", "https://mail.google.com")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(clicked.status(), 200);
    let page = clicked.text().await.unwrap();
    assert!(page.contains("You are unsubscribed") && page.contains("ada@example.com"), "{page}");
    // Again: nothing changes.
    let again = stranger.post(&links["ada@example.com"]).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(again.status(), 200);
    // GET only asks to confirm (a scanner opening the link unsubscribes nobody).
    let asked = stranger.get(&links["grace@example.com"]).send().await.unwrap().text().await.unwrap();
    assert!(asked.contains("Unsubscribe?") && asked.contains("grace@example.com"), "{asked}");

    let list: Value = app.get("/api/v1/suppressions").await.json().await.unwrap();
    let entries = list["suppressions"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["email"], "ada@example.com");
    assert_eq!(entries[0]["reason"], "unsubscribed");

    // The next note skips Ada: a `suppressed` row, counted, nothing sent.
    let queued = send(&app, &[&ada, &grace, &emilie], "Part two", "Hello again {{ contact.first_name }}").await;
    assert_eq!(queued["total"], 3);
    assert_eq!(queued["suppressed"], 1);
    app.deliver_all().await;
    let mails = sink.wait_for_count(5, 10).await;
    assert_eq!(mails.len(), 5, "two more emails, none to Ada");
    assert_eq!(mails.iter().filter(|(to, _)| to == "ada@example.com").count(), 1);
    let done = task(&app, &queued["task_id"]).await;
    assert_eq!(
        (done["status"].as_str(), done["sent"].as_i64(), done["suppressed"].as_i64()),
        (Some("done"), Some(2), Some(1))
    );
    let (status, reason) = status_of(&app, &queued["task_id"], "ada@example.com").await;
    assert_eq!((status.as_str(), reason.as_deref()), ("suppressed", Some("suppressed: unsubscribed")));
    let notifications: Value = app.get("/api/v1/notifications").await.json().await.unwrap();
    let titles: Vec<&str> =
        notifications["notifications"].as_array().unwrap().iter().filter_map(|n| n["title"].as_str()).collect();
    assert!(titles.contains(&"Message sent to 2 of 3 contacts; 1 suppressed"), "{titles:?}");

    // The owner re-subscribes Ada explicitly: she is mailed again.
    let removed = app
        .client
        .delete(app.url("/api/v1/suppressions/ADA@example.com"))
        .header("Origin", app.origin())
        .header("X-CSRF-Token", app.csrf.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    let queued = send(&app, &[&ada], "Welcome back", "Hi {{ contact.first_name }}").await;
    assert_eq!(queued["suppressed"], 0);
    app.deliver_all().await;
    assert_eq!(sink.wait_for_count(6, 10).await.len(), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_refused_recipient_is_hard_bounced_and_skipped_next_time_while_greylisting_is_retried() {
    let dir = std::env::temp_dir().join(unique("borcelle-bounce-"));
    let sink = SmtpSink::start_refusing(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(sink.smtp_settings())).await;
    app.signed_in_user("sender@example.com").await;
    let gone = contact(&app, "Gone Away", "refuse-me@example.com").await;
    let grey = contact(&app, "Grey Listed", "greylist@example.com").await;

    let first = send(&app, &[&gone, &grey], "Hello", "Hello {{ contact.first_name }}").await;
    let drained = app.deliver_all().await;
    assert_eq!((drained.sent, drained.failed, drained.retrying), (0, 1, 1), "{drained:?}");
    let (status, error) = status_of(&app, &first["task_id"], "refuse-me@example.com").await;
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("550"), "the server's reply is kept");
    let (status, _) = status_of(&app, &first["task_id"], "greylist@example.com").await;
    assert_eq!(status, "retrying", "451 is temporary: retried, never suppressed");
    let entry: Value = app.get("/api/v1/suppressions/refuse-me@example.com").await.json().await.unwrap();
    assert_eq!(entry["reason"], "hard_bounce");
    assert_eq!(app.get("/api/v1/suppressions/greylist@example.com").await.status(), 404);

    // The retry gets through the greylisting.
    sqlx::query("UPDATE deliveries SET next_attempt_at = now() WHERE status = 'retrying'")
        .execute(&app.db)
        .await
        .unwrap();
    let drained = app.deliver_all().await;
    assert_eq!(drained.sent, 1);
    assert_eq!(status_of(&app, &first["task_id"], "greylist@example.com").await.0, "sent");
    let mails = sink.wait_for_count(1, 10).await;
    assert_eq!(mails.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(), ["greylist@example.com"]);

    // The bounced address is skipped from now on.
    let second = send(&app, &[&gone, &grey], "Again", "Hello again").await;
    assert_eq!(second["suppressed"], 1);
    app.deliver_all().await;
    let (status, reason) = status_of(&app, &second["task_id"], "refuse-me@example.com").await;
    assert_eq!((status.as_str(), reason.as_deref()), ("suppressed", Some("suppressed: hard_bounce")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn one_owners_suppressions_never_affect_another_owners_sends() {
    let mut app = spawn_app().await;
    app.signed_in_user("a@example.com").await;
    let ada = contact(&app, "Ada Lovelace", "ada@example.com").await;
    let queued = send(&app, &[&ada, &contact(&app, "Bob", "bob@example.com").await], "News", "Hi").await;
    app.deliver_all().await;
    let row: (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM messages WHERE task_id = $1::uuid AND to_email = 'ada@example.com'")
            .bind(queued["task_id"].as_str().unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    let links = borcelle_engine::consent::UnsubscribeLinks::load(&app.db, url::Url::parse(&app.url("/")).unwrap())
        .await
        .unwrap();
    let clicked = reqwest::Client::new().post(links.link(row.0)).send().await.unwrap();
    assert_eq!(clicked.status(), 200);

    // B mails the same address: delivered, and B's list is empty.
    app.signed_in_user("b@example.com").await;
    let ada_of_b = contact(&app, "Ada L.", "ada@example.com").await;
    let queued = send(&app, &[&ada_of_b], "Hello from B", "Hi").await;
    assert_eq!(queued["suppressed"], 0);
    app.deliver_all().await;
    assert_eq!(status_of(&app, &queued["task_id"], "ada@example.com").await.0, "sent");
    let list: Value = app.get("/api/v1/suppressions").await.json().await.unwrap();
    assert_eq!(list["suppressions"], json!([]));
    assert_eq!(app.get("/api/v1/suppressions/ada@example.com").await.status(), 404);
}

#[tokio::test]
async fn forged_expired_and_foreign_links_do_nothing_and_say_so() {
    let mut app = spawn_app().await;
    app.signed_in_user("a@example.com").await;
    let ada = contact(&app, "Ada Lovelace", "ada@example.com").await;
    let bob = contact(&app, "Bob", "bob@example.com").await;
    let queued = send(&app, &[&ada, &bob], "News", "Hi").await;
    app.deliver_all().await;
    let ids: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, to_email FROM messages WHERE task_id = $1::uuid ORDER BY to_email")
            .bind(queued["task_id"].as_str().unwrap())
            .fetch_all(&app.db)
            .await
            .unwrap();
    let links = borcelle_engine::consent::UnsubscribeLinks::load(&app.db, url::Url::parse(&app.url("/")).unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::new();

    // Forged: a link for Ada's row with another key, and Bob's token with Ada's row id.
    let forged = borcelle_engine::consent::UnsubscribeLinks::new(url::Url::parse(&app.url("/")).unwrap(), vec![1; 32]);
    for link in [
        forged.link(ids[0].0),
        links.link(ids[1].0).replace(&links.token(ids[1].0)[..22], &links.token(ids[0].0)[..22]),
    ] {
        let response = client.post(&link).body("List-Unsubscribe=One-Click").send().await.unwrap();
        assert_eq!(response.status(), 404, "{link}");
        assert!(response.text().await.unwrap().contains("not valid"));
    }
    assert_eq!(client.get(app.url("/unsubscribe/garbage")).send().await.unwrap().status(), 404);

    // Expired: the email was queued more than a year ago.
    sqlx::query("UPDATE ledger SET created_at = now() - interval '400 days' WHERE id = $1")
        .bind(ids[1].0)
        .execute(&app.db)
        .await
        .unwrap();
    let response = client.post(links.link(ids[1].0)).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(response.status(), 410);
    assert!(response.text().await.unwrap().contains("expired"));

    let list: Value = app.get("/api/v1/suppressions").await.json().await.unwrap();
    assert_eq!(list["suppressions"], json!([]), "nothing was suppressed");
}

#[tokio::test]
async fn bad_templates_are_refused_when_saved_or_sent_naming_the_problem() {
    let mut app = spawn_app().await;
    app.signed_in_user("a@example.com").await;
    let ada = contact(&app, "Ada Lovelace", "ada@example.com").await;
    let cases = [
        ("Hi", "Hello\n  {{ contact.nope }}", "body", "contact.nope"),
        ("Hi {{ unclosed", "Hello", "subject", "line 1"),
        (
            "Hi",
            "{% for a in contact.tags * 100000 %}{% for b in contact.tags * 100000 %}x{% endfor %}{% endfor %}",
            "body",
            "",
        ),
        ("Hi", "{{ \"x\" * 10000000 }}", "body", ""),
        ("Hi", "{% for a in range(100000) %}x{% endfor %}", "body", "range"),
        ("Hi", "{{ secrets }}", "body", "secrets"),
        ("Hi", "{% include \"other\" %}", "body", ""),
    ];
    for (subject, body, field, named) in cases {
        let response =
            app.post_json("/api/v1/messages", &json!({ "contact_ids": [ada], "subject": subject, "body": body })).await;
        let status = response.status().as_u16();
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert_eq!((status, error["error"]["field"].as_str()), (422, Some(field)), "{subject} / {body}: {error}");
        assert!(message.contains(named), "{message} names {named}");
        // A note is refused when saved, with the same answer.
        let response = app.post_json("/api/v1/notes", &json!({ "title": subject, "body": body })).await;
        let (status, _, got_field) = error_of(response).await;
        let note_field = if field == "subject" { "title" } else { field };
        assert_eq!((status, got_field.as_deref()), (422, Some(note_field)), "note {subject} / {body}");
    }
    // A reminder is refused when saved, naming the spec's field.
    let spec = json!({ "recipients": { "tag": "team" }, "subject": "Weekly {{ contact.first_name }}",
        "body": "Hi {{ contact.nope }}", "schedule": "0 9 * * 1" });
    let response = app.post_json("/api/v1/reminders", &json!({ "name": "weekly", "spec": spec })).await;
    let status = response.status().as_u16();
    let error: Value = response.json().await.unwrap();
    assert_eq!((status, error["error"]["field"].as_str()), (422, Some("spec.body")), "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("contact.nope"), "{error}");
    assert_eq!(app.get("/api/v1/reminders/weekly").await.status(), 404, "nothing was stored");
    let count: (i64,) = sqlx::query_as("SELECT count(*) FROM tasks").fetch_one(&app.db).await.unwrap();
    assert_eq!(count.0, 0, "nothing was queued");

    // The preview shows what a contact receives.
    let preview: Value = app
        .post_json(
            "/api/v1/messages/preview",
            &json!({ "contact_id": ada, "subject": "Hi {{ contact.first_name }}", "body": "Dear {{ contact.last_name }}" }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["subject"], "Hi Ada");
    assert!(preview["text"].as_str().unwrap().starts_with("Dear Lovelace"), "{preview}");
}

#[tokio::test]
async fn a_send_whose_recipients_are_mostly_or_all_suppressed_is_queued_and_finishes() {
    let mut app = spawn_app().await;
    app.signed_in_user("a@example.com").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let email = format!("c{i}@example.com");
        ids.push(contact(&app, &format!("Contact {i}"), &email).await);
        if i > 0 {
            let added = app.post_json("/api/v1/suppressions", &json!({ "email": email, "detail": "asked" })).await;
            assert_eq!(added.status(), 201);
        }
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let queued = send(&app, &refs, "News", "Hi {{ contact.first_name }}").await;
    assert_eq!((queued["total"].as_i64(), queued["suppressed"].as_i64()), (Some(4), Some(3)));
    app.deliver_all().await;
    let done = task(&app, &queued["task_id"]).await;
    assert_eq!(
        (done["status"].as_str(), done["sent"].as_i64(), done["suppressed"].as_i64()),
        (Some("done"), Some(1), Some(3))
    );

    // Every recipient suppressed: done at once, with its notification, nothing to deliver.
    let queued = send(&app, &refs[1..], "More news", "Hi").await;
    assert_eq!((queued["total"].as_i64(), queued["suppressed"].as_i64()), (Some(3), Some(3)));
    let done = task(&app, &queued["task_id"]).await;
    assert_eq!(done["status"], "done", "{done}");
    let notifications: Value = app.get("/api/v1/notifications").await.json().await.unwrap();
    assert_eq!(notifications["notifications"][0]["title"], "Message sent to 0 of 3 contacts; 3 suppressed");
}
