//! Contacts: the rules for their fields, partial updates, list order and cursors, and CSV.

pub mod csv;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use borcelle_store::contacts::After;
pub use borcelle_store::contacts::{ContactFields, Sort, SortKey};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, validate};

pub const NAME_MAX: usize = 200;
pub const FIRST_NAME_MAX: usize = 100;
pub const LAST_NAME_MAX: usize = 100;
pub const COMPANY_MAX: usize = 200;
pub const ADDRESS_MAX: usize = 1000;
pub const TAX_ID_MAX: usize = 64;
pub const NOTES_MAX: usize = 10_000;
pub const TAG_MAX: usize = 50;
pub const TAGS_MAX: usize = 50;

/// A contact's fields as a client sends them on create.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// The display name, as in the recipient's address.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub name: String,
    /// For personalised mail (`{{ contact.first_name }}`). When neither it nor `last_name` is
    /// given, both are taken from `name` ("Ada Lovelace", "Lovelace, Ada": Ada and Lovelace).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub first_name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 100))]
    pub last_name: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254))]
    pub email: String,
    /// With its country code, like `+33 6 12 34 56 78`; stored in E.164.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub company: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 1000))]
    pub address: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub tax_id: Option<String>,
    /// At most 50 tags of at most 50 characters, without commas.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub tags: Vec<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 10000))]
    pub notes: Option<String>,
}

/// A partial update: an absent field stays, `null` clears an optional one. A new `name` leaves
/// `first_name` and `last_name` as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub last_name: Option<Option<String>>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub company: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub address: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub tax_id: Option<Option<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub notes: Option<Option<String>>,
}

/// Distinguishes a field sent as `null` (`Some(None)`) from one not sent (`None`, by `default`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// An optional one-line field (a company, a tax id): what may end up in a mail header or a CSV
/// cell as one value.
fn line(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Error> {
    match value {
        Some(raw) if raw.trim().is_empty() && borcelle_crds::text::is_one_line(raw) => Ok(None),
        Some(raw) => validate::one_line(field, raw, max).map(Some),
        None => Ok(None),
    }
}

fn text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Error> {
    // Counted as sent, spaces included: what the API document's maxLength says.
    if value.is_some_and(|v| v.chars().count() > max) {
        return Err(Error::invalid(field, format!("{field} must be at most {max} characters")));
    }
    if value.is_some_and(|v| v.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')) {
        return Err(Error::invalid(field, format!("{field} must not contain control characters")));
    }
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    Ok(Some(value.to_owned()))
}

/// Normalises a phone number with its country code to E.164 (`+33612345678`).
/// Spaces, dots, dashes and parentheses are ignored; `00` may stand for `+`.
pub fn phone(raw: &str) -> Result<String, Error> {
    let bad = || {
        Error::invalid(
            "phone",
            "enter the phone number with its country code, like +33 6 12 34 56 78 or +1 415 555 0100",
        )
    };
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}')).collect();
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest
    } else {
        return Err(bad());
    };
    if !(7..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) || digits.starts_with('0') {
        return Err(bad());
    }
    Ok(format!("+{digits}"))
}

