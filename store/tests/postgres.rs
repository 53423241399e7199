//! The store against a real PostgreSQL (`BORCELLE_TEST_DATABASE_URL`, by default the local
//! server): each test gets a database of its own, created and migrated as `serve` does it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness fails loudly by design

use std::collections::HashSet;
use std::time::Duration;

use borcelle_store::contacts::{self, After, ListQuery, Sort, SortKey};
use borcelle_store::lane::Lane;
use borcelle_store::testing::TestDb;

/// Paging is planned once per connection, not once per page: PostgreSQL's plan cache settles on a
/// generic plan for each sort's "next page" statement (with the cursor's values visible, it
/// re-planned every page, which took a third of the database's time per page).
#[tokio::test]
async fn paging_reuses_one_cached_plan_per_sort() {
    let db = TestDb::new("borcelle_store_test").await;
    let owner = db.user("pager@example.com").await;
    db.seed_contacts(owner, "pager", 1000).await;
    // Many users with a few contacts each: the pager's address book is far larger than most.
    for other in 0..20 {
        let small = db.user(&format!("small{other}@example.com")).await;
        db.seed_contacts(small, &format!("small{other}-"), 20).await;
    }
    // With statistics, as a live database has them: the planner then knows how many rows a cursor
    // leaves, which is what made each page's own plan look cheaper than the cached one.
    sqlx::query("ANALYZE contacts").execute(&db.pool).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let sorts = [(SortKey::Name, false), (SortKey::Name, true), (SortKey::Created, false), (SortKey::Updated, true)];
    for (key, descending) in sorts {
        let sort = Sort { key, descending };
        let raw = format!("{key:?} descending={descending}");
        let (mut after, mut seen, mut pages) = (None::<After>, HashSet::new(), 0);
        loop {
            let query = ListQuery { sort, limit: 50, after: after.as_ref(), search: None, tag: None, backward: false };
            let listing = contacts::list(&mut *conn, owner, &query).await.unwrap();
            assert!(listing.contacts.iter().all(|c| seen.insert(c.id)), "{raw}: no contact on two pages");
            pages += 1;
            let Some(next) = listing.next else { break };
            after = Some(next);
        }
        assert_eq!((seen.len(), pages), (1000, 20), "{raw}: every contact, 50 a page");
    }
    // Then the first page, again and again, as a user opening the contacts page does.
    for _ in 0..10 {
        let first = Sort { key: SortKey::Name, descending: false };
        let query = ListQuery { sort: first, limit: 50, after: None, search: None, tag: None, backward: false };
        assert_eq!(contacts::list(&mut *conn, owner, &query).await.unwrap().contacts.len(), 50);
    }
    // The same connection's prepared statements: the next pages of each sort, and the first page.
    let plans: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements
         WHERE statement LIKE 'SELECT id, name, %FROM contacts WHERE owner_id = %'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(plans.len(), 8, "a first-page and a next-page statement per sort: {plans:?}");
    for (statement, generic, custom) in &plans {
        if !statement.contains(" AND (") && !statement.contains("ORDER BY lower(name) ASC") {
            continue; // the first pages of the other sorts, asked for once each
        }
        // Five custom plans are PostgreSQL's trial before it compares them with the generic one.
        assert!(*custom <= 5 && *generic >= 5, "planned every page ({generic} generic, {custom} custom): {statement}");
    }
}

