//! Registration, email verification and resending the link.

use borcelle_mail::{Mailbox, OutgoingEmail, templates};
use borcelle_store::rate_limits;
use borcelle_store::user_tokens::{self, Pending, Purpose, Rejection};
use borcelle_store::users::{self, NewUser, Role, User};
use uuid::Uuid;

use super::{Accounts, ClientInfo, RegisterInput, mailbox, password, secrets};
use crate::{Error, Result, validate};

impl Accounts {
    /// Issues a verification token for the user and mails the link. A link sent for a registration
    /// carries that registration's credentials, which verifying applies.
    pub(super) async fn send_verification(&self, user: &User, pending: Option<Pending<'_>>) -> Result<()> {
        let token = secrets::random_token();
        let ttl = self.settings.verify_token_ttl;
        let name = pending.as_ref().map_or(user.display_name.as_str(), |p| p.display_name).to_owned();
        user_tokens::insert(
            &self.db,
            &secrets::hash_token(&token),
            user.id,
            Purpose::VerifyEmail,
            ttl.as_secs_f64(),
            pending,
        )
        .await?;
        let content = templates::verify_email(&name, &self.link("/verify", Some(&token)), ttl.as_secs() / 3600)?;
        let to = Mailbox { name: Some(name), email: user.email.clone() };
        self.mail.send_in_background(OutgoingEmail::new(&self.mail.settings, to, content));
        Ok(())
    }

    /// Registers an account and mails a verification link. The outcome is the same whether or not the
    /// address was taken: a taken, verified address gets an email saying someone tried; a taken,
    /// unverified one gets a link that applies this registration's credentials when used. At most a
    /// few mails an hour go to one address, whichever branch sends them.
    pub async fn register(&self, input: RegisterInput, client: &ClientInfo) -> Result<()> {
        // Every field is checked, so the form shows all its errors at once.
        let mut errors = crate::error::FieldErrors::default();
        let email = errors.check(validate::email("email", &input.email));
        let display_name = errors.check(validate::display_name("display_name", &input.display_name));
        let password = errors.check(validate::password("password", &input.password));
        let (Some(email), Some(display_name), Some(())) = (email, display_name, password) else {
            return Err(errors.into_error());
        };
        let auth = &self.settings;
        self.throttle(&format!("mail:ip:{}", client.ip), auth.mail_requests_per_ip).await?;

        // Hash before looking at the address, so both outcomes cost the same time.
        let password_hash = password::hash(input.password).await?;
        let recipient = rate_limits::hit(
            &self.db,
            &format!("mail:email:{email}"),
            auth.mail_requests_per_email.window.as_secs_f64(),
        )
        .await?;
        let may_mail = recipient.hits <= auth.mail_requests_per_email.max as i32;
        let new_user = NewUser {
            id: Uuid::now_v7(),
            email: &email,
            display_name: &display_name,
            password_hash: &password_hash,
            role: Role::User,
            verified: false,
        };
        let pending = Pending { password_hash: &password_hash, display_name: &display_name };
        if users::insert(&self.db, &new_user).await? {
            let user = users::find_by_id(&self.db, new_user.id).await?.ok_or(Error::NotFound("user"))?;
            tracing::info!(user_id = %user.id, "account registered");
            return if may_mail { self.send_verification(&user, Some(pending)).await } else { Ok(()) };
        }

        let Some(existing) = users::find_by_email(&self.db, &email).await? else { return Ok(()) };
        if !may_mail {
            return Ok(());
        }
        if existing.email_verified_at.is_none() {
            // Resend links apply the newest registration's credentials too.
            users::replace_unverified_credentials(&self.db, existing.id, &password_hash, &display_name).await?;
            return self.send_verification(&existing, Some(pending)).await;
        }
        let content = templates::already_registered(
            &existing.display_name,
            &self.link("/login", None),
            &self.link("/forgot", None),
        )?;
        self.mail.send_in_background(OutgoingEmail::new(&self.mail.settings, mailbox(&existing), content));
        Ok(())
    }

    /// Consumes a verification token: applies the credentials it carries, marks the account
    /// verified and retires the account's other verification links.
    pub async fn verify_email(&self, token: &str) -> Result<()> {
        let token = require_token(token)?;
        let mut tx = self.db.begin().await?;
        let consumed = user_tokens::consume(&mut tx, &secrets::hash_token(token), Purpose::VerifyEmail)
            .await?
            .map_err(|r| token_error(r, "verify"))?;
        let user_id = consumed.user_id;
        let already_verified =
            users::find_by_id(&mut *tx, user_id).await?.is_some_and(|user| user.email_verified_at.is_some());
        if !already_verified {
            if let Some(hash) = &consumed.pending_password_hash {
                users::set_password(&mut *tx, user_id, hash).await?;
            }
            if let Some(name) = &consumed.pending_display_name {
                users::set_display_name(&mut *tx, user_id, name).await?;
            }
        }
        users::mark_verified(&mut *tx, user_id).await?;
        user_tokens::retire_all(&mut *tx, user_id, Purpose::VerifyEmail).await?;
        tx.commit().await?;
        tracing::info!(%user_id, "email verified");
        Ok(())
    }

    /// Sends a fresh verification link to an unverified account. Answers the same for any address.
    pub async fn resend_verification(&self, email: &str, client: &ClientInfo) -> Result<()> {
        let email = validate::email("email", email)?;
        let auth = &self.settings;
        self.throttle(&format!("mail:ip:{}", client.ip), auth.mail_requests_per_ip).await?;
        self.throttle(&format!("mail:email:{email}"), auth.mail_requests_per_email).await?;
        if let Some(user) = users::find_by_email(&self.db, &email).await?
            && user.email_verified_at.is_none()
        {
            self.send_verification(&user, None).await?;
        }
        Ok(())
    }
}

pub(super) fn token_error(rejection: Rejection, what: &'static str) -> Error {
    let (code, message) = match (rejection, what) {
        (Rejection::Unknown, "verify") => ("token_invalid", "this verification link is not valid; request a new one"),
        (Rejection::Used, "verify") => {
            ("token_used", "this verification link was already used; log in, or request a new link")
        }
        (Rejection::Expired, "verify") => ("token_expired", "this verification link has expired; request a new one"),
        (Rejection::Unknown, _) => ("token_invalid", "this password reset link is not valid; request a new one"),
        (Rejection::Used, _) => ("token_used", "this password reset link was already used; request a new one"),
        (Rejection::Expired, _) => ("token_expired", "this password reset link has expired; request a new one"),
    };
    Error::Token { code, message }
}

pub(super) fn require_token(token: &str) -> Result<&str> {
    if token.is_empty() || token.chars().count() > 200 {
        return Err(Error::invalid("token", "token is required; open the link from your email"));
    }
    Ok(token)
}
