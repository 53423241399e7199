#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use secrecy::{ExposeSecret as _, SecretString};

use super::*;
use crate::{Mailbox, OutgoingEmail, Unsubscribe};

/// One RSA key for every test: making one is slow in an unoptimised build.
fn rsa_key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key(DkimAlgorithm::Rsa).unwrap())
}

fn settings(pem: &str, domain: &str) -> DkimSettings {
    DkimSettings { selector: "s1".to_owned(), domain: domain.to_owned(), key: DkimKey::Pem(SecretString::from(pem)) }
}

fn load(pem: &str) -> Result<DkimSigner, DkimError> {
    DkimSigner::load(&settings(pem, "example.com"), "news@example.com")
}

fn reason(result: Result<DkimSigner, DkimError>) -> String {
    match result {
        Ok(signer) => panic!("loaded: {signer:?}"),
        Err(err) => err.to_string(),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    rsa::pkcs8::der::pem::encode_string(label, LineEnding::LF, der).unwrap()
}

#[test]
fn an_rsa_key_loads_from_pkcs8_and_from_pkcs1_pem_with_the_same_public_key() {
    let generated = rsa_key();
    let pkcs8 = generated.private_key_pem.expose_secret();
    assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", &pkcs8[..40]);
    let from_pkcs8 = load(pkcs8).unwrap();
    assert_eq!(from_pkcs8.public_key(), &generated.public_key);
    assert_eq!(from_pkcs8.public_key().algorithm(), DkimAlgorithm::Rsa);

    let private = rsa::RsaPrivateKey::from_pkcs8_pem(pkcs8).unwrap();
    let pkcs1 = private.to_pkcs1_pem(LineEnding::CRLF).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let from_pkcs1 = load(&format!("\n  {}\n", pkcs1.as_str())).unwrap();
    assert_eq!(from_pkcs1.public_key(), &generated.public_key);

    let spki = rsa::RsaPublicKey::from(&private).to_public_key_der().unwrap();
    let expected = format!("v=DKIM1; k=rsa; p={}", base64::engine::general_purpose::STANDARD.encode(spki.as_bytes()));
    assert_eq!(generated.public_key.txt_value(), expected);
}

#[test]
fn an_ed25519_key_loads_from_pkcs8_pem_and_publishes_its_raw_32_bytes() {
    let generated = generate_key(DkimAlgorithm::Ed25519).unwrap();
    let signer = load(generated.private_key_pem.expose_secret()).unwrap();
    assert_eq!(signer.public_key(), &generated.public_key);
    assert_eq!(signer.public_key().algorithm(), DkimAlgorithm::Ed25519);
    let value = generated.public_key.txt_value();
    let p = value.strip_prefix("v=DKIM1; k=ed25519; p=").unwrap();
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(p).unwrap().len(), 32);
}

