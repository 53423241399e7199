//! The command line and the order of the run: database and users, `serve`, the load phases (each
//! of create, list and autocomplete followed by pgbench running the same SQL), the seed,
//! autocomplete, delivery against each sink, contacts during a large send, the consent overhead,
//! inbound replies, then the table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sqlx::PgPool;

use crate::consent::{self, Comparison, ConsentSpec, Variant};
use crate::delivery::{self, PLAIN, Run};
use crate::during_send::{self, SendSpec};
use crate::inbound::{self, ClientKind, InboundRun, InboundSpec};
use crate::load::{self, LoadSpec, Target, Workload};
use crate::pgbench::{self, report::DatabaseLimits, scripts};
use crate::probe::{self, CpuMeter, DbCounters, RssMonitor};
use crate::report::{Delivery, Phase, Report, thousands};
use crate::seed;
use crate::server::{self, Serve, ServeConfig, Session};
use crate::sink::{Sink, SinkKind};
use crate::wire::{self, WireReport, WireSpec};
use crate::workloads::{Autocomplete, CreateContacts, ListContacts, ListPages};

const CREATOR: &str = "creator@bench.example";
const READER: &str = "reader@bench.example";
const SENDER: &str = "sender@bench.example";
/// Messages sent (raw and end-to-end) before each sink's measured rounds.
const WARMUP_MESSAGES: usize = 200;

