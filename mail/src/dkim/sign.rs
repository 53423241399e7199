//! The DKIM signature itself (RFC 6376 §3.5–3.7, relaxed/relaxed), over a message as it goes on
//! the wire, with aws-lc-rs's RSA and ring's Ed25519. lettre's own signer uses the `rsa` crate,
//! whose RSA-2048 signatures held delivery at 76 % of unsigned mail in the consent benchmark; ring's
//! took 0.7 ms of CPU each, which held signed delivery near 1,300 emails/s at wire speed; aws-lc's
//! assembly makes them in well under half that (BENCHMARKS.md).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use memchr::memmem;
use ring::digest::{Context, SHA256};
use ring::signature::Ed25519KeyPair;
use std::sync::LazyLock;

/// Header lines are folded to stay within RFC 5322's recommended 78 characters.
const LINE: usize = 78;

/// A private key ready to sign.
pub(super) enum SigningKey {
    Rsa { pair: RsaKeyPair, rng: SystemRandom },
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa { .. } => "rsa-sha256",
            SigningKey::Ed25519(_) => "ed25519-sha256",
        }
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            SigningKey::Rsa { pair, rng } => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, rng, data, &mut signature)
                    .map_err(|_| "the RSA signature failed".to_owned())?;
                Ok(signature)
            }
            // RFC 8463 §3: Ed25519 signs the SHA-256 hash of the data.
            SigningKey::Ed25519(pair) => Ok(pair.sign(ring::digest::digest(&SHA256, data).as_ref()).as_ref().to_vec()),
        }
    }
}

/// What a signature names: `d=`, `s=`, and the headers it covers (`h=`, lower case).
pub(super) struct Signing<'a> {
    pub key: &'a SigningKey,
    pub domain: &'a str,
    pub selector: &'a str,
    pub headers: &'a [&'a str],
    /// `t=`, seconds since the epoch.
    pub timestamp: u64,
}

/// The `DKIM-Signature` header line (folded, ending in CRLF) for `message`, a whole RFC 5322
/// message with CRLF line ends. Every header of `headers` is named in `h=`, present or not: an
/// absent one is signed as absent, so it cannot be added on the way.
pub(super) fn signature_header(signing: &Signing<'_>, message: &[u8]) -> Result<String, String> {
    let (head, body) = split(message);
    let fields = fields(head);

    let mut body_hash = Context::new(&SHA256);
    relaxed_body(body, &mut body_hash);
    let bh = BASE64.encode(body_hash.finish());

    let names: Vec<String> = signing.headers.iter().map(|name| name.to_ascii_lowercase()).collect();
    let mut value = Folded::new("DKIM-Signature: ");
    value.tag(&format!("v=1; a={};", signing.key.algorithm()));
    value.tag(&format!("d={};", signing.domain));
    value.tag(&format!("s={};", signing.selector));
    value.tag("c=relaxed/relaxed;");
    value.tag("q=dns/txt;");
    value.tag(&format!("t={};", signing.timestamp));
    value.tag(&format!("h={};", names.join(":")));
    value.tag(&format!("bh={bh};"));
    value.tag("b=");

    // §3.7: the signed headers, each the last of its name (verifiers take them bottom-up), then
    // the signature's own header with an empty b=, without a final CRLF.
    let mut data = Vec::with_capacity(head.len() + value.text.len());
    for name in &names {
        if let Some(field) = fields.iter().rev().find(|field| field.name.eq_ignore_ascii_case(name)) {
            relaxed_header(name, field.value, &mut data);
            data.extend_from_slice(b"\r\n");
        }
    }
    let (_, own_value) = value.text.split_once(':').ok_or("no colon in the signature header")?;
    relaxed_header("dkim-signature", own_value.as_bytes(), &mut data);

    let b = BASE64.encode(signing.key.sign(&data)?);
    value.base64(&b);
    value.text.push_str("\r\n");
    Ok(value.text)
}

/// The header block (without the blank line) and the body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    match memmem::find(message, b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

struct Field<'a> {
    name: &'a str,
    /// Everything after the colon, folding included, without the final CRLF.
    value: &'a [u8],
}

