//! The results: one table of targets (printed, and written to `BENCHMARKS.md` with the conditions
//! and the details behind each figure).

use std::fmt::Write as _;
use std::time::Duration;

use crate::consent::{self, Comparison};
use crate::delivery::{self, Run};
use crate::during_send::{self, DuringSend};
use crate::inbound::{self, InboundRun};
use crate::load::{LoadSpec, Stats};
use crate::pgbench::report::DatabaseLimits;
use crate::probe::CpuUse;
use crate::sink::SinkKind;
use crate::workloads::AUTOCOMPLETE_CLASSES;

/// A load phase and what it measured.
pub struct Phase {
    pub name: &'static str,
    pub spec: LoadSpec,
    pub stats: Stats,
    pub cpu: CpuUse,
    pub rss_peak_kib: u64,
}

/// The delivery runs against one sink.
pub struct Delivery {
    pub sink: SinkKind,
    pub baseline: Vec<Run>,
    pub end_to_end: Vec<Run>,
    /// Messages the sink counted against those sent (Rust sink only).
    pub verified: Option<(u64, u64)>,
    pub rss_peak_kib: u64,
}

impl Delivery {
    /// End-to-end over baseline emails/s, medians of the rounds.
    pub fn ratio(&self) -> Option<(Run, Run, f64)> {
        let (raw, e2e) = (delivery::median(&self.baseline)?, delivery::median(&self.end_to_end)?);
        Some((raw, e2e, e2e.per_sec() / raw.per_sec().max(1e-9)))
    }
}

/// Everything the table and the file are made of.
pub struct Report {
    pub conditions: Vec<(String, String)>,
    pub create: Phase,
    pub list: Phase,
    /// The contacts table as a page (HTML), its server time against 50 ms at p99.
    pub pages: Phase,
    pub autocomplete: Phase,
    pub seed_contacts: i64,
    pub seed_time: Duration,
    pub seed_rss_peak_kib: u64,
    pub deliveries: Vec<Delivery>,
    /// VmHWM of the serve process at the end of the run, KiB.
    pub rss_hwm_kib: u64,
    pub rss_sampled_kib: u64,
    /// Delivery with personalisation, suppression checks and DKIM against without, or why it
    /// could not be measured.
    pub consent: Result<Comparison, String>,
    /// Inbound replies accepted per second and their time to the owner's socket, or why they
    /// could not be measured.
    pub inbound: Result<InboundRun, String>,
    /// pgbench running serve's SQL for create, list and autocomplete.
    pub database_limits: DatabaseLimits,
    /// List and create during a large send (`None` when not run), or why it could not be measured.
    pub during_send: Option<Result<DuringSend, String>>,
    pub send_recipients: i64,
}

/// One line of the main table.
pub struct Row {
    pub metric: String,
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

/// 12345.6 → "12,346".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB ({:.1} MiB)", kib as f64 * 1024.0 / 1e6, kib as f64 / 1024.0)
}

/// The contacts table page: p99 against 50 ms, with its own rate.
pub fn pages_row(phase: &Phase, contacts: i64) -> Row {
    let s = &phase.stats;
    let errors = if s.errors > 0 { format!(" · {} errors", s.errors) } else { String::new() };
    Row {
        metric: format!(
            "{}, {} contacts ({} connections)",
            phase.name,
            thousands(contacts as f64),
            phase.spec.connections
        ),
        target: "p99 < 50 ms".to_owned(),
        measured: format!(
            "p99 {} · p50 {} · {} pages/s{errors}",
            ms(s.percentile(99.0)),
            ms(s.percentile(50.0)),
            thousands(s.per_sec())
        ),
        pass: s.ok > 0 && s.percentile(99.0) < Duration::from_millis(50) && s.errors == 0,
    }
}

fn throughput_row(phase: &Phase, target: f64) -> Row {
    let s = &phase.stats;
    let errors = if s.errors > 0 { format!(" · {} errors", s.errors) } else { String::new() };
    Row {
        metric: format!("{} ({} connections)", phase.name, phase.spec.connections),
        target: format!("≥ {} req/s", thousands(target)),
        measured: format!(
            "{} req/s · p50 {} · p99 {}{errors}",
            thousands(s.per_sec()),
            ms(s.percentile(50.0)),
            ms(s.percentile(99.0))
        ),
        pass: s.per_sec() >= target && s.errors == 0,
    }
}

