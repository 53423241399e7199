//! What the drills share: their scale, a reporter that prints what a drill did and saw, `serve`
//! and `worker` as child processes, and private Redis and PostgreSQL servers a drill may kill.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_borcelle");

/// `BORCELLE_DRILL_SCALE`: 1 runs every drill at the size the issue names (5,000 recipients, a
/// 60 s outage…); the default, 0.1, is the CI size.
pub fn scale() -> f64 {
    std::env::var("BORCELLE_DRILL_SCALE").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(0.1)
}

/// `full` at scale 1, proportionally less below (never under `min`).
pub fn scaled(full: usize, min: usize) -> usize {
    ((full as f64 * scale()).round() as usize).max(min)
}

pub fn scaled_secs(full: u64, min: u64) -> Duration {
    Duration::from_secs(scaled(full as usize, min as usize) as u64)
}

/// Prints what a drill does and sees, with the time since it began (shown with `--nocapture`).
pub struct Report {
    name: &'static str,
    started: Instant,
}

impl Report {
    pub fn new(name: &'static str) -> Report {
        eprintln!("== drill {name} (BORCELLE_DRILL_SCALE={})", scale());
        Report { name, started: Instant::now() }
    }

    pub fn say(&self, line: impl std::fmt::Display) {
        eprintln!("[{} {:>6.1}s] {line}", self.name, self.started.elapsed().as_secs_f64());
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A duration as "1.23 s".
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Whether this test runs as root (then PostgreSQL's tools run as the `postgres` user).
fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Where a `borcelle` child process writes its log (kept for a failed drill's post-mortem).
pub fn log_file(what: &str) -> (PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(unique(&format!("borcelle-drill-{what}-"))).with_extension("log");
    let file = std::fs::File::create(&path).expect("log file");
    (path, file)
}

/// Starts `borcelle <command>` with the given environment (REDIS_URL only when given).
pub fn spawn_borcelle(command: &str, database_url: &str, envs: &[(&str, String)], log: &str) -> Process {
    let (path, file) = log_file(log);
    eprintln!("   (borcelle {command} logs to {})", path.display());
    let mut cmd = Command::new(BIN);
    cmd.arg(command)
        .env("DATABASE_URL", database_url)
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    Process(cmd.spawn().expect("start borcelle"))
}

/// `borcelle serve` as a child process on a free port, and a [`TestApp`] that talks to it (its
/// database pool is the test's own, for looking into the ledger).
pub async fn serve(database_url: &str, db_name: &str, envs: &[(&str, String)]) -> (Process, TestApp) {
    let port = free_port();
    let process = serve_on(port, database_url, envs).await;
    let db = PgPool::connect(database_url).await.expect("the drill's own pool");
    let app = TestApp::of_process(([127, 0, 0, 1], port).into(), db, db_name);
    (process, app)
}

/// `borcelle serve` on `port`, once ready.
pub async fn serve_on(port: u16, database_url: &str, envs: &[(&str, String)]) -> Process {
    let mut all = vec![("BORCELLE_LISTEN", format!("127.0.0.1:{port}"))];
    all.extend(envs.iter().cloned());
    let mut process = spawn_borcelle("serve", database_url, &all, "serve");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..600 {
        assert!(process.0.try_wait().expect("wait").is_none(), "serve exited at start");
        if reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status() == 200) {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("serve on {port} was not ready within 30 s");
}

/// Whether a child process is still running.
pub fn running(process: &mut Process) -> bool {
    process.0.try_wait().expect("wait").is_none()
}

pub fn signal(process: &Process, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &process.0.id().to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
}

/// SMTP settings of a child process that delivers to a local plain-text server on `port`.
pub fn smtp_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("BORCELLE_MAIL_TRANSPORT", "smtp".to_owned()),
        ("BORCELLE_SMTP_HOST", "127.0.0.1".to_owned()),
        ("BORCELLE_SMTP_PORT", port.to_string()),
        ("BORCELLE_SMTP_TLS", "none".to_owned()),
        ("BORCELLE_MAIL_FROM", "noreply@borcelle.test".to_owned()),
    ]
}

/// How many messages a maildir holds (cheap: it does not read them).
pub fn maildir_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("new")).map_or(0, |entries| entries.count())
}

/// Waits (up to `secs`) until the sink holds at least `count` messages; returns how many it holds.
pub async fn wait_for_mail(dir: &Path, count: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = maildir_count(dir);
        if now >= count || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What arrived at an SMTP sink, per recipient: the Message-IDs of every copy.
pub struct Arrivals {
    pub per_recipient: HashMap<String, Vec<String>>,
    pub messages: usize,
}

impl Arrivals {
    pub fn read(dir: &Path) -> Arrivals {
        Arrivals::of(maildir_messages(&dir.join("new")))
    }

    /// From `(recipient, Message-ID)` pairs.
    pub fn of(all: Vec<(String, String)>) -> Arrivals {
        let messages = all.len();
        let mut per_recipient: HashMap<String, Vec<String>> = HashMap::new();
        for (to, message_id) in all {
            per_recipient.entry(to).or_default().push(message_id);
        }
        Arrivals { per_recipient, messages }
    }

    /// Copies beyond the first, over every recipient.
    pub fn duplicates(&self) -> usize {
        self.messages - self.per_recipient.len()
    }

    /// Whether every copy of a recipient's message carries the same Message-ID (one ledger row).
    pub fn duplicates_share_their_message_id(&self) -> bool {
        self.per_recipient.values().all(|ids| ids.windows(2).all(|w| w[0] == w[1]))
    }

    /// Recipients among `expected` that received nothing.
    pub fn missing<'a>(&self, expected: &'a [String]) -> Vec<&'a String> {
        expected.iter().filter(|to| !self.per_recipient.contains_key(*to)).collect()
    }
}

