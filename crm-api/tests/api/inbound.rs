//! Hearing back: real SMTP sessions (lettre, a real client) to the receiver `serve` runs, and
//! what the owner then sees: the reply in the contact's conversation, live on their socket, its
//! files for them only; bounces in the ledger; strangers and forgeries refused at `RCPT`.

use std::net::SocketAddr;
use std::time::Duration;

use borcelle_engine::inbound::{Addresses, InboundSettings, Kind};
use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Browser, TestApp, next_event, open_socket, spawn_app_with};

const DOMAIN: &str = "in.borcelle.test";

async fn inbound_app(adjust: impl FnOnce(&mut InboundSettings)) -> TestApp {
    spawn_app_with(|settings| {
        let mut inbound = InboundSettings::new(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 0)));
        inbound.max_connections_per_client = 200;
        inbound.connections_per_minute = None;
        inbound.max_message_bytes = 10 * 1024 * 1024;
        adjust(&mut inbound);
        settings.inbound = Some(inbound);
    })
    .await
}

fn client(app: &TestApp, pool: u32) -> AsyncSmtpTransport<Tokio1Executor> {
    let addr = app.inbound_addr.expect("the receiver runs in serve");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .timeout(Some(Duration::from_secs(60)))
        .pool_config(PoolConfig::new().max_size(pool))
        .build()
}

/// A signed-in user with a contact who was sent one message: the contact's id and the ledger row.
async fn sent_message(app: &mut TestApp, user: &str, contact_email: &str) -> (String, Uuid) {
    app.signed_in_user(user).await;
    let contact: Value = app
        .post_json("/api/v1/contacts", &json!({ "name": "Jane Doe", "email": contact_email }))
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": [contact["id"]], "subject": "Quarterly update", "body": "The numbers are in." }),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.deliver_all().await;
    let (row,): (Uuid,) = sqlx::query_as("SELECT id FROM messages WHERE contact_id = $1::uuid")
        .bind(contact["id"].as_str().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    (contact["id"].as_str().unwrap().to_owned(), row)
}

async fn addresses(app: &TestApp) -> Addresses {
    Addresses::load(&app.db, DOMAIN).await.unwrap()
}

/// The `Reply-To` the message was sent with, read from the outbox.
async fn reply_to_of(app: &TestApp, contact_email: &str) -> String {
    let sent = app.outbox_for(contact_email, 1).await;
    let headers = sent[0]["headers"].as_str().unwrap();
    let line = headers.lines().find(|l| l.starts_with("Reply-To:")).expect("a Reply-To header");
    line.rsplit('<').next().unwrap().trim_end_matches('>').trim().to_owned()
}

fn reply(from: &str, to: &str, subject: &str, text: &str) -> Message {
    Message::builder()
        .from(from.parse().unwrap())
        .to(to.parse().unwrap())
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text.to_owned())
        .unwrap()
}

