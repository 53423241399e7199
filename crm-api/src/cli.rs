//! The command line: every flag has an environment variable, and `borcelle --help` lists them.
//! This is the only place that reads the environment.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use url::Url;

use crate::config::{
    AuthSettings, DatabaseSettings, DeliverySettings, HttpSettings, MailSettings, MailjetSettings, S3Credentials,
    S3Settings, SchedulerBackend, Settings, SmtpSettings, SmtpTls, StorageBackend, StorageSettings, Throttle,
    TransportSettings,
};
use crate::db::users::Role;
use crate::error::AppError;

/// Borcelle: a Kubernetes-native CRM with email at its core.
#[derive(Debug, Parser)]
#[command(name = "borcelle", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// PostgreSQL URL; the database is created when missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/borcelle"
    )]
    database_url: String,
    /// Largest number of pooled database connections.
    #[arg(long, env = "BORCELLE_DB_MAX_CONNECTIONS", global = true, default_value_t = 16)]
    db_max_connections: u32,
    /// Seconds a request waits for a pooled database connection before answering 503; while
    /// PostgreSQL is down, requests fail after this long (0.1 to 60).
    #[arg(long, env = "BORCELLE_DB_ACQUIRE_TIMEOUT_SECS", global = true, default_value_t = 5.0, value_parser = acquire_timeout_secs)]
    db_acquire_timeout_secs: f64,
    /// Redis URL: live events travel between processes over its pub/sub. In-process when unset.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    redis_url: Option<String>,
    /// Log format: `text` for people, `json` for log collectors. Levels come from RUST_LOG.
    #[arg(long, env = "BORCELLE_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web UI, the JSON API and the background work.
    Serve(Box<ServeArgs>),
    /// Create the database if missing, apply pending migrations, and exit.
    Migrate,
    /// Run only the delivery engine: send queued mail until SIGTERM.
    Worker(Box<WorkerArgs>),
    /// Manage accounts from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BORCELLE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// URL users reach Borcelle at (links in emails, allowed Origin, Secure cookies when https).
    /// Default: http:// and the listen address.
    #[arg(long, env = "BORCELLE_PUBLIC_URL")]
    public_url: Option<Url>,
    /// More origins allowed to send state-changing requests, comma-separated.
    #[arg(long, env = "BORCELLE_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "BORCELLE_BODY_LIMIT", default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// Take the client address from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "BORCELLE_TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set)]
    trust_proxy: bool,
    /// Dev mode opens the outbox page to everyone. Default: on when mail goes to the outbox and
    /// the server listens on a loopback address only.
    #[arg(long, env = "BORCELLE_DEV_MODE", action = clap::ArgAction::Set)]
    dev_mode: Option<bool>,
    /// A session ends after this many hours without activity.
    #[arg(long, env = "BORCELLE_SESSION_IDLE_HOURS", default_value_t = 48)]
    session_idle_hours: u64,
    /// A session ends this many hours after login, active or not.
    #[arg(long, env = "BORCELLE_SESSION_MAX_HOURS", default_value_t = 336)]
    session_max_hours: u64,
    /// Failed logins allowed per account per 15 minutes before 429.
    #[arg(long, env = "BORCELLE_LOGIN_MAX_FAILURES", default_value_t = 5)]
    login_max_failures: u32,
    /// Failed logins allowed per client address per 15 minutes before 429.
    #[arg(long, env = "BORCELLE_LOGIN_MAX_FAILURES_PER_IP", default_value_t = 50)]
    login_max_failures_per_ip: u32,
    #[command(flatten)]
    mail: MailArgs,
    #[command(flatten)]
    delivery: DeliveryArgs,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
struct WorkerArgs {
    /// Without a subcommand: send queued mail until SIGTERM.
    #[command(subcommand)]
    action: Option<WorkerAction>,
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address (e.g. 0.0.0.0:8082); none when unset.
    #[arg(long, env = "BORCELLE_WORKER_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    mail: MailArgs,
    #[command(flatten)]
    delivery: DeliveryArgs,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Subcommand)]
