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
    }
}

#[tokio::test]
async fn starttls_with_auth_delivers_with_the_right_password_and_fails_permanently_with_a_wrong_one() {
    let smtp = MailServer::start_tls_with_auth("borcelle", "s3cret-pass").await;
    let mut settings = smtp.smtp_settings();
    settings.tls = SmtpTls::Starttls;
    settings.username = Some("borcelle".to_owned());
    settings.password = Some(SecretString::from("s3cret-pass".to_owned()));
    let transport = SmtpTransport::new(&settings).unwrap();
    transport.send(&email("auth-ok@example.com")).await.unwrap();
    smtp.wait_for("auth-ok@example.com").await;

    settings.password = Some(SecretString::from("wrong".to_owned()));
    let transport = SmtpTransport::new(&settings).unwrap();
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
    let transport = SmtpTransport::new(&settings).unwrap();
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
    let transport = SmtpTransport::new(&settings).unwrap();
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
