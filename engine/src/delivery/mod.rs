//! The delivery engine: claims due ledger rows, sends them through the [`Mailer`] outside any
//! transaction, records the outcomes as sends end (together, every `WRITE_EVERY` at most while
//! they keep coming), and publishes progress and completion to the owners.
//!
//! It runs inside `borcelle serve` (standalone) and as `borcelle worker`; any number of engines
//! can share a database, since claims use `FOR UPDATE SKIP LOCKED` and a lease. A crash can
//! repeat only the sends the server had accepted whose outcome was not written yet: at most one
//! per send slot. An engine that starts again under its previous run's name gives that run's
//! claims back at once ([`instance`]).

mod cache;
mod claim;
pub mod instance;
mod record;
pub mod web;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use borcelle_mail::merge::{ContactFields, MergeFields, split_name};
use borcelle_mail::{MailError, MailSettings, Mailbox, Mailer, OutgoingEmail, Unsubscribe, templates};
use borcelle_store::PgPool;
use borcelle_store::messages::{self, Claimed, Outcome, OutcomeKind};
use rand::RngExt;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::EventBus;
use crate::inbound::Kind;
use crate::metrics::EngineMetrics;
use crate::settings::DeliverySettings;
use crate::storage::Store;
use cache::{Content, ContentCache, LINK_PLACEHOLDER, Prepared};
use claim::{Batched, ClaimError};
use record::ProgressThrottle;
use web::{Pace, WebLoad};

pub use record::{completion_text, finished_at_once};

/// Once the grace period is over, how long sends already talking to the server may still take.
const HALT_WAIT: Duration = Duration::from_secs(5);

/// Waits for the rate limiter's turn, unless the engine halts first (false: do not send).
async fn wait_turn(limiter: Option<&RateLimiter>, halt: &CancellationToken) -> bool {
    if let Some(limiter) = limiter {
        tokio::select! {
            () = limiter.acquire() => {}
            () = halt.cancelled() => return false,
        }
    }
    !halt.is_cancelled()
}

/// Pause after a database error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// While outcomes keep coming, a write of them begins at most this long after the previous one
/// (sooner when a quarter of the send slots wait on it): at 3,000 emails/s that is 60 rows a
/// write instead of 15-20.
const WRITE_EVERY: Duration = Duration::from_millis(20);

/// What [`DeliveryEngine::run_until_idle`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub sent: usize,
    /// Put back for a later attempt.
    pub retrying: usize,
    pub failed: usize,
    /// Not sent: on the owner's suppression list.
    pub suppressed: usize,
}

/// What it takes to run an engine.
#[derive(Clone)]
pub struct DeliveryEngine {
    pub db: PgPool,
    pub mailer: Mailer,
    pub events: EventBus,
    pub mail: MailSettings,
    pub settings: DeliverySettings,
    pub metrics: Arc<EngineMetrics>,
    /// Notified when new work is queued in this process.
    pub wake: Arc<Notify>,
    /// Where attachment bytes are read from.
    pub store: Store,
    /// The per-message attachment limit (`BORCELLE_MESSAGE_ATTACHMENTS_MAX_BYTES`); it sizes the cache.
    pub attachments_max_bytes: u64,
    /// The unsubscribe links bulk mail carries.
    pub unsubscribe: Arc<UnsubscribeSettings>,
    /// Reply, bounce and unsubscribe addresses, when inbound mail is configured: every message
    /// then carries its own (`Reply-To`, the envelope sender, `List-Unsubscribe`'s `mailto:`).
    pub inbound: Option<crate::inbound::Addresses>,
    /// The web of the same process (`serve`): while it is busy, claims slow to
    /// [`DeliverySettings::rate_while_web_busy`] ([`web`]).
    pub web: Option<Arc<WebLoad>>,
}

