//! Drill: the SMTP server goes down for a minute in the middle of a 20,000-recipient task sent at
//! full rate (256 sends in flight over 16 pooled, pipelined connections). Its going down closes
//! the port and every pooled connection, most of them in the middle of a transaction; the server
//! refuses connections until it comes back on the same port. Every recipient then gets the
//! message exactly once (an outage causes no duplicate), and the server, the task and the ledger
//! agree.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::helpers::*;
use crate::sink::CountingSink;

const CONCURRENCY: usize = 256;
const POOL_SIZE: usize = 16;
/// The ledger's share sent (in %) at which the server goes down.
const DOWN_AT: usize = 30;

/// Whether a connection to `port` is refused (the server is down).
async fn refused(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_server_down_during_a_large_task() {
    let report = Report::new("smtp");
    let recipients = scaled(20_000, 2_000);
    let outage = scaled_secs(60, 6);
    // At full scale the production retry schedule (5 s doubling); smaller drills retry sooner.
    let retry_base = if scale() >= 1.0 { "5" } else { "0.5" };
    let mut sink = CountingSink::start().await;
    let port = sink.port;
    let (db_name, db_url) = fresh_database();
    let mut env = smtp_env(port);
    env.push(("BORCELLE_DELIVERY_RETRY_BASE_SECS", retry_base.to_owned()));
    env.push(("BORCELLE_SMTP_TIMEOUT_SECS", "5".to_owned()));
    env.push(("BORCELLE_DELIVERY_CONCURRENCY", CONCURRENCY.to_string()));
    env.push(("BORCELLE_SMTP_POOL_SIZE", POOL_SIZE.to_string()));
    let (mut serve_process, mut app) = serve(&db_url, &db_name, &env).await;
    app.signed_in_user("smtp-drill@example.com").await;
    seed_contacts(&app.db, "smtp-drill@example.com", "patient", recipients as i32, "everyone").await;
    report.say(format!(
        "serve delivers over SMTP to the drill's sink on {port} ({CONCURRENCY} at once, {POOL_SIZE} connections, no \
         rate limit); one task to {recipients} contacts; down at {DOWN_AT}% sent for {}; retry base {retry_base} s",
        secs(outage)
    ));

    let queued_at = Instant::now();
    let task_id = send_to_tag(&app, "everyone", "Through a long outage").await;
    let expected = ledger_recipients(&app.db, &task_id).await;
    assert_eq!(expected.len(), recipients);
    let queued_in = queued_at.elapsed();
    let target = recipients * DOWN_AT / 100;
    let sending_from = sink.accepted_beyond(0).await;
    let seen = wait_ledger_sent(&app.db, &task_id, target, 300).await;
    assert!(seen >= target, "{target} sent within 300 s (at {seen})");
    let connections_before = sink.connections();
    let cut = sink.go_down().await;
    let down_at = Instant::now();
    let sending_for = down_at - sending_from;
    let accepted_before = sink.count();
    let in_flight = claims_in_flight(&app.db).await;
    report.say(format!(
        "SMTP server down with {accepted_before} of {recipients} accepted (queued in {}, sent from {} after queueing \
         at {}): its {} connections closed ({connections_before} opened so far), {} of them in the middle of a \
         transaction; {in_flight} claims in flight",
        secs(queued_in),
        secs(sending_from - queued_at),
        rate(accepted_before, sending_for),
        cut.connections,
        cut.mid_transaction
    ));
    assert!(accepted_before < recipients, "the outage came mid-task");
    assert!(connections_before <= POOL_SIZE, "the sends share pooled connections ({connections_before} opened)");
    assert!(cut.mid_transaction > 0, "the outage cut transactions short");

    let mut peak_retrying = 0;
    let mut probes = 0;
    while down_at.elapsed() < outage {
        let counts = ledger_counts(&app.db, &task_id).await;
        peak_retrying = peak_retrying.max(counts.get("retrying").copied().unwrap_or(0));
        assert!(refused(port).await, "the server refuses connections while it is down");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counts = ledger_counts(&app.db, &task_id).await;
    let marked_sent = counts.get("sent").copied().unwrap_or(0) as usize;
    report.say(format!(
        "after {} down ({probes} connects refused): ledger {counts:?} (peak {peak_retrying} waiting to retry); {} at \
         the server; serve running: {}",
        secs(down_at.elapsed()),
        sink.count(),
        running(&mut serve_process)
    ));
    assert_eq!(sink.count(), accepted_before, "nothing arrived while the server was down");
    assert!(peak_retrying > 0, "messages waited to retry while the server was down");
    assert!(marked_sent <= sink.distinct_message_ids(), "nothing is marked sent that did not arrive");
    assert!(running(&mut serve_process), "serve kept running");

    sink.come_back().await;
    let back_at = Instant::now();
    let connections_back = sink.connections();
    report.say("SMTP server back on the same port");
    let task = wait_task_done(&app, &task_id, 600).await.expect("the task finishes once the server is back");
    let drained = back_at.elapsed();
    let accepted = sink.accepted();
    let arrivals = Arrivals::of(accepted.iter().map(|a| (a.to.clone(), a.message_id.clone())).collect());
    let distinct = sink.distinct_message_ids();
    let ledger_sent = ledger_sent(&app.db, &task_id).await;
    let attempts: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT attempts, count(*) FROM messages WHERE task_id = $1::uuid GROUP BY attempts ORDER BY attempts",
    )
    .bind(&task_id)
    .fetch_all(&app.db)
    .await
    .expect("attempts");
    let missing = arrivals.missing(&expected);
    report.say(format!(
        "done {} after the server was back ({} in all; the last {} at {}, paced by their retry delays, over {} new \
         connections, at most {} at once): task sent {} failed {} of {}; ledger sent {ledger_sent}; the server \
         accepted {} messages with {distinct} Message-IDs for {} recipients, {} missing, {} duplicates; attempts per \
         message {attempts:?}",
        secs(drained),
        secs(queued_at.elapsed()),
        arrivals.messages - accepted_before,
        rate(arrivals.messages - accepted_before, drained),
        sink.connections() - connections_back,
        sink.peak_connections(),
        task["sent"],
        task["failed"],
        task["total"],
        arrivals.messages,
        arrivals.per_recipient.len(),
        missing.len(),
        arrivals.duplicates()
    ));
    assert!(missing.is_empty(), "nothing lost: {} recipients got nothing", missing.len());
    assert_eq!(arrivals.per_recipient.len(), recipients, "only the task's recipients got mail");
    assert_eq!(distinct, recipients, "one Message-ID per recipient");
    assert_eq!(arrivals.messages, recipients, "every recipient exactly once: the outage caused no duplicate");
    assert_eq!((task["sent"].as_u64(), task["failed"].as_u64()), (Some(recipients as u64), Some(0)), "{task}");
    assert_eq!(task["status"], "done");
    assert_eq!(
        ledger_counts(&app.db, &task_id).await,
        HashMap::from([("sent".to_owned(), recipients as i64)]),
        "the ledger agrees with the task"
    );
    assert_eq!(arrivals.messages, ledger_sent, "the server's count is the ledger's sent count");
}
