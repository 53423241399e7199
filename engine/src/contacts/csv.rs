//! CSV import and export of contacts. Import reads the whole file first: a file-level problem
//! (not UTF-8, malformed CSV, no email column) imports nothing; row-level problems are reported
//! per row while the valid rows are created or updated by email.

use std::collections::HashMap;

use serde::Serialize;

use crate::Error;
use crate::contacts::{ContactFields, ContactInput, split_name};
use borcelle_store::contacts::{self, Contact};
use borcelle_store::{Owner, PgConnection};

/// Most data rows one import may carry.
pub const IMPORT_ROWS_MAX: usize = 50_000;
/// The columns an import can fill, in export order.
pub const FIELDS: [&str; 10] =
    ["name", "first_name", "last_name", "email", "phone", "company", "address", "tax_id", "tags", "notes"];

/// Header names recognised for each field (compared lower-cased, spaces, dashes and underscores ignored).
fn aliases(field: &str) -> &'static [&'static str] {
    match field {
        "name" => &["name", "fullname", "contact", "contactname", "displayname"],
        "first_name" => &["firstname", "givenname", "forename"],
        "last_name" => &["lastname", "surname", "familyname"],
        "email" => &["email", "emailaddress", "mail"],
        "phone" => &["phone", "phonenumber", "telephone", "tel", "mobile"],
        "company" => &["company", "organization", "organisation", "org", "employer"],
        "address" => &["address", "postaladdress", "streetaddress"],
        "tax_id" => &["taxid", "vat", "vatnumber", "taxnumber"],
        "tags" => &["tags", "labels", "groups"],
        "notes" => &["notes", "note", "comments", "comment"],
        _ => &[],
    }
}

fn squash(header: &str) -> String {
    header.trim().to_lowercase().chars().filter(|c| !matches!(c, ' ' | '-' | '_')).collect()
}

/// A row that could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowError {
    /// Line of the file (the header is line 1).
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// What an import will write, and what it will not.
#[derive(Debug, Default)]
pub struct ImportPlan {
    /// The valid rows, their first and last names as the file gives them (see [`write`]).
    pub rows: Vec<ContactFields>,
    pub errors: Vec<RowError>,
    /// Which field each header column feeds.
    pub mapping: Vec<(String, String)>,
}

/// Writes a plan's rows: creates or updates the owner's contacts by email, empty cells keeping
/// what an existing contact has; a contact created without a first or last name gets them from
/// its name ([`split_name`]). Two statements: `db` should be a transaction. Returns (created,
/// updated).
pub async fn write(db: &mut PgConnection, owner: Owner, plan: &ImportPlan) -> borcelle_store::Result<(i64, i64)> {
    if plan.rows.is_empty() {
        return Ok((0, 0));
    }
    contacts::upsert_many(db, owner, &plan.rows, split_name).await
}

fn file_error(message: impl Into<String>) -> Error {
    Error::invalid("file", message)
}

