//! How the SMTP receiver runs: its domain, address and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The receiver's settings (`borcelle inbound`, or inside `serve`).
#[derive(Debug, Clone)]
pub struct InboundSettings {
    /// The domain of the reply and bounce addresses (its MX points at the receiver).
    pub domain: String,
    /// Where the receiver listens (`0.0.0.0:25`, or a high port behind a load balancer).
    pub listen: SocketAddr,
    /// The name in the greeting (`220 <hostname> ESMTP`).
    pub hostname: String,
    /// Largest message accepted, in bytes (552 past it).
    pub max_message_bytes: usize,
    /// Connections open at once, in all (421 past it).
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_client: usize,
    /// New connections one client address may open per minute; unlimited when `None`.
    pub connections_per_minute: Option<u32>,
    /// Bytes of message data all sessions may hold at once (452 past it, the sender retries).
    pub memory_bytes: usize,
    /// How long the receiver waits for a command or a line of data.
    pub command_timeout: Duration,
    /// Longest session.
    pub session_timeout: Duration,
    /// STARTTLS with this certificate, when set.
    pub tls: Option<TlsFiles>,
    /// Threads that run SMTP sessions (many sessions each).
    pub threads: usize,
}

/// A PEM certificate chain and its private key (files, or a Kubernetes TLS Secret mounted as files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl InboundSettings {
    /// Defaults for a domain and an address: 25 MiB messages, 1,000 connections (50 per client,
    /// 600 new ones a minute per client), 256 MiB of buffered data, RFC 5321's five-minute
    /// command timeout, sessions of at most 30 minutes, no TLS.
    pub fn new(domain: &str, listen: SocketAddr) -> Self {
        Self {
            domain: domain.to_owned(),
            listen,
            hostname: domain.to_owned(),
            max_message_bytes: 25 * 1024 * 1024,
            max_connections: 1000,
            max_connections_per_client: 50,
            connections_per_minute: Some(600),
            memory_bytes: 256 * 1024 * 1024,
            command_timeout: Duration::from_secs(300),
            session_timeout: Duration::from_secs(1800),
            tls: None,
            threads: 2,
        }
    }
}
