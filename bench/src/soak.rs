//! The soak (issue #7): mixed load against one release `borcelle serve`, with the server's resident
//! memory sampled every ten seconds: a warm-up, then ten minutes (configurable) measured. The
//! warm-up lasts at least two minutes and until the events the server keeps for reconnecting
//! clients (`borcelle_events_retained`) stop growing: that ring is bounded, and while it fills, the
//! memory it takes is growth by design, not a leak. The soak passes when no request failed, every
//! queued message was delivered, and the RSS at the end is within 10 % of the RSS after the
//! warm-up; it prints each sample, the per-request figures, the trend (least-squares slope of the
//! RSS after the warm-up) and the verdict, as Markdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sqlx::PgPool;

use crate::probe;
use crate::seed;
use crate::server::{self, Serve, ServeConfig, Session};
use crate::sink::{Sink, SinkKind};
use crate::soak_load::{self, Counts, Kind, Recorder};

/// Ten minutes of mixed load against one `borcelle serve`, watching its memory.
#[derive(Debug, Parser)]
#[command(name = "soak", version, about, long_about = None)]
pub struct Args {
    /// The `borcelle` binary (a release build).
    #[arg(long, default_value = "target/release/borcelle")]
    borcelle: PathBuf,
    /// PostgreSQL server URL (without a database); the soak uses a fresh database on it.
    #[arg(long, env = "BORCELLE_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Database created (and dropped at the end) for the run.
    #[arg(long, default_value = "borcelle_soak")]
    database: String,
    /// How long the load runs after the warm-up, in seconds.
    #[arg(long, default_value_t = 600)]
    duration_secs: u64,
    /// The shortest warm-up, in seconds; it goes on until the retained events stop growing.
    #[arg(long, default_value_t = 120)]
    warmup_secs: u64,
    /// The longest warm-up, in seconds, whether or not the retained events stopped growing.
    #[arg(long, default_value_t = 600)]
    warmup_max_secs: u64,
    /// How often the server's RSS is sampled.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Requests per second, over all connections (a steady pace, not as fast as possible).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Concurrent connections (spread over the users).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Users, each with their own address book and session.
    #[arg(long, default_value_t = 4)]
    users: usize,
    /// Contacts seeded per user before the run.
    #[arg(long, default_value_t = 5_000)]
    contacts: i64,
    /// The SMTP server messages go to.
    #[arg(long, value_enum, default_value_t = SinkKind::Rust)]
    sink: SinkKind,
    /// Largest growth of the RSS from the end of the warm-up to the end, in percent.
    #[arg(long, default_value_t = 10.0)]
    max_growth_pct: f64,
    /// `serve`'s log.
    #[arg(long, default_value = "target/borcelle-soak-serve.log")]
    serve_log: PathBuf,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    crate::run_to_exit(run(args))
}

/// One RSS sample and the requests of the window it closes.
struct Sample {
    at: Duration,
    rss_kib: u64,
    /// Events the server keeps for replay (`None` when it does not say).
    events_kept: Option<u64>,
    requests: u64,
    errors: u64,
    p99_ms: f64,
}