/// Load benchmark of `borcelle serve` (release build): prints one table and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "borcelle-bench", version, about, long_about = None)]
pub struct Args {
    /// The `borcelle` binary to run (a release build).
    #[arg(long, default_value = "target/release/borcelle")]
    borcelle: PathBuf,
    /// PostgreSQL server the benchmark database is created on (URL without a database).
    #[arg(long, env = "BORCELLE_BENCH_POSTGRES", default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Name of the benchmark database; dropped and created afresh.
    #[arg(long, default_value = "borcelle_bench")]
    database: String,
    /// Keep the database afterwards (to EXPLAIN ANALYZE against the seed).
    #[arg(long)]
    keep_database: bool,
    /// Measured seconds of each load phase.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Unmeasured seconds before each load phase.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Concurrent connections for contact create and list.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Concurrent connections for autocomplete (people typing at once).
    #[arg(long, default_value_t = 4)]
    autocomplete_connections: usize,
    /// Contacts of the user that list and autocomplete run against.
    #[arg(long, default_value_t = 100_000)]
    contacts: i64,
    /// Messages per delivery run.
    #[arg(long, default_value_t = 5000)]
    messages: usize,
    /// Delivery runs (raw, then end-to-end) per sink; the table shows the medians.
    #[arg(long, default_value_t = 3)]
    delivery_rounds: usize,
    /// SMTP sinks to deliver to, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SinkKind::Aiosmtpd, SinkKind::Rust])]
    sinks: Vec<SinkKind>,
    /// Sends in flight at once: serve's delivery engine and the raw baseline alike.
    #[arg(long, env = "BORCELLE_DELIVERY_CONCURRENCY", default_value_t = 256)]
    delivery_concurrency: usize,
    /// Pooled SMTP connections: serve's and the raw baseline's alike.
    #[arg(long, env = "BORCELLE_SMTP_POOL_SIZE", default_value_t = 16)]
    smtp_pool_size: u32,
    /// Where to write the report (Markdown); not written when absent.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Wait (up to --load-wait-secs) for the 1-minute load average to fall below this first.
    #[arg(long, default_value_t = 1.5)]
    max_load: f64,
    #[arg(long, default_value_t = 0)]
    load_wait_secs: u64,
    /// Run only contact create and list (and the seed that list reads), print their figures and
    /// report nothing to --output: a quick run for work on those two phases.
    #[arg(long)]
    contacts_only: bool,
    /// Run only the consent comparison (end-to-end delivery with personalisation, suppression
    /// checks and DKIM against the same without, interleaved rounds of --messages each) and, with
    /// --output, replace its row and section in that file, keeping the rest.
    #[arg(long, conflicts_with = "contacts_only")]
    consent_only: bool,
    /// Run only the inbound phase (replies sent over SMTP to serve's receiver: replies accepted per
    /// second, and the time from each reply's DATA to its event on the owner's socket) and, with
    /// --output, replace its rows and section in that file, keeping the rest.
    #[arg(long, conflicts_with_all = ["contacts_only", "consent_only"])]
    inbound_only: bool,
    /// Run only the wire phase (end-to-end delivery into Postfix's smtp-sink with personalisation,
    /// suppression checks and DKIM on and off, against smtp-source's rate into the same sink, and
    /// the large note) and, with --output, replace its rows and section in that file.
    #[arg(long, conflicts_with_all = ["contacts_only", "consent_only", "inbound_only"])]
    wire_only: bool,
    /// Recipients of each send of the wire phase.
    #[arg(long, default_value_t = 50_000)]
    wire_messages: usize,
    /// Rounds of the wire phase (each: the ceiling, then every variant).
    #[arg(long, default_value_t = 2)]
    wire_rounds: usize,
    /// Recipients of the wire phase's large note (0: not run).
    #[arg(long, default_value_t = 1_000_000)]
    wire_note: usize,
    /// Serve's BORCELLE_DELIVERY_CONCURRENCY in the wire phase.
    #[arg(long, default_value_t = 256)]
    wire_concurrency: usize,
    /// Serve's BORCELLE_SMTP_POOL_SIZE in the wire phase.
    #[arg(long, default_value_t = 16)]
    wire_pool_size: u32,
    /// Connections smtp-source keeps open for the ceiling.
    #[arg(long, default_value_t = 16)]
    wire_source_sessions: usize,
    /// Replies of the inbound phase (after a 200-reply warm-up).
    #[arg(long, default_value_t = 5000)]
    inbound_replies: usize,
    /// SMTP clients sending replies at once in the inbound phase, each on a connection of its own.
    #[arg(long, default_value_t = 32)]
    inbound_clients: usize,
    /// The SMTP client of the inbound phase: lettre (timed from the start of each send), or the
    /// bench's own minimal client with TCP_NODELAY (timed from the end of DATA too).
    #[arg(long, value_enum, default_value_t = ClientKind::Lettre)]
    inbound_client: ClientKind,
    /// Contacts (ledger rows) the inbound phase's replies answer, in turn.
    #[arg(long, default_value_t = 10)]
    inbound_contacts: usize,
    /// Where the inbound phase's serve keeps each message's raw bytes (local storage): a directory
    /// made under this one and removed afterwards. Default: the system's temporary directory.
    #[arg(long)]
    inbound_storage_dir: Option<PathBuf>,
    /// Entries on the consent run's suppression list.
    #[arg(long, default_value_t = 10_000)]
    consent_suppressions: i64,
    /// Recipients of the consent run on its suppression list. Default: 1 % of --messages.
    #[arg(long)]
    consent_suppressed: Option<usize>,
    /// Variants of the consent comparison run besides plain and rsa, printed but not judged:
    /// ed25519 (B with an Ed25519 key), unsigned (B without DKIM); the flag alone for none.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0.., default_values_t = [Variant::Ed25519])]
    consent_also: Vec<Variant>,
    /// Where serve's log goes.
    #[arg(long, default_value = "target/borcelle-bench-serve.log")]
    serve_log: PathBuf,
    /// The pgbench that runs serve's SQL beside the create, list and autocomplete phases (with
    /// --contacts-only too: create and list).
    #[arg(long, default_value = "pgbench")]
    pgbench: PathBuf,
    /// Recipients of the send during which list and create run again, after the delivery phases
    /// (not with --contacts-only); 0 for none.
    #[arg(long, default_value_t = 100_000)]
    send_recipients: i64,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    crate::run_to_exit(run(args))
}

