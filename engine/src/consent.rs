//! Consent: the unsubscribe link every bulk email carries, what following it does, and the
//! owner's suppression list.
//!
//! A link names one ledger row (so the owner and the address it was sent to) and is signed with
//! the installation's key (HMAC-SHA-256, kept in the database so that every process shares it):
//! it cannot be guessed or forged, and it acts only on the list of the owner who sent that email.
//! `POST` to it unsubscribes at once without a session (RFC 8058 one-click); `GET` shows a page
//! that asks to confirm.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use borcelle_store::suppressions::{self, NewSuppression, Reason, Suppression};
use borcelle_store::{Owner, PgPool};
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use url::Url;
use uuid::Uuid;

use crate::{Error, Result};

/// How long an unsubscribe link works after its email was queued.
pub const LINK_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// The name of the links' key in the `signing_keys` table.
const KEY_NAME: &str = "unsubscribe-links";
/// What the signature covers besides the row id: a link of another purpose never verifies here.
const CONTEXT: &[u8] = b"borcelle unsubscribe v1\0";
/// Bytes of the signature kept in a link (128 bits).
const TAG_LEN: usize = 16;

/// Builds and checks unsubscribe links.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    base: Url,
    key: Vec<u8>,
}

impl std::fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeLinks").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl UnsubscribeLinks {
    /// Links under `public_url` (the address users reach Borcelle at), signed with the
    /// installation's key (created on first use).
    pub async fn load(db: &PgPool, public_url: Url) -> Result<Self> {
        let mut candidate = [0u8; 32];
        rand::rng().fill(&mut candidate);
        let key = suppressions::signing_key(db, KEY_NAME, &candidate).await?;
        Ok(Self::new(public_url, key))
    }

    pub fn new(public_url: Url, key: Vec<u8>) -> Self {
        Self { base: public_url, key }
    }

    fn mac(&self, row: Uuid) -> Hmac<Sha256> {
        // HMAC accepts a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(CONTEXT);
        mac.update(row.as_bytes());
        mac
    }

    /// The token of one ledger row: its id and the signature, base64url (43 characters).
    pub fn token(&self, row: Uuid) -> String {
        let tag = self.mac(row).finalize().into_bytes();
        let mut raw = Vec::with_capacity(16 + TAG_LEN);
        raw.extend_from_slice(row.as_bytes());
        raw.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The one-click link of one ledger row.
    pub fn link(&self, row: Uuid) -> String {
        let base = self.base.as_str().trim_end_matches('/');
        format!("{base}/unsubscribe/{}", self.token(row))
    }

    /// The ledger row a token names, when the signature is this installation's.
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if raw.len() != 16 + TAG_LEN {
            return None;
        }
        let row = Uuid::from_slice(&raw[..16]).ok()?;
        self.mac(row).verify_truncated_left(&raw[16..]).ok()?;
        Some(row)
    }
}

/// Whom a valid link is about, for its confirmation page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSubject {
    /// The address the email went to.
    pub email: String,
    /// Who sent it (the CRM user's display name).
    pub sender: String,
    /// Whether the address is already off that sender's list.
    pub already: bool,
}

/// Why a link does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this unsubscribe link is not valid: it may be incomplete; copy the whole link from the email")]
    Invalid,
    #[error("this unsubscribe link has expired; reply to the sender to be removed from their list")]
    Expired,
}

/// The ledger row a link names and whom it was for, once its signature and age are checked.
async fn resolve(
    db: &PgPool,
    links: &UnsubscribeLinks,
    token: &str,
) -> Result<Result<(Uuid, borcelle_store::messages::Recipient), LinkError>> {
    let Some(row) = links.verify(token) else { return Ok(Err(LinkError::Invalid)) };
    // The email (and its row) may have been deleted with its task: the link still proves who it was for
    // only while the row exists.
    let Some(recipient) = borcelle_store::messages::recipient(db, row).await? else {
        return Ok(Err(LinkError::Invalid));
    };
    let lifetime = chrono::Duration::from_std(LINK_LIFETIME).unwrap_or(chrono::Duration::MAX);
    if recipient.created_at + lifetime < Utc::now() {
        return Ok(Err(LinkError::Expired));
    }
    Ok(Ok((row, recipient)))
}

/// What a link is about, checking its signature and age.
pub async fn inspect(db: &PgPool, links: &UnsubscribeLinks, token: &str) -> Result<Result<LinkSubject, LinkError>> {
    let (_, recipient) = match resolve(db, links, token).await? {
        Ok(resolved) => resolved,
        Err(err) => return Ok(Err(err)),
    };
    let owner = Owner::new(recipient.owner_id);
    let already = suppressions::find(db, owner, &recipient.to_email).await?.is_some();
    Ok(Ok(LinkSubject { email: recipient.to_email, sender: recipient.owner_name, already }))
}

