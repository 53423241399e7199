//! What the controllers benchmark measures (memory and CPU from `/proc`, the mock server's call
//! counts) and the tables it prints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Settings;

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    /// From a `/proc/<pid>/status` file.
    pub fn of(path: &str) -> Self {
        let status = std::fs::read_to_string(path).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse().ok())
                .unwrap_or(0)
        };
        Memory { rss_kib: field("VmRSS:"), peak_kib: field("VmHWM:") }
    }

    pub fn own() -> Self {
        Memory::of("/proc/self/status")
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// This process's CPU time (user + system), from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// This process's open file descriptors (its sockets to the API server, mostly).
pub fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// The operator's process at one point.
#[derive(Debug)]
pub struct Sample {
    label: String,
    at: Duration,
    reconciles: u64,
    memory: Memory,
    cpu: Duration,
    files: usize,
}

impl Sample {
    pub fn now(label: &str, at: Duration, reconciles: u64) -> Self {
        Sample { label: label.to_owned(), at, reconciles, memory: Memory::own(), cpu: cpu(), files: open_files() }
    }
}

/// The mock API server's counts at one point.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    pub calls: BTreeMap<String, u64>,
    pub objects: BTreeMap<String, u64>,
    pub due: u64,
}

impl Calls {
    fn get(&self, key: &str) -> u64 {
        self.calls.get(key).copied().unwrap_or(0)
    }

    fn sum(&self, keys: &[&str]) -> u64 {
        keys.iter().map(|k| self.get(k)).sum()
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub api_server_pid: u32,
    /// How long the mock server took to build its objects.
    pub seeded: Duration,
    pub samples: Vec<Sample>,
    /// Reconciles done, and the calls made, when the reminders' Job cache was seen to hold its
    /// first full list (polled every 5 ms; `None` when readiness came first).
    pub jobs_synced: Option<(u64, Calls)>,
    pub at_sync: Calls,
    pub at_settle: Calls,
    pub at_steady_end: Calls,
    pub at_end: Calls,
    /// Jobs in the owner-indexed caches at the end (reminders, broadcasts).
    pub jobs_cached: [usize; 2],
    pub reported_runs: usize,
    pub backoffs: usize,
    pub failed_reconciles: u64,
    pub stop_took: Duration,
    pub api_server: Memory,
    /// The most file descriptors seen open (polled while syncing and settling).
    pub peak_files: usize,
}

const LISTED: [&str; 3] = ["list jobs", "list scheduledreminders", "list broadcasts"];
const WATCHED: [&str; 3] = ["watch jobs", "watch scheduledreminders", "watch broadcasts"];
/// 100 MB, in KiB.
const TARGET_KIB: u64 = 100_000_000 / 1024;

impl Report {
    pub fn print(&self, settings: &Settings) {
        let n = settings.objects;
        let end = &self.at_end;
        let peak = self.samples.iter().map(|s| s.memory.peak_kib).max().unwrap_or(0);
        println!();
        println!(
            "controllers benchmark: {n} ScheduledReminders in {} namespaces ({} due at 09:00:30) with {} finished Jobs; no Broadcasts",
            super::objects::NAMESPACES,
            end.due,
            n
        );
        println!(
            "mock API server: child process {} over {}, seeded in {:.1} s; lists in the pages asked for; watches closed after at most {} s, bookmarks every 15 s",
            self.api_server_pid,
            if settings.tls { "HTTPS" } else { "plain HTTP" },
            self.seeded.as_secs_f64(),
            settings.watch_max.as_secs()
        );
        println!();
        println!("| phase (operator process) | at | reconciles | RSS | peak RSS (VmHWM) | CPU | open fds |");
        println!("|---|---|---|---|---|---|---|");
        for s in &self.samples {
            println!(
                "| {} | {:.1} s | {} | {:.1} MiB | {:.1} MiB | {:.2} s | {} |",
                s.label,
                s.at.as_secs_f64(),
                s.reconciles,
                mib(s.memory.rss_kib),
                mib(s.memory.peak_kib),
                s.cpu.as_secs_f64(),
                s.files
            );
        }
        println!("most open file descriptors seen (sockets to the API server, mostly): {}", self.peak_files);
        println!();
        self.print_calls();
        println!();
        self.print_summary(settings, peak);
    }

