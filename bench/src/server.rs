//! The system under test: a fresh database, `borcelle admin create-user`, and `borcelle serve`
//! as a child process, with a logged-in JSON API session per user.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

pub const PASSWORD: &str = "benchmark password, long enough";
/// The domain of serve's From address (`noreply@…`), which a DKIM signature must align with.
pub const MAIL_DOMAIN: &str = "borcelle.bench";

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Drops the benchmark database (closing whatever still uses it); `borcelle` creates it again.
pub async fn drop_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = PgPool::connect(&format!("{server_url}/postgres")).await.context("connecting to PostgreSQL")?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&admin)
        .await
        .with_context(|| format!("dropping database {name}"))?;
    admin.close().await;
    Ok(())
}

/// `borcelle admin create-user` with the password on stdin: a verified account. The first call
/// creates and migrates the database.
pub async fn create_user(borcelle: &Path, database_url: &str, email: &str, name: &str) -> anyhow::Result<()> {
    let mut child = Command::new(borcelle)
        .args(["admin", "create-user", "--email", email, "--name", name])
        .env("DATABASE_URL", database_url)
        .env_remove("BORCELLE_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", borcelle.display()))?;
    let mut stdin = child.stdin.take().context("stdin of create-user")?;
    stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!("borcelle admin create-user failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// How `serve` is configured for the run.
pub struct ServeConfig {
    pub database_url: String,
    pub port: u16,
    pub smtp_port: u16,
    pub delivery_concurrency: usize,
    pub smtp_pool_size: u32,
    pub log: PathBuf,
    /// Sign outgoing mail with this key; unsigned when absent.
    pub dkim: Option<ServeDkim>,
    /// Run the inbound SMTP receiver; off when absent.
    pub inbound: Option<ServeInbound>,
}

/// The inbound SMTP receiver inside serve: its domain and address, without limits on connections
/// per minute, and where it keeps each message's raw bytes (local storage).
pub struct ServeInbound {
    pub domain: String,
    pub listen: SocketAddr,
    pub max_connections_per_client: usize,
    pub storage_dir: PathBuf,
}

/// A DKIM key for serve (`borcelle dkim generate`'s file), published under `selector` for
/// [`MAIL_DOMAIN`].
pub struct ServeDkim {
    pub selector: String,
    pub key_file: PathBuf,
}

/// `borcelle serve` running as a child process.
pub struct Serve {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    /// The operations port (`/metrics`).
    pub ops_addr: SocketAddr,
    /// Name of the database it uses.
    pub database: String,
}

impl Serve {
    /// Starts the server with SMTP delivery to the local sink and waits until `/readyz` answers.
    pub async fn start(borcelle: &Path, config: &ServeConfig) -> anyhow::Result<Serve> {
        let addr: SocketAddr = ([127, 0, 0, 1], config.port).into();
        let ops_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let log = std::fs::File::create(&config.log).with_context(|| format!("creating {}", config.log.display()))?;
        let mut command = Command::new(borcelle);
        command
            .arg("serve")
            .env("DATABASE_URL", &config.database_url)
            .env("BORCELLE_LISTEN", addr.to_string())
            .env("BORCELLE_OPERATIONS_LISTEN", ops_addr.to_string())
            .env("BORCELLE_MAIL_TRANSPORT", "smtp")
            .env("BORCELLE_MAIL_FROM", format!("noreply@{MAIL_DOMAIN}"))
            .env("BORCELLE_SMTP_HOST", "127.0.0.1")
            .env("BORCELLE_SMTP_PORT", config.smtp_port.to_string())
            .env("BORCELLE_SMTP_TLS", "none")
            .env("BORCELLE_DELIVERY_CONCURRENCY", config.delivery_concurrency.to_string())
            .env("BORCELLE_SMTP_POOL_SIZE", config.smtp_pool_size.to_string())
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .env_remove("BORCELLE_DKIM_PRIVATE_KEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        match &config.dkim {
            Some(dkim) => command
                .env("BORCELLE_DKIM_SELECTOR", &dkim.selector)
                .env("BORCELLE_DKIM_DOMAIN", MAIL_DOMAIN)
                .env("BORCELLE_DKIM_KEY_FILE", &dkim.key_file),
            None => command
                .env_remove("BORCELLE_DKIM_SELECTOR")
                .env_remove("BORCELLE_DKIM_DOMAIN")
                .env_remove("BORCELLE_DKIM_KEY_FILE"),
        };
        match &config.inbound {
            Some(inbound) => command
                .env("BORCELLE_INBOUND_DOMAIN", &inbound.domain)
                .env("BORCELLE_INBOUND_LISTEN", inbound.listen.to_string())
                .env("BORCELLE_INBOUND_IN_SERVE", "true")
                .env("BORCELLE_INBOUND_CONNECTIONS_PER_MINUTE", "0")
                .env("BORCELLE_INBOUND_MAX_CONNECTIONS_PER_CLIENT", inbound.max_connections_per_client.to_string())
                .env("BORCELLE_STORAGE", "local")
                .env("BORCELLE_STORAGE_DIR", &inbound.storage_dir),
            None => command.env_remove("BORCELLE_INBOUND_DOMAIN"),
        };
        let child = command.spawn().with_context(|| format!("starting {} serve", borcelle.display()))?;
        let pid = child.id().context("serve exited at once")?;
        let database = config.database_url.rsplit('/').next().unwrap_or_default().to_owned();
        let mut serve = Serve { child, pid, addr, ops_addr, database };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Some(status) = serve.child.try_wait()? {
                bail!("borcelle serve exited with {status}; see {}", config.log.display());
            }
            let ready = http.get(format!("http://{addr}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(serve);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("borcelle serve was not ready within 60 s; see {}", config.log.display())
    }

    /// SIGTERM, then up to 30 s for a graceful stop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }
}

/// A logged-in user of the JSON API (session cookie + CSRF token).
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    base: String,
    http: reqwest::Client,
}

impl Session {
    pub async fn login(addr: SocketAddr, email: &str) -> anyhow::Result<Session> {
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}/api/v1/auth/login"))
            .header("Origin", &base)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("login of {email} failed: {} {}", response.status(), response.text().await.unwrap_or_default());
        }
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("login set no cookie")?
            .to_owned();
        let body: Value = response.json().await?;
        let csrf = body["csrf_token"].as_str().context("login answered no csrf_token")?.to_owned();
        Ok(Session { cookie, csrf, base, http })
    }

    /// A state-changing JSON call, as the web app makes it.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Origin", &self.base)
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .json(body)
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self.http.get(format!("{}{path}", self.base)).header("Cookie", &self.cookie).send().await?;
        Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
    }
}
