//! Drill: `serve` sent SIGTERM in the middle of a task. Sends in flight finish within the grace
//! period, the claims still waiting are released at once (not left to their lease), and the next
//! process delivers the rest: everyone gets the message once.

use std::time::{Duration, Instant};

use crate::harness::*;
use crate::helpers::*;

/// `serve`'s shutdown grace for in-flight sends (DeliverySettings::default().shutdown_grace).
const GRACE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sent_sigterm_during_a_task() {
    let report = Report::new("sigterm");
    let recipients = scaled(1000, 120);
    let dir = std::env::temp_dir().join(unique("borcelle-drill-sink-"));
    let port = free_port();
    let sink = SmtpSink::start(port, &dir).await;
    let (db_name, db_url) = fresh_database();
    // Slow on purpose: at 1 message a second, the 32 claims in flight cannot all be sent within
    // the grace period, so both paths run: sends that finish, and claims that are given back.
    let mut slow = smtp_env(port);
    slow.push(("BORCELLE_MAIL_RATE_PER_SEC", "1".to_owned()));
    slow.push(("BORCELLE_DELIVERY_CONCURRENCY", "32".to_owned()));
    let (mut first, mut app) = serve(&db_url, &db_name, &slow).await;
    app.signed_in_user("sigterm-drill@example.com").await;
    seed_contacts(&app.db, "sigterm-drill@example.com", "patient", recipients as i32, "all").await;
    let task_id = send_to_tag(&app, "all", "Across a restart").await;
    let expected = ledger_recipients(&app.db, &task_id).await;
    report.say(format!("serve (32 sends at once, 1 a second) started a task to {recipients} contacts"));

    wait_for_mail(&dir, 3, 30).await;
    let in_flight = claims_in_flight(&app.db).await;
    let at_signal = maildir_count(&dir);
    signal(&first, "TERM");
    let signalled = Instant::now();
    let status = tokio::task::block_in_place(|| first.0.wait()).expect("serve exits");
    let stopped_in = signalled.elapsed();
    let at_exit = maildir_count(&dir);
    let counts = ledger_counts(&app.db, &task_id).await;
    let left_claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE status = 'sending'")
        .fetch_one(&app.db)
        .await
        .expect("claims");
    report.say(format!(
        "SIGTERM with {at_signal} delivered and {in_flight} claims in flight; serve exited ({status}) after {}; \
         {} more sends finished during the grace period, {} claims were released; ledger {counts:?}",
        secs(stopped_in),
        at_exit - at_signal,
        in_flight - (at_exit - at_signal) as i64
    ));
    assert!(status.success(), "a graceful stop exits 0");
    assert!(stopped_in <= GRACE + Duration::from_secs(5), "the grace period bounds the stop");
    assert!(at_exit > at_signal, "in-flight sends finished after the signal");
    assert_eq!(left_claimed, 0, "every unfinished claim was released, none left to its lease");
    assert_eq!(counts.get("sent").copied().unwrap_or(0) as usize, at_exit, "every finished send is recorded");

    // The next process (at full speed) picks up what was released and what was never claimed,
    // well before the 120 s lease would have run out.
    let second_port = free_port();
    let _second = serve_on(second_port, &db_url, &smtp_env(port)).await;
    // The same browser (its session lives in the database) now talks to the new process.
    app.addr = ([127, 0, 0, 1], second_port).into();
    let restarted = Instant::now();
    let task = wait_task_done(&app, &task_id, 60).await.expect("the next process finishes the task");
    let took = restarted.elapsed();
    let arrived = wait_for_mail(&dir, recipients, 10).await;
    drop(sink);
    let arrivals = Arrivals::read(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let missing = arrivals.missing(&expected);
    report.say(format!(
        "the next serve finished the task in {}: sent {} failed {}; {arrived} messages for {} recipients, {} missing, \
         {} duplicates",
        secs(took),
        task["sent"],
        task["failed"],
        arrivals.per_recipient.len(),
        missing.len(),
        arrivals.duplicates()
    ));
    assert!(missing.is_empty(), "everyone got the message: {} did not", missing.len());
    assert_eq!((task["sent"].as_u64(), task["failed"].as_u64()), (Some(recipients as u64), Some(0)), "{task}");
    // Only a send cut off by the end of the grace period after the server stored it could arrive
    // twice; it would carry the same Message-ID.
    assert!(arrivals.duplicates() as i64 <= in_flight, "duplicates only from claims cut off at the end of the grace");
    assert!(arrivals.duplicates_share_their_message_id());
}