enum WorkerAction {
    /// Run one occurrence of a ScheduledReminder or Broadcast (what the operator's Jobs run), wait
    /// until its emails are sent or failed, and exit: 0 when finished (permanent failures of some
    /// recipients are counted, not fatal), 3 when it can never run (an unknown owner, a deleted
    /// note), 1 on a temporary failure (run it again: nothing is duplicated). Writes
    /// `{"delivered":N,"failed":M,"recipients":R}` to the termination log.
    Occurrence(OccurrenceArgs),
}

#[derive(Debug, Args)]
struct OccurrenceArgs {
    /// ScheduledReminder or Broadcast.
    #[arg(long)]
    kind: String,
    /// The resource's namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// The resource's name.
    #[arg(long)]
    name: String,
    /// The resource's metadata.uid: with --scheduled, the occurrence's identity.
    #[arg(long)]
    uid: uuid::Uuid,
    /// The occurrence's time (RFC 3339).
    #[arg(long)]
    scheduled: chrono::DateTime<chrono::Utc>,
    /// The resource's spec as JSON (the operator sets it on the Job).
    #[arg(long, env = "BORCELLE_OCCURRENCE_SPEC", hide_env_values = true)]
    spec: String,
    /// Where the outcome is written for the operator to read.
    #[arg(long, env = "BORCELLE_TERMINATION_LOG", default_value = "/dev/termination-log")]
    termination_log: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Storage {
    /// Files in a local directory (BORCELLE_STORAGE_DIR).
    Local,
    /// An S3-compatible bucket (BORCELLE_S3_*).
    S3,
}

/// Largest size limit accepted: a message's attachments are held in memory while it is sent.
const SIZE_LIMIT_CEILING: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Args)]
struct StorageArgs {
    /// Where attachments are kept.
    #[arg(long, env = "BORCELLE_STORAGE", value_enum, default_value_t = Storage::Local)]
    storage: Storage,
    /// Directory of the local store (relative to the working directory unless absolute).
    #[arg(long, env = "BORCELLE_STORAGE_DIR", default_value = "./data/attachments")]
    storage_dir: std::path::PathBuf,
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
    attachment_max_bytes: u64,
    /// Largest total of one message's attachments in bytes.
    #[arg(
        long,
        env = "BORCELLE_MESSAGE_ATTACHMENTS_MAX_BYTES",
        default_value_t = crate::config::MESSAGE_ATTACHMENTS_MAX_BYTES
    )]
    message_attachments_max_bytes: u64,
}

