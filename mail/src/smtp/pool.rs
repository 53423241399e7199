//! The SMTP connections: lettre's client ([`AsyncSmtpConnection`]) over sockets of our own, so
//! that nothing waits that need not.
//!
//! - Every socket has `TCP_NODELAY`: lettre's own connect leaves Nagle's algorithm on, and with
//!   the server's delayed ACKs each command then waits tens of milliseconds for the previous
//!   segment's acknowledgement. The socket is handed to lettre through its existing-stream
//!   constructor ([`AsyncSmtpConnection::connect_with_transport`]); lettre does the rest (greeting,
//!   EHLO, STARTTLS, AUTH, dot-stuffing, reply parsing).
//! - A pooled connection is reused as it is: no `NOOP` before each message (lettre's pool sends
//!   one, a round trip per message). A connection the server closed while idle fails at the
//!   first reply, before any of the message was written, and the message goes again at once on a
//!   new connection: nothing can have been delivered.
//! - When the server offers `PIPELINING` (RFC 2920), `MAIL`, `RCPT` and `DATA` go in one write and
//!   their replies are read after it, with lettre's public `command` and `read_response`: two
//!   round trips per message instead of four. The message and the end of its data go in one write
//!   too ([`Content`]).
//! - Up to the pool size, connections are opened as sends need them. A server that refuses one
//!   more (a `421` greeting) while others are open has said how many it takes: the pool gives up
//!   that slot for a minute, then tries again.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)]
use lettre::transport::smtp::client::{AsyncNetworkStream, AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use super::failure;
use crate::MailError;

/// An idle connection older than this is closed rather than reused (servers close theirs after
/// a few minutes; Postfix after 300 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages up to this size go with the end of their data in one write ([`Content`]): bulk mail
/// without attachments. lettre writes `Content` through a string that grows as it is written,
/// which for a large message would hold up to twice its size at once.
const ONE_WRITE_MAX: usize = 64 * 1024;
/// How long a slot the server refused stays given up.
const REFUSED_SLOT_PAUSE: Duration = Duration::from_secs(60);
/// lettre's own choice of mechanisms (PLAIN, then LOGIN), over TLS in practice.
const MECHANISMS: &[Mechanism] = &[Mechanism::Plain, Mechanism::Login];

/// How connections are secured.
pub(super) enum Security {
    Plain,
    Starttls(TlsParameters),
    /// TLS from the first byte (implicit TLS, port 465).
    Wrapper(TlsParameters),
}

/// Where and how to connect.
pub(super) struct Connector {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) security: Security,
    pub(super) credentials: Option<Credentials>,
    /// Each step (connect, a command group, the message) must end within it.
    pub(super) timeout: Duration,
}

/// One open connection and what its server offers.
struct Connection {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
    idle_since: Instant,
    _open: Counted,
}

/// A connection's place in the pool's count of open ones, given up when the connection is dropped
/// for whatever reason: closed, broken, expired, or its send aborted mid-transaction (a count kept
/// by hand missed the last, and a pool that counted connections it no longer had took a restarting
/// server's `421` for "no more than you have" and gave up slots it needed).
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A bounded pool of connections to one server.
pub(super) struct Pool {
    connector: Connector,
    hello: ClientId,
    idle: Mutex<Vec<Connection>>,
    slots: Arc<Semaphore>,
    /// Connections open now, idle or sending (see [`Counted`]).
    open: Arc<AtomicUsize>,
}

/// The right to one connection of the pool for one send.
pub(super) struct Slot<'a>(tokio::sync::SemaphorePermit<'a>);

/// How a transaction ended when it did not end with the message accepted.
enum Failure {
    /// The server refused; the connection is between transactions again (after `RSET`).
    Refused(MailError),
    /// The connection is unusable (network error, timeout, out of step); it is dropped.
    Broken(MailError),
    /// No reply at all to the first command of a reused connection: the server had closed it.
    /// None of the message was written.
    Closed(MailError),
}