async fn conversation(app: &TestApp, contact: &str) -> Vec<Value> {
    let page: Value = app.get(&format!("/api/v1/contacts/{contact}/conversation")).await.json().await.unwrap();
    page["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_reply_sent_over_smtp_is_filed_under_the_contact_and_pushed_live() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = reply_to_of(&app, "jane@example.com").await;
    assert_eq!(addresses(&app).await.parse(&reply_to), Some((Kind::Reply, row)), "Reply-To names the ledger row");
    let mut socket = open_socket(&app, app.session_cookie.as_deref().unwrap()).await;

    let text = "Thanks, see you Monday.\n\nOn Mon, 1 Dec 2026, Owner wrote:\n> The numbers are in.\n";
    client(&app, 1)
        .send(reply("Jane Doe <jane@example.com>", &reply_to, "Re: Quarterly update", text))
        .await
        .expect("the receiver accepts the reply");

    // The live event, then the notification, on the owner's socket.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let event = next_event(&mut socket).await.expect("an event");
        match event["type"].as_str() {
            Some("inbound") => {
                assert_eq!(event["contact_id"], contact.as_str());
                assert_eq!(event["kind"], "reply");
                assert_eq!(event["from"], "Jane Doe");
                kinds.push("inbound");
            }
            Some("notification") => {
                assert_eq!(event["notification"]["title"], "Jane Doe replied to “Quarterly update”");
                kinds.push("notification");
            }
            _ => {}
        }
    }
    let entries = conversation(&app, &contact).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["direction"], "inbound");
    assert_eq!(entries[0]["state"], "reply");
    assert_eq!(entries[0]["text"], "Thanks, see you Monday.");
    assert_eq!(entries[0]["in_reply_to"], row.to_string());
    assert_eq!(entries[1]["direction"], "outbound");
    let jane: Value =
        app.get(&format!("/api/v1/replies/{}", entries[0]["id"].as_str().unwrap())).await.json().await.unwrap();
    assert!(jane["quoted_text"].as_str().unwrap().starts_with("On Mon, 1 Dec 2026, Owner wrote:"), "{jane}");
    assert_eq!(jane["from_other"], false);

    // A colleague answering for the contact is filed under the contact too, marked.
    client(&app, 1)
        .send(reply("Bob <bob@example.com>", &reply_to, "Re: Quarterly update", "Jane is away; I'll handle it."))
        .await
        .unwrap();
    let entries = conversation(&app, &contact).await;
    let bob = entries.iter().find(|e| e["address"] == "bob@example.com").expect("bob's reply");
    let bob: Value = app.get(&format!("/api/v1/replies/{}", bob["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(bob["from_other"], true);
}

#[tokio::test]
async fn html_with_an_inline_image_and_a_pdf_is_sanitised_and_its_files_are_the_owners_only() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, _) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = reply_to_of(&app, "jane@example.com").await;
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let pdf: Vec<u8> = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let html = "<p>Here <b>you go</b><script>alert('x')</script> <a href=\"javascript:alert(1)\">evil</a> \
                <a href=\"https://example.com/report\">report</a><img src=\"cid:chart@jane\"></p>";
    let message = Message::builder()
        .from("Jane Doe <jane@example.com>".parse().unwrap())
        .to(reply_to.parse().unwrap())
        .subject("Re: Quarterly update")
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative().singlepart(SinglePart::plain("Here you go".to_owned())).multipart(
                    MultiPart::related().singlepart(SinglePart::html(html.to_owned())).singlepart(
                        Attachment::new_inline("chart@jane".to_owned()).body(png.clone(), "image/png".parse().unwrap()),
                    ),
                ))
                .singlepart(
                    Attachment::new("report.pdf".to_owned()).body(pdf.clone(), "application/pdf".parse().unwrap()),
                ),
        )
        .unwrap();
    client(&app, 1).send(message).await.unwrap();

    let entries = conversation(&app, &contact).await;
    let id = entries[0]["id"].as_str().unwrap().to_owned();
    let reply: Value = app.get(&format!("/api/v1/replies/{id}")).await.json().await.unwrap();
    let shown = reply["body_html"].as_str().expect("sanitised HTML");
    assert!(!shown.contains("script") && !shown.contains("javascript:"), "{shown}");
    assert!(shown.contains("https://example.com/report"), "{shown}");
    let files = reply["attachments"].as_array().unwrap();
    let file = |name: &str| {
        files.iter().find(|f| f["filename"] == name).cloned().unwrap_or_else(|| panic!("{name} in {files:?}"))
    };
    let pdf_file = file("report.pdf");
    let pdf_url = format!("/api/v1/replies/{id}/files/{}", pdf_file["part"]);
    let downloaded = app.get(&pdf_url).await;
    assert_eq!(downloaded.status(), 200);
    assert!(downloaded.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(downloaded.bytes().await.unwrap().to_vec(), pdf);
    let image = files.iter().find(|f| f["content_type"] == "image/png").expect("the inline image");
    let image_url = format!("/api/v1/replies/{id}/files/{}", image["part"]);
    assert!(shown.contains(&format!("src=\"{image_url}\"")), "the HTML shows the inline image: {shown}");
    assert_eq!(app.get(&image_url).await.bytes().await.unwrap().to_vec(), png);

    // The contact's page shows it, sanitised, under the message it answers.
    let page = app.get(&format!("/contacts/{contact}")).await.text().await.unwrap();
    let at = page.find(&format!("id=\"reply-{id}\"")).expect("the reply is on the contact's page");
    assert!(page[..at].contains("Quarterly update"), "under the message it answers");
    assert!(!page.contains("alert('x')") && !page.contains("javascript:alert"), "sanitised on the page");
    assert!(page.contains("report.pdf") && page.contains("Formatted message"));
    // The contacts list says who replied last.
    let list = app.get("/contacts").await.text().await.unwrap();
    let row = &list[list.find("jane@example.com").expect("jane's row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert_eq!(row.matches("<time ").count(), 3, "updated, last emailed and last reply: {row}");

    // Another user finds neither the reply, nor its files, nor the conversation.
    let stranger = Browser::signed_in_user(&app, "stranger@example.com").await;
    for path in [
        format!("/api/v1/replies/{id}"),
        pdf_url.clone(),
        image_url,
        format!("/api/v1/contacts/{contact}/conversation"),
    ] {
        assert_eq!(stranger.get(&path).await.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn an_iso_8859_1_reply_is_decoded() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, _) = sent_message(&mut app, "owner@example.com", "renee@example.fr").await;
    let reply_to = reply_to_of(&app, "renee@example.fr").await;
    let raw = format!(
        "From: =?ISO-8859-1?Q?Ren=E9e?= <renee@example.fr>\r\nTo: {reply_to}\r\nSubject: =?ISO-8859-1?Q?R=E9ponse?=\r\n\
         Message-ID: <latin1@example.fr>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n"
    );
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(b"Tr\xe8s bien, merci \xe0 vous.\r\n");
    let envelope = Envelope::new(Some("renee@example.fr".parse().unwrap()), vec![reply_to.parse().unwrap()]).unwrap();
    client(&app, 1).send_raw(&envelope, &bytes).await.unwrap();
    let entries = conversation(&app, &contact).await;
    assert_eq!(entries[0]["subject"], "Réponse");
    assert_eq!(entries[0]["text"], "Très bien, merci à vous.");
}

#[tokio::test]
async fn strangers_forgeries_relays_and_oversized_messages_are_refused_and_nothing_is_kept() {
    let mut app = inbound_app(|inbound| inbound.max_message_bytes = 1024 * 1024).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let addresses = addresses(&app).await;
    let token = addresses.token(Kind::Reply, row);
    let mut forged = token.clone().into_bytes();
    forged[5] = if forged[5] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    let refused_at_rcpt = [
        format!("reply+{forged}@{DOMAIN}"),
        // A reply token does not open the bounce or unsubscribe address of the same row.
        format!("bounces+{token}@{DOMAIN}"),
        format!("unsubscribe+{token}@{DOMAIN}"),
        format!("reply+{}@{DOMAIN}", addresses.token(Kind::Reply, Uuid::now_v7())[..20].to_owned()),
        format!("postmaster@{DOMAIN}"),
        // An open relay would take these.
        "someone@gmail.com".to_owned(),
        format!("reply+{token}@other.example"),
    ];
    for to in &refused_at_rcpt {
        let err = client(&app, 1)
            .send(reply("jane@example.com", to, "Re: x", "hello"))
            .await
            .expect_err(&format!("{to} is refused"));
        assert!(err.is_permanent(), "{to}: {err}");
        assert!(err.to_string().contains("550"), "{to}: {err}");
    }
    // A valid token of a row deleted since: refused when the message is complete.
    let gone = addresses.address(Kind::Reply, Uuid::now_v7());
    let err = client(&app, 1).send(reply("jane@example.com", &gone, "Re: x", "hello")).await.unwrap_err();
    assert!(err.to_string().contains("550"), "{err}");

    // Over the size limit: 552, and the session goes on.
    let big = "x".repeat(2 * 1024 * 1024);
    let reply_to = addresses.address(Kind::Reply, row);
    let transport = client(&app, 1);
    let err = transport.send(reply("jane@example.com", &reply_to, "Re: big", &big)).await.unwrap_err();
    assert!(err.to_string().contains("552"), "{err}");
    transport.send(reply("jane@example.com", &reply_to, "Re: small", "small")).await.expect("the next message passes");

    let entries = conversation(&app, &contact).await;
    let inbound: Vec<&Value> = entries.iter().filter(|e| e["direction"] == "inbound").collect();
    assert_eq!(inbound.len(), 1, "only the small reply is kept: {entries:?}");
    assert_eq!(inbound[0]["subject"], "Re: small");
}

#[tokio::test]
async fn a_thirty_megabyte_message_is_refused_with_552() {
    // The default limit (25 MiB), as the issue asks: a real 30 MB message.
    let mut app = inbound_app(|inbound| inbound.max_message_bytes = 25 * 1024 * 1024).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = addresses(&app).await.address(Kind::Reply, row);
    let big = "y".repeat(30 * 1024 * 1024);
    let err = client(&app, 1).send(reply("jane@example.com", &reply_to, "Re: huge", &big)).await.unwrap_err();
    assert!(err.to_string().contains("552"), "{err}");
    assert_eq!(conversation(&app, &contact).await.len(), 1, "only the message sent");
}

#[tokio::test]
async fn a_hundred_concurrent_sessions_are_all_filed_once() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = addresses(&app).await.address(Kind::Reply, row);
    let transport = client(&app, 100);
    let sends = (0..100).map(|i| {
        let transport = transport.clone();
        let message = reply("jane@example.com", &reply_to, &format!("Re: {i}"), &format!("answer {i}"));
        async move { transport.send(message).await }
    });
    let results = futures::future::join_all(sends).await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().filter(|r| r.is_err()).collect::<Vec<_>>());
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM inbound_messages WHERE contact_id = $1::uuid")
        .bind(&contact)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 100);

    // The conversation, paged: every entry once, newest first, the message sent last.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let page: Value =
            app.get(&format!("/api/v1/contacts/{contact}/conversation?limit=30{query}")).await.json().await.unwrap();
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 30);
        seen.extend(entries.iter().map(|e| {
            let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap();
            (at, e["id"].as_str().unwrap().to_owned())
        }));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 101, "100 replies and the message");
    let ids: std::collections::HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 101, "no entry twice");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0), "newest first");
    assert_eq!(seen.last().unwrap().1, row.to_string(), "the message sent comes last");
}

