//! SMTP through lettre's client: async, pooled without a round trip of its own, `TCP_NODELAY`,
//! `PIPELINING` where offered ([`pool`]), plain / STARTTLS / implicit TLS, optional AUTH, DKIM
//! signing when configured, and what a refusal means (see [`classify`]).

use std::error::Error as _;

use futures::future::BoxFuture;
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox as LettreMailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use secrecy::ExposeSecret;

use super::{Delivery, MailError, MailTransport, Mailbox, OutgoingEmail, Unsubscribe};
use crate::dkim::DkimSigner;
use crate::{SetupError, SmtpSettings, SmtpTls};

mod classify;
mod pool;
#[cfg(test)]
mod tests;

use classify::{Refusal, classify};
use pool::{Connector, Pool, Security};

const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

pub struct SmtpTransport {
    pool: Pool,
    /// Signs every message when set.
    dkim: Option<DkimSigner>,
}

impl SmtpTransport {
    /// A pooled transport (see [`pool`]); with `dkim`, every message it sends is signed.
    pub fn new(settings: &SmtpSettings, dkim: Option<DkimSigner>) -> Result<Self, SetupError> {
        let security = match settings.tls {
            SmtpTls::None => Security::Plain,
            SmtpTls::Starttls => Security::Starttls(tls_parameters(settings)?),
            SmtpTls::Tls => Security::Wrapper(tls_parameters(settings)?),
        };
        let credentials = match (&settings.username, &settings.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.expose_secret().to_owned())),
            _ => None,
        };
        if let Some(dkim) = &dkim {
            tracing::info!(
                selector = dkim.selector(),
                domain = dkim.domain(),
                algorithm = dkim.public_key().algorithm().as_str(),
                "DKIM signing on: every message sent over SMTP is signed"
            );
        }
        let connector = Connector {
            host: settings.host.clone(),
            port: settings.port,
            security,
            credentials,
            timeout: settings.timeout,
        };
        Ok(Self { pool: Pool::new(connector, settings.pool_size), dkim })
    }
}

/// TLS for the server's host name, trusting the system's CAs and the configured one, if any.
fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, SetupError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| SetupError::CaFile { path: path.clone(), source })?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|err| SetupError::CaCertificate { path: path.clone(), message: err.to_string() })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|err| SetupError::Tls { host: settings.host.clone(), message: err.to_string() })
}

fn mailbox(address: &Mailbox) -> Result<LettreMailbox, MailError> {
    let email = address
        .email
        .parse()
        .map_err(|err| MailError::Permanent(format!("invalid address {:?}: {err}", address.email)))?;
    let name = address.name.as_deref().map(|name| crate::header_line(name).into_owned());
    Ok(LettreMailbox::new(name, email))
}

/// The body: multipart/alternative with a text and an HTML part, inside multipart/mixed with one
/// base64 part per attachment when there are any. lettre writes every Content-Type header itself.
fn body(email: &OutgoingEmail) -> Result<MultiPart, MailError> {
    let alternative = MultiPart::alternative_plain_html(email.text.clone(), email.html.clone());
    if email.attachments.is_empty() {
        return Ok(alternative);
    }
    let mut mixed = MultiPart::mixed().multipart(alternative);
    for attachment in &email.attachments {
        let content_type = ContentType::parse(&attachment.content_type)
            .or_else(|_| ContentType::parse(crate::UNKNOWN_TYPE))
            .map_err(|err| MailError::Permanent(format!("content type of {}: {err}", attachment.filename)))?;
        // Binary content (a Vec) is always base64-encoded: the bytes arrive exactly as stored.
        let part = Attachment::new(attachment.filename.clone()).body(attachment.bytes.to_vec(), content_type);
        mixed = mixed.singlepart(part);
    }
    Ok(mixed)
}

/// The message as it goes on the wire, with its envelope: signed when a signer is given.
pub(crate) fn build(email: &OutgoingEmail, dkim: Option<&DkimSigner>) -> Result<(Envelope, Vec<u8>), MailError> {
    let message = build_message(email)?;
    let raw = message.formatted();
    let bytes = match dkim {
        Some(dkim) => dkim.sign(&raw).map_err(|err| MailError::Permanent(err.to_string()))?,
        None => raw,
    };
    let envelope = match &email.envelope_from {
        Some(sender) => {
            let sender = sender
                .parse()
                .map_err(|err| MailError::Permanent(format!("invalid envelope sender {sender:?}: {err}")))?;
            Envelope::new(Some(sender), message.envelope().to().to_vec())
                .map_err(|err| MailError::Permanent(format!("building the envelope: {err}")))?
        }
        None => message.envelope().clone(),
    };
    Ok((envelope, bytes))
}

/// Builds the RFC 5322 message (see [`body`] for its MIME structure), unsigned.
pub fn build_message(email: &OutgoingEmail) -> Result<Message, MailError> {
    let body = body(email)?;
    let mut builder = Message::builder().from(mailbox(&email.from)?).to(mailbox(&email.to)?);
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    if let Some(unsubscribe) = &email.unsubscribe {
        builder = builder
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, unsubscribe.header()))
            .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE_POST, Unsubscribe::POST.to_owned()));
    }
    builder
        .subject(crate::header_line(&email.subject).into_owned())
        .message_id(Some(email.message_id.clone()))
        .date(email.date)
        .header(header::MIME_VERSION_1_0)
        .multipart(body)
        .map_err(|err| MailError::Permanent(format!("building the message: {err}")))
}

impl MailTransport for SmtpTransport {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Result<Delivery, MailError>> {
        Box::pin(async move {
            let slot = self.pool.slot().await?;
            // Built and signed right here, on the async worker, RSA included: handing each RSA
            // signature (a quarter to a third of a millisecond of CPU) to a blocking thread cost
            // about 0.1 ms of CPU more per message in thread hand-overs and a copy of the email,
            // a quarter of signed delivery's rate. What the web pays: a request waits behind the
            // signatures queued on its worker (one client's p99 9 ms during full-speed RSA
            // delivery, 3 ms idle, on two cores); once the web is busy the engine sends at its
            // yielding rate (`delivery::web`), 100 signatures a second by default.
            let (envelope, bytes) = build(email, self.dkim.as_ref())?;
            let response = self.pool.send(slot, &envelope, &bytes).await?;
            let reply: Vec<&str> = response.message().collect();
            Ok(Delivery { provider_id: format!("{} {}", response.code(), reply.join(" ")) })
        })
    }
}

/// What a failed send means: a reply code classified by [`classify`]; no reply (connection,
/// TLS, timeout, a server that went away) is worth retrying.
fn failure(err: &lettre::transport::smtp::Error) -> MailError {
    let text = err.to_string();
    let Some(code) = err.status() else {
        return MailError::Transient(text);
    };
    // The error's source is the server's reply text, where the enhanced status code is.
    let reply = err.source().map(ToString::to_string).unwrap_or_default();
    match classify(u16::from(code), &reply) {
        Refusal::Transient => MailError::Transient(text),
        Refusal::Permanent => MailError::Permanent(text),
        Refusal::Recipient => MailError::Rejected(text),
    }
}
