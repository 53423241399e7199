//! Bulk data, written straight into the database with one `INSERT … SELECT generate_series` per
//! set (not through the API): the 100,000 contacts that list and autocomplete run against, and
//! the recipients of the delivery runs.

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
