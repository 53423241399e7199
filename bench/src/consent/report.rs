//! The consent comparison's figures: the runs table, the medians and the verdict, its row of the
//! main table, and its section of `BENCHMARKS.md` (also spliced into an existing file).

use std::fmt::Write as _;

use super::{BODY, SUBJECT, Variant};
use crate::delivery::{self, Run};
use crate::report::{Row, aligned, thousands};

/// B's median throughput must be at least this share of A's.
const TARGET: f64 = 0.8;
const METRIC: &str = "delivery with personalisation, suppression checks and DKIM (RSA-2048) / without";
const SECTION: &str = "## Consent overhead runs";

/// One measured end-to-end run of a variant.
pub struct ConsentRun {
    pub variant: Variant,
    /// 1-based.
    pub round: usize,
    pub run: Run,
    /// The 1-minute load average as the run started.
    pub load: f64,
    /// Share of both cores busy over the run, whoever used them.
    pub machine_pct: f64,
    /// Messages the sink accepted during the run, and how many of them were DKIM-signed.
    pub accepted: u64,
    pub signed: u64,
    /// Recipients on the sender's suppression list.
    pub expected_suppressed: usize,
}

impl ConsentRun {
    /// Nothing failed, the list suppressed what it holds, and the sink got every other message,
    /// signed exactly when the variant signs.
    fn verified(&self) -> bool {
        let sent = self.run.sent() as u64;
        self.run.failed == 0
            && self.run.suppressed == self.expected_suppressed
            && self.accepted == sent
            && self.signed == if self.variant.dkim().is_some() { sent } else { 0 }
    }
}

/// Every run of the comparison and what it ran under.
pub struct Comparison {
    pub runs: Vec<ConsentRun>,
    pub messages: usize,
    pub suppressions: i64,
    pub delivery_concurrency: usize,
    pub smtp_pool_size: u32,
    pub date: String,
    pub commit: String,
    /// The CPU model and number of cores.
    pub cpu: String,
    pub load_at_start: (f64, f64, f64),
    pub load_at_end: (f64, f64, f64),
}

impl Comparison {
    fn variants(&self) -> Vec<Variant> {
        let mut seen = Vec::new();
        for run in &self.runs {
            if !seen.contains(&run.variant) {
                seen.push(run.variant);
            }
        }
        seen
    }

    /// The variant's median run by recipients/s.
    pub fn median(&self, variant: Variant) -> Option<Run> {
        let runs: Vec<Run> = self.runs.iter().filter(|r| r.variant == variant).map(|r| r.run).collect();
        delivery::median(&runs)
    }

    /// The variant's median recipients/s over A's.
    pub fn ratio(&self, variant: Variant) -> Option<f64> {
        Some(self.median(variant)?.per_sec() / self.median(Variant::Plain)?.per_sec().max(1e-9))
    }

    fn verified(&self) -> bool {
        !self.runs.is_empty() && self.runs.iter().all(ConsentRun::verified)
    }

    pub fn pass(&self) -> bool {
        self.ratio(Variant::Rsa).is_some_and(|ratio| ratio >= TARGET) && self.verified()
    }

    /// Its line of the main table.
    pub fn row(&self) -> Row {
        let (Some(a), Some(b), Some(ratio)) =
            (self.median(Variant::Plain), self.median(Variant::Rsa), self.ratio(Variant::Rsa))
        else {
            return Row {
                metric: METRIC.to_owned(),
                target: "≥ 80 %".to_owned(),
                measured: "—".to_owned(),
                pass: false,
            };
        };
        let mut measured = format!(
            "{:.0} % ({} vs {} recipients/s; B sent {}, suppressed {} a run",
            ratio * 100.0,
            thousands(b.per_sec()),
            thousands(a.per_sec()),
            thousands(b.sent() as f64),
            b.suppressed
        );
        if let Some(ed25519) = self.ratio(Variant::Ed25519) {
            let _ = write!(measured, "; with Ed25519 {:.0} %", ed25519 * 100.0);
        }
        if let Some(unsigned) = self.ratio(Variant::Unsigned) {
            let _ = write!(measured, "; unsigned {:.0} %", unsigned * 100.0);
        }
        measured.push(')');
        if !self.verified() {
            measured.push_str(" · runs failed verification (see below)");
        }
        Row { metric: METRIC.to_owned(), target: "≥ 80 %".to_owned(), measured, pass: self.pass() }
    }

    fn cells(&self) -> Vec<Vec<String>> {
        self.runs
            .iter()
            .map(|r| {
                vec![
                    r.variant.label().to_owned(),
                    r.round.to_string(),
                    thousands(r.run.messages as f64),
                    thousands(r.run.sent() as f64),
                    r.run.suppressed.to_string(),
                    format!("{:.2}", r.run.elapsed.as_secs_f64()),
                    thousands(r.run.per_sec()),
                    format!("{:.0} %", r.run.server_cpu_pct.unwrap_or(0.0)),
                    format!("{:.0} %", r.run.postgres_cpu_pct.unwrap_or(0.0)),
                    format!("{:.0} %", r.machine_pct),
                    format!("{:.2}", r.load),
                    if r.verified() { "yes" } else { "NO" }.to_owned(),
                ]
            })
            .collect()
    }