/// The header fields of a header block, continuation lines joined to their field.
fn fields(head: &[u8]) -> Vec<Field<'_>> {
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < head.len() {
        // The end of this physical line.
        let end = crlf(head, at).unwrap_or(head.len());
        let next = (end + 2).min(head.len());
        let continued = head.get(next).is_some_and(|&b| b == b' ' || b == b'\t');
        if !continued {
            let field = &head[start..end];
            if let Some(colon) = field.iter().position(|&b| b == b':')
                && let Ok(name) = std::str::from_utf8(&field[..colon])
            {
                fields.push(Field { name: name.trim_end(), value: &field[colon + 1..] });
            }
            start = next;
        }
        at = next;
    }
    fields
}

/// §3.4.2: the name in lower case, the value unfolded, runs of whitespace as one space, none at
/// either end, and no whitespace around the colon.
fn relaxed_header(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
    out.push(b':');
    let mut space = false;
    let mut written = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && written {
                    out.push(b' ');
                }
                space = false;
                written = true;
                out.push(b);
            }
        }
    }
}

/// §3.4.4: each line without trailing whitespace and with inner runs of whitespace as one space,
/// empty lines at the end removed, every line ending in CRLF; an empty body hashes as nothing.
///
/// Nearly every line of a quoted-printable or base64 body is its own canonical form (no tab, no
/// run of spaces, no space at its end), so such lines are hashed straight from the body, a run of
/// them at a time; only the others are rewritten byte by byte.
fn relaxed_body(body: &[u8], hash: &mut Context) {
    let mut blank_lines = 0usize;
    let mut line = Vec::new();
    // The lines from `verbatim.0` up to `verbatim.1` (their CRLFs included) are canonical as they
    // stand and not hashed yet.
    let mut verbatim: Option<(usize, usize)> = None;
    let mut at = 0;
    while at < body.len() {
        let (end, next, ended) = match crlf(body, at) {
            Some(p) => (p, p + 2, true),
            None => (body.len(), body.len(), false),
        };
        let raw = &body[at..end];
        let canonical = ended
            && raw.last().is_some_and(|&b| b != b' ')
            && memchr::memchr(b'\t', raw).is_none()
            && SPACE_RUN.find(raw).is_none();
        if canonical {
            // Blank lines are counted only after a flush, so no run is waiting when they are.
            blank(hash, &mut blank_lines);
            verbatim = Some((verbatim.map_or(at, |(from, _)| from), next));
        } else {
            flush(hash, body, verbatim.take());
            line.clear();
            canonical_line(raw, &mut line);
            if line.is_empty() {
                blank_lines += 1;
            } else {
                blank(hash, &mut blank_lines);
                hash.update(&line);
                hash.update(b"\r\n");
            }
        }
        at = next;
    }
    flush(hash, body, verbatim);
}

/// Two spaces in a row (a searcher built once: building one costs more than a line's search).
static SPACE_RUN: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"  "));

/// Where the next CRLF at or after `from` begins (a bare LF is part of its line).
fn crlf(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(p) = memchr::memchr(b'\n', &bytes[at..]) {
        let lf = at + p;
        if lf > from && bytes[lf - 1] == b'\r' {
            return Some(lf - 1);
        }
        at = lf + 1;
    }
    None
}

/// Hashes the blank lines counted so far: a line follows them, so they are not the body's end.
fn blank(hash: &mut Context, count: &mut usize) {
    for _ in 0..std::mem::take(count) {
        hash.update(b"\r\n");
    }
}

/// Hashes a run of lines that are canonical as they stand.
fn flush(hash: &mut Context, body: &[u8], verbatim: Option<(usize, usize)>) {
    if let Some((from, to)) = verbatim {
        hash.update(&body[from..to]);
    }
}

/// One body line (without its CRLF), relaxed: whitespace runs as one space, none at the end.
fn canonical_line(raw: &[u8], line: &mut Vec<u8>) {
    let mut space = false;
    for &b in raw {
        if b == b' ' || b == b'\t' {
            space = true;
        } else {
            if space {
                line.push(b' ');
            }
            space = false;
            line.push(b);
        }
    }
}

/// A header being written with folding between tags and inside the base64 of `b=`.
struct Folded {
    text: String,
    /// The length of the current physical line.
    column: usize,
}

impl Folded {
    fn new(start: &str) -> Self {
        Self { text: start.to_owned(), column: start.len() }
    }

