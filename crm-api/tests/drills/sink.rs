//! An SMTP server of the drills' own, in the test process, fast enough for the engine's full rate
//! (it offers `PIPELINING`, as Postfix does): it keeps every message it accepts (recipient and
//! Message-ID) and knows, at any instant, how many transactions are open (a MAIL seen, the
//! message not yet accepted). With the sender frozen (SIGSTOP), that says exactly what was in
//! flight at the server when it stopped.
//!
//! It can go down and come back on the same port. It goes down while a message is coming in (so
//! that one, at least, is cut off in the middle of its data), refuses connections and drops every
//! open one at its next read, idle or in a transaction. A message it has taken is always
//! acknowledged first (it never stores one and dies before its `250`, the window no SMTP client
//! can close), so an outage alone may cause no duplicate.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
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
    /// Transactions open now.
    open: AtomicUsize,
    /// Connections open now.
    live: AtomicUsize,
    /// The most open at once since the sink (last) came up.
    peak: AtomicUsize,
    /// Connections accepted since the start.
    connections: AtomicUsize,
    /// Connections dropped by an outage.
    dropped: AtomicUsize,
    /// Of those, the ones with a transaction open.
    cut: AtomicUsize,
    /// Set to go down as the next message comes in.
    armed: AtomicBool,
}

/// The listener's task, while the sink is up.
struct Serving {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub struct CountingSink {
    pub port: u16,
    state: Arc<State>,
    serving: Option<Serving>,
}

/// What an outage did as it began.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// Connections the outage closed.
    pub connections: usize,
    /// Of those, how many had a transaction open (the message was not accepted).
    pub mid_transaction: usize,
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.stop.cancel();
        }
    }
}

impl CountingSink {
    /// Starts on a free port.
    pub async fn start() -> CountingSink {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the sink");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(State::default());
        let serving = Some(serve(listener, state.clone()));
        CountingSink { port, state, serving }
    }

    /// Goes down as the next message comes in (after its first line of data; at once if none
    /// comes within 5 s): the port stops listening (a connect is refused) and every open
    /// connection is closed at its next read (a reply being written is written first). Returns
    /// once all are.
    pub async fn go_down(&mut self) -> Cut {
        let serving = self.serving.take().expect("the sink is up");
        let state = &self.state;
        let (dropped, cut) = (state.dropped.load(Ordering::SeqCst), state.cut.load(Ordering::SeqCst));
        state.armed.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(Duration::from_secs(5), serving.stop.cancelled()).await;
        state.armed.store(false, Ordering::SeqCst);
        serving.stop.cancel();
        serving.task.await.expect("the sink's listener");
        assert_eq!(state.live.load(Ordering::SeqCst), 0, "every connection closed");
        Cut {
            connections: state.dropped.load(Ordering::SeqCst) - dropped,
            mid_transaction: state.cut.load(Ordering::SeqCst) - cut,
        }
    }

    /// Listens again on the same port, with what it had accepted.
    pub async fn come_back(&mut self) {
        assert!(self.serving.is_none(), "the sink is down");
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("bind the sink's port again");
        self.state.peak.store(0, Ordering::SeqCst);
        self.serving = Some(serve(listener, self.state.clone()));
    }

    /// Every message accepted so far, in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.accepted.lock().expect("sink").clone()
    }

    /// Messages accepted so far (copies included).
    pub fn count(&self) -> usize {
        self.state.accepted.lock().expect("sink").len()
    }

    /// Different Message-IDs among the accepted messages.
    pub fn distinct_message_ids(&self) -> usize {
        self.state.accepted.lock().expect("sink").iter().map(|a| a.message_id.as_str()).collect::<HashSet<_>>().len()
    }

    /// Waits (up to 120 s) until more than `count` messages are accepted; when it happened (a
    /// sender's first message after it started).
    pub async fn accepted_beyond(&self, count: usize) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count() <= count {
            assert!(Instant::now() < deadline, "nothing more was sent within 120 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Instant::now()
    }

    /// Waits (up to 10 s) until no connection is open: a sender that died has had everything it
    /// wrote read, and its connections closed.
    pub async fn wait_no_connection(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state.live.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "connections still open 10 s after their sender died");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Transactions open now: a MAIL seen and its message not yet accepted.
    pub fn open_transactions(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// The most connections open at once since the sink (last) came up.
    pub fn peak_connections(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start (a pooled sender opens few).
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

/// Accepts connections until `stop`; then closes the listener and waits for every session.
fn serve(listener: TcpListener, state: Arc<State>) -> Serving {
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    sessions.spawn(session(stream, state.clone(), token.clone()));
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        drop(listener);
        // A session ends at its next read; one that cannot write (its client stopped reading)
        // is aborted.
        let drained =
            tokio::time::timeout(Duration::from_secs(10), async { while sessions.join_next().await.is_some() {} });
        if drained.await.is_err() {
            sessions.abort_all();
            while sessions.join_next().await.is_some() {}
        }
    });
    Serving { stop, task }
}

/// Counts a gauge up until dropped, however a session or transaction ends.
struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    fn up(gauge: &'a AtomicUsize) -> Gauge<'a> {
        gauge.fetch_add(1, Ordering::SeqCst);
        Gauge(gauge)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The next line, or None when the sink goes down (or the client closed the connection).
async fn next_line(read: &mut BufReader<OwnedReadHalf>, line: &mut String, stop: &CancellationToken) -> Option<()> {
    line.clear();
    tokio::select! {
        // Down means down, even with more of the client's data already read.
        biased;
        _ = stop.cancelled() => None,
        n = read.read_line(line) => n.ok().filter(|n| *n > 0).map(|_| ()),
    }
}

async fn session(stream: TcpStream, state: Arc<State>, stop: CancellationToken) -> std::io::Result<()> {
    let _live = Gauge::up(&state.live);
    state.peak.fetch_max(state.live.load(Ordering::SeqCst), Ordering::SeqCst);
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    // Held while a transaction is open; replaced or dropped when it ends.
    let mut transaction: Option<Gauge<'_>> = None;
    let mut rcpt = String::new();
    let cut = |transaction: &Option<Gauge<'_>>| {
        if stop.is_cancelled() {
            state.dropped.fetch_add(1, Ordering::SeqCst);
            if transaction.is_some() {
                state.cut.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    };
    write.write_all(b"220 drill-sink ESMTP\r\n").await?;
    loop {
        if next_line(&mut read, &mut line, &stop).await.is_none() {
            return cut(&transaction);
        }
        let verb = line.get(..4).map(str::to_ascii_uppercase).unwrap_or_default();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-drill-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "HELO" => b"250 drill-sink\r\n",
            "MAIL" => {
                transaction = Some(Gauge::up(&state.open));
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
                transaction = None;
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut message_id = String::new();
                let mut in_headers = true;
                loop {
                    if next_line(&mut read, &mut line, &stop).await.is_none() {
                        return cut(&transaction);
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    if state.armed.swap(false, Ordering::SeqCst) {
                        // Going down now, in the middle of this message.
                        stop.cancel();
                    }
                    if in_headers {
                        if line.trim().is_empty() {
                            in_headers = false;
                        } else if let Some(id) = line.strip_prefix("Message-ID:") {
                            message_id = id.trim().to_owned();
                        }
                    }
                }
                // Taken: its 250 is written whatever happens next (no await in between can be
                // cut short by an outage).
                let accepted = Accepted { to: std::mem::take(&mut rcpt), message_id };
                state.accepted.lock().expect("sink").push(accepted);
                transaction = None;
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
