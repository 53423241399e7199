//! The inbound phase's figures: replies accepted per second and the timings of each reply, its two
//! rows of the main table, and its section of `BENCHMARKS.md` (also spliced into an existing file).

use std::fmt::Write as _;
use std::time::Duration;

use super::{ClientKind, HTML, SUBJECT, TEXT, WARMUP_REPLIES};
use crate::probe::{self, CpuUse};
use crate::report::{Row, aligned, thousands};

/// Replies accepted per second, at least.
const TARGET_RATE: f64 = 500.0;
/// p99 from the end of `DATA` to the event on the owner's socket, below.
const TARGET_P99_MS: f64 = 500.0;
const RATE_METRIC: &str = "inbound replies accepted per second (SMTP receiver in serve)";
const LATENCY_METRIC: &str = "inbound reply: end of DATA → live event on the owner's socket, p99";
const SECTION: &str = "## Inbound replies";

/// The measured replies and what they ran under.
pub struct InboundRun {
    pub client: ClientKind,
    pub replies: usize,
    pub clients: usize,
    pub contacts: usize,
    /// Bytes of one reply on the wire.
    pub message_bytes: usize,
    /// From the first send's start to the last answer.
    pub elapsed: Duration,
    pub cpu: CpuUse,
    /// Replies answered `250` with the stored reply's id, and the others.
    pub accepted: usize,
    pub refused: usize,
    pub first_error: Option<String>,
    /// Per accepted reply, in milliseconds: the send's start to its `250`, the `250` to the event
    /// (negative when the event came first), the send's start to the event.
    pub send: Vec<f64>,
    pub after_accept: Vec<f64>,
    pub total: Vec<f64>,
    /// The raw client only, in milliseconds: the end of `DATA` to the `250`, and to the event.
    pub data_to_accept: Vec<f64>,
    pub from_data_end: Vec<f64>,
    /// Accepted replies whose event never came, and events of another kind than `reply`.
    pub missing_events: usize,
    pub wrong_kind: usize,
    /// `notification` events on the socket during the run (one a reply).
    pub notifications: usize,
    pub resyncs: Vec<String>,
    pub socket_closed: Option<String>,
    /// Serve's own time to file each reply (its log's `ms`), when the log has it.
    pub filing: Vec<f64>,
    /// Replies in `inbound_messages` after the run, the warm-up's left out.
    pub stored: usize,
    pub serve_rss_kib: u64,
    /// Serve's local storage directory for the raw messages.
    pub storage: String,
    pub build: String,
    pub postgres_version: String,
    pub date: String,
    pub commit: String,
    pub load_at_start: (f64, f64, f64),
    pub load_at_end: (f64, f64, f64),
}

/// The value below which `p` % of `values` fall (nearest rank).
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn ms(value: Option<f64>) -> String {
    match value {
        None => "—".to_owned(),
        Some(v) if v.abs() < 10.0 => format!("{v:.2} ms"),
        Some(v) => format!("{v:.1} ms"),
    }
}

impl InboundRun {
    pub fn new(client: ClientKind, replies: usize, clients: usize, contacts: usize, message_bytes: usize) -> Self {
        Self {
            client,
            replies,
            clients,
            contacts,
            message_bytes,
            elapsed: Duration::ZERO,
            cpu: CpuUse::default(),
            accepted: 0,
            refused: 0,
            first_error: None,
            send: Vec::new(),
            after_accept: Vec::new(),
            total: Vec::new(),
            data_to_accept: Vec::new(),
            from_data_end: Vec::new(),
            missing_events: 0,
            wrong_kind: 0,
            notifications: 0,
            resyncs: Vec::new(),
            socket_closed: None,
            filing: Vec::new(),
            stored: 0,
            serve_rss_kib: 0,
            storage: String::new(),
            build: String::new(),
            postgres_version: String::new(),
            date: crate::conditions::now(),
            commit: String::new(),
            load_at_start: (0.0, 0.0, 0.0),
            load_at_end: (0.0, 0.0, 0.0),
        }
    }

    /// Replies accepted (`250`) per second of the run.
    pub fn per_sec(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The judged interval: from the end of `DATA` when the client times it, else from the send's
    /// start (before the end of `DATA`: an upper bound), to the event.
    fn judged(&self) -> &[f64] {
        match self.client {
            ClientKind::Raw => &self.from_data_end,
            ClientKind::Lettre => &self.total,
        }
    }

    fn judged_from(&self) -> &'static str {
        match self.client {
            ClientKind::Raw => "from the end of DATA",
            ClientKind::Lettre => "from the start of the SMTP send, an upper bound",
        }
    }

    fn p99(&self) -> Option<f64> {
        percentile(self.judged(), 99.0)
    }

    /// Every reply accepted, stored once, and told to the owner's socket once as a reply, with its
    /// notification, the socket never falling behind.
    fn verified(&self) -> bool {
        self.accepted == self.replies
            && self.refused == 0
            && self.missing_events == 0
            && self.wrong_kind == 0
            && self.stored == self.replies
            && self.notifications == self.replies
            && self.resyncs.is_empty()
            && self.socket_closed.is_none()
    }

