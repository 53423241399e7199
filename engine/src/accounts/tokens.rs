//! Personal API tokens, and verified accounts made from the command line.

use borcelle_store::users::{self, NewUser, Role};
use borcelle_store::{Owner, PgPool, api_tokens};
use uuid::Uuid;

use super::{Accounts, password, secrets};
use crate::{Error, Result, validate};

/// A new API token: its secret is shown once, only its hash is kept.
pub struct CreatedToken {
    pub token: api_tokens::ApiToken,
    pub secret: String,
}

pub const API_TOKEN_PREFIX: &str = "bor_";

impl Accounts {
    /// Creates a token for the user; its secret is in the answer only.
    pub async fn create_api_token(&self, user: Owner, name: &str) -> Result<CreatedToken> {
        let name = validate::label("name", name, 100)?;
        let secret = format!("{API_TOKEN_PREFIX}{}", secrets::random_token());
        let prefix: String = secret.chars().take(API_TOKEN_PREFIX.len() + 6).collect();
        let hash = secrets::hash_token(&secret);
        let token = api_tokens::insert(&self.db, Uuid::now_v7(), user.id(), &name, &hash, &prefix).await?;
        Ok(CreatedToken { token, secret })
    }
}

/// Creates a verified account from the command line (`borcelle admin create-user`).
pub async fn create_verified_user(
    db: &PgPool,
    email: &str,
    display_name: &str,
    password: String,
    role: Role,
) -> Result<Uuid> {
    let email = validate::email("email", email)?;
    let display_name = validate::display_name("name", display_name)?;
    validate::password("password", &password)?;
    let password_hash = password::hash(password).await?;
    let id = Uuid::now_v7();
    let user =
        NewUser { id, email: &email, display_name: &display_name, password_hash: &password_hash, role, verified: true };
    if !users::insert(db, &user).await? {
        return Err(Error::invalid("email", format!("an account with {email} already exists")));
    }
    Ok(id)
}
