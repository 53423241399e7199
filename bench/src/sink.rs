//! Local SMTP servers that accept and discard every message: Python's aiosmtpd (its `Sink`
//! handler) as a child process, and a small one of our own on tokio that speaks just enough SMTP
//! (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to find out whether aiosmtpd, which is
//! single-threaded Python, is what limits the delivery figures. Ours also counts the messages
//! that carry a DKIM signature and keeps the headers of the last one, so that a run can show
//! what it sent.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Which sink a delivery figure was measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// `python3 -m aiosmtpd -c aiosmtpd.handlers.Sink`.
    Aiosmtpd,
    /// The benchmark's own tokio sink.
    Rust,
}

impl SinkKind {
    pub fn describe(self) -> &'static str {
        match self {
            SinkKind::Aiosmtpd => "aiosmtpd 1.4 Sink (Python, one thread)",
            SinkKind::Rust => "borcelle-bench's tokio sink (in the bench process)",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            SinkKind::Aiosmtpd => "aiosmtpd",
            SinkKind::Rust => "Rust sink",
        }
    }
}

/// A running sink; stopping it closes its port and every connection to it.
pub enum Sink {
    Aiosmtpd { child: Child },
    Rust { stop: CancellationToken, tally: Arc<Tally> },
}

/// What the Rust sink has received.
#[derive(Default)]
pub struct Tally {
    accepted: AtomicU64,
    /// Messages with a `DKIM-Signature` header.
    signed: AtomicU64,
    last_headers: Mutex<Vec<u8>>,
}

impl Tally {
    fn record(&self, headers: Vec<u8>) {
        let signed = headers
            .split(|&b| b == b'\n')
            .any(|line| line.get(..15).is_some_and(|name| name.eq_ignore_ascii_case(b"DKIM-Signature:")));
        if signed {
            self.signed.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last_headers.lock() {
            *last = headers;
        }
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

impl Sink {
    pub async fn start(kind: SinkKind, port: u16) -> anyhow::Result<Sink> {
        let sink = match kind {
            SinkKind::Aiosmtpd => {
                let child = Command::new("python3")
                    .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Sink"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .context("starting aiosmtpd (python3 -m pip install aiosmtpd)")?;
                Sink::Aiosmtpd { child }
            }
            SinkKind::Rust => {
                let socket = TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.bind(([127, 0, 0, 1], port).into()).with_context(|| format!("binding the sink to {port}"))?;
                let listener = socket.listen(1024)?;
                let stop = CancellationToken::new();
                let tally = Arc::new(Tally::default());
                let (token, count) = (stop.clone(), tally.clone());
                tokio::spawn(async move {
                    loop {
                        let stream = tokio::select! {
                            _ = token.cancelled() => return,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                        };
                        let (token, count) = (token.clone(), count.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = token.cancelled() => {}
                                _ = session(stream, count) => {}
                            }
                        });
                    }
                });
                Sink::Rust { stop, tally }
            }
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(sink);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the {kind:?} SMTP sink did not come up on port {port}")
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            Sink::Aiosmtpd { child } => child.id(),
            Sink::Rust { .. } => None,
        }
    }

    /// Messages accepted so far (only the Rust sink counts).
    pub fn accepted(&self) -> Option<u64> {
        match self {
            Sink::Aiosmtpd { .. } => None,
            Sink::Rust { tally, .. } => Some(tally.accepted.load(Ordering::Relaxed)),
        }
    }

    /// Messages accepted so far that carried a DKIM signature (only the Rust sink counts).
    pub fn signed(&self) -> Option<u64> {
        match self {
            Sink::Aiosmtpd { .. } => None,
            Sink::Rust { tally, .. } => Some(tally.signed.load(Ordering::Relaxed)),
        }
    }

    /// The header section of the last message accepted (Rust sink only).
    pub fn last_headers(&self) -> Option<String> {
        match self {
            Sink::Aiosmtpd { .. } => None,
            Sink::Rust { tally, .. } => {
                tally.last_headers.lock().ok().map(|h| String::from_utf8_lossy(&h).into_owned())
            }
        }
    }

    pub async fn stop(self) {
        match self {
            Sink::Aiosmtpd { mut child } => {
                let _ = child.kill().await;
            }
            Sink::Rust { stop, .. } => stop.cancel(),
        }
    }
}

/// One SMTP conversation: every command succeeds, every message is discarded and counted.
async fn session(stream: TcpStream, tally: Arc<Tally>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    write.write_all(b"220 borcelle-bench ESMTP sink\r\n").await?;
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).map(|v| v.to_ascii_uppercase()).unwrap_or_default();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-borcelle-bench\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            b"HELO" => b"250 borcelle-bench\r\n",
            b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 2.0.0 OK\r\n",
            b"DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let (mut headers, mut in_headers) = (Vec::with_capacity(2048), true);
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    if in_headers {
                        in_headers = line != b"\r\n" && line != b"\n";
                        headers.extend_from_slice(&line);
                    }
                }
                tally.record(headers);
                b"250 2.0.0 OK: discarded\r\n"
            }
            b"QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}
