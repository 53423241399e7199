//! Hearing back (issue #15): replies accepted per second by the SMTP receiver `serve` runs, and the
//! time from a reply's `DATA` to its `inbound` event on the owner's open socket.
//!
//! 1. A fresh database with the owner and a few contacts, `serve` with the receiver on (no limit on
//!    connections per minute), one plain send to those contacts through a Rust sink: each contact
//!    then has a ledger row, whose reply address (`reply+<token>@…`) the bench computes with the
//!    installation's key as `serve` does.
//! 2. The owner logs in and opens `/ws` (on a thread of its own, so that the time an event arrives
//!    is taken as soon as the frame is read, not when the busy senders let a worker poll it).
//! 3. `--inbound-clients` SMTP clients send a warm-up, then `--inbound-replies` replies, each with
//!    its own `Message-ID`, spread over the contacts: lettre by default (through borcelle-mail's
//!    pooled transport, the client serve itself sends with), or with `--inbound-client raw` a
//!    minimal client of the bench's own that can time the end of `DATA` (see [`client`]). Each send
//!    is timed from its start to its `250`, whose text names the stored reply
//!    (`250 2.0.0 Ok: filed as <uuid>`); the event with that `inbound_id` on the owner's socket
//!    closes the reply's timings.

mod client;
mod report;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail, ensure};
use borcelle_engine::inbound::{Addresses, Kind};
use borcelle_mail::{MailTransport as _, Mailbox, OutgoingEmail, SmtpTransport};
use futures::StreamExt as _;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::delivery::{self, PLAIN};
use crate::probe::{self, CpuMeter};
use crate::seed;
use crate::server::{self, Serve, ServeConfig, ServeInbound, Session};
use crate::sink::{Sink, SinkKind};

pub use client::ClientKind;
use client::RawClient;
pub use report::{InboundRun, not_measured, splice};

const OWNER: &str = "owner@bench.example";
const DOMAIN: &str = "in.borcelle.test";
const TAG: &str = "inbound";
/// Replies sent (and their events awaited) before the measured ones.
pub const WARMUP_REPLIES: usize = 200;
/// How long the last events may take after the last send before the missing ones are given up.
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// The reply every client sends (a person answering under the quoted message, as mail clients do:
/// a text part and the same as a little HTML).
pub const SUBJECT: &str = "Re: Quarterly update";
pub const TEXT: &str = "Thanks, that works for us. Can we talk it over on Monday at 10?\n\nJane\n\n\
                        On Mon, 7 Dec 2026, Bench Owner wrote:\n> Here is what changed this quarter.\n";
pub const HTML: &str = "<div dir=\"ltr\">Thanks, that works for us. Can we talk it over on Monday at 10?<br><br>\
                        Jane</div><blockquote>Here is what changed this quarter.</blockquote>";

/// What the inbound phase runs with.
pub struct InboundSpec {
    pub borcelle: PathBuf,
    /// PostgreSQL server URL without a database.
    pub postgres: String,
    /// Prefix of its database (`<prefix>_inbound`), dropped and created afresh.
    pub database: String,
    pub keep_database: bool,
    /// Measured replies.
    pub replies: usize,
    /// SMTP clients sending at once, each on a connection of its own.
    pub clients: usize,
    pub client: ClientKind,
    /// Contacts (and ledger rows) the replies answer, in turn.
    pub contacts: usize,
    /// Serve's log; this phase's goes next to it (`…-inbound.log`).
    pub serve_log: PathBuf,
    /// The directory under which serve's local storage for the run is made (and removed after).
    pub storage_parent: PathBuf,
}

/// One reply's send.
struct Sent {
    started: Instant,
    /// When the final `.` was written (the raw client only).
    data_end: Option<Instant>,
    accepted: Instant,
    /// The stored reply the `250` names, or why there is none.
    filed: Result<Uuid, String>,
}