#[tokio::test]
async fn the_same_message_delivered_twice_is_filed_once_and_auto_replies_are_not_replies() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = addresses(&app).await.address(Kind::Reply, row);
    let message = Message::builder()
        .from("jane@example.com".parse().unwrap())
        .to(reply_to.parse().unwrap())
        .message_id(Some("<once@example.com>".to_owned()))
        .subject("Re: once")
        .body("once".to_owned())
        .unwrap();
    client(&app, 1).send(message.clone()).await.unwrap();
    client(&app, 1).send(message).await.expect("a repeat is accepted (the sender must not retry for ever)");
    let away = format!(
        "From: jane@example.com\r\nTo: {reply_to}\r\nSubject: Out of Office: Quarterly update\r\n\
         Auto-Submitted: auto-replied\r\nMessage-ID: <away@example.com>\r\n\r\nI am away until Monday.\r\n"
    );
    let envelope = Envelope::new(Some("jane@example.com".parse().unwrap()), vec![reply_to.parse().unwrap()]).unwrap();
    client(&app, 1).send_raw(&envelope, away.as_bytes()).await.unwrap();
    let entries = conversation(&app, &contact).await;
    let states: Vec<&str> = entries.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states, ["auto_reply", "reply", "sent"], "{entries:?}");
    let (notifications,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM notifications WHERE kind = 'reply'").fetch_one(&app.db).await.unwrap();
    assert_eq!(notifications, 1, "the auto-reply notifies nobody");
}

