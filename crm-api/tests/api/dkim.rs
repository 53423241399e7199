//! DKIM end to end: a key made by `borcelle dkim generate`, mail signed by the SMTP transport and
//! received by a real SMTP server (mailtutan), and the received message checked by an independent
//! verifier (mail-auth, Stalwart's) against the public key taken from the printed DNS record.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use borcelle_mail::dkim::DkimSigner;
use borcelle_mail::{DkimKey, DkimSettings, MailTransport, Mailbox, OutgoingEmail, SmtpTransport, Unsubscribe};
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_borcelle");

/// The DNS records the verifier is to find: it consults its cache before asking DNS.
#[derive(Default)]
struct PublishedRecords(Mutex<HashMap<String, Txt>>);

impl PublishedRecords {
    /// Publishes a zone-file line `name. IN TXT "…" "…"` as DNS would serve it: its strings joined.
    fn publish(&self, record: &str) {
        let (name, strings) = record.split_once(" IN TXT ").expect("a TXT record");
        let value: String = strings.split('"').skip(1).step_by(2).collect();
        let key = DomainKey::parse(value.as_bytes()).unwrap_or_else(|err| panic!("{value}: {err:?}"));
        self.0.lock().unwrap().insert(name.to_ascii_lowercase(), Txt::from(key));
    }
}

impl ResolverCache<String, Txt> for PublishedRecords {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        String: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: String, value: Txt, _valid_until: std::time::Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// Runs `borcelle dkim generate`; returns its stdout (the DNS record) and stderr.
fn generate(selector: &str, algorithm: &str, out: &Path) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(["dkim", "generate", "--selector", selector, "--domain", "borcelle.test", "--algorithm", algorithm])
        .arg("--out")
        .arg(out)
        .env_clear()
        .output()
        .expect("run borcelle dkim generate");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn bulk_email(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        from: Mailbox { name: Some("Borcelle".to_owned()), email: "noreply@borcelle.test".to_owned() },
        to: Mailbox { name: Some("Ada Lovelace".to_owned()), email: to.to_owned() },
        reply_to: Some(Mailbox { name: Some("Owner".to_owned()), email: "owner@example.com".to_owned() }),
        subject: "DKIM over SMTP".to_owned(),
        // Lines that start with a dot, one of them alone: SMTP's data ends at a lone dot unless
        // the client doubles each leading one, and the server takes it off again.
        text: "Hello Ada,\n\nthis message is signed.\n.\n..two dots\n.one dot\n".to_owned(),
        html: "<p>Hello Ada,</p><p>this message is signed.</p>".to_owned(),
        message_id: format!("<{}@borcelle.test>", unique("m")),
        date: SystemTime::now(),
        attachments: vec![borcelle_mail::MailAttachment {
            filename: "notes.txt".to_owned(),
            content_type: "text/plain".to_owned(),
            bytes: bytes::Bytes::from_static(b"attached\r\n"),
        }],
        unsubscribe: Some(Unsubscribe {
            https: "https://crm.borcelle.test/unsubscribe/abc".to_owned(),
            mailto: Some("unsubscribe@borcelle.test".to_owned()),
        }),
        ledger_id: None,
        envelope_from: None,
    }
}

/// Like the account mail (verification, password reset): no reply-to, no unsubscribe headers.
fn account_email(to: &str) -> OutgoingEmail {
    OutgoingEmail {
        reply_to: None,
        subject: "Verify your email for Borcelle".to_owned(),
        attachments: Vec::new(),
        unsubscribe: None,
        ..bulk_email(to)
    }
}

/// Sends one message through a transport built as `serve` builds it (the key read from its file
/// once) and returns its source as the server received it. A transport per message: mailtutan
/// records a connection's first message again for each later one.
async fn send_signed(smtp: &MailServer, settings: &DkimSettings, email: OutgoingEmail) -> String {
    let signer = DkimSigner::load(settings, "noreply@borcelle.test").unwrap();
    let transport = SmtpTransport::new(&smtp.smtp_settings(), Some(signer)).unwrap();
    transport.send(&email).await.unwrap();
    let id = smtp.wait_for(&email.to.email).await;
    smtp.part(id, "source").await
}