    fn rate_pass(&self) -> bool {
        self.per_sec() >= TARGET_RATE && self.verified()
    }

    fn latency_pass(&self) -> bool {
        self.p99().is_some_and(|p99| p99 < TARGET_P99_MS) && self.verified()
    }

    pub fn pass(&self) -> bool {
        self.rate_pass() && self.latency_pass()
    }

    /// Its two lines of the main table.
    pub fn rows(&self) -> Vec<Row> {
        let unverified = if self.verified() { "" } else { " · failed verification (see below)" };
        vec![
            Row {
                metric: RATE_METRIC.to_owned(),
                target: format!("≥ {} replies/s", thousands(TARGET_RATE)),
                measured: format!(
                    "{} replies/s ({} accepted of {} in {:.2} s from {} SMTP clients; serve CPU {:.0} %, PostgreSQL \
                     {:.0} %){unverified}",
                    thousands(self.per_sec()),
                    thousands(self.accepted as f64),
                    thousands(self.replies as f64),
                    self.elapsed.as_secs_f64(),
                    self.clients,
                    self.cpu.server_pct,
                    self.cpu.postgres_pct
                ),
                pass: self.rate_pass(),
            },
            Row {
                metric: LATENCY_METRIC.to_owned(),
                target: format!("< {TARGET_P99_MS:.0} ms"),
                measured: format!(
                    "p99 {} · p50 {} ({}; `250` → event p99 {}; {} client){unverified}",
                    ms(self.p99()),
                    ms(percentile(self.judged(), 50.0)),
                    self.judged_from(),
                    ms(percentile(&self.after_accept, 99.0)),
                    match self.client {
                        ClientKind::Raw => "raw",
                        ClientKind::Lettre => "lettre",
                    }
                ),
                pass: self.latency_pass(),
            },
        ]
    }

    const HEADER: [&str; 7] = ["interval, per reply", "replies", "p50", "p95", "p99", "max", "min"];

    fn cells(&self) -> Vec<Vec<String>> {
        let line = |name: &str, values: &[f64]| {
            let mut cells = vec![name.to_owned(), thousands(values.len() as f64)];
            for p in [50.0, 95.0, 99.0, 100.0, 0.0] {
                cells.push(ms(percentile(values, p)));
            }
            cells
        };
        let raw = self.client == ClientKind::Raw;
        let mut rows = vec![
            line("(a) SMTP send: start → 250", &self.send),
            line("(b) 250 → inbound event on the socket", &self.after_accept),
            line(
                if raw { "(c) send start → inbound event" } else { "(c) send start → inbound event (judged)" },
                &self.total,
            ),
        ];
        if raw {
            rows.push(line("(d) end of DATA → 250", &self.data_to_accept));
            rows.push(line("(e) end of DATA → inbound event (judged)", &self.from_data_end));
        }
        if !self.filing.is_empty() {
            rows.push(line("serve's own filing time (its log)", &self.filing));
        }
        rows
    }

    fn verdicts(&self) -> String {
        let met = |pass: bool| if pass { "met" } else { "MISSED" };
        format!(
            "Target ≥ {} replies/s: {} replies/s, {}. Target p99 < {TARGET_P99_MS:.0} ms: p99 {}, {}.",
            thousands(TARGET_RATE),
            thousands(self.per_sec()),
            met(self.rate_pass()),
            ms(self.p99()),
            met(self.latency_pass())
        )
    }

    fn verification(&self) -> String {
        let mut out = format!(
            "{} of {} replies answered 250 with the stored reply's id ({} refused); {} of them stored as replies; \
             {} inbound events matched by id ({} missing, {} not of kind reply), {} notification events; {} \
             resyncs on the socket",
            thousands(self.accepted as f64),
            thousands(self.replies as f64),
            self.refused,
            thousands(self.stored as f64),
            thousands(self.total.len() as f64),
            self.missing_events,
            self.wrong_kind,
            thousands(self.notifications as f64),
            self.resyncs.len()
        );
        if let Some(reason) = self.resyncs.first() {
            let _ = write!(out, " (first: {reason})");
        }
        if let Some(why) = &self.socket_closed {
            let _ = write!(out, "; the socket closed: {why}");
        }
        if let Some(err) = &self.first_error {
            let _ = write!(out, "; first refusal: {}", err.chars().take(300).collect::<String>());
        }
        out.push('.');
        out
    }

    fn conditions(&self) -> String {
        format!(
            "{} × {} cores; {} SMTP clients at once ({}), plain SMTP over loopback; {} replies after a \
             {WARMUP_REPLIES}-reply warm-up, to {} ledger rows of one owner in turn; each reply {} bytes \
             (multipart/alternative, a short text part and the same as HTML, its own Message-ID); raw messages kept in \
             local storage under {}; one `/ws` of the owner read on a thread of its own; {}",
            probe::cpu_model(),
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            self.clients,
            self.client.describe(),
            thousands(self.replies as f64),
            self.contacts,
            thousands(self.message_bytes as f64),
            self.storage,
            self.build
        )
    }

