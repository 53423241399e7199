//! MailJet's Parse API: for installations that receive through MailJet rather than with their own
//! MX, MailJet posts each inbound message as JSON (its headers, text and HTML parts, attachments
//! in base64). The message is written back into RFC 5322 form here, so that it takes exactly the
//! path of a message the SMTP receiver accepted ([`super::Inbox::file`]): the same reading,
//! threading, storage of the raw bytes and dedup by `Message-ID`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// Headers carried over from the payload: what reading and threading look at.
const CARRIED: [&str; 11] = [
    "Message-ID",
    "In-Reply-To",
    "References",
    "Date",
    "Auto-Submitted",
    "Precedence",
    "X-Autoreply",
    "X-Autorespond",
    "Cc",
    "Content-Language",
    "Thread-Topic",
];

/// A Parse API payload, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPost {
    /// The envelope sender.
    pub sender: String,
    /// The address MailJet received it for (a reply address, when the parse route is the inbound domain).
    pub recipient: String,
    /// The message, rebuilt.
    pub raw: Vec<u8>,
}

/// Why a body is not a Parse API payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedPost(pub String);

fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match object.get(name)? {
        Value::String(s) => Some(s.as_str()),
        // MailJet gives repeated headers as arrays: the first is the one that counts.
        Value::Array(values) => values.iter().find_map(Value::as_str),
        _ => None,
    }
}

/// A header value on one line, as an RFC 2047 encoded word when it is not plain ASCII.
fn encode(value: &str) -> String {
    let line = borcelle_mail::header_line(value);
    if line.is_ascii() { line.into_owned() } else { format!("=?UTF-8?B?{}?=", STANDARD.encode(line.as_bytes())) }
}

/// An address header (`Name <a@b>`): only the name is encoded, so that the address stays readable.
fn encode_address(value: &str) -> String {
    let value = value.trim();
    match value.rsplit_once('<') {
        Some((name, address)) if address.ends_with('>') => {
            let name = name.trim().trim_matches('"');
            if name.is_empty() { format!("<{address}") } else { format!("{} <{address}", encode(name)) }
        }
        _ => encode(value),
    }
}