impl Report {
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = vec![
            throughput_row(&self.create, 2000.0),
            self.database_limits.create_row(&self.create),
            throughput_row(&self.list, 5000.0),
            self.database_limits.list_row(&self.list),
        ];
        rows.push(pages_row(&self.pages, self.seed_contacts));
        let a = &self.autocomplete.stats;
        rows.push(Row {
            metric: format!(
                "autocomplete p99, {} contacts of one user ({} connections)",
                thousands(self.seed_contacts as f64),
                self.autocomplete.spec.connections
            ),
            target: "< 10 ms".to_owned(),
            measured: format!(
                "p99 {} · p50 {} · {} req/s{}",
                ms(a.percentile(99.0)),
                ms(a.percentile(50.0)),
                thousands(a.per_sec()),
                if a.errors > 0 { format!(" · {} errors", a.errors) } else { String::new() }
            ),
            pass: a.ok > 0 && a.percentile(99.0) < Duration::from_millis(10) && a.errors == 0,
        });
        rows.extend(self.database_limits.autocomplete_row(&self.autocomplete));
        for d in &self.deliveries {
            let Some((raw, e2e, ratio)) = d.ratio() else { continue };
            let failed = e2e.failed + raw.failed;
            rows.push(Row {
                metric: format!("delivery to {}: end-to-end / raw SMTP", d.sink.short()),
                target: "≥ 80 %".to_owned(),
                measured: format!(
                    "{:.0} % ({} vs {} emails/s){}",
                    ratio * 100.0,
                    thousands(e2e.per_sec()),
                    thousands(raw.per_sec()),
                    if failed > 0 { format!(" · {failed} failed") } else { String::new() }
                ),
                pass: ratio >= 0.8 && failed == 0 && d.verified.is_none_or(|(got, sent)| got == sent),
            });
        }
        rows.extend(match &self.during_send {
            Some(Ok(during)) => during.rows(),
            Some(Err(error)) => during_send::not_measured(error, self.send_recipients).0,
            None => Vec::new(),
        });
        rows.push(match &self.consent {
            Ok(comparison) => comparison.row(),
            Err(error) => consent::not_measured(error).0,
        });
        rows.extend(match &self.inbound {
            Ok(run) => run.rows(),
            Err(error) => inbound::not_measured(error).0,
        });
        rows.push(Row {
            metric: "peak RSS of serve over the whole run (VmHWM)".to_owned(),
            target: "< 150 MB".to_owned(),
            measured: mb(self.rss_hwm_kib),
            pass: (self.rss_hwm_kib as f64) * 1024.0 < 150e6,
        });
        rows
    }

    /// The table as aligned text for the terminal.
    pub fn text_table(&self) -> String {
        let cells: Vec<Vec<String>> =
            self.rows().into_iter().map(|r| vec![r.metric, r.target, r.measured, verdict(r.pass).to_owned()]).collect();
        aligned(&["metric", "target", "measured", "result"], &cells)
    }

    pub fn all_pass(&self) -> bool {
        self.rows().iter().all(|r| r.pass)
    }

    /// `BENCHMARKS.md`.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `scripts/bench` (the `borcelle-bench` crate): it builds the release binaries, creates a fresh \
             database, starts the real `borcelle serve` as a child process and measures it over HTTP on loopback. \
             Rerun it to refresh this file; `scripts/bench --help` lists the knobs.\n"
        );
        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(md, "| metric | target | measured | result |\n|---|---|---|---|");
        for r in self.rows() {
            let _ = writeln!(md, "| {} | {} | {} | {} |", r.metric, r.target, r.measured, verdict(r.pass));
        }
        let _ = writeln!(md, "\n## Conditions\n");
        for (k, v) in &self.conditions {
            let _ = writeln!(md, "- **{k}:** {v}");
        }
        self.details(&mut md);
        let _ = write!(md, "\n{}", self.database_limits.markdown());
        let section = match &self.during_send {
            Some(Ok(during)) => during.markdown(),
            Some(Err(error)) => during_send::not_measured(error, self.send_recipients).1,
            None => String::new(),
        };
        if !section.is_empty() {
            let _ = write!(md, "\n{section}");
        }
        let section = match &self.consent {
            Ok(comparison) => comparison.markdown(),
            Err(error) => consent::not_measured(error).1,
        };
        let _ = write!(md, "\n{section}");
        let section = match &self.inbound {
            Ok(run) => run.markdown(),
            Err(error) => inbound::not_measured(error).1,
        };
        let _ = write!(md, "\n{section}");
        md
    }

    fn details(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Load phases\n");
        let _ = writeln!(
            md,
            "| phase | connections | warm-up + window | answers | errors | req/s | p50 | p90 | p99 | max | CPU: serve / PostgreSQL / bench | machine busy | load at start | peak RSS |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for p in [&self.create, &self.list, &self.pages, &self.autocomplete] {
            let s = &p.stats;
            let _ = writeln!(
                md,
                "| {} | {} | {} s + {} s | {} | {} | {} | {} | {} | {} | {} | {:.0} % / {:.0} % / {:.0} % | {:.0} % | {:.2} | {} |",
                p.name,
                p.spec.connections,
                p.spec.warmup.as_secs(),
                p.spec.duration.as_secs(),
                s.ok,
                s.errors,
                thousands(s.per_sec()),
                ms(s.percentile(50.0)),
                ms(s.percentile(90.0)),
                ms(s.percentile(99.0)),
                ms(s.percentile(100.0)),
                p.cpu.server_pct,
                p.cpu.postgres_pct,
                p.cpu.client_pct,
                p.cpu.machine_pct,
                p.cpu.load_at_start,
                mb(p.rss_peak_kib)
            );
            if let Some(err) = &s.first_error {
                let _ = writeln!(md, "\nFirst error of {}: `{}`\n", p.name, err.chars().take(300).collect::<String>());
            }
        }
        let _ = writeln!(
            md,
            "\nSeed: {} contacts for the autocomplete/list user inserted with one bulk `INSERT … SELECT \
             generate_series` (not through the API) in {:.1} s, then `VACUUM (ANALYZE)` of contacts and the word \
             tables (the upkeep autovacuum would do after such a load); serve's peak RSS meanwhile {}.",
            thousands(self.seed_contacts as f64),
            self.seed_time.as_secs_f64(),
            mb(self.seed_rss_peak_kib)
        );
        let _ = writeln!(md, "\n### Autocomplete by kind of input\n");
        let _ = writeln!(md, "| input | typed | answers | p50 | p99 |\n|---|---|---|---|---|");
        for (i, (kind, words)) in AUTOCOMPLETE_CLASSES.iter().enumerate() {
            let s = &self.autocomplete.stats;
            let _ = writeln!(
                md,
                "| {kind} | {} | {} | {} | {} |",
                words.join(", "),
                s.class_count(i),
                ms(s.class_percentile(i, 50.0)),
                ms(s.class_percentile(i, 99.0))
            );
        }
        let _ = writeln!(md, "\n## Delivery runs\n");
        let _ = writeln!(
            md,
            "| sink | path | round | messages | seconds | emails/s | failed | serve CPU | PostgreSQL CPU | sink CPU |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for d in &self.deliveries {
            for (path, runs) in [("raw SMTP", &d.baseline), ("end-to-end", &d.end_to_end)] {
                for (round, run) in runs.iter().enumerate() {
                    let pct = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.0} %"));
                    let _ = writeln!(
                        md,
                        "| {} | {path} | {} | {} | {:.2} | {} | {} | {} | {} | {} |",
                        d.sink.short(),
                        round + 1,
                        run.messages,
                        run.elapsed.as_secs_f64(),
                        thousands(run.per_sec()),
                        run.failed,
                        pct(run.server_cpu_pct),
                        pct(run.postgres_cpu_pct),
                        pct(run.sink_cpu_pct)
                    );
                }
            }
        }
        for d in &self.deliveries {
            let _ = write!(
                md,
                "\n- {}: {}; serve's peak RSS during these runs {}",
                d.sink.short(),
                d.sink.describe(),
                mb(d.rss_peak_kib)
            );
            if let Some((got, sent)) = d.verified {
                let _ = write!(md, "; the sink counted {got} messages of {sent} sent");
            }
            md.push('.');
        }
        let _ = writeln!(
            md,
            "\n\nThe ratio compares medians of the rounds. CPU is user + system time over wall time (100 % = one core): \
             serve, the PostgreSQL backends of the benchmark database, the bench process (load generator, raw \
             baseline and Rust sink), and the sink process; machine busy is the share of both cores in use by \
             anything, other engineers' builds included. The raw baseline runs in the bench process, so serve's \
             and PostgreSQL's CPU are not shown for it.\n\n\
             Peak RSS: VmHWM of the serve process (the kernel's high-water mark) at the end of the run; the highest \
             VmRSS sampled every 50 ms was {}.",
            mb(self.rss_sampled_kib)
        );
    }
}