/// Reads a CSV file. `overrides` maps a field to the header that holds it (`column.email=E-mail`).
pub fn plan_import(bytes: &[u8], overrides: &HashMap<String, String>) -> Result<ImportPlan, Error> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        file_error(format!("the file must be UTF-8 text (invalid byte at offset {})", err.valid_up_to()))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Quotes pair up in valid CSV (an escaped quote is doubled); an odd count means a quoted field
    // never closes, and a lenient reader would swallow the rest of the file into it.
    if text.matches('"').count() % 2 == 1 {
        let line = text.lines().position(|l| l.matches('"').count() % 2 == 1).map_or(0, |i| i + 1);
        return Err(file_error(format!("the CSV is malformed: a quoted field opened on line {line} is never closed")));
    }
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|err| file_error(format!("the header row cannot be read: {err}")))?.clone();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(file_error("the file is empty: the first line must name the columns"));
    }

    let mut columns: HashMap<&str, usize> = HashMap::new();
    for (field, header) in overrides {
        let field = FIELDS.iter().find(|f| **f == field.as_str()).ok_or_else(|| {
            Error::invalid(
                format!("column.{field}"),
                format!("{field} is not a contact field; use one of {}", FIELDS.join(", ")),
            )
        })?;
        let index = headers.iter().position(|h| h == header.trim()).ok_or_else(|| {
            Error::invalid(format!("column.{field}"), format!("the header has no column named {header:?}"))
        })?;
        columns.insert(field, index);
    }
    for field in FIELDS {
        if columns.contains_key(field) {
            continue;
        }
        let found = headers.iter().position(|h| aliases(field).contains(&squash(h).as_str()));
        if let Some(index) = found
            && !columns.values().any(|taken| *taken == index)
        {
            columns.insert(field, index);
        }
    }
    for required in ["email", "name"] {
        if !columns.contains_key(required) {
            return Err(Error::invalid(
                format!("column.{required}"),
                format!("no {required} column: name one in the header, or map it with column.{required}=<header>"),
            ));
        }
    }

    let mut plan = ImportPlan::default();
    for field in FIELDS {
        if let Some(index) = columns.get(field) {
            plan.mapping.push((headers.get(*index).unwrap_or_default().to_owned(), field.to_owned()));
        }
    }
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    for (count, record) in reader.records().enumerate() {
        let record = record.map_err(|err| {
            let line = err.position().map_or(0, |p| p.line());
            file_error(format!("the CSV is malformed at line {line}: {err}"))
        })?;
        if count >= IMPORT_ROWS_MAX {
            return Err(file_error(format!("at most {IMPORT_ROWS_MAX} rows per import; split the file")));
        }
        let line = record.position().map_or(count as u64 + 2, |p| p.line());
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() > headers.len() {
            plan.errors.push(RowError {
                line,
                field: None,
                message: format!("the row has {} cells but the header names {} columns", record.len(), headers.len()),
            });
            continue;
        }
        let cell = |field: &str| -> Option<String> {
            columns.get(field).and_then(|i| record.get(*i)).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        // Not split here: a contact this row creates without a first or last name gets them from
        // its name when written, and an existing one keeps its own (see `write`).
        let input = ContactInput {
            name: cell("name").unwrap_or_default(),
            first_name: cell("first_name"),
            last_name: cell("last_name"),
            email: cell("email").unwrap_or_default(),
            phone: cell("phone"),
            company: cell("company"),
            address: cell("address"),
            tax_id: cell("tax_id"),
            tags: cell("tags").map(|t| t.split([';', '|', ',']).map(str::to_owned).collect()).unwrap_or_default(),
            notes: cell("notes"),
        };
        match input.validate() {
            Ok(fields) => match first_line_of.get(&fields.email) {
                Some(first) => plan.errors.push(RowError {
                    line,
                    field: Some("email".into()),
                    message: format!("the same email as line {first}; only the first is imported"),
                }),
                None => {
                    first_line_of.insert(fields.email.clone(), line);
                    plan.rows.push(fields);
                }
            },
            Err(err) => {
                plan.errors.push(RowError { line, field: err.field().map(str::to_owned), message: err.to_string() })
            }
        }
    }
    Ok(plan)
}

/// Spreadsheet apps run cells that start with these as formulas: such cells get a leading `'`.
fn defuse(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() }
}

/// The header line of an export.
pub fn export_header() -> Vec<u8> {
    let mut out = FIELDS.join(",");
    out.push_str(",created_at,updated_at\n");
    out.into_bytes()
}