/// Base64 in lines of 76 characters.
fn folded(encoded: &str) -> String {
    let clean: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
    clean
        .as_bytes()
        .chunks(76)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Reads a Parse API payload and rebuilds the message it describes.
pub fn read_post(body: &[u8]) -> Result<ParsedPost, MalformedPost> {
    let value: Value = serde_json::from_slice(body).map_err(|err| MalformedPost(format!("not valid JSON: {err}")))?;
    let Value::Object(payload) = value else {
        return Err(MalformedPost("expected a MailJet Parse API payload (a JSON object)".to_owned()));
    };
    let recipient = text(&payload, "Recipient")
        .ok_or_else(|| MalformedPost("Recipient: missing (the address the message was received for)".to_owned()))?
        .trim()
        .to_owned();
    let sender = text(&payload, "Sender").unwrap_or_default().trim().to_owned();
    let empty = Map::new();
    let headers = payload.get("Headers").and_then(Value::as_object).unwrap_or(&empty);
    let from = text(headers, "From").or_else(|| text(&payload, "From")).unwrap_or(&sender).to_owned();
    let subject = text(headers, "Subject").or_else(|| text(&payload, "Subject")).unwrap_or_default().to_owned();
    let to = text(headers, "To").unwrap_or(&recipient).to_owned();

    let boundary = format!("borcelle-parse-{}", uuid::Uuid::new_v4().simple());
    let mut raw = String::new();
    raw.push_str(&format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\n",
        encode_address(&from),
        encode(&to),
        encode(&subject)
    ));
    for name in CARRIED {
        if let Some(value) = text(headers, name) {
            raw.push_str(&format!("{name}: {}\r\n", encode(value)));
        }
    }
    raw.push_str(&format!("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"));
    // The text and HTML bodies as alternatives of each other, then the files.
    let bodies: Vec<(&str, &str)> = [("text/plain", "Text-part"), ("text/html", "Html-part")]
        .into_iter()
        .filter_map(|(kind, name)| text(&payload, name).map(|body| (kind, body)))
        .collect();
    if !bodies.is_empty() {
        let inner = format!("{boundary}-alt");
        let mut alternative = String::new();
        for (kind, body) in &bodies {
            alternative.push_str(&format!(
                "--{inner}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                folded(&STANDARD.encode(body))
            ));
        }
        alternative.push_str(&format!("--{inner}--"));
        raw.push_str(&format!(
            "--{boundary}\r\nContent-Type: multipart/alternative; boundary=\"{inner}\"\r\n\r\n{alternative}\r\n"
        ));
    }
    let mut part = |content_type: &str, extra: &str, base64: &str| {
        raw.push_str(&format!(
            "--{boundary}\r\nContent-Type: {content_type}\r\n{extra}Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
            folded(base64)
        ));
    };
    let parts = payload.get("Parts").and_then(Value::as_array).cloned().unwrap_or_default();
    for entry in parts.iter().filter_map(Value::as_object) {
        let Some(reference) = entry.get("ContentRef").and_then(Value::as_str) else { continue };
        if !reference.starts_with("Attachment") {
            continue;
        }
        let Some(content) = text(&payload, reference) else { continue };
        if STANDARD.decode(content.split_whitespace().collect::<String>()).is_err() {
            return Err(MalformedPost(format!("{reference}: not base64")));
        }
        let part_headers = entry.get("Headers").and_then(Value::as_object).unwrap_or(&empty);
        let content_type = text(part_headers, "Content-Type").unwrap_or("application/octet-stream");
        let mut extra = String::new();
        if let Some(disposition) = text(part_headers, "Content-Disposition") {
            extra.push_str(&format!("Content-Disposition: {}\r\n", encode(disposition)));
        } else {
            extra.push_str("Content-Disposition: attachment\r\n");
        }
        if let Some(id) = text(part_headers, "Content-ID") {
            extra.push_str(&format!("Content-ID: {}\r\n", encode(id)));
        }
        part(&encode(content_type), &extra, content);
    }
    raw.push_str(&format!("--{boundary}--\r\n"));
    Ok(ParsedPost { sender, recipient, raw: raw.into_bytes() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::read;

    #[test]
    fn a_parse_post_is_rebuilt_into_a_message_that_reads_the_same() {
        let pdf = STANDARD.encode(b"%PDF-1.4 tiny");
        let body = serde_json::json!({
            "Sender": "renee@example.fr",
            "Recipient": "reply+abc@in.example.com",
            "From": "Renée <renee@example.fr>",
            "Subject": "Réponse",
            "Headers": {
                "From": "Renée <renee@example.fr>",
                "To": "reply+abc@in.example.com",
                "Subject": "Re: Réponse",
                "Message-ID": "<parsed-1@example.fr>",
                "In-Reply-To": "<sent-1@borcelle.test>",
                "Received": ["a", "b"],
            },
            "Parts": [
                {"Headers": {"Content-Type": "text/plain; charset=UTF-8"}, "ContentRef": "Text-part"},
                {"Headers": {"Content-Type": "application/pdf", "Content-Disposition": "attachment; filename=\"devis.pdf\""}, "ContentRef": "Attachment1"},
            ],
            "Text-part": "Très bien.\n\nOn Mon, Ann wrote:\n> Hello",
            "Html-part": "<p>Très bien.</p><script>x()</script>",
            "Attachment1": pdf,
            "SpamAssassinScore": "0.1",
        });
        let post = read_post(body.to_string().as_bytes()).unwrap();
        assert_eq!(post.recipient, "reply+abc@in.example.com");
        let read = read::read(&post.raw, &|part| format!("/f/{part}"));
        assert_eq!(read.from_email, "renee@example.fr");
        assert_eq!(read.from_name.as_deref(), Some("Renée"));
        assert_eq!(read.subject, "Re: Réponse");
        assert_eq!(read.message_id.as_deref(), Some("<parsed-1@example.fr>"));
        assert_eq!(read.refers_to, ["<sent-1@borcelle.test>"]);
        assert_eq!(read.text, "Très bien.");
        assert!(!read.html.unwrap().contains("script"));
        let file = read.files.iter().find(|f| f.filename == "devis.pdf").expect("the attachment");
        assert_eq!(read::part_bytes(&post.raw, file.part).unwrap(), b"%PDF-1.4 tiny");
    }

    #[test]
    fn a_body_that_is_no_payload_says_what_is_wrong() {
        assert!(read_post(b"[]").unwrap_err().0.contains("JSON object"));
        assert!(read_post(b"{").unwrap_err().0.starts_with("not valid JSON"));
        assert!(read_post(br#"{"Sender":"a@b"}"#).unwrap_err().0.starts_with("Recipient"));
        let bad =
            serde_json::json!({"Recipient": "r@x", "Parts": [{"ContentRef": "Attachment1"}], "Attachment1": "%%%"});
        assert!(read_post(bad.to_string().as_bytes()).unwrap_err().0.contains("not base64"));
    }
}
