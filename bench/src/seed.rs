//! Bulk data, written straight into the database with one `INSERT … SELECT generate_series` per
//! set (not through the API): the 100,000 contacts that list and autocomplete run against,
//! the recipients of the delivery runs and their sender's suppression list.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::PgPool;

/// First names of the seeded contacts; with [`LAST_NAMES`] they make 3,600 distinct names, each
/// about 28 times in 100,000 contacts, as names repeat in a real address book.
pub const FIRST_NAMES: [&str; 60] = [
    "Maria", "John", "Andrew", "Alice", "Sarah", "Thomas", "Kim", "Jose", "Ana", "David", "Emma", "Liam", "Olivia",
    "Noah", "Sophia", "James", "Isabella", "Lucas", "Mia", "Ethan", "Amelia", "Mateo", "Harper", "Leo", "Evelyn",
    "Hugo", "Chloe", "Louis", "Camille", "Jules", "Lea", "Arthur", "Manon", "Gabriel", "Ines", "Raphael", "Jade",
    "Adam", "Louise", "Paul", "Zoe", "Victor", "Nina", "Oscar", "Elena", "Marco", "Giulia", "Lukas", "Hanna", "Felix",
    "Yuki", "Hiro", "Priya", "Arjun", "Fatima", "Omar", "Chen", "Wei", "Sven", "Ingrid",
];

pub const LAST_NAMES: [&str; 60] = [
    "Martinez",
    "Johnson",
    "Anderson",
    "Garcia",
    "Rodriguez",
    "Thompson",
    "Williams",
    "Smith",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Dubois",
    "Lefebvre",
    "Moreau",
    "Laurent",
    "Fontaine",
    "Rossi",
    "Russo",
    "Ferrari",
    "Muller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Tanaka",
    "Suzuki",
    "Kowalski",
    "Nowak",
];

pub const COMPANIES: [&str; 24] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark Industries",
    "Wayne Enterprises",
    "Hooli",
    "Pied Piper",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Wonka",
    "Gringotts",
    "Oceanic",
    "Vandelay",
    "Dunder Mifflin",
    "Massive Dynamic",
    "Aperture",
    "Black Mesa",
    "Monarch",
    "Nakatomi",
    "Blue Sun",
    "Weyland",
    "Borcelle",
];

/// `count` contacts for the owner: `First Last`, `first.last.N@company.example`, a company for four
/// in five, tags `seed` and `vip` or `lead`, creation times spread over the past.
pub async fn address_book(db: &PgPool, owner_email: &str, count: i64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let done = sqlx::query(
        "INSERT INTO contacts (id, owner_id, name, email, company, tags, created_at, updated_at)
         SELECT gen_random_uuid(), u.id, f || ' ' || l,
                lower(f || '.' || l || '.' || i || '@' || replace(coalesce(c, 'mail'), ' ', '') || '.example'),
                c, ARRAY['seed', CASE WHEN i % 10 = 0 THEN 'vip' ELSE 'lead' END],
                now() - make_interval(secs => i), now() - make_interval(secs => i)
         FROM users u, generate_series(1, $2::int8) i,
              LATERAL (SELECT ($3::text[])[1 + i % cardinality($3::text[])] AS f,
                              ($4::text[])[1 + (i / cardinality($3::text[])) % cardinality($4::text[])] AS l,
                              CASE WHEN i % 5 = 0 THEN NULL
                                   ELSE ($5::text[])[1 + (i * 7) % cardinality($5::text[])] END AS c) AS pick
         WHERE u.email = $1",
    )
    .bind(owner_email)
    .bind(count)
    .bind(FIRST_NAMES.as_slice())
    .bind(LAST_NAMES.as_slice())
    .bind(COMPANIES.as_slice())
    .execute(db)
    .await
    .context("seeding the address book")?;
    anyhow::ensure!(done.rows_affected() == count as u64, "seeded {} contacts, not {count}", done.rows_affected());
    Ok(started.elapsed())
}

