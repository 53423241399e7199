//! Typed settings of the engine's parts: account rules, the delivery engine, attachment storage.
//! The binary builds them from its flags and environment; nothing here reads either.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

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
    /// While the web of the same process is busy, claims at most this many rows a second, so that
    /// people using the app come before a large send (None: never yield; see `delivery::web`).
    pub rate_while_web_busy: Option<u32>,
    /// Requests in flight at once that make the web busy.
    pub web_busy_requests: usize,
    /// Requests a second that make the web busy.
    pub web_busy_requests_per_sec: u32,
    /// How often an idle engine looks for due messages (new work also wakes it at once).
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight sends may take before their claims are released.
    pub shutdown_grace: Duration,
    /// Who runs reminders and broadcasts.
    pub scheduler: SchedulerBackend,
    /// Recipients of a send to tags written per transaction: delivery starts once the first
    /// chunk is committed.
    pub queue_chunk: usize,
    /// How long the writer of a send's chunks holds it; after that, another process takes over.
    pub queue_lease: Duration,
    /// This engine's name on its claims (`BORCELLE_INSTANCE`; by default the host's name and the
    /// process's port or role): an engine that starts again under the same name gives its previous
    /// run's claims back at once (see `delivery::instance`).
    pub instance: String,
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
            rate_while_web_busy: Some(100),
            web_busy_requests: 8,
            web_busy_requests_per_sec: 200,
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(15),
            scheduler: SchedulerBackend::InProcess,
            queue_chunk: 2_000,
            queue_lease: Duration::from_secs(30),
            instance: crate::delivery::instance::default_name("engine"),
        }
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
    /// Failed logins on one account from one client: its address, or the device cookie of a client
    /// that has logged in to the account before (counted apart, so strangers cannot lock it out).
    pub login_failures_per_account: Throttle,
    /// Failed logins on one account from every client that has never logged in to it: what stops
    /// guessing from many addresses; the account's own clients are not held by it.
    pub login_failures_per_account_new_clients: Throttle,
    /// Failed logins from one client address (clients the account knows are not held by it).
    pub login_failures_per_ip: Throttle,
    /// How long a client that logged in stays known to the account without logging in again.
    pub login_device_idle: Duration,
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
            login_failures_per_account_new_clients: Throttle { max: 50, window: Duration::from_secs(15 * MINUTE) },
            login_failures_per_ip: Throttle { max: 50, window: Duration::from_secs(15 * MINUTE) },
            login_device_idle: Duration::from_secs(90 * 24 * HOUR),
            mail_requests_per_email: Throttle { max: 3, window: Duration::from_secs(HOUR) },
            mail_requests_per_ip: Throttle { max: 30, window: Duration::from_secs(HOUR) },
        }
    }
}
