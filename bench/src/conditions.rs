//! The conditions a run measured under, written next to its figures.

use tokio::process::Command;

use crate::probe;

async fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn memory_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_owned()))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(|| "unknown".to_owned(), |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
}

/// When a report is written, as every report prints it.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The CPU model and the cores the run had.
pub fn cpu() -> String {
    format!(
        "{} × {} cores",
        crate::probe::cpu_model(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    )
}

/// The commit measured, and whether the tree had changes besides the reports.
pub async fn commit() -> String {
    match output_of("git", &["rev-parse", "--short", "HEAD"]).await {
        Some(hash) => {
            let dirty = output_of("git", &["status", "--porcelain", "--untracked-files=no"])
                .await
                .is_some_and(|s| s.lines().any(|l| !l.ends_with("BENCHMARKS.md")));
            if dirty { format!("{hash} (with uncommitted changes)") } else { hash }
        }
        None => "unknown".to_owned(),
    }
}

/// The machine, the build, the database and the run's settings, as `(name, value)` lines.
pub async fn collect(
    run: &[(String, String)],
    load_at_start: (f64, f64, f64),
    load_at_end: (f64, f64, f64),
    postgres_version: &str,
) -> Vec<(String, String)> {
    let commit = commit().await;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = output_of("rustc", &["--version"]).await.unwrap_or_else(|| "unknown".to_owned());
    let load = |(a, b, c): (f64, f64, f64)| format!("{a:.2} / {b:.2} / {c:.2}");
    let mut conditions = vec![
        ("date".to_owned(), now()),
        ("commit".to_owned(), commit),
        ("CPU".to_owned(), format!("{} × {cores} cores, {} memory", probe::cpu_model(), memory_total())),
        (
            "load average (1 / 5 / 15 min)".to_owned(),
            format!(
                "{} at the start, {} at the end (other engineers compile on this machine; each phase's load is below)",
                load(load_at_start),
                load(load_at_end)
            ),
        ),
        ("build".to_owned(), format!("release profile of the workspace (lto = \"thin\", codegen-units = 4), {rustc}")),
        (
            "server".to_owned(),
            "one `borcelle serve` process, default settings (16 pooled database connections, log level info, \
             in-process events: no Redis) except mail: SMTP without TLS to the local sink"
                .to_owned(),
        ),
        ("PostgreSQL".to_owned(), format!("{postgres_version}, local, default configuration, on the same machine")),
    ];
    conditions.extend(run.iter().cloned());
    conditions
}