impl Pool {
    pub(super) fn new(connector: Connector, size: u32) -> Self {
        let size = usize::try_from(size.max(1)).unwrap_or(1);
        Self {
            connector,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(size)),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot for one send: taken before the message is built, so that no more messages are held
    /// built (attachments and all) than there are connections.
    pub(super) async fn slot(&self) -> Result<Slot<'_>, MailError> {
        let permit = self.slots.acquire().await.map_err(|_| MailError::Transient("the SMTP pool is closed".into()))?;
        Ok(Slot(permit))
    }

    /// Sends one message in its slot: on an idle connection when there is one, else on a new one.
    pub(super) async fn send(
        &self,
        slot: Slot<'_>,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, MailError> {
        let slot = slot.0;
        // A reused connection the server had closed is dropped and the next one tried; a new
        // connection ends the loop whatever happens on it.
        loop {
            let (mut connection, reused) = match self.take_idle() {
                Some(connection) => (connection, true),
                None => match self.open().await {
                    Ok(connection) => (connection, false),
                    Err(err) => {
                        if self.open.load(Ordering::Relaxed) > 0 && refusal_of_one_more(&err) {
                            // Others are open: this server takes no more than it has now.
                            slot.forget();
                            self.give_back_later();
                            tracing::info!(open = self.open.load(Ordering::Relaxed), error = %err,
                                "the SMTP server refused one more connection: one slot fewer for a minute");
                        }
                        return Err(err);
                    }
                },
            };
            match self.transaction(&mut connection, envelope, message, reused).await {
                Ok(response) => {
                    self.put_back(connection);
                    return Ok(response);
                }
                Err(Failure::Refused(err)) => {
                    self.put_back(connection);
                    return Err(err);
                }
                Err(Failure::Broken(err)) => return Err(err),
                Err(Failure::Closed(err)) => {
                    tracing::debug!(error = %err, "an idle SMTP connection was closed by the server; sending on a new one");
                }
            }
        }
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(connection) = idle.pop() {
            if connection.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(connection);
            }
        }
        None
    }

    fn put_back(&self, mut connection: Connection) {
        connection.idle_since = Instant::now();
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(connection);
    }

    /// A refused slot comes back after a pause.
    fn give_back_later(&self) {
        let slots = Arc::clone(&self.slots);
        tokio::spawn(async move {
            tokio::time::sleep(REFUSED_SLOT_PAUSE).await;
            slots.add_permits(1);
        });
    }

    /// Opens, secures and authenticates a connection, and learns whether it pipelines.
    async fn open(&self) -> Result<Connection, MailError> {
        let connector = &self.connector;
        let step = async {
            let socket = TcpStream::connect((connector.host.as_str(), connector.port)).await.map_err(|err| {
                MailError::Transient(format!("connecting to {}:{}: {err}", connector.host, connector.port))
            })?;
            socket.set_nodelay(true).map_err(|err| MailError::Transient(format!("setting TCP_NODELAY: {err}")))?;
            let stream: Box<dyn AsyncTokioStream> = match &connector.security {
                Security::Plain | Security::Starttls(_) => Box::new(socket),
                // lettre makes the TLS stream (its parameters carry our CA and versions), over our
                // socket; its stream type is public but deprecated (0.11.14: "not meant to be made
                // public"), and nothing else puts lettre's TLS over a socket of one's own. Pinned.
                #[allow(deprecated)]
                Security::Wrapper(parameters) => {
                    let mut tls = AsyncNetworkStream::use_existing_tokio1(Box::new(socket));
                    tls.upgrade_tls(parameters.clone()).await.map_err(|err| failure(&err))?;
                    Box::new(Tls(tls.compat()))
                }
            };
            let mut smtp =
                AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(|err| failure(&err))?;
            if let Security::Starttls(parameters) = &connector.security {
                smtp.starttls(parameters.clone(), &self.hello).await.map_err(|err| failure(&err))?;
            }
            // lettre keeps the extensions it uses; PIPELINING is read off a second EHLO's reply,
            // before AUTH (an EHLO after it starts a new session: some servers forget the login).
            let ehlo = smtp.command(Ehlo::new(self.hello.clone())).await.map_err(|err| failure(&err))?;
            let pipelining = ehlo.message().any(|line| line.eq_ignore_ascii_case("PIPELINING"));
            if let Some(credentials) = &connector.credentials {
                smtp.auth(MECHANISMS, credentials).await.map_err(|err| failure(&err))?;
            }
            Ok((smtp, pipelining))
        };
        let (smtp, pipelining) = timed(connector.timeout, "connecting", step).await?;
        let connection = Connection { smtp, pipelining, idle_since: Instant::now(), _open: Counted::new(&self.open) };
        tracing::debug!(host = %connector.host, pipelining = connection.pipelining, "SMTP connection opened");
        Ok(connection)
    }

    /// One mail transaction: `MAIL`, `RCPT` for each recipient and `DATA` (one write when the
    /// server pipelines), then the message.
    async fn transaction(
        &self,
        connection: &mut Connection,
        envelope: &Envelope,
        message: &[u8],
        reused: bool,
    ) -> Result<Response, Failure> {
        let timeout = self.connector.timeout;
        let mail = Mail::new(envelope.from().cloned(), mail_parameters(connection, envelope, message)?);
        let rcpts: Vec<Rcpt> = envelope.to().iter().map(|to| Rcpt::new(to.clone(), Vec::new())).collect();
        let smtp = &mut connection.smtp;
        // The replies of MAIL, each RCPT and DATA, in order.
        let mut replies = Vec::with_capacity(rcpts.len() + 2);
        if connection.pipelining {
            let group = Group { mail: &mail, rcpts: &rcpts };
            replies.push(step(timeout, smtp.command(group)).await);
            if replies[0].as_ref().is_err_and(|err| err.is_none()) {
                return Err(closed_or_broken(replies.remove(0), reused));
            }
            for _ in 0..=rcpts.len() {
                if replies.last().is_some_and(|reply| reply.as_ref().is_err_and(Option::is_none)) {
                    break;
                }
                replies.push(step(timeout, smtp.read_response()).await);
            }
        } else {
            replies.push(step(timeout, smtp.command(&mail)).await);
            if replies[0].as_ref().is_err_and(|err| err.is_none()) {
                return Err(closed_or_broken(replies.remove(0), reused));
            }
            for rcpt in &rcpts {
                if replies.last().is_some_and(Result::is_err) {
                    break;
                }
                replies.push(step(timeout, smtp.command(rcpt)).await);
            }
            if replies.last().is_some_and(Result::is_ok) {
                replies.push(step(timeout, smtp.command(Data)).await);
            }
        }
        let accepted_data = replies.len() == rcpts.len() + 2 && replies.last().is_some_and(Result::is_ok);
        let first_refusal = replies.into_iter().find_map(Result::err);
        match (first_refusal, accepted_data) {
            (None, true) => {}
            (None, false) => return Err(Failure::Broken(MailError::Transient("SMTP replies out of step".into()))),
            // No reply (network, timeout): nothing more can be read in step.
            (Some(None), _) => return Err(Failure::Broken(MailError::Transient("the SMTP connection failed".into()))),
            // DATA was accepted after a refusal (a server that should not have): the message is
            // not written, and dropping the connection aborts the transaction.
            (Some(Some(err)), true) => return Err(Failure::Broken(err)),
            (Some(Some(err)), false) => {
                return match step(timeout, smtp.command(Rset)).await {
                    Ok(_) => Err(Failure::Refused(err)),
                    Err(_) => Err(Failure::Broken(err)),
                };
            }
        }
        let one_write = if message.len() <= ONE_WRITE_MAX { std::str::from_utf8(message).ok() } else { None };
        let sent = match one_write {
            Some(text) => step(timeout, smtp.command(Content(text))).await,
            // lettre's own: the content, then the end, exactly sized (a message with attachments,
            // where one more write is nothing next to its size).
            None => step(timeout, smtp.message(message)).await,
        };
        match sent {
            Ok(response) => Ok(response),
            // The server answered the end of the data: the transaction is over either way.
            Err(Some(err)) => Err(Failure::Refused(err)),
            Err(None) => Err(Failure::Broken(MailError::Transient(
                "the SMTP connection failed while the message was sent".into(),
            ))),
        }
    }
}

