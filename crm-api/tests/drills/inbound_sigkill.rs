//! Drill: the inbound SMTP receiver (`serve`) killed with SIGKILL, twice, while a client that
//! retries on every failure sends it 1,000 replies. A new `serve` starts each time on the same
//! database and the same SMTP port, the client keeps retrying meanwhile, and in the end every
//! reply answered `250` is in `inbound_messages` exactly once, and every reply was answered `250`.
//! Between a kill and the restart (nobody files anything then) the drill looks at the database:
//! every reply answered so far is in it, and what is in it beyond them is what was committed but
//! whose `250` the kill swallowed; the retries of those are recognised ("filed already").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use borcelle_engine::inbound::{Addresses, Kind};
use lettre::message::header::ContentType;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::harness::*;
use crate::helpers::*;

const DOMAIN: &str = "in.borcelle.test";
/// Client tasks sending at once (each one reply at a time, over a connection of its own).
const CONCURRENCY: usize = 16;
/// The client's backoff after a failure: doubling from the first to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));
/// Longest one attempt may take (lettre's own timeout per command is shorter).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// A task's slot in [`Shared::attempting`] when no attempt of it is under way.
const IDLE: usize = usize::MAX;

fn message_id(i: usize) -> String {
    format!("<drill-{i}@example.com>")
}

/// The index of a reply from the Message-ID it was filed with.
fn index_of(message_id: &str) -> Option<usize> {
    message_id.strip_prefix("<drill-")?.strip_suffix("@example.com>")?.parse().ok()
}

/// A reply that got `250`.
#[derive(Debug, Clone, Copy)]
struct Ack {
    /// The `serve` generation (kills before the attempt began, and before it ended).
    began: usize,
    ended: usize,
    /// The receiver had it already (an earlier attempt was committed, its answer lost).
    filed_already: bool,
}

struct Shared {
    /// How many times `serve` has been killed (its generation), raised once the killed one is reaped.
    epoch: AtomicUsize,
    acks: Mutex<Vec<Option<Ack>>>,
    /// Replies answered `250` so far.
    accepted: watch::Sender<usize>,
    /// Per task: the generation its current attempt began in, or [`IDLE`].
    attempting: Vec<AtomicUsize>,
}

impl Shared {
    fn acked(&self) -> HashSet<usize> {
        let acks = self.acks.lock().expect("acks");
        acks.iter().enumerate().filter(|(_, a)| a.is_some()).map(|(i, _)| i).collect()
    }

