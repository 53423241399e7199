//! Logging in and out.

use borcelle_store::sessions::{self, ActiveSession, NewSession};
use borcelle_store::users;
use borcelle_store::{login_devices, rate_limits};
use data_encoding::HEXLOWER;

use super::{Accounts, ClientInfo, LoggedIn, password, secrets, session_cache};
use crate::settings::Throttle;
use crate::{Error, Result, validate};

impl Accounts {
    /// Checks credentials and opens a session. Wrong credentials get one generic answer; unverified
    /// accounts are told so. A session the client already had (`previous`) ends, so a login never
    /// leaves an older session behind.
    ///
    /// Failures are throttled, counting each attempt before checking it so parallel guesses cannot
    /// slip past: per account and client (its address, or the `device` token of a client that has
    /// logged in to this account before), per account across every client it does not know, and
    /// per address. A client the account knows is held only by its own counter, so strangers who
    /// fail on an account, from one address or from thousands, cannot lock its owner out of it.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: &ClientInfo,
        previous: Option<&[u8]>,
        device: Option<&str>,
    ) -> Result<LoggedIn> {
        let email = validate::email("email", email)?;
        if password.is_empty() {
            return Err(Error::invalid("password", "password is required"));
        }
        let auth = &self.settings;
        let user = users::find_by_email(&self.db, &email).await?;
        let device_hash = device.map(secrets::hash_token);
        let known = match (&device_hash, &user) {
            (Some(hash), Some(user)) => {
                login_devices::owner_of(&self.db, hash, auth.login_device_idle.as_secs_f64()).await? == Some(user.id)
            }
            _ => false,
        };
        let client_key = match (&device_hash, known) {
            (Some(hash), true) => format!("login:email:{email}:device:{}", HEXLOWER.encode(hash)),
            _ => format!("login:email:{email}:ip:{}", client.ip),
        };
        let mut counted: Vec<(String, Throttle)> = vec![(client_key.clone(), auth.login_failures_per_account)];
        if !known {
            counted.push((format!("login:email:{email}:new-clients"), auth.login_failures_per_account_new_clients));
            counted.push((format!("login:ip:{}", client.ip), auth.login_failures_per_ip));
        }
        for (i, (key, limit)) in counted.iter().enumerate() {
            if let Err(err) = self.throttle(key, *limit).await {
                // Refused before checking: what was counted so far was no attempt.
                for (earlier, _) in &counted[..=i] {
                    rate_limits::release(&self.db, earlier).await?;
                }
                return Err(err);
            }
        }

        let too_long = password.chars().count() > validate::PASSWORD_MAX;
        let matches = password::verify(password, user.as_ref().map(|u| u.password_hash.clone())).await? && !too_long;
        let Some(user) = user.filter(|_| matches) else {
            return Err(Error::InvalidCredentials);
        };
        // The right password is not a failure, whatever follows.
        rate_limits::clear(&self.db, &client_key).await?;
        for (key, _) in &counted[1..] {
            rate_limits::release(&self.db, key).await?;
        }
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
        // The client is known to the account from now on (its token renewed when it had one).
        let device_token = match device.filter(|_| known) {
            Some(token) => token.to_owned(),
            None => secrets::random_token(),
        };
        login_devices::insert(&mut *tx, &secrets::hash_token(&device_token), user.id).await?;
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
                // What this answer needs; each page reads the account's zone with the session.
                time_zone: None,
                csrf_token,
                last_seen_at: chrono::Utc::now(),
            },
            device_token,
        })
    }

    /// Ends a session.
    pub async fn logout(&self, session_hash: &[u8]) -> Result<()> {
        sessions::delete(&self.db, session_hash).await?;
        session_cache::process().forget_session(session_hash);
        Ok(())
    }
}
