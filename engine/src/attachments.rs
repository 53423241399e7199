//! Attachment rules both the API and the delivery engine follow: file names are sanitised,
//! content types are sniffed from the bytes (never taken from the client), an upload is stored
//! all or nothing, and a send may carry only its owner's attachments, within the size limit.

use std::collections::HashMap;
use std::fmt::Write as _;

use borcelle_store::{Owner, PgConnection, PgPool};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::storage::{self, ObjectStore, Store, StoreError};
use crate::{Error, Result};
use borcelle_mail::{MailAttachment, MailError};
use borcelle_store::attachments::{self, Attachment, NewAttachment, TaskAttachment};

/// Longest file name kept, in characters (the extension survives shortening).
pub const FILENAME_MAX_CHARS: usize = 120;
/// Most attachments one message may carry.
pub const PER_MESSAGE_MAX: usize = 50;
/// What a file whose type is not recognised is served and sent as.
pub use borcelle_mail::UNKNOWN_TYPE;

/// The content type of a file, from its first bytes (magic numbers), with the usual extension.
pub fn sniff(bytes: &[u8]) -> (&'static str, Option<&'static str>) {
    match infer::get(bytes) {
        Some(kind) => (kind.mime_type(), Some(kind.extension())),
        None => (UNKNOWN_TYPE, None),
    }
}

/// Characters that change how text is displayed without being visible (bidirectional overrides
/// make `gpj.exe` look like `exe.jpg`), besides the control characters.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Undoes the escaping HTML forms apply to multipart file names (CR, LF and `"` are sent as
/// `%0D`, `%0A` and `%22`), so that sanitising sees the characters the name really had.
pub fn form_data_unescape(raw: &str) -> String {
    raw.replace("%0D", "\r").replace("%0d", "\r").replace("%0A", "\n").replace("%0a", "\n").replace("%22", "\"")
}

/// A file name that is safe to store, show and put in a header: the last path segment only,
/// without control or invisible characters or quotes, reserved characters replaced, whitespace
/// collapsed, no leading dots, at most [`FILENAME_MAX_CHARS`] characters. A name that ends up
/// empty becomes `attachment` with the sniffed type's extension.
pub fn sanitize_filename(raw: Option<&str>, extension: Option<&str>) -> String {
    let base = raw.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    let mut name = String::with_capacity(base.len());
    for c in base.chars() {
        // A tab separates words; line breaks and other control characters just go.
        if c == '\t' || (c.is_whitespace() && !c.is_control()) {
            if !name.ends_with(' ') {
                name.push(' ');
            }
            continue;
        }
        if c.is_control() || invisible(c) || matches!(c, '"' | '\'' | '`') {
            continue;
        }
        name.push(if matches!(c, ':' | '*' | '?' | '<' | '>' | '|') { '_' } else { c });
    }
    let name = name.trim_start_matches(['.', ' ']).trim_end_matches(['.', ' ']);
    if name.is_empty() {
        return match extension {
            Some(ext) => format!("attachment.{ext}"),
            None => "attachment".to_owned(),
        };
    }
    shorten(name)
}

/// Cuts a name to [`FILENAME_MAX_CHARS`] characters, keeping a short extension.
fn shorten(name: &str) -> String {
    if name.chars().count() <= FILENAME_MAX_CHARS {
        return name.to_owned();
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && (1..=16).contains(&ext.chars().count()) => (stem, Some(ext)),
        _ => (name, None),
    };
    match ext {
        Some(ext) => {
            let keep = FILENAME_MAX_CHARS - ext.chars().count() - 1;
            format!("{}.{ext}", stem.chars().take(keep).collect::<String>().trim_end())
        }
        None => stem.chars().take(FILENAME_MAX_CHARS).collect(),
    }
}

/// `attachment; filename="…"; filename*=UTF-8''…`: an ASCII fallback for old clients and the
/// exact name percent-encoded (RFC 6266 / RFC 5987).
pub fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' { c } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(filename.len() * 3);
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// A store failure as the domain reports it: the store being unreachable may pass.
pub fn store_error(err: StoreError) -> Error {
    match err {
        StoreError::Backend(_) => Error::Unavailable(err.into()),
        other => Error::Internal(other.into()),
    }
}

/// Stores an uploaded file: the object first, then its row. When the row cannot be written the
/// object is removed again, so a failure leaves neither. Run it to the end (spawned) so that a
/// client hanging up cannot stop it between the two.
pub async fn save(
    db: PgPool,
    store: Store,
    owner: Owner,
    filename: Option<String>,
    bytes: Bytes,
) -> Result<Attachment> {
    let (content_type, extension) = sniff(&bytes);
    let filename = sanitize_filename(filename.as_deref(), extension);
    let sha256 = Sha256::digest(&bytes);
    let size = bytes.len() as i64;
    let id = Uuid::now_v7();
    let key = format!("{owner}/{id}");
    store.put(&key, content_type, bytes).await.map_err(store_error)?;
    let new = NewAttachment {
        id,
        owner,
        object_key: &key,
        filename: &filename,
        content_type,
        size,
        sha256: sha256.as_slice(),
    };
    match attachments::insert(&db, &new).await {
        Ok(attachment) => {
            tracing::info!(attachment = %id, size, content_type, store = store.name(), "attachment stored");
            Ok(attachment)
        }
        Err(err) => {
            if let Err(cleanup) = store.delete(&key).await {
                tracing::error!(key, error = %cleanup, "removing the object of a failed upload failed; it is orphaned");
            }
            Err(err.into())
        }
    }
}

