//! The wire phase's rows of the Results table and its section of BENCHMARKS.md.

use std::fmt::Write as _;

use super::{Ceiling, Signing};
use crate::consent::Variant;
use crate::delivery::{self, Run};
use crate::report::{Row, thousands};

const SECTION: &str = "## Delivery at the speed of the wire";
/// Emails per second, end to end, with personalisation, the suppression list and DKIM on.
pub const TARGET_PER_SEC: f64 = 3000.0;
/// Serve's peak RSS while it delivers the large note.
pub const TARGET_RSS_MB: f64 = 150.0;

/// One measured send.
#[derive(Debug, Clone)]
pub struct WireRun {
    pub variant: Variant,
    pub round: usize,
    pub run: Run,
    pub load: f64,
    pub machine_pct: f64,
    /// Messages the sink counted during the run.
    pub accepted: u64,
    /// Serve's highest RSS during the run, KiB.
    pub peak_rss_kib: u64,
}

/// Everything the phase measured.
#[derive(Debug, Clone)]
pub struct WireReport {
    pub ceilings: Vec<Ceiling>,
    /// The signer alone, per signed variant.
    pub signing: Vec<Signing>,
    pub runs: Vec<WireRun>,
    pub million: Option<WireRun>,
    pub spec_messages: usize,
    pub delivery_concurrency: usize,
    pub smtp_pool_size: u32,
    pub date: String,
    pub commit: String,
    pub cpu: String,
    pub load_at_start: (f64, f64, f64),
    pub load_at_end: (f64, f64, f64),
}

impl WireReport {
    fn median(&self, variant: Variant) -> Option<Run> {
        let runs: Vec<Run> = self.runs.iter().filter(|r| r.variant == variant).map(|r| r.run).collect();
        delivery::median(&runs)
    }

    /// The median ceiling, messages per second (of an even number, the slower middle one, as for
    /// the runs).
    fn ceiling(&self) -> Option<f64> {
        let mut rates: Vec<f64> = self.ceilings.iter().map(Ceiling::per_sec).collect();
        rates.sort_by(f64::total_cmp);
        rates.get(delivery::median_index(rates.len())).copied()
    }