pub(crate) fn say(what: &str) {
    let (one, _, _) = probe::load_average();
    println!("==> {what} (load {one:.2})");
}

async fn wait_for_quiet_machine(max_load: f64, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    while probe::load_average().0 >= max_load && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Runs a load phase and records serve's CPU and memory during it.
pub(crate) async fn phase<W: Workload>(
    name: &'static str,
    db: &PgPool,
    serve: &Serve,
    rss: &RssMonitor,
    target: &Target,
    workload: W,
    spec: LoadSpec,
) -> anyhow::Result<Phase> {
    say(&format!(
        "{name}: {} connections, {} s + {} s",
        spec.connections,
        spec.warmup.as_secs(),
        spec.duration.as_secs()
    ));
    rss.take_phase_peak();
    let counters = DbCounters::read(db).await?;
    let cpu = CpuMeter::start(serve.pid, &serve.database);
    let stats = load::run(target, Arc::new(workload), spec).await?;
    let cpu = cpu.finish();
    println!(
        "    {} req/s, p50 {:?}, p90 {:?}, p99 {:?}, {} errors; CPU serve {:.0} %, PostgreSQL {:.0} %, bench {:.0} %, \
         machine {:.0} %",
        thousands(stats.per_sec()),
        stats.percentile(50.0),
        stats.percentile(90.0),
        stats.percentile(99.0),
        stats.errors,
        cpu.server_pct,
        cpu.postgres_pct,
        cpu.client_pct,
        cpu.machine_pct
    );
    println!("    {}", counters.per_request(&DbCounters::read(db).await?, stats.sent));
    if let Some(err) = &stats.first_error {
        println!("    first error: {}", err.chars().take(300).collect::<String>());
    }
    Ok(Phase { name, spec, stats, cpu, rss_peak_kib: rss.take_phase_peak() })
}

async fn run(args: Args) -> anyhow::Result<bool> {
    wait_for_quiet_machine(args.max_load, Duration::from_secs(args.load_wait_secs)).await;
    if args.consent_only {
        return consent_alone(&args).await;
    }
    if args.inbound_only {
        return inbound_alone(&args).await;
    }
    if args.wire_only {
        return wire_alone(&args).await;
    }
    let load_at_start = probe::load_average();
    let database_url = format!("{}/{}", args.postgres, args.database);
    say(&format!("fresh database {}", args.database));
    server::drop_database(&args.postgres, &args.database).await?;
    for (email, name) in [(CREATOR, "Bench Creator"), (READER, "Bench Reader"), (SENDER, "Bench Sender")] {
        server::create_user(&args.borcelle, &database_url, email, name).await?;
    }
    let db = PgPool::connect(&database_url).await.context("connecting to the benchmark database")?;
    let postgres_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&db).await?;
    let (creator_id, reader_id) = (pgbench::owner_id(&db, CREATOR).await?, pgbench::owner_id(&db, READER).await?);

    let smtp_port = server::free_port()?;
    let first_sink = *args.sinks.first().context("--sinks names no sink")?;
    let mut sink = Sink::start(first_sink, smtp_port).await?;
    let config = ServeConfig {
        database_url: database_url.clone(),
        port: server::free_port()?,
        smtp_port,
        delivery_concurrency: args.delivery_concurrency,
        smtp_pool_size: args.smtp_pool_size,
        log: args.serve_log.clone(),
        dkim: None,
        inbound: None,
    };
    say(&format!("starting {} serve on port {}", args.borcelle.display(), config.port));
    let serve = Serve::start(&args.borcelle, &config).await?;
    let rss = RssMonitor::start(serve.pid);
    let creator = Session::login(serve.addr, CREATOR).await?;
    let reader = Session::login(serve.addr, READER).await?;
    let sender = Session::login(serve.addr, SENDER).await?;

    let spec = |connections| LoadSpec {
        connections,
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let as_creator = Target::new(serve.addr, &creator.cookie, &creator.csrf)?;
    let create =
        phase("contact create", &db, &serve, &rss, &as_creator, CreateContacts { run: run_id }, spec(args.connections))
            .await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let alone = |connections: usize| pgbench::Spec {
        pgbench: &args.pgbench,
        database_url: &database_url,
        database: &args.database,
        load: spec(connections),
        threads: cores.min(connections).max(1),
    };
    let create_alone = pgbench::beside(&alone(args.connections), &db, Ok(scripts::create(creator_id))).await;
    println!("    deleted pgbench's {} contacts", pgbench::delete_created(&db, creator_id).await?);

    say(&format!("seeding {} contacts with bulk SQL", thousands(args.contacts as f64)));
    let seed_time = seed::address_book(&db, READER, args.contacts).await?;
    if !args.contacts_only {
        seed::recipients(&db, SENDER, "warmup", WARMUP_MESSAGES as i64).await?;
        seed::recipients(&db, SENDER, "bench", args.messages as i64).await?;
    }
    seed::analyze(&db).await?;
    let seed_rss_peak_kib = rss.take_phase_peak();
    println!("    {:.1} s", seed_time.as_secs_f64());

    let as_reader = Target::new(serve.addr, &reader.cookie, &reader.csrf)?;
    let list =
        phase("contact list, 50 a page", &db, &serve, &rss, &as_reader, ListContacts, spec(args.connections)).await?;
    let list_alone = pgbench::beside(&alone(args.connections), &db, scripts::list(reader_id, args.contacts)).await;
    let mut database_limits =
        DatabaseLimits { create: create_alone, list: list_alone, autocomplete: None, autocomplete_prepared: None };
    let pages = phase(
        "contacts table page (HTML), 25 a page",
        &db,
        &serve,
        &rss,
        &as_reader,
        ListPages,
        spec(args.connections),
    )
    .await?;
    if args.contacts_only {
        let row = crate::report::pages_row(&pages, args.contacts);
        let alone = [database_limits.create_row(&create), database_limits.list_row(&list)];
        for row in std::iter::once(&row).chain(&alone) {
            println!(
                "\n{}: {} (target {}, {})",
                row.metric,
                row.measured,
                row.target,
                if row.pass { "pass" } else { "FAIL" }
            );
        }
        sink.stop().await;
        drop(rss);
        serve.stop().await?;
        db.close().await;
        if !args.keep_database {
            server::drop_database(&args.postgres, &args.database).await?;
        }
        println!("\n--contacts-only: no report written (load at the end {:.2})", probe::load_average().0);
        return Ok(create.stats.per_sec() >= 2000.0
            && list.stats.per_sec() >= 5000.0
            && row.pass
            && alone.iter().all(|r| r.pass));
    }
    let autocomplete =
        phase("autocomplete", &db, &serve, &rss, &as_reader, Autocomplete, spec(args.autocomplete_connections)).await?;
    let (extended, prepared) =
        pgbench::beside_autocomplete(&alone(args.autocomplete_connections), &db, reader_id).await;
    (database_limits.autocomplete, database_limits.autocomplete_prepared) = (Some(extended), prepared);

    let mut deliveries = Vec::new();
    for (i, kind) in args.sinks.iter().copied().enumerate() {
        if i > 0 {
            // Same port: serve's pooled connections to the old sink fail their NOOP and reconnect.
            sink.stop().await;
            sink = Sink::start(kind, smtp_port).await?;
        }
        deliveries.push(deliver(&args, kind, &sink, &serve, &rss, &sender, smtp_port).await?);
    }
    let during_send = if args.send_recipients > 0 {
        if args.sinks.last() != Some(&SinkKind::Rust) {
            sink.stop().await;
            sink = Sink::start(SinkKind::Rust, smtp_port).await?;
        }
        let send = SendSpec {
            db: &db,
            serve: &serve,
            rss: &rss,
            sink: &sink,
            sender: &sender,
            sender_email: SENDER,
            reader: &as_reader,
            creator: &as_creator,
            load: spec(args.connections),
            recipients: args.send_recipients,
        };
        // A failure here costs these rows only.
        Some(during_send::run(&send).await.map_err(|err| {
            eprintln!("error: contacts during a large send failed: {err:#}");
            format!("{err:#}")
        }))
    } else {
        None
    };

    let (rss_hwm_kib, rss_sampled_kib) = rss.peak();
    drop(rss);
    // Serve first: it may still be delivering the large send.
    serve.stop().await?;
    sink.stop().await;
    db.close().await;
    if !args.keep_database {
        server::drop_database(&args.postgres, &args.database).await?;
    }
    // A failure here costs this row only, not the figures measured before it.
    let consent = consent_phase(&args).await.map_err(|err| {
        eprintln!("error: the consent comparison failed: {err:#}");
        format!("{err:#}")
    });
    let inbound = inbound_phase(&args).await.map_err(|err| {
        eprintln!("error: the inbound phase failed: {err:#}");
        format!("{err:#}")
    });
    let wire = wire_phase(&args).await.map_err(|err| {
        eprintln!("error: the wire phase failed: {err:#}");
        format!("{err:#}")
    });
    let load_at_end = probe::load_average();
    let conditions =
        crate::conditions::collect(&args_summary(&args), load_at_start, load_at_end, &postgres_version).await;
    let report = Report {
        conditions,
        create,
        list,
        pages,
        autocomplete,
        seed_contacts: args.contacts,
        seed_time,
        seed_rss_peak_kib,
        deliveries,
        rss_hwm_kib,
        rss_sampled_kib,
        consent,
        inbound,
        database_limits,
        during_send,
        send_recipients: args.send_recipients,
    };
    println!("\n{}", report.text_table());
    // The wire phase's rows and section go into the written report as `--wire-only` puts them.
    let wire_pass = match &wire {
        Ok(wire) => {
            for row in wire.rows() {
                println!(
                    "{}: {} (target {}): {}",
                    row.metric,
                    row.measured,
                    row.target,
                    crate::report::verdict(row.pass)
                );
            }
            wire.pass()
        }
        Err(_) => false,
    };
    if let Some(path) = &args.output {
        let mut text = report.markdown();
        match &wire {
            Ok(wire) => text = wire::splice(&text, wire),
            Err(error) => text.push_str(&format!("\n## Delivery at the speed of the wire\n\nNot measured: {error}\n")),
        }
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("written to {}", path.display());
    }
    Ok(report.all_pass() && wire_pass)
}

/// Warm-up, then `rounds` × (raw baseline, end-to-end) against one sink.
async fn deliver(
    args: &Args,
    kind: SinkKind,
    sink: &Sink,
    serve: &Serve,
    rss: &RssMonitor,
    sender: &Session,
    smtp_port: u16,
) -> anyhow::Result<Delivery> {
    say(&format!(
        "delivery to {}: {} messages × {} rounds, concurrency {}, SMTP pool {}",
        kind.short(),
        args.messages,
        args.delivery_rounds,
        args.delivery_concurrency,
        args.smtp_pool_size
    ));
    rss.take_phase_peak();
    let timeout = Duration::from_secs(120).max(Duration::from_millis(args.messages as u64 * 20));
    let transport = Arc::new(delivery::transport(smtp_port, args.smtp_pool_size)?);
    let accepted_before = sink.accepted();
    delivery::baseline(transport.clone(), WARMUP_MESSAGES, args.delivery_concurrency, "warmup").await?;
    delivery::end_to_end(sender, "warmup", PLAIN, WARMUP_MESSAGES, timeout).await?;
    let mut result =
        Delivery { sink: kind, baseline: Vec::new(), end_to_end: Vec::new(), verified: None, rss_peak_kib: 0 };
    for round in 0..args.delivery_rounds {
        let sink_cpu = sink.pid().map(probe::process_cpu_secs);
        let mut raw = delivery::baseline(transport.clone(), args.messages, args.delivery_concurrency, "bench").await?;
        raw.sink_cpu_pct = sink_cpu_pct(sink, sink_cpu, &raw);
        let sink_cpu = sink.pid().map(probe::process_cpu_secs);
        let cpu = CpuMeter::start(serve.pid, &serve.database);
        let mut e2e = delivery::end_to_end(sender, "bench", PLAIN, args.messages, timeout).await?;
        let cpu = cpu.finish();
        e2e.server_cpu_pct = Some(cpu.server_pct);
        e2e.postgres_cpu_pct = Some(cpu.postgres_pct);
        e2e.sink_cpu_pct = sink_cpu_pct(sink, sink_cpu, &e2e);
        println!(
            "    round {}: raw {} emails/s, end-to-end {} emails/s",
            round + 1,
            thousands(raw.per_sec()),
            thousands(e2e.per_sec())
        );
        result.baseline.push(raw);
        result.end_to_end.push(e2e);
    }
    if let (Some(before), Some(after)) = (accepted_before, sink.accepted()) {
        let sent = 2 * (WARMUP_MESSAGES + args.messages * args.delivery_rounds) as u64;
        result.verified = Some((after - before, sent));
    }
    result.rss_peak_kib = rss.take_phase_peak();
    Ok(result)
}

/// The consent comparison on its own databases and servers (the main ones are stopped by then).
async fn consent_phase(args: &Args) -> anyhow::Result<Comparison> {
    say(&format!(
        "consent overhead: {} recipients × {} interleaved rounds of A (plain) and B (personalised, {} suppressions \
         of which {} recipients, DKIM RSA-2048{})",
        thousands(args.messages as f64),
        args.delivery_rounds,
        thousands(args.consent_suppressions as f64),
        args.consent_suppressed.unwrap_or(args.messages / 100),
        args.consent_also.iter().map(|v| format!("; and {}", v.label())).collect::<String>()
    ));
    let spec = ConsentSpec {
        borcelle: args.borcelle.clone(),
        postgres: args.postgres.clone(),
        database: args.database.clone(),
        keep_databases: args.keep_database,
        messages: args.messages,
        rounds: args.delivery_rounds,
        suppressions: args.consent_suppressions,
        suppressed_recipients: args.consent_suppressed.unwrap_or(args.messages / 100),
        also: args.consent_also.clone(),
        delivery_concurrency: args.delivery_concurrency,
        smtp_pool_size: args.smtp_pool_size,
        serve_log: args.serve_log.clone(),
    };
    let comparison = consent::run(&spec).await?;
    println!("\n{}", comparison.text());
    Ok(comparison)
}

/// `--consent-only`: the comparison, printed and spliced into --output.
async fn consent_alone(args: &Args) -> anyhow::Result<bool> {
    let comparison = consent_phase(args).await?;
    if let Some(path) = &args.output {
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(anyhow::Error::new(err).context(format!("reading {}", path.display()))),
        };
        std::fs::write(path, consent::splice(&existing, &comparison))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("the consent row and section written to {}", path.display());
    }
    Ok(comparison.pass())
}