#[tokio::test]
async fn malformed_mime_is_kept_or_refused_without_stopping_the_receiver() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = addresses(&app).await.address(Kind::Reply, row);
    let envelope = Envelope::new(Some("jane@example.com".parse().unwrap()), vec![reply_to.parse().unwrap()]).unwrap();
    let header = format!("From: jane@example.com\r\nTo: {reply_to}\r\nMIME-Version: 1.0\r\n");
    let truncated = format!(
        "{header}Subject: truncated\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhalf"
    );
    let mut many = format!("{header}Subject: many parts\r\nContent-Type: multipart/mixed; boundary=\"p\"\r\n\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("--p\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f{i}\"\r\n\r\nx\r\n"));
    }
    many.push_str("--p--\r\n");
    let long_header = format!("{header}Subject: long\r\nX-Long: {}\r\n\r\nbody\r\n", "h".repeat(1024 * 1024));
    let transport = client(&app, 1);
    for (name, raw) in [("truncated", truncated), ("10,000 parts", many), ("1 MB header line", long_header)] {
        match transport.send_raw(&envelope, raw.as_bytes()).await {
            Ok(_) => {}
            Err(err) => assert!(err.is_permanent(), "{name}: refused for good or kept, not a failure: {err}"),
        }
    }
    // The receiver still serves others.
    transport.send(reply("jane@example.com", &reply_to, "Re: fine", "fine")).await.unwrap();
    let entries = conversation(&app, &contact).await;
    assert!(entries.iter().any(|e| e["subject"] == "Re: fine"), "{entries:?}");
    let many: Vec<&Value> = entries.iter().filter(|e| e["subject"] == "many parts").collect();
    if let Some(many) = many.first() {
        let reply: Value =
            app.get(&format!("/api/v1/replies/{}", many["id"].as_str().unwrap())).await.json().await.unwrap();
        assert!(reply["attachments"].as_array().unwrap().len() <= 100, "the list of files is bounded");
    }
}