async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.users > 0 && args.connections > 0 && args.rate > 0, "users, connections and rate must be > 0");
    let load_at_start = probe::load_average();
    let database_url = format!("{}/{}", args.postgres, args.database);
    server::drop_database(&args.postgres, &args.database).await?;
    let emails: Vec<String> = (0..args.users).map(|i| format!("soak{i}@soak.example")).collect();
    for email in &emails {
        server::create_user(&args.borcelle, &database_url, email, "Soak User").await?;
    }
    let db = PgPool::connect(&database_url).await.context("connecting to the soak database")?;
    let postgres_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&db).await?;
    for email in &emails {
        seed::address_book(&db, email, args.contacts).await?;
    }
    seed::analyze(&db).await?;

    let smtp_port = server::free_port()?;
    let sink = Sink::start(args.sink, smtp_port).await?;
    let config = ServeConfig {
        database_url: database_url.clone(),
        port: server::free_port()?,
        smtp_port,
        delivery_concurrency: 16,
        smtp_pool_size: 4,
        log: args.serve_log.clone(),
        dkim: None,
        inbound: None,
    };
    let serve = Serve::start(&args.borcelle, &config).await?;
    println!(
        "==> soak: {} s after a warm-up of {}–{} s (until the retained events stop growing) at {} req/s over {} \
         connections of {} users with {} contacts each; RSS every {} s",
        args.duration_secs,
        args.warmup_secs,
        args.warmup_max_secs,
        args.rate,
        args.connections,
        args.users,
        args.contacts,
        args.sample_secs
    );
    let mut sessions = Vec::new();
    for email in &emails {
        let session = Session::login(serve.addr, email).await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT c.id::text FROM contacts c JOIN users u ON u.id = c.owner_id WHERE u.email = $1 LIMIT 1000",
        )
        .bind(email)
        .fetch_all(&db)
        .await?;
        anyhow::ensure!(!ids.is_empty(), "no contacts seeded for {email}");
        sessions.push((session, Arc::new(ids)));
    }

    let recorder = Arc::new(Recorder::default());
    let stop = Arc::new(AtomicBool::new(false));
    let every = Duration::from_secs_f64(args.connections as f64 / f64::from(args.rate));
    let mut connections = tokio::task::JoinSet::new();
    for id in 0..args.connections {
        let (session, ids) = sessions[id % sessions.len()].clone();
        connections.spawn(soak_load::connection(session, ids, id, every, stop.clone(), recorder.clone()));
    }
    let started = Instant::now();
    let cpu_at_start = probe::process_cpu_secs(serve.pid);
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(args.sample_secs));
    ticks.tick().await;
    println!(
        "\n| time | RSS (MiB) | events kept | requests | errors | p99 (ms) | load (1 min) |\n\
         |---:|---:|---:|---:|---:|---:|---:|"
    );
    let metrics = reqwest::Client::new();
    let metrics_url = format!("http://{}/metrics", serve.ops_addr);
    let (warmup_min, warmup_max) = (Duration::from_secs(args.warmup_secs), Duration::from_secs(args.warmup_max_secs));
    let mut warm_at: Option<Duration> = None;
    loop {
        ticks.tick().await;
        let window = recorder.take_window().await;
        let rss_kib = probe::memory_kib(serve.pid).map_or(0, |(_, rss)| rss);
        let sample = Sample {
            at: started.elapsed(),
            rss_kib,
            events_kept: events_kept(&metrics, &metrics_url).await,
            requests: window.requests(),
            errors: window.errors(),
            p99_ms: window.all().percentile_ms(99.0),
        };
        println!(
            "| {:>4.0} s | {:.1} | {} | {} | {} | {:.1} | {:.2} |",
            sample.at.as_secs_f64(),
            mib(sample.rss_kib),
            kept(sample.events_kept),
            sample.requests,
            sample.errors,
            sample.p99_ms,
            probe::load_average().0
        );
        if warm_at.is_none() && sample.at >= warmup_min {
            // Settled once the count is the same as ten seconds before (or the server keeps none).
            let settled = match (samples.last().and_then(|s: &Sample| s.events_kept), sample.events_kept) {
                (_, None) => true,
                (Some(before), Some(now)) => before == now,
                (None, Some(_)) => false,
            };
            if settled || sample.at >= warmup_max {
                warm_at = Some(sample.at);
                println!("| warm-up over | | | | | | |");
            }
        }
        let done = warm_at.is_some_and(|warm| sample.at >= warm + Duration::from_secs(args.duration_secs));
        samples.push(sample);
        if done {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    while connections.join_next().await.is_some() {}
    let load_secs = started.elapsed().as_secs_f64();
    let serve_cpu_pct = (probe::process_cpu_secs(serve.pid) - cpu_at_start) / load_secs * 100.0;

    let delivery = wait_for_delivery(&db).await?;
    let accepted = sink.accepted();
    serve.stop().await?;
    sink.stop().await;
    db.close().await;
    server::drop_database(&args.postgres, &args.database).await?;

    let mut total = std::mem::take(&mut *recorder.total.lock().await);
    let warm_at = warm_at.unwrap_or(Duration::MAX);
    Ok(verdict(
        &args,
        &samples,
        warm_at,
        &mut total,
        delivery,
        accepted,
        serve_cpu_pct,
        load_at_start,
        &postgres_version,
    ))
}

/// `borcelle_events_retained` from the server's metrics.
async fn events_kept(client: &reqwest::Client, url: &str) -> Option<u64> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix("borcelle_events_retained ")).and_then(|v| v.trim().parse().ok())
}

