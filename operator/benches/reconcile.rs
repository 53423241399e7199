//! Reconciles 10,000 ScheduledReminders held in a reflector store against an in-process mock API
//! server, and prints CPU time and wall time per object, and the process's peak RSS.
//!
//! `cargo bench -p borcelle-operator --bench reconcile` (env `BENCH_OBJECTS` to change the count).
//! The CPU time is the whole process's (the mock server's JSON work included), read from
//! `/proc/self/stat`; memory is `VmRSS`/`VmHWM` from `/proc/self/status`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Request, Response};
use borcelle_crds::ScheduledReminder;
use borcelle_operator::context::{Context, JobSettings, fixed_clock};
use borcelle_operator::metrics::Metrics;
use borcelle_operator::reconcile;
use borcelle_operator::run::strip_for_cache;
use chrono::{DateTime, TimeZone, Utc};
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

const SCHEDULES: [&str; 6] = ["*/5 * * * *", "0 * * * *", "0 9 * * *", "*/15 * * * *", "30 8 * * 1-5", "0 9 * * 1-5"];
const ZONES: [Option<&str>; 3] = [None, Some("Europe/Berlin"), Some("America/New_York")];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 30).single().unwrap()
}

/// A reminder as a watch delivers it: with uid, generation, managedFields.
fn reminder_json(i: usize) -> Value {
    json!({
        "apiVersion": "crm.borcelle.io/v1alpha1",
        "kind": "ScheduledReminder",
        "metadata": {
            "name": format!("reminder-{i:05}"),
            "namespace": format!("tenant-{:02}", i % 20),
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "generation": 1,
            "resourceVersion": format!("{}", 1000 + i),
            "creationTimestamp": "2026-11-24T08:59:00Z",
            "labels": {"team": "sales"},
            "managedFields": [{
                "manager": "kubectl", "operation": "Apply", "apiVersion": "crm.borcelle.io/v1alpha1",
                "time": "2026-11-24T08:59:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {
                    "f:owner": {}, "f:recipients": {"f:emails": {}}, "f:subject": {}, "f:body": {},
                    "f:schedule": {}, "f:timeZone": {}, "f:concurrencyPolicy": {}}}
            }]
        },
        "spec": {
            "owner": format!("user{}@example.com", i % 300),
            "recipients": {"emails": [format!("contact{i}@example.com"), format!("contact{}@example.com", i + 1)]},
            "subject": "Follow up on the quarterly review",
            "body": "Hello, a quick reminder to follow up on the points we discussed in the quarterly review.",
            "schedule": SCHEDULES[i % SCHEDULES.len()],
            "timeZone": ZONES[i % ZONES.len()],
            "concurrencyPolicy": "Forbid"
        }
    })
}

/// The mock API server: empty Job lists, echoed creates, recorded status applies.
#[derive(Default)]
struct MockApi {
    /// Applied statuses by path, as JSON text (compact: this is the benchmark's, not the operator's, memory).
    applied: Mutex<HashMap<String, Vec<u8>>>,
    requests: Mutex<usize>,
}

fn respond(status: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder().status(status).body(Body::from(body)).unwrap()
}

impl MockApi {
    async fn handle(&self, request: Request<Body>, empty_list: &[u8], stored: &[u8]) -> Response<Body> {
        *self.requests.lock().unwrap() += 1;
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let path = parts.uri.path();
        match parts.method.as_str() {
            "GET" => respond(200, empty_list.to_vec()),
            "POST" => respond(201, bytes.to_vec()),
            "PATCH" => {
                let applied: Value = serde_json::from_slice(&bytes).unwrap();
                let status = serde_json::to_vec(&applied["status"]).unwrap();
                self.applied.lock().unwrap().insert(path.to_owned(), status);
                respond(200, stored.to_vec())
            }
            other => panic!("unexpected {other} {path}"),
        }
    }

