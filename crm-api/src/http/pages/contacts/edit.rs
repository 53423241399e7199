//! Creating, editing and deleting a contact through forms; field errors stay next to their field.
//! A new contact without a first or last name gets them from its name; an edit stores the form as
//! it is (emptied names stay empty).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::{ContactForm, FIELDS, duplicate_email, owned_contact};
use crate::error::AppError;
use crate::http::access::Id;
use crate::http::extract::FormBody;
use crate::http::pages::{FormState, Layout, PageError, PageUser, render};
use crate::state::AppState;
use borcelle_store::contacts::{self, Contact};

#[derive(Template)]
#[template(path = "pages/contacts_form.html")]
struct FormPage {
    layout: Layout,
    /// The contact being edited; `None` on the create form.
    contact: Option<Contact>,
    form: FormState,
}

impl FormPage {
    fn action(&self) -> String {
        match &self.contact {
            Some(contact) => format!("/contacts/{}/edit", contact.id),
            None => "/contacts/new".to_owned(),
        }
    }

    /// Each field's label, for the summary of what to fix.
    fn labels(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("name", "Name"),
            ("email", "Email"),
            ("first_name", "First name"),
            ("last_name", "Last name"),
            ("phone", "Phone"),
            ("company", "Company"),
            ("tax_id", "Tax id"),
            ("tags", "Tags"),
            ("address", "Address"),
            ("notes", "Notes"),
        ]
    }

    /// The first name's hint: on the create form, what empty names become.
    fn first_name_hint(&self) -> &'static str {
        if self.contact.is_some() { "" } else { "Leave first and last name empty to take them from the name" }
    }
}

fn form_page(layout: Layout, contact: Option<Contact>, form: FormState, status: StatusCode) -> Response {
    render(FormPage { layout, contact, form }, status)
}

pub async fn new_form(State(state): State<AppState>, PageUser(identity): PageUser) -> Response {
    form_page(Layout::new(&state, Some(&identity)), None, FormState::default(), StatusCode::OK)
}

pub async fn create(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    FormBody(form): FormBody<ContactForm>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let fields = match form.input().validate_new().map_err(AppError::from) {
        Ok(fields) => fields,
        Err(err) => return form_page(layout, None, form.state().with_error(&err, &FIELDS), err.status()),
    };
    let mut db = match state.db.acquire().await {
        Ok(db) => db,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    match contacts::insert(&mut db, Uuid::now_v7(), identity.owner(), &fields).await {
        Ok(Ok(contact)) => Redirect::to(&format!("/contacts/{}?saved=1", contact.id)).into_response(),
        Ok(Err(existing)) => {
            let err = duplicate_email(existing);
            form_page(layout, None, form.state().with_error(&err, &FIELDS), err.status())
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

pub async fn edit_form(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Contact>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match owned_contact(&state, identity.owner(), id, Layout::new(&state, Some(&identity))).await {
        Ok(contact) => {
            let form = ContactForm::from_contact(&contact).state();
            form_page(layout, Some(contact), form, StatusCode::OK)
        }
        Err(response) => response,
    }
}

pub async fn update(
    State(state): State<AppState>,
    PageUser(identity): PageUser,
    id: Id<Contact>,
    FormBody(form): FormBody<ContactForm>,
) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let contact = match owned_contact(&state, identity.owner(), id, Layout::new(&state, Some(&identity))).await {
        Ok(contact) => contact,
        Err(response) => return response,
    };
    let fields = match form.input().validate().map_err(AppError::from) {
        Ok(fields) => fields,
        Err(err) => return form_page(layout, Some(contact), form.state().with_error(&err, &FIELDS), err.status()),
    };
    let mut tx = match state.db.begin().await {
        Ok(tx) => tx,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let updated = contacts::update(&mut tx, identity.owner(), contact.id, &fields).await;
    match updated {
        Ok(Ok(updated)) => match tx.commit().await {
            Ok(()) => Redirect::to(&format!("/contacts/{}?saved=1", updated.id)).into_response(),
            Err(err) => PageError::new(layout, err).into_response(),
        },
        Ok(Err(existing)) => {
            let err = duplicate_email(existing);
            form_page(layout, Some(contact), form.state().with_error(&err, &FIELDS), err.status())
        }
        // The contact was deleted meanwhile (the update found no row).
        Err(borcelle_store::Error::Query(sqlx::Error::RowNotFound)) => {
            PageError::new(layout, crate::error::AppError::not_found("contact")).into_response()
        }
        Err(err) => PageError::new(layout, err).into_response(),
    }
}

#[derive(Template)]
#[template(path = "pages/contacts_delete.html")]
struct DeletePage {
    layout: Layout,
    contact: Contact,
}

/// The confirmation step: deleting takes a second, deliberate POST.
pub async fn confirm_delete(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Contact>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    match owned_contact(&state, identity.owner(), id, Layout::new(&state, Some(&identity))).await {
        Ok(contact) => render(DeletePage { layout, contact }, StatusCode::OK),
        Err(response) => response,
    }
}

pub async fn delete(State(state): State<AppState>, PageUser(identity): PageUser, id: Id<Contact>) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let contact = match owned_contact(&state, identity.owner(), id, Layout::new(&state, Some(&identity))).await {
        Ok(contact) => contact,
        Err(response) => return response,
    };
    match contacts::delete(&state.db, identity.owner(), contact.id).await {
        // Deleted now, or by another tab a moment ago: either way it is gone.
        Ok(_) => Redirect::to("/contacts?deleted=1").into_response(),
        Err(err) => PageError::new(layout, err).into_response(),
    }
}
