//! The figures of a run, printed as a table and written with their conditions into BENCHMARKS-scale.md.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::{Args, TARGET_BYTES_PER_CONNECTION, TARGET_P99};
use crate::probe;

/// Delivery latency of one broadcast (or a set of them) over the connections that should receive it.
#[derive(Debug, Clone)]
pub struct Latency {
    pub expected: usize,
    pub received: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// How long the POST that created the broadcast(s) took to answer.
    pub answered: Duration,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>, expected: usize, answered: Duration) -> Self {
        samples.sort_unstable();
        // Ranks count over the expected arrivals: a missing one is infinitely late, so it is not hidden by a
        // percentile over what did arrive.
        let total = expected.max(samples.len()).max(1);
        let pick = |q: f64| {
            let rank = ((q * total as f64).ceil() as usize).clamp(1, total);
            samples.get(rank - 1).copied().unwrap_or(Duration::MAX)
        };
        let (p50, p90, p99) = (pick(0.5), pick(0.9), pick(0.99));
        Self { expected, received: samples.len(), p50, p90, p99, max: pick(1.0), answered }
    }

    pub fn all_received(&self) -> bool {
        self.received >= self.expected
    }

    pub fn line(&self) -> String {
        format!(
            "{} of {} received; p50 {} p90 {} p99 {} max {} (POST answered in {})",
            self.received,
            self.expected,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            ms(self.answered)
        )
    }
}

