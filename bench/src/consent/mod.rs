//! The consent overhead (issue #14): end-to-end delivery to the same recipients with a
//! personalised subject and body, a suppression list and DKIM signing on (B), against the plain
//! send of today (A), in interleaved rounds so that the shared machine's noise falls on both
//! alike. Each variant has its own database and `serve` (an engine claims every due row of its
//! database, and DKIM is a setting of the process); one Rust sink takes the mail of all of them.

mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use sqlx::PgPool;
use tokio::process::Command;

use crate::delivery::{self, PLAIN};
use crate::probe::{self, CpuMeter};
use crate::seed;
use crate::server::{self, MAIL_DOMAIN, Serve, ServeConfig, ServeDkim, Session};
use crate::sink::{Sink, SinkKind};

pub use report::{Comparison, ConsentRun, not_measured, splice};

pub(crate) const SENDER: &str = "sender@bench.example";
pub(crate) const TAG: &str = "consent";
pub(crate) const WARMUP_TAG: &str = "warmup";
pub(crate) const WARMUP_MESSAGES: usize = 200;
pub(crate) const SELECTOR: &str = "bench";

/// B's subject.
pub const SUBJECT: &str = "Hello {{ contact.first_name }}";
/// B's body: about 1 KB once rendered, with the recipient's first name and company (a default
/// for the one in five without a company) and the sender's name.
pub const BODY: &str = "Hi {{ contact.first_name | default(\"there\") }},\n\n\
    Here is what changed this quarter for {{ contact.company | default(\"your team\") }}. Contacts now \
    import from any spreadsheet export, duplicates are merged as they arrive, and the address book \
    finds a name from its first letters or a typo in a few milliseconds, however large it grows.\n\n\
    Messages are queued in a ledger before anything leaves, so a restart never sends twice and \
    never loses a send; each recipient's row says whether the mail went out, when, and what the \
    receiving server answered. Reminders follow a schedule in your own time zone, daylight saving \
    included, and skip what they missed while the service was down rather than sending it late.\n\n\
    Every email now carries a one-click unsubscribe link, and an address that unsubscribes or \
    bounces is never mailed again from this account. Outgoing mail is signed, so that the \
    receiving servers can tell it really comes from us.\n\n\
    If any of this matters to {{ contact.company | default(\"you\") }}, answer this email: it \
    reaches me directly.\n\n\
    See you soon,\n{{ sender.name }}";

/// What the comparison runs with.
pub struct ConsentSpec {
    pub borcelle: PathBuf,
    /// PostgreSQL server URL without a database.
    pub postgres: String,
    /// Prefix of the databases (one per variant), dropped and created afresh.
    pub database: String,
    pub keep_databases: bool,
    /// Recipients of each run.
    pub messages: usize,
    pub rounds: usize,
    /// Entries on B's suppression list, and how many of the recipients are among them.
    pub suppressions: i64,
    pub suppressed_recipients: usize,
    /// Variants run besides A and B (printed, not judged).
    pub also: Vec<Variant>,
    pub delivery_concurrency: usize,
    pub smtp_pool_size: u32,
    /// Serve's log; each variant's goes next to it (`…-consent-<variant>.log`).
    pub serve_log: PathBuf,
}

/// A side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// A: today's send: fixed content, no suppression list, unsigned.
    Plain,
    /// B: personalised, the suppression list, DKIM with RSA-2048: the side the target judges.
    Rsa,
    /// B with an Ed25519 key.
    Ed25519,
    /// B without DKIM: what personalisation and the suppression checks cost alone.
    Unsigned,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Plain => "A plain",
            Variant::Rsa => "B consent, RSA-2048",
            Variant::Ed25519 => "B consent, Ed25519",
            Variant::Unsigned => "B consent, unsigned",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Rsa => "rsa",
            Variant::Ed25519 => "ed25519",
            Variant::Unsigned => "unsigned",
        }
    }

    /// The DKIM algorithm it signs with (`borcelle dkim generate --algorithm`).
    pub(crate) fn dkim(self) -> Option<&'static str> {
        match self {
            Variant::Plain | Variant::Unsigned => None,
            Variant::Rsa => Some("rsa"),
            Variant::Ed25519 => Some("ed25519"),
        }
    }

    pub fn consent(self) -> bool {
        self != Variant::Plain
    }

    pub(crate) fn content(self) -> (&'static str, &'static str) {
        if self.consent() { (SUBJECT, BODY) } else { PLAIN }
    }
}

