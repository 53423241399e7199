//! DKIM signing of outgoing SMTP mail (RFC 6376; RSA-SHA256, and Ed25519-SHA256 per RFC 8463),
//! signed with ring over the message as it goes on the wire (`sign.rs`): the key is read and
//! parsed once at start, the signing domain is checked against the From address (DMARC
//! alignment), and new keys come with the DNS record that publishes them.

mod key;
mod sign;

use std::path::PathBuf;

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

pub use key::{DkimAlgorithm, DkimPublicKey, GeneratedKey, generate_key};

use crate::MailSettings;

/// Where the private key comes from.
#[derive(Debug, Clone)]
pub enum DkimKey {
    /// A PEM file (a Kubernetes Secret mounted as a file).
    File(PathBuf),
    /// The PEM itself (from an environment variable).
    Pem(SecretString),
}

/// How outgoing mail is signed: `d=` [`domain`](Self::domain), `s=` [`selector`](Self::selector),
/// and the private key whose public half is published at `<selector>._domainkey.<domain>`.
#[derive(Debug, Clone)]
pub struct DkimSettings {
    pub selector: String,
    /// The From address's domain or a parent of it.
    pub domain: String,
    pub key: DkimKey,
}

/// Why DKIM cannot be set up, or a message not signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("reading the DKIM key file {path}: {source}")]
    KeyFile { path: PathBuf, source: std::io::Error },
    #[error("the DKIM key ({origin}) is not usable: {reason}")]
    Key { origin: String, reason: String },
    #[error("the DKIM selector {0:?} is not a DNS name: use dot-separated labels of letters, digits and hyphens")]
    Selector(String),
    #[error("the DKIM domain {0:?} is not a DNS name (give an internationalised domain in its xn-- form)")]
    Domain(String),
    #[error(
        "the DKIM domain {domain} does not align with the From address {from}: sign with the From \
         address's domain or a parent of it, or receivers applying DMARC will not count the signature"
    )]
    Misaligned { domain: String, from: String },
    #[error("generating a DKIM key: {0}")]
    Generate(String),
    #[error("signing the message: {0}")]
    Sign(String),
}

/// The headers every signature covers (`h=`). Those a message lacks are signed as absent, so they
/// cannot be added on the way: account mail, which has no `List-Unsubscribe`, cannot be given one.
const SIGNED_HEADERS: [&str; 10] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Signs messages with one parsed key (parsing an RSA key costs more than a signature, so it is
/// done once, at start).
pub struct DkimSigner {
    key: sign::SigningKey,
    selector: String,
    domain: String,
    public_key: DkimPublicKey,
}

impl std::fmt::Debug for DkimSigner {
    // The key is not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("selector", &self.selector)
            .field("domain", &self.domain)
            .field("algorithm", &self.public_key.algorithm())
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// The signer the mail settings ask for, if any.
    pub fn for_mail(settings: &MailSettings) -> Result<Option<Self>, DkimError> {
        settings.dkim.as_ref().map(|dkim| Self::load(dkim, &settings.from_address)).transpose()
    }

    /// Reads and parses the key and checks that `settings.domain` aligns with `from_address`.
    pub fn load(settings: &DkimSettings, from_address: &str) -> Result<Self, DkimError> {
        let (selector, domain) = record_names(&settings.selector, &settings.domain)?;
        if !aligned(&domain, from_address) {
            return Err(DkimError::Misaligned { domain, from: from_address.to_owned() });
        }
        let (pem, origin) = match &settings.key {
            DkimKey::File(path) => {
                let pem = std::fs::read_to_string(path)
                    .map_err(|source| DkimError::KeyFile { path: path.clone(), source })?;
                (SecretString::from(pem), format!("file {}", path.display()))
            }
            DkimKey::Pem(pem) => (pem.clone(), "inline PEM".to_owned()),
        };
        let parsed =
            key::parse(pem.expose_secret()).map_err(|reason| DkimError::Key { origin: origin.clone(), reason })?;
        let key = parsed.signing_key().map_err(|reason| DkimError::Key { origin, reason })?;
        Ok(Self { key, selector, domain, public_key: parsed.public_key })
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The public half, as DNS must publish it.
    pub fn public_key(&self) -> &DkimPublicKey {
        &self.public_key
    }

    /// The message with its `DKIM-Signature` header first. `message` is the whole message as it
    /// goes on the wire (CRLF line ends). What the SMTP transport does to each message it sends
    /// (public for the benchmark, which measures how many of these the machine's cores make alone).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let signing = sign::Signing {
            key: &self.key,
            domain: &self.domain,
            selector: &self.selector,
            headers: &SIGNED_HEADERS,
            timestamp,
        };
        let header = sign::signature_header(&signing, message).map_err(DkimError::Sign)?;
        let mut signed = Vec::with_capacity(header.len() + message.len());
        signed.extend_from_slice(header.as_bytes());
        signed.extend_from_slice(message);
        Ok(signed)
    }
}

/// The selector and the domain, checked to be DNS names, in lower case without a final dot.
pub fn record_names(selector: &str, domain: &str) -> Result<(String, String), DkimError> {
    let checked_selector = dns_name(selector).ok_or_else(|| DkimError::Selector(selector.to_owned()))?;
    let checked_domain = dns_name(domain).ok_or_else(|| DkimError::Domain(domain.to_owned()))?;
    Ok((checked_selector, checked_domain))
}

/// `name` in lower case without a final dot, when it is a DNS name of letters, digits and
/// hyphens (what a selector and a signing domain may be).
fn dns_name(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    (name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

/// Whether a signature by `domain` aligns with the From address: its domain is `domain` or
/// below it (DMARC's relaxed alignment, without the public-suffix list).
fn aligned(domain: &str, from_address: &str) -> bool {
    let Some((_, from_domain)) = from_address.trim().trim_end_matches('>').rsplit_once('@') else {
        return false;
    };
    let from_domain = from_domain.trim_end_matches('.').to_ascii_lowercase();
    from_domain == domain || from_domain.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests;
