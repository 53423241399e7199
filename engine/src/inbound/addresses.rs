//! The addresses mail comes back to: `reply+<token>@<inbound domain>` in `Reply-To`, and
//! `bounces+<token>@<inbound domain>` as the envelope sender (VERP). A token names one ledger row
//! and is signed with the installation's key (HMAC-SHA-256, kept in the database so that every
//! process shares it): it cannot be guessed or forged, and the receiver refuses any other address
//! at `RCPT`.
//!
//! Tokens are lower-case base32 (RFC 4648, no padding): mail systems may change the case of a
//! local part, and `+`, `-` and `.` have meanings of their own in some of them. 16 bytes of row id
//! and 10 of signature (80 bits) make 42 characters; with `unsubscribe+`, the longest prefix, the local part stays under
//! the 64 characters SMTP allows.

use borcelle_store::PgPool;
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use uuid::Uuid;

use crate::Result;

/// The name of the addresses' key in the `signing_keys` table.
const KEY_NAME: &str = "inbound-addresses";
/// What the signature covers besides the row id and the kind.
const CONTEXT: &[u8] = b"borcelle inbound v1\0";
/// Bytes of the signature kept in a token (80 bits).
const TAG_LEN: usize = 10;

/// What an address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A person answering a message (`Reply-To`).
    Reply,
    /// A mail server reporting on a message (the envelope sender, where DSNs go).
    Bounce,
    /// The `mailto:` of `List-Unsubscribe`: any mail to it unsubscribes the recipient.
    Unsubscribe,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Reply => "reply",
            Kind::Bounce => "bounces",
            Kind::Unsubscribe => "unsubscribe",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Kind::Reply => b'r',
            Kind::Bounce => b'b',
            Kind::Unsubscribe => b'u',
        }
    }
}

/// Builds and reads the reply and bounce addresses of one installation.
#[derive(Clone)]
pub struct Addresses {
    domain: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Addresses").field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl Addresses {
    /// Addresses in `domain` (lower case), signed with the installation's key (created on first use).
    pub async fn load(db: &PgPool, domain: &str) -> Result<Self> {
        let mut candidate = [0u8; 32];
        rand::rng().fill(&mut candidate);
        let key = borcelle_store::suppressions::signing_key(db, KEY_NAME, &candidate).await?;
        Ok(Self::new(domain, key))
    }

    pub fn new(domain: &str, key: Vec<u8>) -> Self {
        Self { domain: domain.trim().trim_end_matches('.').to_ascii_lowercase(), key }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn mac(&self, kind: Kind, row: Uuid) -> Hmac<Sha256> {
        // HMAC accepts a key of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(CONTEXT);
        mac.update(&[kind.byte()]);
        mac.update(row.as_bytes());
        mac
    }

    /// The token of one ledger row for one kind of address.
    pub fn token(&self, kind: Kind, row: Uuid) -> String {
        let tag = self.mac(kind, row).finalize().into_bytes();
        let mut raw = Vec::with_capacity(16 + TAG_LEN);
        raw.extend_from_slice(row.as_bytes());
        raw.extend_from_slice(&tag[..TAG_LEN]);
        BASE32_NOPAD.encode(&raw).to_ascii_lowercase()
    }

    /// `reply+<token>@domain` or `bounces+<token>@domain`.
    pub fn address(&self, kind: Kind, row: Uuid) -> String {
        format!("{}+{}@{}", kind.prefix(), self.token(kind, row), self.domain)
    }

    /// The kind and ledger row an address names, when it is one of this installation's (its
    /// domain, a known prefix, a token it signed); `None` for every other address.
    pub fn parse(&self, address: &str) -> Option<(Kind, Uuid)> {
        let address = address.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, domain) = address.rsplit_once('@')?;
        if !domain.trim_end_matches('.').eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let (prefix, token) = local.split_once('+')?;
        let kind = [Kind::Reply, Kind::Bounce, Kind::Unsubscribe]
            .into_iter()
            .find(|kind| prefix.eq_ignore_ascii_case(kind.prefix()))?;
        let raw = BASE32_NOPAD.decode(token.to_ascii_uppercase().as_bytes()).ok()?;
        if raw.len() != 16 + TAG_LEN {
            return None;
        }
        let row = Uuid::from_slice(&raw[..16]).ok()?;
        self.mac(kind, row).verify_truncated_left(&raw[16..]).ok()?;
        Some((kind, row))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn addresses() -> Addresses {
        Addresses::new("In.Example.COM.", b"a key of the installation".to_vec())
    }

    proptest! {
        #[test]
        fn every_row_round_trips_in_any_case(bytes in any::<[u8; 16]>(), upper in any::<bool>()) {
            let row = Uuid::from_bytes(bytes);
            let a = addresses();
            for kind in [Kind::Reply, Kind::Bounce, Kind::Unsubscribe] {
                let address = a.address(kind, row);
                let (local, _) = address.split_once('@').unwrap();
                prop_assert!(local.len() <= 64, "{address}");
                let seen = if upper { address.to_ascii_uppercase() } else { address.clone() };
                prop_assert_eq!(a.parse(&seen), Some((kind, row)));
                prop_assert_eq!(a.parse(&format!("<{seen}>")), Some((kind, row)));
            }
        }

        #[test]
        fn a_changed_character_never_names_a_row(bytes in any::<[u8; 16]>(), at in 0usize..42, with in 0u8..32) {
            let a = addresses();
            let row = Uuid::from_bytes(bytes);
            let token = a.token(Kind::Reply, row);
            let mut changed: Vec<u8> = token.clone().into_bytes();
            let alphabet = b"abcdefghijklmnopqrstuvwxyz234567";
            changed[at] = alphabet[usize::from(with)];
            let changed = String::from_utf8(changed).unwrap();
            prop_assume!(changed != token);
            prop_assert_eq!(a.parse(&format!("reply+{changed}@in.example.com")), None);
        }
    }

    #[test]
    fn other_addresses_kinds_domains_and_keys_are_refused() {
        let a = addresses();
        let row = Uuid::now_v7();
        let token = a.token(Kind::Reply, row);
        assert_eq!(a.parse(&format!("reply+{token}@in.example.com")), Some((Kind::Reply, row)));
        // The token of a reply does not open the bounce address, nor another domain, nor another key.
        assert_eq!(a.parse(&format!("bounces+{token}@in.example.com")), None);
        assert_eq!(a.parse(&format!("unsubscribe+{token}@in.example.com")), None);
        assert_eq!(a.parse(&format!("reply+{token}@example.com")), None);
        let other = Addresses::new("in.example.com", b"another installation".to_vec());
        assert_eq!(other.parse(&format!("reply+{token}@in.example.com")), None);
        for address in
            ["postmaster@in.example.com", "reply@in.example.com", "reply+@in.example.com", "someone@gmail.com", "", "@"]
        {
            assert_eq!(a.parse(address), None, "{address}");
        }
    }
}