    const HEADER: [&str; 12] = [
        "run",
        "round",
        "recipients",
        "sent",
        "suppressed",
        "seconds",
        "recipients/s",
        "serve CPU",
        "PostgreSQL CPU",
        "machine busy",
        "load",
        "verified",
    ];

    /// The medians, each B as a share of A, and the verdict.
    fn summary(&self) -> String {
        let mut out = String::from("Medians:");
        for variant in self.variants() {
            let Some(median) = self.median(variant) else { continue };
            let _ = write!(out, " {} {} recipients/s", variant.label(), thousands(median.per_sec()));
            match self.ratio(variant) {
                Some(ratio) if variant.consent() => {
                    let _ = write!(out, " = {:.1} % of A;", ratio * 100.0);
                }
                _ => out.push(';'),
            }
        }
        out.pop();
        let verdict = if self.pass() { "met" } else { "MISSED" };
        let _ = write!(out, ".\nTarget B (RSA-2048) ≥ 80 % of A: {verdict}");
        if !self.verified() {
            out.push_str(" (a run failed verification: a failure, a wrong suppressed count, or sink counts off)");
        }
        out
    }

    /// The runs table, the medians and the verdict, for the terminal.
    pub fn text(&self) -> String {
        format!("{}\n{}\n", aligned(&Self::HEADER, &self.cells()), self.summary())
    }

    /// The `BENCHMARKS.md` section.
    pub fn markdown(&self) -> String {
        let load = |(a, b, c): (f64, f64, f64)| format!("{a:.2} / {b:.2} / {c:.2}");
        let mut md = format!("{SECTION}\n\n");
        let _ = writeln!(
            md,
            "A is today's end-to-end delivery: one `POST /api/v1/messages` to a tag of {} contacts with a fixed \
             subject and body, timed until the task is done. B sends to the same {} contacts (names and companies \
             alike) a personalised subject and a body of about 1 KB rendered per recipient from the snapshot on \
             each ledger row; the sender has a suppression list of {} addresses, {} of them among the recipients \
             (recorded as suppressed at queue time, and checked again as rows are claimed); and serve signs every \
             message with DKIM, an RSA-2048 key made by `borcelle dkim generate`. Rows of other variants, when \
             present, are printed but not judged: B with an Ed25519 key, and B unsigned (personalisation and the \
             suppression list alone). Every variant runs its own `borcelle serve` on its own fresh database \
             (BORCELLE_DELIVERY_CONCURRENCY={}, BORCELLE_SMTP_POOL_SIZE={}); one Rust sink in the bench process \
             takes the mail of all of them. The rounds are interleaved (A, B, …, A, B, …) so that the shared \
             machine's noise falls on each alike, after a 200-message warm-up of each. Recipients/s counts every \
             recipient handled, sent or suppressed; the ratio compares medians.\n",
            thousands(self.messages as f64),
            thousands(self.messages as f64),
            thousands(self.suppressions as f64),
            self.runs.iter().find(|r| r.variant.consent()).map_or(0, |r| r.expected_suppressed),
            self.delivery_concurrency,
            self.smtp_pool_size,
        );
        let _ = writeln!(
            md,
            "Measured {}, commit {}, on {}; load average (1 / 5 / 15 min) {} at the start, {} at the end.\n",
            self.date,
            self.commit,
            self.cpu,
            load(self.load_at_start),
            load(self.load_at_end)
        );
        let _ = writeln!(md, "| {} |", Self::HEADER.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(Self::HEADER.len()));
        for cells in self.cells() {
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(md, "\n{}\n", self.summary().replace('\n', " "));
        let accepted: u64 = self.runs.iter().map(|r| r.accepted).sum();
        let signed: u64 = self.runs.iter().map(|r| r.signed).sum();
        let _ = writeln!(
            md,
            "Verified: each run's failures (none allowed), its suppressed count against the list, and the sink's \
             count of the messages it accepted and of those carrying a `DKIM-Signature` (all of a signing \
             variant's, none of the others') — the \
             sink counted {} messages over the measured runs, {} of them signed — and the last message of each run: \
             a subject `Hello <first name>` for B, and a signature with the variant's algorithm or none. \
             CPU is user + system time over wall time (100 % = one core); machine busy is the share of both cores \
             in use by anything, other engineers' builds included.\n",
            thousands(accepted as f64),
            thousands(signed as f64)
        );
        let _ = writeln!(md, "B's subject and body:\n\n```text\n{SUBJECT}\n\n{BODY}\n```");
        md
    }
}

/// The row and section of a comparison that failed to run.
pub fn not_measured(error: &str) -> (Row, String) {
    let error = error.replace('\n', " ").replace('|', "\\|");
    let row = Row {
        metric: METRIC.to_owned(),
        target: "≥ 80 %".to_owned(),
        measured: format!("not measured: {error}"),
        pass: false,
    };
    (row, format!("{SECTION}\n\nNot measured: {error}\n"))
}

/// `existing` (a `BENCHMARKS.md`) with the comparison's row of the Results table and its section
/// replaced, or added (the row before the peak RSS row, the section at the end).
pub fn splice(existing: &str, comparison: &Comparison) -> String {
    crate::report::splice(existing, SECTION, &[comparison.row()], &comparison.markdown())
}
