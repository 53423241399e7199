//! The SMTP receiver: mailin's SMTP state machine (commands, sequence, replies), driven by tokio
//! here, with STARTTLS through rustls.
//!
//! - Only Borcelle's own addresses are accepted, at `RCPT` (550 for every other one): never a relay.
//! - A message is kept and filed ([`Inbox::file`]) before `250` is answered; a failure to keep it
//!   answers `451` and the sender tries again.
//! - Limits: the message size (552 past it, the rest of the message read and dropped), recipients
//!   per message, connections in all and per client address, new connections per client per
//!   minute, bytes buffered by all sessions together (452 past it), a timeout for each command
//!   and for the whole session, and the length of a command line.
//!
//! mailin's sessions are not `Send`: each runs on a small pool of threads with a local task set
//! ([`LocalPoolHandle`]), many sessions per thread; filing runs on the server's runtime.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mailin::{Action, Response, SessionBuilder};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::LocalPoolHandle;
use uuid::Uuid;

use super::addresses::{Addresses, Kind};
use super::inbox::{Arrival, FileError, Filed, Inbox};
use super::settings::InboundSettings;

/// Longest command line (RFC 5321 allows 512 bytes; extensions add a little).
const COMMAND_LINE_MAX: usize = 4096;
/// How long a stopping receiver waits for its open sessions.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Client addresses remembered before the idle ones are forgotten.
const CLIENTS_REMEMBERED: usize = 10_000;
/// Most recipients of one message (RFC 5321's minimum for servers is 100).
const RECIPIENTS_MAX: usize = 100;
/// What the null reverse path (`MAIL FROM:<>`, the sender of every delivery report) is handed to
/// mailin as: its parser wants at least one character between the brackets.
const NULL_SENDER: &str = "null-sender@null.invalid";

/// A running receiver's shared parts.
struct Shared {
    inbox: Inbox,
    settings: InboundSettings,
    tls: Option<TlsAcceptor>,
    builder: SessionBuilder,
    /// Bytes of message data all sessions may hold at once.
    memory: Arc<Semaphore>,
    /// Connections open now, in all.
    connections: Arc<Semaphore>,
    clients: Mutex<HashMap<IpAddr, Client>>,
    /// Where filing runs (the server's runtime; sessions run on the local pool).
    runtime: tokio::runtime::Handle,
}

/// What the receiver knows of one client address.
#[derive(Debug, Default)]
struct Client {
    open: usize,
    /// Connections accepted in the current minute, and when it started.
    recent: u32,
    window: Option<Instant>,
}

/// The SMTP receiver of inbound mail.
pub struct Receiver {
    shared: Arc<Shared>,
    pool: LocalPoolHandle,
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("reading the TLS certificate or key {path}: {message}")]
    Tls { path: String, message: String },
}

impl Receiver {
    /// A receiver filing into `inbox`, with the settings' limits and TLS.
    pub fn new(inbox: Inbox, settings: InboundSettings) -> Result<Self, ReceiverError> {
        let tls = settings.tls.as_ref().map(|files| tls_acceptor(&files.certificate, &files.key)).transpose()?;
        let mut builder = SessionBuilder::new(settings.hostname.clone());
        if tls.is_some() {
            builder.enable_start_tls();
        }
        let threads = settings.threads.max(1);
        let shared = Shared {
            inbox,
            memory: Arc::new(Semaphore::new(settings.memory_bytes.min(Semaphore::MAX_PERMITS))),
            connections: Arc::new(Semaphore::new(settings.max_connections.max(1))),
            settings,
            tls,
            builder,
            clients: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        };
        Ok(Self { shared: Arc::new(shared), pool: LocalPoolHandle::new(threads) })
    }

