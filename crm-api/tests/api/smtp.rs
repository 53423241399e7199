//! Mail through a real SMTP server process (mailtutan), read back over its own API.

use std::time::{Duration, SystemTime};

use borcelle::config::{SmtpTls, TransportSettings};
use borcelle_mail::{MailTransport, Mailbox, OutgoingEmail, SmtpTransport};
use secrecy::SecretString;

use crate::helpers::*;

fn header<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    source.lines().take_while(|l| !l.is_empty()).find_map(|l| l.strip_prefix(&prefix))
}

#[tokio::test]
async fn registration_mail_travels_over_smtp_and_its_link_verifies_the_account() {
    let smtp = MailServer::start().await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(smtp.smtp_settings())).await;
    assert_eq!(app.register("smtp-user@example.com", "Smtp <User>").await.status(), 202);

    app.account_mail_settled().await;
    let id = smtp.wait_for("smtp-user@example.com").await;
    let source = smtp.part(id, "source").await;
    assert_eq!(header(&source, "From"), Some("Borcelle <noreply@borcelle.test>"));
    assert!(header(&source, "To").is_some_and(|to| to.contains("<smtp-user@example.com>")), "{source}");
    assert_eq!(header(&source, "Subject"), Some("Verify your email for Borcelle"));
    let message_id = header(&source, "Message-ID").expect("Message-ID");
    assert!(message_id.starts_with('<') && message_id.ends_with("@borcelle.test>"), "{message_id}");
    assert!(header(&source, "Date").is_some(), "Date header");
    assert!(source.contains("multipart/alternative"), "{source}");
    assert!(source.contains("text/plain") && source.contains("text/html"), "both parts");

    let html = smtp.part(id, "html").await;
    assert!(html.contains("Smtp &lt;User&gt;"), "the name is escaped in HTML: {html}");
    let text = smtp.part(id, "plain").await;
    let token = token_from_text(&text, &app.url("/verify"));

    // Follow the link as a browser would: open it, press the button, log in.
    assert_eq!(app.get(&format!("/verify?token={token}")).await.status(), 200);
    assert_eq!(app.post_form("/verify", &[("token", &token)]).await.status(), 200);
    assert_eq!(app.login("smtp-user@example.com", PASSWORD).await.status(), 200);
}

fn email(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        from: Mailbox { name: Some("Borcelle".to_owned()), email: "noreply@borcelle.test".to_owned() },
        to: Mailbox { name: None, email: to.to_owned() },
        reply_to: None,
        subject: "Direct".to_owned(),
        text: "plain".to_owned(),
        html: "<p>html</p>".to_owned(),
        message_id: format!("<{}@borcelle.test>", unique("m")),
        date: SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
    }
}

#[tokio::test]
async fn starttls_with_auth_delivers_with_the_right_password_and_fails_permanently_with_a_wrong_one() {
    let smtp = MailServer::start_tls_with_auth("borcelle", "s3cret-pass").await;
    let mut settings = smtp.smtp_settings();
    settings.tls = SmtpTls::Starttls;
    settings.username = Some("borcelle".to_owned());
    settings.password = Some(SecretString::from("s3cret-pass".to_owned()));
    let transport = SmtpTransport::new(&settings, None).unwrap();
    transport.send(&email("auth-ok@example.com")).await.unwrap();
    smtp.wait_for("auth-ok@example.com").await;

    settings.password = Some(SecretString::from("wrong".to_owned()));
    let transport = SmtpTransport::new(&settings, None).unwrap();
    let err = transport.send(&email("auth-bad@example.com")).await.unwrap_err();
    assert!(!err.is_transient(), "a refused login is permanent: {err}");
}

#[tokio::test]
async fn starttls_refuses_a_certificate_from_an_untrusted_ca() {
    let smtp = MailServer::start_tls_with_auth("borcelle", "s3cret-pass").await;
    let mut settings = smtp.smtp_settings();
    settings.tls = SmtpTls::Starttls;
    settings.ca_file = None;
    settings.username = Some("borcelle".to_owned());
    settings.password = Some(SecretString::from("s3cret-pass".to_owned()));
    let transport = SmtpTransport::new(&settings, None).unwrap();
    let err = transport.send(&email("mitm@example.com")).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(smtp.messages().await.is_empty(), "nothing was sent over an unverified connection");
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_a_transient_failure() {
    let smtp = MailServer::start().await;
    let mut settings = smtp.smtp_settings();
    drop(smtp);
    settings.timeout = Duration::from_secs(2);
    let transport = SmtpTransport::new(&settings, None).unwrap();
    let err = transport.send(&email("nobody@example.com")).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn account_mail_is_retried_when_the_smtp_server_comes_back() {
    // The server is down at registration time and up a moment later.
    let port = free_port();
    let settings = borcelle::config::SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port,
        tls: borcelle::config::SmtpTls::None,
        username: None,
        password: None,
        pool_size: 1,
        timeout: Duration::from_secs(2),
        ca_file: None,
    };
    let app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(settings)).await;
    assert_eq!(app.register("patient-mail@example.com", "Patient").await.status(), 202);
    let smtp = MailServer::start_on(port).await;
    smtp.wait_for("patient-mail@example.com").await;
}

