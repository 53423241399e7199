//! The SMTP clients the replies are sent with.
//!
//! - lettre (through borcelle-mail's pooled transport, the client serve itself sends with): the
//!   send is timed from its call, before `MAIL`, `RCPT` and `DATA` (one by one: the receiver does
//!   not offer PIPELINING), then the dot-stuffed message and the final `.` in one write, on a
//!   pooled connection with `TCP_NODELAY` that is reused without a `NOOP`.
//! - raw: a connection of its own per client with `TCP_NODELAY`, `MAIL`, `RCPT`, `DATA`, then the
//!   message and the final `.` in one write, after which the end of `DATA` is timed exactly.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// Which client sends the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// lettre, pooled (borcelle-mail's transport); timed from the start of each send.
    Lettre,
    /// The bench's own minimal client with TCP_NODELAY; timed from the end of DATA as well.
    Raw,
}

impl ClientKind {
    pub fn describe(self) -> &'static str {
        match self {
            ClientKind::Lettre => {
                "lettre 0.11's client through borcelle-mail's pooled transport, one pooled connection per client: \
                 TCP_NODELAY, no NOOP before reusing a connection, then MAIL, RCPT, DATA one by one (the receiver \
                 does not offer PIPELINING), then the dot-stuffed message and the final `.` in one write"
            }
            ClientKind::Raw => {
                "the bench's own minimal SMTP client, one connection per client with TCP_NODELAY: MAIL, RCPT, DATA, \
                 then the dot-stuffed message and the final `.` in one write"
            }
        }
    }
}

/// One connection of the raw client, greeted and past `EHLO`.
pub struct RawClient {
    stream: BufReader<TcpStream>,
    line: String,
}

/// A reply's send by the raw client: when `DATA`'s end was written, and the final answer.
pub struct RawSend {
    pub data_end: Instant,
    pub answer: String,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let mut client = Self { stream: BufReader::new(stream), line: String::new() };
        client.expect(220, "the greeting").await?;
        client.command("EHLO bench.example\r\n", 250).await?;
        Ok(client)
    }

    /// Reads one (possibly multi-line) answer; its last line, which must carry `code`.
    async fn expect(&mut self, code: u16, after: &str) -> anyhow::Result<String> {
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                bail!("the receiver closed the connection after {after}");
            }
            let line = self.line.trim_end();
            if line.as_bytes().get(3) == Some(&b'-') {
                continue;
            }
            if !line.starts_with(&code.to_string()) {
                bail!("the receiver answered {line:?} to {after}");
            }
            return Ok(line.to_owned());
        }
    }

    async fn command(&mut self, command: &str, code: u16) -> anyhow::Result<String> {
        self.stream.get_mut().write_all(command.as_bytes()).await?;
        self.expect(code, command.trim_end()).await
    }

    /// One message from `from` to `to`: its bytes (CRLF line ends) dot-stuffed and sent with the
    /// final `.` in one write.
    pub async fn send(&mut self, from: &str, to: &str, message: &[u8]) -> anyhow::Result<RawSend> {
        self.command(&format!("MAIL FROM:<{from}>\r\n"), 250).await?;
        self.command(&format!("RCPT TO:<{to}>\r\n"), 250).await?;
        self.command("DATA\r\n", 354).await?;
        let data = dot_stuffed(message);
        self.stream.get_mut().write_all(&data).await?;
        let data_end = Instant::now();
        let answer = self.expect(250, "the end of DATA").await?;
        Ok(RawSend { data_end, answer })
    }
}

/// The message as `DATA` carries it: a `.` doubled at the start of a line, a line end at the end,
/// then the terminating `.`.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut line_start = true;
    for &byte in message {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
