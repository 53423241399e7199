//! `borcelle serve` and `borcelle worker`: their flags, and the settings made of them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand};
use secrecy::SecretString;
use url::Url;

use super::GlobalArgs;
use super::parts::{DeliveryArgs, InboundArgs, MailArgs, StorageArgs};
use crate::config::{AuthSettings, ConsentSettings, HttpSettings, Settings, Throttle, WebhookCredentials};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BORCELLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub(super) listen: SocketAddr,
    /// Serve `/metrics` (and `/healthz`, `/readyz`) on this address of their own (e.g.
    /// 0.0.0.0:9090); none when unset. The public address never serves `/metrics`.
    #[arg(long, env = "BORCELLE_OPERATIONS_LISTEN")]
    pub(super) operations_listen: Option<SocketAddr>,
    /// URL users reach Borcelle at (links in emails, allowed Origin, Secure cookies when https).
    /// Default: http:// and the listen address.
    #[arg(long, env = "BORCELLE_PUBLIC_URL")]
    pub(super) public_url: Option<Url>,
    /// More origins allowed to send state-changing requests, comma-separated.
    #[arg(long, env = "BORCELLE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub(super) allowed_origins: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "BORCELLE_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub(super) body_limit: usize,
    /// Take the client address from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "BORCELLE_TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) trust_proxy: bool,
    /// Dev mode opens the outbox page to everyone, even strangers (it shows every account's links:
    /// never where anyone else can reach the port). Off by default: administrators read the
    /// outbox, and with the outbox transport the links of account emails (verification, password
    /// reset) are printed in serve's log for whoever runs it.
    #[arg(long, env = "BORCELLE_DEV_MODE", action = clap::ArgAction::Set)]
    pub(super) dev_mode: Option<bool>,
    /// A session ends after this many hours without activity.
    #[arg(long, env = "BORCELLE_SESSION_IDLE_HOURS", default_value_t = 48)]
    pub(super) session_idle_hours: u64,
    /// A session ends this many hours after login, active or not.
    #[arg(long, env = "BORCELLE_SESSION_MAX_HOURS", default_value_t = 336)]
    pub(super) session_max_hours: u64,
    /// Failed logins allowed per account from one client (its address, or its device cookie once it
    /// has logged in to the account) per 15 minutes before 429.
    #[arg(long, env = "BORCELLE_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub(super) login_max_failures: u32,
    /// Failed logins allowed per account per 15 minutes from all the clients that never logged in
    /// to it, before those get 429 (the clients it knows keep their own allowance).
    #[arg(long, env = "BORCELLE_LOGIN_MAX_FAILURES_NEW_CLIENTS", default_value_t = 50)]
    pub(super) login_max_failures_new_clients: u32,
    /// Failed logins allowed per client address per 15 minutes before 429.
    #[arg(long, env = "BORCELLE_LOGIN_MAX_FAILURES_PER_IP", default_value_t = 50)]
    pub(super) login_max_failures_per_ip: u32,
    #[command(flatten)]
    pub(super) mail: MailArgs,
    #[command(flatten)]
    pub(super) delivery: DeliveryArgs,
    #[command(flatten)]
    pub(super) storage: StorageArgs,
    #[command(flatten)]
    pub(super) consent: ConsentArgs,
    #[command(flatten)]
    pub(super) inbound: InboundArgs,
    /// User name MailJet's event webhook must present (HTTP basic auth) at
    /// /api/v1/webhooks/mailjet; the endpoint refuses every call without it.
    #[arg(long, env = "BORCELLE_MAILJET_WEBHOOK_USERNAME")]
    pub(super) mailjet_webhook_username: Option<String>,
    /// Password MailJet's event webhook must present.
    #[arg(long, env = "BORCELLE_MAILJET_WEBHOOK_PASSWORD", hide_env_values = true)]
    pub(super) mailjet_webhook_password: Option<String>,
}

