//! Attachments: uploads into a real S3 server (s3s-fs) or a local directory, downloads for the
//! owner only, limits, sanitised names, sniffed types, and delivery as MIME attachments through a
//! real SMTP server (and MailJet's API) with the very bytes that were uploaded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use borcelle::config::{StorageBackend, TransportSettings};
use borcelle_engine::storage::{ByteStream, LocalStore, ObjectStore, StoreError};
use bytes::Bytes;
use futures::future::BoxFuture;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const BOUNDARY: &str = "borcelle-test-boundary-q7MA4YWxkTrZu0gW";
const KIB: usize = 1024;

/// A multipart/form-data body with one file field, written by hand so that the test controls
/// every byte of the part's headers (the file name exactly as a browser escapes it).
fn multipart_body(field: &str, filename: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Uploads a file the way the web app does: same Origin and the CSRF header.
async fn upload(app: &TestApp, filename: &str, content_type: &str, bytes: &[u8]) -> reqwest::Response {
    upload_field(app, "file", filename, content_type, bytes).await
}

async fn upload_field(
    app: &TestApp,
    field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/attachments"))
        .header("Origin", app.origin())
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(multipart_body(field, filename, content_type, bytes));
    if let Some(csrf) = &app.csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    request.send().await.expect("upload")
}

async fn uploaded(app: &TestApp, filename: &str, content_type: &str, bytes: &[u8]) -> Value {
    let response = upload(app, filename, content_type, bytes).await;
    assert_eq!(response.status(), 201, "upload of {filename}");
    response.json().await.unwrap()
}

/// A PDF-looking file holding every byte value, bare CR and LF and NUL included: any re-encoding
/// on the way (line endings, charsets) would change its hash.
fn pdf_bytes(len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..len.saturating_sub(9)).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8));
    bytes
}

const PNG: [u8; 33] = [
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R', 0, 0, 0, 1, 0, 0, 0, 1, 8,
    6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89,
];

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn object_key(app: &TestApp, id: &str) -> String {
    sqlx::query_scalar("SELECT object_key FROM attachments WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&app.db).await.unwrap()
}

/// Runs the server's delivery engine until nothing is due; the task, which must be done.
async fn delivered(app: &TestApp, task_id: &str) -> Value {
    app.deliver_all().await;
    let task: Value = app.get(&format!("/api/v1/tasks/{task_id}")).await.json().await.unwrap();
    assert_eq!(task["status"], "done", "{task}");
    task
}

/// Downloads an attachment and checks the headers every download carries.
async fn download(app: &TestApp, id: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let response = app.get(&format!("/api/v1/attachments/{id}")).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\""));
    assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"));
    (headers, response.bytes().await.unwrap().to_vec())
}

/// Sends a message with the attachments to two contacts through the SMTP sink and checks that
/// each email is multipart/mixed around the text/HTML alternative, carrying every file with its
/// name, its sniffed type and exactly its bytes.
async fn send_and_check_the_mail(app: &TestApp, sink: &SmtpSink, files: &[(&Value, &[u8])]) {
    let contacts = seed_contacts(&app.db, "files@example.com", "reader", 2, "readers").await;
    let ids: Vec<&Value> = files.iter().map(|(meta, _)| &meta["id"]).collect();
    let response = app
        .post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": contacts, "subject": "The report", "body": "Attached.", "attachment_ids": ids }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    let task = delivered(app, queued["task_id"].as_str().unwrap()).await;
    assert_eq!((task["sent"].as_i64(), task["failed"].as_i64()), (Some(2), Some(0)), "{task}");

    sink.wait_for_count(2, 10).await;
    let raw = sink.raw_messages();
    assert_eq!(raw.len(), 2);
    for message in &raw {
        // The header section ends at the first empty line (the maildir stores LF line endings).
        let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
        let head = text.split("\n\n").next().unwrap_or_default();
        let content_types = head.lines().filter(|l| l.to_ascii_lowercase().starts_with("content-type:")).count();
        assert_eq!(content_types, 1, "one Content-Type header at the top:\n{head}");
        let parsed = MessageParser::default().parse(message).expect("a parsable email");
        assert!(parsed.root_part().is_content_type("multipart", "mixed"), "{head}");
        assert!(parsed.body_text(0).unwrap().contains("Attached."), "the text part is there");
        assert!(parsed.body_html(0).unwrap().contains("Attached."), "the HTML part is there");
        let attached: Vec<_> = parsed.attachments().collect();
        assert_eq!(attached.len(), files.len(), "every file is attached");
        for (part, (meta, bytes)) in attached.iter().zip(files) {
            assert_eq!(part.attachment_name(), meta["filename"].as_str(), "in the order given");
            let content_type = part.content_type().unwrap();
            let content_type = format!("{}/{}", content_type.ctype(), content_type.subtype().unwrap_or(""));
            assert_eq!(content_type, meta["content_type"].as_str().unwrap());
            assert_eq!(sha256(part.contents()), sha256(bytes), "{} arrives byte for byte", meta["filename"]);
        }
    }
}

