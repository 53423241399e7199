//! Delivery at the speed of the wire (issue #17): end-to-end delivery (one `POST
//! /api/v1/messages` to a tag, the ledger, the engine, SMTP, `sent` recorded in PostgreSQL) into
//! Postfix's `smtp-sink`, against the wire's ceiling measured in the same run with Postfix's
//! `smtp-source` into the same sink; with personalisation, the suppression list and DKIM on (RSA-2048
//! and Ed25519) and with them off; then one note to 1,000,000 contacts: time to queue, time to
//! deliver, serve's peak RSS. Every run checks that the sink counted exactly the messages the
//! ledger says were sent.

mod postfix;
mod report;
mod signing;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};

use crate::consent::{self, ConsentSpec, Side, Variant};
use crate::delivery::{self, Run};
use crate::probe::{self, CpuMeter, RssMonitor};
use crate::server;

pub use postfix::Ceiling;
pub use report::{WireReport, WireRun, splice};
pub use signing::Signing;

/// What the phase runs with.
pub struct WireSpec {
    pub borcelle: PathBuf,
    /// PostgreSQL server URL without a database.
    pub postgres: String,
    /// Prefix of the databases (one per variant), dropped and created afresh.
    pub database: String,
    pub keep_databases: bool,
    /// Recipients of each measured send.
    pub messages: usize,
    pub rounds: usize,
    /// Recipients of the large note (0: not run).
    pub million: usize,
    pub delivery_concurrency: usize,
    pub smtp_pool_size: u32,
    /// Connections `smtp-source` keeps open.
    pub source_sessions: usize,
    pub serve_log: PathBuf,
}

impl WireSpec {
    /// The consent phase's setup (a database, sender, recipients, suppression list, DKIM key and
    /// `serve` per variant) for `messages` recipients.
    fn sides(&self, database: String, messages: usize) -> ConsentSpec {
        ConsentSpec {
            borcelle: self.borcelle.clone(),
            postgres: self.postgres.clone(),
            database,
            keep_databases: self.keep_databases,
            messages,
            rounds: self.rounds,
            suppressions: 10_000,
            suppressed_recipients: messages / 100,
            also: Vec::new(),
            delivery_concurrency: self.delivery_concurrency,
            smtp_pool_size: self.smtp_pool_size,
            serve_log: self.serve_log.clone(),
        }
    }
}

/// How long the signer alone signs, per algorithm.
const SIGNING_TIME: Duration = Duration::from_secs(3);

/// The variants measured: off (A), on with RSA-2048, on with Ed25519.
const VARIANTS: [Variant; 3] = [Variant::Plain, Variant::Rsa, Variant::Ed25519];

pub async fn run(spec: &WireSpec) -> anyhow::Result<WireReport> {
    let load_at_start = probe::load_average();
    let keys = std::env::temp_dir().join(format!("borcelle-bench-wire-dkim-{}", std::process::id()));
    std::fs::create_dir_all(&keys).with_context(|| format!("creating {}", keys.display()))?;
    let sink = postfix::PostfixSink::start(server::free_port()?).await?;
    let result = measure(spec, &sink, &keys).await;
    sink.stop().await;
    let _ = std::fs::remove_dir_all(&keys);
    let (ceilings, signing, runs, million) = result?;
    Ok(WireReport {
        ceilings,
        signing,
        runs,
        million,
        spec_messages: spec.messages,
        delivery_concurrency: spec.delivery_concurrency,
        smtp_pool_size: spec.smtp_pool_size,
        date: crate::conditions::now(),
        commit: crate::conditions::commit().await,
        cpu: crate::conditions::cpu(),
        load_at_start,
        load_at_end: probe::load_average(),
    })
}

type Measured = (Vec<Ceiling>, Vec<Signing>, Vec<WireRun>, Option<WireRun>);

