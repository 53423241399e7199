//! The contacts pages: the table (search with autocomplete, tag filter, sort, pages, bulk actions), a contact's
//! page (details, message timeline, compose), the create/edit/delete forms, and CSV import. They
//! call the same contact rules ([`borcelle_engine::contacts`]) and queries as the JSON API.

mod bulk;
mod edit;
mod import;
mod list;
mod show;

pub use bulk::bulk;
pub use edit::{confirm_delete, create, delete, edit_form, new_form, update};
pub use import::{IMPORT_BODY_MAX, import, import_form};
pub use list::list;
pub use show::{resubscribe, send_message, show, suppress};

use axum::response::{IntoResponse, Response};
use borcelle_engine::contacts::ContactInput;
use borcelle_store::Owner;
use borcelle_store::contacts::{self, Contact};
use serde::Deserialize;
use uuid::Uuid;

use super::{FormState, Layout, PageError};
use crate::error::AppError;
use crate::http::access::Id;
use crate::state::AppState;

/// The fields of the contact form, in page order.
const FIELDS: [&str; 10] =
    ["name", "email", "first_name", "last_name", "phone", "company", "address", "tax_id", "tags", "notes"];

/// The contact form as submitted: every field text, tags comma-separated.
#[derive(Debug, Default, Deserialize)]
pub struct ContactForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    tax_id: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    notes: String,
}

impl ContactForm {
    /// What the form holds, as the contact rules take it (empty optional fields are absent).
    fn input(&self) -> ContactInput {
        let some = |value: &str| Some(value.to_owned());
        ContactInput {
            name: self.name.clone(),
            first_name: some(&self.first_name),
            last_name: some(&self.last_name),
            email: self.email.clone(),
            phone: some(&self.phone),
            company: some(&self.company),
            address: some(&self.address),
            tax_id: some(&self.tax_id),
            tags: self.tags.split(',').map(str::to_owned).collect(),
            notes: some(&self.notes),
        }
    }

    fn from_contact(contact: &Contact) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        ContactForm {
            name: contact.name.clone(),
            email: contact.email.clone(),
            first_name: text(&contact.first_name),
            last_name: text(&contact.last_name),
            phone: text(&contact.phone),
            company: text(&contact.company),
            address: text(&contact.address),
            tax_id: text(&contact.tax_id),
            tags: contact.tags.join(", "),
            notes: contact.notes.clone(),
        }
    }

    /// The values to show again in the form.
    fn state(&self) -> FormState {
        let values = [
            &self.name,
            &self.email,
            &self.first_name,
            &self.last_name,
            &self.phone,
            &self.company,
            &self.address,
            &self.tax_id,
            &self.tags,
            &self.notes,
        ];
        FIELDS.iter().zip(values).fold(FormState::default(), |state, (name, value)| state.with_value(name, value))
    }
}

/// The error shown when the email belongs to another contact of the user.
fn duplicate_email(existing: Uuid) -> AppError {
    borcelle_engine::contacts::duplicate_email(existing).into()
}

/// The user's contact with this path id, or the not-found page (another user's contact is simply
/// not found, as a malformed id is by [`Id`]).
async fn owned_contact(state: &AppState, owner: Owner, id: Id<Contact>, layout: Layout) -> Result<Contact, Response> {
    let not_found = |layout| PageError::new(layout, AppError::not_found("contact")).into_response();
    match contacts::get(&state.db, owner, id.get()).await {
        Ok(Some(contact)) => Ok(contact),
        Ok(None) => Err(not_found(layout)),
        Err(err) => Err(PageError::new(layout, err).into_response()),
    }
}
