//! The DKIM signature's own ceiling: how many messages the machine's cores sign in a second with
//! the very signer and key serve uses, and nothing else (no rendering, no ledger, no SMTP). A
//! signed delivery can never be faster; the wire rows print their rate as a share of it, so that a
//! target above what the CPU can sign shows as such in the run that misses it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use borcelle_mail::dkim::DkimSigner;
use borcelle_mail::{DkimKey, DkimSettings};

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

/// Signs a message like those of the measured sends (its headers, a body of about 1 KB) with the
/// key in `key_file`, on one thread per core, for `duration`.
pub fn measure(variant: Variant, key_file: &Path, duration: Duration) -> anyhow::Result<Signing> {
    let settings = DkimSettings {
        selector: consent::SELECTOR.to_owned(),
        domain: MAIL_DOMAIN.to_owned(),
        key: DkimKey::File(key_file.to_owned()),
    };
    let signer = DkimSigner::load(&settings, &format!("noreply@{MAIL_DOMAIN}"))
        .with_context(|| format!("loading the DKIM key {}", key_file.display()))?;
    let message = message();
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

/// A message as the consent variants send it: the headers serve signs, a personalised subject and
/// the body rendered for one recipient, CRLF line ends.
fn message() -> Vec<u8> {
    let body = consent::BODY
        .replace("{{ contact.first_name | default(\"there\") }}", "Camille")
        .replace("{{ contact.company | default(\"your team\") }}", "Thompson & Co")
        .replace("{{ contact.company | default(\"you\") }}", "Thompson & Co")
        .replace("{{ sender.name }}", "Bench Sender")
        .replace('\n', "\r\n");
    format!(
        "From: Bench Sender <noreply@{MAIL_DOMAIN}>\r\nReply-To: sender@bench.example\r\nTo: Camille Thompson \
         <camille.thompson@example.com>\r\nSubject: Hello Camille\r\nDate: Sat, 05 Dec 2026 09:00:00 +0000\r\n\
         Message-ID: <0a1b2c3d-4e5f-6789-abcd-ef0123456789@{MAIL_DOMAIN}>\r\nList-Unsubscribe: \
         <http://127.0.0.1/u/0a1b2c3d4e5f6789abcdef0123456789>\r\nList-Unsubscribe-Post: \
         List-Unsubscribe=One-Click\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}
