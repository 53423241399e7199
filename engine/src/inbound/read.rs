//! Reading what came back: the MIME message parsed with mail-parser (multipart, quoted-printable,
//! base64, RFC 2047 headers, non-UTF-8 charsets), its new text apart from the quoted history, its
//! HTML sanitised with ammonia, its files listed, and what kind of mail it is: a person's reply,
//! an automatic answer (RFC 3834 `Auto-Submitted`, out-of-office conventions) or a delivery status
//! notification (RFC 3464 `multipart/report`).
//!
//! Reading never fails: a message mail-parser cannot make sense of is kept raw, and its summary
//! says so.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use crate::attachments;

/// Most attachments listed for one message (a message of 10,000 parts lists the first ones).
pub const MAX_ATTACHMENTS: usize = 100;
/// Longest text kept of a body (the raw message keeps all of it).
const MAX_TEXT: usize = 256 * 1024;
/// Longest sanitised HTML kept.
const MAX_HTML: usize = 512 * 1024;

/// What a message says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// A person wrote it.
    Reply,
    /// Sent by a program on someone's behalf (out of office, vacation, ticket acknowledgements).
    AutoReply,
    /// A delivery status notification.
    Report,
}

/// A delivery status notification's verdict on one recipient (RFC 3464 per-recipient fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    /// The enhanced status code (`5.1.1`).
    pub status: String,
    /// The remote server's words (`Diagnostic-Code`), when given.
    pub diagnostic: Option<String>,
    /// The address the report is about (`Final-Recipient`).
    pub recipient: Option<String>,
}

impl Dsn {
    /// The message did not arrive, for good or for now (a `delayed` report says nothing yet).
    pub fn failed(&self) -> bool {
        self.action.eq_ignore_ascii_case("failed")
    }

    /// A permanent failure (5.x.x): the address is suppressed.
    pub fn hard(&self) -> bool {
        self.failed() && self.status.starts_with('5')
    }
}

/// A file the message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// The part's index in the parsed message: what the download reads again.
    pub part: u32,
    pub filename: String,
    pub content_type: String,
    pub size: usize,
    pub content_id: Option<String>,
}

/// What a message says, read.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// mail-parser could read it (else only the raw bytes are worth keeping).
    pub parsed: bool,
    pub kind: Option<MailKind>,
    pub from_email: String,
    pub from_name: Option<String>,
    pub subject: String,
    pub message_id: Option<String>,
    /// `In-Reply-To` and `References`, angle brackets included.
    pub refers_to: Vec<String>,
    pub text: String,
    pub quoted: String,
    /// Sanitised; `cid:` images point at `attachment_url(part)`.
    pub html: Option<String>,
    pub files: Vec<FileInfo>,
    pub dsn: Option<Dsn>,
}

impl Read {
    pub fn kind(&self) -> MailKind {
        self.kind.unwrap_or(MailKind::Reply)
    }
}

/// Reads a raw message. `attachment_url` makes the address an inline image is shown from.
pub fn read(raw: &[u8], attachment_url: &dyn Fn(u32) -> String) -> Read {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Read { parsed: false, subject: String::new(), ..Read::default() };
    };
    let (from_email, from_name) = message
        .from()
        .and_then(|from| from.first())
        .map(|addr| {
            (addr.address().unwrap_or_default().trim().to_ascii_lowercase(), addr.name().map(|n| one_line(n, 200)))
        })
        .unwrap_or_default();
    let subject = one_line(message.subject().unwrap_or_default(), 500);
    let message_id = message.message_id().map(|id| format!("<{}>", id.trim_matches(['<', '>'])));
    let mut refers_to: Vec<String> = Vec::new();
    for value in [message.in_reply_to(), message.references()] {
        if let Some(ids) = value.as_text_list() {
            refers_to.extend(ids.iter().map(|id| format!("<{}>", id.trim_matches(['<', '>']))));
        } else if let Some(id) = value.as_text() {
            refers_to.push(format!("<{}>", id.trim_matches(['<', '>'])));
        }
    }
    let dsn = delivery_status(&message);
    let kind = if dsn.is_some() || is_report(&message) {
        MailKind::Report
    } else if is_automatic(&message, &subject) {
        MailKind::AutoReply
    } else {
        MailKind::Reply
    };
    let files = files(&message);
    let body = message.body_text(0).map(Cow::into_owned).unwrap_or_default();
    let body = truncate(&body.replace("\r\n", "\n"), MAX_TEXT);
    let (text, quoted) = split_quoted(&body);
    let html = message.body_html(0).and_then(|html| {
        // An HTML body mail-parser made from a text part is not worth showing twice.
        if !message.html_part(0).is_some_and(|part| part.is_text_html()) {
            return None;
        }
        let cids: HashMap<String, u32> =
            files.iter().filter_map(|f| f.content_id.clone().map(|cid| (cid, f.part))).collect();
        let clean = sanitise(&html, &cids, attachment_url);
        (!clean.trim().is_empty()).then(|| truncate(&clean, MAX_HTML))
    });
    Read {
        parsed: true,
        kind: Some(kind),
        from_email,
        from_name,
        subject,
        message_id,
        refers_to,
        text,
        quoted,
        html,
        files,
        dsn,
    }
}