    fn label(variant: Variant) -> &'static str {
        match variant {
            Variant::Plain => "delivery to Postfix smtp-sink, personalisation, suppression checks and DKIM off",
            Variant::Rsa => "delivery to Postfix smtp-sink with personalisation, suppression checks, DKIM RSA-2048",
            Variant::Ed25519 => "delivery to Postfix smtp-sink with personalisation, suppression checks, DKIM Ed25519",
            Variant::Unsigned => "delivery to Postfix smtp-sink with personalisation and suppression checks, unsigned",
        }
    }

    fn variant_row(&self, variant: Variant) -> Row {
        let judged = variant != Variant::Plain;
        let target =
            if judged { format!("≥ {} emails/s", thousands(TARGET_PER_SEC)) } else { "(printed)".to_owned() };
        let Some(run) = self.median(variant) else {
            return Row { metric: Self::label(variant).to_owned(), target, measured: "—".to_owned(), pass: false };
        };
        let share = self.ceiling().map_or(String::new(), |ceiling| {
            format!(" = {:.0} % of smtp-source's {}/s", 100.0 * run.per_sec() / ceiling, thousands(ceiling))
        });
        let signer = self.signing.iter().find(|s| s.variant == variant).map_or(String::new(), |signing| {
            format!(
                "; {:.0} % of the {}/s its signer alone makes on {} threads",
                100.0 * run.per_sec() / signing.per_sec(),
                thousands(signing.per_sec()),
                signing.threads
            )
        });
        Row {
            metric: Self::label(variant).to_owned(),
            target,
            measured: format!("{} emails/s end-to-end{share}{signer}", thousands(run.per_sec())),
            pass: !judged || run.per_sec() >= TARGET_PER_SEC,
        }
    }

    fn million_row(&self) -> Option<Row> {
        let million = self.million.as_ref()?;
        let mb = million.peak_rss_kib as f64 * 1024.0 / 1e6;
        Some(Row {
            metric: format!(
                "note to {} contacts (personalised, suppression list, DKIM Ed25519)",
                thousands(million.run.messages as f64)
            ),
            target: format!("serve's RSS < {TARGET_RSS_MB:.0} MB"),
            measured: format!(
                "queued in {:.1} s, delivered in {:.1} s ({} emails/s), peak RSS {mb:.1} MB",
                million.run.queued.as_secs_f64(),
                million.run.elapsed.as_secs_f64(),
                thousands(million.run.per_sec())
            ),
            pass: mb < TARGET_RSS_MB,
        })
    }

    /// Its lines of the main table.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = [Variant::Rsa, Variant::Ed25519, Variant::Plain].map(|v| self.variant_row(v)).into();
        rows.extend(self.million_row());
        rows
    }

    pub fn pass(&self) -> bool {
        self.rows().iter().all(|row| row.pass)
    }

    pub fn markdown(&self) -> String {
        let load = |(a, b, c): (f64, f64, f64)| format!("{a:.2} / {b:.2} / {c:.2}");
        let mut md = format!("{SECTION}\n\n");
        let _ = writeln!(
            md,
            "Issue #17. Each variant runs its own `borcelle serve` (release build) on its own fresh database with \
             {} recipients of one sender, BORCELLE_DELIVERY_CONCURRENCY={} and BORCELLE_SMTP_POOL_SIZE={}, delivering \
             over plain SMTP to one Postfix `smtp-sink` (Debian's postfix 3.7; it offers PIPELINING and discards what \
             it accepts). A run is one `POST /api/v1/messages` to the recipients' tag, timed until `GET \
             /api/v1/tasks/{{id}}` says the task is done: every row's `sent` (or `suppressed`) committed in PostgreSQL \
             (fsync and synchronous_commit on, the server's defaults); serve writes the ledger rows in chunks of 2,000 \
             recipients, each committed on its own, and delivers from the first chunk on (\"queued in\" is the \
             `POST`'s answer, once the last chunk is written). \"On\" is a personalised subject and a body \
             of about 1 KB rendered per recipient from the snapshot on each ledger row, a suppression list of 10,000 \
             addresses of which 1 % of the recipients (checked at queue time and again at each claim), and a DKIM \
             signature (RSA-2048 or Ed25519, keys made by `borcelle dkim generate`); \"off\" is a fixed text, no \
             list, unsigned. The ceiling is Postfix's `smtp-source` sending messages of 2 KB over {} connections \
             kept open (`-d`) into the same sink, run before each round. The signer's own ceiling is serve's DKIM \
             signer (the same code and key) signing a message like the measured ones (merged, rendered and built \
             by serve's own code), on one thread per core for {} s with nothing else running: no signed delivery \
             can be faster. Every run checks that the sink's counter moved by exactly the ledger's `sent` count, \
             and that nothing failed.\n",
            thousands(self.spec_messages as f64),
            self.delivery_concurrency,
            self.smtp_pool_size,
            self.ceilings.first().map_or(0, |c| c.sessions),
            super::SIGNING_TIME.as_secs()
        );
        md.push_str(
            "| round | what | messages | seconds | emails/s | queued in | sink counted | serve CPU | PostgreSQL CPU | \
             machine busy | load |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for (i, ceiling) in self.ceilings.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | smtp-source (ceiling) | {} | {:.2} | {} | — | {} | — | — | — | — |",
                i + 1,
                ceiling.messages,
                ceiling.elapsed.as_secs_f64(),
                thousands(ceiling.per_sec()),
                ceiling.messages
            );
            for run in self.runs.iter().filter(|r| r.round == i + 1) {
                let _ = writeln!(md, "{}", run_line(run));
            }
        }
        if let Some(million) = &self.million {
            let _ = writeln!(md, "{}", run_line(million));
        }
        let _ = writeln!(md);
        if let Some(million) = &self.million {
            let _ = writeln!(
                md,
                "The large note: a database of its own with {} contacts of the sender (seeded in SQL), one `POST` of \
                 the personalised note to their tag, signed with Ed25519. \"Queued in\" is the `POST`'s answer, once \
                 every ledger row is written with its merge snapshot: in chunks of `BORCELLE_QUEUE_CHUNK` (2,000) \
                 recipients, each committed on its own, so delivery runs from the first chunk on. Peak RSS is serve's, \
                 sampled every 50 ms and the kernel's high-water mark, whichever is higher: {:.1} MB.\n",
                thousands(million.run.messages as f64),
                million.peak_rss_kib as f64 * 1024.0 / 1e6
            );
        }
        let _ = writeln!(
            md,
            "Measured {} on {} at commit {}; load average at start {}, at end {}. Rates are medians over the rounds \
             (of an even number of rounds, the slower middle one); CPU is user + system time over wall time \
             (100 % = one core); machine busy is the share of both cores in use by anything.\n",
            self.date,
            self.cpu,
            self.commit,
            load(self.load_at_start),
            load(self.load_at_end)
        );
        md
    }
}

fn run_line(run: &WireRun) -> String {
    let what = match run.variant {
        Variant::Plain => "Borcelle, off",
        Variant::Rsa => "Borcelle, on (RSA-2048)",
        Variant::Ed25519 if run.run.messages >= 1_000_000 => "Borcelle, large note (Ed25519)",
        Variant::Ed25519 => "Borcelle, on (Ed25519)",
        Variant::Unsigned => "Borcelle, on (unsigned)",
    };
    let pct = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.0} %"));
    format!(
        "| {} | {what} | {} | {:.2} | {} | {:.2} s | {} | {} | {} | {:.0} % | {:.2} |",
        run.round,
        run.run.messages,
        run.run.elapsed.as_secs_f64(),
        thousands(run.run.per_sec()),
        run.run.queued.as_secs_f64(),
        run.accepted,
        pct(run.run.server_cpu_pct),
        pct(run.run.postgres_cpu_pct),
        run.machine_pct,
        run.load
    )
}

/// `existing` with the wire rows and section replaced (what `--wire-only` writes).
pub fn splice(existing: &str, report: &WireReport) -> String {
    crate::report::splice(existing, SECTION, &report.rows(), &report.markdown())
}