    /// What the terminal shows after the run.
    pub fn summary(&self) -> String {
        format!(
            "{}{}\n{}\n    serve CPU {:.0} %, PostgreSQL {:.0} %, bench {:.0} %, machine {:.0} % busy; load {:.2} at the \
             start; serve's peak RSS {:.1} MiB\n    conditions: {}\n",
            aligned(&Self::HEADER, &self.cells()),
            self.verdicts(),
            self.verification(),
            self.cpu.server_pct,
            self.cpu.postgres_pct,
            self.cpu.client_pct,
            self.cpu.machine_pct,
            self.cpu.load_at_start,
            self.serve_rss_kib as f64 / 1024.0,
            self.conditions()
        )
    }

    /// The `BENCHMARKS.md` section.
    pub fn markdown(&self) -> String {
        let load = |(a, b, c): (f64, f64, f64)| format!("{a:.2} / {b:.2} / {c:.2}");
        let mut md = format!("{SECTION}\n\n");
        let _ = writeln!(
            md,
            "Issue #15: replies accepted per second by the SMTP receiver `borcelle serve` runs \
             (`BORCELLE_INBOUND_DOMAIN`, no limit on new connections per minute), and the time from the end of a \
             reply's `DATA` to its `inbound` event on the owner's open `/ws`. A fresh database holds one owner who \
             sent a plain message to {} contacts through a local sink; each reply goes to the `reply+<token>@…` \
             address of one of those ledger rows (made with the installation's key, as serve makes it). The \
             receiver keeps each message's raw bytes in local storage (written, flushed to disk and renamed), \
             files it in one PostgreSQL transaction, publishes the events, then answers \
             `250 2.0.0 Ok: filed as <id>`; that id is the event's `inbound_id`, so every event is matched to its \
             reply exactly.\n",
            self.contacts
        );
        let timing = match self.client {
            ClientKind::Lettre => {
                "Each reply is timed from the moment the bench calls lettre's send (before MAIL, RCPT, DATA and the \
                 message: the end of `DATA` comes three loopback round trips later, so (c) is an upper bound of the \
                 judged interval) to the `250`, and to the frame of its event read off the socket."
            }
            ClientKind::Raw => {
                "Each reply is timed from the start of its `MAIL` and from the moment its final `.` was written (the \
                 end of `DATA`: the message and the `.` go in one write, TCP_NODELAY) to the `250`, and to the frame \
                 of its event read off the socket; (e) is the judged interval."
            }
        };
        let _ = writeln!(
            md,
            "{timing} (b) is negative when the event reached the socket before the client read its `250`: serve \
             publishes before it answers.\n"
        );
        let _ = writeln!(
            md,
            "Measured {}, commit {}; load average (1 / 5 / 15 min) {} at the start, {} at the end; PostgreSQL {}, \
             local. Conditions: {}.\n",
            self.date,
            self.commit,
            load(self.load_at_start),
            load(self.load_at_end),
            self.postgres_version,
            self.conditions()
        );
        let _ = writeln!(md, "| {} |", Self::HEADER.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(Self::HEADER.len()));
        for cells in self.cells() {
            let _ = writeln!(md, "| {} |", cells.join(" | "));
        }
        let _ = writeln!(md, "\n{}\n", self.verdicts());
        let _ = writeln!(
            md,
            "During the measured sends: serve CPU {:.0} %, PostgreSQL {:.0} %, bench {:.0} % (100 % = one core), \
             machine {:.0} % busy (whoever used it); serve's peak RSS {:.1} MiB.\n",
            self.cpu.server_pct,
            self.cpu.postgres_pct,
            self.cpu.client_pct,
            self.cpu.machine_pct,
            self.serve_rss_kib as f64 / 1024.0
        );
        let _ = writeln!(md, "Verified: {}\n", self.verification());
        let _ = writeln!(md, "The reply (subject, text, HTML):\n\n```text\n{SUBJECT}\n\n{TEXT}\n{HTML}\n```");
        md
    }
}

/// The rows and section of a phase that failed to run.
pub fn not_measured(error: &str) -> (Vec<Row>, String) {
    let error = error.replace('\n', " ").replace('|', "\\|");
    let rows = [(RATE_METRIC, format!("≥ {} replies/s", thousands(TARGET_RATE))), (LATENCY_METRIC, "< 500 ms".into())]
        .into_iter()
        .map(|(metric, target)| Row {
            metric: metric.to_owned(),
            target,
            measured: format!("not measured: {error}"),
            pass: false,
        })
        .collect();
    (rows, format!("{SECTION}\n\nNot measured: {error}\n"))
}

/// `existing` (a `BENCHMARKS.md`) with the phase's rows and section replaced, or added.
pub fn splice(existing: &str, run: &InboundRun) -> String {
    crate::report::splice(existing, SECTION, &run.rows(), &run.markdown())
}