/// Text that could split a mail header (CR, LF) or an address that is not one is refused by every
/// way in (the API, the pages, CSV, reminders, broadcasts), each naming its field; and what was
/// stored before these checks still reaches a real SMTP server as one header line, with no added
/// recipient.
#[tokio::test]
async fn text_that_could_split_a_header_is_refused_everywhere_and_never_reaches_one() {
    let dir = std::env::temp_dir().join(unique("borcelle-headers-"));
    let sink = SmtpSink::start(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(sink.smtp_settings())).await;
    app.verified_user("headers@example.com", borcelle_store::users::Role::Admin).await;
    assert_eq!(app.login("headers@example.com", PASSWORD).await.status(), 200);
    let injected = "Hi\r\nBcc: victim@example.org";
    let refused = [
        ("/api/v1/contacts", serde_json::json!({ "name": injected, "email": "eve@example.com" }), "name"),
        (
            "/api/v1/contacts",
            serde_json::json!({ "name": "Eve", "email": "eve@example.com", "company": injected }),
            "company",
        ),
        ("/api/v1/messages", serde_json::json!({ "tag": "x", "subject": injected, "body": "b" }), "subject"),
        (
            "/api/v1/reminders",
            serde_json::json!({ "name": "r", "spec": { "recipients": { "emails": ["ada@example.com"] }, "subject": injected, "body": "b", "schedule": "@daily" } }),
            "spec.subject",
        ),
        (
            "/api/v1/admin/broadcasts",
            serde_json::json!({ "name": "b", "spec": { "title": injected, "message": "m" } }),
            "spec.title",
        ),
    ];
    let mut cases: Vec<(String, serde_json::Value, String)> =
        refused.iter().map(|(p, b, f)| (p.to_string(), b.clone(), f.to_string())).collect();
    for email in ["a@b", "@example.com", "a@example.com\r\nBcc: victim@example.org"] {
        let spec = serde_json::json!({ "recipients": { "emails": [email] }, "subject": "s", "body": "b", "schedule": "@daily" });
        cases.push((
            "/api/v1/reminders".into(),
            serde_json::json!({ "name": "r", "spec": spec }),
            "spec.recipients.emails".into(),
        ));
    }
    for (path, body, field) in cases {
        let (status, code, named) = error_of(app.post_json(&path, &body).await).await;
        assert_eq!(
            (status, code.as_str(), named.as_deref()),
            (422, "invalid_field", Some(field.as_str())),
            "{path} {body}"
        );
    }
    // The contact form and a CSV row say the same.
    let csrf = app.csrf.clone().unwrap();
    let page = app
        .post_form("/contacts/new", &[("csrf_token", &csrf), ("name", injected), ("email", "eve@example.com")])
        .await;
    assert_eq!(page.status(), 422);
    assert!(page.text().await.unwrap().contains(r#"id="name-error""#), "the error sits next to the name");
    let csv = "name,email\n\"Eve\r\nBcc: victim@example.org\",eve@example.com\n";
    let report: serde_json::Value = app.import_csv("", csv).await.json().await.unwrap();
    assert_eq!(report["created"], 0, "{report}");
    assert_eq!(report["errors"][0]["field"], "name", "{report}");
    let contacts: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts").fetch_one(&app.db).await.unwrap();
    assert_eq!(contacts, 0, "nothing was written");

    // Rows from before the checks: a name and a subject with CR LF in them.
    let contact: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO contacts (id, owner_id, name, email)
         SELECT gen_random_uuid(), id, $1, 'eve@example.com' FROM users WHERE email = 'headers@example.com' RETURNING id",
    )
    .bind("Eve\r\nBcc: victim@example.org")
    .fetch_one(&app.db)
    .await
    .unwrap();
    let queued: serde_json::Value = app
        .post_json(
            "/api/v1/messages",
            &serde_json::json!({ "contact_ids": [contact], "subject": "Hello", "body": "Hi Eve" }),
        )
        .await
        .json()
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET subject = $2 WHERE id = $1::uuid")
        .bind(queued["task_id"].as_str().unwrap())
        .bind(injected)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.deliver_all().await.sent, 1);
    let raw = sink.raw_messages();
    assert_eq!(raw.len(), 1, "one message, to one recipient");
    let text = String::from_utf8_lossy(&raw[0]).to_string();
    let headers: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).collect();
    assert!(!headers.iter().any(|l| l.to_ascii_lowercase().starts_with("bcc:")), "no Bcc header: {headers:#?}");
    let subject = headers.iter().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(
        subject.contains("Hi") && subject.contains("victim@example.org"),
        "the subject kept as one line: {subject}"
    );
    let to = headers.iter().find(|l| l.starts_with("To:")).unwrap();
    assert!(to.contains("<eve@example.com>"), "{to}");
    assert_eq!(sink.messages()[0].0, "eve@example.com");
    let _ = std::fs::remove_dir_all(dir);
}