fn ms(d: Duration) -> String {
    if d == Duration::MAX { "—".to_owned() } else { format!("{:.0} ms", d.as_secs_f64() * 1000.0) }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// What the slow-consumer drill saw.
#[derive(Debug, Clone)]
pub struct SlowDrill {
    pub slow_clients: usize,
    pub watchers: usize,
    pub bystanders: usize,
    pub broadcasts: usize,
    pub message_bytes: usize,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_after_kib: u64,
    pub dropped_by_server: usize,
    pub slow_closed: usize,
    pub slow_received: usize,
    pub watcher_latency: Latency,
    pub normal_dropped: usize,
    pub normal_opened: usize,
    pub after: Latency,
}

impl SlowDrill {
    pub fn passed(&self) -> bool {
        self.dropped_by_server >= self.slow_clients
            && self.slow_closed == self.slow_clients
            && self.watcher_latency.all_received()
            && self.normal_dropped == 0
            && self.after.all_received()
    }
}

pub struct Report {
    pub connections: usize,
    pub users: usize,
    pub parallel: usize,
    pub source_ips: u8,
    pub opened: usize,
    pub open_failures: usize,
    pub open_secs: f64,
    pub server_connections: usize,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_after_broadcasts_kib: u64,
    pub rounds: Vec<Latency>,
    pub dropped_during_fanout: usize,
    pub slow: Option<SlowDrill>,
    pub load: ((f64, f64, f64), (f64, f64, f64)),
}

impl Report {
    pub fn new(args: &Args, users: usize) -> Self {
        Self {
            connections: args.connections,
            users,
            parallel: args.parallel,
            source_ips: args.source_ips,
            opened: 0,
            open_failures: 0,
            open_secs: 0.0,
            server_connections: 0,
            rss_before_kib: 0,
            rss_idle_kib: 0,
            rss_after_broadcasts_kib: 0,
            rounds: Vec::new(),
            dropped_during_fanout: 0,
            slow: None,
            load: ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        }
    }

    pub fn bytes_per_connection(&self) -> f64 {
        (self.rss_idle_kib.saturating_sub(self.rss_before_kib) * 1024) as f64 / self.opened.max(1) as f64
    }

    /// Every delivery of every measured broadcast, as one distribution is not kept: the worst round counts.
    fn worst(&self) -> Option<&Latency> {
        self.rounds.iter().max_by_key(|r| r.p99)
    }

    pub fn checks(&self) -> Vec<(String, bool)> {
        let mut checks = vec![
            (format!("{} connections open", self.connections), self.opened == self.connections),
            (
                format!("every broadcast reached every connection with p99 < {} ms", TARGET_P99.as_millis()),
                !self.rounds.is_empty() && self.rounds.iter().all(|r| r.all_received() && r.p99 < TARGET_P99),
            ),
            (
                format!("memory per idle connection < {:.0} KiB", TARGET_BYTES_PER_CONNECTION / 1024.0),
                self.bytes_per_connection() < TARGET_BYTES_PER_CONNECTION,
            ),
        ];
        if let Some(slow) = &self.slow {
            checks.push((
                "slow consumers: all dropped, their users' other tabs and bystanders got every broadcast".to_owned(),
                slow.passed(),
            ));
        }
        checks
    }

    pub fn passed(&self) -> bool {
        self.checks().iter().all(|(_, ok)| *ok)
    }

    /// The section, from its heading on.
    pub async fn markdown(&self) -> String {
        let mut out = String::new();
        let commit = crate::fanout::report::git(&["rev-parse", "--short", "HEAD"]).await.unwrap_or_default();
        let dirty = crate::fanout::report::git(&["status", "--porcelain", "--untracked-files=no"])
            .await
            .is_some_and(|s| s.lines().any(|l| !l.ends_with(".md")));
        let rustc = output_of("rustc", &["--version"]).await.unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = |(a, b, c): (f64, f64, f64)| format!("{a:.2} / {b:.2} / {c:.2}");
        let _ = writeln!(out, "## WebSocket fan-out\n");
        let _ = writeln!(
            out,
            "Written by `scripts/bench-ws` (`bench/src/bin/ws-fanout.rs`). One release `borcelle serve` process, \
             in-process events (no Redis), on a fresh database; users and sessions seeded in SQL; the load tool runs \
             on the same machine and holds the client side of every socket.\n"
        );
        let _ = writeln!(out, "| condition | value |\n|---|---|");
        let rows = [
            ("date", crate::conditions::now()),
            ("commit", if dirty { format!("{commit} (with uncommitted changes)") } else { commit }),
            ("CPU", format!("{} × {cores} cores", probe::cpu_model())),
            (
                "load average (1 / 5 / 15 min)",
                format!("{} at the start, {} at the end (the machine is shared)", load(self.load.0), load(self.load.1)),
            ),
            ("build", format!("release profile, {rustc}")),
            (
                "connections",
                format!(
                    "{} WebSockets of {} users (round-robin), from {} loopback addresses, {} handshakes in flight",
                    self.connections, self.users, self.source_ips, self.parallel
                ),
            ),
            (
                "latency",
                "from just before `POST /api/v1/admin/broadcasts` (audience all: one notification row per user, then \
                 one event) to the event read by each client"
                    .to_owned(),
            ),
            (
                "memory per idle connection",
                "(serve RSS with all connections open and idle 5 s − RSS after one warm-up connection) / connections"
                    .to_owned(),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        let _ = writeln!(out, "\n| figure | value |\n|---|---|");
        let _ = writeln!(
            out,
            "| connections open (server's count) | {} of {} ({}; {} failed) in {:.1} s |",
            self.opened, self.connections, self.server_connections, self.open_failures, self.open_secs
        );
        let _ = writeln!(
            out,
            "| serve RSS: before → idle with all open → after the broadcasts | {} → {} → {} |",
            mib(self.rss_before_kib),
            mib(self.rss_idle_kib),
            mib(self.rss_after_broadcasts_kib)
        );
        let _ = writeln!(
            out,
            "| memory per idle connection | **{:.1} KiB** (target < 16 KiB) |",
            self.bytes_per_connection() / 1024.0
        );
        for (i, round) in self.rounds.iter().enumerate() {
            let _ = writeln!(out, "| broadcast {} | {} |", i + 1, round.line());
        }
        if let Some(worst) = self.worst() {
            let _ = writeln!(
                out,
                "| worst broadcast p99 | **{}** (target < {} ms) |",
                ms(worst.p99),
                TARGET_P99.as_millis()
            );
        }
        let _ = writeln!(out, "| connections dropped during the fan-out | {} |", self.dropped_during_fanout);
        if let Some(slow) = &self.slow {
            let _ = writeln!(out, "\n### Slow consumers\n");
            let _ = writeln!(
                out,
                "{} clients that never read (receive buffer 4 KiB) next to a normal tab of each of their users and {} \
                 bystanders of other users; {} broadcasts of {} bytes to those users (every one of them a message for \
                 each slow client), then one broadcast to all.\n",
                slow.slow_clients, slow.bystanders, slow.broadcasts, slow.message_bytes
            );
            let _ = writeln!(out, "| figure | value |\n|---|---|");
            let _ = writeln!(
                out,
                "| serve RSS: before → peak → after | {} → {} → {} |",
                mib(slow.rss_before_kib),
                mib(slow.rss_peak_kib),
                mib(slow.rss_after_kib)
            );
            let _ = writeln!(
                out,
                "| slow clients dropped by the server (`borcelle_websocket_ends_total{{reason=\"slow\"}}`) | {} of {} |",
                slow.dropped_by_server, slow.slow_clients
            );
            let _ = writeln!(
                out,
                "| slow clients that found their connection closed | {} of {} (they had been given {} messages in all before) |",
                slow.slow_closed, slow.slow_clients, slow.slow_received
            );
            let _ = writeln!(out, "| their users' normal tabs ({}) | {} |", slow.watchers, slow.watcher_latency.line());
            let _ = writeln!(out, "| normal connections dropped | {} of {} |", slow.normal_dropped, slow.normal_opened);
            let _ = writeln!(out, "| the broadcast to all afterwards | {} |", slow.after.line());
        }
        let _ = writeln!(out, "\n| check | result |\n|---|---|");
        for (check, ok) in self.checks() {
            let _ = writeln!(out, "| {check} | {} |", if ok { "pass" } else { "**FAIL**" });
        }
        out
    }
}

async fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new(program).args(args).output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub async fn git(args: &[&str]) -> Option<String> {
    output_of("git", args).await
}

/// Replaces the "WebSocket fan-out" section of `path` (up to the next `## ` heading), or appends it; creates the
/// file with a title when it does not exist. Other sections are left as they are.
pub fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    const HEADING: &str = "## WebSocket fan-out";
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Scale benchmarks\n\nFigures at scale for issue #7, each section written by the command it names.\n\n"
            .to_owned()
    });
    let updated = match existing.find(HEADING) {
        Some(start) => {
            let rest = &existing[start + HEADING.len()..];
            let end = rest.find("\n## ").map_or(existing.len(), |i| start + HEADING.len() + i + 1);
            format!("{}{section}\n{}", &existing[..start], &existing[end..])
        }
        None => format!("{}\n{section}", existing.trim_end().to_owned() + "\n"),
    };
    std::fs::write(path, updated)
}
