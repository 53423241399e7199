//! `ws-fanout`: WebSocket fan-out at scale against one release `borcelle serve`, and the slow-consumer drill.
//!
//! 1. Starts `serve` (in-process events) on a fresh database and seeds users, one session per connection and an
//!    administrator's API token straight into it.
//! 2. Opens N authenticated `/ws` connections (each waits for its snapshot) and measures the server's memory per
//!    idle connection: (RSS with N idle connections − RSS before any) / N.
//! 3. Triggers admin broadcasts (`POST /api/v1/admin/broadcasts`, audience all) and measures, for every
//!    connection, the time from the request to the broadcast's arrival: p50 / p90 / p99 / max and how many arrived.
//! 4. Slow consumers: closes the fleet, opens clients that never read next to normal tabs of the same users and
//!    bystanders, sends large broadcasts to those users, and reports the server's RSS (before, peak, after),
//!    whether every slow client was dropped and whether every normal tab got every broadcast.
//!
//! Prints a table and writes it with the conditions into the "WebSocket fan-out" section of BENCHMARKS-scale.md.

mod clients;
mod report;
mod seed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::probe;
use crate::server::{self, Serve, ServeConfig};
use clients::Seen;
pub use report::{Latency, write_section};

/// WebSocket fan-out benchmark and slow-consumer drill of `borcelle serve` (release build).
#[derive(Debug, Parser)]
#[command(name = "ws-fanout", about, long_about = None)]
pub struct Args {
    /// The `borcelle` binary to run (a release build).
    #[arg(long, default_value = "target/release/borcelle")]
    pub borcelle: PathBuf,
    /// PostgreSQL server the benchmark database is created on (URL without a database).
    #[arg(long, env = "BORCELLE_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// Concurrent WebSocket connections.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Users the connections belong to (round-robin); 0 means one user per connection.
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// Measured broadcasts to every connection.
    #[arg(long, default_value_t = 5)]
    pub broadcasts: usize,
    /// Handshakes in flight at once while opening the connections.
    #[arg(long, default_value_t = 128)]
    pub parallel: usize,
    /// Source addresses 127.0.0.1 … 127.0.0.N the connections come from.
    #[arg(long, default_value_t = 4)]
    pub source_ips: u8,
    /// Slow-consumer drill: clients that never read (0 skips the drill).
    #[arg(long, default_value_t = 20)]
    pub slow_clients: usize,
    /// Slow-consumer drill: normal connections of other users that must stay unaffected.
    #[arg(long, default_value_t = 200)]
    pub bystanders: usize,
    /// Slow-consumer drill: broadcasts of about 9 KB sent to the slow clients' users.
    #[arg(long, default_value_t = 600)]
    pub slow_broadcasts: usize,
    /// Where the server's log goes.
    #[arg(long, default_value = "target/ws-fanout-serve.log")]
    pub serve_log: PathBuf,
    /// The file whose "WebSocket fan-out" section receives the results.
    #[arg(long, default_value = "BENCHMARKS-scale.md")]
    pub output: PathBuf,
}

/// Targets of issue #7.
pub const TARGET_P99: Duration = Duration::from_secs(1);
pub const TARGET_BYTES_PER_CONNECTION: f64 = 16.0 * 1024.0;

fn rss_kib(pid: u32) -> u64 {
    probe::memory_kib(pid).map_or(0, |(_, rss)| rss)
}

/// The soft limit on open files of this process (the server inherits it).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// One value of the server's Prometheus metrics (the first line starting with `name`).
async fn metric(http: &reqwest::Client, addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("http://{addr}/metrics")).send().await?.text().await?;
    Ok(text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0))
}

struct Admin {
    http: reqwest::Client,
    addr: SocketAddr,
    token: String,
}

impl Admin {
    /// Creates a broadcast to send now; the audience is everyone or these users.
    async fn broadcast(&self, title: &str, message: &str, users: Option<&[String]>) -> anyhow::Result<()> {
        let audience = match users {
            None => json!({ "group": "all" }),
            Some(emails) => json!({ "group": "users", "users": emails }),
        };
        let body = json!({ "name": title, "spec": { "title": title, "message": message, "audience": audience } });
        let response = self
            .http
            .post(format!("http://{}/api/v1/admin/broadcasts", self.addr))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("creating broadcast {title}: {} {}", response.status(), response.text().await.unwrap_or_default());
        }
        Ok(())
    }
}

/// Waits for `expected` arrivals of the broadcast `title` (others are ignored), up to `within`.
async fn arrivals(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    title: &str,
    expected: usize,
    within: Duration,
) -> Vec<Instant> {
    let deadline = tokio::time::Instant::now() + within;
    let mut at = Vec::with_capacity(expected);
    while at.len() < expected {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(s)) if s.title == title => at.push(s.at),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    at
}

