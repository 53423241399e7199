//! What the machine and the server process are doing, read from `/proc`: memory (VmRSS, VmHWM),
//! CPU time, load average, and the CPU model; and PostgreSQL's counters of the benchmark database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Clock ticks per second of the times in `/proc/*/stat` (USER_HZ: 100 on Linux/x86-64).
const USER_HZ: f64 = 100.0;
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// `(VmHWM, VmRSS)` of a process in KiB.
pub fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Samples a process's resident memory until stopped, remembering the highest value overall and
/// since the last [`RssMonitor::take_phase_peak`].
pub struct RssMonitor {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    phase_peak_kib: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl RssMonitor {
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let phase_peak_kib = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (peak, phase, token) = (peak_kib.clone(), phase_peak_kib.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = every.tick() => {}
                }
                let Some((_, rss)) = memory_kib(pid) else { return };
                peak.fetch_max(rss, Ordering::Relaxed);
                phase.fetch_max(rss, Ordering::Relaxed);
            }
        });
        Self { pid, peak_kib, phase_peak_kib, stop }
    }

    /// The highest sampled RSS since the previous call, in KiB; starts a new phase.
    pub fn take_phase_peak(&self) -> u64 {
        let now = memory_kib(self.pid).map_or(0, |(_, rss)| rss);
        self.phase_peak_kib.swap(now, Ordering::Relaxed).max(now)
    }

    /// The kernel's high-water mark (VmHWM) and the highest sampled RSS, in KiB.
    pub fn peak(&self) -> (u64, u64) {
        let hwm = memory_kib(self.pid).map_or(0, |(hwm, _)| hwm);
        (hwm, self.peak_kib.load(Ordering::Relaxed))
    }
}

impl Drop for RssMonitor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// User + system CPU seconds a process has used.
pub fn process_cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / USER_HZ
}

/// Busy and total jiffies of all CPUs together.
fn machine_jiffies() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return (0, 0) };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0, 0) };
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> (f64, f64, f64) {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    (values.next().unwrap_or(0.0), values.next().unwrap_or(0.0), values.next().unwrap_or(0.0))
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// CPU seconds of each PostgreSQL backend serving `database` (its command line reads
/// `postgres: <cluster>: <user> <database> <client> <activity>`).
fn backend_cpu_secs(database: &str) -> HashMap<u32, f64> {
    let needle = format!(" {database} ");
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
                .is_ok_and(|cmdline| cmdline.starts_with("postgres: ") && cmdline.contains(&needle))
        })
        .map(|pid| (pid, process_cpu_secs(pid)))
        .collect()
}

/// CPU use over one phase, in % of one core (100 % = one core busy) except `machine_pct`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server_pct: f64,
    /// The PostgreSQL backends of the benchmark database.
    pub postgres_pct: f64,
    /// The benchmark process itself (load generator, and the Rust sink when it runs).
    pub client_pct: f64,
    /// Busy time of all cores over their total (100 % = every core busy), whoever used it.
    pub machine_pct: f64,
    pub load_at_start: f64,
}

/// Starts measuring CPU use for a phase; [`CpuMeter::finish`] ends it.
pub struct CpuMeter {
    pid: u32,
    database: String,
    started: Instant,
    server_secs: f64,
    client_secs: f64,
    backends: HashMap<u32, f64>,
    machine: (u64, u64),
    load: f64,
}

impl CpuMeter {
    pub fn start(pid: u32, database: &str) -> Self {
        Self {
            pid,
            database: database.to_owned(),
            started: Instant::now(),
            server_secs: process_cpu_secs(pid),
            client_secs: process_cpu_secs(std::process::id()),
            backends: backend_cpu_secs(database),
            machine: machine_jiffies(),
            load: load_average().0,
        }
    }

    pub fn finish(self) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64().max(1e-6);
        let (busy, total) = machine_jiffies();
        let (busy0, total0) = self.machine;
        let machine_pct = if total > total0 { 100.0 * (busy - busy0) as f64 / (total - total0) as f64 } else { 0.0 };
        let postgres: f64 = backend_cpu_secs(&self.database)
            .into_iter()
            .map(|(pid, now)| now - self.backends.get(&pid).copied().unwrap_or(0.0))
            .sum();
        CpuUse {
            server_pct: 100.0 * (process_cpu_secs(self.pid) - self.server_secs) / wall,
            postgres_pct: 100.0 * postgres / wall,
            client_pct: 100.0 * (process_cpu_secs(std::process::id()) - self.client_secs) / wall,
            machine_pct,
            load_at_start: self.load,
        }
    }
}

/// Counters of the benchmark database that tell how much SQL a request costs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbCounters {
    /// Committed and rolled-back transactions (each statement outside a transaction is one).
    pub transactions: i64,
    /// Scans of `sessions` (each session lookup is one).
    pub session_scans: i64,
    /// Rows of `sessions` updated (each touch is one).
    pub session_updates: i64,
}

impl DbCounters {
    /// Reads the counters after waiting for the backends to report theirs (PostgreSQL's backends
    /// flush their statistics at most once a second, and within a second of going idle).
    pub async fn read(db: &sqlx::PgPool) -> sqlx::Result<Self> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (transactions, session_scans, session_updates): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()),
                    coalesce((SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'sessions'), 0),
                    coalesce((SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'sessions'), 0)",
        )
        .fetch_one(db)
        .await?;
        Ok(Self { transactions, session_scans, session_updates })
    }

    /// What happened between `self` and `later`, per request (the read itself is one transaction).
    pub fn per_request(&self, later: &Self, requests: u64) -> String {
        let per = |d: i64| d as f64 / requests.max(1) as f64;
        format!(
            "{:.2} transactions, {:.3} session lookups, {:.4} session touches per request ({requests} requests)",
            per(later.transactions - self.transactions - 1),
            per(later.session_scans - self.session_scans),
            per(later.session_updates - self.session_updates)
        )
    }
}