/// The connections for pages of contacts: one whose statement ran to its end is reused; one
/// abandoned mid-statement (a request dropped while its query ran) is closed, never handed to the
/// next request in the middle of someone else's answer.
#[tokio::test]
async fn the_contact_page_lane_reuses_finished_connections_and_closes_abandoned_ones() {
    let db = TestDb::new("borcelle_store_test").await;
    let lane = Lane::new(&db.pool, 2, Duration::from_secs(5));
    async fn backend(conn: &mut sqlx::PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await.unwrap()
    }

    let mut conn = lane.acquire().await.unwrap();
    let first = backend(&mut conn).await;
    conn.finished();
    assert_eq!(lane.idle(), 1, "finished: kept");
    let mut conn = lane.acquire().await.unwrap();
    assert_eq!(backend(&mut conn).await, first, "the same connection again");

    // Abandoned in the middle of a statement: PostgreSQL is still working on it.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query("SELECT pg_sleep(2), 'late answer'").execute(&mut *conn),
    )
    .await;
    assert!(abandoned.is_err(), "the query was cut short");
    drop(conn);
    assert_eq!(lane.idle(), 0, "not finished: closed");

    let mut conn = lane.acquire().await.unwrap();
    let answer: String = sqlx::query_scalar("SELECT 'this answer'").fetch_one(&mut *conn).await.unwrap();
    assert_eq!(answer, "this answer", "a fresh connection, not the late answer of the abandoned one");
    assert_ne!(backend(&mut conn).await, first);
    conn.finished();

    assert_eq!(lane.idle(), 1);
    lane.close_idle();
    assert_eq!(lane.idle(), 0, "stale after a restart: all closed at once");

    // Settled by how the statement ended: a query error keeps it, a failed connection closes it
    // and the idle ones with it.
    let mut conn = lane.acquire().await.unwrap();
    let bad = sqlx::query("SELECT no_such_column FROM users").execute(&mut *conn).await.unwrap_err();
    conn.settle(Some(&bad.into()));
    assert_eq!(lane.idle(), 1, "a query error: the connection is fine");
    let (one, two) = (lane.acquire().await.unwrap(), lane.acquire().await.unwrap());
    one.settle(None);
    assert_eq!(lane.idle(), 1);
    two.settle(Some(&sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into()).into()));
    assert_eq!(lane.idle(), 0, "a broken connection: it and the idle ones are closed");

    // Both connections busy: the third caller waits, then times out as the pool would.
    let short = Lane::new(&db.pool, 1, Duration::from_millis(200));
    let held = short.acquire().await.unwrap();
    assert!(matches!(short.acquire().await, Err(borcelle_store::Error::Unavailable(sqlx::Error::PoolTimedOut))));
    drop(held);
    assert!(short.acquire().await.is_ok(), "free again");
}

/// A statement that loses a deadlock is `Contended` (the web answers 503 "send the request again"),
/// not a bug's `Query` error (a 500).
#[tokio::test]
async fn a_deadlock_is_reported_as_contended() {
    let db = TestDb::new("borcelle_store_test").await;
    let owner = db.user("locks@example.com").await;
    db.seed_contacts(owner, "lock", 2).await;
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM contacts ORDER BY email").fetch_all(&db.pool).await.unwrap();
    let touch = "UPDATE contacts SET notes = 'x' WHERE id = $1";
    let mut first = db.pool.begin().await.unwrap();
    let mut second = db.pool.begin().await.unwrap();
    sqlx::query(touch).bind(ids[0]).execute(&mut *first).await.unwrap();
    sqlx::query(touch).bind(ids[1]).execute(&mut *second).await.unwrap();
    // Each now waits for the row the other holds: PostgreSQL breaks the cycle by failing one.
    let (a, b) = tokio::join!(
        sqlx::query(touch).bind(ids[1]).execute(&mut *first),
        sqlx::query(touch).bind(ids[0]).execute(&mut *second)
    );
    let failed = [a, b].into_iter().filter_map(Result::err).map(borcelle_store::Error::from).collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "exactly one of the two loses");
    assert!(matches!(failed[0], borcelle_store::Error::Contended(_)), "{:?}", failed[0]);
    assert!(failed[0].to_string().contains("send the request again"));
}

