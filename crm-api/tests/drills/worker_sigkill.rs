//! Drill: `borcelle worker` killed with SIGKILL in the middle of a task, twice. Every recipient
//! gets the message; each crash repeats only what was in flight at the SMTP server at that instant
//! (the worker is frozen first, so that instant can be looked at: open SMTP transactions, and sends
//! the server had accepted whose outcome was not written yet), and the next worker, started under
//! the same name, takes the dead one's claims back at once rather than after their lease.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::helpers::*;
use crate::sink::CountingSink;

/// Concurrency of the workers: a crash can leave at most one accepted, unrecorded send per slot.
const CONCURRENCY: usize = 16;

/// What was in flight at the server when a worker stopped.
struct InFlight {
    open_transactions: usize,
    /// Message-IDs the server had accepted whose ledger row was still `sending`.
    accepted_unrecorded: HashSet<String>,
}

/// Freezes the worker, looks at the server and the ledger at that instant, then kills it.
async fn freeze_look_kill(worker: &mut Process, sink: &CountingSink, app: &TestApp, task_id: &str) -> InFlight {
    signal(worker, "STOP");
    // The frozen worker sends nothing more; what the server holds now is what it held then.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let open_transactions = sink.open_transactions();
    let sending: HashSet<String> =
        sqlx::query_scalar("SELECT message_id FROM messages WHERE task_id = $1::uuid AND status = 'sending'")
            .bind(task_id)
            .fetch_all(&app.db)
            .await
            .expect("ledger")
            .into_iter()
            .collect();
    let accepted_unrecorded =
        sink.accepted().into_iter().map(|a| a.message_id).filter(|id| sending.contains(id)).collect();
    worker.0.kill().expect("SIGKILL");
    worker.0.wait().expect("reaped");
    InFlight { open_transactions, accepted_unrecorded }
}

#[tokio::test]
async fn worker_killed_twice_mid_task() {
    let report = Report::new("worker-kill");
    let recipients = scaled(5000, 400);
    let sink = CountingSink::start().await;
    let (db_name, db_url) = fresh_database();
    // The API alone; the workers deliver.
    let (_serve, mut app) = serve(&db_url, &db_name, &[("BORCELLE_SERVE_DELIVERY", "false".to_owned())]).await;
    app.signed_in_user("kill-drill@example.com").await;
    seed_contacts(&app.db, "kill-drill@example.com", "survivor", recipients as i32, "all").await;
    let mut worker_env = smtp_env(sink.port);
    worker_env.push(("BORCELLE_DELIVERY_CONCURRENCY", CONCURRENCY.to_string()));
    worker_env.push(("BORCELLE_MAIL_RATE_PER_SEC", "250".to_owned()));
    // The default lease: a worker that waited for it would take two minutes to resume.
    worker_env.push(("BORCELLE_DELIVERY_LEASE_SECS", "120".to_owned()));
    // Every worker runs under one name, as a restarted container in the same pod does.
    worker_env.push(("BORCELLE_INSTANCE", "drill-pod:worker".to_owned()));
    report.say(format!(
        "one task to {recipients} contacts; `borcelle worker` ({CONCURRENCY} at once, at most 250/s, lease 120 s) \
         delivering to the drill's SMTP sink"
    ));
    let started = Instant::now();
    let task_id = send_to_tag(&app, "all", "Crash test").await;
    let expected = ledger_recipients(&app.db, &task_id).await;

    let mut crashes = Vec::new();
    for (round, share) in [(1, 3), (2, 3)] {
        let before = chrono::Utc::now();
        let mut worker = spawn_borcelle("worker", &db_url, &worker_env, "worker");
        let resumed = Instant::now();
        if round > 1 {
            let taken_back = claims_taken_back(&app, before).await;
            report
                .say(format!("worker {round} gave the killed run's claims back {} after it started", secs(taken_back)));
        }
        let target = recipients * round / share;
        let deadline = Instant::now() + Duration::from_secs(120);
        while sink.count() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let in_flight = freeze_look_kill(&mut worker, &sink, &app, &task_id).await;
        let at_kill = sink.count();
        report.say(format!(
            "worker {round} (started {} before) frozen and killed with {at_kill} of {recipients} at the server; in \
             flight there: {} open SMTP transactions, {} accepted sends not yet recorded",
            secs(resumed.elapsed()),
            in_flight.open_transactions,
            in_flight.accepted_unrecorded.len()
        ));
        assert!((target..recipients).contains(&at_kill), "killed mid-task ({at_kill} delivered)");
        assert!(
            in_flight.accepted_unrecorded.len() <= CONCURRENCY,
            "each outcome is written as soon as the server accepts it: at most one waiting per send slot, not {}",
            in_flight.accepted_unrecorded.len()
        );
        crashes.push(in_flight);
    }

    let before = chrono::Utc::now();
    let last = spawn_borcelle("worker", &db_url, &worker_env, "worker");
    let last_started = Instant::now();
    let taken_back = claims_taken_back(&app, before).await;
    report.say(format!("worker 3 gave the killed run's claims back {} after it started", secs(taken_back)));
    let task = wait_task_done(&app, &task_id, 600).await.expect("the third worker finishes the task");
    drop(last);
    let finished = last_started.elapsed();
    let accepted = sink.accepted();
    let arrivals = Arrivals::of(accepted.iter().map(|a| (a.to.clone(), a.message_id.clone())).collect());
    let missing = arrivals.missing(&expected);
    let copies = |id: &String| accepted.iter().filter(|a| &a.message_id == id).count();
    for (i, crash) in crashes.iter().enumerate() {
        let repeated = crash.accepted_unrecorded.iter().filter(|id| copies(id) > 1).count();
        let in_flight = crash.open_transactions + crash.accepted_unrecorded.len();
        report.say(format!("crash {}: {repeated} duplicates; {in_flight} messages in flight at the server", i + 1));
        assert!(repeated <= in_flight, "crash {}: duplicates only from what was in flight at the server", i + 1);
    }
    let in_flight_total: usize = crashes.iter().map(|c| c.accepted_unrecorded.len()).sum();
    report.say(format!(
        "third worker finished in {} ({} in all): task sent {} failed {}; {} messages for {} recipients, {} missing, \
         {} duplicates in all",
        secs(finished),
        secs(started.elapsed()),
        task["sent"],
        task["failed"],
        arrivals.messages,
        arrivals.per_recipient.len(),
        missing.len(),
        arrivals.duplicates()
    ));
    assert!(missing.is_empty(), "every recipient got the message: {} did not", missing.len());
    assert_eq!(arrivals.per_recipient.len(), recipients);
    assert_eq!((task["sent"].as_u64(), task["failed"].as_u64()), (Some(recipients as u64), Some(0)), "{task}");
    assert!(arrivals.duplicates() <= in_flight_total, "every duplicate is one of the crashes' unrecorded sends");
    assert!(arrivals.duplicates_share_their_message_id(), "a duplicate carries its ledger row's Message-ID");
}

/// Waits until no claim taken before `before` (by the killed run, under a 120 s lease) is held any
/// more, and returns how long that took; fails if they are still held after 30 s (they would be
/// for two minutes if the new worker waited for their lease).
async fn claims_taken_back(app: &TestApp, before: chrono::DateTime<chrono::Utc>) -> Duration {
    let started = Instant::now();
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE status = 'sending' AND lease_until < $1 + interval '119 seconds'",
        )
        .bind(before)
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
