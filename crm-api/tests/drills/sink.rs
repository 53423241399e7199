//! An SMTP server of the drills' own, in the test process: it keeps every message it accepts
//! (recipient and Message-ID) and knows, at any instant, how many transactions are open (a MAIL
//! seen, the message not yet accepted). With the sender frozen (SIGSTOP), that says exactly what
//! was in flight at the server when it stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub to: String,
    pub message_id: String,
}

#[derive(Default)]
struct State {
    accepted: Mutex<Vec<Accepted>>,
    open: AtomicUsize,
}

pub struct CountingSink {
    pub port: u16,
    state: Arc<State>,
    stop: CancellationToken,
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl CountingSink {
    pub async fn start() -> CountingSink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the sink");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(State::default());
        let stop = CancellationToken::new();
        let (shared, token) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (state, token) = (shared.clone(), token.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = session(stream, state) => {}
                    }
                });
            }
        });
        CountingSink { port, state, stop }
    }

    /// Every message accepted so far, in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.accepted.lock().expect("sink").clone()
    }

    pub fn count(&self) -> usize {
        self.state.accepted.lock().expect("sink").len()
    }

    /// Transactions open now: a MAIL seen and its message not yet accepted.
    pub fn open_transactions(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }
}

/// Counts a transaction as open until it ends, however it ends (a dropped connection too).
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn session(stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    // Held while a transaction is open; replaced or dropped when it ends.
    let mut _transaction: Option<Open<'_>> = None;
    let mut rcpt = String::new();
    write.write_all(b"220 drill-sink ESMTP\r\n").await?;
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).map(str::to_ascii_uppercase).unwrap_or_default();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-drill-sink\r\n250 8BITMIME\r\n",
            "HELO" => b"250 drill-sink\r\n",
            "MAIL" => {
                state.open.fetch_add(1, Ordering::SeqCst);
                _transaction = Some(Open(&state.open));
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" => {
                rcpt = line
                    .split_once('<')
                    .and_then(|(_, r)| r.split_once('>'))
                    .map(|(a, _)| a.to_owned())
                    .unwrap_or_default();
                b"250 2.1.5 OK\r\n"
            }
            "RSET" => {
                _transaction = None;
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut message_id = String::new();
                let mut in_headers = true;
                loop {
                    line.clear();
                    if read.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    if in_headers {
                        if line.trim().is_empty() {
                            in_headers = false;
                        } else if let Some(id) = line.strip_prefix("Message-ID:") {
                            message_id = id.trim().to_owned();
                        }
                    }
                }
                let accepted = Accepted { to: std::mem::take(&mut rcpt), message_id };
                state.accepted.lock().expect("sink").push(accepted);
                _transaction = None;
                b"250 2.0.0 accepted\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}