/// Trims, lower-cases, deduplicates and bounds tags.
pub fn tags(raw: &[String]) -> Result<Vec<String>, Error> {
    // Counted as sent, as the API document's maxItems says.
    if raw.len() > TAGS_MAX {
        return Err(Error::invalid("tags", format!("a contact can have at most {TAGS_MAX} tags")));
    }
    let mut out: Vec<String> = Vec::new();
    for sent in raw {
        let tag = sent.trim();
        if sent.chars().count() > TAG_MAX || sent.chars().any(char::is_control) || sent.contains(',') {
            return Err(Error::invalid(
                "tags",
                format!("each tag must be at most {TAG_MAX} characters, without commas or control characters"),
            ));
        }
        if tag.is_empty() {
            continue;
        }
        let tag = tag.to_lowercase();
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > TAGS_MAX {
        return Err(Error::invalid("tags", format!("a contact can have at most {TAGS_MAX} tags")));
    }
    Ok(out)
}

/// The first and last name personalised mail uses for a contact named `name` that has neither:
/// [`borcelle_mail::merge::split_name`]'s reading of it, each part kept to what a contact may
/// hold (one line of at most 100 characters; nothing rather than blank).
pub fn split_name(name: &str) -> (Option<String>, Option<String>) {
    let fit = |part: Option<String>, max: usize| {
        let part: String = part?.chars().filter(|c| !c.is_control()).take(max).collect();
        let part = part.trim();
        (!part.is_empty()).then(|| part.to_owned())
    };
    let (first, last) = borcelle_mail::merge::split_name(name);
    (fit(first, FIRST_NAME_MAX), fit(last, LAST_NAME_MAX))
}

impl ContactInput {
    /// Checks a new contact's fields: as [`ContactInput::validate`], and without a first or a
    /// last name, both are taken from the name ([`split_name`]).
    pub fn validate_new(self) -> Result<ContactFields, Error> {
        let mut fields = self.validate()?;
        if fields.first_name.is_none() && fields.last_name.is_none() {
            (fields.first_name, fields.last_name) = split_name(&fields.name);
        }
        Ok(fields)
    }

    /// Checks and normalises the fields as given (a blank optional field is absent): what an
    /// edit stores.
    pub fn validate(self) -> Result<ContactFields, Error> {
        // Every field is checked, so a form can show all its errors at once.
        let mut errors = crate::error::FieldErrors::default();
        // The name is the display name of the recipient's address: one line.
        let name = errors.check(validate::one_line("name", &self.name, NAME_MAX));
        let first_name = errors.check(line("first_name", self.first_name.as_deref(), FIRST_NAME_MAX));
        let last_name = errors.check(line("last_name", self.last_name.as_deref(), LAST_NAME_MAX));
        let email = errors.check(validate::email("email", &self.email));
        let phone = errors.check(self.phone.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(phone).transpose());
        let company = errors.check(line("company", self.company.as_deref(), COMPANY_MAX));
        let address = errors.check(text("address", self.address.as_deref(), ADDRESS_MAX));
        let tax_id = errors.check(line("tax_id", self.tax_id.as_deref(), TAX_ID_MAX));
        let tags = errors.check(tags(&self.tags));
        let notes = errors.check(text("notes", self.notes.as_deref(), NOTES_MAX));
        match (name, first_name, last_name, email, phone, company, address, tax_id, tags, notes) {
            (
                Some(name),
                Some(first_name),
                Some(last_name),
                Some(email),
                Some(phone),
                Some(company),
                Some(address),
                Some(tax_id),
                Some(tags),
                Some(notes),
            ) => Ok(ContactFields {
                name,
                first_name,
                last_name,
                email,
                phone,
                company,
                address,
                tax_id,
                tags,
                notes: notes.unwrap_or_default(),
            }),
            _ => Err(errors.into_error()),
        }
    }
}

impl ContactPatch {
    /// Applies the patch to the current fields and validates the result.
    pub fn apply(self, current: ContactFields) -> Result<ContactFields, Error> {
        let pick = |patch: Option<Option<String>>, current: Option<String>| match patch {
            Some(value) => value,
            None => current,
        };
        ContactInput {
            name: self.name.unwrap_or(current.name),
            first_name: pick(self.first_name, current.first_name),
            last_name: pick(self.last_name, current.last_name),
            email: self.email.unwrap_or(current.email),
            phone: pick(self.phone, current.phone),
            company: pick(self.company, current.company),
            address: pick(self.address, current.address),
            tax_id: pick(self.tax_id, current.tax_id),
            tags: self.tags.unwrap_or(current.tags),
            notes: pick(self.notes, Some(current.notes)),
        }
        .validate()
    }
}

/// The owner already has a contact with this email: `existing` names it.
pub fn duplicate_email(existing: uuid::Uuid) -> Error {
    Error::Conflict {
        code: "duplicate_email",
        field: "email",
        message: "you already have a contact with this email".to_owned(),
        existing_id: Some(existing),
    }
}

/// A list order as clients name it: `name`, `created`, `updated`, each optionally prefixed with `-`
/// for descending order.
pub fn parse_sort(raw: Option<&str>) -> Result<Sort, Error> {
    let raw = raw.unwrap_or("name");
    let (descending, key) = match raw.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, raw),
    };
    let key = match key {
        "name" => SortKey::Name,
        "created" => SortKey::Created,
        "updated" => SortKey::Updated,
        _ => {
            return Err(Error::invalid(
                "sort",
                "sort must be one of name, created, updated (prefix with - for descending)",
            ));
        }
    };
    Ok(Sort { key, descending })
}

fn sort_tag(sort: Sort) -> &'static str {
    match (sort.key, sort.descending) {
        (SortKey::Name, false) => "name",
        (SortKey::Name, true) => "-name",
        (SortKey::Created, false) => "created",
        (SortKey::Created, true) => "-created",
        (SortKey::Updated, false) => "updated",
        (SortKey::Updated, true) => "-updated",
    }
}

/// Where the next page starts: the sort value and id of the last row of this page. Opaque to
/// clients; bound to its sort so a cursor cannot be replayed against another order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: String,
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "i")]
    pub id: uuid::Uuid,
}

impl Cursor {
    pub fn new(sort: Sort, key: String, id: uuid::Uuid) -> Self {
        Cursor { sort: sort_tag(sort).to_owned(), key, id }
    }

    /// The cursor of the page that starts after `after` (a listing's `next`).
    pub fn next(sort: Sort, after: After) -> Self {
        Cursor::new(sort, after.key, after.id)
    }

