//! DKIM keys: PEM in (RSA as PKCS#1 or PKCS#8, Ed25519 as PKCS#8), new keys out, and the DNS
//! TXT record of the public half. Keys are read and made with the RustCrypto crates and handed to
//! ring, which signs (ring takes RSA as PKCS#1 DER and Ed25519 as its 32-byte seed).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding, PrivateKeyInfo};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};

use super::DkimError;
use super::sign::SigningKey;

/// RFC 8301: signers must not use RSA keys shorter than 1024 bits.
const RSA_MIN_BITS: usize = 1024;
/// The size `borcelle dkim generate` makes (RFC 8301 recommends at least 2048).
const RSA_GENERATED_BITS: usize = 2048;

/// DNS TXT records are made of strings of at most 255 bytes each.
const TXT_STRING_MAX: usize = 255;

/// The signature algorithm of a key (`k=` in DNS, `a=` in the signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

impl DkimAlgorithm {
    /// The name in `k=`.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// A public key as DNS publishes it: for RSA the DER SubjectPublicKeyInfo, for Ed25519 the raw
/// 32 bytes (RFC 8463).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimPublicKey {
    algorithm: DkimAlgorithm,
    bytes: Vec<u8>,
}

impl DkimPublicKey {
    pub fn algorithm(&self) -> DkimAlgorithm {
        self.algorithm
    }

    /// The TXT record's value: `v=DKIM1; k=rsa; p=<base64>`.
    pub fn txt_value(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.as_str(), BASE64.encode(&self.bytes))
    }

    /// The record in zone-file form, its value split into strings of at most 255 bytes:
    /// `<selector>._domainkey.<domain>. IN TXT "v=DKIM1; k=rsa; p=…" "…"`.
    pub fn dns_record(&self, selector: &str, domain: &str) -> String {
        let value = self.txt_value();
        // The value is ASCII (base64 and fixed text), so byte chunks are whole characters.
        let strings: Vec<String> = value
            .as_bytes()
            .chunks(TXT_STRING_MAX)
            .map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk)))
            .collect();
        format!("{}. IN TXT {}", record_name(selector, domain), strings.join(" "))
    }
}

/// `<selector>._domainkey.<domain>`, where receivers look the key up.
fn record_name(selector: &str, domain: &str) -> String {
    format!("{}._domainkey.{}", selector, domain.trim_end_matches('.'))
}

/// A new key pair.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: SecretString,
    pub public_key: DkimPublicKey,
}

/// Makes an RSA-2048 or an Ed25519 key from the operating system's random source.
pub fn generate_key(algorithm: DkimAlgorithm) -> Result<GeneratedKey, DkimError> {
    let generate = |reason: String| DkimError::Generate(reason);
    let secret = match algorithm {
        DkimAlgorithm::Rsa => Secret::Rsa(Box::new(
            RsaPrivateKey::new(&mut OsRng, RSA_GENERATED_BITS).map_err(|err| generate(err.to_string()))?,
        )),
        DkimAlgorithm::Ed25519 => Secret::Ed25519(Box::new(ed25519_dalek::SigningKey::generate(&mut OsRng))),
    };
    let pem = match &secret {
        Secret::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
        // PKCS#8 v1, the private key alone, as `openssl genpkey` writes it: OpenSSL 3.0 cannot
        // read the v2 form (with the public key) that ed25519-dalek writes by default.
        Secret::Ed25519(key) => {
            let v1 = ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.to_bytes(), public_key: None };
            ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&v1, LineEnding::LF)
        }
    }
    .map_err(|err| generate(err.to_string()))?;
    let public_key = secret.public_key().map_err(generate)?;
    Ok(GeneratedKey { private_key_pem: SecretString::from(pem.as_str()), public_key })
}

/// A private key read from PEM.
pub(super) struct ParsedKey {
    secret: Secret,
    pub(super) public_key: DkimPublicKey,
}