#[tokio::test]
async fn an_attachment_stored_in_s3_reaches_the_recipients_byte_for_byte() {
    let s3 = S3Server::start().await;
    let dir = std::env::temp_dir().join(unique("borcelle-sink-"));
    let sink = SmtpSink::start(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| {
        s.storage.backend = StorageBackend::S3(s3.settings());
        s.mail.transport = TransportSettings::Smtp(sink.smtp_settings());
    })
    .await;
    app.signed_in_user("files@example.com").await;

    let report = pdf_bytes(300 * KIB);
    let meta = uploaded(&app, "Q3 report.pdf", "application/octet-stream", &report).await;
    assert_eq!(meta["filename"], "Q3 report.pdf");
    assert_eq!(meta["content_type"], "application/pdf");
    assert_eq!(meta["size"], report.len());

    // Really in the bucket, read back through the S3 API by a client of the test's own.
    let key = object_key(&app, meta["id"].as_str().unwrap()).await;
    let stored = s3.object(&key).await.expect("the object is in the bucket");
    assert_eq!(sha256(&stored), sha256(&report));
    assert_eq!(s3.keys().await, vec![key]);

    let (headers, body) = download(&app, meta["id"].as_str().unwrap()).await;
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(sha256(&body), sha256(&report));

    let pixel = uploaded(&app, "pixel.png", "image/png", &PNG).await;
    send_and_check_the_mail(&app, &sink, &[(&meta, &report), (&pixel, &PNG)]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_local_directory_store_round_trips_an_attachment_byte_for_byte() {
    let dir = std::env::temp_dir().join(unique("borcelle-sink-"));
    let sink = SmtpSink::start(free_port(), &dir).await;
    let mut app = spawn_app_with(|s| s.mail.transport = TransportSettings::Smtp(sink.smtp_settings())).await;
    app.signed_in_user("files@example.com").await;
    let files_dir = app.files_dir.clone().unwrap();

    let report = pdf_bytes(200 * KIB);
    let meta = uploaded(&app, "report.pdf", "text/plain", &report).await;
    assert_eq!(meta["content_type"], "application/pdf");
    let key = object_key(&app, meta["id"].as_str().unwrap()).await;
    let stored = std::fs::read(files_dir.join(&key)).expect("the object is a file in the directory");
    assert_eq!(sha256(&stored), sha256(&report));
    let owner_dir: Vec<String> = std::fs::read_dir(files_dir.join(key.split('/').next().unwrap()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(owner_dir.len(), 1, "no temporary file is left beside the object: {owner_dir:?}");

    let (_, body) = download(&app, meta["id"].as_str().unwrap()).await;
    assert_eq!(sha256(&body), sha256(&report));
    send_and_check_the_mail(&app, &sink, &[(&meta, &report)]).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_oversize_file_is_refused_with_413_naming_file_and_leaves_no_row_and_no_object() {
    let s3 = S3Server::start().await;
    let mut app = spawn_app_with(|s| {
        s.storage.backend = StorageBackend::S3(s3.settings());
        s.storage.attachment_max_bytes = 64 * KIB as u64;
        s.storage.message_attachments_max_bytes = 128 * KIB as u64;
    })
    .await;
    app.signed_in_user("big@example.com").await;

    // One byte over is refused while it is read; far over, the route's body limit stops it.
    for size in [64 * KIB + 1, 1024 * KIB] {
        let response = upload(&app, "big.pdf", "application/pdf", &pdf_bytes(size)).await;
        let (status, code, field) = error_of(response).await;
        assert_eq!((status, code.as_str(), field.as_deref()), (413, "payload_too_large", Some("file")), "{size} bytes");
    }
    assert_eq!(count(&app, "attachments").await, 0, "no row");
    assert_eq!(s3.keys().await, Vec::<String>::new(), "no object");

    // The limit itself is allowed.
    let meta = uploaded(&app, "exact.pdf", "application/pdf", &pdf_bytes(64 * KIB)).await;
    assert_eq!(meta["size"], 64 * KIB);
    assert_eq!(count(&app, "attachments").await, 1);
    assert_eq!(s3.keys().await.len(), 1);

    // Not a file upload at all.
    let (status, _, field) =
        error_of(upload_field(&app, "document", "a.pdf", "application/pdf", b"%PDF-1.7").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("document")));
    let (status, _, field) = error_of(upload(&app, "empty.txt", "text/plain", b"").await).await;
    assert_eq!((status, field.as_deref()), (422, Some("file")));
    let json = app.post_json("/api/v1/attachments", &json!({ "file": "x" })).await;
    assert_eq!(error_of(json).await.0, 415);
    assert_eq!(count(&app, "attachments").await, 1);
}

#[tokio::test]
async fn another_users_attachment_is_not_found_for_download_or_send() {
    let mut app = spawn_app().await;
    app.signed_in_user("alice-files@example.com").await;
    let secret = uploaded(&app, "secret.pdf", "application/pdf", &pdf_bytes(2 * KIB)).await;
    let id = secret["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/api/v1/attachments/{id}")).await.status(), 200);

    app.client = browser_client();
    let anonymous = error_of(app.get(&format!("/api/v1/attachments/{id}")).await).await;
    assert_eq!(anonymous.0, 401);
    app.signed_in_user("bob-files@example.com").await;
    assert_eq!(error_of(app.get(&format!("/api/v1/attachments/{id}")).await).await.0, 404);
    assert_eq!(error_of(app.get("/api/v1/attachments/not-an-id").await).await.0, 404);

    let contacts = seed_contacts(&app.db, "bob-files@example.com", "bobs", 1, "mine").await;
    let mine = uploaded(&app, "mine.pdf", "application/pdf", &pdf_bytes(KIB)).await;
    let response = app
        .post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": contacts, "subject": "Hi", "body": "x", "attachment_ids": [mine["id"], id] }),
        )
        .await;
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let note: Value = app.post_json("/api/v1/notes", &json!({ "title": "N", "body": "B" })).await.json().await.unwrap();
    let response = app
        .post_json(
            &format!("/api/v1/notes/{}/send", note["id"].as_str().unwrap()),
            &json!({ "tag": "mine", "attachment_ids": [id] }),
        )
        .await;
    assert_eq!(error_of(response).await.0, 404);
    assert_eq!((count(&app, "tasks").await, count(&app, "task_attachments").await), (0, 0), "nothing queued");
}

#[tokio::test]
async fn a_file_name_with_a_path_and_line_breaks_is_sanitised() {
    let mut app = spawn_app().await;
    app.signed_in_user("names@example.com").await;
    // Browsers escape CR, LF and quotes in multipart file names as %0D, %0A and %22.
    let meta = uploaded(&app, "../../etc/passwd%0D%0A.pdf", "application/pdf", &pdf_bytes(KIB)).await;
    assert_eq!(meta["filename"], "passwd.pdf");
    let meta = uploaded(&app, r#"C:\Users\ada\report \"final\".pdf"#, "application/pdf", &pdf_bytes(KIB)).await;
    assert_eq!(meta["filename"], "report final.pdf");
    let meta = uploaded(&app, "r\u{e9}sum\u{e9}\u{202E}fdp.exe", "application/pdf", &pdf_bytes(KIB)).await;
    assert_eq!(meta["filename"], "r\u{e9}sum\u{e9}fdp.exe", "no right-to-left override");
    let (headers, _) = download(&app, meta["id"].as_str().unwrap()).await;
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"r_sum_fdp.exe\"; filename*=UTF-8''r%C3%A9sum%C3%A9fdp.exe"
    );
    let key = object_key(&app, meta["id"].as_str().unwrap()).await;
    assert!(!key.contains("sum") && !key.contains(".."), "the object key owes nothing to the name: {key}");
}

#[tokio::test]
async fn a_png_uploaded_as_text_html_is_served_as_image_png_with_nosniff() {
    let mut app = spawn_app().await;
    app.signed_in_user("types@example.com").await;
    let meta = uploaded(&app, "pixel.png", "text/html", &PNG).await;
    assert_eq!(meta["content_type"], "image/png");
    let (headers, body) = download(&app, meta["id"].as_str().unwrap()).await;
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(body, PNG);

    // An upload changes state: with the session cookie, it needs the CSRF header like any other.
    let csrf = app.csrf.take();
    assert_eq!(error_of(upload(&app, "pixel.png", "image/png", &PNG).await).await.0, 403);
    app.csrf = csrf;
    assert_eq!(count(&app, "attachments").await, 1);

    // Nor does a client's claim make unknown bytes anything but an opaque download.
    let meta = uploaded(&app, "notes.bin", "text/html", b"\x01\x02 nothing recognisable").await;
    assert_eq!(meta["content_type"], "application/octet-stream");
}

#[tokio::test]
async fn attachments_over_the_per_message_total_are_refused_with_422_naming_attachment_ids() {
    let mut app = spawn_app_with(|s| {
        s.storage.attachment_max_bytes = 40 * KIB as u64;
        s.storage.message_attachments_max_bytes = 100 * KIB as u64;
    })
    .await;
    app.signed_in_user("total@example.com").await;
    let contacts = seed_contacts(&app.db, "total@example.com", "t", 1, "t").await;
    let mut ids = Vec::new();
    for name in ["a.pdf", "b.pdf", "c.pdf"] {
        ids.push(uploaded(&app, name, "application/pdf", &pdf_bytes(40 * KIB)).await["id"].clone());
    }
    let send = |attachment_ids: Vec<Value>| json!({ "contact_ids": contacts, "subject": "Files", "body": "x", "attachment_ids": attachment_ids });
    let (status, _, field) = error_of(app.post_json("/api/v1/messages", &send(ids.clone())).await).await;
    assert_eq!((status, field.as_deref()), (422, Some("attachment_ids")), "120 KiB is over 100 KiB");
    assert_eq!(count(&app, "tasks").await, 0, "nothing queued");

    // A repeated id counts once: 80 KiB.
    let within = send(vec![ids[0].clone(), ids[0].clone(), ids[1].clone()]);
    assert_eq!(app.post_json("/api/v1/messages", &within).await.status(), 202);
    assert_eq!(count(&app, "task_attachments").await, 2);
}

#[tokio::test]
async fn mailjet_receives_the_attachments_in_base64_with_their_type_and_name() {
    use base64::Engine;
    let (url, stand_in) = crate::mailjet::start_stand_in().await;
    let mut app =
        spawn_app_with(|s| s.mail.transport = TransportSettings::Mailjet(crate::mailjet::settings(url, false))).await;
    app.signed_in_user("files@example.com").await;
    let contacts = seed_contacts(&app.db, "files@example.com", "mj", 1, "mj").await;
    let report = pdf_bytes(10 * KIB);
    let meta = uploaded(&app, "report.pdf", "application/pdf", &report).await;
    let queued: Value = app
        .post_json(
            "/api/v1/messages",
            &json!({ "contact_ids": contacts, "subject": "Report", "body": "x", "attachment_ids": [meta["id"]] }),
        )
        .await
        .json()
        .await
        .unwrap();
    delivered(&app, queued["task_id"].as_str().unwrap()).await;
    let received = stand_in.received.lock().unwrap();
    let attachments = &received[0].1["Messages"][0]["Attachments"];
    assert_eq!(attachments[0]["ContentType"], "application/pdf");
    assert_eq!(attachments[0]["Filename"], "report.pdf");
    let content =
        base64::engine::general_purpose::STANDARD.decode(attachments[0]["Base64Content"].as_str().unwrap()).unwrap();
    assert_eq!(sha256(&content), sha256(&report));
}

/// Counts reads, to show the delivery engine reads a task's attachments once, not per recipient.
struct CountingStore {
    inner: LocalStore,
    gets: AtomicUsize,
}

impl ObjectStore for CountingStore {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn put<'a>(&'a self, key: &'a str, content_type: &'a str, bytes: Bytes) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.put(key, content_type, bytes)
    }
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<ByteStream, StoreError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key)
    }
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.delete(key)
    }
}

