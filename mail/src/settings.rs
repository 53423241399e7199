//! How mail leaves Borcelle: the sender and the transport, as typed settings (the binary builds
//! them from its flags and environment).

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::dkim::DkimSettings;

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Address in `From`.
    pub from_address: String,
    /// Display name in `From`.
    pub from_name: String,
    pub transport: TransportSettings,
    /// DKIM signing of what the SMTP transport sends (MailJet signs with the key set up there).
    pub dkim: Option<DkimSettings>,
}

impl MailSettings {
    /// Domain of the stable Message-IDs (`<id@domain>`): the From address's.
    pub fn message_id_domain(&self) -> &str {
        self.from_address.rsplit_once('@').map_or("localhost", |(_, d)| d)
    }
}

/// Which transport delivers mail.
#[derive(Debug, Clone)]
pub enum TransportSettings {
    /// Store in the database and show on the outbox page; never send.
    Outbox,
    Smtp(SmtpSettings),
    Mailjet(MailjetSettings),
}

impl TransportSettings {
    pub fn name(&self) -> &'static str {
        match self {
            TransportSettings::Outbox => "outbox",
            TransportSettings::Smtp(_) => "smtp",
            TransportSettings::Mailjet(_) => "mailjet",
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (local relays and test servers only).
    None,
    /// Upgrade with STARTTLS (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub pool_size: u32,
    pub timeout: Duration,
    /// PEM file with a CA certificate to trust besides the system's (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MailjetSettings {
    pub api_key: String,
    pub api_secret: SecretString,
    /// Base URL of the API (`https://api.mailjet.com`); tests point it at a local server.
    pub api_url: Url,
    /// MailJet validates but does not deliver in sandbox mode.
    pub sandbox: bool,
    pub timeout: Duration,
}