/// Checks the attachments of a send, in the caller's transaction: duplicates are dropped (the
/// first place counts), every id must be the owner's (404 otherwise, as for any other user's
/// data), and their total size must stay within `limit` bytes (422 naming `attachment_ids`).
pub async fn check_for_send(tx: &mut PgConnection, owner: Owner, ids: &[Uuid], limit: u64) -> Result<Vec<Uuid>> {
    let mut unique: Vec<Uuid> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(*id);
        }
    }
    if unique.len() > PER_MESSAGE_MAX {
        return Err(Error::invalid(
            "attachment_ids",
            format!("a message may carry at most {PER_MESSAGE_MAX} attachments"),
        ));
    }
    if unique.is_empty() {
        return Ok(unique);
    }
    let owned = attachments::owned_sizes(&mut *tx, owner, &unique).await?;
    if owned.len() != unique.len() {
        return Err(Error::NotFound("attachment"));
    }
    let total: i64 = owned.iter().map(|(_, size)| size).sum();
    if total as u64 > limit {
        return Err(Error::invalid(
            "attachment_ids",
            format!("the attachments add up to {total} bytes; a message may carry at most {limit}"),
        ));
    }
    Ok(unique)
}

/// The attachments of tasks, ready to send: each object read once from the store and checked
/// against its recorded size and SHA-256. Tasks without attachments are absent from the answer.
/// A task whose files cannot be read gets an error instead: transient while the store is
/// unreachable, permanent when an object is missing or altered.
pub async fn load_for_tasks(
    db: &PgPool,
    store: &dyn ObjectStore,
    task_ids: &[Uuid],
) -> borcelle_store::Result<HashMap<Uuid, Result<Vec<MailAttachment>, MailError>>> {
    let mut loaded: HashMap<Uuid, Result<Vec<MailAttachment>, MailError>> = HashMap::new();
    for row in attachments::of_tasks(db, task_ids).await? {
        let entry = loaded.entry(row.task_id).or_insert_with(|| Ok(Vec::new()));
        let Ok(files) = entry else { continue };
        match fetch(store, &row).await {
            Ok(file) => files.push(file),
            Err(err) => *entry = Err(err),
        }
    }
    Ok(loaded)
}

async fn fetch(store: &dyn ObjectStore, row: &TaskAttachment) -> Result<MailAttachment, MailError> {
    let bytes = storage::get_bytes(store, &row.object_key, row.size as u64).await.map_err(|err| match err {
        StoreError::Backend(_) => MailError::Transient(format!("attachment {}: {err}", row.filename)),
        _ => MailError::Permanent(format!("attachment {}: {err}", row.filename)),
    })?;
    if bytes.len() as i64 != row.size || Sha256::digest(&bytes).as_slice() != row.sha256.as_slice() {
        return Err(MailError::Permanent(format!(
            "attachment {} ({}) does not match what was uploaded",
            row.filename, row.id
        )));
    }
    Ok(MailAttachment { filename: row.filename.clone(), content_type: row.content_type.clone(), bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_controls_quotes_and_invisible_characters() {
        let clean = |raw: &str| sanitize_filename(Some(raw), None);
        assert_eq!(clean("../../etc/passwd\r\n.pdf"), "passwd.pdf");
        assert_eq!(clean("C:\\Users\\ada\\report \"final\".docx"), "report final.docx");
        assert_eq!(clean("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(clean("  ..hidden  "), "hidden");
        assert_eq!(clean("a:b*c?.txt"), "a_b_c_.txt");
        assert_eq!(clean("résumé  de\tAda.pdf"), "résumé de Ada.pdf");
        assert_eq!(sanitize_filename(Some("../"), Some("png")), "attachment.png");
        assert_eq!(sanitize_filename(None, None), "attachment");
        let long = format!("{}.pdf", "x".repeat(500));
        let short = clean(&long);
        assert_eq!(short.chars().count(), FILENAME_MAX_CHARS);
        assert!(short.ends_with(".pdf"));
    }

    #[test]
    fn browser_escapes_are_undone_before_sanitising() {
        let name = form_data_unescape("../../etc/passwd%0D%0A.pdf");
        assert_eq!(name, "../../etc/passwd\r\n.pdf");
        assert_eq!(sanitize_filename(Some(&name), None), "passwd.pdf");
    }

    #[test]
    fn content_disposition_quotes_safely_and_keeps_the_exact_name() {
        assert_eq!(
            content_disposition("résumé 1.pdf"),
            "attachment; filename=\"r_sum_ 1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf"
        );
    }

    #[test]
    fn types_come_from_the_bytes() {
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];
        assert_eq!(sniff(&png), ("image/png", Some("png")));
        assert_eq!(sniff(b"%PDF-1.7\n").0, "application/pdf");
        assert_eq!(sniff(b"just some words").0, UNKNOWN_TYPE);
    }
}