/// The unsubscribe links of outgoing mail (`serve` and `worker`).
#[derive(Debug, Args)]
pub(super) struct ConsentArgs {
    /// One-to-one messages (to a single contact) carry the List-Unsubscribe headers and link too;
    /// bulk mail (notes and messages to several contacts, reminders, broadcast emails) always does.
    #[arg(long, env = "BORCELLE_UNSUBSCRIBE_ONE_TO_ONE", default_value_t = false, action = clap::ArgAction::Set)]
    pub(super) unsubscribe_one_to_one: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub(super) struct WorkerArgs {
    /// Without a subcommand: send queued mail until SIGTERM.
    #[command(subcommand)]
    pub(super) action: Option<WorkerAction>,
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address (e.g. 0.0.0.0:8082); none when unset.
    #[arg(long, env = "BORCELLE_WORKER_LISTEN")]
    pub(super) listen: Option<SocketAddr>,
    /// The URL users reach `borcelle serve` at: the unsubscribe links in the mail this worker sends
    /// point there. Set it as for serve (default http://127.0.0.1:8080, fit for one machine only).
    #[arg(long, env = "BORCELLE_PUBLIC_URL", default_value = "http://127.0.0.1:8080/")]
    pub(super) public_url: Url,
    #[command(flatten)]
    pub(super) mail: MailArgs,
    #[command(flatten)]
    pub(super) delivery: DeliveryArgs,
    #[command(flatten)]
    pub(super) storage: StorageArgs,
    #[command(flatten)]
    pub(super) consent: ConsentArgs,
    #[command(flatten)]
    pub(super) inbound: InboundArgs,
}

#[derive(Debug, Subcommand)]
pub(super) enum WorkerAction {
    /// Run one occurrence of a ScheduledReminder or Broadcast (what the operator's Jobs run), wait
    /// until its emails are sent or failed, and exit: 0 when finished (permanent failures of some
    /// recipients are counted, not fatal), 3 when it can never run (an unknown owner, a deleted
    /// note), 1 on a temporary failure (run it again: nothing is duplicated). Writes
    /// `{"delivered":N,"failed":M,"recipients":R}` to the termination log.
    Occurrence(OccurrenceArgs),
}

#[derive(Debug, Args)]
pub(super) struct OccurrenceArgs {
    /// ScheduledReminder or Broadcast.
    #[arg(long)]
    pub(super) kind: String,
    /// The resource's namespace.
    #[arg(long, default_value = "default")]
    pub(super) namespace: String,
    /// The resource's name.
    #[arg(long)]
    pub(super) name: String,
    /// The resource's metadata.uid: with --scheduled, the occurrence's identity.
    #[arg(long)]
    pub(super) uid: uuid::Uuid,
    /// The occurrence's time (RFC 3339).
    #[arg(long)]
    pub(super) scheduled: chrono::DateTime<chrono::Utc>,
    /// The resource's spec as JSON (the operator sets it on the Job).
    #[arg(long, env = "BORCELLE_OCCURRENCE_SPEC", hide_env_values = true)]
    pub(super) spec: String,
    /// Where the outcome is written for the operator to read.
    #[arg(long, env = "BORCELLE_TERMINATION_LOG", default_value = "/dev/termination-log")]
    pub(super) termination_log: std::path::PathBuf,
}

impl ServeArgs {
    pub(super) fn settings(&self, global: &GlobalArgs) -> anyhow::Result<Settings> {
        let mail = self.mail.settings()?;
        let (public_url, mut extra_origins) = match &self.public_url {
            Some(url) => (url.clone(), Vec::new()),
            None => default_public_url(self.listen)?,
        };
        extra_origins.extend(self.allowed_origins.iter().map(|o| o.trim().trim_end_matches('/').to_owned()));
        // The outbox shows every account's links: open to all only when asked for.
        let dev_mode = self.dev_mode.unwrap_or(false);
        let defaults = AuthSettings::default();
        let auth = AuthSettings {
            session_idle: Duration::from_secs(self.session_idle_hours.max(1) * 3600),
            session_absolute: Duration::from_secs(self.session_max_hours.max(1) * 3600),
            login_failures_per_account: Throttle {
                max: self.login_max_failures.max(1),
                ..defaults.login_failures_per_account
            },
            login_failures_per_account_new_clients: Throttle {
                max: self.login_max_failures_new_clients.max(1),
                ..defaults.login_failures_per_account_new_clients
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
            delivery: self.delivery.settings(&format!("serve:{}", self.listen.port()))?,
            redis_url: global.redis_url.clone().map(SecretString::from),
            storage: self.storage.settings()?,
            operations_listen: self.operations_listen,
            consent: ConsentSettings {
                unsubscribe_one_to_one: self.consent.unsubscribe_one_to_one,
                mailjet_webhook: match (&self.mailjet_webhook_username, &self.mailjet_webhook_password) {
                    (Some(username), Some(password)) if !username.is_empty() && !password.is_empty() => {
                        Some(WebhookCredentials {
                            username: username.clone(),
                            password: SecretString::from(password.clone()),
                        })
                    }
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "set both BORCELLE_MAILJET_WEBHOOK_USERNAME and BORCELLE_MAILJET_WEBHOOK_PASSWORD, or neither"
                    ),
                },
            },
            inbound: self.inbound.settings(std::net::SocketAddr::from(([127, 0, 0, 1], 2525)))?,
            inbound_in_serve: self.inbound.inbound_in_serve,
        })
    }
}

/// `borcelle inbound`: the SMTP receiver on its own.
#[derive(Debug, Args)]
pub(super) struct InboundCommandArgs {
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address (e.g. 0.0.0.0:8083); none when unset.
    #[arg(long, env = "BORCELLE_INBOUND_HEALTH_LISTEN")]
    pub(super) health_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub(super) inbound: InboundArgs,
    #[command(flatten)]
    pub(super) storage: StorageArgs,
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
