//! Drill: `borcelle worker` killed with SIGKILL in the middle of a task, twice. Every recipient
//! gets the message; duplicates are counted and come only from the documented crash window (a
//! send the server accepted whose outcome was not yet recorded).

use std::time::Instant;

use crate::harness::*;
use crate::helpers::*;

#[tokio::test]
async fn worker_killed_twice_mid_task() {
    let report = Report::new("worker-kill");
    let recipients = scaled(5000, 400);
    let lease_secs = if scale() >= 1.0 { 10 } else { 4 };
    let dir = std::env::temp_dir().join(unique("borcelle-drill-sink-"));
    let port = free_port();
    let sink = SmtpSink::start(port, &dir).await;
    let (db_name, db_url) = fresh_database();
    // The API alone; the workers deliver.
    let (_serve, mut app) = serve(&db_url, &db_name, &[("BORCELLE_SERVE_DELIVERY", "false".to_owned())]).await;
    app.signed_in_user("kill-drill@example.com").await;
    seed_contacts(&app.db, "kill-drill@example.com", "survivor", recipients as i32, "all").await;
    let mut worker_env = smtp_env(port);
    worker_env.push(("BORCELLE_DELIVERY_CONCURRENCY", "16".to_owned()));
    worker_env.push(("BORCELLE_MAIL_RATE_PER_SEC", "250".to_owned()));
    worker_env.push(("BORCELLE_DELIVERY_LEASE_SECS", lease_secs.to_string()));
    report.say(format!(
        "one task to {recipients} contacts; `borcelle worker` (16 at once, at most 250/s, lease {lease_secs} s) \
         delivering to aiosmtpd"
    ));
    let started = Instant::now();
    let task_id = send_to_tag(&app, "all", "Crash test").await;
    let expected = ledger_recipients(&app.db, &task_id).await;

    let mut in_flight_at_kills = 0;
    for (round, share) in [(1, 3), (2, 3)] {
        let mut worker = spawn_borcelle("worker", &db_url, &worker_env, "worker");
        let target = recipients * round / share;
        let reached = wait_for_mail(&dir, target, 120).await;
        worker.0.kill().expect("SIGKILL");
        worker.0.wait().expect("reaped");
        let at_kill = maildir_count(&dir);
        let in_flight = claims_in_flight(&app.db).await;
        in_flight_at_kills += in_flight;
        report.say(format!(
            "worker {round} killed (SIGKILL) with {at_kill} of {recipients} at the server; {in_flight} claims left \
             under its lease"
        ));
        assert!((target..recipients).contains(&reached), "killed mid-task ({reached} delivered)");
    }

    let last = spawn_borcelle("worker", &db_url, &worker_env, "worker");
    let last_started = Instant::now();
    let task = wait_task_done(&app, &task_id, 600).await.expect("the third worker finishes the task");
    drop(last);
    let arrived = wait_for_mail(&dir, recipients, 10).await;
    drop(sink);
    let arrivals = Arrivals::read(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let missing = arrivals.missing(&expected);
    report.say(format!(
        "third worker finished in {} ({} in all): task sent {} failed {}; {arrived} messages for {} recipients, \
         {} missing, {} duplicates (crash window: at most the {in_flight_at_kills} claims in flight at the kills)",
        secs(last_started.elapsed()),
        secs(started.elapsed()),
        task["sent"],
        task["failed"],
        arrivals.per_recipient.len(),
        missing.len(),
        arrivals.duplicates()
    ));
    assert!(missing.is_empty(), "every recipient got the message: {} did not", missing.len());
    assert_eq!(arrivals.per_recipient.len(), recipients);
    assert_eq!((task["sent"].as_u64(), task["failed"].as_u64()), (Some(recipients as u64), Some(0)), "{task}");
    assert!(arrivals.duplicates() as i64 <= in_flight_at_kills, "duplicates only from sends in flight at a kill");
    assert!(arrivals.duplicates_share_their_message_id(), "a duplicate carries its ledger row's Message-ID");
}
