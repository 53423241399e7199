//! A closed-loop HTTP/1.1 load generator: a fixed number of keep-alive connections, each sending
//! its next request as soon as the previous answer has been read in full, for a warm-up and then a
//! measured window. Latency is from just before a request is written to the end of its body.
//! (Closed loop: when the server slows down, the clients slow down with it.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST, HeaderValue, ORIGIN};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Where requests go and who sends them.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    host: HeaderValue,
    origin: HeaderValue,
    cookie: HeaderValue,
    csrf: HeaderValue,
}

impl Target {
    pub fn new(addr: SocketAddr, cookie: &str, csrf: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            origin: HeaderValue::from_str(&format!("http://{addr}"))?,
            cookie: HeaderValue::from_str(cookie)?,
            csrf: HeaderValue::from_str(csrf)?,
        })
    }
}

/// One request of a workload.
pub struct Call {
    pub method: Method,
    pub path: String,
    /// A JSON body, if any.
    pub body: Option<Bytes>,
    /// Which class of request this is, for per-class percentiles (0 when there is one class).
    pub class: usize,
}

/// What a benchmark phase sends.
pub trait Workload: Send + Sync + 'static {
    /// Per-connection state (a counter, a cursor…).
    type State: Send + 'static;
    fn state(&self, connection: usize) -> Self::State;
    fn next(&self, state: &mut Self::State) -> Call;
    /// The status every answer must have; any other counts as an error.
    fn expected(&self) -> StatusCode;
    /// Sees each expected answer's body (to follow a cursor, say).
    fn observe(&self, _state: &mut Self::State, _body: &Bytes) {}
    /// How many request classes `next` produces.
    fn classes(&self) -> usize {
        1
    }
}

/// How hard and how long.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Answers in the measured window.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    /// Requests sent over the whole phase, warm-up included.
    pub sent: u64,
    pub window: Duration,
    /// When the measured window began and ended.
    pub measured: Option<(Instant, Instant)>,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
    per_class: Vec<Vec<u32>>,
    pub first_error: Option<String>,
}

/// The `p`th percentile of sorted microseconds (nearest rank).
pub(crate) fn percentile_of(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Duration::from_micros(u64::from(sorted[rank.clamp(1, sorted.len()) - 1]))
}

impl Stats {
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile_of(&self.latencies, p)
    }

    pub fn class_percentile(&self, class: usize, p: f64) -> Duration {
        self.per_class.get(class).map_or(Duration::ZERO, |l| percentile_of(l, p))
    }

    pub fn class_count(&self, class: usize) -> usize {
        self.per_class.get(class).map_or(0, Vec::len)
    }
}

struct ConnectionResult {
    ok: u64,
    errors: u64,
    sent: u64,
    latencies: Vec<(usize, u32)>,
    first_error: Option<String>,
}

/// Runs a workload: `connections` connections for `warmup + duration`; only the window after the
/// warm-up is measured.
pub async fn run<W: Workload>(target: &Target, workload: Arc<W>, spec: LoadSpec) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let end = measure_from + spec.duration;
    let mut connections = tokio::task::JoinSet::new();
    for id in 0..spec.connections {
        let (target, workload) = (target.clone(), workload.clone());
        connections.spawn(async move { connection(target, workload, id, measure_from, end).await });
    }
    let mut stats = Stats {
        window: spec.duration,
        measured: Some((measure_from, end)),
        per_class: vec![Vec::new(); workload.classes()],
        ..Stats::default()
    };
    while let Some(joined) = connections.join_next().await {
        let result = joined.context("a load connection panicked")??;
        stats.ok += result.ok;
        stats.errors += result.errors;
        stats.sent += result.sent;
        stats.first_error = stats.first_error.or(result.first_error);
        for (class, micros) in result.latencies {
            stats.latencies.push(micros);
            if let Some(list) = stats.per_class.get_mut(class) {
                list.push(micros);
            }
        }
    }
    stats.latencies.sort_unstable();
    for list in &mut stats.per_class {
        list.sort_unstable();
    }
    Ok(stats)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn build(target: &Target, call: Call) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(call.method)
        .uri(call.path)
        .header(HOST, target.host.clone())
        .header(COOKIE, target.cookie.clone());
    if call.body.is_some() {
        builder = builder
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ORIGIN, target.origin.clone())
            .header("x-csrf-token", target.csrf.clone());
    }
    Ok(builder.body(Full::new(call.body.unwrap_or_default()))?)
}

async fn connection<W: Workload>(
    target: Target,
    workload: Arc<W>,
    id: usize,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ConnectionResult> {
    let mut state = workload.state(id);
    let mut sender = connect(target.addr).await?;
    let mut result =
        ConnectionResult { ok: 0, errors: 0, sent: 0, latencies: Vec::with_capacity(1 << 16), first_error: None };
    loop {
        let began = Instant::now();
        if began >= end {
            return Ok(result);
        }
        let call = workload.next(&mut state);
        let class = call.class;
        let request = build(&target, call)?;
        let outcome = exchange(&mut sender, request).await;
        result.sent += 1;
        let done = Instant::now();
        let measured = began >= measure_from && done <= end;
        match outcome {
            Ok((status, body)) if status == workload.expected() => {
                workload.observe(&mut state, &body);
                if measured {
                    result.ok += 1;
                    let micros = u32::try_from((done - began).as_micros()).unwrap_or(u32::MAX);
                    result.latencies.push((class, micros));
                }
            }
            Ok((status, body)) => {
                result.errors += u64::from(measured);
                if result.first_error.is_none() {
                    result.first_error = Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
            }
            Err(err) => {
                result.errors += u64::from(measured);
                if result.first_error.is_none() {
                    result.first_error = Some(format!("{err:#}"));
                }
                sender = connect(target.addr).await?;
            }
        }
    }
}
