//! Contacts while a large send is delivered: the contact list load just before serve starts to
//! deliver one message to a tag of many recipients (100,000 by default) and again while it
//! delivers, then contact create while it still delivers, against the Rust SMTP sink, which counts
//! what it receives meanwhile. Run after the delivery phases, on the same serve; nothing is
//! measured on that serve afterwards.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use sqlx::PgPool;

use crate::cli::{phase, say};
use crate::delivery::{BODY, SUBJECT};
use crate::load::{LoadSpec, Target};
use crate::probe::RssMonitor;
use crate::report::{Phase, Row, thousands};
use crate::seed;
use crate::server::{Serve, Session};
use crate::sink::Sink;
use crate::workloads::{CreateContacts, ListContacts};

/// The tag of the send's recipients (`r<N>@bulk.sink.example`).
pub const TAG: &str = "bulk";
const SECTION: &str = "## Contacts during a large send";
const LIST_TARGET: f64 = 5000.0;
const CREATE_TARGET: f64 = 2000.0;

/// What the comparison runs against.
pub struct SendSpec<'a> {
    pub db: &'a PgPool,
    pub serve: &'a Serve,
    pub rss: &'a RssMonitor,
    /// The Rust sink (it counts what it accepts).
    pub sink: &'a Sink,
    pub sender: &'a Session,
    pub sender_email: &'a str,
    pub reader: &'a Target,
    pub creator: &'a Target,
    pub load: LoadSpec,
    pub recipients: i64,
}

/// Messages the sink accepted while a phase ran (warm-up included), and how long it ran.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    pub messages: u64,
    pub elapsed: Duration,
}

