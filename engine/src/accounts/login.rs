//! Logging in and out.

use borcelle_store::rate_limits;
use borcelle_store::sessions::{self, ActiveSession, NewSession};
use borcelle_store::users;

use super::{Accounts, ClientInfo, LoggedIn, password, secrets, session_cache};
use crate::{Error, Result, validate};

impl Accounts {
    /// Checks credentials and opens a session. Wrong credentials get one generic answer; failures for
    /// an account or an address are throttled, counting each attempt before checking it so parallel
    /// guesses cannot slip past; unverified accounts are told so. A session the client already had
    /// (`previous`) ends, so a login never leaves an older session behind.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: &ClientInfo,
        previous: Option<&[u8]>,
    ) -> Result<LoggedIn> {
        let email = validate::email("email", email)?;
        if password.is_empty() {
            return Err(Error::invalid("password", "password is required"));
        }
        let auth = &self.settings;
        let account_key = format!("login:email:{email}");
        let ip_key = format!("login:ip:{}", client.ip);
        self.throttle(&account_key, auth.login_failures_per_account).await?;
        if let Err(err) = self.throttle(&ip_key, auth.login_failures_per_ip).await {
            rate_limits::release(&self.db, &account_key).await?;
            return Err(err);
        }

        let user = users::find_by_email(&self.db, &email).await?;
        let too_long = password.chars().count() > validate::PASSWORD_MAX;
        let matches = password::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await? && !too_long;
        let Some(user) = user.filter(|_| matches) else {
            return Err(Error::InvalidCredentials);
        };
        // The right password is not a failure, whatever follows.
        rate_limits::clear(&self.db, &account_key).await?;
        rate_limits::release(&self.db, &ip_key).await?;
        if user.email_verified_at.is_none() {
            return Err(Error::EmailNotVerified);
        }

        let session_token = secrets::random_token();
        let csrf_token = secrets::random_token();
        let mut tx = self.db.begin().await?;
        if let Some(previous) = previous {
            sessions::delete(&mut *tx, previous).await?;
        }
        sessions::insert(
            &mut *tx,
            &NewSession {
                id_hash: &secrets::hash_token(&session_token),
                user_id: user.id,
                csrf_token: &csrf_token,
                absolute_secs: auth.session_absolute.as_secs_f64(),
                ip: Some(&client.ip),
                user_agent: client.user_agent.as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        if let Some(previous) = previous {
            session_cache::process().forget_session(previous);
        }
        tracing::info!(user_id = %user.id, "logged in");
        Ok(LoggedIn {
            session_token,
            session: ActiveSession {
                user_id: user.id,
                email: user.email,
                display_name: user.display_name,
                role: user.role,
                csrf_token,
                last_seen_at: chrono::Utc::now(),
            },
        })
    }

    /// Ends a session.
    pub async fn logout(&self, session_hash: &[u8]) -> Result<()> {
        sessions::delete(&self.db, session_hash).await?;
        session_cache::process().forget_session(session_hash);
        Ok(())
    }
}
