//! pgbench's output: its per-transaction logs (`--log`), cut to the measured window, and the
//! figures of its summary.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::load::LoadSpec;

/// Transactions of the measured window, read from pgbench's logs.
pub(super) struct Window {
    pub ok: u64,
    pub failed: u64,
    pub latencies: Vec<u32>,
    pub per_class: Vec<Vec<u32>>,
}

/// The number after `key` on pgbench's first summary line that starts with it (not a per-script
/// line, which starts with ` - `).
pub(super) fn summary_value(stdout: &str, key: &str) -> Option<f64> {
    stdout.lines().find_map(|line| line.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
}

/// One line of a pgbench transaction log: `client transaction latency_us script epoch_s epoch_us`
/// (latency `failed` or `skipped` when it did not complete). Returns (script, start, end, latency)
/// in microseconds since the epoch, latency `None` when it failed.
fn log_line(line: &str) -> Option<(usize, i64, i64, Option<u32>)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let script = fields.get(3)?.parse().ok()?;
    let end = fields.get(4)?.parse::<i64>().ok()? * 1_000_000 + fields.get(5)?.parse::<i64>().ok()?;
    let latency = fields.get(2)?.parse::<u32>().ok();
    Some((script, end - i64::from(latency.unwrap_or(0)), end, latency))
}

pub(super) fn read(dir: &Path, script_class: &[usize], classes: usize, load: LoadSpec) -> anyhow::Result<Window> {
    let mut lines = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("tx.")))
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        lines.extend(text.lines().filter_map(log_line));
    }
    let first = lines.iter().map(|&(_, start, _, _)| start).min().context("pgbench logged no transaction")?;
    let last = lines.iter().map(|&(_, _, end, _)| end).max().unwrap_or(first);
    let from = first + i64::try_from(load.warmup.as_micros())?;
    let to = from + i64::try_from(load.duration.as_micros())?;
    if last < to {
        bail!("pgbench's last transaction ended {:.1} s before the end of the window", (to - last) as f64 / 1e6);
    }
    let mut window = Window { ok: 0, failed: 0, latencies: Vec::new(), per_class: vec![Vec::new(); classes] };
    for (script, start, end, latency) in lines {
        if start < from || end > to {
            continue;
        }
        match latency {
            Some(micros) => {
                window.ok += 1;
                window.latencies.push(micros);
                let class = script_class.get(script).copied().unwrap_or(0);
                if let Some(list) = window.per_class.get_mut(class) {
                    list.push(micros);
                }
            }
            None => window.failed += 1,
        }
    }
    window.latencies.sort_unstable();
    for list in &mut window.per_class {
        list.sort_unstable();
    }
    Ok(window)
}