pub async fn run(args: Args) -> anyhow::Result<report::Report> {
    let users = if args.users == 0 { args.connections } else { args.users };
    let needed = (args.connections + args.slow_clients + args.bystanders) as u64 + 500;
    if let Some(limit) = open_files_limit()
        && limit < needed
    {
        bail!("the open-files limit is {limit}; {needed} are needed: raise it (ulimit -n) and run again");
    }
    let load_at_start = probe::load_average();
    let database = format!("borcelle_wsfanout_{}", std::process::id());
    server::drop_database(&args.postgres, &database).await?;
    let config = ServeConfig {
        database_url: format!("{}/{database}", args.postgres),
        port: server::free_port()?,
        smtp_port: server::free_port()?,
        delivery_concurrency: 16,
        smtp_pool_size: 4,
        log: args.serve_log.clone(),
        dkim: None,
        inbound: None,
    };
    println!("==> starting borcelle serve on a fresh database {database}");
    let serve = Serve::start(&args.borcelle, &config).await?;
    let result = measure(&args, users, &serve, &config.database_url).await;
    serve.stop().await?;
    server::drop_database(&args.postgres, &database).await?;
    let mut report = result?;
    report.load = (load_at_start, probe::load_average());
    Ok(report)
}

async fn measure(args: &Args, users: usize, serve: &Serve, database_url: &str) -> anyhow::Result<report::Report> {
    let db = sqlx::PgPool::connect(database_url).await.context("connecting to the benchmark database")?;
    let sessions = args.connections + args.slow_clients + args.bystanders;
    println!("==> seeding {users} users and {sessions} sessions");
    let seeded = seed::seed(&db, users.max(args.slow_clients + args.bystanders), sessions).await?;
    db.close().await;
    let http = reqwest::Client::new();
    let admin = Admin { http: http.clone(), addr: serve.addr, token: seeded.admin_token.clone() };
    let mut report = report::Report::new(args, users);

    // Warm the server (allocator, pools, session lookup) with one connection, then measure from there.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let warm_stop = CancellationToken::new();
    clients::open_fleet(serve.addr, &seeded.session_tokens[..1], 1, 1, seen_tx.clone(), warm_stop.clone()).await;
    warm_stop.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_kib(serve.pid);

    println!("==> opening {} WebSocket connections", args.connections);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let tokens = &seeded.session_tokens[..args.connections];
    let fleet =
        clients::open_fleet(serve.addr, tokens, args.source_ips, args.parallel, seen_tx.clone(), stop.clone()).await;
    report.open_secs = started.elapsed().as_secs_f64();
    report.opened = fleet.opened;
    report.open_failures = fleet.failures.len();
    if let Some(first) = fleet.failures.first() {
        println!("    first failure: {first}");
    }
    // Let the connection storm's transient buffers go back before reading the idle figure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_idle = rss_kib(serve.pid);
    report.server_connections = metric(&http, serve.ops_addr, "borcelle_websocket_connections").await? as usize;
    report.rss_before_kib = rss_before;
    report.rss_idle_kib = rss_idle;
    println!("    {} open in {:.1} s; serve RSS {} → {} KiB", fleet.opened, report.open_secs, rss_before, rss_idle);

    for round in 1..=args.broadcasts {
        let title = format!("fanout-{round}");
        let expected = fleet.opened - fleet.ended.load(std::sync::atomic::Ordering::Relaxed);
        let sent = Instant::now();
        admin.broadcast(&title, "A broadcast to every connected session.", None).await?;
        let answered = sent.elapsed();
        let at = arrivals(&mut seen, &title, expected, Duration::from_secs(30)).await;
        let latency = Latency::of(at.iter().map(|t| t.duration_since(sent)).collect(), expected, answered);
        println!("    broadcast {round}: {}", latency.line());
        report.rounds.push(latency);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    report.rss_after_broadcasts_kib = rss_kib(serve.pid);
    report.dropped_during_fanout = fleet.ended.load(std::sync::atomic::Ordering::Relaxed);
    stop.cancel();

    if args.slow_clients > 0 {
        slow_consumers(args, serve, &admin, &http, &seeded, &mut report).await?;
    }
    Ok(report)
}

/// The drill: slow clients of K users next to a normal tab of each of those users and bystanders of other users.
async fn slow_consumers(
    args: &Args,
    serve: &Serve,
    admin: &Admin,
    http: &reqwest::Client,
    seeded: &seed::Seeded,
    report: &mut report::Report,
) -> anyhow::Result<()> {
    let k = args.slow_clients;
    println!(
        "==> slow consumers: {k} clients that never read, {k} normal tabs of the same users, {} bystanders",
        args.bystanders
    );
    // Wait for the fleet's sockets to be gone from the server.
    for _ in 0..100 {
        if metric(http, serve.ops_addr, "borcelle_websocket_connections").await? < 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sessions 0..k are normal tabs of users 0..k; sessions N..N+k slow clients of the same users (users are
    // assigned round-robin and N is a multiple of nothing in particular: the slow ones are the extra sessions).
    let base = args.connections;
    let slow_tokens = &seeded.session_tokens[base..base + k];
    let slow_users: Vec<String> = seeded.session_users[base..base + k].to_vec();
    let mut normal_tokens: Vec<String> = Vec::new();
    // A normal tab for each slow user: the first session of that user.
    let mut first_session: HashMap<&str, usize> = HashMap::new();
    for (i, user) in seeded.session_users.iter().enumerate().take(base) {
        first_session.entry(user.as_str()).or_insert(i);
    }
    for user in &slow_users {
        match first_session.get(user.as_str()) {
            Some(&i) => normal_tokens.push(seeded.session_tokens[i].clone()),
            None => bail!("no normal session for {user}"),
        }
    }
    let watchers = normal_tokens.len();
    normal_tokens.extend(seeded.session_tokens[base + k..base + k + args.bystanders].iter().cloned());

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let fleet =
        clients::open_fleet(serve.addr, &normal_tokens, args.source_ips, args.parallel, seen_tx, stop.clone()).await;
    let mut slow = Vec::new();
    for (i, token) in slow_tokens.iter().enumerate() {
        slow.push(clients::open_slow(serve.addr, token, i, args.source_ips).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = rss_kib(serve.pid);
    let dropped_before = metric(http, serve.ops_addr, "borcelle_websocket_ends_total{reason=\"slow\"}").await?;

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let sampling = CancellationToken::new();
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), serve.pid);
        tokio::spawn(async move {
            while sampling.run_until_cancelled(tokio::time::sleep(Duration::from_millis(100))).await.is_some() {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let message = "slow consumer drill ".repeat(450); // 9,000 characters
    let started = Instant::now();
    let mut sent_at = HashMap::new();
    for round in 1..=args.slow_broadcasts {
        let title = format!("slow-{round}");
        sent_at.insert(title.clone(), Instant::now());
        admin.broadcast(&title, &message, Some(&slow_users)).await?;
    }
    let posted = started.elapsed();
    // Every normal tab of those users must get every one of them.
    let expected = watchers * args.slow_broadcasts;
    let mut latencies = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while latencies.len() < expected {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(s)) => {
                if let Some(sent) = sent_at.get(&s.title) {
                    latencies.push(s.at.duration_since(*sent));
                }
            }
            _ => break,
        }
    }
    let watcher_latency = Latency::of(latencies, expected, posted);
    // The server drops a client whose send has not finished within its timeout (10 s).
    let mut dropped = 0.0;
    for _ in 0..300 {
        dropped =
            metric(http, serve.ops_addr, "borcelle_websocket_ends_total{reason=\"slow\"}").await? - dropped_before;
        if dropped >= k as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sampling.cancel();
    let _ = sampler.await;
    // Everyone still connected gets one more broadcast to all.
    let still = fleet.opened - fleet.ended.load(std::sync::atomic::Ordering::Relaxed);
    let sent = Instant::now();
    admin.broadcast("after-slow", "Everyone still connected gets this.", None).await?;
    let answered = sent.elapsed();
    let at = arrivals(&mut seen, "after-slow", still, Duration::from_secs(30)).await;
    let after = Latency::of(at.iter().map(|t| t.duration_since(sent)).collect(), still, answered);
    let mut slow_closed = 0;
    let mut slow_received = 0;
    for socket in slow {
        let (closed, received) = clients::drain(socket).await;
        slow_closed += usize::from(closed);
        slow_received += received;
    }
    report.slow = Some(report::SlowDrill {
        slow_clients: k,
        watchers,
        bystanders: args.bystanders,
        broadcasts: args.slow_broadcasts,
        message_bytes: message.len(),
        rss_before_kib: rss_before,
        rss_peak_kib: peak.load(std::sync::atomic::Ordering::Relaxed),
        rss_after_kib: rss_kib(serve.pid),
        dropped_by_server: dropped as usize,
        slow_closed,
        slow_received,
        watcher_latency,
        normal_dropped: fleet.ended.load(std::sync::atomic::Ordering::Relaxed),
        normal_opened: fleet.opened,
        after,
    });
    stop.cancel();
    Ok(())
}
