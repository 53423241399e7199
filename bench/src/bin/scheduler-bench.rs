//! `scheduler-bench`: the standalone scheduler with N reminders due in the same minute.
//!
//! Creates a fresh database with one user, N contacts and N reminders (`* * * * *`, one contact
//! each), runs `borcelle`'s in-process scheduler (the one `serve` runs) against it, waits for the
//! next minute boundary and measures, for every occurrence, how late it started: the time between
//! its scheduled instant and the commit of the transaction that queued its email. Prints a table
//! (p50 / p99 / max lateness, occurrences per second) and exits non-zero when an occurrence is
//! missing or p99 is over the target.
//!
//! `cargo run --release -p borcelle-bench --bin scheduler-bench -- [count] [target-p99-secs]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use borcelle_engine::scheduler::Scheduler;
use borcelle_store::DatabaseSettings;
use chrono::{DateTime, Timelike, Utc};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: i64 = args.next().map(|a| a.parse()).transpose().context("count")?.unwrap_or(10_000);
    let target: f64 = args.next().map(|a| a.parse()).transpose().context("target")?.unwrap_or(2.0);
    let server = std::env::var("BENCH_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("borcelle_scheduler_bench_{}", std::process::id());
    let settings = DatabaseSettings {
        url: SecretString::from(format!("{server}/{name}")),
        max_connections: 16,
        acquire_timeout: Duration::from_secs(10),
    };
    let db = borcelle_store::connect_and_migrate(&settings).await?;
    let result = run(&db, count, target).await;
    db.close().await;
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await?;
    // The name is ours (a fixed prefix and the process id).
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&admin)
        .await?;
    result
}

async fn run(db: &sqlx::PgPool, count: i64, target: f64) -> anyhow::Result<()> {
    let seeded = Instant::now();
    let owner: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (id, email, display_name, password_hash, role, email_verified_at)
         VALUES (gen_random_uuid(), 'bench@example.com', 'Bench', 'x', 'user', now()) RETURNING id",
    )
    .fetch_one(db)
    .await?;
    sqlx::query(
        "INSERT INTO contacts (id, owner_id, name, email)
         SELECT gen_random_uuid(), $1, 'Contact ' || i, 'c' || i || '@example.com' FROM generate_series(1, $2) i",
    )
    .bind(owner)
    .bind(count)
    .execute(db)
    .await?;
    // Every reminder fires every minute; each mails one contact.
    sqlx::query(
        "INSERT INTO schedules (id, kind, owner_id, name, spec, next_run_at, created_at)
         SELECT gen_random_uuid(), 'ScheduledReminder', $1, 'r-' || row_number() OVER (ORDER BY c.id),
                jsonb_build_object('owner', 'bench@example.com', 'recipients', jsonb_build_object('contactIds', jsonb_build_array(c.id)),
                                   'subject', 'Every minute', 'body', 'Tick', 'schedule', '* * * * *'),
                NULL, now()
         FROM contacts c WHERE c.owner_id = $1",
    )
    .bind(owner)
    .execute(db)
    .await?;
    sqlx::query("ANALYZE").execute(db).await?;
    let now = Utc::now();
    let mut boundary =
        now.with_second(0).and_then(|t| t.with_nanosecond(0)).context("minute")? + chrono::Duration::minutes(1);
    if boundary - now < chrono::Duration::seconds(5) {
        boundary += chrono::Duration::minutes(1);
    }
    sqlx::query("UPDATE schedules SET next_run_at = $1").bind(boundary).execute(db).await?;
    println!(
        "seeded {count} reminders in {:.1} s; all due at {boundary} (in {} s)",
        seeded.elapsed().as_secs_f64(),
        (boundary - Utc::now()).num_seconds()
    );

    let stop = CancellationToken::new();
    let scheduler = Scheduler {
        db: db.clone(),
        events: borcelle_engine::events::EventBus::in_process(),
        wake: Arc::new(tokio::sync::Notify::new()),
        wake_delivery: Arc::new(tokio::sync::Notify::new()),
        message_id_domain: "bench.example.com".into(),
        attachments_max_bytes: 25 * 1024 * 1024,
    };
    let running = tokio::spawn(scheduler.run(stop.clone()));
    let deadline = Instant::now() + (boundary - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(120);
    loop {
        let started: i64 = sqlx::query_scalar("SELECT count(*) FROM occurrences").fetch_one(db).await?;
        if started >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.cancel();
    let _ = running.await;

    // Lateness: from the scheduled instant to the moment the occurrence row was written
    // (`clock_timestamp()`, a few milliseconds before its transaction commits).
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT scheduled_at, created_at FROM occurrences WHERE scheduled_at = $1")
            .bind(boundary)
            .fetch_all(db)
            .await?;
    let mut lateness: Vec<f64> =
        rows.iter().map(|(s, c)| (*c - *s).num_microseconds().unwrap_or(0) as f64 / 1e6).collect();
    lateness.sort_by(f64::total_cmp);
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(db).await?;
    let pct = |p: f64| {
        lateness.get(((lateness.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN)
    };
    let last = lateness.last().copied().unwrap_or(f64::NAN);
    println!();
    println!(
        "| reminders due in one minute | started | ledger rows | p50 lateness | p99 lateness | max lateness | rate |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {count} | {} | {ledger} | {:.3} s | {:.3} s | {:.3} s | {:.0} occurrences/s |",
        lateness.len(),
        pct(0.50),
        pct(0.99),
        last,
        lateness.len() as f64 / last.max(0.001)
    );
    println!();
    println!("target: every occurrence starts within {target} s of its time (p99 < {target} s)");
    if (lateness.len() as i64) < count {
        bail!("only {} of {count} occurrences started", lateness.len());
    }
    if pct(0.99) > target {
        bail!("p99 lateness {:.3} s is over the target of {target} s", pct(0.99));
    }
    Ok(())
}
