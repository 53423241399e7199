//! `POST /contacts/bulk`: the contacts table's bulk actions (add or remove a tag, send an email,
//! delete) on the ticked rows or on every contact the list's filters match. Nothing happens
//! before a confirmation page that names how many contacts it is for; the email is written on a
//! page of its own first. Each action is one statement, whatever the number of contacts.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

use super::list::filters;
use crate::error::AppError;
use crate::http::extract::FormFields;
use crate::http::pages::{FormState, Layout, PageError, PageUser, contacts_phrase, link, render};
use crate::state::AppState;
use borcelle_engine::contacts::TAGS_MAX;
use borcelle_engine::messaging::{self, Chosen, Outgoing, RECIPIENT_IDS_MAX};
use borcelle_store::contacts::{self, Selection};

/// What a bulk action does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Tag,
    Untag,
    Email,
    Delete,
}

impl Action {
    fn parse(raw: &str) -> Result<Self, AppError> {
        match raw {
            "tag" => Ok(Action::Tag),
            "untag" => Ok(Action::Untag),
            "email" => Ok(Action::Email),
            "delete" => Ok(Action::Delete),
            _ => Err(AppError::validation("action", "choose an action: tag, untag, email or delete")),
        }
    }

    fn value(self) -> &'static str {
        match self {
            Action::Tag => "tag",
            Action::Untag => "untag",
            Action::Email => "email",
            Action::Delete => "delete",
        }
    }
}

/// The contacts an action is for, as the form said.
struct Picked {
    /// Ticked rows (when not all matching).
    ids: Vec<Uuid>,
    all: bool,
    q: String,
    tag: String,
}

impl Picked {
    fn selection(&self) -> Selection<'_> {
        if self.all {
            Selection::Matching {
                search: Some(self.q.as_str()).filter(|q| !q.is_empty()),
                tag: Some(self.tag.as_str()).filter(|t| !t.is_empty()),
            }
        } else {
            Selection::Ids(&self.ids)
        }
    }
}

#[derive(Template)]
#[template(path = "pages/contacts_bulk.html")]
struct BulkPage {
    layout: Layout,
    action: &'static str,
    /// `compose` (the email to write), `confirm`, or `empty` (nothing chosen).
    step: &'static str,
    scope: &'static str,
    ids: Vec<Uuid>,
    q: String,
    tag: String,
    sort: String,
    per: String,
    label: String,
    count: i64,
    form: FormState,
}

impl BulkPage {
    /// "30 contacts", "1 contact".
    fn contacts(&self) -> String {
        contacts_phrase(self.count)
    }

    /// The list the action started from.
    fn back_href(&self) -> String {
        list_href(&self.q, &self.tag, &self.sort, &self.per, &[])
    }
}

/// `/contacts?…` with the list's own parameters, then `extra`.
fn list_href(q: &str, tag: &str, sort: &str, per: &str, extra: &[(&str, &str)]) -> String {
    let per = if per == "25" { "" } else { per };
    let mut params = vec![("q", q), ("tag", tag), ("sort", sort), ("per", per)];
    params.extend_from_slice(extra);
    link("/contacts", &params)
}