/// `MAIL`'s parameters: `SMTPUTF8` for non-ASCII addresses and `BODY=8BITMIME` for 8-bit content
/// (refused here when the server does not take them, as lettre does).
fn mail_parameters(
    connection: &Connection,
    envelope: &Envelope,
    message: &[u8],
) -> Result<Vec<MailParameter>, Failure> {
    let info = connection.smtp.server_info();
    let mut parameters = Vec::new();
    let non_ascii =
        envelope.from().into_iter().chain(envelope.to()).any(|address| !AsRef::<str>::as_ref(address).is_ascii());
    if non_ascii {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(Failure::Refused(MailError::Permanent(
                "the address is not ASCII and the SMTP server does not support SMTPUTF8".into(),
            )));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() {
        if !info.supports_feature(Extension::EightBitMime) {
            return Err(Failure::Refused(MailError::Permanent(
                "the message is not ASCII and the SMTP server does not support 8BITMIME".into(),
            )));
        }
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    Ok(parameters)
}

/// What the first reply's failure means: on a reused connection, no reply at all is a server
/// that closed it while idle.
fn closed_or_broken(first: Result<Response, Option<MailError>>, reused: bool) -> Failure {
    let err = MailError::Transient("the SMTP server closed the connection".into());
    match first {
        Err(None) if reused => Failure::Closed(err),
        Err(Some(err)) => Failure::Broken(err),
        _ => Failure::Broken(err),
    }
}

/// A step of a transaction within the timeout: `Err(Some(_))` is the server's refusal (the
/// connection is in step), `Err(None)` no usable reply (network, timeout, garbage).
async fn step(
    timeout: Duration,
    reply: impl Future<Output = Result<Response, lettre::transport::smtp::Error>>,
) -> Result<Response, Option<MailError>> {
    match tokio::time::timeout(timeout, reply).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) if err.status().is_some() => Err(Some(failure(&err))),
        Ok(Err(_)) | Err(_) => Err(None),
    }
}