    /// Accepts connections until `stop`, then lets open sessions finish their current command.
    pub async fn run(self, listener: TcpListener, stop: CancellationToken) {
        tracing::info!(
            addr = ?listener.local_addr().ok(), domain = self.shared.inbox.addresses.domain(),
            starttls = self.shared.tls.is_some(), "inbound SMTP receiver listening"
        );
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %err, "accepting an SMTP connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let refusal = match shared.connections.clone().try_acquire_owned() {
                Err(_) => Err("421 4.7.0 Too many connections, try again later\r\n"),
                Ok(permit) => shared.admit(peer.ip()).map(|()| permit),
            };
            match refusal {
                Err(reply) => {
                    tokio::spawn(async move {
                        let mut stream = stream;
                        let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
                        let _ = stream.shutdown().await;
                    });
                }
                Ok(permit) => {
                    let Ok(std_stream) = stream.into_std() else {
                        shared.leave(peer.ip());
                        continue;
                    };
                    let stop = stop.clone();
                    self.pool.spawn_pinned(move || async move {
                        let _permit = permit;
                        if let Ok(stream) = TcpStream::from_std(std_stream) {
                            let limit = shared.settings.session_timeout;
                            let talk = session(shared.clone(), stream, peer, stop);
                            if tokio::time::timeout(limit, talk).await.is_err() {
                                tracing::debug!(%peer, "SMTP session reached its time limit");
                            }
                        }
                        shared.leave(peer.ip());
                    });
                }
            }
        }
        // Open sessions answer their current command and close (421); a message being filed is
        // filed (or refused with 451 and sent again later).
        let all = u32::try_from(self.shared.settings.max_connections.max(1)).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, self.shared.connections.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!("inbound SMTP sessions still open at the end of the grace period");
        }
        tracing::info!("inbound SMTP receiver stopped");
    }
}

impl Shared {
    /// Counts a new connection from `ip`, or says why it is refused.
    fn admit(&self, ip: IpAddr) -> Result<(), &'static str> {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if clients.len() >= CLIENTS_REMEMBERED {
            // Bounded memory: addresses with nothing open and no count in the current minute go.
            clients
                .retain(|_, c| c.open > 0 || c.window.is_some_and(|start| start.elapsed() < Duration::from_secs(60)));
        }
        let client = clients.entry(ip).or_default();
        if client.open >= self.settings.max_connections_per_client {
            return Err("421 4.7.0 Too many connections from your address, try again later\r\n");
        }
        if let Some(rate) = self.settings.connections_per_minute {
            let now = Instant::now();
            match client.window {
                Some(start) if now.duration_since(start) < Duration::from_secs(60) => {}
                _ => {
                    client.window = Some(now);
                    client.recent = 0;
                }
            }
            if client.recent >= rate {
                return Err("421 4.7.0 Too many connections from your address this minute, try again later\r\n");
            }
            client.recent += 1;
        }
        client.open += 1;
        Ok(())
    }

    fn leave(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get_mut(&ip) {
            client.open = client.open.saturating_sub(1);
            let stale = client.window.is_none_or(|start| start.elapsed() >= Duration::from_secs(60));
            if client.open == 0 && stale {
                clients.remove(&ip);
            }
        }
    }
}