/// One variant's server, ready to send.
pub(crate) struct Side {
    pub(crate) variant: Variant,
    pub(crate) serve: Serve,
    pub(crate) session: Session,
    pub(crate) database: String,
    pub(crate) log: PathBuf,
    /// Recipients on the sender's suppression list.
    pub(crate) suppressed: usize,
}

/// Sets up every variant, warms each up, then runs `rounds` × (A, B, …) and stops them.
pub async fn run(spec: &ConsentSpec) -> anyhow::Result<Comparison> {
    let load_at_start = probe::load_average();
    let mut variants = vec![Variant::Plain, Variant::Rsa];
    for variant in &spec.also {
        if !variants.contains(variant) {
            variants.push(*variant);
        }
    }
    let keys = std::env::temp_dir().join(format!("borcelle-bench-dkim-{}", std::process::id()));
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let smtp_port = server::free_port()?;
    let sink = Sink::start(SinkKind::Rust, smtp_port).await?;
    let mut sides = Vec::new();
    let mut measured = Ok(Vec::new());
    for variant in variants {
        match start(spec, variant, smtp_port, &keys).await {
            Ok(side) => sides.push(side),
            Err(err) => {
                measured = Err(err);
                break;
            }
        }
    }
    if measured.is_ok() {
        measured = measure(spec, &sides, &sink).await;
    }
    let databases: Vec<String> = sides.iter().map(|side| side.database.clone()).collect();
    for side in sides {
        side.serve.stop().await?;
    }
    sink.stop().await;
    let _ = std::fs::remove_dir_all(&keys);
    if !spec.keep_databases {
        for database in &databases {
            server::drop_database(&spec.postgres, database).await?;
        }
    }
    Ok(Comparison {
        runs: measured?,
        messages: spec.messages,
        suppressions: spec.suppressions,
        delivery_concurrency: spec.delivery_concurrency,
        smtp_pool_size: spec.smtp_pool_size,
        date: crate::conditions::now(),
        commit: crate::conditions::commit().await,
        cpu: crate::conditions::cpu(),
        load_at_start,
        load_at_end: probe::load_average(),
    })
}

/// A fresh database with the sender, the recipients (and B's suppression list), then `serve`.
pub(crate) async fn start(spec: &ConsentSpec, variant: Variant, smtp_port: u16, keys: &Path) -> anyhow::Result<Side> {
    let database = format!("{}_consent_{}", spec.database, variant.name());
    let url = format!("{}/{database}", spec.postgres);
    server::drop_database(&spec.postgres, &database).await?;
    server::create_user(&spec.borcelle, &url, SENDER, "Bench Sender").await?;
    let db = PgPool::connect(&url).await.with_context(|| format!("connecting to {database}"))?;
    seed::named_recipients(&db, SENDER, TAG, spec.messages as i64).await?;
    seed::named_recipients(&db, SENDER, WARMUP_TAG, WARMUP_MESSAGES as i64).await?;
    let suppressed = if variant.consent() { spec.suppressed_recipients } else { 0 };
    if variant.consent() {
        let among = (spec.messages as i64, suppressed as i64);
        seed::suppressions(&db, SENDER, TAG, among, spec.suppressions).await?;
    }
    sqlx::raw_sql("VACUUM (ANALYZE) contacts, contact_words, contact_vocabulary, suppressions").execute(&db).await?;
    db.close().await;
    let dkim = match variant.dkim() {
        Some(algorithm) => Some(dkim_key(&spec.borcelle, keys, algorithm).await?),
        None => None,
    };
    let stem = spec.serve_log.file_stem().and_then(|s| s.to_str()).unwrap_or("borcelle-bench-serve");
    let log = spec.serve_log.with_file_name(format!("{stem}-consent-{}.log", variant.name()));
    let config = ServeConfig {
        database_url: url,
        port: server::free_port()?,
        smtp_port,
        delivery_concurrency: spec.delivery_concurrency,
        smtp_pool_size: spec.smtp_pool_size,
        log: log.clone(),
        dkim,
        inbound: None,
    };
    let serve = Serve::start(&spec.borcelle, &config).await?;
    let session = Session::login(serve.addr, SENDER).await?;
    Ok(Side { variant, serve, session, database, log, suppressed })
}