/// Waits (up to two minutes) until no message is queued, retrying or being sent; `(sent, failed, left)`.
async fn wait_for_delivery(db: &PgPool) -> anyhow::Result<(i64, i64, i64)> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let (sent, failed, left): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status NOT IN ('sent', 'failed'))
             FROM messages",
        )
        .fetch_one(db)
        .await?;
        if left == 0 || Instant::now() >= until {
            return Ok((sent, failed, left));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The events a sample saw kept, or a dash when the server did not say.
fn kept(events: Option<u64>) -> String {
    events.map_or("–".to_owned(), |n| n.to_string())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Least-squares slope of `(seconds, KiB)` points, in KiB per minute.
fn slope_kib_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mean_t, mean_v) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let covariance: f64 = points.iter().map(|(t, v)| (t - mean_t) * (v - mean_v)).sum();
    let variance: f64 = points.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    if variance == 0.0 { 0.0 } else { covariance / variance * 60.0 }
}

/// Prints the per-request table, the memory summary and the verdict; whether the soak passed.
#[allow(clippy::too_many_arguments)]
fn verdict(
    args: &Args,
    samples: &[Sample],
    warm_at: Duration,
    total: &mut Counts,
    (sent, failed, left): (i64, i64, i64),
    accepted: Option<u64>,
    serve_cpu_pct: f64,
    load_at_start: (f64, f64, f64),
    postgres_version: &str,
) -> bool {
    println!("\n| request | share | answers | errors | p50 (ms) | p99 (ms) |\n|---|---:|---:|---:|---:|---:|");
    for (kind, tally) in Kind::ALL.iter().zip(total.per_kind.iter_mut()) {
        let (p50, p99) = (tally.percentile_ms(50.0), tally.percentile_ms(99.0));
        println!(
            "| {} | {} % | {} | {} | {p50:.1} | {p99:.1} |",
            kind.name(),
            kind.weight(),
            tally.ok + tally.errors,
            tally.errors
        );
    }
    for error in &total.first_errors {
        println!("first errors: {error}");
    }
    let warm = samples.iter().find(|s| s.at >= warm_at);
    let (Some(warm), Some(end)) = (warm, samples.last()) else {
        println!("\nFAIL: no sample after the warm-up");
        return false;
    };
    let load_secs = end.at.as_secs_f64().max(1.0);
    let growth_pct = (end.rss_kib as f64 / warm.rss_kib.max(1) as f64 - 1.0) * 100.0;
    let after_warmup: Vec<(f64, f64)> =
        samples.iter().filter(|s| s.at >= warm.at).map(|s| (s.at.as_secs_f64(), s.rss_kib as f64)).collect();
    let slope = slope_kib_per_min(&after_warmup);
    let peak = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let errors = total.errors();
    let load = probe::load_average();
    println!(
        "\n- requests: {} in {load_secs:.0} s ({:.0}/s), **{errors} errors**; serve used {serve_cpu_pct:.0} % of one core",
        total.requests(),
        total.requests() as f64 / load_secs
    );
    println!(
        "- messages: {sent} sent, {failed} failed, {left} not delivered{}",
        accepted.map(|a| format!(" (the sink accepted {a})")).unwrap_or_default()
    );
    println!(
        "- RSS: {:.1} MiB after the warm-up ({:.0} s, {} events kept), {:.1} MiB at the end ({:+.1} %, {} events \
         kept), peak {:.1} MiB; trend after the warm-up {:+.1} KiB/min ({:+.1} % of the warm-up RSS per hour)",
        mib(warm.rss_kib),
        warm.at.as_secs_f64(),
        kept(warm.events_kept),
        mib(end.rss_kib),
        growth_pct,
        kept(end.events_kept),
        mib(peak),
        slope,
        slope * 60.0 / warm.rss_kib.max(1) as f64 * 100.0
    );
    println!(
        "- conditions: {} ({} cores), PostgreSQL {postgres_version} local; load average {:.2} / {:.2} / {:.2} at the \
         start, {:.2} / {:.2} / {:.2} at the end; sink: {}",
        probe::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_at_start.0,
        load_at_start.1,
        load_at_start.2,
        load.0,
        load.1,
        load.2,
        args.sink.describe()
    );
    let delivered = failed == 0 && left == 0 && accepted.is_none_or(|a| a >= sent.unsigned_abs());
    let stable = growth_pct <= args.max_growth_pct;
    let passed = errors == 0 && delivered && stable;
    println!(
        "\n{}: errors {errors} (must be 0), every message delivered: {delivered}, RSS growth {growth_pct:+.1} % \
         (at most {:.0} %)",
        if passed { "PASS" } else { "FAIL" },
        args.max_growth_pct
    );
    passed
}