/// The owner's counter equals the rows however they come and go: seeded in bulk, created by
/// concurrent connections, deleted by selection and one by one; and deleting the account with
/// its contacts leaves no counter behind (nor fails).
#[tokio::test]
async fn the_contact_counter_stays_exact_through_every_write() {
    let db = TestDb::new("borcelle_store_counts").await;
    let owner = db.user("counted@example.com").await;
    let other = db.user("other-counted@example.com").await;
    let exact = |owner: borcelle_store::Owner| {
        let pool = db.pool.clone();
        async move {
            let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE owner_id = $1")
                .bind(owner.id())
                .fetch_one(&pool)
                .await
                .unwrap();
            let counted = contacts::count(&pool, owner, None, None).await.unwrap();
            assert_eq!(counted, rows, "the counter and the rows");
            rows
        }
    };
    assert_eq!(exact(owner).await, 0);
    db.seed_contacts(owner, "bulk", 300).await;
    db.seed_contacts(other, "theirs", 7).await;
    assert_eq!(exact(owner).await, 300);

    // 16 connections at once, 25 single-row inserts each.
    let mut tasks = Vec::new();
    for connection in 0..16 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                sqlx::query("INSERT INTO contacts (id, owner_id, name, email) VALUES (gen_random_uuid(), $1, 'C', $2)")
                    .bind(owner.id())
                    .bind(format!("c{connection}-{i}@example.com"))
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(exact(owner).await, 700);

    // An insert that changes nothing (the address exists), then a bulk delete of a selection and
    // a single delete.
    sqlx::query("INSERT INTO contacts (id, owner_id, name, email) SELECT gen_random_uuid(), $1, 'x', 'bulk1@example.com' ON CONFLICT DO NOTHING")
        .bind(owner.id())
        .execute(&db.pool)
        .await
        .unwrap();
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM contacts WHERE owner_id = $1 ORDER BY id LIMIT 120")
        .bind(owner.id())
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(contacts::delete_selected(&db.pool, owner, contacts::Selection::Ids(&ids[..100])).await.unwrap(), 100);
    assert!(contacts::delete(&db.pool, owner, ids[100]).await.unwrap());
    assert_eq!(exact(owner).await, 599);
    assert_eq!(exact(other).await, 7, "another owner's counter is its own");

    sqlx::query("DELETE FROM users WHERE id = $1").bind(owner.id()).execute(&db.pool).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM contact_counts WHERE owner_id = $1")
        .bind(owner.id())
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(exact(other).await, 7);
}

/// A page reads its columns by position: every field of a listed contact is the stored one (each
/// field a different value, so no two text columns can trade places unseen), in every sort.
#[tokio::test]
async fn a_listed_contact_has_every_field_where_it_was_stored() {
    let db = TestDb::new("borcelle_store_test").await;
    let owner = db.user("fields@example.com").await;
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, phone, company, address, tax_id,
                               tags, notes, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, 'Zoë Ünal', 'Zoë', 'Ünal', 'zoe@example.com', '+33612345678', 'Acme',
                 '1 Rue de la Paix, Paris', 'FR123', ARRAY['vip', 'paris'], 'met at the fair',
                 '2026-01-02T03:04:05.678901Z', '2026-02-03T04:05:06.789012Z')
         RETURNING id",
    )
    .bind(owner.id())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let stored = contacts::get(&db.pool, owner, id).await.unwrap().expect("stored");
    let mut conn = db.pool.acquire().await.unwrap();
    for key in [SortKey::Name, SortKey::Created, SortKey::Updated] {
        let query = ListQuery {
            sort: Sort { key, descending: false },
            limit: 50,
            after: None,
            search: None,
            tag: None,
            backward: false,
        };
        let listing = contacts::list(&mut *conn, owner, &query).await.unwrap();
        assert_eq!(listing.contacts.len(), 1);
        assert_eq!(format!("{:?}", listing.contacts[0]), format!("{stored:?}"), "sorted by {key:?}");
    }
    assert_eq!(stored.first_name.as_deref(), Some("Zoë"));
    assert_eq!(stored.tax_id.as_deref(), Some("FR123"));
}