#[test]
fn a_key_file_is_read_and_a_missing_one_is_named() {
    let dir = std::env::temp_dir().join(format!("borcelle-dkim-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dkim.pem");
    let generated = generate_key(DkimAlgorithm::Ed25519).unwrap();
    std::fs::write(&path, generated.private_key_pem.expose_secret()).unwrap();
    let from_file = DkimSettings { key: DkimKey::File(path.clone()), ..settings("", "example.com") };
    let signer = DkimSigner::load(&from_file, "news@example.com").unwrap();
    assert_eq!(signer.public_key(), &generated.public_key);

    let missing = DkimSettings { key: DkimKey::File(dir.join("missing.pem")), ..settings("", "example.com") };
    let err = DkimSigner::load(&missing, "news@example.com").unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn what_is_not_a_usable_private_key_is_refused_with_the_reason() {
    assert!(reason(load("hello")).contains("not a PEM private key"));
    assert!(reason(load("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")).contains("PKCS#8 key"));
    let public = rsa_key().public_key.txt_value();
    let spki = base64::engine::general_purpose::STANDARD.decode(public.rsplit_once("p=").unwrap().1).unwrap();
    assert!(reason(load(&pem("PUBLIC KEY", &spki))).contains("\"PUBLIC KEY\" is not a DKIM signing key"));
    assert!(reason(load(&pem("ENCRYPTED PRIVATE KEY", &spki))).contains("encrypted"));
    // A PKCS#8 key of another algorithm (the OID of P-256 EC keys).
    let info = rsa::pkcs8::PrivateKeyInfo::new(
        rsa::pkcs8::AlgorithmIdentifierRef {
            oid: rsa::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
            parameters: None,
        },
        &[4; 32],
    );
    let der = rsa::pkcs8::der::Encode::to_der(&info).unwrap();
    assert!(reason(load(&pem("PRIVATE KEY", &der))).contains("1.2.840.10045.2.1"));
    // RFC 8301: no RSA key under 1024 bits.
    let short = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 512).unwrap();
    let short = short.to_pkcs1_pem(LineEnding::LF).unwrap();
    assert!(reason(load(&short)).contains("512 bits is too short"));
}

#[test]
fn the_signing_domain_must_be_the_from_domain_or_a_parent_of_it() {
    let pem = generate_key(DkimAlgorithm::Ed25519).unwrap().private_key_pem;
    let pem = pem.expose_secret();
    for domain in ["mail.example.com", "example.com", "Example.COM."] {
        let signer = DkimSigner::load(&settings(pem, domain), "news@mail.example.com").unwrap();
        assert_eq!(signer.domain(), domain.trim_end_matches('.').to_ascii_lowercase());
    }
    for domain in ["other.com", "ample.com", "sub.mail.example.com", "com.example"] {
        let err = DkimSigner::load(&settings(pem, domain), "news@mail.example.com").unwrap_err();
        assert!(matches!(err, DkimError::Misaligned { .. }), "{domain}: {err}");
        assert!(err.to_string().contains("does not align with the From address news@mail.example.com"), "{err}");
    }
}

#[test]
fn selectors_and_domains_must_be_dns_names() {
    let pem = generate_key(DkimAlgorithm::Ed25519).unwrap().private_key_pem;
    let pem = pem.expose_secret();
    for selector in ["s1", "2026-01", "mail.s1"] {
        let with = DkimSettings { selector: selector.to_owned(), ..settings(pem, "example.com") };
        assert_eq!(DkimSigner::load(&with, "a@example.com").unwrap().selector(), selector);
    }
    for selector in ["", "bad_selector", "a b", "s1\r\nBcc: x@y", "-s1", "a..b"] {
        let with = DkimSettings { selector: selector.to_owned(), ..settings(pem, "example.com") };
        assert!(matches!(DkimSigner::load(&with, "a@example.com"), Err(DkimError::Selector(_))), "{selector:?}");
    }
    let err = DkimSigner::load(&settings(pem, "exämple.com"), "a@exämple.com").unwrap_err();
    assert!(matches!(err, DkimError::Domain(_)), "{err}");
}

#[test]
fn the_dns_record_is_split_into_strings_of_at_most_255_bytes() {
    let public = &rsa_key().public_key;
    let record = public.dns_record("s1", "example.com.");
    let (name, strings) = record.split_once(" IN TXT ").unwrap();
    assert_eq!(name, "s1._domainkey.example.com.");
    let parts: Vec<&str> = strings.split("\" \"").map(|s| s.trim_matches('"')).collect();
    assert!(parts.len() >= 2, "an RSA-2048 key needs two strings: {record}");
    assert!(parts.iter().all(|part| part.len() <= 255), "{record}");
    assert_eq!(parts.concat(), public.txt_value());
    let ed25519 = generate_key(DkimAlgorithm::Ed25519).unwrap().public_key.dns_record("s2", "example.org");
    assert!(ed25519.starts_with("s2._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p="), "{ed25519}");
    assert_eq!(ed25519.matches('"').count(), 2, "one string: {ed25519}");
}

fn email() -> OutgoingEmail {
    OutgoingEmail {
        from: Mailbox { name: Some("Borcelle".to_owned()), email: "news@example.com".to_owned() },
        to: Mailbox { name: None, email: "ada@example.org".to_owned() },
        reply_to: Some(Mailbox { name: None, email: "owner@example.com".to_owned() }),
        subject: "Hello".to_owned(),
        text: "Hi Ada".to_owned(),
        html: "<p>Hi Ada</p>".to_owned(),
        message_id: "<1@example.com>".to_owned(),
        date: SystemTime::now(),
        attachments: Vec::new(),
        unsubscribe: Some(Unsubscribe { https: "https://crm.example.com/u/abc".to_owned(), mailto: None }),
        ledger_id: None,
        envelope_from: None,
    }
}

#[test]
fn a_signed_message_covers_the_required_headers_and_writes_content_type_once() {
    let signer = load(generate_key(DkimAlgorithm::Ed25519).unwrap().private_key_pem.expose_secret()).unwrap();
    let (_, bytes) = crate::smtp::build(&email(), Some(&signer)).unwrap();
    let raw = String::from_utf8(bytes).unwrap();
    let headers = &raw[..raw.find("\r\n\r\n").unwrap()];
    let unfolded = headers.replace("\r\n ", " ").replace("\r\n\t", " ");
    let signature = unfolded.lines().find_map(|line| line.strip_prefix("DKIM-Signature: ")).expect(&raw);
    assert!(signature.contains("a=ed25519-sha256; d=example.com; s=s1; c=relaxed/relaxed;"), "{signature}");
    let h = signature.split("; ").find_map(|tag| tag.strip_prefix("h=")).unwrap();
    assert_eq!(
        h,
        "from:to:subject:date:message-id:reply-to:mime-version:content-type:list-unsubscribe:list-unsubscribe-post"
    );
    let content_types = unfolded.lines().filter(|line| line.to_ascii_lowercase().starts_with("content-type:")).count();
    assert_eq!(content_types, 1, "{headers}");
    assert!(unfolded.contains("List-Unsubscribe: <https://crm.example.com/u/abc>\r\n"), "{headers}");
    assert!(unfolded.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), "{headers}");
}