/// Contacts as CSV lines (no header).
pub fn export_rows(contacts: &[Contact]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::with_capacity(contacts.len() * 128));
    for c in contacts {
        writer.write_record([
            defuse(&c.name),
            defuse(c.first_name.as_deref().unwrap_or_default()),
            defuse(c.last_name.as_deref().unwrap_or_default()),
            defuse(&c.email),
            c.phone.clone().unwrap_or_default(),
            defuse(c.company.as_deref().unwrap_or_default()),
            defuse(c.address.as_deref().unwrap_or_default()),
            defuse(c.tax_id.as_deref().unwrap_or_default()),
            defuse(&c.tags.join(";")),
            defuse(&c.notes),
            c.created_at.to_rfc3339(),
            c.updated_at.to_rfc3339(),
        ])?;
    }
    writer.into_inner().map_err(|err| err.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_recognised_by_common_names_and_rows_validated() {
        let csv = "Full Name,E-mail,Phone Number,Organization,Labels\n\
                   Ada Lovelace,ADA@example.com,+44 20 7946 0958,Analytical,vip;math\n\
                   Bad Phone,bad@example.com,12345,,\n\
                   ,noname@example.com,,,\n\
                   Ada Again,ada@example.com,,,\n";
        let plan = plan_import(csv.as_bytes(), &HashMap::new()).unwrap();
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].email, "ada@example.com");
        assert_eq!(plan.rows[0].tags, vec!["vip".to_owned(), "math".to_owned()]);
        let lines: Vec<(u64, Option<&str>)> = plan.errors.iter().map(|e| (e.line, e.field.as_deref())).collect();
        assert_eq!(lines, vec![(3, Some("phone")), (4, Some("name")), (5, Some("email"))]);
    }

    #[test]
    fn file_level_problems_refuse_the_whole_file() {
        assert!(plan_import(b"\xff\xfe", &HashMap::new()).is_err());
        assert!(plan_import(b"", &HashMap::new()).is_err());
        assert!(plan_import(b"name,phone\nAda,+4420\n", &HashMap::new()).is_err(), "no email column");
        let malformed = "name,email\n\"Ada,ada@example.com\n";
        assert!(plan_import(malformed.as_bytes(), &HashMap::new()).is_err(), "unterminated quote");
        let overrides = HashMap::from([("email".to_owned(), "Courriel".to_owned())]);
        assert!(plan_import(b"name,email\n", &overrides).is_err(), "mapped header missing");
    }

    #[test]
    fn a_mapping_names_unusual_headers() {
        let overrides =
            HashMap::from([("email".to_owned(), "Courriel".to_owned()), ("name".to_owned(), "Nom".to_owned())]);
        let plan = plan_import("Nom,Courriel\nAda,ada@example.com\n".as_bytes(), &overrides).unwrap();
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(
            plan.mapping,
            vec![("Nom".to_owned(), "name".to_owned()), ("Courriel".to_owned(), "email".to_owned())]
        );
    }

    #[test]
    fn first_and_last_name_columns_are_recognised_and_checked() {
        for (first, last) in [("First name", "Last name"), ("first_name", "surname"), ("Given Name", "Family-Name")] {
            let csv = format!("Name,Email,{first},{last}\nAda Lovelace,ada@example.com,Augusta,King\n");
            let plan = plan_import(csv.as_bytes(), &HashMap::new()).unwrap();
            let row = &plan.rows[0];
            assert_eq!((row.first_name.as_deref(), row.last_name.as_deref()), (Some("Augusta"), Some("King")), "{csv}");
            assert_eq!(row.name, "Ada Lovelace", "the display name stays");
        }
        let csv =
            format!("name,email,first_name,last_name\nAda,ada@example.com,{},\nBo,bo@example.com,,\n", "a".repeat(101));
        let plan = plan_import(csv.as_bytes(), &HashMap::new()).unwrap();
        let fields: Vec<Option<&str>> = plan.errors.iter().map(|e| e.field.as_deref()).collect();
        assert_eq!(fields, vec![Some("first_name")]);
        // Empty cells, and files without the columns, leave them absent: split only when created.
        assert_eq!((plan.rows[0].first_name.as_deref(), plan.rows[0].last_name.as_deref()), (None, None));
        let plan = plan_import(b"name,email\nAda Lovelace,ada@example.com\n", &HashMap::new()).unwrap();
        assert_eq!((plan.rows[0].first_name.as_deref(), plan.rows[0].last_name.as_deref()), (None, None));
    }

    #[test]
    fn exports_carry_first_and_last_names() {
        let header = String::from_utf8(export_header()).unwrap();
        assert!(header.starts_with("name,first_name,last_name,email,"), "{header}");
        let now = chrono::Utc::now();
        let contact = Contact {
            id: uuid::Uuid::nil(),
            name: "Ada Lovelace".into(),
            first_name: Some("Ada".into()),
            last_name: None,
            email: "ada@example.com".into(),
            phone: None,
            company: None,
            address: None,
            tax_id: None,
            tags: vec![],
            notes: String::new(),
            created_at: now,
            updated_at: now,
        };
        let row = String::from_utf8(export_rows(&[contact]).unwrap()).unwrap();
        assert!(row.starts_with("Ada Lovelace,Ada,,ada@example.com,"), "{row}");
    }

    #[test]
    fn exported_cells_cannot_run_as_formulas() {
        assert_eq!(defuse("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse("Ada"), "Ada");
    }
}