/// Rows of cells as text in aligned columns under a header and a rule.
pub fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let width =
        |i: usize| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).fold(header[i].len(), usize::max);
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell}{}  ", " ".repeat(widths[i].saturating_sub(cell.chars().count()))));
            }
        }
        out.push('\n');
        out
    };
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    let mut out = line(&mut header.iter().copied());
    out.push_str(&line(&mut rule.iter().map(String::as_str)));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `existing` (a `BENCHMARKS.md`) with these rows of the Results table replaced (each found by its
/// metric) or added before the peak RSS row, and the section under `heading` replaced by `section`
/// (added at the end when missing): what a phase run on its own writes.
pub fn splice(existing: &str, heading: &str, rows: &[Row], section: &str) -> String {
    let (body, after) = match existing.find(&format!("\n{heading}\n")) {
        Some(start) => {
            let rest = &existing[start + 1 + heading.len()..];
            (&existing[..start], rest.find("\n## ").map_or("", |end| &rest[end..]))
        }
        None => (existing, ""),
    };
    let mut lines: Vec<String> = body.trim_end().lines().map(str::to_owned).collect();
    for row in rows {
        let line = format!("| {} | {} | {} | {} |", row.metric, row.target, row.measured, verdict(row.pass));
        if let Some(at) = lines.iter().position(|l| l.starts_with(&format!("| {} |", row.metric))) {
            lines[at] = line;
        } else if let Some(at) = lines.iter().position(|l| l.starts_with("| peak RSS")) {
            lines.insert(at, line);
        }
    }
    let head = if lines.is_empty() { "# Benchmarks".to_owned() } else { lines.join("\n") };
    format!("{head}\n\n{section}{after}")
}

/// `pass` or `FAIL`, as the tables write a result.
pub fn verdict(pass: bool) -> &'static str {
    if pass { "pass" } else { "FAIL" }
}