    /// Waits until no attempt begun before generation `epoch` is still under way (with `serve`
    /// dead, each ends at once: refused, reset, or a `250` that was on its way).
    async fn settle(&self, epoch: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.attempting.iter().any(|a| a.load(Ordering::SeqCst) < epoch) {
            assert!(Instant::now() < deadline, "attempts to the killed serve did not end within 30 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What one client task saw.
#[derive(Default)]
struct Tally {
    /// Failed attempts by kind, and the first message of each kind.
    failures: BTreeMap<&'static str, usize>,
    examples: BTreeMap<&'static str, String>,
    gave_up: Vec<usize>,
    most_attempts: u32,
}

impl Tally {
    fn failed(&mut self, kind: &'static str, message: String) {
        *self.failures.entry(kind).or_default() += 1;
        self.examples.entry(kind).or_insert(message);
    }
}

fn reply(i: usize, to: &str) -> Message {
    Message::builder()
        .from("Ada <ada@example.com>".parse().expect("from"))
        .to(to.parse().expect("to"))
        .message_id(Some(message_id(i)))
        .subject(format!("Re: Hi ({i})"))
        .header(ContentType::TEXT_PLAIN)
        .body(format!("Answer number {i}, sent until it is accepted."))
        .expect("message")
}

fn transport(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(Duration::from_secs(10)))
        .pool_config(PoolConfig::new().max_size(1))
        .build()
}

/// Sends replies `task, task + CONCURRENCY, …`, each until it is answered `250` (retrying after
/// any failure, with backoff) or the deadline passes.
async fn client(task: usize, replies: usize, port: u16, to: String, shared: Arc<Shared>, deadline: Instant) -> Tally {
    let transport = transport(port);
    let mut tally = Tally::default();
    for i in (task..replies).step_by(CONCURRENCY) {
        let message = reply(i, &to);
        let mut backoff = BACKOFF.0;
        let mut attempts = 0;
        loop {
            if Instant::now() >= deadline {
                tally.gave_up.push(i);
                break;
            }
            attempts += 1;
            let began = shared.epoch.load(Ordering::SeqCst);
            shared.attempting[task].store(began, Ordering::SeqCst);
            let sent = tokio::time::timeout(ATTEMPT_TIMEOUT, transport.send(message.clone())).await;
            let ended = shared.epoch.load(Ordering::SeqCst);
            match sent {
                Ok(Ok(response)) if response.has_code(250) => {
                    let filed_already = response.message().any(|line| line.contains("filed already"));
                    shared.acks.lock().expect("acks")[i] = Some(Ack { began, ended, filed_already });
                    shared.attempting[task].store(IDLE, Ordering::SeqCst);
                    shared.accepted.send_modify(|n| *n += 1);
                    break;
                }
                Ok(Ok(response)) => tally.failed("other answer", format!("{response:?}")),
                Ok(Err(err)) => tally.failed(failure_kind(&err), err.to_string()),
                Err(_) => tally.failed("timeout", format!("no answer within {}", secs(ATTEMPT_TIMEOUT))),
            }
            shared.attempting[task].store(IDLE, Ordering::SeqCst);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
        tally.most_attempts = tally.most_attempts.max(attempts);
    }
    tally
}

/// What kind of failure an attempt met: an answer (`4xx`, `5xx`), no answer in time, a refused
/// connection (no receiver on the port), or a connection that dropped (the receiver was killed).
fn failure_kind(err: &lettre::transport::smtp::Error) -> &'static str {
    if err.is_transient() {
        return "4xx";
    }
    if err.is_permanent() {
        return "5xx";
    }
    if err.is_timeout() {
        return "timeout";
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "refused",
                std::io::ErrorKind::TimedOut => "timeout",
                _ => "dropped",
            };
        }
        source = cause.source();
    }
    "dropped"
}

/// Waits until no other session of the database is in a statement or a transaction: the killed
/// serve's last COMMIT, if PostgreSQL had it, is applied (or its transaction rolled back) by then.
async fn quiesce(db: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND backend_type = 'client backend' AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')",
        )
        .fetch_one(db)
        .await
        .expect("pg_stat_activity");
        if busy == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{busy} sessions of the killed serve still busy after 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `header_message_id -> rows` of the replies filed under the ledger row.
async fn filed(db: &PgPool, row: Uuid) -> HashMap<String, i64> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT header_message_id, count(*) FROM inbound_messages WHERE ledger_id = $1 GROUP BY header_message_id",
    )
    .bind(row)
    .fetch_all(db)
    .await
    .expect("inbound messages");
    rows.into_iter().map(|(id, n)| (id.unwrap_or_default(), n)).collect()
}