fn tls_acceptor(certificate: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, ReceiverError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let failed =
        |path: &std::path::Path, message: String| ReceiverError::Tls { path: path.display().to_string(), message };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|err| failed(certificate, err.to_string()))?;
    if certificates.is_empty() {
        return Err(failed(certificate, "no certificate in the file".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|err| failed(key, err.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| failed(certificate, err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|err| failed(certificate, err.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One transaction's state, shared by mailin's handler (which sees the commands) and the
/// session loop (which keeps and files the message before answering).
#[derive(Default)]
struct Transaction {
    from: String,
    recipients: Vec<(Kind, Uuid)>,
    data: Vec<u8>,
    too_big: bool,
    no_memory: bool,
    permits: Option<OwnedSemaphorePermit>,
    /// Set at the end of `DATA`: the message to keep, or why it is refused.
    finished: Option<Finished>,
}

enum Finished {
    Message(Arrival),
    Refused(Response),
}

struct Handler {
    state: Rc<RefCell<Transaction>>,
    addresses: Addresses,
    max_bytes: usize,
    memory: Arc<Semaphore>,
}

impl mailin::Handler for Handler {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        let mut state = self.state.borrow_mut();
        let from = if from == NULL_SENDER { "" } else { from };
        *state = Transaction { from: from.chars().take(320).collect(), ..Transaction::default() };
        mailin::response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let mut state = self.state.borrow_mut();
        if state.recipients.len() >= RECIPIENTS_MAX {
            return Response::custom(452, "4.5.3 Too many recipients".to_owned());
        }
        match self.addresses.parse(to) {
            Some(named) => {
                state.recipients.push(named);
                mailin::response::OK
            }
            None => Response::custom(
                550,
                "5.1.1 No such address here: this server accepts mail only for Borcelle's reply and bounce addresses"
                    .to_owned(),
            ),
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, _to: &[String]) -> Response {
        let mut state = self.state.borrow_mut();
        state.data.clear();
        state.finished = None;
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.borrow_mut();
        if state.too_big || state.no_memory {
            return Ok(());
        }
        if state.data.len() + buf.len() > self.max_bytes {
            state.too_big = true;
            state.data = Vec::new();
            state.permits = None;
            return Ok(());
        }
        let wanted = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        match self.memory.clone().try_acquire_many_owned(wanted) {
            Ok(permit) => match &mut state.permits {
                Some(held) => held.merge(permit),
                None => state.permits = Some(permit),
            },
            Err(_) => {
                state.no_memory = true;
                state.data = Vec::new();
                state.permits = None;
                return Ok(());
            }
        }
        state.data.extend_from_slice(buf);
        Ok(())
    }

    /// Always "OK" to mailin (so that its state machine leaves `DATA` whatever happens): the
    /// session loop answers for real once the message is kept, or refused.
    fn data_end(&mut self) -> Response {
        let mut state = self.state.borrow_mut();
        let finished = if state.too_big {
            Finished::Refused(Response::custom(
                552,
                format!("5.3.4 Message too big: this server accepts at most {} bytes", self.max_bytes),
            ))
        } else if state.no_memory {
            Finished::Refused(Response::custom(452, "4.3.1 Insufficient system storage, try again later".to_owned()))
        } else {
            Finished::Message(Arrival {
                envelope_from: std::mem::take(&mut state.from),
                recipients: std::mem::take(&mut state.recipients),
                raw: Bytes::from(std::mem::take(&mut state.data)),
                via: "smtp",
            })
        };
        state.finished = Some(finished);
        mailin::response::OK
    }
}

/// What a conversation on one stream ended with.
enum Ending {
    Closed,
    /// The client asked for TLS; the stream is handed back to be wrapped.
    StartTls,
}

async fn session(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
    let state = Rc::new(RefCell::new(Transaction::default()));
    let handler = Handler {
        state: state.clone(),
        addresses: shared.inbox.addresses.clone(),
        max_bytes: shared.settings.max_message_bytes,
        memory: shared.memory.clone(),
    };
    let mut smtp = shared.builder.build(peer.ip(), handler);
    let mut plain = BufReader::new(stream);
    let greeting = smtp.greeting();
    if write_response(&mut plain, &greeting).await.is_err() {
        return;
    }
    match converse(&shared, &mut smtp, &state, &mut plain, &stop).await {
        Ok(Ending::Closed) | Err(_) => {}
        Ok(Ending::StartTls) => {
            // Anything the client sent after STARTTLS, before the handshake, is dropped with
            // the connection: it would otherwise be read as if it came over TLS (CVE-2011-0411).
            if !plain.buffer().is_empty() {
                return;
            }
            let Some(acceptor) = &shared.tls else { return };
            let Ok(tls) = acceptor.accept(plain.into_inner()).await else { return };
            smtp.tls_active();
            let mut secure = BufReader::new(tls);
            let _ = converse(&shared, &mut smtp, &state, &mut secure, &stop).await;
        }
    }
}

/// Reads commands and data lines and answers them until the client leaves, asks for TLS, or a
/// limit ends the session.
async fn converse<S>(
    shared: &Shared,
    smtp: &mut mailin::Session<Handler>,
    state: &Rc<RefCell<Transaction>>,
    stream: &mut BufReader<S>,
    stop: &CancellationToken,
) -> std::io::Result<Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut line = Vec::with_capacity(1024);
    let mut in_data = false;
    loop {
        let max = if in_data { shared.settings.max_message_bytes + 2 } else { COMMAND_LINE_MAX };
        let read = tokio::select! {
            read = tokio::time::timeout(shared.settings.command_timeout, read_line(stream, &mut line, max)) => read,
            _ = stop.cancelled(), if !in_data => {
                write_response(stream, &mailin::response::NO_SERVICE).await?;
                return Ok(Ending::Closed);
            }
        };
        let overlong = match read {
            Err(_) => {
                let reply = Response::custom(421, "4.4.2 Timeout: closing the connection".to_owned());
                write_response(stream, &reply).await?;
                return Ok(Ending::Closed);
            }
            Ok(Err(err)) => return Err(err),
            Ok(Ok(LineRead::Eof)) => return Ok(Ending::Closed),
            Ok(Ok(LineRead::Line { overlong })) => overlong,
        };
        if overlong && !in_data {
            write_response(stream, &Response::custom(500, "5.5.2 Line too long".to_owned())).await?;
            continue;
        }
        let response = if in_data { smtp.process(&line) } else { smtp.process(&normalise_command(&line)) };
        if in_data {
            if response.action == Action::NoReply {
                continue;
            }
            in_data = false;
            let finished = state.borrow_mut().finished.take();
            let reply = match finished {
                Some(Finished::Message(arrival)) => file(shared, arrival).await,
                Some(Finished::Refused(reply)) => reply,
                None => response,
            };
            *state.borrow_mut() = Transaction::default();
            write_response(stream, &reply).await?;
            continue;
        }
        if response.code == 354 {
            in_data = true;
        }
        match response.action {
            Action::NoReply => {}
            Action::Reply => write_response(stream, &response).await?,
            Action::Close => {
                write_response(stream, &response).await?;
                return Ok(Ending::Closed);
            }
            Action::UpgradeTls => {
                write_response(stream, &response).await?;
                return Ok(Ending::StartTls);
            }
        }
    }
}

/// Keeps and files the message on the server's runtime, and says how it went.
async fn file(shared: &Shared, arrival: Arrival) -> Response {
    let inbox = shared.inbox.clone();
    let filed = shared.runtime.spawn(async move { inbox.file(arrival).await }).await;
    match filed {
        Ok(Ok(Filed::Stored { id, .. })) => Response::custom(250, format!("2.0.0 Ok: filed as {id}")),
        Ok(Ok(Filed::Duplicate)) => Response::custom(250, "2.0.0 Ok: filed already".to_owned()),
        Ok(Err(FileError::Unknown)) => {
            Response::custom(550, "5.1.1 No such message here: the address names no message of this server".to_owned())
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "keeping an inbound message failed; the sender will retry");
            Response::custom(451, "4.3.0 The message could not be kept, try again later".to_owned())
        }
        Err(err) => {
            tracing::error!(error = %err, "filing an inbound message stopped");
            Response::custom(451, "4.3.0 The message could not be kept, try again later".to_owned())
        }
    }
}

/// A command line as mailin's parser reads it: `MAIL FROM:<>` (the null sender of delivery
/// reports) with [`NULL_SENDER`] in the brackets, and the space some clients put after `FROM:` or
/// `TO:` removed.
fn normalise_command(line: &[u8]) -> Cow<'_, [u8]> {
    let upper: Vec<u8> = line.iter().take(10).map(u8::to_ascii_uppercase).collect();
    let prefix = if upper.starts_with(b"MAIL FROM:") {
        10
    } else if upper.starts_with(b"RCPT TO:") {
        8
    } else {
        return Cow::Borrowed(line);
    };
    let rest = &line[prefix..];
    let trimmed = rest.trim_ascii_start();
    if prefix == 10 && trimmed.starts_with(b"<>") {
        let mut fixed = line[..prefix].to_vec();
        fixed.push(b'<');
        fixed.extend_from_slice(NULL_SENDER.as_bytes());
        fixed.extend_from_slice(&trimmed[1..]);
        return Cow::Owned(fixed);
    }
    if trimmed.len() == rest.len() {
        return Cow::Borrowed(line);
    }
    let mut fixed = line[..prefix].to_vec();
    fixed.extend_from_slice(trimmed);
    Cow::Owned(fixed)
}

enum LineRead {
    /// A line (with its line ending) is in the buffer; `overlong` when more than the limit came
    /// (the rest of the line was read and dropped).
    Line {
        overlong: bool,
    },
    Eof,
}

/// Reads one line into `line` (cleared first), keeping at most `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    stream: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut overlong = false;
    loop {
        let available = stream.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() && !overlong { LineRead::Eof } else { LineRead::Line { overlong } });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            overlong = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = chunk.len();
        stream.consume(used);
        if done {
            return Ok(LineRead::Line { overlong });
        }
    }
}

async fn write_response<W: AsyncWrite + Unpin>(stream: &mut W, response: &Response) -> std::io::Result<()> {
    let bytes = response.buffer()?;
    if bytes.is_empty() {
        return Ok(());
    }
    stream.write_all(&bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_sender_and_spaced_paths_reach_mailin_in_a_form_it_reads() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"MAIL FROM:<>\r\n", b"MAIL FROM:<null-sender@null.invalid>\r\n"),
            (b"mail from: <> BODY=8BITMIME\r\n", b"mail from:<null-sender@null.invalid> BODY=8BITMIME\r\n"),
            (b"MAIL FROM: <a@b.c>\r\n", b"MAIL FROM:<a@b.c>\r\n"),
            (b"RCPT TO: <x@y.z>\r\n", b"RCPT TO:<x@y.z>\r\n"),
            (b"RCPT TO:<x@y.z>\r\n", b"RCPT TO:<x@y.z>\r\n"),
            (b"EHLO me\r\n", b"EHLO me\r\n"),
        ];
        for (line, expected) in cases {
            assert_eq!(&*normalise_command(line), expected, "{}", String::from_utf8_lossy(line));
        }
    }
}
