//! The flags `serve` and `worker` share: attachment storage, delivery, mail.

use std::time::Duration;

use anyhow::bail;
use borcelle_mail::{DkimKey, DkimSettings};
use clap::{Args, ValueEnum};
use secrecy::SecretString;
use url::Url;

use crate::config::{
    DeliverySettings, MailSettings, MailjetSettings, S3Credentials, S3Settings, SchedulerBackend, SmtpSettings,
    SmtpTls, StorageBackend, StorageSettings, TransportSettings,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Storage {
    /// Files in a local directory (BORCELLE_STORAGE_DIR).
    Local,
    /// An S3-compatible bucket (BORCELLE_S3_*).
    S3,
}

/// Largest size limit accepted: a message's attachments are held in memory while it is sent.
const SIZE_LIMIT_CEILING: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Args)]
pub(super) struct StorageArgs {
    /// Where attachments are kept.
    #[arg(long, env = "BORCELLE_STORAGE", value_enum, default_value_t = Storage::Local)]
    pub(super) storage: Storage,
    /// Directory of the local store (relative to the working directory unless absolute).
    #[arg(long, env = "BORCELLE_STORAGE_DIR", default_value = "./data/attachments")]
    pub(super) storage_dir: std::path::PathBuf,
    /// S3 endpoint URL (MinIO and other S3-compatible servers). Default: AWS's for the region.
    #[arg(long, env = "BORCELLE_S3_ENDPOINT")]
    s3_endpoint: Option<Url>,
    /// S3 region.
    #[arg(long, env = "BORCELLE_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// S3 bucket (required with BORCELLE_STORAGE=s3).
    #[arg(long, env = "BORCELLE_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Path-style S3 URLs (endpoint/bucket/key), as MinIO needs; false for virtual-hosted style.
    #[arg(long, env = "BORCELLE_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    s3_path_style: bool,
    /// S3 access key id. With the secret; without both, the AWS default credential chain is used.
    #[arg(long, env = "BORCELLE_S3_ACCESS_KEY_ID", hide_env_values = true)]
    s3_access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "BORCELLE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
    /// Largest attachment in bytes.
    #[arg(long, env = "BORCELLE_ATTACHMENT_MAX_BYTES", default_value_t = crate::config::ATTACHMENT_MAX_BYTES)]
    pub(super) attachment_max_bytes: u64,
    /// Largest total of one message's attachments in bytes.
    #[arg(
        long,
        env = "BORCELLE_MESSAGE_ATTACHMENTS_MAX_BYTES",
        default_value_t = crate::config::MESSAGE_ATTACHMENTS_MAX_BYTES
    )]
    pub(super) message_attachments_max_bytes: u64,
}

impl StorageArgs {
    pub(super) fn settings(&self) -> anyhow::Result<StorageSettings> {
        if !(1..=SIZE_LIMIT_CEILING).contains(&self.attachment_max_bytes) {
            bail!("BORCELLE_ATTACHMENT_MAX_BYTES must be between 1 and {SIZE_LIMIT_CEILING}");
        }
        if !(self.attachment_max_bytes..=SIZE_LIMIT_CEILING).contains(&self.message_attachments_max_bytes) {
            bail!(
                "BORCELLE_MESSAGE_ATTACHMENTS_MAX_BYTES must be between BORCELLE_ATTACHMENT_MAX_BYTES ({}) and {SIZE_LIMIT_CEILING}",
                self.attachment_max_bytes
            );
        }
        let backend = match self.storage {
            Storage::Local => StorageBackend::Local { dir: self.storage_dir.clone() },
            Storage::S3 => {
                let Some(bucket) = self.s3_bucket.clone().filter(|b| !b.trim().is_empty()) else {
                    bail!("BORCELLE_STORAGE=s3 needs BORCELLE_S3_BUCKET (--s3-bucket)");
                };
                let credentials = match (&self.s3_access_key_id, &self.s3_secret_access_key) {
                    (Some(id), Some(secret)) => Some(S3Credentials {
                        access_key_id: SecretString::from(id.clone()),
                        secret_access_key: SecretString::from(secret.clone()),
                    }),
                    (None, None) => None,
                    _ => bail!("set both BORCELLE_S3_ACCESS_KEY_ID and BORCELLE_S3_SECRET_ACCESS_KEY, or neither"),
                };
                StorageBackend::S3(S3Settings {
                    endpoint: self.s3_endpoint.clone(),
                    region: self.s3_region.clone(),
                    bucket: bucket.trim().to_owned(),
                    path_style: self.s3_path_style,
                    credentials,
                })
            }
        };
        Ok(StorageSettings {
            backend,
            attachment_max_bytes: self.attachment_max_bytes,
            message_attachments_max_bytes: self.message_attachments_max_bytes,
        })
    }
}