/// Each DKIM result of a raw message, with the headers its signature covers.
async fn verify(raw: &[u8], records: &PublishedRecords) -> Vec<(DkimResult, Vec<String>)> {
    let message = AuthenticatedMessage::parse(raw).expect("a parsable message");
    let authenticator = MessageAuthenticator::new_cloudflare().expect("a resolver (not asked: the records are cached)");
    let outputs = authenticator.verify_dkim(Parameters::new(&message).with_txt_cache(records)).await;
    outputs
        .iter()
        .map(|output| (output.result().clone(), output.signature().map(|s| s.h.clone()).unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn mail_signed_with_a_generated_key_verifies_at_the_receiver_against_the_published_record() {
    let dir = std::env::temp_dir().join(unique("borcelle-dkim-"));
    std::fs::create_dir_all(&dir).unwrap();
    let smtp = MailServer::start().await;
    let records = PublishedRecords::default();

    for (algorithm, selector) in [("rsa", "s-rsa"), ("ed25519", "s-ed25519")] {
        let key_file = dir.join(format!("{algorithm}.pem"));
        let (ok, record, stderr) = generate(selector, algorithm, &key_file);
        assert!(ok, "{stderr}");
        assert!(
            record.starts_with(&format!("{selector}._domainkey.borcelle.test. IN TXT \"v=DKIM1; k={algorithm}; p="))
        );
        assert!(record.split('"').all(|part| part.len() <= 255), "strings of at most 255 bytes: {record}");
        assert!(stderr.contains("BORCELLE_DKIM_KEY_FILE="), "{stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
        }
        let key = std::fs::read(&key_file).unwrap();
        let (ok, _, stderr) = generate(selector, algorithm, &key_file);
        assert!(!ok && stderr.contains("refusing to overwrite"), "{stderr}");
        assert_eq!(std::fs::read(&key_file).unwrap(), key, "the existing key is kept");
        records.publish(&record);

        // Bulk mail (unsubscribe headers, a reply-to, an attachment), then account mail (none).
        let settings = DkimSettings {
            selector: selector.to_owned(),
            domain: "borcelle.test".to_owned(),
            key: DkimKey::File(key_file),
        };
        let bulk = send_signed(&smtp, &settings, bulk_email(&format!("dkim-bulk-{algorithm}@example.com"))).await;
        let results = verify(bulk.as_bytes(), &records).await;
        assert_eq!(results.len(), 1, "one signature: {results:?}");
        let (result, signed) = &results[0];
        assert_eq!(result, &DkimResult::Pass, "{algorithm}: {bulk}");
        let required = ["from", "to", "subject", "date", "message-id", "reply-to", "mime-version", "content-type"];
        for header in required.into_iter().chain(["list-unsubscribe", "list-unsubscribe-post"]) {
            assert!(signed.iter().any(|h| h.eq_ignore_ascii_case(header)), "{header} is signed: {signed:?}");
        }
        assert!(bulk.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{bulk}");
        assert!(
            bulk.replace("\r\n", "\n").contains("signed.\n.\n..two dots\n.one dot\n"),
            "the lines that start with a dot arrive as written: {bulk}"
        );

        let account =
            send_signed(&smtp, &settings, account_email(&format!("dkim-account-{algorithm}@example.com"))).await;
        assert!(!account.contains("List-Unsubscribe"), "{account}");
        let results = verify(account.as_bytes(), &records).await;
        assert_eq!(results[0].0, DkimResult::Pass, "{algorithm}: {account}");

        // Changed on the way, a message no longer verifies: its subject, or an unsubscribe link
        // added to mail that had none (absent headers are signed as absent).
        let tampered = bulk.replacen("Subject: DKIM over SMTP", "Subject: DKIM over SMTP!", 1);
        assert_ne!(tampered, bulk);
        let results = verify(tampered.as_bytes(), &records).await;
        assert!(matches!(results[0].0, DkimResult::Fail(_)), "{algorithm}: a tampered subject fails: {results:?}");
        let added = account.replacen("Subject: ", "List-Unsubscribe: <https://evil.example/>\r\nSubject: ", 1);
        assert_ne!(added, account);
        let results = verify(added.as_bytes(), &records).await;
        assert!(matches!(results[0].0, DkimResult::Fail(_)), "{algorithm}: an added header fails: {results:?}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `borcelle serve` with these variables besides a fresh database and SMTP delivery: whether it
/// exited at start, and what it said.
async fn serve_exits(envs: &[(&str, &str)]) -> (bool, String) {
    let (db_name, url) = fresh_database();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("BORCELLE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("BORCELLE_MAIL_FROM", "noreply@borcelle.test")
        .env("BORCELLE_MAIL_TRANSPORT", "smtp")
        .env("BORCELLE_SMTP_HOST", "127.0.0.1")
        .env("BORCELLE_SMTP_TLS", "none")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start borcelle serve");
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    if exited.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    drop_database(&db_name);
    (exited.is_some_and(|status| !status.success()), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn serve_refuses_to_start_with_a_key_but_no_selector_or_a_domain_the_sender_is_not_in() {
    let dir = std::env::temp_dir().join(unique("borcelle-dkim-"));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("key.pem");
    let (ok, _, stderr) = generate("s1", "ed25519", &key_file);
    assert!(ok, "{stderr}");
    let key_file = key_file.to_str().unwrap();

    let (refused, stderr) = serve_exits(&[("BORCELLE_DKIM_KEY_FILE", key_file)]).await;
    assert!(refused && stderr.contains("no selector: set BORCELLE_DKIM_SELECTOR"), "{stderr}");

    let misaligned = [
        ("BORCELLE_DKIM_KEY_FILE", key_file),
        ("BORCELLE_DKIM_SELECTOR", "s1"),
        ("BORCELLE_DKIM_DOMAIN", "other.example"),
    ];
    let (refused, stderr) = serve_exits(&misaligned).await;
    assert!(refused && stderr.contains("does not align with the From address noreply@borcelle.test"), "{stderr}");

    let (refused, stderr) =
        serve_exits(&[("BORCELLE_DKIM_PRIVATE_KEY", "sekrit-value"), ("BORCELLE_DKIM_SELECTOR", "s1")]).await;
    assert!(refused && stderr.contains("not a PEM private key"), "{stderr}");
    assert!(!stderr.contains("sekrit-value"), "the key's value is not echoed: {stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