/// The recipients' addresses of a task's ledger.
pub async fn ledger_recipients(db: &PgPool, task_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT to_email FROM messages WHERE task_id = $1::uuid")
        .bind(task_id)
        .fetch_all(db)
        .await
        .expect("ledger")
}

/// `status -> rows` of a task's ledger.
pub async fn ledger_counts(db: &PgPool, task_id: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM messages WHERE task_id = $1::uuid GROUP BY status")
            .bind(task_id)
            .fetch_all(db)
            .await
            .expect("ledger counts");
    rows.into_iter().collect()
}

/// Rows of a task's ledger marked `sent`.
pub async fn ledger_sent(db: &PgPool, task_id: &str) -> usize {
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE task_id = $1::uuid AND status = 'sent'")
        .bind(task_id)
        .fetch_one(db)
        .await
        .expect("ledger sent");
    usize::try_from(sent).expect("a count")
}

/// Waits (up to `secs`) until the ledger has at least `count` rows `sent`: a drill's kill points
/// follow the work done, not the clock. Returns the count seen.
pub async fn wait_ledger_sent(db: &PgPool, task_id: &str, count: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let sent = ledger_sent(db, task_id).await;
        if sent >= count || Instant::now() >= deadline {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A rate as "1234 emails/s".
pub fn rate(emails: usize, over: Duration) -> String {
    format!("{:.0} emails/s", emails as f64 / over.as_secs_f64().max(1e-3))
}

/// Claims held right now (rows `sending` under a lease that has not expired).
pub async fn claims_in_flight(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE status = 'sending' AND lease_until > now()")
        .fetch_one(db)
        .await
        .expect("claims")
}

/// The task as the API shows it, once it is done (waiting up to `secs`); None if it is not.
pub async fn wait_task_done(app: &TestApp, task_id: &str, secs: u64) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let task: Value = app.get(&format!("/api/v1/tasks/{task_id}")).await.json().await.expect("task");
        if task["status"] == "done" {
            return Some(task);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Queues one message to every contact with `tag`; the task id.
pub async fn send_to_tag(app: &TestApp, tag: &str, subject: &str) -> String {
    let response = app
        .post_json("/api/v1/messages", &serde_json::json!({ "tag": tag, "subject": subject, "body": "Drill" }))
        .await;
    assert_eq!(response.status(), 202, "queueing the task");
    let queued: Value = response.json().await.expect("json");
    queued["task_id"].as_str().expect("task id").to_owned()
}

/// A Redis server of the drill's own (no persistence) that it may kill and start again on the
/// same port.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn start(port: u16) -> PrivateRedis {
        let mut redis = PrivateRedis { child: None, port };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-server ({err}); apt-get install redis-server"));
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on {}", self.port);
    }

    /// SIGKILL: every connection to it drops at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster of the drill's own (initdb in a temporary directory, trust
/// authentication, its own port and socket directory) that it may stop and start.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

/// PostgreSQL's server binaries (`BORCELLE_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`).
fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("BORCELLE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries under /usr/lib/postgresql (or set BORCELLE_PG_BIN)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("an initdb under /usr/lib/postgresql/*/bin")
}

impl PrivatePostgres {
    pub async fn start() -> PrivatePostgres {
        let dir = std::env::temp_dir().join(unique("borcelle-pg-"));
        std::fs::create_dir_all(&dir).expect("pg dir");
        if is_root() {
            let chown = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status();
            assert!(chown.is_ok_and(|s| s.success()), "chown of the cluster directory");
        }
        let pg = PrivatePostgres { dir, bin: postgres_bin(), port: free_port() };
        let data = pg.dir.join("data");
        pg.run("initdb", &["-D", &data.to_string_lossy(), "-A", "trust", "-U", "postgres", "-N", "-E", "UTF8"]);
        pg.start_again();
        pg
    }

    /// Runs one of PostgreSQL's tools, as the `postgres` user when the test runs as root.
    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        let output = cmd.args(args).stdin(Stdio::null()).output().expect("run a PostgreSQL tool");
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let data = self.dir.join("data");
        let log = self.dir.join("postgres.log");
        self.run(
            "pg_ctl",
            &["-D", &data.to_string_lossy(), "-l", &log.to_string_lossy(), "-o", &options, "-w", "start"],
        );
    }

    /// `pg_ctl stop -m fast`: open connections are told the server is shutting down and closed.
    pub fn stop_fast(&self) {
        self.run("pg_ctl", &["-D", &self.dir.join("data").to_string_lossy(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let program = self.bin.join("pg_ctl");
        let args = ["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"].map(str::to_owned);
        let _ = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(&args).output()
        } else {
            Command::new(&program).args(&args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