async fn measure(spec: &WireSpec, sink: &postfix::PostfixSink, keys: &std::path::Path) -> anyhow::Result<Measured> {
    let setup = spec.sides(format!("{}_wire", spec.database), spec.messages);
    let mut sides = Vec::new();
    let mut started = Ok(());
    for variant in VARIANTS {
        crate::cli::say(&format!("wire: setting up {} ({} recipients)", variant.label(), spec.messages));
        match consent::start(&setup, variant, sink.port, keys).await {
            Ok(side) => sides.push(side),
            Err(err) => {
                started = Err(err);
                break;
            }
        }
    }
    let measured = match started {
        Ok(()) => rounds(spec, sink, &sides, keys).await,
        Err(err) => Err(err),
    };
    stop(spec, sides).await?;
    let (ceilings, signing, runs) = measured?;
    let million = if spec.million > 0 { Some(million(spec, sink, keys).await?) } else { None };
    Ok((ceilings, signing, runs, million))
}

/// Stops the servers and drops their databases.
async fn stop(spec: &WireSpec, sides: Vec<Side>) -> anyhow::Result<()> {
    for side in sides {
        side.serve.stop().await?;
        if !spec.keep_databases {
            server::drop_database(&spec.postgres, &side.database).await?;
        }
    }
    Ok(())
}

/// A warm-up per variant and the signing ceiling of each signed one, then per round: the wire's
/// ceiling, then each variant.
async fn rounds(
    spec: &WireSpec,
    sink: &postfix::PostfixSink,
    sides: &[Side],
    keys: &std::path::Path,
) -> anyhow::Result<(Vec<Ceiling>, Vec<Signing>, Vec<WireRun>)> {
    let timeout = Duration::from_secs(120).max(Duration::from_millis(spec.messages as u64 * 5));
    for side in sides {
        let content = side.variant.content();
        delivery::end_to_end(&side.session, consent::WARMUP_TAG, content, consent::WARMUP_MESSAGES, timeout)
            .await
            .with_context(|| format!("warming up {} (serve's log: {})", side.variant.label(), side.log.display()))?;
    }
    let mut signing = Vec::new();
    for side in sides {
        let Some(algorithm) = side.variant.dkim() else { continue };
        let key_file = keys.join(format!("{algorithm}.pem"));
        let variant = side.variant;
        let measured =
            tokio::task::spawn_blocking(move || signing::measure(variant, &key_file, SIGNING_TIME)).await??;
        println!(
            "    {}: the signer alone makes {} signatures/s ({} in {:.2} s on {} threads)",
            side.variant.label(),
            crate::report::thousands(measured.per_sec()),
            measured.signatures,
            measured.elapsed.as_secs_f64(),
            measured.threads
        );
        signing.push(measured);
    }
    let (mut ceilings, mut runs) = (Vec::new(), Vec::new());
    for round in 1..=spec.rounds {
        let source_messages = (spec.messages as u64 * 2).max(100_000);
        let ceiling = postfix::ceiling(sink, source_messages, spec.source_sessions).await?;
        println!(
            "    round {round}, smtp-source: {} messages/s ({} in {:.2} s, {} sessions)",
            crate::report::thousands(ceiling.per_sec()),
            ceiling.messages,
            ceiling.elapsed.as_secs_f64(),
            ceiling.sessions
        );
        ceilings.push(ceiling);
        for side in sides {
            let run = send(side, sink, round, spec.messages, timeout).await?;
            println!(
                "    round {round}, {}: {} emails/s ({} sent, {} suppressed in {:.2} s; queued in {:.2} s), serve CPU \
                 {:.0} %, PostgreSQL {:.0} %",
                side.variant.label(),
                crate::report::thousands(run.run.per_sec()),
                run.run.sent(),
                run.run.suppressed,
                run.run.elapsed.as_secs_f64(),
                run.run.queued.as_secs_f64(),
                run.run.server_cpu_pct.unwrap_or(0.0),
                run.run.postgres_cpu_pct.unwrap_or(0.0),
            );
            runs.push(run);
        }
    }
    Ok((ceilings, signing, runs))
}

