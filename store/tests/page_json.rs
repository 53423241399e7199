//! A page of contacts written as JSON straight from its rows (what `GET /api/v1/contacts` sends) is
//! byte for byte what serde writes of the same contacts decoded by sqlx, whatever they hold: any
//! Unicode text (control characters, quotes, backslashes, emoji, right-to-left), missing fields,
//! no tags or several, and any time PostgreSQL and chrono can both hold (before year 0 and after
//! 9999 too, where the time is written by chrono), in every sort.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

use borcelle_store::contacts::{self, After, ContactFields, ListQuery, Sort, SortKey};
use borcelle_store::testing::TestDb;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

/// A contact's fields as stored, and its times. Its email is lower-cased by PostgreSQL and made
/// unique on insert (`email = lower(email)` is a constraint).
#[derive(Debug, Clone)]
struct Stored {
    fields: ContactFields,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Any text PostgreSQL's `text` holds (every scalar value but NUL), or text heavy in what JSON
/// escapes.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!("[^\u{0}]{{0,{max}}}")).unwrap(),
        proptest::string::string_regex(&format!("[\u{1}-\u{1f}\"\\\\a\u{7f}\u{2028}😀]{{0,{max}}}")).unwrap(),
    ]
}

/// A time PostgreSQL's `timestamptz` (4713 BC to 294276 AD) and chrono (±262143 years) both
/// hold, at PostgreSQL's microsecond precision: mostly recent, some anywhere in the range, and
/// some of either on a whole second or a whole millisecond (the fraction's shorter forms).
fn time() -> impl Strategy<Value = DateTime<Utc>> {
    const RECENT: std::ops::Range<i64> = 946_684_800_000_000..4_102_444_800_000_000; // 2000–2100
    const ANY: std::ops::Range<i64> = -210_000_000_000_000_000..8_200_000_000_000_000_000;
    let micros = prop_oneof![2 => RECENT, 1 => ANY];
    let unit = prop_oneof![2 => Just(1), 1 => Just(1_000), 1 => Just(1_000_000)];
    (micros, unit).prop_map(|(us, unit): (i64, i64)| DateTime::from_timestamp_micros(us / unit * unit).unwrap())
}

/// Text of 1 to `max` characters, or none (first and last names: present means not empty).
fn some_text(max: usize) -> impl Strategy<Value = Option<String>> {
    prop::option::of(text(max).prop_filter("present means not empty", |t| !t.is_empty()))
}

fn stored() -> impl Strategy<Value = Stored> {
    let phone = prop::option::of(proptest::string::string_regex(r"\+[1-9][0-9]{6,14}").unwrap());
    (
        (text(20).prop_filter("a name has 1 to 200 characters", |n| !n.is_empty()), some_text(12)),
        (some_text(12), text(12), phone, prop::option::of(text(20))),
        (prop::option::of(text(30)), prop::option::of(text(10)), prop::collection::vec(text(8), 0..5), text(40)),
        (time(), time()),
    )
        .prop_map(
            |(
                (name, first_name),
                (last_name, email, phone, company),
                (address, tax_id, tags, notes),
                (created_at, updated_at),
            )| Stored {
                fields: ContactFields {
                    name,
                    first_name,
                    last_name,
                    email,
                    phone,
                    company,
                    address,
                    tax_id,
                    tags,
                    notes,
                },
                created_at,
                updated_at,
            },
        )
}

async fn check(db: &TestDb, contacts: Vec<Stored>) {
    let owner = db.user(&format!("{}@example.com", Uuid::new_v4().simple())).await;
    for (i, c) in contacts.iter().enumerate() {
        sqlx::query(
            "INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, phone, company, address,
                                   tax_id, tags, notes, created_at, updated_at)
             VALUES (gen_random_uuid(), $1, $2, $3, $4, lower($5) || $6 || '@example.com', $7, $8, $9, $10, $11,
                     $12, $13, $14)",
        )
        .bind(owner.id())
        .bind(&c.fields.name)
        .bind(&c.fields.first_name)
        .bind(&c.fields.last_name)
        .bind(&c.fields.email)
        .bind(i.to_string())
        .bind(&c.fields.phone)
        .bind(&c.fields.company)
        .bind(&c.fields.address)
        .bind(&c.fields.tax_id)
        .bind(&c.fields.tags)
        .bind(&c.fields.notes)
        .bind(c.created_at)
        .bind(c.updated_at)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let mut conn = db.pool.acquire().await.unwrap();
    for key in [SortKey::Name, SortKey::Created, SortKey::Updated] {
        for descending in [false, true] {
            let sort = Sort { key, descending };
            let (mut after, mut seen) = (None::<After>, 0);
            loop {
                let query =
                    ListQuery { sort, limit: 4, after: after.as_ref(), search: None, tag: None, backward: false };
                let page = contacts::page(&mut *conn, owner, &query).await.unwrap();
                let listed = contacts::list(&mut *conn, owner, &query).await.unwrap();
                let mut written = Vec::new();
                page.write_json(&mut written).unwrap();
                let written = String::from_utf8(written).expect("UTF-8");
                assert_eq!(written, serde_json::to_string(&listed.contacts).unwrap(), "{sort:?}: {contacts:#?}");
                assert_eq!(page.len(), listed.contacts.len());
                assert_eq!((&page.next, &page.prev), (&listed.next, &listed.prev));
                seen += page.len();
                let Some(next) = page.next else { break };
                after = Some(next);
            }
            assert_eq!(seen, contacts.len(), "{sort:?}: every contact on a page");
        }
    }
}

#[test]
fn a_page_written_from_its_rows_is_the_json_of_its_contacts_whatever_they_hold() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::new("borcelle_page_json_test"));
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    runner
        .run(&prop::collection::vec(stored(), 1..10), |contacts| {
            runtime.block_on(check(&db, contacts));
            Ok(())
        })
        .unwrap();
}