impl Sent {
    fn failed(why: String) -> Self {
        let now = Instant::now();
        Self { started: now, data_end: None, accepted: now, filed: Err(why) }
    }
}

/// What the owner's socket saw.
#[derive(Debug)]
enum Seen {
    Inbound {
        id: Uuid,
        kind: String,
        at: Instant,
    },
    Notification,
    /// The server said events were lost (the socket fell behind, and re-reads instead).
    Resync(String),
    Closed(String),
}

/// Events of the owner's socket, kept as they are drained from its thread.
#[derive(Default)]
struct Heard {
    inbound: HashMap<Uuid, (String, Instant)>,
    notifications: usize,
    resyncs: Vec<String>,
    closed: Option<String>,
}

impl Heard {
    fn take(&mut self, seen: Seen) {
        match seen {
            Seen::Inbound { id, kind, at } => {
                self.inbound.insert(id, (kind, at));
            }
            Seen::Notification => self.notifications += 1,
            Seen::Resync(reason) => self.resyncs.push(reason),
            Seen::Closed(why) => self.closed = Some(why),
        }
    }
}

/// The owner's socket on a thread of its own.
struct OwnerSocket {
    events: mpsc::UnboundedReceiver<Seen>,
    heard: Heard,
    stop: CancellationToken,
}