#[tokio::test]
async fn a_tasks_attachments_are_read_from_the_store_once_however_many_recipients() {
    let mut app = spawn_app_with(|s| s.delivery.in_serve = false).await;
    app.signed_in_user("once@example.com").await;
    seed_contacts(&app.db, "once@example.com", "many", 20, "many").await;
    let first = uploaded(&app, "a.pdf", "application/pdf", &pdf_bytes(8 * KIB)).await;
    let second = uploaded(&app, "b.png", "image/png", &PNG).await;
    let queued: Value = app
        .post_json(
            "/api/v1/messages",
            &json!({ "tag": "many", "subject": "Files", "body": "x", "attachment_ids": [first["id"], second["id"]] }),
        )
        .await
        .json()
        .await
        .unwrap();

    // The server's engine with a store that counts its reads, four sends at a time: at least five
    // claimed batches.
    let store =
        Arc::new(CountingStore { inner: LocalStore::new(app.files_dir.clone().unwrap()), gets: AtomicUsize::new(0) });
    let mut engine = app.engine().clone();
    engine.store = store.clone();
    engine.settings.concurrency = 4;
    let drained = engine.run_until_idle().await.unwrap();
    assert_eq!(drained.sent, 20);
    let task: Value =
        app.get(&format!("/api/v1/tasks/{}", queued["task_id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!((task["sent"].as_i64(), task["total"].as_i64()), (Some(20), Some(20)));
    assert_eq!(store.gets.load(Ordering::SeqCst), 2, "each attachment was read once for 20 recipients");
}