/// A page written from its rows in place (what the JSON API writes) is byte for byte the page
/// of [`contacts::Contact`]s, whatever the text: quotes, backslashes, control characters, emoji,
/// right-to-left and combining marks, empty and missing fields, no tags or many.
#[tokio::test]
async fn a_page_read_in_place_serialises_exactly_as_its_contacts_do() {
    const PIECES: [&str; 14] =
        ["a", "Zoë", "\"", "\\", "\u{1}", "\n", "\t", "😀", "שלום", "e\u{301}", "</script>", " ", "\u{2028}", "{}"];
    let db = TestDb::new("borcelle_store_test").await;
    let owner = db.user("inplace@example.com").await;
    // A small deterministic generator: every piece appears in every field across the contacts.
    let mut state = 0x2545_f491_u64;
    let mut next = |n: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % n
    };
    let mut text = |len: usize| (0..len).map(|_| PIECES[next(PIECES.len())]).collect::<String>();
    for i in 0..300 {
        let optional = |t: String, i: usize| (!i.is_multiple_of(3)).then_some(t);
        let tags: Vec<String> = (0..i % 5).map(|t| format!("tag{t}")).collect();
        sqlx::query(
            "INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, phone, company, address,
                                   tax_id, tags, notes)
             VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(owner.id())
        .bind(text(1 + i % 7))
        .bind(optional(text(1 + i % 4), i))
        .bind(optional(text(1 + i % 5), i + 1))
        .bind(format!("c{i}@example.com"))
        .bind(optional("+33612345678".to_owned(), i + 2))
        .bind(optional(text(i % 6), i))
        .bind(optional(text(i % 9), i + 1))
        .bind(optional(text(2), i + 2))
        .bind(&tags)
        .bind(text(i % 11))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let mut conn = db.pool.acquire().await.unwrap();
    for key in [SortKey::Name, SortKey::Created, SortKey::Updated] {
        let sort = Sort { key, descending: key != SortKey::Name };
        let (mut after, mut pages) = (None::<After>, 0);
        loop {
            let query = ListQuery { sort, limit: 50, after: after.as_ref(), search: None, tag: None, backward: false };
            let in_place = contacts::page(&mut *conn, owner, &query).await.unwrap();
            let copied = contacts::list(&mut *conn, owner, &query).await.unwrap();
            let mut written = Vec::new();
            in_place.write_json(&mut written).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&copied.contacts).unwrap(),
                "{key:?}, page {pages}"
            );
            assert_eq!((&in_place.next, &in_place.prev), (&copied.next, &copied.prev));
            pages += 1;
            let Some(next) = in_place.next else { break };
            after = Some(next);
        }
        assert_eq!(pages, 6, "{key:?}: 300 contacts, 50 a page");
    }
}

/// A reply names the message it answers by `Message-ID`, and the ledger finds the row by the id
/// that Message-ID carries (no index of its own): every row the ledger writes has a Message-ID
/// that names it, whatever the domain, and a Message-ID that names no row finds nothing.
#[tokio::test]
async fn every_ledger_message_id_names_its_own_row() {
    use borcelle_store::inbound;
    use borcelle_store::tasks::{self, NewTask};

    let db = TestDb::new("borcelle_store_test").await;
    let owner = db.user("threads@example.com").await;
    db.seed_contacts(owner, "thread", 30).await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM contacts WHERE owner_id = $1")
        .bind(owner.id())
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let unix_secs = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let started = unix_secs();
    for domain in ["mail.example.com", "Ünïcode.example", "x"] {
        let mut tx = db.pool.begin().await.unwrap();
        let task = NewTask {
            id: uuid::Uuid::new_v4(),
            owner,
            kind: "message",
            note_id: None,
            subject: "Hello",
            body: "Hi",
            message_id_domain: domain,
        };
        tasks::enqueue(&mut tx, &task, &ids).await.unwrap().unwrap();
        tx.commit().await.unwrap();
    }
    let rows: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT id, message_id FROM messages").fetch_all(&db.pool).await.unwrap();
    assert_eq!(rows.len(), 90);
    let finished = unix_secs();
    for (id, message_id) in &rows {
        // A UUIDv7 stamped with the time its row was queued: rows queued together sit together
        // in the indexes keyed by id.
        assert_eq!(id.get_version_num(), 7, "{id}");
        let (secs, _) = id.get_timestamp().unwrap().to_unix();
        assert!((started..=finished).contains(&secs), "{id}: {secs} not in {started}..={finished}");
        assert_eq!(inbound::ledger_id_of(message_id), Some(*id), "{message_id}");
        // As a reply's References lists it, among ids of other mail.
        let refs = ["<CAF=other@mail.gmail.com>".to_owned(), message_id.clone()];
        let found = inbound::ledger_row_by_message_ids(&db.pool, &refs).await.unwrap().unwrap();
        assert_eq!(found.id, *id);
    }
    // The right id under another domain is not the message that was sent.
    let (id, _) = &rows[0];
    let forged = format!("<{}@elsewhere.example>", id.simple());
    assert!(inbound::ledger_row_by_message_ids(&db.pool, &[forged]).await.unwrap().is_none());
    let unknown = format!("<{}@mail.example.com>", uuid::Uuid::new_v4().simple());
    assert!(inbound::ledger_row_by_message_ids(&db.pool, &[unknown]).await.unwrap().is_none());
}