impl OwnerSocket {
    /// Opens `/ws` with the owner's session and returns once its snapshot arrived.
    async fn open(addr: SocketAddr, cookie: &str) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let (cookie, token) = (cookie.to_owned(), stop.clone());
        std::thread::Builder::new()
            .name("owner-socket".to_owned())
            .spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(listen(addr, cookie, ready_tx, events_tx, token)),
                Err(err) => {
                    let _ = ready_tx.send(Err(anyhow::Error::new(err).context("the socket thread's runtime")));
                }
            })
            .context("starting the socket thread")?;
        ready_rx.await.context("the socket thread ended")??;
        Ok(Self { events, heard: Heard::default(), stop })
    }

    /// Takes in every event that arrived so far.
    fn drain(&mut self) {
        while let Ok(seen) = self.events.try_recv() {
            self.heard.take(seen);
        }
    }

    /// Waits until every id in `ids` has its event, or no event came for `quiet`.
    async fn wait_for(&mut self, ids: &[Uuid], quiet: Duration) {
        self.drain();
        while ids.iter().any(|id| !self.heard.inbound.contains_key(id)) && self.heard.closed.is_none() {
            match tokio::time::timeout(quiet, self.events.recv()).await {
                Ok(Some(seen)) => self.heard.take(seen),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

impl OwnerSocket {
    /// Waits until `count` notifications have come in all (each follows its reply's inbound
    /// event), or none came for `quiet`.
    async fn wait_for_notifications(&mut self, count: usize, quiet: Duration) {
        self.drain();
        while self.heard.notifications < count && self.heard.closed.is_none() {
            match tokio::time::timeout(quiet, self.events.recv()).await {
                Ok(Some(seen)) => self.heard.take(seen),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

impl Drop for OwnerSocket {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The socket thread: connects, waits for the snapshot, then reports every event as it is read.
async fn listen(
    addr: SocketAddr,
    cookie: String,
    ready: oneshot::Sender<anyhow::Result<()>>,
    events: mpsc::UnboundedSender<Seen>,
    stop: CancellationToken,
) {
    let open = async {
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        request.headers_mut().insert("Cookie", cookie.parse()?);
        request.headers_mut().insert("Origin", format!("http://{addr}").parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.context("WebSocket handshake")?;
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"snapshot""#) => Ok(socket),
            other => bail!("expected the snapshot, got {other:?}"),
        }
    };
    let mut socket = match tokio::time::timeout(Duration::from_secs(30), open).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(err)) => {
            let _ = ready.send(Err(err.context("opening the owner's /ws")));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(anyhow::anyhow!("the owner's /ws gave no snapshot within 30 s")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    loop {
        let message = match stop.run_until_cancelled(socket.next()).await {
            None => return,
            Some(Some(Ok(message))) => message,
            Some(Some(Err(err))) => {
                let _ = events.send(Seen::Closed(err.to_string()));
                return;
            }
            Some(None) => {
                let _ = events.send(Seen::Closed("the server closed the socket".to_owned()));
                return;
            }
        };
        let at = Instant::now();
        let Message::Text(text) = message else { continue };
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let seen = match event["type"].as_str() {
            Some("inbound") => match event["inbound_id"].as_str().and_then(|id| Uuid::parse_str(id).ok()) {
                Some(id) => Seen::Inbound { id, kind: event["kind"].as_str().unwrap_or_default().to_owned(), at },
                None => continue,
            },
            Some("notification") => Seen::Notification,
            Some("resync") => Seen::Resync(event["reason"].as_str().unwrap_or_default().to_owned()),
            _ => continue,
        };
        if events.send(seen).is_err() {
            return;
        }
    }
}

/// Who a reply comes from, and where it goes.
struct Correspondent {
    name: String,
    email: String,
    reply_to: String,
}

/// A fresh database with the owner, serve with the receiver, the ledger rows, the socket; then the
/// warm-up and the measured replies; then everything stopped and dropped.
pub async fn run(spec: &InboundSpec) -> anyhow::Result<InboundRun> {
    let load_at_start = probe::load_average();
    let database = format!("{}_inbound", spec.database);
    let url = format!("{}/{database}", spec.postgres);
    server::drop_database(&spec.postgres, &database).await?;
    server::create_user(&spec.borcelle, &url, OWNER, "Bench Owner").await?;
    let db = PgPool::connect(&url).await.with_context(|| format!("connecting to {database}"))?;
    let postgres_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&db).await?;
    let smtp_port = server::free_port()?;
    let sink = Sink::start(SinkKind::Rust, smtp_port).await?;
    let storage_dir = spec.storage_parent.join(format!("borcelle-bench-inbound-{}", std::process::id()));
    let stem = spec.serve_log.file_stem().and_then(|s| s.to_str()).unwrap_or("borcelle-bench-serve");
    let log = spec.serve_log.with_file_name(format!("{stem}-inbound.log"));
    let inbound_addr: SocketAddr = ([127, 0, 0, 1], server::free_port()?).into();
    let config = ServeConfig {
        database_url: url,
        port: server::free_port()?,
        smtp_port,
        delivery_concurrency: 16,
        smtp_pool_size: 4,
        log: log.clone(),
        dkim: None,
        inbound: Some(ServeInbound {
            domain: DOMAIN.to_owned(),
            listen: inbound_addr,
            max_connections_per_client: (spec.clients * 2).max(500),
            storage_dir: storage_dir.clone(),
        }),
    };
    crate::cli::say(&format!(
        "inbound: starting {} serve with the receiver on {inbound_addr}",
        spec.borcelle.display()
    ));
    let (measured, stopped) = match Serve::start(&spec.borcelle, &config).await {
        Ok(serve) => {
            let measured = measure(spec, &db, &serve, inbound_addr, &log).await;
            (measured, serve.stop().await)
        }
        Err(err) => (Err(err), Ok(())),
    };
    sink.stop().await;
    db.close().await;
    let _ = std::fs::remove_dir_all(&storage_dir);
    if !spec.keep_database {
        server::drop_database(&spec.postgres, &database).await?;
    }
    let mut run = measured.with_context(|| format!("serve's log: {}", log.display()))?;
    stopped.context("stopping serve")?;
    run.storage = format!("{} ({})", storage_dir.display(), filesystem(&storage_dir));
    run.postgres_version = postgres_version;
    run.load_at_start = load_at_start;
    run.load_at_end = probe::load_average();
    run.commit = crate::conditions::commit().await;
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    run.build = format!(
        "serve is {} (scripts/bench builds it with the workspace's release profile: lto = \"thin\", \
         codegen-units = 4), the bench a {profile} build",
        spec.borcelle.display()
    );
    println!("{}", run.summary());
    Ok(run)
}

async fn measure(
    spec: &InboundSpec,
    db: &PgPool,
    serve: &Serve,
    inbound_addr: SocketAddr,
    log: &Path,
) -> anyhow::Result<InboundRun> {
    let session = Session::login(serve.addr, OWNER).await?;
    let contacts = spec.contacts.max(1);
    seed::recipients(db, OWNER, TAG, contacts as i64).await?;
    let sent = delivery::end_to_end(&session, TAG, PLAIN, contacts, Duration::from_secs(60)).await?;
    ensure!(sent.failed == 0, "the send that makes the ledger rows failed for {} contacts", sent.failed);
    let addresses = Addresses::load(db, DOMAIN).await.context("loading the inbound addresses' key")?;
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT m.id, c.name, m.to_email FROM messages m JOIN contacts c ON c.id = m.contact_id
         JOIN users u ON u.id = m.owner_id WHERE u.email = $1 ORDER BY m.to_email",
    )
    .bind(OWNER)
    .fetch_all(db)
    .await?;
    ensure!(rows.len() == contacts, "{} ledger rows, not {contacts}", rows.len());
    let correspondents: Arc<Vec<Correspondent>> = Arc::new(
        rows.into_iter()
            .map(|(row, name, email)| Correspondent { name, email, reply_to: addresses.address(Kind::Reply, row) })
            .collect(),
    );
    wait_for_port(inbound_addr).await?;
    let mut socket = OwnerSocket::open(serve.addr, &session.cookie).await?;

    let clients = spec.clients.max(1);
    let mut senders = Senders::open(spec.client, inbound_addr, clients).await?;
    let message_bytes = message_size(&correspondents[0])?;

    crate::cli::say(&format!("inbound: warm-up, {WARMUP_REPLIES} replies on {clients} SMTP clients"));
    let (warmup, _) = senders.send_all(&correspondents, WARMUP_REPLIES).await;
    let warmup_ids: Vec<Uuid> = warmup.iter().filter_map(|s| s.filed.as_ref().ok().copied()).collect();
    if let Some(Err(first)) = warmup.iter().map(|s| &s.filed).find(|f| f.is_err()) {
        bail!("a warm-up reply was refused: {first}");
    }
    socket.wait_for(&warmup_ids, EVENT_WAIT).await;
    let missing = warmup_ids.iter().filter(|id| !socket.heard.inbound.contains_key(id)).count();
    ensure!(missing == 0, "{missing} warm-up replies never showed on the owner's socket");
    socket.wait_for_notifications(warmup_ids.len(), Duration::from_secs(2)).await;
    let notifications_before = socket.heard.notifications;

    crate::cli::say(&format!(
        "inbound: {} replies of {message_bytes} bytes on {clients} SMTP clients ({:?})",
        crate::report::thousands(spec.replies as f64),
        spec.client
    ));
    let filed_in_log_before = filing_times(log).len();
    let cpu = CpuMeter::start(serve.pid, &serve.database);
    let (sends, elapsed) = senders.send_all(&correspondents, spec.replies).await;
    let cpu = cpu.finish();
    let ids: Vec<Uuid> = sends.iter().filter_map(|s| s.filed.as_ref().ok().copied()).collect();
    socket.wait_for(&ids, EVENT_WAIT).await;
    socket.wait_for_notifications(notifications_before + ids.len(), Duration::from_secs(2)).await;
    // Anything more (a notification too many) would show in the count.
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.drain();
    let heard = &socket.heard;

    let mut run = InboundRun::new(spec.client, spec.replies, clients, contacts, message_bytes);
    run.elapsed = elapsed;
    run.cpu = cpu;
    for sent in &sends {
        match &sent.filed {
            Ok(id) => {
                run.accepted += 1;
                run.send.push(ms(sent.accepted.saturating_duration_since(sent.started)));
                if let Some(data_end) = sent.data_end {
                    run.data_to_accept.push(ms(sent.accepted.saturating_duration_since(data_end)));
                }
                match heard.inbound.get(id) {
                    Some((kind, at)) => {
                        if kind != "reply" {
                            run.wrong_kind += 1;
                        }
                        run.after_accept.push(signed_ms(sent.accepted, *at));
                        run.total.push(ms(at.saturating_duration_since(sent.started)));
                        if let Some(data_end) = sent.data_end {
                            run.from_data_end.push(signed_ms(data_end, *at));
                        }
                    }
                    None => run.missing_events += 1,
                }
            }
            Err(err) => {
                run.refused += 1;
                run.first_error.get_or_insert_with(|| err.clone());
            }
        }
    }
    run.notifications = heard.notifications - notifications_before;
    run.resyncs = heard.resyncs.clone();
    run.socket_closed = heard.closed.clone();
    let filing = filing_times(log);
    run.filing = filing.get(filed_in_log_before..).map(<[f64]>::to_vec).unwrap_or_default();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inbound_messages WHERE kind = 'reply'").fetch_one(db).await?;
    run.stored = usize::try_from(stored).unwrap_or(0).saturating_sub(warmup_ids.len());
    run.serve_rss_kib = probe::memory_kib(serve.pid).map_or(0, |(hwm, _)| hwm);
    Ok(run)
}

/// The clients replies are sent with, kept from one run to the next (the warm-up opens the
/// connections the measured run uses).
enum Senders {
    /// One pooled transport shared by `clients` tasks.
    Lettre { transport: Arc<SmtpTransport>, clients: usize },
    /// A connection per task.
    Raw { addr: SocketAddr, connections: Vec<RawClient> },
}

impl Senders {
    async fn open(kind: ClientKind, addr: SocketAddr, clients: usize) -> anyhow::Result<Self> {
        Ok(match kind {
            ClientKind::Lettre => Senders::Lettre {
                transport: Arc::new(
                    delivery::transport(addr.port(), u32::try_from(clients).unwrap_or(u32::MAX))
                        .context("the SMTP client")?,
                ),
                clients,
            },
            ClientKind::Raw => {
                let mut connections = Vec::with_capacity(clients);
                for _ in 0..clients {
                    connections.push(RawClient::connect(addr).await?);
                }
                Senders::Raw { addr, connections }
            }
        })
    }

    /// `count` replies, the correspondents in turn, each client sending its next one when the
    /// previous is answered. Returns each send and the wall time from the first start to the last
    /// answer.
    async fn send_all(&mut self, correspondents: &Arc<Vec<Correspondent>>, count: usize) -> (Vec<Sent>, Duration) {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut all = Vec::with_capacity(count);
        match self {
            Senders::Lettre { transport, clients } => {
                let mut senders = tokio::task::JoinSet::new();
                for _ in 0..*clients {
                    let (transport, correspondents, next) = (transport.clone(), correspondents.clone(), next.clone());
                    senders.spawn(async move {
                        let mut sent = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count {
                                return sent;
                            }
                            let email = reply(&correspondents[i % correspondents.len()]);
                            let started = Instant::now();
                            let answer = transport.send(&email).await;
                            let accepted = Instant::now();
                            let filed = match answer {
                                Ok(delivery) => filed_as(&delivery.provider_id),
                                Err(err) => Err(err.to_string()),
                            };
                            sent.push(Sent { started, data_end: None, accepted, filed });
                        }
                    });
                }
                while let Some(joined) = senders.join_next().await {
                    match joined {
                        Ok(sent) => all.extend(sent),
                        Err(err) => all.push(Sent::failed(format!("a sender panicked: {err}"))),
                    }
                }
            }
            Senders::Raw { addr, connections } => {
                let addr = *addr;
                let mut senders = tokio::task::JoinSet::new();
                for mut connection in std::mem::take(connections) {
                    let (correspondents, next) = (correspondents.clone(), next.clone());
                    senders.spawn(async move {
                        let mut sent = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= count {
                                return (Some(connection), sent);
                            }
                            let to = &correspondents[i % correspondents.len()];
                            let message = match borcelle_mail::build_message(&reply(to)) {
                                Ok(message) => message.formatted(),
                                Err(err) => {
                                    sent.push(Sent::failed(format!("building a reply: {err}")));
                                    continue;
                                }
                            };
                            let started = Instant::now();
                            let answer = connection.send(&to.email, &to.reply_to, &message).await;
                            let accepted = Instant::now();
                            match answer {
                                Ok(done) => sent.push(Sent {
                                    started,
                                    data_end: Some(done.data_end),
                                    accepted,
                                    filed: filed_as(&done.answer),
                                }),
                                Err(err) => {
                                    sent.push(Sent {
                                        started,
                                        data_end: None,
                                        accepted,
                                        filed: Err(format!("{err:#}")),
                                    });
                                    // The session is in an unknown state: a new one, or this client stops.
                                    match RawClient::connect(addr).await {
                                        Ok(fresh) => connection = fresh,
                                        Err(_) => return (None, sent),
                                    }
                                }
                            }
                        }
                    });
                }
                while let Some(joined) = senders.join_next().await {
                    match joined {
                        Ok((connection, sent)) => {
                            connections.extend(connection);
                            all.extend(sent);
                        }
                        Err(err) => all.push(Sent::failed(format!("a sender panicked: {err}"))),
                    }
                }
            }
        }
        let last = all.iter().map(|s| s.accepted).max().unwrap_or(started);
        (all, last.saturating_duration_since(started))
    }
}

/// The stored reply a `250` names: `250 2.0.0 Ok: filed as <uuid>`.
fn filed_as(answer: &str) -> Result<Uuid, String> {
    answer
        .rsplit(' ')
        .next()
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| format!("the receiver answered {answer:?}, naming no stored reply"))
}

fn reply(to: &Correspondent) -> OutgoingEmail {
    OutgoingEmail {
        from: Mailbox { name: Some(to.name.clone()), email: to.email.clone() },
        to: Mailbox { name: None, email: to.reply_to.clone() },
        reply_to: None,
        attachments: Vec::new(),
        unsubscribe: None,
        ledger_id: None,
        envelope_from: None,
        subject: SUBJECT.to_owned(),
        text: TEXT.to_owned(),
        html: HTML.to_owned(),
        message_id: format!("<{}@mail.sink.example>", Uuid::now_v7().simple()),
        date: SystemTime::now(),
    }
}

/// Bytes of one reply as it goes on the wire.
fn message_size(to: &Correspondent) -> anyhow::Result<usize> {
    Ok(borcelle_mail::build_message(&reply(to)).context("building a reply")?.formatted().len())
}

async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the inbound receiver does not listen on {addr}")
}

/// The `ms` of every "filed inbound mail" line of serve's log (the time `Inbox::file` took: read,
/// keep the raw bytes, the transaction, publish), in order.
fn filing_times(log: &Path) -> Vec<f64> {
    let Ok(text) = std::fs::read_to_string(log) else { return Vec::new() };
    text.lines()
        .filter(|line| line.contains("filed inbound mail"))
        .filter_map(|line| {
            let plain = strip_ansi(line);
            let value = plain.split_whitespace().find_map(|field| field.strip_prefix("ms="))?;
            value.trim_matches(|c| c == '"' || c == ',').parse().ok()
        })
        .collect()
}

/// A log line without its terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The file system a path is on, from `/proc/mounts`: its type and device.
fn filesystem(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point).then(|| (point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "file system unknown".to_owned(), |(_, fs)| fs)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from { ms(to - from) } else { -ms(from - to) }
}
