//! The operator as it runs in a cluster — leader election, both controllers, their watches and
//! caches — against a mock Kubernetes API server in another process, so that this process's
//! memory is the operator's alone. The API server holds `BENCH_OBJECTS` (10,000) ScheduledReminders
//! in 20 namespaces and as many finished Jobs, shaped as a real one returns them (managedFields,
//! last-applied annotations, server defaults, full status). The operator's clock is fixed at
//! 2026-11-24T09:00:30Z: half the reminders have an occurrence due (09:00) and get a Job; the
//! status of the other half is already current. After the initial reconciles, the mock Job
//! controller finishes the new Jobs (100 a second), then all is quiet for the rest of the steady
//! phase (`BENCH_STEADY_SECS`, 180), RSS sampled every `BENCH_SAMPLE_SECS` (30).
//!
//! Prints the operator's RSS and peak per phase, the API calls by verb and resource per phase
//! (lists after the initial sync above all: a reconcile must never list), reconciles, status
//! patches and conflicts, and the mock server's own RSS for information.
//!
//! `cargo bench -p borcelle-operator --bench controllers`; env `BENCH_OBJECTS`, `BENCH_STEADY_SECS`,
//! `BENCH_SAMPLE_SECS`, `BENCH_WATCH_SECS` (the mock closes watches after at most this, 60, to show
//! restarts; a real server after the client's 290), `BENCH_TLS=1` (serve HTTPS, as a real one does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "controllers/api_server.rs"]
mod api_server;
#[path = "controllers/objects.rs"]
mod objects;
#[path = "controllers/report.rs"]
mod report;
#[path = "controllers/selector.rs"]
mod selector;
#[path = "controllers/store.rs"]
mod store;
#[path = "controllers/verbs.rs"]
mod verbs;
#[path = "controllers/watch.rs"]
mod watch;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use borcelle_operator::context::{Context, fixed_clock};
use borcelle_operator::leader::LeaseSettings;
use borcelle_operator::metrics::Metrics;
use borcelle_operator::run::{RunSettings, run};
use borcelle_operator::server::Health;
use borcelle_operator::{Kind, webhook};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use report::{Calls, Memory, Report, Sample};

/// The environment variable that makes this binary the mock API server.
const ROLE: &str = "BORCELLE_BENCH_ROLE";

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The benchmark's settings (from the environment).
pub struct Settings {
    pub objects: usize,
    pub steady: Duration,
    pub sample: Duration,
    pub watch_max: Duration,
    pub tls: bool,
    pub finish_per_second: u32,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            objects: env_or("BENCH_OBJECTS", 10_000),
            steady: Duration::from_secs(env_or("BENCH_STEADY_SECS", 180)),
            sample: Duration::from_secs(env_or("BENCH_SAMPLE_SECS", 30).max(1)),
            watch_max: Duration::from_secs(env_or("BENCH_WATCH_SECS", 60)),
            tls: env_or("BENCH_TLS", 0) == 1,
            finish_per_second: 100,
        }
    }
}

fn main() {
    let settings = Settings::from_env();
    if std::env::var(ROLE).as_deref() == Ok("api-server") {
        serve_api(&settings);
        return;
    }
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().expect("this benchmark's path"))
        .env(ROLE, "api-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the mock API server");
    let mut announced = String::new();
    std::io::BufReader::new(child.stdout.take().expect("its stdout")).read_line(&mut announced).expect("its address");
    let announced: Value = serde_json::from_str(&announced).expect("the mock API server's address");
    let seeded = started.elapsed();
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut report = runtime.block_on(operate(&settings, &announced, child.id()));
    report.seeded = seeded;
    report.api_server = Memory::of(&format!("/proc/{}/status", child.id()));
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    report.print(&settings);
}

/// As in production (info, JSON, current span), written nowhere; warnings shown.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let production = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_writer(std::io::sink)
        .with_filter(EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let shown = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(EnvFilter::new("warn"));
    tracing_subscriber::registry().with(production).with(shown).init();
}

/// The child: seeds the store, prints its address (and CA), serves until the parent goes.
fn serve_api(settings: &Settings) {
    // The parent holds this process's stdin: when it ends, so does this server.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let behaviour = api_server::Behaviour { watch_max: settings.watch_max, bookmark_every: Duration::from_secs(15) };
    let server = Arc::new(api_server::ApiServer::seeded(settings.objects, behaviour));
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("its address").port();
        let router = api_server::router(server);
        if settings.tls {
            let pems = webhook::self_signed(&["localhost".to_owned()]).expect("a certificate");
            let config = webhook::tls_config(webhook::CertSource::Pems(pems.clone())).expect("TLS");
            println!("{}", json!({"url": format!("https://127.0.0.1:{port}"), "ca": pems.ca}));
            webhook::serve(listener, router, config, CancellationToken::new()).await;
        } else {
            println!("{}", json!({"url": format!("http://127.0.0.1:{port}")}));
            axum::serve(listener, router).await.expect("serving");
        }
    });
}

