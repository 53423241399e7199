//! Forgotten passwords (a mailed reset link) and password changes.

use borcelle_mail::{OutgoingEmail, templates};
use borcelle_store::user_tokens::{self, Purpose};
use borcelle_store::{api_tokens, rate_limits, sessions, users};
use uuid::Uuid;

use super::register::{require_token, token_error};
use super::{Accounts, ClientInfo, mailbox, password, secrets, session_cache};
use crate::{Error, Result, validate};

impl Accounts {
    /// Mails a password-reset link when the address has an account. Answers the same for any address,
    /// in the same time: the lookup and the mail happen in the background.
    pub async fn forgot_password(&self, email: &str, client: &ClientInfo) -> Result<()> {
        let email = validate::email("email", email)?;
        let auth = &self.settings;
        self.throttle(&format!("mail:ip:{}", client.ip), auth.mail_requests_per_ip).await?;
        self.throttle(&format!("reset:email:{email}"), auth.mail_requests_per_email).await?;
        let background = self.clone();
        self.mail.spawn(async move {
            if let Err(err) = background.send_reset_link(&email).await {
                tracing::error!(error = %err, "preparing a password reset mail failed");
            }
        });
        Ok(())
    }

    pub(super) async fn send_reset_link(&self, email: &str) -> Result<()> {
        let Some(user) = users::find_by_email(&self.db, email).await? else { return Ok(()) };
        let token = secrets::random_token();
        let ttl = self.settings.reset_token_ttl;
        user_tokens::insert(
            &self.db,
            &secrets::hash_token(&token),
            user.id,
            Purpose::ResetPassword,
            ttl.as_secs_f64(),
            None,
        )
        .await?;
        let content =
            templates::reset_password(&user.display_name, &self.link("/reset", Some(&token)), ttl.as_secs() / 60)?;
        self.mail.send_in_background(OutgoingEmail::new(&self.mail.settings, mailbox(&user), content));
        Ok(())
    }

    /// Sets a new password with a reset token. Every session and every API token of the user ends;
    /// the address counts as verified, since the link proved it.
    pub async fn reset_password(&self, token: &str, new_password: String) -> Result<()> {
        let token = require_token(token)?;
        validate::password("password", &new_password)?;
        let token_hash = secrets::hash_token(token);
        // Refuse a bad token before paying for a hash.
        user_tokens::check(&self.db, &token_hash, Purpose::ResetPassword)
            .await?
            .map_err(|r| token_error(r, "reset"))?;
        let password_hash = password::hash(new_password).await?;
        let mut tx = self.db.begin().await?;
        let user_id = user_tokens::consume(&mut tx, &token_hash, Purpose::ResetPassword)
            .await?
            .map_err(|r| token_error(r, "reset"))?
            .user_id;
        users::set_password(&mut *tx, user_id, &password_hash).await?;
        users::mark_verified(&mut *tx, user_id).await?;
        user_tokens::retire_all(&mut *tx, user_id, Purpose::ResetPassword).await?;
        user_tokens::retire_all(&mut *tx, user_id, Purpose::VerifyEmail).await?;
        let sessions_ended = sessions::delete_for_user(&mut *tx, user_id, None).await?;
        let tokens_revoked = api_tokens::delete_all(&mut *tx, user_id).await?;
        tx.commit().await?;
        session_cache::process().forget_user(user_id);
        tracing::info!(%user_id, sessions_ended, tokens_revoked, "password reset");
        Ok(())
    }

    /// Changes the password of a logged-in user after checking the current one; the user's other
    /// sessions end, the current one (if any) stays.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        current_session: Option<&[u8]>,
        current_password: String,
        new_password: String,
    ) -> Result<()> {
        validate::password("new_password", &new_password)?;
        let user = users::find_by_id(&self.db, user_id).await?.ok_or(Error::AccountGone)?;
        let auth = &self.settings;
        // Its own counter: strangers failing to log in cannot keep the owner from changing it.
        let account_key = format!("password:user:{user_id}");
        self.throttle(&account_key, auth.login_failures_per_account).await?;
        if !password::verify(current_password, Some(user.password_hash.clone())).await? {
            return Err(Error::WrongPassword);
        }
        rate_limits::release(&self.db, &account_key).await?;
        let password_hash = password::hash(new_password).await?;
        let mut tx = self.db.begin().await?;
        users::set_password(&mut *tx, user_id, &password_hash).await?;
        let ended = sessions::delete_for_user(&mut *tx, user_id, current_session).await?;
        tx.commit().await?;
        session_cache::process().forget_user(user_id);
        tracing::info!(%user_id, sessions_ended = ended, "password changed");
        Ok(())
    }
}