    /// Where the page after this cursor starts.
    pub fn after(&self) -> After {
        After { key: self.key.clone(), id: self.id }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a cursor a list handed out for `sort`; anything else is [`Error::UnknownCursor`].
    pub fn decode(raw: &str, sort: Sort) -> Result<Cursor, Error> {
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| Error::UnknownCursor)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| Error::UnknownCursor)?;
        if cursor.sort != sort_tag(sort) {
            return Err(Error::UnknownCursor);
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_normalised_to_e164() {
        assert_eq!(phone("+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(phone("0044 (20) 7946-0958").unwrap(), "+442079460958");
        assert_eq!(phone("+1.415.555.0100").unwrap(), "+14155550100");
        for bad in ["06 12 34 56 78", "+0 123456789", "+33 6 12 ab 56 78", "+1234", "+1234567890123456"] {
            assert!(phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_trimmed_deduplicated_and_bounded() {
        let got = tags(&[" VIP ".into(), "vip".into(), "".into(), "lead".into()]).unwrap();
        assert_eq!(got, vec!["vip".to_owned(), "lead".to_owned()]);
        assert!(tags(&["a,b".into()]).is_err());
        assert!(tags(&(0..51).map(|i| format!("t{i}")).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn a_patch_keeps_absent_fields_and_clears_nulls() {
        let current = ContactInput {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            phone: Some("+33612345678".into()),
            company: Some("Analytical".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let patch: ContactPatch = serde_json::from_str(r#"{"company": null, "name": "Ada L."}"#).unwrap();
        let next = patch.apply(current).unwrap();
        assert_eq!(next.name, "Ada L.");
        assert_eq!(next.company, None);
        assert_eq!(next.phone.as_deref(), Some("+33612345678"));
    }

    fn ada() -> ContactInput {
        ContactInput { name: "Ada Lovelace".into(), email: "ada@example.com".into(), ..Default::default() }
    }

    #[test]
    fn a_new_contact_without_first_or_last_name_gets_both_from_its_name() {
        let fields = ada().validate_new().unwrap();
        assert_eq!((fields.first_name.as_deref(), fields.last_name.as_deref()), (Some("Ada"), Some("Lovelace")));
        let blank = ContactInput { first_name: Some("  ".into()), last_name: Some(String::new()), ..ada() };
        let fields = blank.validate_new().unwrap();
        assert_eq!((fields.first_name.as_deref(), fields.last_name.as_deref()), (Some("Ada"), Some("Lovelace")));
        // Checked and stored as given, without a split, for an edit.
        let fields = ada().validate().unwrap();
        assert_eq!((fields.first_name, fields.last_name), (None, None));
    }

    #[test]
    fn given_first_or_last_names_are_kept_as_given() {
        let input = ContactInput { first_name: Some(" Augusta ".into()), last_name: Some("King".into()), ..ada() };
        let fields = input.validate_new().unwrap();
        assert_eq!((fields.first_name.as_deref(), fields.last_name.as_deref()), (Some("Augusta"), Some("King")));
        let only_first = ContactInput { first_name: Some("Augusta".into()), ..ada() }.validate_new().unwrap();
        assert_eq!((only_first.first_name.as_deref(), only_first.last_name), (Some("Augusta"), None));
    }

    #[test]
    fn first_and_last_names_are_one_line_of_at_most_100_characters() {
        for field in ["first_name", "last_name"] {
            let with = |value: String| {
                let mut input = ada();
                *(if field == "first_name" { &mut input.first_name } else { &mut input.last_name }) = Some(value);
                input.validate_new()
            };
            assert!(with("a".repeat(100)).is_ok());
            for bad in ["a".repeat(101), "Ada\nBcc: x@example.com".to_owned(), "Ada\t".to_owned()] {
                let err = with(bad.clone()).unwrap_err();
                assert_eq!(err.field(), Some(field), "{bad:?}");
            }
        }
    }

    #[test]
    fn split_names_fit_what_a_contact_may_hold() {
        let (first, last) = split_name(&format!("{} Lovelace", "A".repeat(150)));
        assert_eq!(first.map(|f| f.chars().count()), Some(FIRST_NAME_MAX));
        assert_eq!(last.as_deref(), Some("Lovelace"));
    }

    #[test]
    fn a_patch_of_the_name_keeps_first_and_last_names_and_null_clears_them() {
        let current = ada().validate_new().unwrap();
        let patch: ContactPatch = serde_json::from_str(r#"{"name": "Augusta Ada King"}"#).unwrap();
        let next = patch.apply(current.clone()).unwrap();
        assert_eq!(next.name, "Augusta Ada King");
        assert_eq!((next.first_name.as_deref(), next.last_name.as_deref()), (Some("Ada"), Some("Lovelace")));
        let patch: ContactPatch = serde_json::from_str(r#"{"first_name": null, "last_name": "King"}"#).unwrap();
        let next = patch.apply(current).unwrap();
        assert_eq!((next.first_name, next.last_name.as_deref()), (None, Some("King")));
    }

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_sort() {
        let sort = parse_sort(Some("-updated")).unwrap();
        let cursor = Cursor::new(sort, "2026-11-24T05:00:00.123456Z".into(), uuid::Uuid::nil());
        assert_eq!(Cursor::decode(&cursor.encode(), sort).unwrap(), cursor);
        assert!(Cursor::decode(&cursor.encode(), parse_sort(Some("name")).unwrap()).is_err());
        assert!(Cursor::decode("garbage!", sort).is_err());
        assert!(parse_sort(Some("email")).is_err());
    }
}