/// What the drill saw at one kill.
struct Kill {
    /// Replies answered `250` when it was killed.
    answered: usize,
    /// Replies committed whose `250` never reached the client.
    unanswered: HashSet<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inbound_receiver_killed_during_incoming_replies() {
    let report = Report::new("inbound-kill");
    let replies = scaled(1000, 300);
    let (db_name, db_url) = fresh_database();
    let storage = std::env::temp_dir().join(unique("borcelle-drill-files-"));
    let smtp_port = free_port();
    let env = [
        ("BORCELLE_INBOUND_DOMAIN", DOMAIN.to_owned()),
        ("BORCELLE_INBOUND_LISTEN", format!("127.0.0.1:{smtp_port}")),
        ("BORCELLE_INBOUND_CONNECTIONS_PER_MINUTE", "0".to_owned()),
        ("BORCELLE_INBOUND_MAX_CONNECTIONS_PER_CLIENT", "200".to_owned()),
        ("BORCELLE_STORAGE_DIR", storage.display().to_string()),
    ];
    let (first, mut app) = serve(&db_url, &db_name, &env).await;
    app.signed_in_user("inbound-kill-drill@example.com").await;
    // One message to a contact, delivered (to the outbox) by serve's own engine: the ledger row
    // the replies answer.
    let task_id = message_one_new_contact(&app).await;
    wait_task_done(&app, &task_id, 60).await.expect("serve delivers the message");
    let row: Uuid = sqlx::query_scalar("SELECT id FROM messages WHERE task_id = $1::uuid")
        .bind(&task_id)
        .fetch_one(&app.db)
        .await
        .expect("the ledger row");
    let reply_to = Addresses::load(&app.db, DOMAIN).await.expect("addresses").address(Kind::Reply, row);
    report.say(format!(
        "serve receives inbound mail on 127.0.0.1:{smtp_port}; {replies} replies to {reply_to} from {CONCURRENCY} \
         client tasks, each retrying any failure (backoff {}–{})",
        secs(BACKOFF.0),
        secs(BACKOFF.1)
    ));

    let (accepted, mut answered) = watch::channel(0usize);
    let shared = Arc::new(Shared {
        epoch: AtomicUsize::new(0),
        acks: Mutex::new(vec![None; replies]),
        accepted,
        attempting: (0..CONCURRENCY).map(|_| AtomicUsize::new(IDLE)).collect(),
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let clients: Vec<_> = (0..CONCURRENCY)
        .map(|task| tokio::spawn(client(task, replies, smtp_port, reply_to.clone(), shared.clone(), deadline)))
        .collect();

    let mut current = first;
    let mut kills = Vec::new();
    for (generation, percent) in [(1, 30), (2, 65)] {
        let target = replies * percent / 100;
        tokio::time::timeout(Duration::from_secs(120), answered.wait_for(|n| *n >= target))
            .await
            .unwrap_or_else(|_| panic!("{target} replies answered within 120 s"))
            .expect("the client runs");
        current.0.kill().expect("SIGKILL");
        current.0.wait().expect("reaped");
        let killed = Instant::now();
        shared.epoch.store(generation, Ordering::SeqCst);
        let answered_at_kill = *answered.borrow();
        assert!(answered_at_kill < replies, "killed mid-flow ({answered_at_kill} of {replies} answered)");

        // Nobody files anything now: what the database holds is what the killed serve committed.
        shared.settle(generation).await;
        quiesce(&app.db).await;
        let acked = shared.acked();
        let in_db = filed(&app.db, row).await;
        let twice: Vec<_> = in_db.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "filed twice: {twice:?}");
        let in_db: HashSet<usize> = in_db.keys().filter_map(|id| index_of(id)).collect();
        let lost: Vec<_> = acked.difference(&in_db).collect();
        assert!(lost.is_empty(), "answered 250 but not in the database after the kill: {lost:?}");
        let unanswered: HashSet<usize> = in_db.difference(&acked).copied().collect();
        assert!(
            unanswered.len() <= CONCURRENCY,
            "at most one committed, unanswered reply per session: {}",
            unanswered.len()
        );

        current = serve_on(free_port(), &db_url, &env).await;
        report.say(format!(
            "serve {generation} killed (SIGKILL) with {answered_at_kill} of {replies} replies answered 250; the database \
             then held {} replies: every answered one, and {} committed whose 250 the kill swallowed; serve {} ready on \
             the same database and SMTP port {} after the kill",
            in_db.len(),
            unanswered.len(),
            generation + 1,
            secs(killed.elapsed())
        ));
        kills.push(Kill { answered: acked.len(), unanswered });
    }

    let mut failures: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut examples: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut gave_up = Vec::new();
    let mut most_attempts = 0;
    for handle in clients {
        let tally = handle.await.expect("a client task");
        for (kind, n) in tally.failures {
            *failures.entry(kind).or_default() += n;
        }
        for (kind, example) in tally.examples {
            examples.entry(kind).or_insert(example);
        }
        gave_up.extend(tally.gave_up);
        most_attempts = most_attempts.max(tally.most_attempts);
    }
    let client_time = started.elapsed();
    drop(current);
    let acks = shared.acks.lock().expect("acks").clone();
    let in_db = filed(&app.db, row).await;
    let rows: i64 = in_db.values().sum();
    let duplicates: i64 = in_db.values().map(|n| n - 1).sum();
    let missing: Vec<usize> =
        (0..replies).filter(|i| acks[*i].is_some() && !in_db.contains_key(&message_id(*i))).collect();
    let strangers: Vec<&String> = in_db.keys().filter(|id| index_of(id).is_none_or(|i| i >= replies)).collect();
    let notifications: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications WHERE kind = 'reply'")
        .fetch_one(&app.db)
        .await
        .expect("notifications");
    let by_generation: Vec<usize> =
        (0..=kills.len()).map(|g| acks.iter().flatten().filter(|a| a.began == g && a.ended == g).count()).collect();
    let across = acks.iter().flatten().filter(|a| a.began != a.ended).count();
    let filed_already = acks.iter().flatten().filter(|a| a.filed_already).count();
    let retries: usize = failures.values().sum();
    let swallowed: usize = kills.iter().map(|k| k.unanswered.len()).sum();
    report.say(format!(
        "{} of {replies} replies answered 250 in {} ({} gave up); by serve generation {by_generation:?} (+{across} across \
         a kill); {} kills; {retries} retries {failures:?} (at most {most_attempts} attempts for one reply); {filed_already} \
         answered \"filed already\" (the kills swallowed the 250 of {swallowed} committed replies)",
        acks.iter().flatten().count(),
        secs(client_time),
        gave_up.len(),
        kills.len(),
    ));
    for (kind, example) in &examples {
        report.say(format!("  first {kind} failure: {example}"));
    }
    report.say(format!(
        "inbound_messages: {rows} rows for {} Message-IDs; duplicates found {duplicates}; answered but missing {}; \
         unknown {}; {notifications} reply notifications; {} in all",
        in_db.len(),
        missing.len(),
        strangers.len(),
        secs(report.elapsed())
    ));

    assert!(gave_up.is_empty(), "every reply got 250 in the end; {} did not: {gave_up:?}", gave_up.len());
    assert!(acks.iter().all(Option::is_some));
    assert!(missing.is_empty(), "every reply answered 250 is in the database: missing {missing:?}");
    assert_eq!(
        duplicates,
        0,
        "no Message-ID filed twice: {:?}",
        in_db.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    assert!(strangers.is_empty(), "nothing else filed: {strangers:?}");
    assert_eq!(rows as usize, replies, "each reply filed once");
    assert_eq!(notifications as usize, replies, "one notification per reply, written with it");
    for (g, n) in by_generation.iter().enumerate() {
        assert!(*n > 0, "serve {} answered replies of its own (before its kill, or after the last)", g + 1);
    }
    for (k, kill) in kills.iter().enumerate() {
        assert!(kill.answered < replies, "kill {} came mid-flow", k + 1);
        let not_recognised: Vec<_> =
            kill.unanswered.iter().filter(|i| !acks[**i].is_some_and(|a| a.filed_already)).collect();
        assert!(
            not_recognised.is_empty(),
            "kill {}: replies committed before it were filed again on retry, not recognised: {not_recognised:?}",
            k + 1
        );
    }
    let _ = std::fs::remove_dir_all(&storage);
}
