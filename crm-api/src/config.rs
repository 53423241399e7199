//! Typed settings for every part of the server. Only the command line ([`crate::cli`]) reads the
//! environment; everything below receives these values. Each layer defines its own settings;
//! this module gathers them for `serve` and adds the web's.

use std::net::SocketAddr;

use secrecy::SecretString;
use url::Url;

pub use borcelle_engine::inbound::{InboundSettings, TlsFiles};
pub use borcelle_engine::settings::{
    ATTACHMENT_MAX_BYTES, AuthSettings, DeliverySettings, MESSAGE_ATTACHMENTS_MAX_BYTES, S3Credentials, S3Settings,
    SchedulerBackend, StorageBackend, StorageSettings, Throttle,
};
pub use borcelle_mail::{MailSettings, MailjetSettings, SmtpSettings, SmtpTls, TransportSettings};
pub use borcelle_store::DatabaseSettings;

/// Everything `borcelle serve` needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    /// Dev mode opens the outbox page to everyone and logs a warning at start.
    pub dev_mode: bool,
    pub delivery: DeliverySettings,
    /// Redis for events between processes; in-process channels when unset.
    pub redis_url: Option<SecretString>,
    /// Where attachments are kept and how large they may be.
    pub storage: StorageSettings,
    /// The operations port: `/metrics` (and `/healthz`, `/readyz` again) on their own listener,
    /// never on the public one; none when unset.
    pub operations_listen: Option<SocketAddr>,
    /// Unsubscribe links and the MailJet event webhook.
    pub consent: ConsentSettings,
    /// Inbound mail (reply, bounce and unsubscribe addresses and their SMTP receiver); off when unset.
    pub inbound: Option<InboundSettings>,
    /// Whether `serve` runs the SMTP receiver itself (else `borcelle inbound` does).
    pub inbound_in_serve: bool,
}

/// Consent: which mail carries unsubscribe links, and who may call the MailJet event webhook.
#[derive(Debug, Clone, Default)]
pub struct ConsentSettings {
    /// One-to-one messages carry the List-Unsubscribe headers and link too (bulk mail always does).
    pub unsubscribe_one_to_one: bool,
    /// The HTTP basic credentials MailJet's event webhook must present; the endpoint refuses
    /// every call when unset.
    pub mailjet_webhook: Option<WebhookCredentials>,
}

/// User name and password a webhook caller presents (HTTP basic auth).
#[derive(Debug, Clone)]
pub struct WebhookCredentials {
    pub username: String,
    pub password: SecretString,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// The URL users reach the server at; links in emails and the allowed Origin derive from it.
    pub public_url: Url,
    /// Further origins allowed to make state-changing requests (besides the public URL's).
    pub extra_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

impl HttpSettings {
    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// Whether a browser's `Origin` is this site (the public URL's origin or an extra allowed one).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_origin() || self.extra_origins.iter().any(|allowed| allowed == origin)
    }

    /// Session cookies are marked `Secure` when users reach us over https.
    pub fn cookies_secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}
