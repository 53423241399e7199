//! Typed settings for every part of the server. Only `main` reads the environment; everything
//! below receives these values.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

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
}

/// Default for [`StorageSettings::attachment_max_bytes`]: 10 MiB.
pub const ATTACHMENT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default for [`StorageSettings::message_attachments_max_bytes`]: 25 MiB.
pub const MESSAGE_ATTACHMENTS_MAX_BYTES: u64 = 25 * 1024 * 1024;

/// Attachments: the object store that keeps their bytes, and the size limits.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// Largest file one upload may carry, in bytes.
    pub attachment_max_bytes: u64,
    /// Largest total of the attachments of one message, in bytes. It also bounds the memory a
    /// delivery engine holds per task, since it keeps a task's attachments in memory while sending.
    pub message_attachments_max_bytes: u64,
}

impl StorageSettings {
    /// A local directory with the default limits.
    pub fn local(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            backend: StorageBackend::Local { dir: dir.into() },
            attachment_max_bytes: ATTACHMENT_MAX_BYTES,
            message_attachments_max_bytes: MESSAGE_ATTACHMENTS_MAX_BYTES,
        }
    }
}

/// Which object store keeps attachment bytes.
#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// Files under a directory (standalone; one machine).
    Local { dir: std::path::PathBuf },
    /// An S3-compatible bucket (AWS S3, MinIO, …).
    S3(S3Settings),
}

impl StorageBackend {
    pub fn name(&self) -> &'static str {
        match self {
            StorageBackend::Local { .. } => "local",
            StorageBackend::S3(_) => "s3",
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible server (MinIO); AWS's regional endpoint when unset.
    pub endpoint: Option<Url>,
    pub region: String,
    pub bucket: String,
    /// `endpoint/bucket/key` URLs instead of `bucket.endpoint/key` (MinIO needs them).
    pub path_style: bool,
    /// Static credentials; when unset, the AWS default chain (web identity, instance profile, …).
    pub credentials: Option<S3Credentials>,
}

#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
}

/// How the delivery engine sends the ledger's messages.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Whether `serve` runs the engine itself (standalone); `borcelle worker` always does.
    pub in_serve: bool,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// How long a claim lasts; a crashed worker's claims come back after it.
    pub lease: Duration,
    /// Attempts before a transient failure becomes permanent.
    pub max_attempts: i32,
    /// First retry delay; doubles each attempt (with jitter) up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// At most this many sends per second through the transport (None: unlimited).
    pub rate_per_sec: Option<u32>,
    /// How often an idle engine looks for due messages (new work also wakes it at once).
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight sends may take before their claims are released.
    pub shutdown_grace: Duration,
    /// Who runs reminders and broadcasts.
    pub scheduler: SchedulerBackend,
}

/// Who runs reminders and broadcasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulerBackend {
    /// `serve`'s in-process scheduler over the schedules stored in PostgreSQL (standalone). Any
    /// number of processes may run it against one database.
    InProcess,
    /// This process schedules nothing (another `serve` does).
    Off,
    /// The API keeps them as `ScheduledReminder` / `Broadcast` resources in this namespace of the
    /// cluster (the client's default when `None`), and the operator runs them.
    Kubernetes { namespace: Option<String> },
}

impl SchedulerBackend {
    /// Whether this process runs the in-process scheduler.
    pub fn in_process(&self) -> bool {
        *self == SchedulerBackend::InProcess
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            in_serve: true,
            concurrency: 16,
            lease: Duration::from_secs(120),
            max_attempts: 8,
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(3600),
            rate_per_sec: None,
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(15),
            scheduler: SchedulerBackend::InProcess,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `postgres://…` URL; the database is created when missing.
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout: Duration,
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

/// A fixed-window limit: at most `max` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub max: u32,
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub session_idle: Duration,
    pub session_absolute: Duration,
    pub verify_token_ttl: Duration,
    pub reset_token_ttl: Duration,
    /// Failed logins for one account.
    pub login_failures_per_account: Throttle,
    /// Failed logins from one client address.
    pub login_failures_per_ip: Throttle,
    /// Verification resends and password-reset requests for one address.
    pub mail_requests_per_email: Throttle,
    /// Registrations, resends and reset requests from one client address.
    pub mail_requests_per_ip: Throttle,
}

impl Default for AuthSettings {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        Self {
            session_idle: Duration::from_secs(48 * HOUR),
            session_absolute: Duration::from_secs(14 * 24 * HOUR),
            verify_token_ttl: Duration::from_secs(24 * HOUR),
            reset_token_ttl: Duration::from_secs(HOUR),
            login_failures_per_account: Throttle { max: 5, window: Duration::from_secs(15 * MINUTE) },
            login_failures_per_ip: Throttle { max: 50, window: Duration::from_secs(15 * MINUTE) },
            mail_requests_per_email: Throttle { max: 3, window: Duration::from_secs(HOUR) },
            mail_requests_per_ip: Throttle { max: 30, window: Duration::from_secs(HOUR) },
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Address in `From`.
    pub from_address: String,
    /// Display name in `From`.
    pub from_name: String,
    pub transport: TransportSettings,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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
