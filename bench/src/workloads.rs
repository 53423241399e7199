//! The requests of each phase: contact create, contact list pages, autocomplete.

use bytes::Bytes;
use hyper::{Method, StatusCode};

use crate::load::{Call, Workload};

/// `POST /api/v1/contacts`, each with a new email.
pub struct CreateContacts {
    /// Keeps emails unique across runs on the same database.
    pub run: String,
}

impl Workload for CreateContacts {
    type State = (usize, u64);

    fn state(&self, connection: usize) -> Self::State {
        (connection, 0)
    }

    fn next(&self, (connection, n): &mut Self::State) -> Call {
        *n += 1;
        let body = format!(
            r#"{{"name":"Created Person {connection} {n}","email":"created.{run}.{connection}.{n}@bench.example","phone":"+33 6 12 34 56 78","company":"Bench Co","tags":["created","bench"]}}"#,
            run = self.run
        );
        Call { method: Method::POST, path: "/api/v1/contacts".to_owned(), body: Some(Bytes::from(body)), class: 0 }
    }

    fn expected(&self) -> StatusCode {
        StatusCode::CREATED
    }
}

/// `GET /api/v1/contacts?limit=50`, following `next_cursor` page after page (by name) and starting
/// again at the first page after the last.
pub struct ListContacts;

impl Workload for ListContacts {
    type State = Option<String>;

    fn state(&self, _connection: usize) -> Self::State {
        None
    }

    fn next(&self, cursor: &mut Self::State) -> Call {
        let path = match cursor {
            Some(cursor) => format!("/api/v1/contacts?limit=50&cursor={cursor}"),
            None => "/api/v1/contacts?limit=50".to_owned(),
        };
        Call { method: Method::GET, path, body: None, class: 0 }
    }

    fn expected(&self) -> StatusCode {
        StatusCode::OK
    }

    fn observe(&self, cursor: &mut Self::State, body: &Bytes) {
        // The cursor is URL-safe base64 at the end of the page; no need to parse 50 contacts.
        const KEY: &str = "\"next_cursor\":\"";
        let text = std::str::from_utf8(body).unwrap_or("");
        *cursor = text.rfind(KEY).and_then(|at| {
            let rest = &text[at + KEY.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        });
    }
}

/// `GET /contacts` (the contacts table, HTML: 25 rows, the total, each row's last email), following
/// the page's `rel="next"` link page after page and starting again after the last.
pub struct ListPages;

impl Workload for ListPages {
    type State = Option<String>;

    fn state(&self, _connection: usize) -> Self::State {
        None
    }

    fn next(&self, next: &mut Self::State) -> Call {
        let path = next.clone().unwrap_or_else(|| "/contacts".to_owned());
        Call { method: Method::GET, path, body: None, class: 0 }
    }

    fn expected(&self) -> StatusCode {
        StatusCode::OK
    }

    fn observe(&self, next: &mut Self::State, body: &Bytes) {
        // `<a class="button" href="/contacts?…" rel="next">`, its `&` escaped by the template.
        const END: &str = "\" rel=\"next\"";
        let text = std::str::from_utf8(body).unwrap_or("");
        *next = text.find(END).and_then(|end| {
            let start = text[..end].rfind("href=\"")? + "href=\"".len();
            Some(text[start..end].replace("&#38;", "&").replace("&amp;", "&"))
        });
    }
}

/// What autocomplete is typed with: prefixes of 1, 2, 3 and 5 characters, fragments from the middle
/// of a word, and misspellings. All match some of the seeded contacts (see `seed`).
pub const AUTOCOMPLETE_CLASSES: [(&str, &[&str]); 6] = [
    ("1-character prefix", &["m", "j", "a", "s", "t", "k", "g", "z"]),
    ("2-character prefix", &["ma", "jo", "an", "sa", "th", "ga", "li", "ro"]),
    ("3-character prefix", &["mar", "joh", "and", "sar", "tho", "gar", "wil", "ros"]),
    ("5-character prefix", &["marti", "johns", "ander", "garci", "rodri", "thomp", "willi", "isabe"]),
    ("fragment (mid-word)", &["tinez", "ohnso", "derso", "arcia", "drigu", "ompso", "illia", "abell"]),
    ("typo", &["jonhson", "martniez", "andersen", "garcai", "rodriguex", "tompson", "wiliams", "isabela"]),
];

/// `GET /api/v1/contacts/autocomplete?q=…`, cycling through [`AUTOCOMPLETE_CLASSES`] so that
/// every class gets the same share.
pub struct Autocomplete;

impl Workload for Autocomplete {
    type State = usize;

    fn state(&self, connection: usize) -> Self::State {
        connection * 7
    }

    fn next(&self, n: &mut Self::State) -> Call {
        *n += 1;
        let class = *n % AUTOCOMPLETE_CLASSES.len();
        let words = AUTOCOMPLETE_CLASSES[class].1;
        let typed = words[(*n / AUTOCOMPLETE_CLASSES.len()) % words.len()];
        Call { method: Method::GET, path: format!("/api/v1/contacts/autocomplete?q={typed}"), body: None, class }
    }

    fn expected(&self) -> StatusCode {
        StatusCode::OK
    }

    fn classes(&self) -> usize {
        AUTOCOMPLETE_CLASSES.len()
    }
}
