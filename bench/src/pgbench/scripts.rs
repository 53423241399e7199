//! The pgbench scripts: serve's own statements for a page of contacts, a new contact and an
//! autocomplete, as serve sends them (the store's own text; the insert, a `query_as!` literal
//! there, copied), checked against what serve ran (see [`super::seen`]), with each `$n` turned
//! into a pgbench variable.

use sqlx::PgPool;
use uuid::Uuid;

use borcelle_store::contacts::{self, APPROXIMATE, After, ListQuery, PREFIXES, Sort, SortKey};

use super::{Mode, Script, Work};
use crate::workloads::AUTOCOMPLETE_CLASSES;

/// `contacts::page` for the API's pages of 50 by name (one more row is read to know that a next
/// page exists): the first page, and every page after it (the rows after the previous page's
/// last), as the store writes them.
fn list_sql() -> anyhow::Result<(String, String)> {
    let sort = Sort { key: SortKey::Name, descending: false };
    let page = |after| ListQuery { sort, limit: 50, after, search: None, tag: None, backward: false };
    let cursor = After { key: String::new(), id: Uuid::nil() };
    Ok((contacts::page_sql(&page(None))?, contacts::page_sql(&page(Some(&cursor)))?))
}

/// `contacts::insert`, the one statement of `POST /api/v1/contacts` (the counter and the words of
/// autocomplete are written by its triggers).
pub const INSERT: &str =
    "INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, phone, company, address, tax_id,
                               tags, notes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (owner_id, email) DO NOTHING
         RETURNING id, name, first_name, last_name, email, phone, company, address, tax_id, tags, notes, created_at,
                   updated_at";

/// A UUIDv7 (48-bit Unix milliseconds, version 7, random rest) made in SQL: serve makes the id of a
/// new contact in Rust (`Uuid::now_v7`) and binds it, which pgbench cannot; like serve's, these ids
/// grow with time, so the primary key takes them at its right edge.
const UUID_V7: &str = "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) PLACING \
                       substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) \
                       FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid";

/// The emails of pgbench's contacts start with this (`created.pgbench.<client>.<n>@bench.example`),
/// so that they can be deleted afterwards.
pub const CREATED_PREFIX: &str = "created.pgbench.";