/// Delivery into Postfix's smtp-sink against smtp-source's ceiling, and the large note.
async fn wire_phase(args: &Args) -> anyhow::Result<WireReport> {
    say(&format!(
        "wire: {} rounds of {} recipients per variant into Postfix's smtp-sink, smtp-source's ceiling beside each; \
         a note to {}",
        args.wire_rounds,
        thousands(args.wire_messages as f64),
        thousands(args.wire_note as f64)
    ));
    let spec = WireSpec {
        borcelle: args.borcelle.clone(),
        postgres: args.postgres.clone(),
        database: args.database.clone(),
        keep_databases: args.keep_database,
        messages: args.wire_messages,
        rounds: args.wire_rounds,
        million: args.wire_note,
        delivery_concurrency: args.wire_concurrency,
        smtp_pool_size: args.wire_pool_size,
        source_sessions: args.wire_source_sessions,
        serve_log: args.serve_log.clone(),
    };
    wire::run(&spec).await
}

/// `--wire-only`: the wire phase, printed and spliced into --output.
async fn wire_alone(args: &Args) -> anyhow::Result<bool> {
    let report = wire_phase(args).await?;
    for row in report.rows() {
        println!("{}: {} (target {}): {}", row.metric, row.measured, row.target, crate::report::verdict(row.pass));
    }
    if let Some(path) = &args.output {
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(anyhow::Error::new(err).context(format!("reading {}", path.display()))),
        };
        std::fs::write(path, wire::splice(&existing, &report))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("the wire rows and section written to {}", path.display());
    }
    Ok(report.pass())
}

