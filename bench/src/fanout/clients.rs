//! The load tool's side of the sockets: many authenticated `/ws` connections that note when each broadcast reaches
//! them, and slow clients that never read.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A broadcast event seen by one connection: the broadcast's title, when.
pub struct Seen {
    pub title: String,
    pub at: Instant,
}

/// The normal connections, once open.
pub struct Fleet {
    pub opened: usize,
    pub failures: Vec<String>,
    /// Connections that ended (the server dropped them or they failed) after opening.
    pub ended: Arc<AtomicUsize>,
}

/// Where a connection comes from: 127.0.0.1, .2, … in turn, so that no one source address runs out of ports.
fn source(index: usize, source_ips: u8) -> SocketAddr {
    let last = 1 + u8::try_from(index % usize::from(source_ips.max(1))).unwrap_or(0);
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, last), 0))
}

async fn handshake(
    server: SocketAddr,
    from: SocketAddr,
    token: &str,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(from).with_context(|| format!("binding {from}"))?;
    let stream = socket.connect(server).await.context("connecting")?;
    let mut request = format!("ws://{server}/ws").into_client_request()?;
    request.headers_mut().insert("Cookie", format!("borcelle_session={token}").parse()?);
    request.headers_mut().insert("Origin", format!("http://{server}").parse()?);
    // The tool holds as many sockets as the server: small buffers keep it light on the shared machine.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(socket)
}

/// The title of a broadcast event, without parsing anything else.
fn broadcast_title(text: &str) -> Option<String> {
    if !text.contains(r#""type":"broadcast""#) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value["title"].as_str().map(str::to_owned)
}

/// Opens one connection per token (at most `parallel` handshakes at once), each waiting for its snapshot, then
/// reporting every broadcast it receives on `seen`. Returns when every connection is open or has failed.
pub async fn open_fleet(
    server: SocketAddr,
    tokens: &[String],
    source_ips: u8,
    parallel: usize,
    seen: mpsc::UnboundedSender<Seen>,
    stop: CancellationToken,
) -> Fleet {
    let gate = Arc::new(Semaphore::new(parallel));
    let ended = Arc::new(AtomicUsize::new(0));
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    for (index, token) in tokens.iter().enumerate() {
        let (gate, ended, opened_tx, seen, token, stop) =
            (gate.clone(), ended.clone(), opened_tx.clone(), seen.clone(), token.clone(), stop.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let open = async {
                let mut socket = handshake(server, source(index, source_ips), &token, None).await?;
                match socket.next().await {
                    Some(Ok(Message::Text(text))) if text.contains(r#""type":"snapshot""#) => Ok(socket),
                    other => anyhow::bail!("expected the snapshot, got {other:?}"),
                }
            };
            let mut socket = match tokio::time::timeout(Duration::from_secs(60), open).await {
                Ok(Ok(socket)) => socket,
                Ok(Err(err)) => {
                    let _ = opened_tx.send(Err(format!("{err:#}")));
                    return;
                }
                Err(_) => {
                    let _ = opened_tx.send(Err("no snapshot within 60 s".to_owned()));
                    return;
                }
            };
            drop(permit);
            let _ = opened_tx.send(Ok(()));
            drop(opened_tx);
            while let Some(Some(Ok(message))) = stop.run_until_cancelled(socket.next()).await {
                if let Message::Text(text) = message
                    && let Some(title) = broadcast_title(&text)
                {
                    let _ = seen.send(Seen { title, at: Instant::now() });
                }
            }
            if !stop.is_cancelled() {
                ended.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    drop(opened_tx);
    let (mut opened, mut failures) = (0, Vec::new());
    let started = Instant::now();
    let mut reported = Instant::now();
    while let Some(result) = opened_rx.recv().await {
        match result {
            Ok(()) => opened += 1,
            Err(err) => failures.push(err),
        }
        if reported.elapsed() >= Duration::from_secs(2) {
            println!("    {opened} open, {} failed after {:.0?}", failures.len(), started.elapsed());
            reported = Instant::now();
        }
        if opened + failures.len() == tokens.len() {
            break;
        }
    }
    Fleet { opened, failures, ended }
}

/// A connection that never reads, with a small receive buffer so that the server's writes to it soon block.
pub async fn open_slow(server: SocketAddr, token: &str, index: usize, source_ips: u8) -> anyhow::Result<Socket> {
    handshake(server, source(index, source_ips), token, Some(4096)).await
}

/// Reads a slow client at last: whether its connection had been ended by the server (everything the kernel
/// buffered, then the end), and how many messages it had been given.
pub async fn drain(mut socket: Socket) -> (bool, usize) {
    let mut received = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(_))) => received += 1,
            Ok(Some(Err(_)) | None) => return (true, received),
            Err(_still_open) => return (false, received),
        }
    }
}