/// The CPU time of one signature (run with `--release -- --ignored --nocapture` for real numbers).
#[test]
#[ignore = "a measurement, not a check"]
fn signature_cost() {
    let email = email();
    for (name, pem) in [
        ("rsa-2048", rsa_key().private_key_pem.clone()),
        ("ed25519", generate_key(DkimAlgorithm::Ed25519).unwrap().private_key_pem),
    ] {
        let signer = load(pem.expose_secret()).unwrap();
        let rounds = 200;
        let mut unsigned = Duration::ZERO;
        let mut signed = Duration::ZERO;
        for _ in 0..rounds {
            let started = Instant::now();
            std::hint::black_box(crate::smtp::build(&email, None).unwrap());
            unsigned += started.elapsed();
            let started = Instant::now();
            std::hint::black_box(crate::smtp::build(&email, Some(&signer)).unwrap());
            signed += started.elapsed();
        }
        println!(
            "{name}: build {:?}, build and sign {:?}, signature {:?} per message",
            unsigned / rounds,
            signed / rounds,
            signed.saturating_sub(unsigned) / rounds
        );
    }
}

/// An independent verifier (Stalwart's mail-auth) with the key published as DNS would serve it.
fn verifies(raw: &[u8], public: &DkimPublicKey, selector: &str) -> Result<(), String> {
    use mail_auth::common::parse::TxtRecordParser as _;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

    struct Published(String, Txt);
    impl ResolverCache<String, Txt> for Published {
        fn get<Q>(&self, name: &Q) -> Option<Txt>
        where
            String: std::borrow::Borrow<Q>,
            Q: std::hash::Hash + Eq + ?Sized,
        {
            use std::borrow::Borrow as _;
            (self.0.borrow() == name).then(|| self.1.clone())
        }
        fn remove<Q>(&self, _: &Q) -> Option<Txt>
        where
            String: std::borrow::Borrow<Q>,
            Q: std::hash::Hash + Eq + ?Sized,
        {
            None
        }
        fn insert(&self, _: String, _: Txt, _: std::time::Instant) {}
    }

    let key = DomainKey::parse(public.txt_value().as_bytes()).map_err(|err| format!("{err:?}"))?;
    // The verifier asks for the fully qualified name; a miss would go to real DNS.
    let records = Published(format!("{selector}._domainkey.example.com."), Txt::from(key));
    let message = AuthenticatedMessage::parse(raw).ok_or("an unparsable message")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outputs = runtime.block_on(async {
        let authenticator = MessageAuthenticator::new_cloudflare().unwrap();
        authenticator.verify_dkim(Parameters::new(&message).with_txt_cache(&records)).await
    });
    match outputs.as_slice() {
        [one] if one.result() == &DkimResult::Pass => Ok(()),
        other => Err(format!("{:?}", other.iter().map(|o| o.result().clone()).collect::<Vec<_>>())),
    }
}

fn ed25519_key() -> &'static GeneratedKey {
    static KEY: OnceLock<GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| generate_key(DkimAlgorithm::Ed25519).unwrap())
}

/// Text as users write it: any script, runs of spaces and tabs, trailing whitespace, blank lines
/// (also at the end), long lines and lines that start with a dot or "From ".
fn user_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        "\\PC{1,20}",
        Just(" ".to_owned()),
        Just("  \t ".to_owned()),
        Just("\n".to_owned()),
        Just(" \n\n".to_owned()),
        Just("\n.".to_owned()),
        Just("\nFrom ".to_owned()),
        "[a-z]{80,200}",
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Whatever a user writes as subject, text and names, the signed message verifies at an
    /// independent verifier, with either kind of key, with or without unsubscribe headers.
    #[test]
    fn every_signed_message_verifies_at_an_independent_verifier(
        subject in "\\PC{0,120}",
        text in user_text(),
        name in "\\PC{0,40}",
        rsa in proptest::bool::ANY,
        bulk in proptest::bool::ANY,
    ) {
        let (key, selector) = if rsa { (rsa_key(), "s-rsa") } else { (ed25519_key(), "s-ed") };
        let with = DkimSettings { selector: selector.to_owned(), ..settings(key.private_key_pem.expose_secret(), "example.com") };
        let signer = DkimSigner::load(&with, "news@example.com").unwrap();
        let html = format!("<p>{}</p>", text.replace('<', "&lt;"));
        let email = OutgoingEmail {
            subject,
            to: Mailbox { name: Some(name), email: "ada@example.org".to_owned() },
            text,
            html,
            unsubscribe: bulk.then(|| Unsubscribe { https: "https://crm.example.com/u/abc".to_owned(), mailto: None }),
            ..email()
        };
        let (_, raw) = crate::smtp::build(&email, Some(&signer)).unwrap();
        proptest::prop_assert!(verifies(&raw, &key.public_key, selector).is_ok(), "{:?}: {}", verifies(&raw, &key.public_key, selector), String::from_utf8_lossy(&raw));
        // One changed byte in the body breaks it.
        let text_at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut changed = raw.clone();
        if let Some(at) = changed[text_at..].iter().position(|b| b.is_ascii_alphanumeric()) {
            changed[text_at + at] = if changed[text_at + at] == b'x' { b'y' } else { b'x' };
            proptest::prop_assert!(verifies(&changed, &key.public_key, selector).is_err());
        }
    }
}