/// Inbound replies on their own database and server (the main ones are stopped by then).
async fn inbound_phase(args: &Args) -> anyhow::Result<InboundRun> {
    say(&format!(
        "inbound replies: {} over SMTP from {} {:?} clients to serve's receiver, each timed to its event on the \
         owner's socket",
        thousands(args.inbound_replies as f64),
        args.inbound_clients,
        args.inbound_client
    ));
    let spec = InboundSpec {
        borcelle: args.borcelle.clone(),
        postgres: args.postgres.clone(),
        database: args.database.clone(),
        keep_database: args.keep_database,
        replies: args.inbound_replies,
        clients: args.inbound_clients,
        client: args.inbound_client,
        contacts: args.inbound_contacts,
        serve_log: args.serve_log.clone(),
        storage_parent: args.inbound_storage_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    inbound::run(&spec).await
}

/// `--inbound-only`: the inbound phase, printed and spliced into --output.
async fn inbound_alone(args: &Args) -> anyhow::Result<bool> {
    let run = inbound_phase(args).await?;
    if let Some(path) = &args.output {
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(anyhow::Error::new(err).context(format!("reading {}", path.display()))),
        };
        std::fs::write(path, inbound::splice(&existing, &run))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("the inbound rows and section written to {}", path.display());
    }
    Ok(run.pass())
}