impl StorageArgs {
    fn settings(&self) -> anyhow::Result<StorageSettings> {
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
struct DeliveryArgs {
    /// Whether `serve` sends queued mail itself (turn off when separate workers do).
    #[arg(long, env = "BORCELLE_SERVE_DELIVERY", default_value_t = true, action = clap::ArgAction::Set)]
    serve_delivery: bool,
    /// Sends in flight at once per process.
    #[arg(long, env = "BORCELLE_DELIVERY_CONCURRENCY", default_value_t = 16)]
    delivery_concurrency: usize,
    /// At most this many sends per second per process (0: no limit).
    #[arg(long, env = "BORCELLE_MAIL_RATE_PER_SEC", default_value_t = 0)]
    mail_rate_per_sec: u32,
    /// Attempts before a temporary failure counts as failed.
    #[arg(long, env = "BORCELLE_DELIVERY_MAX_ATTEMPTS", default_value_t = 8)]
    delivery_max_attempts: i32,
    /// First retry delay in seconds (doubling, with jitter, up to an hour).
    #[arg(long, env = "BORCELLE_DELIVERY_RETRY_BASE_SECS", default_value_t = 5.0)]
    delivery_retry_base_secs: f64,
    /// How long a worker's claim on a message lasts; a crashed worker's claims return after it.
    #[arg(long, env = "BORCELLE_DELIVERY_LEASE_SECS", default_value_t = 120)]
    delivery_lease_secs: u64,
    /// Who runs reminders and broadcasts: `in-process` (serve's scheduler, standalone), `off`
    /// (this process schedules nothing; another serve does) or `kubernetes` (the API keeps them as
    /// ScheduledReminder / Broadcast resources in the cluster and the operator runs them).
    #[arg(long, env = "BORCELLE_SCHEDULER", value_enum, default_value_t = SchedulerMode::InProcess)]
    scheduler: SchedulerMode,
    /// With `--scheduler kubernetes`: the namespace of the resources (default: the service
    /// account's or the kubeconfig context's).
    #[arg(long, env = "BORCELLE_KUBERNETES_NAMESPACE")]
    kubernetes_namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SchedulerMode {
    /// serve's in-process scheduler drives the reminders and broadcasts stored in PostgreSQL.
    InProcess,
    /// No scheduler in this process.
    Off,
    /// Resources in a Kubernetes cluster, run by borcelle-operator.
    Kubernetes,
}

impl DeliveryArgs {
    fn settings(&self) -> anyhow::Result<DeliverySettings> {
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
            scheduler: match self.scheduler {
                SchedulerMode::InProcess => SchedulerBackend::InProcess,
                SchedulerMode::Off => SchedulerBackend::Off,
                SchedulerMode::Kubernetes => {
                    SchedulerBackend::Kubernetes { namespace: self.kubernetes_namespace.clone() }
                }
            },
            ..DeliverySettings::default()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// Store mail in the database and list it on the outbox page (never sent).
    Outbox,
    /// Send through an SMTP server.
    Smtp,
    /// Send through the MailJet Send API v3.1.
    Mailjet,
}

#[derive(Debug, Args)]
struct MailArgs {
    /// How mail leaves Borcelle.
    #[arg(long, env = "BORCELLE_MAIL_TRANSPORT", value_enum, default_value_t = Transport::Outbox)]
    mail_transport: Transport,
    /// Sender address.
    #[arg(long, env = "BORCELLE_MAIL_FROM", default_value = "borcelle@localhost.localdomain")]
    mail_from: String,
    /// Sender display name.
    #[arg(long, env = "BORCELLE_MAIL_FROM_NAME", default_value = "Borcelle")]
    mail_from_name: String,
    /// SMTP server host name.
    #[arg(long, env = "BORCELLE_SMTP_HOST")]
    smtp_host: Option<String>,
    /// SMTP port. Default: 25 (none), 587 (starttls), 465 (tls).
    #[arg(long, env = "BORCELLE_SMTP_PORT")]
    smtp_port: Option<u16>,
    /// SMTP connection security.
    #[arg(long, env = "BORCELLE_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    smtp_tls: SmtpTls,
    /// SMTP user name (AUTH only when set together with the password).
    #[arg(long, env = "BORCELLE_SMTP_USERNAME")]
    smtp_username: Option<String>,
    /// SMTP password.
    #[arg(long, env = "BORCELLE_SMTP_PASSWORD", hide_env_values = true)]
    smtp_password: Option<String>,
    /// Largest number of pooled SMTP connections.
    #[arg(long, env = "BORCELLE_SMTP_POOL_SIZE", default_value_t = 4)]
    smtp_pool_size: u32,
    /// PEM file of a CA to trust for the SMTP server's certificate (besides the system's).
    #[arg(long, env = "BORCELLE_SMTP_CA_FILE")]
    smtp_ca_file: Option<std::path::PathBuf>,
    /// SMTP command timeout in seconds.
    #[arg(long, env = "BORCELLE_SMTP_TIMEOUT_SECS", default_value_t = 30)]
    smtp_timeout_secs: u64,
    /// MailJet API key.
    #[arg(long, env = "BORCELLE_MAILJET_API_KEY")]
    mailjet_api_key: Option<String>,
    /// MailJet API secret.
    #[arg(long, env = "BORCELLE_MAILJET_API_SECRET", hide_env_values = true)]
    mailjet_api_secret: Option<String>,
    /// MailJet API base URL.
    #[arg(long, env = "BORCELLE_MAILJET_API_URL", default_value = "https://api.mailjet.com/")]
    mailjet_api_url: Url,
    /// MailJet sandbox mode: validated, never delivered.
    #[arg(long, env = "BORCELLE_MAILJET_SANDBOX", default_value_t = false, action = clap::ArgAction::Set)]
    mailjet_sandbox: bool,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a verified account. The password is read from BORCELLE_ADMIN_PASSWORD or stdin.
    CreateUser {
        #[arg(long)]
        email: String,
        /// Display name (default: the part of the email before the @).
        #[arg(long)]
        name: Option<String>,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Give an account the admin role.
    Promote {
        #[arg(long)]
        email: String,
    },
    /// Take the admin role away from an account.
    Demote {
        #[arg(long)]
        email: String,
    },
}

impl GlobalArgs {
    fn database(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretString::from(self.database_url.clone()),
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs_f64(self.db_acquire_timeout_secs),
        }
    }
}

fn acquire_timeout_secs(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(secs) if (0.1..=60.0).contains(&secs) => Ok(secs),
        _ => Err("give a number of seconds between 0.1 and 60".to_owned()),
    }
}

impl MailArgs {
    fn settings(&self) -> anyhow::Result<MailSettings> {
        crate::auth::validate::email("BORCELLE_MAIL_FROM", &self.mail_from).map_err(|e| anyhow::anyhow!("{e}"))?;
        let transport = match self.mail_transport {
            Transport::Outbox => TransportSettings::Outbox,
            Transport::Smtp => {
                let Some(host) = self.smtp_host.clone() else {
                    bail!("BORCELLE_MAIL_TRANSPORT=smtp needs BORCELLE_SMTP_HOST (--smtp-host)");
                };
                let port = self.smtp_port.unwrap_or(match self.smtp_tls {
                    SmtpTls::None => 25,
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                });
                TransportSettings::Smtp(SmtpSettings {
                    host,
                    port,
                    tls: self.smtp_tls,
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
        Ok(MailSettings {
            from_address: self.mail_from.trim().to_owned(),
            from_name: self.mail_from_name.clone(),
            transport,
        })
    }
}

impl ServeArgs {
    fn settings(&self, global: &GlobalArgs) -> anyhow::Result<Settings> {
        let mail = self.mail.settings()?;
        let (public_url, mut extra_origins) = match &self.public_url {
            Some(url) => (url.clone(), Vec::new()),
            None => default_public_url(self.listen)?,
        };
        extra_origins.extend(self.allowed_origins.iter().map(|o| o.trim().trim_end_matches('/').to_owned()));
        // The outbox shows every account link, so it is open to all only on a loopback listener.
        let dev_mode = self
            .dev_mode
            .unwrap_or(matches!(mail.transport, TransportSettings::Outbox) && self.listen.ip().is_loopback());
        let defaults = AuthSettings::default();
        let auth = AuthSettings {
            session_idle: Duration::from_secs(self.session_idle_hours.max(1) * 3600),
            session_absolute: Duration::from_secs(self.session_max_hours.max(1) * 3600),
            login_failures_per_account: Throttle {
                max: self.login_max_failures.max(1),
                ..defaults.login_failures_per_account
            },
            login_failures_per_ip: Throttle {
                max: self.login_max_failures_per_ip.max(1),
                ..defaults.login_failures_per_ip
            },
            ..defaults
        };
        Ok(Settings {
            database: global.database(),
            http: HttpSettings {
                listen: self.listen,
                public_url,
                extra_origins,
                body_limit: self.body_limit,
                trust_forwarded_for: self.trust_proxy,
            },
            auth,
            mail,
            dev_mode,
            delivery: self.delivery.settings()?,
            redis_url: global.redis_url.clone().map(SecretString::from),
            storage: self.storage.settings()?,
        })
    }
}

/// `http://<listen address>`; on a loopback or unspecified address, `localhost` works as well.
fn default_public_url(listen: SocketAddr) -> anyhow::Result<(Url, Vec<String>)> {
    let port = listen.port();
    let ip = listen.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        let host = if ip.is_unspecified() { "localhost".to_owned() } else { ip.to_string() };
        let url = Url::parse(&format!("http://{host}:{port}/"))?;
        let others =
            [format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}"), format!("http://[::1]:{port}")];
        return Ok((url, others.into_iter().collect()));
    }
    let host = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
    Ok((Url::parse(&format!("http://{host}:{port}/"))?, Vec::new()))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = match cli.command {
        Command::Serve(args) => {
            let settings = args.settings(&cli.global)?;
            let open_files = crate::startup::raise_open_files_limit();
            tracing::info!(open_files = ?open_files, "open-files limit");
            let app = crate::startup::Application::build(settings).await?;
            app.run_until_stopped(crate::startup::shutdown_signal()).await
        }
        Command::Worker(args) => {
            let settings = crate::startup::WorkerSettings {
                listen: args.listen,
                database: cli.global.database(),
                mail: args.mail.settings()?,
                delivery: args.delivery.settings()?,
                redis_url: cli.global.redis_url.clone().map(SecretString::from),
                storage: args.storage.settings()?,
            };
            match args.action {
                None => crate::startup::run_worker(settings, crate::startup::shutdown_signal()).await,
                Some(WorkerAction::Occurrence(occurrence)) => {
                    let job = crate::startup::OccurrenceJob {
                        kind: occurrence.kind,
                        resource: format!("{}/{}", occurrence.namespace, occurrence.name),
                        uid: occurrence.uid,
                        scheduled: occurrence.scheduled,
                        spec: occurrence.spec,
                        termination_log: occurrence.termination_log,
                    };
                    return crate::startup::run_occurrence_job(settings, job, crate::startup::shutdown_signal()).await;
                }
            }
        }
        Command::Migrate => {
            let pool = crate::db::connect_and_migrate(&cli.global.database()).await?;
            pool.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(command) => admin(&cli.global, command).await,
    };
    done.map(|()| ExitCode::SUCCESS)
}

async fn admin(global: &GlobalArgs, command: AdminCommand) -> anyhow::Result<()> {
    let pool = crate::db::connect_and_migrate(&global.database()).await?;
    let result = match command {
        AdminCommand::CreateUser { email, name, admin } => {
            let password = admin_password()?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_owned());
            let role = if admin { Role::Admin } else { Role::User };
            let id = crate::auth::create_verified_user(&pool, &email, &name, password, role).await.map_err(explain)?;
            println!("created {} account {id} for {}", role.as_str(), email.trim().to_ascii_lowercase());
            Ok(())
        }
        AdminCommand::Promote { email } => set_role(&pool, &email, Role::Admin).await,
        AdminCommand::Demote { email } => set_role(&pool, &email, Role::User).await,
    };
    pool.close().await;
    result
}

async fn set_role(pool: &sqlx::PgPool, email: &str, role: Role) -> anyhow::Result<()> {
    let email = crate::auth::validate::email("email", email).map_err(explain)?;
    if !crate::db::users::set_role(pool, &email, role).await? {
        bail!("no account has the email {email}");
    }
    println!("{email} is now {}", role.as_str());
    Ok(())
}

fn explain(err: AppError) -> anyhow::Error {
    match err.field() {
        Some(field) => anyhow::anyhow!("{field}: {err}"),
        None => anyhow::anyhow!("{err}"),
    }
}

/// The new account's password: BORCELLE_ADMIN_PASSWORD, else the first line of stdin.
fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("BORCELLE_ADMIN_PASSWORD") {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password for the new account (input is not hidden; pipe it in to keep it off the screen):");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password given: set BORCELLE_ADMIN_PASSWORD or pipe the password into stdin");
    }
    Ok(password)
}