async fn timed<T>(
    timeout: Duration,
    what: &str,
    work: impl Future<Output = Result<T, MailError>>,
) -> Result<T, MailError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(MailError::Transient(format!("{what} timed out after {timeout:?}"))))
}

/// Whether opening a connection failed because the server takes no more now: a `421` greeting.
/// A refused connect is not that (a server at its limit greets with 421, or its kernel drops the
/// connection; a refusal is a server that is down, whose dead connections the pool still counts
/// until it next uses them).
fn refusal_of_one_more(err: &MailError) -> bool {
    match err {
        MailError::Transient(text) => text.contains("(421)"),
        _ => false,
    }
}

/// `MAIL`, the `RCPT`s and `DATA` as one write (each command already ends in CRLF).
struct Group<'a> {
    mail: &'a Mail,
    rcpts: &'a [Rcpt],
}

impl fmt::Display for Group<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mail)?;
        for rcpt in self.rcpts {
            write!(f, "{rcpt}")?;
        }
        write!(f, "{Data}")
    }
}

/// The message as `DATA`'s content, dot-stuffed (RFC 5321 §4.5.2: a line that starts with a dot
/// gets one more, as lettre's codec does), followed by the end of the data (`CRLF . CRLF`): one
/// write. lettre's `message` writes the end apart from the content, which cost every message one
/// more segment, and the server one more wake-up, on a connection that already pipelines.
pub(super) struct Content<'a>(pub(super) &'a str);

/// A line that starts with a dot (a searcher built once, for every message).
static DOT_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n."));

impl fmt::Display for Content<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        if rest.starts_with('.') {
            f.write_str(".")?;
        }
        while let Some(at) = DOT_LINE.find(rest.as_bytes()) {
            // Up to and including the line's first dot, then the added one.
            let (line, next) = rest.split_at(at + 3);
            f.write_str(line)?;
            f.write_str(".")?;
            rest = next;
        }
        f.write_str(rest)?;
        f.write_str("\r\n.\r\n")
    }
}

/// lettre's TLS stream (made over our socket) as a stream lettre's connection takes.
#[allow(deprecated)]
struct Tls(Compat<AsyncNetworkStream>);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().peer_addr()
    }
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
