//! Drill: `borcelle worker` killed with SIGKILL in the middle of a task, twice, sending at full
//! rate (no rate limit, 256 sends in flight over 16 pipelined SMTP connections). Every recipient
//! gets the message; each crash repeats only what was in flight at the SMTP server at that instant
//! (the worker is frozen first, so that instant can be looked at: open SMTP transactions, and sends
//! the server had accepted whose outcome was not written yet), and the next worker, started under
//! the same name, takes the dead one's claims back at once rather than after their lease. The
//! server's count agrees with the ledger: one Message-ID per `sent` row, and the copies beyond
//! those are exactly the crashes' accepted-but-unrecorded sends.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::harness::*;
use crate::helpers::*;
use crate::sink::CountingSink;

/// Concurrency of the workers: a crash can leave at most one accepted, unrecorded send per slot.
const CONCURRENCY: usize = 256;
/// SMTP connections per worker.
const POOL_SIZE: usize = 16;
/// The ledger's share sent (in %) at which each of the two workers is killed.
const KILL_AT: [usize; 2] = [30, 65];

/// What was in flight at the server when a worker stopped, and what it left.
struct InFlight {
    /// Transactions open at the server when the worker froze.
    open_transactions: usize,
    /// Message-IDs of the copies the server accepted from this worker whose ledger row was left
    /// `sending`: each is sent again by the next worker.
    accepted_unrecorded: Vec<String>,
    /// The ledger's `sent` rows it left.
    sent: usize,
    /// The claims it left: each row's id and lease.
    claims: Vec<(Uuid, DateTime<Utc>)>,
    /// When it froze.
    frozen_at: Instant,
}

/// Freezes the worker and counts the transactions open at the server at that instant, then kills
/// it and, once nothing it started can still land (the server has read and closed its
/// connections, PostgreSQL has finished its sessions: a write it began has committed or rolled
/// back), looks at what the server accepted from it and what the ledger recorded. `since` is the
/// server's count when the worker started; `name` its `application_name` in PostgreSQL.
async fn freeze_look_kill(
    worker: &mut Process,
    name: &str,
    sink: &CountingSink,
    app: &TestApp,
    task_id: &str,
    since: usize,
) -> InFlight {
    signal(worker, "STOP");
    let frozen_at = Instant::now();
    // The frozen worker sends nothing more; the server reads what was already on its way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open_transactions = sink.open_transactions();
    worker.0.kill().expect("SIGKILL");
    worker.0.wait().expect("reaped");
    sink.wait_no_connection().await;
    sessions_ended(&app.db, name).await;
    let rows: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, message_id, lease_until FROM messages WHERE task_id = $1::uuid AND status = 'sending'",
    )
    .bind(task_id)
    .fetch_all(&app.db)
    .await
    .expect("ledger");
    let sending: HashSet<&str> = rows.iter().map(|(_, message_id, _)| message_id.as_str()).collect();
    let sent = ledger_sent(&app.db, task_id).await;
    let accepted_unrecorded = sink
        .accepted()
        .into_iter()
        .skip(since)
        .map(|a| a.message_id)
        .filter(|id| sending.contains(id.as_str()))
        .collect();
    let claims = rows.iter().map(|(id, _, lease)| (*id, *lease)).collect();
    InFlight { open_transactions, accepted_unrecorded, sent, claims, frozen_at }
}

