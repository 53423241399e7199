//! Outgoing mail: one [`MailTransport`] interface with three transports chosen by configuration
//! (SMTP, the MailJet Send API v3.1, and the dev outbox), how an email is built, and the templates
//! every email is rendered from.

pub mod dkim;
mod mailjet;
pub mod merge;
mod outbox;
mod settings;
mod smtp;
pub mod templates;

use std::sync::Arc;
use std::time::SystemTime;

use borcelle_store::PgPool;
use bytes::Bytes;
use futures::future::BoxFuture;

pub use settings::{MailSettings, MailjetSettings, SmtpSettings, SmtpTls, TransportSettings};

pub use dkim::{DkimKey, DkimSettings};

pub use mailjet::MailjetTransport;
pub use outbox::OutboxTransport;
pub use smtp::{SmtpTransport, build_message};
pub use templates::{Rendered, TemplateError};

/// A header value as one line: each control character (CR and LF above all, which would start a
/// new header) becomes a space. What is stored is already checked to be one line; this is the
/// last guard, for rows written before the checks or by anything that skipped them.
pub fn header_line(value: &str) -> std::borrow::Cow<'_, str> {
    if value.chars().any(char::is_control) {
        std::borrow::Cow::Owned(value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect())
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// What a file whose type is not recognised is served and sent as.
pub const UNKNOWN_TYPE: &str = "application/octet-stream";

/// A named address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: String,
}

/// One email, ready for any transport. Its `message_id` is stable: a retry sends the same id, so
/// a duplicate can be recognised.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    pub from: Mailbox,
    pub to: Mailbox,
    /// Where replies go (the CRM user who sent a message).
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `<unique@domain>`, angle brackets included.
    pub message_id: String,
    pub date: SystemTime,
    /// Files sent along (cheap to clone: the bytes are shared between recipients).
    pub attachments: Vec<MailAttachment>,
    /// How the recipient stops this kind of mail: `List-Unsubscribe` (RFC 2369) with one-click
    /// `List-Unsubscribe-Post` (RFC 8058). Bulk mail always carries it; account mail never does.
    pub unsubscribe: Option<Unsubscribe>,
    /// The ledger row this email is for (MailJet's `CustomID`, which its event webhook returns).
    pub ledger_id: Option<String>,
    /// The envelope sender (`MAIL FROM`) when it is not the From address: Borcelle's VERP bounce
    /// address once inbound mail is configured, so that delivery reports come back to it. SMTP
    /// only (MailJet handles bounces itself and reports them as events).
    pub envelope_from: Option<String>,
}

/// The unsubscribe addresses of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The one-click link: `POST` to it unsubscribes without a session.
    pub https: String,
    /// `mailto:` address (Borcelle's unsubscribe address), once inbound mail is configured.
    pub mailto: Option<String>,
}

impl Unsubscribe {
    /// The `List-Unsubscribe` header value: `<https://…>` and, when there is one, `<mailto:…>`.
    pub fn header(&self) -> String {
        match &self.mailto {
            Some(mailto) => format!("<{}>, <mailto:{}>", header_line(&self.https), header_line(mailto)),
            None => format!("<{}>", header_line(&self.https)),
        }
    }

    /// The `List-Unsubscribe-Post` header value (RFC 8058).
    pub const POST: &'static str = "List-Unsubscribe=One-Click";
}

/// A file carried by an email.
#[derive(Debug, Clone)]
pub struct MailAttachment {
    /// Sanitised file name.
    pub filename: String,
    /// Sniffed from the bytes when uploaded.
    pub content_type: String,
    pub bytes: Bytes,
}

impl OutgoingEmail {
    /// Builds an email from the configured sender with a fresh Message-ID in the sender's domain.
    pub fn new(settings: &MailSettings, to: Mailbox, content: templates::Rendered) -> Self {
        let domain = settings.from_address.rsplit_once('@').map_or("localhost", |(_, domain)| domain);
        Self {
            from: Mailbox { name: Some(settings.from_name.clone()), email: settings.from_address.clone() },
            to,
            reply_to: None,
            subject: content.subject,
            text: content.text,
            html: content.html,
            message_id: format!("<{}@{}>", uuid::Uuid::now_v7().simple(), domain),
            date: SystemTime::now(),
            attachments: Vec::new(),
            unsubscribe: None,
            ledger_id: None,
            envelope_from: None,
        }
    }
}

/// What a transport reports for an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's id for the message, or the server's reply when it gives no id.
    pub provider_id: String,
}

/// Why a send failed, split by what the caller should do next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MailError {
    /// Worth retrying later: connection trouble, SMTP 4xx, MailJet 429/5xx.
    #[error("temporary mail failure: {0}")]
    Transient(String),
    /// Retrying will not help: SMTP 5xx, MailJet per-message errors, rejected credentials.
    #[error("permanent mail failure: {0}")]
    Permanent(String),
    /// The recipient's server refused this address for good (SMTP 5xx on `RCPT` or `DATA`, a
    /// provider's hard bounce): a hard bounce, so the address is suppressed for its sender.
    #[error("recipient refused: {0}")]
    Rejected(String),
}

impl MailError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Transient(_))
    }
}

/// Anything that can deliver an [`OutgoingEmail`].
pub trait MailTransport: Send + Sync {
    /// Short name for logs and metrics (`smtp`, `mailjet`, `outbox`).
    fn name(&self) -> &'static str;
    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Result<Delivery, MailError>>;

    /// The most messages one [`send_batch`](Self::send_batch) call takes (1: the transport sends
    /// one message per request, and the engine calls [`send`](Self::send)).
    fn batch_size(&self) -> usize {
        1
    }

    /// Sends up to [`batch_size`](Self::batch_size) messages in one request where the provider
    /// takes several (MailJet's Send API: 50); one result per message, in the order given.
    fn send_batch<'a>(&'a self, emails: &'a [OutgoingEmail]) -> BoxFuture<'a, Vec<Result<Delivery, MailError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(emails.len());
            for email in emails {
                results.push(self.send(email).await);
            }
            results
        })
    }
}

/// The transport the server uses.
pub type Mailer = Arc<dyn MailTransport>;

/// Why a transport could not be set up (at start, from its settings).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading the SMTP CA file {path}: {source}")]
    CaFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("parsing the SMTP CA file {path}: {message}")]
    CaCertificate { path: std::path::PathBuf, message: String },
    #[error("configuring TLS for {host}: {message}")]
    Tls { host: String, message: String },
    #[error("the MailJet API URL is not valid: {0}")]
    MailjetUrl(#[from] url::ParseError),
    #[error("building the MailJet HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error(transparent)]
    Dkim(#[from] dkim::DkimError),
}

/// Builds the transport that the settings select.
pub fn build_mailer(settings: &MailSettings, db: PgPool) -> Result<Mailer, SetupError> {
    Ok(match &settings.transport {
        TransportSettings::Outbox => Arc::new(OutboxTransport::new(db)),
        TransportSettings::Smtp(smtp) => Arc::new(SmtpTransport::new(smtp, dkim::DkimSigner::for_mail(settings)?)?),
        TransportSettings::Mailjet(mailjet) => Arc::new(MailjetTransport::new(mailjet.clone())?),
    })
}