/// One send to the variant's tag, timed until the task is done; the sink's count is checked
/// against the ledger's.
async fn send(
    side: &Side,
    sink: &postfix::PostfixSink,
    round: usize,
    messages: usize,
    timeout: Duration,
) -> anyhow::Result<WireRun> {
    let before = sink.accepted()?;
    let cpu = CpuMeter::start(side.serve.pid, &side.database);
    let rss = RssMonitor::start(side.serve.pid);
    let mut run = delivery::end_to_end(&side.session, consent::TAG, side.variant.content(), messages, timeout)
        .await
        .with_context(|| format!("{}, round {round} (serve's log: {})", side.variant.label(), side.log.display()))?;
    let cpu = cpu.finish();
    run.server_cpu_pct = Some(cpu.server_pct);
    run.postgres_cpu_pct = Some(cpu.postgres_pct);
    check(&run, side, sink, before).await?;
    Ok(WireRun {
        variant: side.variant,
        round,
        run,
        load: cpu.load_at_start,
        machine_pct: cpu.machine_pct,
        accepted: sink.accepted()? - before,
        peak_rss_kib: rss.peak().1,
    })
}

/// Nothing failed, the suppressed are the list's, and the sink took exactly what the ledger says
/// was sent (the counter is written as the sink's sessions move: given a moment).
async fn check(run: &Run, side: &Side, sink: &postfix::PostfixSink, before: u64) -> anyhow::Result<()> {
    ensure!(
        run.failed == 0,
        "{}: {} sends failed (serve's log: {})",
        side.variant.label(),
        run.failed,
        side.log.display()
    );
    ensure!(
        run.suppressed == side.suppressed,
        "{}: {} suppressed, expected {}",
        side.variant.label(),
        run.suppressed,
        side.suppressed
    );
    let mut accepted = sink.accepted()? - before;
    for _ in 0..20 {
        if accepted as usize == run.sent() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        accepted = sink.accepted()? - before;
    }
    ensure!(
        accepted as usize == run.sent(),
        "{}: the sink accepted {accepted} messages, the ledger says {} were sent",
        side.variant.label(),
        run.sent()
    );
    Ok(())
}

/// One note to `spec.million` contacts, personalised, with the suppression list and DKIM
/// (Ed25519), on a database of its own: time to queue, to deliver, serve's peak RSS.
async fn million(spec: &WireSpec, sink: &postfix::PostfixSink, keys: &std::path::Path) -> anyhow::Result<WireRun> {
    let setup = spec.sides(format!("{}_wire_million", spec.database), spec.million);
    crate::cli::say(&format!("wire: seeding {} recipients for the large note", spec.million));
    let side = consent::start(&setup, Variant::Ed25519, sink.port, keys).await?;
    crate::cli::say(&format!("wire: one note to {} recipients", spec.million));
    let timeout = Duration::from_secs(3600);
    let measured = async {
        let before = sink.accepted()?;
        let cpu = CpuMeter::start(side.serve.pid, &side.database);
        let rss = RssMonitor::start(side.serve.pid);
        let mut run = delivery::end_to_end(&side.session, consent::TAG, side.variant.content(), spec.million, timeout)
            .await
            .with_context(|| format!("the large note (serve's log: {})", side.log.display()))?;
        let cpu = cpu.finish();
        run.server_cpu_pct = Some(cpu.server_pct);
        run.postgres_cpu_pct = Some(cpu.postgres_pct);
        check(&run, &side, sink, before).await?;
        let (hwm, sampled) = rss.peak();
        println!(
            "    large note: {} recipients queued in {:.1} s, delivered in {:.1} s ({} emails/s), serve's peak RSS {:.1} \
             MB (VmHWM {:.1} MB)",
            spec.million,
            run.queued.as_secs_f64(),
            run.elapsed.as_secs_f64(),
            crate::report::thousands(run.per_sec()),
            sampled as f64 * 1024.0 / 1e6,
            hwm as f64 * 1024.0 / 1e6
        );
        anyhow::Ok(WireRun {
            variant: side.variant,
            round: 1,
            run,
            load: cpu.load_at_start,
            machine_pct: cpu.machine_pct,
            accepted: sink.accepted()? - before,
            peak_rss_kib: hwm.max(sampled),
        })
    }
    .await;
    stop(spec, vec![side]).await?;
    measured
}
