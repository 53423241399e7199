//! SMTP through lettre: async, pooled, plain / STARTTLS / implicit TLS, optional AUTH.

use futures::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox as LettreMailbox, MultiPart, header};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{Delivery, MailError, MailTransport, Mailbox, OutgoingEmail};
use crate::{SetupError, SmtpSettings, SmtpTls};

pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpTransport {
    pub fn new(settings: &SmtpSettings) -> Result<Self, SetupError> {
        let tls = match settings.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(settings)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(settings)?),
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host).tls(tls);
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(settings.timeout))
            .pool_config(PoolConfig::new().max_size(settings.pool_size));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_owned()));
        }
        Ok(Self { inner: builder.build() })
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

/// Builds the RFC 5322 message (see [`body`] for its MIME structure).
pub fn build_message(email: &OutgoingEmail) -> Result<Message, MailError> {
    let mut builder = Message::builder().from(mailbox(&email.from)?).to(mailbox(&email.to)?);
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    builder
        .subject(crate::header_line(&email.subject).into_owned())
        .message_id(Some(email.message_id.clone()))
        .date(email.date)
        .header(header::MIME_VERSION_1_0)
        .multipart(body(email)?)
        .map_err(|err| MailError::Permanent(format!("building the message: {err}")))
}

impl MailTransport for SmtpTransport {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, email: &'a OutgoingEmail) -> BoxFuture<'a, Result<Delivery, MailError>> {
        Box::pin(async move {
            let message = build_message(email)?;
            match self.inner.send(message).await {
                Ok(response) => {
                    let reply: Vec<&str> = response.message().collect();
                    Ok(Delivery { provider_id: format!("{} {}", response.code(), reply.join(" ")) })
                }
                Err(err) if err.is_permanent() => Err(MailError::Permanent(err.to_string())),
                Err(err) => Err(MailError::Transient(err.to_string())),
            }
        })
    }
}