#[tokio::test]
async fn a_delivery_report_marks_the_message_bounced_and_suppresses_the_address() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "nobody@example.com").await;
    let bounce_to = addresses(&app).await.address(Kind::Bounce, row);
    let report = format!(
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\nTo: {bounce_to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n--r\r\n\
         Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n--r\r\n\
         Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n\
         Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: User unknown\r\n--r--\r\n"
    );
    // A delivery report comes from the null sender.
    let envelope = Envelope::new(None, vec![bounce_to.parse().unwrap()]).unwrap();
    client(&app, 1).send_raw(&envelope, report.as_bytes()).await.unwrap();
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM messages WHERE id = $1")
            .bind(row)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "bounced");
    assert_eq!(error.as_deref(), Some("bounced (5.1.1): 550 5.1.1 <nobody@example.com>: User unknown"));
    let suppression = app.get("/api/v1/suppressions/nobody@example.com").await;
    assert_eq!(suppression.status(), 200, "a hard bounce suppresses the address");
    let entries = conversation(&app, &contact).await;
    assert_eq!(entries[0]["state"], "bounce");
    assert_eq!(entries[1]["state"], "bounced");
}

#[tokio::test]
async fn mailjet_parse_posts_take_the_same_path_authenticated_and_once() {
    let mut app = spawn_app_with(|settings| {
        settings.inbound = Some(InboundSettings::new(DOMAIN, SocketAddr::from(([127, 0, 0, 1], 0))));
        settings.inbound_in_serve = false;
        settings.consent.mailjet_webhook = Some(borcelle::config::WebhookCredentials {
            username: "mailjet".to_owned(),
            password: secrecy::SecretString::from("parse-secret".to_owned()),
        });
    })
    .await;
    assert_eq!(app.inbound_addr, None, "the receiver runs apart (borcelle inbound)");
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = addresses(&app).await.address(Kind::Reply, row);
    let sent_id = app.outbox_for("jane@example.com", 1).await[0]["message_id"].as_str().unwrap().to_owned();
    let post = |body: Value, password: &str| {
        app.client
            .post(app.url("/api/v1/webhooks/mailjet/parse"))
            .basic_auth("mailjet", Some(password))
            .json(&body)
            .send()
    };
    let payload = |recipient: &str, message_id: &str, headers: Value| {
        let mut all =
            json!({"From": "Jane Doe <jane@example.com>", "Subject": "Re: Quarterly update", "Message-ID": message_id});
        all.as_object_mut().unwrap().extend(headers.as_object().unwrap().clone());
        json!({
            "Sender": "jane@example.com", "Recipient": recipient, "Headers": all,
            "Parts": [{"Headers": {"Content-Type": "text/plain; charset=UTF-8"}, "ContentRef": "Text-part"}],
            "Text-part": "Sounds good.\n\n> The numbers are in.", "SpamAssassinScore": "0.0",
        })
    };
    let first = payload(&reply_to, "<parse-1@example.com>", json!({}));
    assert_eq!(post(first.clone(), "wrong").await.unwrap().status(), 401);
    let answer: Value = post(first.clone(), "parse-secret").await.unwrap().json().await.unwrap();
    assert_eq!(answer["filed"], "reply", "{answer}");
    let again: Value = post(first, "parse-secret").await.unwrap().json().await.unwrap();
    assert_eq!(again["filed"], "duplicate");
    // Sent to the From address instead: threaded by In-Reply-To.
    let by_thread = payload("owner@example.com", "<parse-2@example.com>", json!({"In-Reply-To": sent_id}));
    let answer: Value = post(by_thread, "parse-secret").await.unwrap().json().await.unwrap();
    assert_eq!(answer["filed"], "reply", "{answer}");
    let stray = payload("owner@example.com", "<parse-3@example.com>", json!({"In-Reply-To": "<nothing@x>"}));
    let answer: Value = post(stray, "parse-secret").await.unwrap().json().await.unwrap();
    assert_eq!(answer["filed"], "unknown");
    let bad = post(json!({"Sender": "x@y"}), "parse-secret").await.unwrap();
    assert_eq!(bad.status(), 400);

    let entries = conversation(&app, &contact).await;
    let replies: Vec<&Value> = entries.iter().filter(|e| e["direction"] == "inbound").collect();
    assert_eq!(replies.len(), 2, "{entries:?}");
    assert!(replies.iter().all(|r| r["text"] == "Sounds good." && r["in_reply_to"] == row.to_string()));
}