/// Outcomes handed to the writer and not written yet. They count against the concurrency with
/// the sends in flight, so that a crash repeats at most one accepted send per slot however far
/// the writes fall behind.
#[derive(Debug, Default)]
struct Unwritten {
    count: AtomicUsize,
    /// Notified after each write.
    written: Notify,
}

impl Unwritten {
    fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Hands ended sends to the writer, counting them until it has written them.
    fn hand_over(&self, writer: &tokio::sync::mpsc::UnboundedSender<Vec<Outcome>>, ended: Vec<Outcome>) {
        if ended.is_empty() {
            return;
        }
        self.count.fetch_add(ended.len(), Ordering::AcqRel);
        if writer.send(ended).is_err() {
            tracing::error!("the outcome writer is gone; unwritten claims come back when their leases expire");
        }
    }

    /// The writer wrote `rows` of them.
    fn wrote(&self, rows: usize) {
        if rows > 0 {
            self.count.fetch_sub(rows, Ordering::AcqRel);
            self.written.notify_one();
        }
    }
}

/// How emails let their recipients unsubscribe.
#[derive(Debug, Clone)]
pub struct UnsubscribeSettings {
    pub links: crate::consent::UnsubscribeLinks,
    /// Also one-to-one messages (a message or note to a single contact) carry them; bulk mail
    /// always does.
    pub one_to_one: bool,
}

/// One recipient's email from the task's prepared content.
fn personalise(
    prepared: &Prepared,
    claimed: &Claimed,
    unsubscribe: Option<&str>,
) -> Result<(String, String, String), MailError> {
    match &prepared.content {
        Content::Fixed { subject, text, html } => {
            let (text, html) = match unsubscribe {
                Some(link) => (
                    text.replace(LINK_PLACEHOLDER, link),
                    html.replace(LINK_PLACEHOLDER, &templates::escape_html(link)),
                ),
                None => (text.clone(), html.clone()),
            };
            Ok((subject.clone(), text, html))
        }
        Content::Personal(template) => {
            let contact = recipient_fields(claimed.merge.as_ref(), claimed.to_name.as_deref(), &claimed.to_email);
            let fields = MergeFields { contact, sender: prepared.sender.clone() };
            let merged = template
                .render(&fields)
                .map_err(|err| MailError::Permanent(format!("personalising the message: {err}")))?;
            let rendered = templates::message(&prepared.sender.name, &merged.subject, &merged.body, unsubscribe)
                .map_err(|err| MailError::Permanent(err.to_string()))?;
            Ok((rendered.subject, rendered.text, rendered.html))
        }
    }
}

/// The recipient's fields as queued; a row written before personalised mail (or to a user rather
/// than a contact) has its name and address only.
pub fn recipient_fields(merge: Option<&serde_json::Value>, to_name: Option<&str>, to_email: &str) -> ContactFields {
    // Read from the stored JSON in place (once per recipient: no copy of the value first).
    if let Some(fields) = merge.and_then(|m| <ContactFields as serde::Deserialize>::deserialize(m).ok()) {
        return fields;
    }
    let name = to_name.unwrap_or(to_email).to_owned();
    let (first_name, last_name) = split_name(&name);
    ContactFields {
        first_name,
        last_name,
        name,
        email: to_email.to_owned(),
        company: None,
        phone: None,
        address: None,
        tags: Vec::new(),
    }
}

/// Spaces sends evenly to stay under a rate.
struct RateLimiter {
    every: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(per_sec: u32) -> Self {
        Self { every: Duration::from_secs_f64(1.0 / f64::from(per_sec.max(1))), next: Mutex::new(Instant::now()) }
    }

    async fn acquire(&self) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + self.every;
    }
}

