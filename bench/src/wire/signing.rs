//! The DKIM signature's own ceiling: how many messages the machine's cores sign in a second with
//! the very signer and key serve uses, and nothing else (no rendering, no ledger, no SMTP). A
//! signed delivery can never be faster; the wire rows print their rate as a share of it, so that a
//! target above what the CPU can sign shows as such in the run that misses it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use borcelle_mail::dkim::DkimSigner;
use borcelle_mail::merge::{ContactFields, MergeFields, MergeTemplate, SenderFields};
use borcelle_mail::{DkimKey, DkimSettings, Mailbox, OutgoingEmail, Unsubscribe, build_message, templates};

use crate::consent::{self, Variant};
use crate::server::MAIL_DOMAIN;

/// Signatures per second on `threads` threads for `duration`.
#[derive(Debug, Clone, Copy)]
pub struct Signing {
    pub variant: Variant,
    pub threads: usize,
    pub signatures: u64,
    pub elapsed: Duration,
}

impl Signing {
    pub fn per_sec(&self) -> f64 {
        self.signatures as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Signs a message like those of the measured sends ([`message`]) with the key in `key_file`, on
/// one thread per core, for `duration`.
pub fn measure(variant: Variant, key_file: &Path, duration: Duration) -> anyhow::Result<Signing> {
    let settings = DkimSettings {
        selector: consent::SELECTOR.to_owned(),
        domain: MAIL_DOMAIN.to_owned(),
        key: DkimKey::File(key_file.to_owned()),
    };
    let signer = DkimSigner::load(&settings, &format!("noreply@{MAIL_DOMAIN}"))
        .with_context(|| format!("loading the DKIM key {}", key_file.display()))?;
    let message = message()?;
    signer.sign(&message)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let (signatures, stop) = (AtomicU64::new(0), AtomicBool::new(false));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if signer.sign(&message).is_ok() {
                        signatures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
    });
    Ok(Signing { variant, threads, signatures: signatures.into_inner(), elapsed: started.elapsed() })
}

/// A message as the consent variants send it, made by serve's own code: the subject and body
/// merged for one recipient, rendered into text and HTML with the unsubscribe link, and built with
/// the headers serve signs.
fn message() -> anyhow::Result<Vec<u8>> {
    let fields = MergeFields {
        contact: ContactFields {
            first_name: Some("Camille".to_owned()),
            last_name: Some("Thompson".to_owned()),
            name: "Camille Thompson".to_owned(),
            email: "camille.thompson@example.com".to_owned(),
            company: Some("Thompson & Co".to_owned()),
            phone: None,
            address: None,
            tags: Vec::new(),
        },
        sender: SenderFields { name: "Bench Sender".to_owned(), email: consent::SENDER.to_owned() },
    };
    let merged = MergeTemplate::parse(consent::SUBJECT, consent::BODY)?.render(&fields)?;
    let link = "http://127.0.0.1/u/0a1b2c3d4e5f6789abcdef0123456789";
    let rendered = templates::message(&fields.sender.name, &merged.subject, &merged.body, Some(link))?;
    let email = OutgoingEmail {
        from: Mailbox { name: Some("Bench Sender".to_owned()), email: format!("noreply@{MAIL_DOMAIN}") },
        to: Mailbox { name: Some(fields.contact.name.clone()), email: fields.contact.email.clone() },
        reply_to: Some(Mailbox { name: Some(fields.sender.name.clone()), email: fields.sender.email.clone() }),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        message_id: format!("<0a1b2c3d4e5f6789abcdef0123456789@{MAIL_DOMAIN}>"),
        date: std::time::SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: Some(Unsubscribe { https: link.to_owned(), mailto: None }),
        ledger_id: None,
        envelope_from: None,
    };
    Ok(build_message(&email)?.formatted())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use borcelle_mail::dkim::{DkimAlgorithm, generate_key};
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_signer_alone_signs_a_personalised_multipart_message_with_each_key() {
        let text = String::from_utf8(message().unwrap()).unwrap();
        assert!(text.contains("Subject: Hello Camille\r\n"), "{text}");
        assert!(text.contains("multipart/alternative") && text.contains("List-Unsubscribe-Post:"), "{text}");
        assert!(text.contains("Thompson & Co"), "the body is merged for the recipient: {text}");
        let dir = std::env::temp_dir().join(format!("borcelle-bench-signing-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (variant, algorithm) in [(Variant::Rsa, DkimAlgorithm::Rsa), (Variant::Ed25519, DkimAlgorithm::Ed25519)] {
            let key_file = dir.join(format!("{}.pem", algorithm.as_str()));
            std::fs::write(&key_file, generate_key(algorithm).unwrap().private_key_pem.expose_secret()).unwrap();
            let signing = measure(variant, &key_file, Duration::from_millis(100)).unwrap();
            assert!(signing.signatures > 0 && signing.per_sec() > 0.0, "{signing:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