    /// A tag, on this line when it fits, else on a continuation line.
    fn tag(&mut self, tag: &str) {
        let first = self.text.ends_with(": ");
        if !first && self.column + 1 + tag.len() > LINE {
            self.text.push_str("\r\n ");
            self.column = 1;
        } else if !first {
            self.text.push(' ');
            self.column += 1;
        }
        self.text.push_str(tag);
        self.column += tag.len();
    }

    /// The base64 of `b=`, folded wherever the line is full (whitespace in b= is ignored).
    fn base64(&mut self, value: &str) {
        let mut rest = value;
        while !rest.is_empty() {
            let room = LINE.saturating_sub(self.column).max(1);
            if room <= 8 && self.column > 1 {
                self.text.push_str("\r\n ");
                self.column = 1;
                continue;
            }
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.text.push_str(now);
            self.column += now.len();
            rest = later;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_canon(body: &[u8]) -> Vec<u8> {
        // The hash of what relaxed_body feeds, compared with the hash of the expected text.
        let mut context = Context::new(&SHA256);
        relaxed_body(body, &mut context);
        context.finish().as_ref().to_vec()
    }

    fn digest(text: &[u8]) -> Vec<u8> {
        ring::digest::digest(&SHA256, text).as_ref().to_vec()
    }

    #[test]
    fn the_body_is_canonicalised_as_rfc_6376_relaxed_says() {
        // RFC 6376 §3.4.6's example body.
        assert_eq!(body_canon(b" C \r\nD \t E\r\n\r\n\r\n"), digest(b" C\r\nD E\r\n"));
        assert_eq!(body_canon(b""), digest(b""));
        assert_eq!(body_canon(b"\r\n\r\n"), digest(b""));
        assert_eq!(body_canon(b"no final line end"), digest(b"no final line end\r\n"));
        assert_eq!(body_canon(b"a\r\n\r\nb\r\n"), digest(b"a\r\n\r\nb\r\n"));
    }

    /// §3.4.4 read literally, for the property below: the canonical body as bytes.
    fn relaxed_body_as_the_rfc_says(body: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (raw, next) = match rest.windows(2).position(|w| w == b"\r\n") {
                Some(p) => (&rest[..p], &rest[p + 2..]),
                None => (rest, &rest[rest.len()..]),
            };
            let mut line = Vec::new();
            for &b in raw {
                let wsp = b == b' ' || b == b'\t';
                if wsp && line.last() == Some(&b' ') {
                    continue;
                }
                line.push(if wsp { b' ' } else { b });
            }
            while line.last() == Some(&b' ') {
                line.pop();
            }
            lines.push(line);
            rest = next;
        }
        while lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        lines.iter().flat_map(|line| line.iter().copied().chain(*b"\r\n")).collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Whatever mix of spaces, tabs, line ends (bare CR and LF too), blank lines and text a body
        /// holds, the runs hashed straight from the body hash what the RFC's rules make of it.
        #[test]
        fn any_body_hashes_as_its_canonical_form(
            body in proptest::collection::vec(
                proptest::sample::select(vec![b' ', b'\t', b'\r', b'\n', b'a', b'=', 0xC3, 0xA9]), 0..300),
            lines in proptest::collection::vec("[ \t]{0,2}[a-z=]{0,8}( [a-z]{1,4}){0,3}[ \t]{0,2}", 0..30),
        ) {
            proptest::prop_assert_eq!(body_canon(&body), digest(&relaxed_body_as_the_rfc_says(&body)));
            // Lines as a quoted-printable part has them, with blank ones between.
            let joined = lines.join("\r\n").into_bytes();
            proptest::prop_assert_eq!(body_canon(&joined), digest(&relaxed_body_as_the_rfc_says(&joined)));
        }
    }

    #[test]
    fn headers_are_canonicalised_as_rfc_6376_relaxed_says() {
        // RFC 6376 §3.4.6's example headers.
        let head = b"A: X\r\nB : Y\t\r\n\tZ  \r\n";
        let fields = fields(head);
        let mut out = Vec::new();
        for field in &fields {
            relaxed_header(field.name, field.value, &mut out);
            out.extend_from_slice(b"\r\n");
        }
        assert_eq!(String::from_utf8(out).unwrap(), "a:X\r\nb:Y Z\r\n");
    }
}