    fn print_calls(&self) {
        let phases = [&self.at_sync, &self.at_settle, &self.at_steady_end, &self.at_end];
        let keys: BTreeSet<&String> = phases.iter().flat_map(|c| c.calls.keys()).collect();
        println!("| API call (or mock-server count) | until synced | initial reconciles | steady | stopping | total |");
        println!("|---|---|---|---|---|---|");
        for key in keys {
            let at: Vec<u64> = phases.iter().map(|c| c.get(key)).collect();
            let highlight = if LISTED.contains(&key.as_str()) && at[3] > at[0] { " ⚠" } else { "" };
            println!(
                "| {key}{highlight} | {} | {} | {} | {} | {} |",
                at[0],
                at[1] - at[0],
                at[2] - at[1],
                at[3] - at[2],
                at[3]
            );
        }
    }

    fn print_summary(&self, settings: &Settings, peak: u64) {
        let (sync, end) = (&self.at_sync, &self.at_end);
        let lists_after_sync = end.sum(&LISTED) - sync.sum(&LISTED);
        let watches_after_sync = end.sum(&WATCHED) - sync.sum(&WATCHED);
        let gone: u64 = end.calls.iter().filter(|(k, _)| k.contains("410")).map(|(_, n)| n).sum();
        // A 410 Gone makes a watcher relist (its pages): that is not a list per reconcile.
        let relist_pages = gone * (settings.objects as u64).div_ceil(500).max(1);
        let reconciles = self.samples.last().map_or(0, |s| s.reconciles);
        let patches = end.get("patch scheduledreminders/status") + end.get("patch broadcasts/status");
        let conflicts = end.get("patch scheduledreminders/status → 409") + end.get("patch broadcasts/status → 409");
        let duplicates = end.get("create jobs → 409");
        println!("reconciles: {reconciles} ({} failed)", self.failed_reconciles);
        if let Some((done, calls)) = &self.jobs_synced {
            println!(
                "by the time the reminders' Job cache held its first full list (polled every 5 ms): {done} reconciles done, {} Jobs created, {} status patches",
                calls.get("create jobs"),
                calls.get("patch scheduledreminders/status")
            );
        }
        println!(
            "Jobs created: {} for {} due occurrences ({duplicates} refused as existing); Jobs deleted (history): {}",
            end.get("create jobs") - duplicates,
            end.due,
            end.get("delete jobs")
        );
        println!(
            "status patches: {patches}, of which {conflicts} refused with 409 (stale resourceVersion) and retried; {} wrote a status.active without a Job that still ran",
            end.get("status writes that dropped a running Job from status.active")
        );
        println!(
            "pod lists (one per finished Job, to read its worker's report): {}; events posted: {}",
            end.get("list pods"),
            end.get("create events")
        );
        println!(
            "after the initial sync: {lists_after_sync} lists of jobs/reminders/broadcasts, {watches_after_sync} watch restarts, {gone} watches ended 410 Gone"
        );
        println!(
            "at the end the operator held: {} Jobs in the reminders' cache, {} in the broadcasts', {} reported runs, {} backoffs; stopping took {:.1} s",
            self.jobs_cached[0],
            self.jobs_cached[1],
            self.reported_runs,
            self.backoffs,
            self.stop_took.as_secs_f64()
        );
        println!(
            "mock API server (another process, for information): RSS {:.1} MiB, peak {:.1} MiB",
            mib(self.api_server.rss_kib),
            mib(self.api_server.peak_kib)
        );
        let stored: Vec<String> = end.objects.iter().map(|(r, n)| format!("{n} {r}")).collect();
        println!("the mock API server stores at the end: {}", stored.join(", "));
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "operator peak RSS {:.1} MiB ({:.1} MB): target < 100 MB: {}",
            mib(peak),
            peak as f64 * 1024.0 / 1e6,
            met(peak < TARGET_KIB)
        );
        println!("lists per reconcile: 0 {}", met(lists_after_sync <= relist_pages));
    }
}