#[derive(Debug, Args)]
pub(super) struct DeliveryArgs {
    /// Whether `serve` sends queued mail itself (turn off when separate workers do).
    #[arg(long, env = "BORCELLE_SERVE_DELIVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub(super) serve_delivery: bool,
    /// Sends in flight at once per process.
    #[arg(long, env = "BORCELLE_DELIVERY_CONCURRENCY", default_value_t = 256)]
    pub(super) delivery_concurrency: usize,
    /// At most this many sends per second per process (0: no limit).
    #[arg(long, env = "BORCELLE_MAIL_RATE_PER_SEC", default_value_t = 0)]
    pub(super) mail_rate_per_sec: u32,
    /// While serve's web is busy, its delivery engine takes at most this many messages a second,
    /// so that people using the app come before a large send (0: never yield).
    #[arg(long, env = "BORCELLE_DELIVERY_RATE_WHILE_WEB_BUSY", default_value_t = 100)]
    pub(super) delivery_rate_while_web_busy: u32,
    /// Requests in flight at once that make serve's web busy (it stays busy for a second after).
    #[arg(long, env = "BORCELLE_WEB_BUSY_REQUESTS", default_value_t = 8)]
    pub(super) web_busy_requests: usize,
    /// Requests a second that make serve's web busy (counted over quarter seconds).
    #[arg(long, env = "BORCELLE_WEB_BUSY_REQUESTS_PER_SEC", default_value_t = 200)]
    pub(super) web_busy_requests_per_sec: u32,
    /// Attempts before a temporary failure counts as failed.
    #[arg(long, env = "BORCELLE_DELIVERY_MAX_ATTEMPTS", default_value_t = 8)]
    pub(super) delivery_max_attempts: i32,
    /// First retry delay in seconds (doubling, with jitter, up to an hour).
    #[arg(long, env = "BORCELLE_DELIVERY_RETRY_BASE_SECS", default_value_t = 5.0)]
    pub(super) delivery_retry_base_secs: f64,
    /// How long a worker's claim on a message lasts; a crashed worker's claims return after it.
    #[arg(long, env = "BORCELLE_DELIVERY_LEASE_SECS", default_value_t = 120)]
    pub(super) delivery_lease_secs: u64,
    /// Recipients of a send to a tag written to the ledger per transaction (100 to 100,000): the
    /// first chunk's delivery starts while the rest are written.
    #[arg(long, env = "BORCELLE_QUEUE_CHUNK", default_value_t = 2_000)]
    pub(super) queue_chunk: usize,
    /// Who runs reminders and broadcasts: `in-process` (serve's scheduler, standalone), `off`
    /// (this process schedules nothing; another serve does) or `kubernetes` (the API keeps them as
    /// ScheduledReminder / Broadcast resources in the cluster and the operator runs them).
    #[arg(long, env = "BORCELLE_SCHEDULER", value_enum, default_value_t = SchedulerMode::InProcess)]
    pub(super) scheduler: SchedulerMode,
    /// With `--scheduler kubernetes`: the namespace of the resources (default: the service
    /// account's or the kubeconfig context's).
    #[arg(long, env = "BORCELLE_KUBERNETES_NAMESPACE")]
    pub(super) kubernetes_namespace: Option<String>,
    /// This delivery engine's name on its claims; an engine that starts again under the same name
    /// gives its previous run's claims back at once instead of waiting for their lease. Default: the
    /// host's name and the process's role and port (each pod has its own); give processes on one
    /// host without a port of their own different names.
    #[arg(long, env = "BORCELLE_INSTANCE")]
    pub(super) instance: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum SchedulerMode {
    /// serve's in-process scheduler drives the reminders and broadcasts stored in PostgreSQL.
    InProcess,
    /// No scheduler in this process.
    Off,
    /// Resources in a Kubernetes cluster, run by borcelle-operator.
    Kubernetes,
}

impl DeliveryArgs {
    /// The settings; `role` names the engine when `BORCELLE_INSTANCE` does not (`serve:8080`).
    pub(super) fn settings(&self, role: &str) -> anyhow::Result<DeliverySettings> {
        if !(0.01..=3600.0).contains(&self.delivery_retry_base_secs) {
            bail!("BORCELLE_DELIVERY_RETRY_BASE_SECS must be between 0.01 and 3600");
        }
        if self.delivery_max_attempts < 1 {
            bail!("BORCELLE_DELIVERY_MAX_ATTEMPTS must be at least 1");
        }
        Ok(DeliverySettings {
            in_serve: self.serve_delivery,
            concurrency: self.delivery_concurrency.clamp(1, 1024),
            lease: Duration::from_secs(self.delivery_lease_secs.max(10)),
            max_attempts: self.delivery_max_attempts,
            retry_base: Duration::from_secs_f64(self.delivery_retry_base_secs),
            rate_per_sec: (self.mail_rate_per_sec > 0).then_some(self.mail_rate_per_sec),
            rate_while_web_busy: (self.delivery_rate_while_web_busy > 0).then_some(self.delivery_rate_while_web_busy),
            web_busy_requests: self.web_busy_requests.max(1),
            web_busy_requests_per_sec: self.web_busy_requests_per_sec.max(1),
            queue_chunk: self.queue_chunk.clamp(100, 100_000),
            scheduler: match self.scheduler {
                SchedulerMode::InProcess => SchedulerBackend::InProcess,
                SchedulerMode::Off => SchedulerBackend::Off,
                SchedulerMode::Kubernetes => {
                    SchedulerBackend::Kubernetes { namespace: self.kubernetes_namespace.clone() }
                }
            },
            instance: self
                .instance
                .clone()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(|| borcelle_engine::delivery::instance::default_name(role)),
            ..DeliverySettings::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Transport {
    /// Store mail in the database and list it on the outbox page (never sent).
    Outbox,
    /// Send through an SMTP server.
    Smtp,
    /// Send through the MailJet Send API v3.1.
    Mailjet,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum SmtpTlsArg {
    /// Plain text (local relays and test servers only).
    None,
    /// Upgrade with STARTTLS (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

impl From<SmtpTlsArg> for SmtpTls {
    fn from(arg: SmtpTlsArg) -> Self {
        match arg {
            SmtpTlsArg::None => SmtpTls::None,
            SmtpTlsArg::Starttls => SmtpTls::Starttls,
            SmtpTlsArg::Tls => SmtpTls::Tls,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct MailArgs {
    /// How mail leaves Borcelle.
    #[arg(long, env = "BORCELLE_MAIL_TRANSPORT", value_enum, default_value_t = Transport::Outbox)]
    pub(super) mail_transport: Transport,
    /// Sender address.
    #[arg(long, env = "BORCELLE_MAIL_FROM", default_value = "borcelle@localhost.localdomain")]
    pub(super) mail_from: String,
    /// Sender display name.
    #[arg(long, env = "BORCELLE_MAIL_FROM_NAME", default_value = "Borcelle")]
    pub(super) mail_from_name: String,
    /// SMTP server host name.
    #[arg(long, env = "BORCELLE_SMTP_HOST")]
    pub(super) smtp_host: Option<String>,
    /// SMTP port. Default: 25 (none), 587 (starttls), 465 (tls).
    #[arg(long, env = "BORCELLE_SMTP_PORT")]
    pub(super) smtp_port: Option<u16>,
    /// SMTP connection security.
    #[arg(long, env = "BORCELLE_SMTP_TLS", value_enum, default_value_t = SmtpTlsArg::Starttls)]
    pub(super) smtp_tls: SmtpTlsArg,
    /// SMTP user name (AUTH only when set together with the password).
    #[arg(long, env = "BORCELLE_SMTP_USERNAME")]
    pub(super) smtp_username: Option<String>,
    /// SMTP password.
    #[arg(long, env = "BORCELLE_SMTP_PASSWORD", hide_env_values = true)]
    pub(super) smtp_password: Option<String>,
    /// Largest number of pooled SMTP connections.
    #[arg(long, env = "BORCELLE_SMTP_POOL_SIZE", default_value_t = 16)]
    pub(super) smtp_pool_size: u32,
    /// PEM file of a CA to trust for the SMTP server's certificate (besides the system's).
    #[arg(long, env = "BORCELLE_SMTP_CA_FILE")]
    pub(super) smtp_ca_file: Option<std::path::PathBuf>,
    /// SMTP command timeout in seconds.
    #[arg(long, env = "BORCELLE_SMTP_TIMEOUT_SECS", default_value_t = 30)]
    pub(super) smtp_timeout_secs: u64,
    /// MailJet API key.
    #[arg(long, env = "BORCELLE_MAILJET_API_KEY")]
    pub(super) mailjet_api_key: Option<String>,
    /// MailJet API secret.
    #[arg(long, env = "BORCELLE_MAILJET_API_SECRET", hide_env_values = true)]
    pub(super) mailjet_api_secret: Option<String>,
    /// MailJet API base URL.
    #[arg(long, env = "BORCELLE_MAILJET_API_URL", default_value = "https://api.mailjet.com/")]
    pub(super) mailjet_api_url: Url,
    /// MailJet sandbox mode: validated, never delivered.
    #[arg(long, env = "BORCELLE_MAILJET_SANDBOX", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) mailjet_sandbox: bool,
    /// DKIM selector: receivers find the public key at <selector>._domainkey.<domain>. Required
    /// with a DKIM key.
    #[arg(long, env = "BORCELLE_DKIM_SELECTOR")]
    pub(super) dkim_selector: Option<String>,
    /// DKIM signing domain (d=): the From address's domain or a parent of it. Default: the From
    /// address's domain.
    #[arg(long, env = "BORCELLE_DKIM_DOMAIN")]
    pub(super) dkim_domain: Option<String>,
    /// PEM file of the DKIM private key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8), e.g. a
    /// mounted Kubernetes Secret; `borcelle dkim generate` makes one. With a key, mail sent over
    /// SMTP is signed. MailJet signs with the key of the domain configured in MailJet instead.
    #[arg(long, env = "BORCELLE_DKIM_KEY_FILE")]
    pub(super) dkim_key_file: Option<std::path::PathBuf>,
    /// The DKIM private key PEM itself, instead of BORCELLE_DKIM_KEY_FILE.
    #[arg(long, env = "BORCELLE_DKIM_PRIVATE_KEY", hide_env_values = true)]
    pub(super) dkim_private_key: Option<String>,
}

impl MailArgs {
    pub(super) fn settings(&self) -> anyhow::Result<MailSettings> {
        borcelle_engine::validate::email("BORCELLE_MAIL_FROM", &self.mail_from).map_err(|e| anyhow::anyhow!("{e}"))?;
        let transport = match self.mail_transport {
            Transport::Outbox => TransportSettings::Outbox,
            Transport::Smtp => {
                let Some(host) = self.smtp_host.clone() else {
                    bail!("BORCELLE_MAIL_TRANSPORT=smtp needs BORCELLE_SMTP_HOST (--smtp-host)");
                };
                let tls = SmtpTls::from(self.smtp_tls);
                let port = self.smtp_port.unwrap_or(match tls {
                    SmtpTls::None => 25,
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                });
                TransportSettings::Smtp(SmtpSettings {
                    host,
                    port,
                    tls,
                    username: self.smtp_username.clone(),
                    password: self.smtp_password.clone().map(SecretString::from),
                    pool_size: self.smtp_pool_size.max(1),
                    timeout: Duration::from_secs(self.smtp_timeout_secs.max(1)),
                    ca_file: self.smtp_ca_file.clone(),
                })
            }
            Transport::Mailjet => {
                let (Some(key), Some(secret)) = (self.mailjet_api_key.clone(), self.mailjet_api_secret.clone()) else {
                    bail!(
                        "BORCELLE_MAIL_TRANSPORT=mailjet needs BORCELLE_MAILJET_API_KEY and BORCELLE_MAILJET_API_SECRET"
                    );
                };
                TransportSettings::Mailjet(MailjetSettings {
                    api_key: key,
                    api_secret: SecretString::from(secret),
                    api_url: self.mailjet_api_url.clone(),
                    sandbox: self.mailjet_sandbox,
                    timeout: Duration::from_secs(30),
                })
            }
        };
        let from_address = self.mail_from.trim().to_owned();
        let dkim = self.dkim(&from_address)?;
        if dkim.is_some() && self.mail_transport != Transport::Smtp {
            tracing::warn!(
                transport = ?self.mail_transport,
                "a DKIM key is configured but only the smtp transport signs with it (MailJet signs with the key configured in MailJet)"
            );
        }
        Ok(MailSettings { from_address, from_name: self.mail_from_name.clone(), transport, dkim })
    }

    /// DKIM is on when a key is given; it then needs a selector. An empty value counts as unset.
    fn dkim(&self, from_address: &str) -> anyhow::Result<Option<DkimSettings>> {
        let set = |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (selector, domain) = (set(&self.dkim_selector), set(&self.dkim_domain));
        let file = self.dkim_key_file.clone().filter(|path| !path.as_os_str().is_empty());
        let pem = self.dkim_private_key.clone().filter(|pem| !pem.trim().is_empty());
        let key = match (file, pem) {
            (Some(_), Some(_)) => {
                bail!("give the DKIM key once: BORCELLE_DKIM_KEY_FILE or BORCELLE_DKIM_PRIVATE_KEY, not both")
            }
            (Some(path), None) => DkimKey::File(path),
            (None, Some(pem)) => DkimKey::Pem(SecretString::from(pem)),
            (None, None) if selector.is_some() || domain.is_some() => bail!(
                "BORCELLE_DKIM_SELECTOR or BORCELLE_DKIM_DOMAIN is set but there is no DKIM key: set \
                 BORCELLE_DKIM_KEY_FILE or BORCELLE_DKIM_PRIVATE_KEY (or unset both to send unsigned)"
            ),
            (None, None) => return Ok(None),
        };
        let Some(selector) = selector else {
            bail!(
                "a DKIM key is given but no selector: set BORCELLE_DKIM_SELECTOR (--dkim-selector), the name the \
                 public key is published under (<selector>._domainkey.<domain>)"
            );
        };
        let domain = domain.unwrap_or_else(|| from_address.rsplit_once('@').map_or("", |(_, d)| d).to_owned());
        Ok(Some(DkimSettings { selector, domain, key }))
    }
}

/// Inbound mail: the reply, bounce and unsubscribe addresses outgoing mail carries, and the SMTP
/// receiver that accepts mail for them (`serve`, `worker` and `inbound`).
#[derive(Debug, Args)]
pub(super) struct InboundArgs {
    /// The domain of the reply and bounce addresses (`reply+<token>@<domain>`), whose MX record
    /// points at the receiver. Unset: inbound mail is off and mail goes out as before (replies go
    /// to the user's own address).
    #[arg(long, env = "BORCELLE_INBOUND_DOMAIN")]
    pub(super) inbound_domain: Option<String>,
    /// Where the SMTP receiver listens. `serve` runs it on 127.0.0.1:2525 by default when a domain
    /// is set; `borcelle inbound` on 0.0.0.0:2525.
    #[arg(long, env = "BORCELLE_INBOUND_LISTEN")]
    pub(super) inbound_listen: Option<std::net::SocketAddr>,
    /// Whether `serve` runs the receiver itself (false when `borcelle inbound` runs apart).
    #[arg(long, env = "BORCELLE_INBOUND_IN_SERVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub(super) inbound_in_serve: bool,
    /// The name the receiver greets with (default: the inbound domain).
    #[arg(long, env = "BORCELLE_INBOUND_HOSTNAME")]
    pub(super) inbound_hostname: Option<String>,
    /// Largest message accepted, in bytes (larger ones are refused with 552).
    #[arg(long, env = "BORCELLE_INBOUND_MAX_MESSAGE_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub(super) inbound_max_message_bytes: usize,
    /// Connections open at once, in all.
    #[arg(long, env = "BORCELLE_INBOUND_MAX_CONNECTIONS", default_value_t = 1000)]
    pub(super) inbound_max_connections: usize,
    /// Connections open at once from one client address.
    #[arg(long, env = "BORCELLE_INBOUND_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 50)]
    pub(super) inbound_max_connections_per_client: usize,
    /// New connections one client address may open per minute (0: unlimited).
    #[arg(long, env = "BORCELLE_INBOUND_CONNECTIONS_PER_MINUTE", default_value_t = 600)]
    pub(super) inbound_connections_per_minute: u32,
    /// Seconds the receiver waits for a command or a line of data.
    #[arg(long, env = "BORCELLE_INBOUND_COMMAND_TIMEOUT_SECS", default_value_t = 300)]
    pub(super) inbound_command_timeout_secs: u64,
    /// PEM certificate chain for STARTTLS (with the key; a Kubernetes TLS Secret mounted as files).
    #[arg(long, env = "BORCELLE_INBOUND_TLS_CERT")]
    pub(super) inbound_tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for STARTTLS.
    #[arg(long, env = "BORCELLE_INBOUND_TLS_KEY")]
    pub(super) inbound_tls_key: Option<std::path::PathBuf>,
}

impl InboundArgs {
    /// The receiver's settings when a domain is set, listening on `default_listen` unless told.
    pub(super) fn settings(
        &self,
        default_listen: std::net::SocketAddr,
    ) -> anyhow::Result<Option<borcelle_engine::inbound::InboundSettings>> {
        let Some(domain) = self.domain()? else { return Ok(None) };
        let mut settings =
            borcelle_engine::inbound::InboundSettings::new(&domain, self.inbound_listen.unwrap_or(default_listen));
        if let Some(hostname) = &self.inbound_hostname {
            settings.hostname = hostname.clone();
        }
        anyhow::ensure!(
            self.inbound_max_message_bytes >= 1024,
            "BORCELLE_INBOUND_MAX_MESSAGE_BYTES: give at least 1024"
        );
        settings.max_message_bytes = self.inbound_max_message_bytes;
        settings.max_connections = self.inbound_max_connections.max(1);
        settings.max_connections_per_client = self.inbound_max_connections_per_client.max(1);
        settings.connections_per_minute =
            (self.inbound_connections_per_minute > 0).then_some(self.inbound_connections_per_minute);
        settings.command_timeout = std::time::Duration::from_secs(self.inbound_command_timeout_secs.max(1));
        settings.tls = match (&self.inbound_tls_cert, &self.inbound_tls_key) {
            (Some(certificate), Some(key)) => {
                Some(borcelle_engine::inbound::TlsFiles { certificate: certificate.clone(), key: key.clone() })
            }
            (None, None) => None,
            _ => anyhow::bail!("set both BORCELLE_INBOUND_TLS_CERT and BORCELLE_INBOUND_TLS_KEY, or neither"),
        };
        Ok(Some(settings))
    }

    /// The inbound domain, checked: a host name, lower case.
    pub(super) fn domain(&self) -> anyhow::Result<Option<String>> {
        let Some(domain) = self.inbound_domain.as_deref().map(str::trim).filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let valid = domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        anyhow::ensure!(valid, "BORCELLE_INBOUND_DOMAIN: {domain:?} is not a domain name (like replies.example.com)");
        Ok(Some(domain))
    }
}