/// Follows a link: the address goes on the sending owner's suppression list at once (nothing to
/// confirm: RFC 8058). Following it again changes nothing (an address already on the list keeps
/// its first entry).
pub async fn unsubscribe(db: &PgPool, links: &UnsubscribeLinks, token: &str) -> Result<Result<LinkSubject, LinkError>> {
    let (row, recipient) = match resolve(db, links, token).await? {
        Ok(resolved) => resolved,
        Err(err) => return Ok(Err(err)),
    };
    let entry = NewSuppression {
        email: &recipient.to_email,
        reason: Reason::Unsubscribed,
        detail: Some("unsubscribe link"),
        message_id: Some(row),
    };
    if suppressions::add(db, Owner::new(recipient.owner_id), &entry).await? {
        tracing::info!(message = %row, "recipient unsubscribed");
    }
    Ok(Ok(LinkSubject { email: recipient.to_email, sender: recipient.owner_name, already: true }))
}

/// The owner's suppression list and its changes.
#[derive(Clone)]
pub struct Suppressions {
    pub db: PgPool,
}

/// Most entries one page lists.
pub const PAGE_MAX: i64 = 200;

impl Suppressions {
    /// A page of the owner's list, newest first; `before` continues after the last entry shown.
    pub async fn list(
        &self,
        owner: Owner,
        before: Option<(chrono::DateTime<Utc>, String)>,
        limit: i64,
    ) -> Result<Vec<Suppression>> {
        Ok(suppressions::list(&self.db, owner, before, limit.clamp(1, PAGE_MAX)).await?)
    }

    /// Whether (and why) the owner's list holds this address.
    pub async fn find(&self, owner: Owner, email: &str) -> Result<Option<Suppression>> {
        Ok(suppressions::find(&self.db, owner, &email.trim().to_lowercase()).await?)
    }

    /// The owner adds an address by hand. Returns the entry, and whether it is new (an address
    /// already there keeps its first reason).
    pub async fn add(&self, owner: Owner, email: &str, detail: Option<&str>) -> Result<(Suppression, bool)> {
        let email = crate::validate::email("email", email)?;
        let detail = match detail.map(str::trim).filter(|d| !d.is_empty()) {
            Some(detail) => Some(crate::validate::one_line("detail", detail, 1000)?),
            None => None,
        };
        let entry =
            NewSuppression { email: &email, reason: Reason::Manual, detail: detail.as_deref(), message_id: None };
        let added = suppressions::add(&self.db, owner, &entry).await?;
        let stored = suppressions::find(&self.db, owner, &email).await?.ok_or(Error::NotFound("suppression"))?;
        Ok((stored, added))
    }

    /// The owner's explicit re-subscription: the address may be mailed again.
    pub async fn remove(&self, owner: Owner, email: &str) -> Result<()> {
        if suppressions::remove(&self.db, owner, &email.trim().to_lowercase()).await? {
            Ok(())
        } else {
            Err(Error::NotFound("suppression"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn links() -> UnsubscribeLinks {
        UnsubscribeLinks::new(Url::parse("https://crm.example/").unwrap(), vec![7; 32])
    }

    #[test]
    fn a_token_names_its_row_and_nothing_else_verifies() {
        let links = links();
        let row = Uuid::new_v4();
        let token = links.token(row);
        assert_eq!(token.len(), 43);
        assert_eq!(links.verify(&token), Some(row));
        assert_eq!(links.link(row), format!("https://crm.example/unsubscribe/{token}"));
        // Another key, a changed row id, a changed signature, a truncated token: nothing.
        let other = UnsubscribeLinks::new(Url::parse("https://crm.example/").unwrap(), vec![8; 32]);
        assert_eq!(other.verify(&token), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[0] ^= 1;
        assert_eq!(links.verify(&URL_SAFE_NO_PAD.encode(&raw)), None);
        raw[0] ^= 1;
        raw[31] ^= 1;
        assert_eq!(links.verify(&URL_SAFE_NO_PAD.encode(&raw)), None);
        assert_eq!(links.verify(&token[..42]), None);
        assert_eq!(links.verify(""), None);
        assert_eq!(links.verify("not base64 at all!"), None);
    }

    proptest::proptest! {
        #[test]
        fn no_random_token_verifies(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(links().verify(&URL_SAFE_NO_PAD.encode(&raw)), None);
        }
    }
}