enum Secret {
    Rsa(Box<RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl Secret {
    fn public_key(&self) -> Result<DkimPublicKey, String> {
        Ok(match self {
            Secret::Rsa(key) => DkimPublicKey {
                algorithm: DkimAlgorithm::Rsa,
                bytes: RsaPublicKey::from(key.as_ref())
                    .to_public_key_der()
                    .map_err(|err| format!("encoding the public key: {err}"))?
                    .into_vec(),
            },
            Secret::Ed25519(key) => {
                DkimPublicKey { algorithm: DkimAlgorithm::Ed25519, bytes: key.verifying_key().to_bytes().to_vec() }
            }
        })
    }
}

impl ParsedKey {
    /// The key as the signer uses it (aws-lc-rs for RSA, ring for Ed25519).
    pub(super) fn signing_key(&self) -> Result<SigningKey, String> {
        match &self.secret {
            Secret::Rsa(key) => {
                let der = key.to_pkcs1_der().map_err(|err| format!("re-encoding as PKCS#1: {err}"))?;
                let pair = aws_lc_rs::signature::RsaKeyPair::from_der(der.as_bytes())
                    .map_err(|err| format!("the RSA key cannot sign: {err}"))?;
                Ok(SigningKey::Rsa { pair, rng: aws_lc_rs::rand::SystemRandom::new() })
            }
            Secret::Ed25519(key) => {
                let seed = Zeroizing::new(key.to_bytes());
                let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
                    .map_err(|err| format!("the Ed25519 key cannot sign: {err}"))?;
                Ok(SigningKey::Ed25519(pair))
            }
        }
    }
}

/// Reads an RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) private key from PEM.
pub(super) fn parse(pem: &str) -> Result<ParsedKey, String> {
    let (label, der) = rsa::pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|err| {
        format!(
            "not a PEM private key ({err}): expected -----BEGIN PRIVATE KEY----- (PKCS#8) or -----BEGIN RSA PRIVATE KEY----- (PKCS#1)"
        )
    })?;
    // Kept in a zeroized buffer from here on: the DER is the private key.
    let der = secrecy::SecretSlice::from(der);
    let der = der.expose_secret();
    let secret = match label {
        "RSA PRIVATE KEY" => {
            Secret::Rsa(Box::new(RsaPrivateKey::from_pkcs1_der(der).map_err(|err| format!("PKCS#1 RSA key: {err}"))?))
        }
        "PRIVATE KEY" => {
            let info = PrivateKeyInfo::try_from(der).map_err(|err| format!("PKCS#8 key: {err}"))?;
            if info.algorithm.oid == rsa::pkcs1::ALGORITHM_OID {
                Secret::Rsa(Box::new(RsaPrivateKey::try_from(info).map_err(|err| format!("PKCS#8 RSA key: {err}"))?))
            } else if info.algorithm.oid == ed25519_dalek::pkcs8::ALGORITHM_OID {
                Secret::Ed25519(Box::new(
                    ed25519_dalek::SigningKey::from_pkcs8_der(der)
                        .map_err(|err| format!("PKCS#8 Ed25519 key: {err}"))?,
                ))
            } else {
                return Err(format!(
                    "a PKCS#8 key of algorithm {} cannot sign DKIM: use an RSA or an Ed25519 key",
                    info.algorithm.oid
                ));
            }
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err("the key is encrypted: give it unencrypted (openssl pkey -in KEY -out PLAIN)".to_owned());
        }
        other => {
            return Err(format!(
                "a PEM \"{other}\" is not a DKIM signing key: give an RSA (PKCS#1 or PKCS#8) or an Ed25519 (PKCS#8) private key"
            ));
        }
    };
    if let Secret::Rsa(key) = &secret {
        let bits = key.size() * 8;
        if bits < RSA_MIN_BITS {
            return Err(format!(
                "an RSA key of {bits} bits is too short: DKIM needs at least {RSA_MIN_BITS} (2048 advised)"
            ));
        }
    }
    let public_key = secret.public_key()?;
    Ok(ParsedKey { secret, public_key })
}
