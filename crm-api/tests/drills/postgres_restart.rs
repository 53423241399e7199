//! Drill: PostgreSQL stopped (`pg_ctl stop -m fast`) and started again under load. Requests
//! during the outage fail fast with a JSON 503, never a 500 or a hang; the pool recovers without
//! restarting `serve`; nothing half-written remains.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::harness::*;
use crate::helpers::*;

/// `serve`'s pool acquire timeout (BORCELLE_DB_ACQUIRE_TIMEOUT_SECS, 5 s by default): the longest
/// a request waits for a connection before answering 503. While PostgreSQL refuses connections,
/// sqlx keeps trying until then.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A request that takes this long is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Call {
    began: Instant,
    took: Duration,
    what: &'static str,
    /// The HTTP status; 0 for no answer (connection error or client timeout).
    status: u16,
    code: Option<String>,
    /// The contact's email (create) or the task id (send).
    key: String,
}

/// One user's loop: create a contact; every third time also send it a message.
async fn user_loop(
    client: reqwest::Client,
    base: String,
    csrf: String,
    worker: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
) {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        let email = format!("w{worker}n{n}@example.com");
        let body = json!({ "name": format!("Worker {worker} number {n}"), "email": email, "tags": ["load"] });
        let (call, created) = post(&client, &base, &csrf, "/api/v1/contacts", &body, "create", email).await;
        calls.lock().await.push(call);
        if n % 3 == 0
            && let Some(id) = created.as_ref().and_then(|c| c["id"].as_str())
        {
            let body = json!({ "contact_ids": [id], "subject": "Load", "body": "During the drill" });
            let (mut call, queued) =
                post(&client, &base, &csrf, "/api/v1/messages", &body, "send", String::new()).await;
            call.key = queued.as_ref().and_then(|q| q["task_id"].as_str()).unwrap_or_default().to_owned();
            calls.lock().await.push(call);
        }
        if created.is_none() {
            // Do not spin: a browser's user would not click faster than this during an outage.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    csrf: &str,
    path: &str,
    body: &Value,
    what: &'static str,
    key: String,
) -> (Call, Option<Value>) {
    let began = Instant::now();
    let sent = client
        .post(format!("{base}{path}"))
        .header("Origin", base)
        .header("X-CSRF-Token", csrf)
        .json(body)
        .timeout(CLIENT_TIMEOUT)
        .send()
        .await;
    let (status, answer) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.ok())
        }
        Err(_) => (0, None),
    };
    let code = answer.as_ref().and_then(|a| a["error"]["code"].as_str()).map(str::to_owned);
    let call = Call { began, took: began.elapsed(), what, status, code, key };
    let ok = (200..300).contains(&status);
    (call, if ok { answer } else { None })
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarted_during_load() {
    let report = Report::new("postgres");
    let pg = PrivatePostgres::start().await;
    let db_name = unique("borcelle_drill_");
    let db_url = pg.url(&db_name);
    report.say(format!("a private PostgreSQL cluster on port {}", pg.port));
    let (mut serve_process, mut app) = serve(&db_url, &db_name, &[]).await;
    app.signed_in_user("pg-drill@example.com").await;
    let (base, csrf) = (app.url(""), app.csrf.clone().expect("csrf"));
    let cookie = app.session_cookie.clone().expect("cookie");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let workers = 6;
    let mut loops = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("Cookie", cookie.parse().expect("cookie"));
        let client = reqwest::Client::builder().default_headers(headers).build().expect("client");
        loops.spawn(user_loop(client, base.clone(), csrf.clone(), worker, stop.clone(), calls.clone()));
    }
    report.say(format!("{workers} users create contacts (and every third time send it a message) in a loop"));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let stopping = Instant::now();
    tokio::task::block_in_place(|| pg.stop_fast());
    let stopped = Instant::now();
    report.say(format!("pg_ctl stop -m fast took {}", secs(stopped - stopping)));
    let outage = scaled_secs(30, 8);
    tokio::time::sleep(outage.saturating_sub(stopped - stopping)).await;
    let (readyz_status, readyz) = {
        let r = reqwest::get(format!("{base}/readyz")).await.expect("readyz");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    let starting = Instant::now();
    tokio::task::block_in_place(|| pg.start_again());
    let started = Instant::now();
    report.say(format!(
        "PostgreSQL down for {}; /readyz during the outage: {readyz_status} {readyz}; pg_ctl start took {}",
        secs(starting - stopping),
        secs(started - starting)
    ));
    assert_eq!(readyz_status, 503, "/readyz says the database is unreachable");

    // Keep the load on until requests succeed again, then a little longer.
    let recovered = loop {
        let first_ok = calls
            .lock()
            .await
            .iter()
            .filter(|c| c.began >= started && (200..300).contains(&c.status))
            .map(|c| c.began + c.took)
            .min();
        if let Some(at) = first_ok {
            break at;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no request succeeded within 30 s of PostgreSQL's start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while loops.join_next().await.is_some() {}
    let calls = calls.lock().await.clone();
    assert!(running(&mut serve_process), "serve is the same process: it never exited");

    // What the users saw.
    let before: Vec<&Call> = calls.iter().filter(|c| c.began < stopping).collect();
    // Calls answered while PostgreSQL was down (a call still waiting at the start may be answered
    // by the restarted server).
    let outage_calls: Vec<&Call> =
        calls.iter().filter(|c| c.began + c.took >= stopped && c.began + c.took < starting).collect();
    let after: Vec<&Call> = calls.iter().filter(|c| c.began >= recovered).collect();
    let ok = |cs: &[&Call]| cs.iter().filter(|c| (200..300).contains(&c.status)).count();
    let mut failed_fast: Vec<Duration> = outage_calls.iter().map(|c| c.took).collect();
    failed_fast.sort();
    report.say(format!(
        "before: {}/{} 2xx; answered during the outage: {}, of which {} 503 after p50 {} / p95 {} / max {} ms; \
         first success {} after PostgreSQL was back; after: {}/{} 2xx",
        ok(&before),
        before.len(),
        outage_calls.len(),
        outage_calls.iter().filter(|c| c.status == 503).count(),
        ms(percentile(&failed_fast, 0.5)),
        ms(percentile(&failed_fast, 0.95)),
        ms(percentile(&failed_fast, 1.0)),
        secs(recovered.saturating_duration_since(started)),
        ok(&after),
        after.len()
    ));
    let odd: Vec<&Call> = calls.iter().filter(|c| !(200..300).contains(&c.status) && c.status != 503).collect();
    assert!(odd.is_empty(), "every failure is a 503, never a 500, a hang or a dropped connection: {odd:?}");
    assert!(calls.iter().filter(|c| c.status == 503).all(|c| c.code.as_deref() == Some("unavailable")), "503s say why");
    assert!(!outage_calls.is_empty() && outage_calls.iter().all(|c| c.status == 503), "the outage answered 503");
    assert!(
        percentile(&failed_fast, 1.0) <= ACQUIRE_TIMEOUT + Duration::from_secs(2),
        "503s come within the acquire timeout, not after a long hang"
    );
    // Only the request probing whether the database is back waits for the pool; the others are
    // answered at once (without the gate, every one of them would wait the acquire timeout).
    assert!(percentile(&failed_fast, 0.5) < Duration::from_secs(1), "most 503s come at once");
    assert!(!after.is_empty() && ok(&after) == after.len(), "the pool recovered: everything succeeds again");

    // Nothing half-written: every acknowledged contact is there, and anything there is complete.
    let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.email, c.name, c.tags FROM contacts c JOIN users u ON u.id = c.owner_id WHERE u.email = $1",
    )
    .bind("pg-drill@example.com")
    .fetch_all(&app.db)
    .await
    .expect("contacts");
    let stored: std::collections::HashMap<&str, (&str, &Vec<String>)> =
        rows.iter().map(|(email, name, tags)| (email.as_str(), (name.as_str(), tags))).collect();
    let creates: Vec<&Call> = calls.iter().filter(|c| c.what == "create").collect();
    let acknowledged: Vec<&&Call> = creates.iter().filter(|c| (200..300).contains(&c.status)).collect();
    for call in &acknowledged {
        assert!(stored.contains_key(call.key.as_str()), "acknowledged contact {} is missing", call.key);
    }
    for (email, (name, tags)) in &stored {
        let (worker, n) = email.trim_start_matches('w').trim_end_matches("@example.com").split_once('n').expect("ours");
        assert_eq!(*name, format!("Worker {worker} number {n}"), "{email} is complete");
        assert_eq!(tags.as_slice(), ["load"], "{email} is complete");
    }
    let unacknowledged_but_stored =
        creates.iter().filter(|c| !(200..300).contains(&c.status) && stored.contains_key(c.key.as_str())).count();
    // Every task has all its ledger rows (written in one transaction with it), and delivery resumed.
    let torn: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks t WHERE t.total <> (SELECT count(*) FROM messages m WHERE m.task_id = t.id)",
    )
    .fetch_one(&app.db)
    .await
    .expect("tasks");
    assert_eq!(torn, 0, "a task without all its ledger rows");
    // With the 120 s default lease, a claim left to its lease would miss this wait: claims taken
    // just before the shutdown, whose messages could not be prepared, must be given back.
    let sends: Vec<&Call> = calls.iter().filter(|c| c.what == "send" && c.status == 202).collect();
    for call in &sends {
        assert!(wait_task_done(&app, &call.key, 30).await.is_some(), "task {} finishes after the restart", call.key);
    }
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(&app.db).await.expect("tasks");
    report.say(format!(
        "nothing half-written: {} contacts stored, all {} acknowledged ones among them, each complete \
         ({unacknowledged_but_stored} committed whose answer was lost in the outage); {tasks} tasks, each with all \
         its ledger rows; all {} acknowledged sends delivered after the restart",
        stored.len(),
        acknowledged.len(),
        sends.len()
    ));
    report.say(format!("done in {}", secs(report.elapsed())));
}
