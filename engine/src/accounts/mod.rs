//! Accounts: registration with email verification, login sessions, password reset and change,
//! API tokens, and the throttles that guard them. The JSON API and the HTML pages both call these
//! methods, so both follow the same rules.

mod login;
pub mod password;
mod passwords;
mod register;
pub mod secrets;
pub mod session_cache;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use borcelle_mail::{MailError, MailSettings, Mailbox, Mailer, OutgoingEmail};
use borcelle_store::sessions::ActiveSession;
use borcelle_store::users::User;
use borcelle_store::{PgPool, rate_limits};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use url::Url;

pub use tokens::{API_TOKEN_PREFIX, CreatedToken, create_verified_user};

use crate::metrics::EngineMetrics;
use crate::settings::{AuthSettings, Throttle};
use crate::{Error, Result};

/// The account rules, with what they need: the database, the rules' settings, the public URL that
/// links in account mails start with, and the mail that carries them.
#[derive(Clone)]
pub struct Accounts {
    db: PgPool,
    settings: Arc<AuthSettings>,
    public_url: Url,
    mail: AccountMail,
}

/// Account emails, sent in the background.
#[derive(Clone)]
pub struct AccountMail {
    pub settings: Arc<MailSettings>,
    pub mailer: Mailer,
    pub metrics: Arc<EngineMetrics>,
    /// Background work that shutdown waits for.
    pub tasks: TaskTracker,
    /// How many account emails are being prepared or sent.
    in_flight: Arc<watch::Sender<usize>>,
}

/// One account email in flight, counted until dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// How often an account email is tried before it is given up (with 1 s, 4 s, 16 s pauses).
const MAIL_ATTEMPTS: u32 = 4;

impl AccountMail {
    pub fn new(settings: Arc<MailSettings>, mailer: Mailer, metrics: Arc<EngineMetrics>, tasks: TaskTracker) -> Self {
        Self { settings, mailer, metrics, tasks, in_flight: Arc::new(watch::channel(0).0) }
    }

    /// Runs account-mail work in the background, counted until it ends.
    fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.in_flight.send_modify(|n| *n += 1);
        let counted = InFlight(self.in_flight.clone());
        self.tasks.spawn(async move {
            work.await;
            drop(counted);
        });
    }

    /// Completes once no account email is being prepared or sent: what tests wait on instead of
    /// polling a mailbox.
    pub async fn idle(&self) {
        let mut count = self.in_flight.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Sends an account email in the background, retrying transient failures, so that the answer
    /// to the request neither waits for the mail server nor reveals by its timing what it sent.
    pub fn send_in_background(&self, email: OutgoingEmail) {
        let mailer = self.mailer.clone();
        let metrics = self.metrics.clone();
        self.spawn(async move {
            let mut pause = Duration::from_secs(1);
            for attempt in 1..=MAIL_ATTEMPTS {
                match mailer.send(&email).await {
                    Ok(delivery) => {
                        metrics.mail_sent(mailer.name(), "sent");
                        tracing::info!(message_id = %email.message_id, provider_id = %delivery.provider_id, "account email sent");
                        return;
                    }
                    Err(err @ MailError::Transient(_)) if attempt < MAIL_ATTEMPTS => {
                        metrics.mail_sent(mailer.name(), "retrying");
                        tracing::warn!(message_id = %email.message_id, attempt, error = %err, "account email will be retried");
                        tokio::time::sleep(pause).await;
                        pause *= 4;
                    }
                    Err(err) => {
                        metrics.mail_sent(mailer.name(), "failed");
                        tracing::error!(message_id = %email.message_id, attempt, error = %err, "account email failed");
                        return;
                    }
                }
            }
        });
    }
}

/// Where a request comes from, for throttling and the session record.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

pub struct RegisterInput {
    pub email: String,
    pub display_name: String,
    pub password: String,
}

/// A session just opened: the secret for the cookie and who it belongs to.
pub struct LoggedIn {
    pub session_token: String,
    pub session: ActiveSession,
    /// The token of the device cookie to set (a new one, or the client's own renewed): with it,
    /// this client's failed logins on the account are counted apart from strangers'.
    pub device_token: String,
}

impl Accounts {
    pub fn new(db: PgPool, settings: Arc<AuthSettings>, public_url: Url, mail: AccountMail) -> Self {
        Self { db, settings, public_url, mail }
    }

    /// Completes once no account email is being prepared or sent.
    pub async fn mail_idle(&self) {
        self.mail.idle().await;
    }

    /// Counts an event against a throttle and refuses it once the limit is passed.
    pub(super) async fn throttle(&self, key: &str, limit: Throttle) -> Result<()> {
        let window = rate_limits::hit(&self.db, key, limit.window.as_secs_f64()).await?;
        if window.hits > limit.max as i32 {
            return Err(Error::Throttled { retry_after_secs: window.resets_in_secs });
        }
        Ok(())
    }

    pub(super) fn link(&self, path: &str, token: Option<&str>) -> String {
        let mut url = self.public_url.clone();
        url.set_path(path);
        if let Some(token) = token {
            url.query_pairs_mut().append_pair("token", token);
        }
        url.to_string()
    }
}

fn mailbox(user: &User) -> Mailbox {
    Mailbox { name: Some(user.display_name.clone()), email: user.email.clone() }
}