/// The decoded bytes of one part of a raw message (what [`FileInfo::part`] names).
pub fn part_bytes(raw: &[u8], part: u32) -> Option<Vec<u8>> {
    let message = MessageParser::default().parse(raw)?;
    let part = message.part(part)?;
    (!matches!(part.body, PartType::Multipart(_))).then(|| part.contents().to_vec())
}

/// One line, bounded: control characters become spaces.
fn one_line(value: &str, max: usize) -> String {
    borcelle_mail::header_line(value).chars().take(max).collect::<String>().trim().to_owned()
}

fn truncate(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_owned();
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// Whether a program sent it: RFC 3834 `Auto-Submitted` (anything but `no`), the headers
/// vacation responders and Exchange set, `Precedence: bulk/junk/auto_reply`, or a subject that
/// says so.
fn is_automatic(message: &Message<'_>, subject: &str) -> bool {
    let header = |name: &str| message.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
    if header("Auto-Submitted").is_some_and(|v| !v.is_empty() && !v.starts_with("no")) {
        return true;
    }
    if header("X-Autoreply").is_some() || header("X-Autorespond").is_some() {
        return true;
    }
    if header("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "junk" | "auto_reply" | "list")) {
        return true;
    }
    let subject = subject.to_lowercase();
    ["auto:", "automatic reply", "autoreply", "auto-reply", "out of office", "out of the office", "abwesenheitsnotiz"]
        .iter()
        .any(|start| subject.starts_with(start))
}

/// A `multipart/report` that is not about delivery (a read receipt, a feedback report).
fn is_report(message: &Message<'_>) -> bool {
    message.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart") && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
    })
}

/// The first recipient verdict of a delivery status notification, when the message carries one.
fn delivery_status(message: &Message<'_>) -> Option<Dsn> {
    let part = message.parts.iter().find(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    })?;
    // The part's bytes as sent: mail-parser may have read its field groups as a nested message.
    let raw = message.raw_message();
    let (start, end) = (part.offset_body as usize, part.offset_end as usize);
    let fields = raw.get(start..end.min(raw.len())).map(String::from_utf8_lossy).unwrap_or_default();
    parse_dsn_fields(&fields)
}