/// `count` delivery recipients `r{N}@{tag}.sink.example` tagged `tag`.
pub async fn recipients(db: &PgPool, owner_email: &str, tag: &str, count: i64) -> anyhow::Result<()> {
    let done = sqlx::query(
        "INSERT INTO contacts (id, owner_id, name, email, tags)
         SELECT gen_random_uuid(), u.id, 'Recipient ' || i, 'r' || i || '@' || $3 || '.sink.example', ARRAY[$3]
         FROM users u, generate_series(1, $2::int8) i WHERE u.email = $1",
    )
    .bind(owner_email)
    .bind(count)
    .bind(tag)
    .execute(db)
    .await
    .context("seeding delivery recipients")?;
    anyhow::ensure!(done.rows_affected() == count as u64, "seeded {} recipients, not {count}", done.rows_affected());
    Ok(())
}

/// What PostgreSQL advises after a bulk load, and what autovacuum would do on its own shortly after: statistics
/// for the planner, and a vacuum that sets the rows' hint bits and the visibility map. Without it the first
/// measured phase after the seed pays for that upkeep (a vacuum of the ~700,000 word rows the triggers wrote,
/// and a hint-bit write on every page read for the first time), which no steady-state request does.
pub async fn analyze(db: &PgPool) -> anyhow::Result<()> {
    sqlx::raw_sql("VACUUM (ANALYZE) contacts, contact_words, contact_vocabulary").execute(db).await?;
    Ok(())
}

/// `count` delivery recipients `r{N}@{tag}.sink.example` tagged `tag`, with the fields a
/// personalised email uses: a first and last name, and a company for four in five.
pub async fn named_recipients(db: &PgPool, owner_email: &str, tag: &str, count: i64) -> anyhow::Result<()> {
    let done = sqlx::query(
        "INSERT INTO contacts (id, owner_id, name, first_name, last_name, email, company, tags)
         SELECT gen_random_uuid(), u.id, f || ' ' || l, f, l, 'r' || i || '@' || $3 || '.sink.example', c, ARRAY[$3]
         FROM users u, generate_series(1, $2::int8) i,
              LATERAL (SELECT ($4::text[])[1 + i % cardinality($4::text[])] AS f,
                              ($5::text[])[1 + (i / cardinality($4::text[])) % cardinality($5::text[])] AS l,
                              CASE WHEN i % 5 = 0 THEN NULL
                                   ELSE ($6::text[])[1 + (i * 7) % cardinality($6::text[])] END AS c) AS pick
         WHERE u.email = $1",
    )
    .bind(owner_email)
    .bind(count)
    .bind(tag)
    .bind(FIRST_NAMES.as_slice())
    .bind(LAST_NAMES.as_slice())
    .bind(COMPANIES.as_slice())
    .execute(db)
    .await
    .context("seeding named delivery recipients")?;
    anyhow::ensure!(done.rows_affected() == count as u64, "seeded {} recipients, not {count}", done.rows_affected());
    Ok(())
}

/// A suppression list of `entries` addresses for the owner: `among` of the `recipients`
/// recipients tagged `tag`, evenly spread (`among` = 1 % of them puts `r100@…`, `r200@…` on it),
/// and addresses elsewhere for the rest.
pub async fn suppressions(
    db: &PgPool,
    owner_email: &str,
    tag: &str,
    (recipients, among): (i64, i64),
    entries: i64,
) -> anyhow::Result<()> {
    anyhow::ensure!(among <= recipients.min(entries), "{among} suppressed recipients do not fit");
    let step = if among > 0 { recipients / among } else { 1 };
    let done = sqlx::query(
        "INSERT INTO suppressions (owner_id, email, reason, detail)
         SELECT u.id, list.email, 'unsubscribed', 'seeded by borcelle-bench'
         FROM users u,
              (SELECT 'r' || ($3::int8 * i) || '@' || $2 || '.sink.example' AS email FROM generate_series(1, $4::int8) i
               UNION ALL
               SELECT 'gone' || i || '@elsewhere.example' FROM generate_series(1, $5::int8) i) AS list
         WHERE u.email = $1",
    )
    .bind(owner_email)
    .bind(tag)
    .bind(step)
    .bind(among)
    .bind(entries - among)
    .execute(db)
    .await
    .context("seeding the suppression list")?;
    anyhow::ensure!(
        done.rows_affected() == entries as u64,
        "seeded {} suppressions, not {entries}",
        done.rows_affected()
    );
    Ok(())
}