/// `sql` with each `$n` replaced by `params[n - 1]`.
fn bind(sql: &str, params: &[&str]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..].chars().take_while(char::is_ascii_digit).count();
        let param = rest[at + 1..at + 1 + digits].parse::<usize>().ok().and_then(|n| params.get(n.checked_sub(1)?));
        match param {
            Some(param) => out.push_str(param),
            None => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// Pages of contacts as the list phase reads them: the first page, then each next one from the
/// last row of the page before (`\aset` keeps the last row read), and the first again after the
/// last. pgbench cannot keep the 50th row of 51 as the cursor, so its pages start one row further
/// on each time (51 rows apart, not 50): every statement is still one read of 51 rows after a key.
pub fn list(owner: Uuid, contacts: i64) -> anyhow::Result<Work> {
    let pages = (contacts + 50) / 51;
    let (first_sql, after_sql) = list_sql()?;
    let first = bind(&first_sql, &[":owner::uuid"]);
    let after = bind(&after_sql, &[":owner::uuid", ":name_key::text", ":id::uuid"]);
    let text =
        format!("\\if :page = 0\n{first}\n\\aset\n\\else\n{after}\n\\aset\n\\endif\n\\set page (:page + 1) % :pages\n");
    Ok(Work {
        what: "contact list, 50 a page",
        mode: Mode::Prepared,
        scripts: vec![Script { name: "list.sql".to_owned(), text, class: 0 }],
        variables: vec![("owner".to_owned(), owner.to_string()), var("page", 0), var("pages", pages.max(1))],
        server_sql: vec![("first page", first_sql), ("next pages", after_sql)],
        classes: 1,
    })
}

/// New contacts with the create phase's fields (`Created Person <client> <n>`, its phone, company
/// and tags), for the same owner; the emails (`created.pgbench.…`) are deleted afterwards.
pub fn create(owner: Uuid) -> Work {
    let name = "'Created Person ' || :client_id::text || ' ' || :n::text";
    let last_name = "'Person ' || :client_id::text || ' ' || :n::text";
    let email = format!("'{CREATED_PREFIX}' || :client_id::text || '.' || :n::text || '@bench.example'");
    // What serve's validation makes of the create phase's body; NULL and '' are written out, as
    // pgbench has no empty or NULL variable.
    let insert = bind(
        INSERT,
        &[
            UUID_V7,
            ":owner",
            name,
            ":first_name",
            last_name,
            &email,
            ":phone",
            ":company",
            "NULL",
            "NULL",
            ":tags",
            "''",
        ],
    );
    Work {
        what: "contact create",
        mode: Mode::Prepared,
        scripts: vec![Script { name: "create.sql".to_owned(), text: format!("\\set n :n + 1\n{insert};\n"), class: 0 }],
        variables: vec![
            ("owner".to_owned(), owner.to_string()),
            var("n", 0),
            ("first_name".to_owned(), "Created".to_owned()),
            ("phone".to_owned(), "+33612345678".to_owned()),
            ("company".to_owned(), "Bench Co".to_owned()),
            ("tags".to_owned(), "{created,bench}".to_owned()),
        ],
        server_sql: vec![("insert", INSERT.to_owned())],
        classes: 1,
    }
}

/// Every input of the autocomplete phase (class by class), and whether serve runs the second
/// statement for it: fewer than ten contacts match the prefix, and it has three characters or more.
pub async fn autocomplete_inputs(db: &PgPool, owner: Uuid) -> anyhow::Result<Vec<(usize, &'static str, bool)>> {
    let mut inputs = Vec::new();
    for (class, (_, words)) in AUTOCOMPLETE_CLASSES.iter().enumerate() {
        for typed in words.iter().copied() {
            let prefix = format!("{}%", borcelle_store::contacts::like_escape(typed));
            let found = sqlx::query(PREFIXES).bind(owner).bind(prefix).persistent(false).fetch_all(db).await?.len();
            inputs.push((class, typed, found < 10 && typed.chars().count() >= 3));
        }
    }
    Ok(inputs)
}

/// One script per input, equally weighted (the phase sends each input equally often); serve runs
/// these statements unprepared (a generic plan could not use the pattern's index range), so
/// pgbench runs them in extended mode too, planned at every call; `Mode::Prepared` for comparison.
pub fn autocomplete(owner: Uuid, inputs: &[(usize, &str, bool)], mode: Mode) -> Work {
    let mut scripts = Vec::new();
    let mut variables = vec![("owner".to_owned(), owner.to_string())];
    for (i, (class, typed, approximate)) in inputs.iter().enumerate() {
        let escaped = borcelle_store::contacts::like_escape(typed);
        variables.push((format!("typed{i}"), (*typed).to_owned()));
        variables.push((format!("prefix{i}"), format!("{escaped}%")));
        let mut text = format!("{};\n", bind(PREFIXES, &[":owner", &format!(":prefix{i}")]));
        if *approximate {
            variables.push((format!("infix{i}"), format!("%{escaped}%")));
            let approximate = bind(APPROXIMATE, &[":owner", &format!(":typed{i}"), &format!(":infix{i}")]);
            text.push_str(&format!("{approximate};\n"));
        }
        scripts.push(Script { name: format!("autocomplete-{i:02}-{typed}.sql"), text, class: *class });
    }
    Work {
        what: "autocomplete",
        mode,
        scripts,
        variables,
        server_sql: vec![("prefixes", PREFIXES.to_owned()), ("approximate", APPROXIMATE.to_owned())],
        classes: AUTOCOMPLETE_CLASSES.len(),
    }
}

fn var(name: &str, value: i64) -> (String, String) {
    (name.to_owned(), value.to_string())
}
