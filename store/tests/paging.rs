//! Paging is total: whatever the names (Turkish dotted and dotless i, final sigma, ß, combining
//! marks, emoji, title-case digraphs, compatibility letters, mixed case) and however many rows
//! share a timestamp, walking every page of every sort yields each contact exactly once, in the
//! same order whatever the page size, so an export (pages of 1,000) equals the walk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly by design

use std::collections::HashSet;

use borcelle_store::contacts::{self, After, ListQuery, Sort, SortKey};
use borcelle_store::testing::TestDb;
use borcelle_store::{Owner, PgPool};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

/// Pieces of names whose lower-casing or ordering differs between Unicode's rules, Rust's and
/// PostgreSQL's, or whose byte order differs from their collation order.
const ATOMS: &[&str] = &[
    "İ",
    "ı",
    "I",
    "i",
    "Σ",
    "σ",
    "ς",
    "ΑΣ",
    "ß",
    "ẞ",
    "SS",
    "ss",
    "e\u{301}",
    "é",
    "A\u{30A}",
    "Å",
    "Å",
    "😀",
    "👩\u{200D}💻",
    "Ǆ",
    "ǅ",
    "ǆ",
    "ﬁ",
    "K",
    "K",
    "Ω",
    "Ω",
    "a",
    "b",
    "A",
    "B",
    "z",
    "Z",
    " ",
    "-",
    "0",
    "9",
    "Ж",
    "ж",
    "中",
    "ａ",
];

fn name() -> impl Strategy<Value = String> {
    let atoms = prop::collection::vec(prop::sample::select(ATOMS), 1..5).prop_map(|parts| parts.concat());
    // Anything printable too, without NUL (PostgreSQL's text cannot hold it).
    let any = "[^\u{0}]{1,6}";
    prop_oneof![3 => atoms, 1 => any]
}

async fn walk(db: &PgPool, owner: Owner, sort: Sort, page: i64) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut after: Option<After> = None;
    loop {
        let query = ListQuery { sort, limit: page, after: after.as_ref(), search: None, tag: None, backward: false };
        let listing = contacts::list(db, owner, &query).await.unwrap();
        assert!(listing.contacts.len() as i64 <= page);
        ids.extend(listing.contacts.iter().map(|c| c.id));
        let Some(next) = listing.next else { return ids };
        assert!(ids.len() <= 10_000, "{sort:?} by {page}: the walk does not end");
        after = Some(next);
    }
}

/// The same list walked from its last page back to its first, by each page's `prev`.
async fn walk_back(db: &PgPool, owner: Owner, sort: Sort, page: i64) -> Vec<Uuid> {
    let mut pages: Vec<Vec<Uuid>> = Vec::new();
    let mut before: Option<After> = None;
    loop {
        let query = ListQuery { sort, limit: page, after: before.as_ref(), search: None, tag: None, backward: true };
        let listing = contacts::list(db, owner, &query).await.unwrap();
        assert!(listing.contacts.len() as i64 <= page);
        if before.is_some() {
            assert!(listing.next.is_some(), "{sort:?}: a page before another has a next page");
        }
        pages.push(listing.contacts.iter().map(|c| c.id).collect());
        let Some(prev) = listing.prev else { break };
        assert!(pages.len() <= 10_000, "{sort:?} by {page}: the walk back does not end");
        before = Some(prev);
    }
    pages.into_iter().rev().flatten().collect()
}

async fn check(db: &TestDb, names: Vec<String>) {
    let owner = db.user(&format!("{}@example.com", Uuid::new_v4().simple())).await;
    // One statement: every row shares created_at and updated_at, so the time sorts rest on the id.
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO contacts (id, owner_id, name, email)
         SELECT gen_random_uuid(), $1, n, 'c' || i || '@example.com' FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i)
         RETURNING id",
    )
    .bind(owner.id())
    .bind(&names)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let all: HashSet<Uuid> = ids.iter().copied().collect();
    for key in [SortKey::Name, SortKey::Created, SortKey::Updated] {
        for descending in [false, true] {
            let sort = Sort { key, descending };
            // 1000 is what an export asks for per chunk.
            let whole = walk(&db.pool, owner, sort, 1000).await;
            for page in [1, 2, 3] {
                let walked = walk(&db.pool, owner, sort, page).await;
                assert_eq!(
                    walked, whole,
                    "{sort:?}: pages of {page} walk the same order as pages of 1000; names {names:?}"
                );
                let back = walk_back(&db.pool, owner, sort, page).await;
                assert_eq!(back, whole, "{sort:?}: pages of {page} walked back from the last; names {names:?}");
            }
            let seen: HashSet<Uuid> = whole.iter().copied().collect();
            assert_eq!(whole.len(), seen.len(), "{sort:?}: no contact twice; names {names:?}");
            assert_eq!(seen, all, "{sort:?}: every contact; names {names:?}");
        }
    }
}

#[test]
fn walking_every_page_of_every_sort_either_way_yields_each_contact_once_whatever_the_names() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::new("borcelle_paging_test"));
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let names = prop::collection::vec(name(), 1..24);
    runner
        .run(&names, |names| {
            runtime.block_on(check(&db, names));
            Ok(())
        })
        .unwrap();
}

/// The cases the attacker found, kept as they were reported.
#[test]
fn the_reported_unicode_names_page_one_by_one() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = TestDb::new("borcelle_paging_test").await;
        check(&db, ["İa", "Ib", "ΑΣ", "ΑΣΑ"].map(String::from).to_vec()).await;
        let mut names: Vec<String> = (0..999).map(|i| format!("Contact {i:03}")).collect();
        names.extend(["İa", "Ib", "Ic", "Id"].map(String::from));
        check(&db, names).await;
    });
}