fn sink_cpu_pct(sink: &Sink, before: Option<f64>, run: &Run) -> Option<f64> {
    let (pid, before) = (sink.pid()?, before?);
    Some(100.0 * (probe::process_cpu_secs(pid) - before) / run.elapsed.as_secs_f64().max(1e-9))
}

fn args_summary(args: &Args) -> Vec<(String, String)> {
    let sinks: Vec<String> = args.sinks.iter().map(|s| format!("{} ({})", s.short(), s.describe())).collect();
    vec![
        (
            "load phases".to_owned(),
            format!(
                "{} s warm-up + {} s measured each; create and list on {} connections, autocomplete on {}; closed \
                 loop (each connection sends its next request when the previous answer is read), HTTP/1.1 keep-alive \
                 over loopback from the bench process on the same machine",
                args.warmup_secs, args.duration_secs, args.connections, args.autocomplete_connections
            ),
        ),
        (
            "delivery".to_owned(),
            format!(
                "{} messages per run, {} rounds per sink after a {WARMUP_MESSAGES}-message warm-up each way; \
                 BORCELLE_DELIVERY_CONCURRENCY={} and BORCELLE_SMTP_POOL_SIZE={} for serve, and the same \
                 concurrency and pool size for the raw baseline (crm-api's SmtpTransport, plain SMTP)",
                args.messages, args.delivery_rounds, args.delivery_concurrency, args.smtp_pool_size
            ),
        ),
        ("SMTP sinks".to_owned(), sinks.join("; ")),
    ]
}