fn client(announced: &Value) -> kube::Client {
    let url = announced["url"].as_str().expect("a URL").parse().expect("a valid URL");
    let mut config = kube::Config::new(url);
    if let Some(ca) = announced["ca"].as_str() {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let ders = CertificateDer::pem_slice_iter(ca.as_bytes()).map(|c| c.expect("a certificate").to_vec());
        config.root_cert = Some(ders.collect());
        config.tls_server_name = Some("localhost".to_owned());
    }
    kube::Client::try_from(config).expect("a client")
}

/// The mock server's counts (`GET /bench/calls`).
async fn calls(client: &kube::Client) -> Calls {
    let request = axum::http::Request::get("/bench/calls").body(Vec::new()).expect("a request");
    let text = client.request_text(request).await.expect("the mock server's counts");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    let counts =
        |field: &str| -> BTreeMap<String, u64> { serde_json::from_value(body[field].clone()).unwrap_or_default() };
    Calls { calls: counts("calls"), objects: counts("objects"), due: body["due"].as_u64().unwrap_or(0) }
}

/// Reconciles done (both kinds), and those that failed.
fn reconciles(metrics: &Metrics) -> (u64, u64) {
    let text = metrics.encode().unwrap_or_default();
    let sum = |prefix: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (sum("borcelle_operator_reconciles_total{"), sum("borcelle_operator_reconcile_errors_total{"))
}

async fn operate(settings: &Settings, announced: &Value, api_server: u32) -> Report {
    let mut report = Report { api_server_pid: api_server, ..Report::default() };
    let started = Instant::now();
    let client = client(announced);
    let metrics = Arc::new(Metrics::new());
    let identity = "borcelle-operator-0_bench".to_owned();
    let ctx = Context::new(client.clone(), objects::job_settings(), fixed_clock(objects::now()), metrics.clone());
    let ctx = Arc::new(ctx.with_instance(Some(identity.clone())));
    let health = Health::default();
    let shutdown = CancellationToken::new();
    let sample = |label: &str, at: Instant| Sample::now(label, at - started, reconciles(&metrics).0);
    report.samples.push(sample("controllers starting", started));
    let lease = LeaseSettings::new("borcelle-operator", "borcelle", identity);
    let settings_run = RunSettings { namespace: None, lease: Some(lease) };
    let running = tokio::spawn(run(ctx.clone(), settings_run, health.clone(), shutdown.clone()));

    let job_cache = ctx.jobs_cache.of(Kind::ScheduledReminder).clone();
    while !health.is_ready() {
        report.peak_files = report.peak_files.max(report::open_files());
        if report.jobs_synced.is_none() && job_cache.is_synced() {
            report.jobs_synced = Some((reconciles(&metrics).0, calls(&client).await));
        }
        assert!(started.elapsed() < Duration::from_secs(600), "not ready within 10 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if report.jobs_synced.is_none() {
        // Both within one poll: what was done by then.
        report.jobs_synced = Some((reconciles(&metrics).0, calls(&client).await));
    }
    report.samples.push(sample("caches synced (ready)", Instant::now()));
    report.at_sync = calls(&client).await;

    // Every reminder is reconciled; the new Jobs' events and conflicts add more. Settled when
    // nothing has been reconciled for 5 s.
    let mut last = (reconciles(&metrics).0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        report.peak_files = report.peak_files.max(report::open_files());
        let done = reconciles(&metrics).0;
        if done != last.0 {
            last = (done, Instant::now());
        } else if done >= settings.objects as u64 && last.1.elapsed() >= Duration::from_secs(5) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1200), "reconciles did not settle within 20 minutes");
    }
    report.samples.push(sample("initial reconciles settled", last.1));
    report.at_settle = calls(&client).await;

    let finish = format!("/bench/finish-jobs?per_second={}", settings.finish_per_second);
    let request = axum::http::Request::post(finish).body(Vec::new()).expect("a request");
    client.request_text(request).await.expect("the mock Job controller");
    let steady = Instant::now();
    let samples = settings.steady.as_secs().div_ceil(settings.sample.as_secs());
    for k in 1..=samples {
        let offset = (settings.sample * k as u32).min(settings.steady);
        tokio::time::sleep_until((steady + offset).into()).await;
        report.samples.push(sample(&format!("steady +{} s", offset.as_secs()), Instant::now()));
    }
    report.at_steady_end = calls(&client).await;

    report.jobs_cached = [Kind::ScheduledReminder, Kind::Broadcast].map(|k| ctx.jobs_cache.of(k).len());
    report.reported_runs = ctx.reported.len();
    report.backoffs = ctx.backoff.len();
    report.failed_reconciles = reconciles(&metrics).1;
    shutdown.cancel();
    let stop = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    report.stop_took = stop.elapsed();
    report.samples.push(sample("stopped (Lease released)", Instant::now()));
    report.at_end = calls(&client).await;
    report
}