impl Delivered {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The three phases and the send around them.
pub struct DuringSend {
    pub recipients: i64,
    pub seed_time: Duration,
    /// How long `POST /api/v1/messages` took to answer (the ledger rows are written before it does).
    pub queued_in: Duration,
    /// From the POST to the sink's first message (the phases begin then).
    pub first_delivery_after: Duration,
    pub list_before: Phase,
    pub list_during: Phase,
    pub delivered_during_list: Delivered,
    pub create_during: Phase,
    pub delivered_during_create: Delivered,
    /// Once the web is quiet again (the engine's hold after busy over): the sink's rate for a few
    /// seconds.
    pub delivered_after: Delivered,
    /// The task's `sent` when the last phase ended, and whether it was still sending then.
    pub sent_at_end: u64,
    pub still_sending: bool,
    /// Serve's peak RSS from the send's request to the end of the last phase.
    pub rss_peak_kib: u64,
}

/// Runs the phase and counts what the sink accepted meanwhile: over the load's measured window
/// when `window` names one (the load reaches serve a moment after the phase starts, and the engine
/// yields only from then), else over the whole phase.
async fn counted<T, F: Future<Output = anyhow::Result<T>>>(
    sink: &Sink,
    window: impl Fn(&T) -> Option<(Instant, Instant)>,
    run: F,
) -> anyhow::Result<(T, Delivered)> {
    let mut samples: Vec<(Instant, u64)> = Vec::with_capacity(1024);
    let sampling = async {
        loop {
            samples.push((Instant::now(), sink.accepted().unwrap_or(0)));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let result = tokio::select! {
        result = run => result?,
        () = sampling => unreachable!("sampling never ends"),
    };
    samples.push((Instant::now(), sink.accepted().unwrap_or(0)));
    // The count at `at`: the last sample taken by then.
    let at = |at: Instant| samples.iter().take_while(|(t, _)| *t <= at).last().or(samples.first()).copied();
    let (from, to) = window(&result).unwrap_or((samples[0].0, Instant::now()));
    let delivered = match (at(from), at(to)) {
        (Some((t0, c0)), Some((t1, c1))) => Delivered { messages: c1.saturating_sub(c0), elapsed: t1 - t0 },
        _ => Delivered { messages: 0, elapsed: Duration::ZERO },
    };
    println!(
        "    meanwhile the sink accepted {} emails/s{}",
        thousands(delivered.per_sec()),
        if window(&result).is_some() { " (over the measured window)" } else { "" }
    );
    Ok((result, delivered))
}

/// A load phase's measured window.
fn measured(phase: &Phase) -> Option<(Instant, Instant)> {
    phase.stats.measured.map(|(from, to)| (from.into_std(), to.into_std()))
}

pub async fn run(spec: &SendSpec<'_>) -> anyhow::Result<DuringSend> {
    let SendSpec { db, serve, rss, sink, .. } = *spec;
    sink.accepted().context("the send must go to the Rust sink, which counts what it accepts")?;
    say(&format!("seeding {} recipients tagged {TAG} for the sender", thousands(spec.recipients as f64)));
    let started = Instant::now();
    seed::recipients(db, spec.sender_email, TAG, spec.recipients).await?;
    seed::analyze(db).await?;
    let seed_time = started.elapsed();
    println!("    {:.1} s", seed_time.as_secs_f64());

    let list_before =
        phase("contact list, 50 a page, just before the send", db, serve, rss, spec.reader, ListContacts, spec.load)
            .await?;
    say(&format!("POST /api/v1/messages to the {} recipients tagged {TAG}", thousands(spec.recipients as f64)));
    rss.take_phase_peak();
    let accepted_before = sink.accepted().unwrap_or(0);
    let posted = Instant::now();
    // The API answers once the last chunk of the send is queued, and serve delivers from the
    // first chunk on: the phases begin with the first message at the sink, while the POST still
    // waits, so they measure the web while a large send is queued and delivered (waiting for the
    // answer first, a fast delivery had sent everything by then).
    let post = async {
        let answer =
            spec.sender.post("/api/v1/messages", &json!({ "tag": TAG, "subject": SUBJECT, "body": BODY })).await;
        (answer, posted.elapsed())
    };
    let phases = async {
        while sink.accepted().unwrap_or(0) == accepted_before {
            if posted.elapsed() > Duration::from_secs(60) {
                bail!("no message reached the sink within 60 s of the send");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let first_delivery_after = posted.elapsed();
        println!("    first message at the sink {:.2} s after the POST", first_delivery_after.as_secs_f64());
        let during = "contact list, 50 a page, during the send";
        let list = counted(sink, measured, phase(during, db, serve, rss, spec.reader, ListContacts, spec.load)).await?;
        let creates = CreateContacts { run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned() };
        let create = counted(
            sink,
            measured,
            phase("contact create, during the send", db, serve, rss, spec.creator, creates, spec.load),
        )
        .await?;
        anyhow::Ok((first_delivery_after, list, create))
    };
    let ((answer, queued_in), phases) = tokio::join!(post, phases);
    let (status, queued) = answer?;
    if status != 202 {
        bail!("POST /api/v1/messages answered {status}: {queued}");
    }
    let (first_delivery_after, (list_during, delivered_during_list), (create_during, delivered_during_create)) =
        phases?;
    let task = queued["task_id"].as_str().context("no task_id")?.to_owned();
    let total = queued["total"].as_i64().unwrap_or(0);
    if total != spec.recipients {
        bail!("the task has {total} recipients, not {}", spec.recipients);
    }
    println!("    queued in {:.1} s (the POST's answer, once the last chunk was written)", queued_in.as_secs_f64());
    // Read as the last phase ends, before the send goes back to full speed: whether it lasted the
    // phases out (read after the quiet window, a fast machine had finished it by then).
    let (status, progress) = spec.sender.get(&format!("/api/v1/tasks/{task}")).await?;
    if status != 200 {
        bail!("GET /api/v1/tasks/{task} answered {status}: {progress}");
    }
    let still_sending = progress["status"] != "done";
    let sent_at_end = progress["sent"].as_u64().unwrap_or(0);
    println!("    when the phase ended the task had sent {} of {total} ({})", sent_at_end, progress["status"]);
    // The engine yields to a busy web; once it has been quiet for longer than the engine's hold,
    // the send goes back to full speed.
    say("the web quiet again: the sink's rate for 5 s");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, delivered_after) = counted(sink, |_: &()| None, async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    })
    .await?;
    Ok(DuringSend {
        recipients: spec.recipients,
        seed_time,
        queued_in,
        first_delivery_after,
        list_before,
        list_during,
        delivered_during_list,
        create_during,
        delivered_during_create,
        delivered_after,
        sent_at_end,
        still_sending,
        rss_peak_kib: rss.take_phase_peak(),
    })
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

fn metric(what: &str, recipients: i64, connections: usize) -> String {
    format!("{what} during a {}-recipient send ({connections} connections)", thousands(recipients as f64))
}

impl DuringSend {
    /// List during the send (against the same just before), and create during the send.
    pub fn rows(&self) -> Vec<Row> {
        let (before, during, create) = (&self.list_before.stats, &self.list_during.stats, &self.create_during.stats);
        let ended = if self.still_sending { "" } else { " · the send ended before the phases did" };
        let errors = |n: u64| if n > 0 { format!(" · {n} errors") } else { String::new() };
        vec![
            Row {
                metric: metric("contact list, 50 a page", self.recipients, self.list_during.spec.connections),
                target: format!("≥ {} req/s", thousands(LIST_TARGET)),
                measured: format!(
                    "{} req/s = {:.0} % of {} req/s just before · p99 {} (before {}) · {} emails/s delivered \
                     meanwhile{}{ended}",
                    thousands(during.per_sec()),
                    100.0 * during.per_sec() / before.per_sec().max(1e-9),
                    thousands(before.per_sec()),
                    ms(during.percentile(99.0)),
                    ms(before.percentile(99.0)),
                    thousands(self.delivered_during_list.per_sec()),
                    errors(during.errors + before.errors)
                ),
                pass: during.per_sec() >= LIST_TARGET && during.errors == 0 && self.still_sending,
            },
            Row {
                metric: metric("contact create", self.recipients, self.create_during.spec.connections),
                target: format!("≥ {} req/s", thousands(CREATE_TARGET)),
                measured: format!(
                    "{} req/s · p99 {} · {} emails/s delivered meanwhile, {} once the web was quiet again{}{ended}",
                    thousands(create.per_sec()),
                    ms(create.percentile(99.0)),
                    thousands(self.delivered_during_create.per_sec()),
                    thousands(self.delivered_after.per_sec()),
                    errors(create.errors)
                ),
                pass: create.per_sec() >= CREATE_TARGET && create.errors == 0 && self.still_sending,
            },
        ]
    }

    /// The `BENCHMARKS.md` section.
    pub fn markdown(&self) -> String {
        let mut md = format!("{SECTION}\n\n");
        let _ = writeln!(
            md,
            "After the delivery runs, on the same serve: {} recipients tagged `{TAG}` for the sender, seeded in \
             bulk SQL and vacuumed ({:.1} s); the list load (the reader's contacts, as above) just before the send; \
             then one `POST /api/v1/messages` to the tag (answered in {:.1} s, once the last of the {} ledger rows \
             was written, in chunks; the first message reached the Rust sink {:.2} s after the `POST`, and the \
             phases began then, while the rest was still being queued), the list load again while serve queues \
             and delivers, and contact create (the creator's contacts) while it still does. The task had sent {} \
             when the last phase ended ({}); serve was stopped after the quiet window below, with whatever was left of \
             the send undelivered. Serve's peak \
             RSS from the send's request to then: {:.1} MB. Delivery: serve's settings of the delivery runs above; \
             while its web is busy (200 requests a second or 8 in flight at once, and for a second after) serve's engine takes at \
             most `BORCELLE_DELIVERY_RATE_WHILE_WEB_BUSY` messages a second (default 100): with the web quiet \
             again after the phases, the sink took {} emails/s over 5 s.\n",
            thousands(self.recipients as f64),
            self.seed_time.as_secs_f64(),
            self.queued_in.as_secs_f64(),
            thousands(self.recipients as f64),
            self.first_delivery_after.as_secs_f64(),
            thousands(self.sent_at_end as f64),
            if self.still_sending { "still sending" } else { "done: the send did not last the phases out" },
            self.rss_peak_kib as f64 * 1024.0 / 1e6,
            thousands(self.delivered_after.per_sec())
        );
        let _ = writeln!(
            md,
            "| phase | connections | warm-up + window | answers | errors | req/s | p50 | p99 | CPU: serve / PostgreSQL \
             / bench | machine busy | load at start | emails/s to the sink meanwhile |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        let phases = [
            (&self.list_before, None),
            (&self.list_during, Some(self.delivered_during_list)),
            (&self.create_during, Some(self.delivered_during_create)),
        ];
        for (p, delivered) in phases {
            let s = &p.stats;
            let _ = writeln!(
                md,
                "| {} | {} | {} s + {} s | {} | {} | {} | {} | {} | {:.0} % / {:.0} % / {:.0} % | {:.0} % | {:.2} | {} |",
                p.name,
                p.spec.connections,
                p.spec.warmup.as_secs(),
                p.spec.duration.as_secs(),
                s.ok,
                s.errors,
                thousands(s.per_sec()),
                ms(s.percentile(50.0)),
                ms(s.percentile(99.0)),
                p.cpu.server_pct,
                p.cpu.postgres_pct,
                p.cpu.client_pct,
                p.cpu.machine_pct,
                p.cpu.load_at_start,
                delivered.map_or("—".to_owned(), |d| thousands(d.per_sec()))
            );
        }
        md.push_str(
            "\nEmails/s meanwhile: the messages the sink accepted in the phase's measured window (after its \
             warm-up; the sink's count sampled every 20 ms), over that time. The bench process holds the load generator and the \
             sink, so its CPU covers both.\n",
        );
        md
    }
}

/// The rows and section of a run in which the comparison failed.
pub fn not_measured(error: &str, recipients: i64) -> (Vec<Row>, String) {
    let error = error.replace('\n', " ").replace('|', "\\|");
    let row = |what: &str, target: f64| Row {
        metric: metric(what, recipients, 0).replace(" (0 connections)", ""),
        target: format!("≥ {} req/s", thousands(target)),
        measured: format!("not measured: {error}"),
        pass: false,
    };
    (
        vec![row("contact list, 50 a page", LIST_TARGET), row("contact create", CREATE_TARGET)],
        format!("{SECTION}\n\nNot measured: {error}\n"),
    )
}