/// The per-recipient fields of a `message/delivery-status` body: groups of `Name: value` lines
/// separated by blank lines (the first group is about the message; the next ones each about a
/// recipient), continuation lines folded. The first recipient group with an `Action` wins.
pub fn parse_dsn_fields(body: &str) -> Option<Dsn> {
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in body.lines() {
        if line.trim().is_empty() {
            if groups.last().is_some_and(|g| !g.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        let group = groups.last_mut()?;
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    groups.iter().find_map(|group| {
        let get = |name: &str| group.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let action = get("action")?.to_ascii_lowercase();
        let status = get("status").unwrap_or_default();
        let status = status.split_whitespace().next().unwrap_or_default().to_owned();
        let after_type = |value: String| match value.split_once(';') {
            Some((_, rest)) => rest.trim().to_owned(),
            None => value,
        };
        Some(Dsn {
            action,
            status,
            diagnostic: get("diagnostic-code").map(after_type).map(|d| one_line(&d, 1000)),
            recipient: get("final-recipient").map(after_type).map(|r| r.to_ascii_lowercase()),
        })
    })
}

/// The files the message carries (the first [`MAX_ATTACHMENTS`]), with safe names.
fn files(message: &Message<'_>) -> Vec<FileInfo> {
    let mut seen = HashSet::new();
    message
        .attachments
        .iter()
        .filter_map(|&id| message.part(id).map(|part| (id, part)))
        .filter(|(_, part)| !matches!(part.body, PartType::Multipart(_)))
        .filter(|(id, _)| seen.insert(*id))
        .take(MAX_ATTACHMENTS)
        .map(|(id, part)| {
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| attachments::UNKNOWN_TYPE.to_owned())
                .to_ascii_lowercase();
            // The rules of uploaded files: no path, no control or invisible characters, no quotes;
            // a message that names no file gets `attachment` with the extension of the sniffed type.
            let (_, extension) = attachments::sniff(part.contents());
            let filename = attachments::sanitize_filename(part.attachment_name(), extension);
            let content_id =
                part.content_id().map(|cid| cid.trim().trim_matches(['<', '>']).to_owned()).filter(|c| !c.is_empty());
            FileInfo { part: id, filename, content_type, size: part.len(), content_id }
        })
        .collect()
}

/// The new text of an answer and the quoted history under it: everything from the first line
/// that introduces a quote ("On … wrote:", "-----Original Message-----", an Outlook "From:"
/// block) or from the first line of a trailing block of `>` lines.
pub fn split_quoted(body: &str) -> (String, String) {
    let lines: Vec<&str> = body.lines().collect();
    let introduces = |line: &str| {
        let t = line.trim();
        (t.starts_with("On ") && t.ends_with("wrote:"))
            || (t.starts_with("Le ") && t.ends_with("a écrit :"))
            || (t.starts_with("Am ") && t.ends_with("schrieb:"))
            || t.eq_ignore_ascii_case("-----Original Message-----")
            || t.starts_with("________________________________")
    };
    let mut cut = lines.iter().position(|line| introduces(line));
    if cut.is_none() {
        // A trailing block of quoted lines (blank lines may separate them).
        let mut start = None;
        for (i, line) in lines.iter().enumerate().rev() {
            let t = line.trim_start();
            if t.starts_with('>') {
                start = Some(i);
            } else if !t.is_empty() {
                break;
            }
        }
        cut = start;
    }
    match cut {
        Some(0) | None => (body.trim_end().to_owned(), String::new()),
        Some(at) => (lines[..at].join("\n").trim_end().to_owned(), lines[at..].join("\n").trim_end().to_owned()),
    }
}

/// HTML safe to show inside a page: ammonia's allow-list (no scripts, styles, event handlers,
/// forms or `javascript:` URLs), links opened without the page's context, and images only from
/// the message itself (`cid:`, rewritten to its attachments): remote images would tell the
/// sender when and where the mail was read.
fn sanitise(html: &str, cids: &HashMap<String, u32>, attachment_url: &dyn Fn(u32) -> String) -> String {
    let rewritten: HashMap<String, String> =
        cids.iter().map(|(cid, part)| (format!("cid:{cid}"), attachment_url(*part))).collect();
    ammonia::Builder::default()
        .url_schemes(HashSet::from(["http", "https", "mailto", "cid"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .rm_tags(["img"])
        .add_tags(["img"])
        .attribute_filter(move |element, attribute, value| {
            if element == "img" && attribute == "src" {
                return rewritten.get(value.trim()).cloned().map(Cow::Owned);
            }
            Some(Cow::Borrowed(value))
        })
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn url(part: u32) -> String {
        format!("/files/{part}")
    }

    #[test]
    fn a_plain_reply_is_read_with_its_quote_apart() {
        let raw = b"From: Jane Doe <Jane@Example.com>\r\nTo: reply+x@in.test\r\nSubject: Re: Quarterly update\r\n\
Message-ID: <abc@example.com>\r\nIn-Reply-To: <sent-1@borcelle.test>\r\nReferences: <first@borcelle.test> <sent-1@borcelle.test>\r\n\r\n\
Thanks, see you Monday.\r\n\r\nOn Mon, 1 Dec 2026, Ann wrote:\r\n> The numbers are in.\r\n";
        let read = read(raw, &url);
        assert!(read.parsed);
        assert_eq!(read.kind(), MailKind::Reply);
        assert_eq!(read.from_email, "jane@example.com");
        assert_eq!(read.from_name.as_deref(), Some("Jane Doe"));
        assert_eq!(read.subject, "Re: Quarterly update");
        assert_eq!(read.message_id.as_deref(), Some("<abc@example.com>"));
        assert_eq!(read.text, "Thanks, see you Monday.");
        assert!(read.quoted.starts_with("On Mon, 1 Dec 2026, Ann wrote:"), "{}", read.quoted);
        assert!(read.refers_to.contains(&"<sent-1@borcelle.test>".to_owned()), "{:?}", read.refers_to);
        assert!(read.html.is_none());
    }

    #[test]
    fn iso_8859_1_bodies_and_encoded_subjects_are_decoded() {
        let raw = b"From: =?ISO-8859-1?Q?Ren=E9e?= <renee@example.fr>\r\nSubject: =?ISO-8859-1?Q?R=E9ponse_=E0_votre_message?=\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Tr=E8s bien, merci =E0 vous.\r\n";
        let read = read(raw, &url);
        assert_eq!(read.subject, "Réponse à votre message");
        assert_eq!(read.from_name.as_deref(), Some("Renée"));
        assert_eq!(read.text, "Très bien, merci à vous.");
    }

    #[test]
    fn html_is_sanitised_and_inline_images_point_at_the_attachment() {
        let raw = b"From: a@example.com\r\nSubject: html\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p onclick=\"x()\">Hi <script>alert(1)</script><a href=\"javascript:alert(2)\">click</a> <a href=\"https://example.com\">ok</a>\
<img src=\"cid:logo@x\"><img src=\"https://tracker.example/pixel.gif\"></p>\r\n--b1\r\n\
Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline; filename=\"logo.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b1--\r\n";
        let read = read(raw, &url);
        let html = read.html.expect("html");
        assert!(!html.contains("script") && !html.contains("javascript") && !html.contains("onclick"), "{html}");
        assert!(!html.contains("tracker.example"), "{html}");
        let logo = read.files.iter().find(|f| f.filename == "logo.png").expect("the inline image is listed");
        assert_eq!(logo.content_type, "image/png");
        assert!(html.contains(&format!("src=\"/files/{}\"", logo.part)), "{html}");
        assert!(html.contains("rel=\"noopener noreferrer nofollow\""), "{html}");
    }

    #[test]
    fn a_delivery_report_gives_the_status_and_the_diagnostic() {
        let raw = b"From: MAILER-DAEMON@mx.example (Mail Delivery System)\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n--r\r\n\
Content-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n--r\r\n\
Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\nArrival-Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n\r\n\
Final-Recipient: rfc822; Nobody@Example.com\r\nOriginal-Recipient: rfc822;nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.com>: Recipient address rejected:\r\n User unknown in local recipient table\r\n--r--\r\n";
        let read = read(raw, &url);
        assert_eq!(read.kind(), MailKind::Report);
        let dsn = read.dsn.expect("dsn");
        assert_eq!(dsn.action, "failed");
        assert_eq!(dsn.status, "5.1.1");
        assert!(dsn.hard());
        assert_eq!(dsn.recipient.as_deref(), Some("nobody@example.com"));
        assert_eq!(
            dsn.diagnostic.as_deref(),
            Some("550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in local recipient table")
        );
        let delayed =
            parse_dsn_fields("Reporting-MTA: dns; x\n\nFinal-Recipient: rfc822; a@b\nAction: delayed\nStatus: 4.4.1\n")
                .expect("delayed");
        assert!(!delayed.failed() && !delayed.hard());
    }

    #[test]
    fn automatic_answers_are_told_from_people() {
        for headers in [
            "Auto-Submitted: auto-replied\r\nSubject: Re: hello\r\n",
            "X-Autoreply: yes\r\nSubject: Re: hello\r\n",
            "Precedence: auto_reply\r\nSubject: Re: hello\r\n",
            "Subject: Out of Office: hello\r\n",
            "Subject: Automatic reply: hello\r\n",
        ] {
            let raw = format!("From: a@example.com\r\n{headers}\r\nI am away.\r\n");
            assert_eq!(read(raw.as_bytes(), &url).kind(), MailKind::AutoReply, "{headers}");
        }
        for headers in ["Auto-Submitted: no\r\nSubject: Re: hello\r\n", "Subject: Re: out of office plans\r\n"] {
            let raw = format!("From: a@example.com\r\n{headers}\r\nSure.\r\n");
            assert_eq!(read(raw.as_bytes(), &url).kind(), MailKind::Reply, "{headers}");
        }
    }

    #[test]
    fn file_names_never_carry_a_path_quotes_or_invisible_characters() {
        let attachment = |name: &str| {
            format!(
                "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n"
            )
        };
        let raw = format!(
            "From: a@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n{}{}{}--b\r\nContent-Type: application/pdf\r\n\
             Content-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b--\r\n",
            attachment("../../etc/passwd"),
            // (A backslash inside a quoted MIME parameter escapes the next character: a path there
            // uses slashes.)
            attachment("C:/temp/a.pdf"),
            attachment("gpj\u{202e}.exe"),
        );
        let names: Vec<String> = read(raw.as_bytes(), &url).files.into_iter().map(|f| f.filename).collect();
        assert_eq!(names, ["passwd", "a.pdf", "gpj.exe", "attachment.pdf"], "{names:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Any bytes at all are read without a panic, and what is kept is bounded.
        #[test]
        fn any_bytes_are_read_without_a_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let read = read(&raw, &url);
            prop_assert!(read.files.len() <= MAX_ATTACHMENTS);
            prop_assert!(read.subject.len() <= 500 * 4);
        }

        /// Whatever the text, the new part and the quote together are the whole body.
        #[test]
        fn the_quote_split_loses_no_line(lines in proptest::collection::vec("[>a-z O:-]{0,12}", 0..12)) {
            let body = lines.join("\n");
            let (text, quoted) = split_quoted(&body);
            let joined = if quoted.is_empty() { text.clone() } else { format!("{text}\n{quoted}") };
            prop_assert_eq!(joined.split_whitespace().collect::<Vec<_>>(), body.split_whitespace().collect::<Vec<_>>());
        }
    }
}