/// Waits (up to 30 s) until PostgreSQL has no session left named `name` (a killed process's
/// sessions end once their statement does).
async fn sessions_ended(db: &sqlx::PgPool, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(name)
            .fetch_one(db)
            .await
            .expect("sessions");
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} sessions of the killed {name} are still open after 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_twice_mid_task() {
    let report = Report::new("worker-kill");
    let recipients = scaled(50_000, 2_000);
    let sink = CountingSink::start().await;
    let (db_name, db_url) = fresh_database();
    // The API alone; the workers deliver.
    let (_serve, mut app) = serve(&db_url, &db_name, &[("BORCELLE_SERVE_DELIVERY", "false".to_owned())]).await;
    app.signed_in_user("kill-drill@example.com").await;
    seed_contacts(&app.db, "kill-drill@example.com", "survivor", recipients as i32, "all").await;
    let mut worker_env = smtp_env(sink.port);
    worker_env.push(("BORCELLE_DELIVERY_CONCURRENCY", CONCURRENCY.to_string()));
    worker_env.push(("BORCELLE_SMTP_POOL_SIZE", POOL_SIZE.to_string()));
    // The default lease: a worker that waited for it would take two minutes to resume.
    worker_env.push(("BORCELLE_DELIVERY_LEASE_SECS", "120".to_owned()));
    // Every worker runs under one name, as a restarted container in the same pod does.
    worker_env.push(("BORCELLE_INSTANCE", "drill-pod:worker".to_owned()));
    let queueing = Instant::now();
    let task_id = send_to_tag(&app, "all", "Crash test").await;
    let expected = ledger_recipients(&app.db, &task_id).await;
    assert_eq!(expected.len(), recipients);
    report.say(format!(
        "one task to {recipients} contacts, queued in {}; `borcelle worker` ({CONCURRENCY} at once, {POOL_SIZE} SMTP \
         connections, no rate limit, lease 120 s) delivering to the drill's SMTP sink; killed at {}% and {}% sent",
        secs(queueing.elapsed()),
        KILL_AT[0],
        KILL_AT[1]
    ));
    let started = Instant::now();

    let mut crashes: Vec<InFlight> = Vec::new();
    let mut sent_before = 0;
    for (round, percent) in (1..).zip(KILL_AT) {
        let since = sink.count();
        let name = format!("drill-worker-{round}");
        let mut worker = spawn_borcelle("worker", &format!("{db_url}?application_name={name}"), &worker_env, "worker");
        let spawned = Instant::now();
        if let Some(killed) = crashes.last() {
            let taken_back = claims_taken_back(&app, &killed.claims).await;
            report.say(format!(
                "worker {round} gave the killed run's {} claims back {} after it started",
                killed.claims.len(),
                secs(taken_back)
            ));
        }
        let sending_from = sink.accepted_beyond(since).await;
        let target = recipients * percent / 100;
        let seen = wait_ledger_sent(&app.db, &task_id, target, 300).await;
        assert!(seen >= target, "worker {round} reached {target} sent within 300 s (at {seen})");
        let in_flight = freeze_look_kill(&mut worker, &name, &sink, &app, &task_id, since).await;
        let sending_for = in_flight.frozen_at - sending_from;
        report.say(format!(
            "worker {round} (started {} before) frozen and killed with {} of {recipients} sent in the ledger, {} \
             accepted at the server; in flight there: {} open SMTP transactions, {} accepted sends not yet recorded; \
             it sent {} in {}: {}",
            secs(spawned.elapsed()),
            in_flight.sent,
            sink.count(),
            in_flight.open_transactions,
            in_flight.accepted_unrecorded.len(),
            in_flight.sent - sent_before,
            secs(sending_for),
            rate(in_flight.sent - sent_before, sending_for),
        ));
        assert!((target..recipients).contains(&in_flight.sent), "killed mid-task ({} sent)", in_flight.sent);
        assert!(!in_flight.claims.is_empty(), "the worker held claims when it was killed");
        assert!(
            in_flight.accepted_unrecorded.len() <= CONCURRENCY,
            "each outcome is written as soon as the server accepts it: at most one waiting per send slot, not {}",
            in_flight.accepted_unrecorded.len()
        );
        sent_before = in_flight.sent;
        crashes.push(in_flight);
    }

    let since = sink.count();
    let last = spawn_borcelle("worker", &db_url, &worker_env, "worker");
    let last_started = Instant::now();
    let killed = crashes.last().expect("two crashes");
    let taken_back = claims_taken_back(&app, &killed.claims).await;
    report.say(format!(
        "worker 3 gave the killed run's {} claims back {} after it started",
        killed.claims.len(),
        secs(taken_back)
    ));
    let sending_from = sink.accepted_beyond(since).await;
    let task = wait_task_done(&app, &task_id, 600).await.expect("the third worker finishes the task");
    let sending_for = sending_from.elapsed();
    drop(last);
    let finished = last_started.elapsed();
    let accepted = sink.accepted();
    let arrivals = Arrivals::of(accepted.iter().map(|a| (a.to.clone(), a.message_id.clone())).collect());
    let missing = arrivals.missing(&expected);
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for a in &accepted {
        *copies.entry(a.message_id.as_str()).or_default() += 1;
    }
    for (i, crash) in crashes.iter().enumerate() {
        let repeated = crash.accepted_unrecorded.iter().filter(|id| copies[id.as_str()] > 1).count();
        let in_flight = crash.open_transactions + crash.accepted_unrecorded.len();
        report.say(format!("crash {}: {repeated} duplicates; {in_flight} messages in flight at the server", i + 1));
        assert!(repeated <= in_flight, "crash {}: duplicates only from what was in flight at the server", i + 1);
    }
    let unrecorded: usize = crashes.iter().map(|c| c.accepted_unrecorded.len()).sum();
    let ledger_sent = ledger_sent(&app.db, &task_id).await;
    let distinct = sink.distinct_message_ids();
    report.say(format!(
        "worker 3 sent the last {} in {} ({}); finished {} after it started ({} in all): task sent {} failed {}; \
         ledger sent {ledger_sent}; the server accepted {} messages with {distinct} Message-IDs for {} recipients \
         over {} connections, {} missing, {} duplicates ({unrecorded} accepted unrecorded at the crashes)",
        recipients - sent_before,
        secs(sending_for),
        rate(recipients - sent_before, sending_for),
        secs(finished),
        secs(started.elapsed()),
        task["sent"],
        task["failed"],
        arrivals.messages,
        arrivals.per_recipient.len(),
        sink.connections(),
        missing.len(),
        arrivals.duplicates()
    ));
    assert!(missing.is_empty(), "every recipient got the message: {} did not", missing.len());
    assert_eq!(arrivals.per_recipient.len(), recipients);
    assert_eq!((task["sent"].as_u64(), task["failed"].as_u64()), (Some(recipients as u64), Some(0)), "{task}");
    assert_eq!(ledger_sent, recipients, "the ledger marks every message sent");
    assert_eq!(distinct, ledger_sent, "one Message-ID at the server per sent row of the ledger");
    assert_eq!(
        arrivals.messages,
        ledger_sent + unrecorded,
        "the copies beyond one per message are exactly the crashes' accepted, unrecorded sends"
    );
    assert!(arrivals.duplicates_share_their_message_id(), "a duplicate carries its ledger row's Message-ID");
    // Message by message: one copy, and one more for each crash that left it accepted, unrecorded.
    let ledger_ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM messages WHERE task_id = $1::uuid")
        .bind(&task_id)
        .fetch_all(&app.db)
        .await
        .expect("ledger");
    let mut expected_copies: HashMap<&str, usize> = ledger_ids.iter().map(|id| (id.as_str(), 1)).collect();
    for id in crashes.iter().flat_map(|crash| &crash.accepted_unrecorded) {
        *expected_copies.entry(id.as_str()).or_default() += 1;
    }
    let differing: Vec<_> = copies.iter().filter(|(id, n)| expected_copies.get(*id) != Some(n)).collect();
    assert!(
        differing.is_empty() && copies.len() == expected_copies.len(),
        "each message arrived once plus once per crash that left it accepted and unrecorded: {differing:?}"
    );
}

/// Waits until none of the killed run's `claims` (under a 120 s lease) is held any more (the row
/// is no longer `sending` under that lease), and returns how long that took; fails if they are
/// still held after 30 s (they would be for two minutes if the new worker waited for their lease).
async fn claims_taken_back(app: &TestApp, claims: &[(Uuid, DateTime<Utc>)]) -> Duration {
    let (ids, leases): (Vec<Uuid>, Vec<DateTime<Utc>>) = claims.iter().copied().unzip();
    let started = Instant::now();
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages m JOIN unnest($1::uuid[], $2::timestamptz[]) AS c(id, lease)
             ON m.id = c.id WHERE m.status = 'sending' AND m.lease_until = c.lease",
        )
        .bind(&ids)
        .bind(&leases)
        .fetch_one(&app.db)
        .await
        .expect("claims");
        if held == 0 {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{held} claims of the killed run are still held");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