    fn requests(&self) -> usize {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

fn context(api: Arc<MockApi>) -> Arc<Context> {
    let empty_list: Arc<[u8]> =
        serde_json::to_vec(&json!({"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": []}))
            .unwrap()
            .into();
    let stored: Arc<[u8]> = serde_json::to_vec(&reminder_json(0)).unwrap().into();
    let service = tower::service_fn(move |request: Request<Body>| {
        let (api, empty_list, stored) = (api.clone(), empty_list.clone(), stored.clone());
        async move { Ok::<_, Infallible>(api.handle(request, &empty_list, &stored).await) }
    });
    let client = kube::Client::new(service, "default");
    let jobs = JobSettings { image: "registry.example/borcelle:1.4.0".to_owned(), ..JobSettings::default() };
    Arc::new(Context::new(client, jobs, fixed_clock(now()), Arc::new(Metrics::new())))
}

/// Process CPU time (user + system), from /proc/self/stat in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap_or(0)).collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// A `/proc/self/status` value in MiB (VmRSS, VmHWM).
fn memory_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?.trim_start_matches(':').trim().strip_suffix("kB")?.trim().parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

struct Row {
    phase: &'static str,
    objects: usize,
    requests: usize,
    wall: Duration,
    cpu: Duration,
    created: u64,
}

async fn pass(phase: &'static str, store: &Store<ScheduledReminder>, ctx: &Arc<Context>, api: &MockApi) -> Row {
    let objects = store.state();
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let mut created = 0;
    for obj in &objects {
        let had_status = obj.status.is_some();
        reconcile(obj.clone(), ctx.clone()).await.expect("reconcile");
        created += u64::from(!had_status);
    }
    let (wall, cpu) = (wall0.elapsed(), cpu_time().saturating_sub(cpu0));
    Row { phase, objects: objects.len(), requests: api.requests(), wall, cpu, created }
}

fn main() {
    let count: usize = std::env::var("BENCH_OBJECTS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let rss_start = memory_mib("VmRSS");
        let (store, mut writer) = reflector::store::<ScheduledReminder>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for i in 0..count {
            let mut obj: ScheduledReminder = serde_json::from_value(reminder_json(i)).unwrap();
            // As the operator's watch does before caching.
            strip_for_cache(&mut obj);
            writer.apply_watcher_event(&watcher::Event::InitApply(obj));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let rss_store = memory_mib("VmRSS");

        let api = Arc::new(MockApi::default());
        let ctx = context(api.clone());
        let first = pass("first (due: create Job)", &store, &ctx, &api).await;

        // The watch delivers the applied statuses: the store now holds them.
        let applied = std::mem::take(&mut *api.applied.lock().unwrap());
        for obj in store.state() {
            let path = format!(
                "/apis/crm.borcelle.io/v1alpha1/namespaces/{}/scheduledreminders/{}/status",
                obj.metadata.namespace.as_deref().unwrap_or_default(),
                obj.metadata.name.as_deref().unwrap_or_default()
            );
            let mut updated = (*obj).clone();
            if let Some(status) = applied.get(&path) {
                let mut status: borcelle_crds::ScheduledReminderStatus = serde_json::from_slice(status).unwrap();
                // Their Jobs finished and were listed no more (the mock lists no Jobs).
                status.active.clear();
                updated.status = Some(status);
            }
            writer.apply_watcher_event(&watcher::Event::Apply(updated));
        }
        drop(applied);
        let steady = pass("steady (nothing due, status current)", &store, &ctx, &api).await;
        let created_jobs = ctx
            .metrics
            .encode()
            .unwrap()
            .lines()
            .find(|l| l.starts_with("borcelle_operator_jobs_created_total"))
            .map(str::to_owned);

        println!();
        println!("reconcile benchmark: {count} ScheduledReminders in a reflector store, mock API in process");
        println!(
            "{:<38} {:>8} {:>9} {:>10} {:>10} {:>14} {:>15}",
            "phase", "objects", "requests", "wall (s)", "CPU (s)", "CPU µs/object", "wall µs/object"
        );
        for row in [&first, &steady] {
            println!(
                "{:<38} {:>8} {:>9} {:>10.2} {:>10.2} {:>14.0} {:>15.0}",
                row.phase,
                row.objects,
                row.requests,
                row.wall.as_secs_f64(),
                row.cpu.as_secs_f64(),
                row.cpu.as_secs_f64() * 1e6 / row.objects as f64,
                row.wall.as_secs_f64() * 1e6 / row.objects as f64,
            );
        }
        let _ = first.created;
        println!();
        println!("jobs created: {}", created_jobs.unwrap_or_default());
        println!("RSS at start:            {rss_start:>7.1} MiB");
        println!("RSS with the store full: {rss_store:>7.1} MiB");
        println!("RSS now:                 {:>7.1} MiB", memory_mib("VmRSS"));
        let peak = memory_mib("VmHWM");
        println!(
            "peak RSS (VmHWM):        {peak:>7.1} MiB (target < 100 MiB: {})",
            if peak < 100.0 { "met" } else { "MISSED" }
        );
        drop(store);
    });
}
