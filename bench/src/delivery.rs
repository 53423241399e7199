//! Delivery: the raw SMTP baseline (crm-api's `SmtpTransport` sending straight to the sink, with
//! the server's pool size and concurrency) against the end-to-end path (one `POST
//! /api/v1/messages` to a tag, ledger, delivery engine, sink) timed until its task is done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use borcelle_mail::{MailTransport, Mailbox, OutgoingEmail, SmtpTransport, templates};
use borcelle_mail::{SmtpSettings, SmtpTls};
use serde_json::json;

use crate::server::Session;

pub const SUBJECT: &str = "Quarterly update";
pub const BODY: &str = "Hello,\n\nHere is what changed this quarter: new contacts, faster search, and the delivery \
                        ledger you asked for.\n\nSee you soon,\nThe sender";
/// The subject and body of the plain (unpersonalised) end-to-end runs.
pub const PLAIN: (&str, &str) = (SUBJECT, BODY);
const POLL_EVERY: Duration = Duration::from_millis(10);

/// One delivery measurement.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Recipients of the run (suppressed ones included: they are handled too).
    pub messages: usize,
    pub elapsed: Duration,
    /// Until the send was queued (`POST` answered 202; end-to-end only).
    pub queued: Duration,
    pub failed: usize,
    /// Recipients not mailed: on the sender's suppression list (end-to-end only).
    pub suppressed: usize,
    /// Serve's CPU over the run (end-to-end only), % of one core.
    pub server_cpu_pct: Option<f64>,
    /// The benchmark database's PostgreSQL backends over the run (end-to-end only).
    pub postgres_cpu_pct: Option<f64>,
    /// The sink's CPU over the run (aiosmtpd only), % of one core.
    pub sink_cpu_pct: Option<f64>,
}

impl Run {
    /// Recipients handled (sent or suppressed) per second.
    pub fn per_sec(&self) -> f64 {
        (self.messages - self.failed) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Messages the sink accepted.
    pub fn sent(&self) -> usize {
        self.messages - self.failed - self.suppressed
    }
}

/// The server's SMTP client, built the way `serve` builds it.
pub fn transport(port: u16, pool_size: u32) -> anyhow::Result<SmtpTransport> {
    SmtpTransport::new(
        &SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            pool_size,
            timeout: Duration::from_secs(30),
            ca_file: None,
        },
        None,
    )
    .map_err(Into::into)
}

/// Sends `count` messages like the engine's (same template, sender, reply-to, one recipient each)
/// straight through the transport, `concurrency` at a time.
pub async fn baseline(
    transport: Arc<SmtpTransport>,
    count: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<Run> {
    let rendered = templates::message("Bench Sender", SUBJECT, BODY, None)?;
    let template = Arc::new(OutgoingEmail {
        from: Mailbox {
            name: Some("Bench Sender via Borcelle".to_owned()),
            email: "noreply@borcelle.bench".to_owned(),
        },
        to: Mailbox { name: None, email: String::new() },
        reply_to: Some(Mailbox { name: Some("Bench Sender".to_owned()), email: "sender@bench.example".to_owned() }),
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        message_id: String::new(),
        date: SystemTime::now(),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (transport, template, next, tag) = (transport.clone(), template.clone(), next.clone(), tag.to_owned());
        senders.spawn(async move {
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return failed;
                }
                // Built per message from shared parts, as the engine does for each claimed row.
                let email = OutgoingEmail {
                    from: template.from.clone(),
                    to: Mailbox { name: Some(format!("Recipient {i}")), email: format!("r{i}@{tag}.sink.example") },
                    reply_to: template.reply_to.clone(),
                    attachments: Vec::new(),
                    unsubscribe: None,
                    ledger_id: None,
                    envelope_from: None,
                    subject: template.subject.clone(),
                    text: template.text.clone(),
                    html: template.html.clone(),
                    message_id: format!("<{}@borcelle.bench>", uuid::Uuid::now_v7().simple()),
                    date: SystemTime::now(),
                };
                if transport.send(&email).await.is_err() {
                    failed += 1;
                }
            }
        });
    }
    let mut failed = 0;
    while let Some(joined) = senders.join_next().await {
        failed += joined.context("a baseline sender panicked")?;
    }
    Ok(Run {
        messages: count,
        elapsed: started.elapsed(),
        queued: Duration::ZERO,
        failed,
        suppressed: 0,
        server_cpu_pct: None,
        postgres_cpu_pct: None,
        sink_cpu_pct: None,
    })
}

/// One `POST /api/v1/messages` of this subject and body to every contact with `tag`, timed until
/// `GET /api/v1/tasks/{id}` says the task is done.
pub async fn end_to_end(
    session: &Session,
    tag: &str,
    (subject, body): (&str, &str),
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let (status, queued) =
        session.post("/api/v1/messages", &json!({ "tag": tag, "subject": subject, "body": body })).await?;
    if status != 202 {
        bail!("POST /api/v1/messages answered {status}: {queued}");
    }
    let queued_after = started.elapsed();
    let task = queued["task_id"].as_str().context("no task_id")?.to_owned();
    let total = queued["total"].as_u64().unwrap_or(0) as usize;
    if total != expected {
        bail!("the task has {total} recipients, not {expected}");
    }
    loop {
        let (status, body) = session.get(&format!("/api/v1/tasks/{task}")).await?;
        if status != 200 {
            bail!("GET /api/v1/tasks/{task} answered {status}: {body}");
        }
        if body["status"] == "done" {
            let failed = body["failed"].as_u64().unwrap_or(0) as usize;
            return Ok(Run {
                messages: total,
                elapsed: started.elapsed(),
                queued: queued_after,
                failed,
                suppressed: body["suppressed"].as_u64().unwrap_or(0) as usize,
                server_cpu_pct: None,
                postgres_cpu_pct: None,
                sink_cpu_pct: None,
            });
        }
        if started.elapsed() > timeout {
            bail!("task {task} not done after {timeout:?}: {body}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The median of some runs by throughput; of an even number, the slower of the two middle ones
/// (the rates are judged against floors: of two rounds, the faster one alone passed for both).
pub fn median(runs: &[Run]) -> Option<Run> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    sorted.get(median_index(sorted.len())).copied()
}

/// The index of the median in `len` values sorted slowest first: of an even number, the slower
/// middle one, so that one good round never passes a floor for both.
pub fn median_index(len: usize) -> usize {
    len.saturating_sub(1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(per_sec: u64) -> Run {
        Run {
            messages: usize::try_from(per_sec).unwrap(),
            elapsed: Duration::from_secs(1),
            queued: Duration::ZERO,
            failed: 0,
            suppressed: 0,
            server_cpu_pct: None,
            postgres_cpu_pct: None,
            sink_cpu_pct: None,
        }
    }

    fn median_rate(rates: &[u64]) -> Option<f64> {
        median(&rates.iter().map(|&rate| run(rate)).collect::<Vec<_>>()).map(|run| run.per_sec())
    }

    #[test]
    fn the_median_of_an_even_number_of_rounds_is_the_slower_middle_one() {
        assert_eq!(median_rate(&[]), None);
        assert_eq!(median_rate(&[2_349]), Some(2_349.0));
        assert_eq!(median_rate(&[2_349, 1_907]), Some(1_907.0));
        assert_eq!(median_rate(&[3, 1, 2]), Some(2.0));
        assert_eq!(median_rate(&[4, 1, 3, 2]), Some(2.0));
    }
}