#[tokio::test]
async fn starttls_is_offered_and_a_reply_over_tls_is_filed() {
    let dir = std::env::temp_dir().join(crate::helpers::unique("borcelle-inbound-tls-"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.join("tls.crt"), certificate.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    let tls_dir = dir.clone();
    let mut app = inbound_app(move |inbound| {
        inbound.tls =
            Some(borcelle::config::TlsFiles { certificate: tls_dir.join("tls.crt"), key: tls_dir.join("tls.key") });
    })
    .await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let reply_to = addresses(&app).await.address(Kind::Reply, row);
    let addr = app.inbound_addr.unwrap();
    let ca = lettre::transport::smtp::client::Certificate::from_pem(certificate.pem().as_bytes()).unwrap();
    let tls = lettre::transport::smtp::client::TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(ca)
        .build_rustls()
        .unwrap();
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .tls(lettre::transport::smtp::client::Tls::Required(tls))
        .build();
    transport
        .send(reply("jane@example.com", &reply_to, "Re: secure", "over TLS"))
        .await
        .expect("STARTTLS and the reply");
    assert!(conversation(&app, &contact).await.iter().any(|e| e["text"] == "over TLS"));
    let _ = std::fs::remove_dir_all(dir);
}

/// The first line the receiver answers on a new connection.
async fn greeting(addr: SocketAddr) -> (tokio::io::BufReader<tokio::net::TcpStream>, String) {
    use tokio::io::AsyncBufReadExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await.unwrap().unwrap();
    (reader, line)
}

#[tokio::test]
async fn connections_per_client_per_minute_and_idle_sessions_are_limited_with_421() {
    use tokio::io::AsyncBufReadExt;
    let app = inbound_app(|inbound| {
        inbound.max_connections_per_client = 2;
        inbound.connections_per_minute = Some(3);
        inbound.command_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = app.inbound_addr.unwrap();
    let (first, line) = greeting(addr).await;
    assert!(line.starts_with("220 "), "{line}");
    let (mut second, line) = greeting(addr).await;
    assert!(line.starts_with("220 "), "{line}");
    let (_, line) = greeting(addr).await;
    assert!(line.starts_with("421 ") && line.contains("Too many connections from your address"), "{line}");

    // A closed session frees its place: the third connection of the minute is served.
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        let (reader, line) = greeting(addr).await;
        if line.starts_with("220 ") {
            third = Some(reader);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut third = third.expect("a place is free again");
    // A session that says nothing is closed after the command timeout.
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), third.read_line(&mut line)).await.unwrap().unwrap();
    assert!(line.starts_with("421 4.4.2"), "{line}");
    drop(third);
    line.clear();
    tokio::time::timeout(Duration::from_secs(10), second.read_line(&mut line)).await.unwrap().unwrap();
    assert!(line.starts_with("421 4.4.2"), "{line}");
    drop(second);

    // Places are free, but this client has opened its three connections of the minute.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, line) = greeting(addr).await;
    assert!(line.starts_with("421 ") && line.contains("this minute"), "{line}");
}

#[tokio::test]
async fn a_mail_to_the_unsubscribe_address_unsubscribes_the_recipient() {
    let mut app = inbound_app(|_| {}).await;
    let (contact, row) = sent_message(&mut app, "owner@example.com", "jane@example.com").await;
    let address = addresses(&app).await.address(Kind::Unsubscribe, row);
    client(&app, 1).send(reply("jane@example.com", &address, "unsubscribe", "")).await.unwrap();
    let suppression: Value = app.get("/api/v1/suppressions/jane@example.com").await.json().await.unwrap();
    assert_eq!(suppression["reason"], "unsubscribed", "{suppression}");
    let entries = conversation(&app, &contact).await;
    assert_eq!(entries[0]["state"], "unsubscribe");
    let (replies,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM notifications WHERE kind = 'reply'").fetch_one(&app.db).await.unwrap();
    assert_eq!(replies, 0, "an unsubscribe request is no reply");
}