/// The delay before retry number `attempt` (1-based): exponential from `base`, capped, with
/// jitter between half and all of it so that retries of many messages spread out.
pub fn backoff(settings: &DeliverySettings, attempt: i32) -> Duration {
    let exponent = attempt.clamp(1, 30) as u32 - 1;
    let full = settings.retry_base.saturating_mul(2u32.saturating_pow(exponent)).min(settings.retry_cap);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

impl DeliveryEngine {
    /// Runs until `stop` is cancelled; then stops claiming, lets in-flight sends finish within the
    /// grace period, records their outcomes and gives back the claims of sends still running.
    pub async fn run(self, stop: CancellationToken) {
        let concurrency = self.settings.concurrency.max(1);
        let limiter = self.settings.rate_per_sec.map(|rate| Arc::new(RateLimiter::new(rate)));
        // One send task per message, or per request of up to `batch_size` messages (MailJet).
        let mut inflight: JoinSet<Vec<Outcome>> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Vec<(Uuid, i32)>> = HashMap::new();
        // Messages in flight (the sum of `running`'s claims).
        let mut sending = 0usize;
        // Claims taken whose messages could not be prepared (the database went away in between):
        // given back as soon as the database answers, rather than left to their lease.
        let mut to_release: Vec<(Uuid, i32)> = Vec::new();
        let mut contents = ContentCache::default();
        // Held for the whole run: while it is, no other process runs under this engine's name.
        let (claimer, _instance_lock) = instance::take_over(&self.db, &self.settings.instance).await;
        let mut stopping = false;
        let mut grace_ends = Instant::now();
        let batch_size = self.mailer.batch_size().max(1);
        // Cancelled when the grace period is over: sends still waiting for their turn stop waiting.
        let halt = CancellationToken::new();
        tracing::info!(concurrency, batch_size, transport = self.mailer.name(), "delivery engine started");
        let engine = Arc::new(self);
        // Outcomes are written by a task of their own, so that claiming never waits for a write
        // and a write takes everything that ended while the previous one ran.
        let (outcomes, written) = tokio::sync::mpsc::unbounded_channel::<Vec<Outcome>>();
        let unwritten = Arc::new(Unwritten::default());
        let writer = tokio::spawn(Arc::clone(&engine).write_outcomes(written, Arc::clone(&unwritten)));
        let mut pace = match (&engine.web, engine.settings.rate_while_web_busy) {
            (Some(web), Some(rate)) => Some(Pace::new(Arc::clone(web), rate)),
            _ => None,
        };

        loop {
            if !to_release.is_empty() {
                match messages::release(&engine.db, &to_release).await {
                    Ok(released) => {
                        tracing::info!(released, "gave back the claims of messages that could not be prepared");
                        to_release.clear();
                    }
                    Err(err) => tracing::warn!(error = %err, "giving back claims failed; retrying"),
                }
            }
            // Slots: sends in flight and outcomes not written yet.
            let held = sending + unwritten.get();
            let allowed = match pace.as_mut() {
                Some(pace) => pace.allow(concurrency.saturating_sub(held), Instant::now()),
                None => concurrency.saturating_sub(held),
            };
            if !stopping && to_release.is_empty() && held <= concurrency / 2 && allowed > 0 {
                match engine.claim(allowed as i64, &claimer, &mut contents).await {
                    Ok(batch) => {
                        if let Some(pace) = pace.as_mut() {
                            pace.took(batch.len());
                        }
                        let mut batch = batch.into_iter().peekable();
                        while batch.peek().is_some() {
                            let group: Vec<Batched> = batch.by_ref().take(batch_size).collect();
                            let claims: Vec<(Uuid, i32)> = group.iter().map(|(c, _)| (c.id, c.attempts)).collect();
                            sending += claims.len();
                            let handle =
                                inflight.spawn(Arc::clone(&engine).deliver_group(group, limiter.clone(), halt.clone()));
                            running.insert(handle.id(), claims);
                        }
                    }
                    Err(ClaimError { error, claimed }) => {
                        tracing::warn!(error = %error, claimed = claimed.len(), "claiming messages failed; retrying");
                        to_release.extend(claimed);
                        tokio::select! {
                            _ = tokio::time::sleep(ERROR_PAUSE) => {}
                            _ = stop.cancelled() => {}
                        }
                    }
                }
            }
            if stopping && inflight.is_empty() {
                break;
            }
            let room = !stopping && sending + unwritten.get() < concurrency;
            let next_claim = pace.as_ref().and_then(Pace::next_claim).filter(|_| !stopping);
            tokio::select! {
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    grace_ends = Instant::now() + engine.settings.shutdown_grace;
                    tracing::info!(in_flight = sending, "delivery engine stopping: no new claims");
                }
                joined = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    // Handed to the writer at once (an accepted send whose outcome waits is what a
                    // crash would send again), together with every other send that ended meanwhile.
                    let mut ended = Vec::new();
                    let mut joined = joined;
                    while let Some(result) = joined {
                        let task_id = match &result {
                            Ok((task_id, _)) => *task_id,
                            Err(err) => err.id(),
                        };
                        sending -= running.remove(&task_id).map_or(0, |claims| claims.len());
                        match result {
                            Ok((_, group)) => ended.extend(group),
                            // A send task panicked: its claims come back when their lease expires.
                            Err(err) => tracing::error!(error = %err, "a send task failed"),
                        }
                        joined = inflight.try_join_next_with_id();
                    }
                    unwritten.hand_over(&outcomes, ended);
                }
                _ = engine.wake.notified(), if room => {}
                _ = tokio::time::sleep(engine.settings.poll_interval), if room => {}
                _ = unwritten.written.notified(), if !stopping && unwritten.get() > 0 => {}
                _ = tokio::time::sleep_until(next_claim.unwrap_or_else(Instant::now)), if next_claim.is_some() => {}
                _ = tokio::time::sleep_until(grace_ends), if stopping => {
                    // Sends waiting for their turn stop waiting (recorded as not sent, due again at
                    // once); sends already talking to the server get a last moment to finish, so
                    // that none is cut between the server's acceptance and its outcome. Whatever
                    // still runs then is aborted and its claims given back.
                    halt.cancel();
                    let last_moment = Instant::now() + HALT_WAIT;
                    let mut ended = Vec::new();
                    loop {
                        match tokio::time::timeout_at(last_moment, inflight.join_next_with_id()).await {
                            Ok(Some(Ok((task_id, group)))) => {
                                running.remove(&task_id);
                                ended.extend(group);
                            }
                            Ok(Some(Err(err))) => tracing::error!(error = %err, "a send task failed"),
                            Ok(None) => break,
                            Err(_) => {
                                inflight.abort_all();
                                while let Some(result) = inflight.join_next_with_id().await {
                                    // Ended before the abort took effect: its outcome stands.
                                    if let Ok((task_id, group)) = result {
                                        running.remove(&task_id);
                                        ended.extend(group);
                                    }
                                }
                                break;
                            }
                        }
                    }
                    sending = 0;
                    unwritten.hand_over(&outcomes, ended);
                    let unfinished: Vec<(Uuid, i32)> = running.drain().flat_map(|(_, claims)| claims).collect();
                    if !unfinished.is_empty() {
                        match messages::release(&engine.db, &unfinished).await {
                            Ok(released) => tracing::warn!(released, "grace period over: gave back unfinished claims"),
                            Err(err) => tracing::error!(error = %err, "releasing claims failed; their leases will expire"),
                        }
                    }
                }
            }
        }
        // The writer writes what it holds, then ends.
        drop(outcomes);
        if let Err(err) = writer.await {
            tracing::error!(error = %err, "the outcome writer failed");
        }
        if !to_release.is_empty()
            && let Err(err) = messages::release(&engine.db, &to_release).await
        {
            tracing::error!(error = %err, "giving back claims failed; their leases will expire");
        }
        tracing::info!("delivery engine stopped");
    }

    /// Writes outcomes as they come (each write takes all that waits), tells the owners (progress
    /// a few times a second per task, completion at once), and ends once the channel is closed
    /// and everything is written. While the database is away, outcomes wait and are written again
    /// every [`ERROR_PAUSE`]; at the end, one more try.
    async fn write_outcomes(
        self: Arc<Self>,
        mut written: tokio::sync::mpsc::UnboundedReceiver<Vec<Outcome>>,
        unwritten: Arc<Unwritten>,
    ) {
        let mut pending: Vec<Outcome> = Vec::new();
        let mut progress = ProgressThrottle::default();
        let mut open = true;
        // When the previous write began.
        let mut last_write: Option<Instant> = None;
        // Outcomes that make a write worth its cost at once: they hold a quarter of the send slots.
        let enough = (self.settings.concurrency / 4).max(1);
        loop {
            if pending.is_empty() {
                if !open {
                    break;
                }
                let due = progress.next_due();
                tokio::select! {
                    got = written.recv() => match got {
                        Some(group) => pending.extend(group),
                        None => open = false,
                    },
                    // Progress held back to keep events to a few a second per task.
                    _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                        for task in progress.due(Instant::now()) {
                            self.publish_progress(&task).await;
                        }
                    }
                }
            }
            while let Ok(group) = written.try_recv() {
                pending.extend(group);
            }
            if pending.is_empty() {
                continue;
            }
            // Each write is a round trip, a statement, the tasks' counters and a commit, so while
            // outcomes keep coming they wait for company: until WRITE_EVERY after the previous
            // write began, or until `enough` wait. A lone outcome after a quiet spell is written
            // at once.
            if open
                && pending.len() < enough
                && let Some(last) = last_write
            {
                let until = last + WRITE_EVERY;
                while pending.len() < enough {
                    match tokio::time::timeout_at(until, written.recv()).await {
                        Ok(Some(group)) => pending.extend(group),
                        Ok(None) => {
                            open = false;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            last_write = Some(Instant::now());
            // A failed write keeps them waiting (after a pause); once the engine has stopped,
            // one failure is the last try: their leases will bring them back.
            let before = pending.len();
            self.flush(&mut pending, &mut progress).await;
            unwritten.wrote(before - pending.len());
            if !open && !pending.is_empty() {
                tracing::error!(waiting = pending.len(), "stopping with outcomes unwritten; their leases will expire");
                break;
            }
            if open && written.is_closed() && written.is_empty() {
                open = false;
            }
        }
        for task in progress.drain() {
            self.publish_progress(&task).await;
        }
    }

    /// Sends a group of claimed messages: one by one (each in its own task, so a group is one
    /// message) or, for a transport that takes several per request, in one request.
    async fn deliver_group(
        self: Arc<Self>,
        group: Vec<Batched>,
        limiter: Option<Arc<RateLimiter>>,
        halt: CancellationToken,
    ) -> Vec<Outcome> {
        if group.len() == 1 || self.mailer.batch_size() <= 1 {
            let mut outcomes = Vec::with_capacity(group.len());
            for (claimed, prepared) in group {
                outcomes.push(self.deliver(claimed, prepared, limiter.as_deref(), &halt).await);
            }
            return outcomes;
        }
        let mut outcomes = Vec::with_capacity(group.len());
        let mut emails = Vec::with_capacity(group.len());
        let mut sent_for = Vec::with_capacity(group.len());
        for (claimed, prepared) in group {
            match self.email(&claimed, prepared) {
                Ok(email) => {
                    if !wait_turn(limiter.as_deref(), &halt).await {
                        outcomes.push(self.not_sent(&claimed));
                        continue;
                    }
                    emails.push(email);
                    sent_for.push(claimed);
                }
                Err(outcome) => outcomes.push(outcome),
            }
        }
        let results = self.mailer.send_batch(&emails).await;
        for (index, claimed) in sent_for.iter().enumerate() {
            let result = results.get(index).cloned().unwrap_or_else(|| {
                Err(MailError::Transient("the transport gave no result for this message".to_owned()))
            });
            outcomes.push(self.outcome(claimed, result));
        }
        outcomes
    }

    /// Sends one message (unless its task could not be prepared) and classifies the result.
    async fn deliver(
        &self,
        claimed: Claimed,
        prepared: Result<Arc<Prepared>, MailError>,
        limiter: Option<&RateLimiter>,
        halt: &CancellationToken,
    ) -> Outcome {
        let email = match self.email(&claimed, prepared) {
            Ok(email) => email,
            Err(outcome) => return outcome,
        };
        if !wait_turn(limiter, halt).await {
            return self.not_sent(&claimed);
        }
        let sent = self.mailer.send(&email).await;
        self.outcome(&claimed, sent)
    }

    /// A message the engine stopped before sending: due again at once, for the next engine.
    fn not_sent(&self, claimed: &Claimed) -> Outcome {
        let result = OutcomeKind::Retry { error: "not sent: the delivery engine stopped".to_owned(), after_secs: 0.0 };
        Outcome { id: claimed.id, attempt: claimed.attempts, result }
    }

    /// The recipient's email, or the outcome that stands instead of a send: suppressed since it
    /// was queued, or not preparable.
    fn email(&self, claimed: &Claimed, prepared: Result<Arc<Prepared>, MailError>) -> Result<OutgoingEmail, Outcome> {
        if let Some(reason) = &claimed.suppressed {
            // On the owner's list since it was queued: never sent.
            self.metrics.mail_sent(self.mailer.name(), "suppressed");
            let result = OutcomeKind::Suppressed { reason: reason.clone() };
            return Err(Outcome { id: claimed.id, attempt: claimed.attempts, result });
        }
        let prepared = prepared.map_err(|err| self.outcome(claimed, Err(err)))?;
        let link = prepared.unsubscribe.then(|| self.unsubscribe.links.link(claimed.id));
        let (subject, text, html) =
            personalise(&prepared, claimed, link.as_deref()).map_err(|err| self.outcome(claimed, Err(err)))?;
        Ok(OutgoingEmail {
            from: Mailbox { name: Some(prepared.from_name.clone()), email: self.mail.from_address.clone() },
            to: Mailbox { name: claimed.to_name.clone(), email: claimed.to_email.clone() },
            reply_to: Some(match &self.inbound {
                Some(addresses) => {
                    Mailbox { name: prepared.reply_to.name.clone(), email: addresses.address(Kind::Reply, claimed.id) }
                }
                None => prepared.reply_to.clone(),
            }),
            subject,
            text,
            html,
            message_id: claimed.message_id.clone(),
            date: std::time::SystemTime::now(),
            attachments: prepared.attachments.clone(),
            unsubscribe: link.map(|https| Unsubscribe {
                https,
                mailto: self.inbound.as_ref().map(|a| a.address(Kind::Unsubscribe, claimed.id)),
            }),
            ledger_id: Some(claimed.id.to_string()),
            envelope_from: self.inbound.as_ref().map(|a| a.address(Kind::Bounce, claimed.id)),
        })
    }

    /// What a send's result means for its ledger row.
    fn outcome(&self, claimed: &Claimed, sent: Result<borcelle_mail::Delivery, MailError>) -> Outcome {
        let result = match sent {
            Ok(delivery) => {
                self.metrics.mail_sent(self.mailer.name(), "sent");
                OutcomeKind::Sent { provider_id: delivery.provider_id }
            }
            Err(MailError::Transient(error)) if claimed.attempts < self.settings.max_attempts => {
                self.metrics.mail_sent(self.mailer.name(), "retrying");
                let after = backoff(&self.settings, claimed.attempts);
                tracing::debug!(message = %claimed.id, attempt = claimed.attempts, %error, "send will be retried");
                OutcomeKind::Retry { error, after_secs: after.as_secs_f64() }
            }
            Err(MailError::Transient(error)) => {
                self.metrics.mail_sent(self.mailer.name(), "failed");
                OutcomeKind::Failed { error: format!("gave up after {} attempts: {error}", claimed.attempts) }
            }
            Err(MailError::Permanent(error)) => {
                self.metrics.mail_sent(self.mailer.name(), "failed");
                OutcomeKind::Failed { error }
            }
            Err(MailError::Rejected(error)) => {
                // A hard bounce: the address goes on the owner's suppression list as this is recorded.
                self.metrics.mail_sent(self.mailer.name(), "rejected");
                OutcomeKind::Rejected { error }
            }
        };
        Outcome { id: claimed.id, attempt: claimed.attempts, result }
    }

    /// Sends every message that is due now, batch after batch, until none is, and records the
    /// outcomes: what tests call instead of waiting for [`run`](Self::run) to get there. A message
    /// put back for a retry is due again only after its delay (a setting).
    pub async fn run_until_idle(&self) -> borcelle_store::Result<Drained> {
        let mut contents = ContentCache::default();
        let mut drained = Drained::default();
        loop {
            let batch = self.run_batch(&mut contents).await?;
            if batch == Drained::default() {
                return Ok(drained);
            }
            drained.sent += batch.sent;
            drained.retrying += batch.retrying;
            drained.failed += batch.failed;
            drained.suppressed += batch.suppressed;
        }
    }

    /// Claims one batch of due messages (up to the concurrency), sends them and records the
    /// outcomes: one step of [`run_until_idle`](Self::run_until_idle).
    pub async fn run_once(&self) -> borcelle_store::Result<Drained> {
        self.run_batch(&mut ContentCache::default()).await
    }

    async fn run_batch(&self, contents: &mut ContentCache) -> borcelle_store::Result<Drained> {
        let limiter = self.settings.rate_per_sec.map(|rate| Arc::new(RateLimiter::new(rate)));
        let want = self.settings.concurrency.max(1) as i64;
        // Recorded before this returns, so the claims need no take-over: a name of its own keeps
        // them apart from those of a running engine of the same name.
        let claimer = instance::unique(&self.settings.instance);
        let batch = match self.claim(want, &claimer, contents).await {
            Ok(batch) => batch,
            Err(ClaimError { error, claimed }) => {
                let _ = messages::release(&self.db, &claimed).await;
                return Err(error);
            }
        };
        let engine = Arc::new(self.clone());
        let batch_size = self.mailer.batch_size().max(1);
        let mut groups = Vec::new();
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let group: Vec<Batched> = batch.by_ref().take(batch_size).collect();
            groups.push(Arc::clone(&engine).deliver_group(group, limiter.clone(), CancellationToken::new()));
        }
        let mut outcomes: Vec<Outcome> = futures::future::join_all(groups).await.into_iter().flatten().collect();
        let mut drained = Drained::default();
        for outcome in &outcomes {
            match outcome.result {
                OutcomeKind::Sent { .. } => drained.sent += 1,
                OutcomeKind::Retry { .. } => drained.retrying += 1,
                OutcomeKind::Failed { .. } | OutcomeKind::Rejected { .. } => drained.failed += 1,
                OutcomeKind::Suppressed { .. } => drained.suppressed += 1,
            }
        }
        // Every progress at once: a test's batch is the whole of its wait.
        let mut progress = ProgressThrottle::default();
        self.record(&mut outcomes, &mut progress).await?;
        for task in progress.drain() {
            self.publish_progress(&task).await;
        }
        Ok(drained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let settings = DeliverySettings {
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(60),
            ..DeliverySettings::default()
        };
        for _ in 0..50 {
            let first = backoff(&settings, 1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2), "{first:?}");
            let fourth = backoff(&settings, 4);
            assert!(fourth >= Duration::from_secs(8) && fourth <= Duration::from_secs(16), "{fourth:?}");
            assert!(backoff(&settings, 30) <= Duration::from_secs(60));
        }
    }
}