/// `borcelle dkim generate --algorithm <algorithm>` into `dir`.
async fn dkim_key(borcelle: &Path, dir: &Path, algorithm: &str) -> anyhow::Result<ServeDkim> {
    let key_file = dir.join(format!("{algorithm}.pem"));
    // The command never overwrites a key.
    let _ = std::fs::remove_file(&key_file);
    let output = Command::new(borcelle)
        .args(["dkim", "generate", "--selector", SELECTOR, "--domain", MAIL_DOMAIN, "--algorithm", algorithm])
        .arg("--out")
        .arg(&key_file)
        .output()
        .await
        .with_context(|| format!("running {} dkim generate", borcelle.display()))?;
    if !output.status.success() {
        bail!("borcelle dkim generate --algorithm {algorithm} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(ServeDkim { selector: SELECTOR.to_owned(), key_file })
}

/// A warm-up send per variant, then the interleaved rounds.
async fn measure(spec: &ConsentSpec, sides: &[Side], sink: &Sink) -> anyhow::Result<Vec<ConsentRun>> {
    let timeout = Duration::from_secs(120).max(Duration::from_millis(spec.messages as u64 * 20));
    for side in sides {
        let content = side.variant.content();
        delivery::end_to_end(&side.session, WARMUP_TAG, content, WARMUP_MESSAGES, timeout)
            .await
            .with_context(|| format!("warming up {} (serve's log: {})", side.variant.label(), side.log.display()))?;
    }
    let mut runs = Vec::new();
    for round in 1..=spec.rounds {
        for side in sides {
            let run = measure_one(side, sink, round, spec.messages, timeout).await?;
            println!(
                "    round {round}, {}: {} recipients/s ({} sent, {} suppressed in {:.2} s), serve CPU {:.0} %, load \
                 {:.2}",
                side.variant.label(),
                crate::report::thousands(run.run.per_sec()),
                run.run.sent(),
                run.run.suppressed,
                run.run.elapsed.as_secs_f64(),
                run.run.server_cpu_pct.unwrap_or(0.0),
                run.load
            );
            runs.push(run);
        }
    }
    Ok(runs)
}

async fn measure_one(
    side: &Side,
    sink: &Sink,
    round: usize,
    messages: usize,
    timeout: Duration,
) -> anyhow::Result<ConsentRun> {
    let (accepted, signed) = (sink.accepted().unwrap_or(0), sink.signed().unwrap_or(0));
    let cpu = CpuMeter::start(side.serve.pid, &side.database);
    let mut run = delivery::end_to_end(&side.session, TAG, side.variant.content(), messages, timeout)
        .await
        .with_context(|| format!("{}, round {round} (serve's log: {})", side.variant.label(), side.log.display()))?;
    let cpu = cpu.finish();
    run.server_cpu_pct = Some(cpu.server_pct);
    run.postgres_cpu_pct = Some(cpu.postgres_pct);
    check_sample(side.variant, &sink.last_headers().unwrap_or_default())?;
    Ok(ConsentRun {
        variant: side.variant,
        round,
        run,
        load: cpu.load_at_start,
        machine_pct: cpu.machine_pct,
        accepted: sink.accepted().unwrap_or(0) - accepted,
        signed: sink.signed().unwrap_or(0) - signed,
        expected_suppressed: side.suppressed,
    })
}

/// The last message the sink received is what the variant sends: personalised and signed with
/// the right algorithm, or neither.
fn check_sample(variant: Variant, headers: &str) -> anyhow::Result<()> {
    let lower = headers.to_ascii_lowercase();
    let subject = headers.lines().find_map(|line| line.strip_prefix("Subject: ")).unwrap_or_default();
    let signed_right = match variant.dkim() {
        None => !lower.contains("\ndkim-signature:") && !lower.starts_with("dkim-signature:"),
        Some(algorithm) => lower.contains(&format!("a={algorithm}-sha256;")),
    };
    let personalised = subject.strip_prefix("Hello ").is_some_and(|name| name.starts_with(char::is_alphabetic));
    ensure!(signed_right, "{}: the sink's last message is not signed as expected:\n{headers}", variant.label());
    ensure!(
        personalised == variant.consent() && !subject.contains("{{"),
        "{}: the sink's last message has the subject {subject:?}",
        variant.label()
    );
    Ok(())
}