pub async fn bulk(State(state): State<AppState>, PageUser(identity): PageUser, form: FormFields) -> Response {
    let layout = Layout::new(&state, Some(&identity));
    let owner = identity.owner();
    let parsed = (|| {
        let action = Action::parse(form.get("action"))?;
        let (q, tag) = filters(Some(form.get("q")), Some(form.get("tag")))?;
        let all = match form.get("scope") {
            "all" => true,
            "selected" | "" => false,
            _ => return Err(AppError::validation("scope", "apply to the selected contacts or to all matching")),
        };
        let ids: Result<Vec<Uuid>, _> = if all { Ok(Vec::new()) } else { form.all("id").map(str::parse).collect() };
        let mut ids =
            ids.map_err(|_| AppError::validation("id", "the selection could not be read: tick the contacts again"))?;
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > RECIPIENT_IDS_MAX {
            return Err(AppError::validation("id", format!("tick at most {RECIPIENT_IDS_MAX} contacts")));
        }
        Ok((action, Picked { ids, all, q, tag }))
    })();
    let (action, chosen) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    let count = match contacts::count_selected(&state.db, owner, chosen.selection()).await {
        Ok(count) => count,
        Err(err) => return PageError::new(layout, err).into_response(),
    };
    // The list's order and page size go back into links only when the list would take them.
    let sort = Some(form.get("sort")).filter(|s| borcelle_engine::contacts::parse_sort(Some(s)).is_ok());
    let per = Some(form.get("per")).filter(|p| p.parse().is_ok_and(|n| super::list::PAGE_SIZES.contains(&n)));
    let (sort, per) = (sort.unwrap_or_default().to_owned(), per.unwrap_or_default().to_owned());
    let mut page = BulkPage {
        layout,
        action: action.value(),
        step: "confirm",
        scope: if chosen.all { "all" } else { "selected" },
        ids: chosen.ids.clone(),
        q: chosen.q.clone(),
        tag: chosen.tag.clone(),
        sort,
        per,
        label: form.get("label").trim().to_owned(),
        count,
        form: FormState::default().with_values(&[("subject", form.get("subject")), ("body", form.get("body"))]),
    };
    if count == 0 {
        page.step = "empty";
        return render(page, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let confirmed = form.get("confirmed") == "1";
    match action {
        Action::Tag | Action::Untag => {
            let tag = match borcelle_engine::contacts::tags(std::slice::from_ref(&page.label)).map_err(AppError::from) {
                Ok(tags) if tags.len() == 1 => tags.into_iter().next().unwrap_or_default(),
                Ok(_) => {
                    let err = AppError::validation("label", "name the tag, like vip");
                    return PageError::new(page.layout, err).into_response();
                }
                Err(err) => return PageError::new(page.layout, err).into_response(),
            };
            page.label = tag;
            if !confirmed {
                return render(page, StatusCode::OK);
            }
            let selection = chosen.selection();
            let done = if action == Action::Tag {
                contacts::add_tag(&state.db, owner, selection, &page.label, TAGS_MAX as i32).await
            } else {
                contacts::remove_tag(&state.db, owner, selection, &page.label).await
            };
            let word = if action == Action::Tag { "tagged" } else { "untagged" };
            match done {
                Ok(n) => redirect_done(&page, word, n, &page.label),
                Err(err) => PageError::new(page.layout, err).into_response(),
            }
        }
        Action::Delete => {
            if !confirmed {
                return render(page, StatusCode::OK);
            }
            match contacts::delete_selected(&state.db, owner, chosen.selection()).await {
                // The list's filters stay; its page may no longer exist, so it starts again.
                Ok(n) => redirect_done(&page, "deleted", n, ""),
                Err(err) => PageError::new(page.layout, err).into_response(),
            }
        }
        Action::Email => email(&state, owner, page, &chosen, form.get("step"), confirmed).await,
    }
}

fn redirect_done(page: &BulkPage, done: &str, n: u64, label: &str) -> Response {
    let (n, of) = (n.to_string(), page.count.to_string());
    let mut extra = vec![("done", done), ("n", n.as_str()), ("of", of.as_str())];
    if !label.is_empty() {
        extra.push(("label", label));
    }
    Redirect::to(&list_href(&page.q, &page.tag, &page.sort, &page.per, &extra)).into_response()
}

/// The email step by step: write it (`compose`), see it with the count (`confirm`), send.
async fn email(
    state: &AppState,
    owner: borcelle_store::Owner,
    mut page: BulkPage,
    chosen: &Picked,
    step: &str,
    confirmed: bool,
) -> Response {
    let subject = page.form.value("subject").to_owned();
    let body = page.form.value("body").to_owned();
    if step != "review" && !confirmed {
        page.step = "compose";
        return render(page, StatusCode::OK);
    }
    let (subject, body) = match messaging::content(&subject, &body, "subject", "body").map_err(AppError::from) {
        Ok(content) => content,
        Err(err) => {
            let status = err.status();
            page.step = "compose";
            page.form = std::mem::take(&mut page.form).with_error(&err, &["subject", "body"]);
            return render(page, status);
        }
    };
    if !confirmed {
        return render(page, StatusCode::OK);
    }
    if page.count > RECIPIENT_IDS_MAX as i64 {
        let err = AppError::validation(
            "scope",
            format!("an email goes to at most {RECIPIENT_IDS_MAX} contacts at once: send a note to a tag instead"),
        );
        return PageError::new(page.layout, err).into_response();
    }
    let ids = match contacts::selected_ids(&state.db, owner, chosen.selection(), RECIPIENT_IDS_MAX as i64).await {
        Ok(ids) => ids,
        Err(err) => return PageError::new(page.layout, err).into_response(),
    };
    if ids.is_empty() {
        page.step = "empty";
        return render(page, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let outgoing = Outgoing {
        kind: "message",
        note_id: None,
        subject: &subject,
        body: &body,
        recipients: Chosen::Contacts(ids),
        attachment_ids: &[],
    };
    match state.messaging.send(owner, outgoing).await.map_err(AppError::from) {
        Ok(queued) => redirect_done(&page, "emailed", u64::try_from(queued.total).unwrap_or_default(), &subject),
        Err(err) => PageError::new(page.layout, err).into_response(),
    }
}
