//! The database's own rate for the work of a load phase: `pgbench` runs serve's statements for
//! that request (see [`scripts`]) against the benchmark database, on as many connections as the
//! phase, for the same warm-up and measured window. Its per-transaction log (`--log`) gives every
//! transaction's latency and end, so the window and the percentiles are computed as the load
//! phases compute theirs.

mod log;
pub mod report;
pub mod scripts;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::PgPool;
use tokio::process::Command;

use uuid::Uuid;

use crate::cli::say;
use crate::load::{LoadSpec, percentile_of};
use crate::probe::{CpuMeter, CpuUse};

/// How pgbench sends its statements (`-M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Parsed once per connection, as sqlx's cached statements are (list, create).
    Prepared,
    /// Parsed and planned at every call, as serve's autocomplete statements are (`persistent(false)`).
    Extended,
}

impl Mode {
    pub fn flag(self) -> &'static str {
        match self {
            Mode::Prepared => "prepared",
            Mode::Extended => "extended",
        }
    }
}

/// One pgbench script file.
pub struct Script {
    pub name: String,
    pub text: String,
    /// The class of input it stands for (autocomplete), else 0.
    pub class: usize,
}

impl Script {
    /// Whether it runs a second statement (autocomplete's approximate matches).
    pub fn two_statements(&self) -> bool {
        self.text.matches(";\n").count() > 1
    }
}

/// What pgbench runs for one phase.
pub struct Work {
    pub what: &'static str,
    pub mode: Mode,
    /// Chosen at random, equally weighted, for each transaction.
    pub scripts: Vec<Script>,
    /// `-D name=value`.
    pub variables: Vec<(String, String)>,
    /// Serve's statements the scripts are made of, as serve sends them.
    pub server_sql: Vec<(&'static str, String)>,
    pub classes: usize,
}

/// Where and how hard pgbench runs.
pub struct Spec<'a> {
    pub pgbench: &'a Path,
    pub database_url: &'a str,
    /// The database's name, to find its backends' CPU time.
    pub database: &'a str,
    pub load: LoadSpec,
    pub threads: usize,
}

/// What pgbench measured in the window.
pub struct DbRun {
    pub work: Work,
    pub load: LoadSpec,
    pub threads: usize,
    pub ok: u64,
    /// Failed transactions in the window.
    pub failed: u64,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
    per_class: Vec<Vec<u32>>,
    /// pgbench's own summary, over the whole run (warm-up included): tps and latency average.
    pub reported_tps: Option<f64>,
    pub reported_latency_ms: Option<f64>,
    /// Over the window: `server_pct` is pgbench itself, `postgres_pct` the database's backends.
    pub cpu: CpuUse,
    /// Whether each of serve's statements was among those serve's connections last ran.
    pub seen: Vec<(&'static str, bool)>,
}

impl DbRun {
    /// Transactions per second in the window.
    pub fn per_sec(&self) -> f64 {
        self.ok as f64 / self.load.duration.as_secs_f64().max(1e-9)
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

/// The statements of the benchmark database's other connections (serve's, after a phase: each
/// shows the last statement it ran).
pub async fn last_statements(db: &PgPool) -> anyhow::Result<Vec<String>> {
    let statements = sqlx::query_scalar(
        "SELECT DISTINCT query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(db)
    .await?;
    Ok(statements)
}

/// The id of the user with this email.
pub async fn owner_id(db: &PgPool, email: &str) -> anyhow::Result<Uuid> {
    let id = sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_one(db).await?;
    Ok(id)
}

/// pgbench beside a phase that has just ended: serve's last statements are read first, to check
/// the scripts against; a failure costs this comparison only.
pub async fn beside(spec: &Spec<'_>, db: &PgPool, work: anyhow::Result<Work>) -> Result<DbRun, String> {
    let serve_ran = last_statements(db).await.map_err(|err| format!("reading pg_stat_activity: {err:#}"));
    beside_after(spec, serve_ran.as_deref(), work).await
}

/// [`beside`] with serve's last statements read already.
async fn beside_after(
    spec: &Spec<'_>,
    serve_ran: Result<&[String], &String>,
    work: anyhow::Result<Work>,
) -> Result<DbRun, String> {
    let outcome = async {
        let serve_ran = serve_ran.map_err(|err| anyhow::anyhow!("{err}"))?;
        let work = work?;
        say(&format!(
            "pgbench, {} (same SQL as serve, -M {}): {} connections, {} threads, {} s + {} s",
            work.what,
            work.mode.flag(),
            spec.load.connections,
            spec.threads,
            spec.load.warmup.as_secs(),
            spec.load.duration.as_secs()
        ));
        run(spec, work, serve_ran).await
    }
    .await
    .map_err(|err| format!("{err:#}"));
    print!("{}", report::line(&outcome));
    outcome
}

/// Deletes the contacts pgbench created (their triggers take them off the counter and the
/// words), so that later phases do not see them.
pub async fn delete_created(db: &PgPool, owner: Uuid) -> anyhow::Result<u64> {
    let done = sqlx::query("DELETE FROM contacts WHERE owner_id = $1 AND email LIKE $2")
        .bind(owner)
        .bind(format!("{}%", scripts::CREATED_PREFIX))
        .execute(db)
        .await
        .context("deleting pgbench's contacts")?;
    Ok(done.rows_affected())
}

/// pgbench beside the autocomplete phase: the statements planned at every call as serve runs
/// them, then prepared, for comparison.
pub async fn beside_autocomplete(
    spec: &Spec<'_>,
    db: &PgPool,
    owner: Uuid,
) -> (Result<DbRun, String>, Option<Result<DbRun, String>>) {
    // Before the bench runs the first statement itself (its own connection would show it too).
    let serve_ran = last_statements(db).await.map_err(|err| format!("reading pg_stat_activity: {err:#}"));
    let inputs = scripts::autocomplete_inputs(db, owner).await;
    let work = |mode| match &inputs {
        Ok(inputs) => Ok(scripts::autocomplete(owner, inputs, mode)),
        Err(err) => Err(anyhow::anyhow!("finding which inputs run the second statement: {err:#}")),
    };
    let extended = beside_after(spec, serve_ran.as_deref(), work(Mode::Extended)).await;
    let prepared = match &extended {
        Ok(_) => Some(beside_after(spec, serve_ran.as_deref(), work(Mode::Prepared)).await),
        Err(_) => None,
    };
    (extended, prepared)
}

/// Runs pgbench for `work` and measures its window.
pub async fn run(spec: &Spec<'_>, work: Work, serve_ran: &[String]) -> anyhow::Result<DbRun> {
    let dir = std::env::temp_dir().join(format!("borcelle-bench-pgbench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let measured = measure(spec, &work, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (window, reported_tps, reported_latency_ms, cpu) = measured?;
    let seen = work
        .server_sql
        .iter()
        .map(|(label, sql)| (*label, serve_ran.iter().any(|ran| ran.trim() == sql.trim())))
        .collect();
    Ok(DbRun {
        load: spec.load,
        threads: spec.threads,
        ok: window.ok,
        failed: window.failed,
        latencies: window.latencies,
        per_class: window.per_class,
        reported_tps,
        reported_latency_ms,
        cpu,
        seen,
        work,
    })
}

async fn measure(
    spec: &Spec<'_>,
    work: &Work,
    dir: &Path,
) -> anyhow::Result<(log::Window, Option<f64>, Option<f64>, CpuUse)> {
    let mut command = Command::new(spec.pgbench);
    // One second past the window, so that the window ends before pgbench stops sending.
    let seconds = (spec.load.warmup + spec.load.duration).as_secs() + 1;
    command
        .args(["-n", "-M", work.mode.flag(), "-c", &spec.load.connections.to_string()])
        .args(["-j", &spec.threads.to_string(), "-T", &seconds.to_string(), "--log"])
        .arg(format!("--log-prefix={}", dir.join("tx").display()));
    for script in &work.scripts {
        let path = dir.join(&script.name);
        std::fs::write(&path, &script.text).with_context(|| format!("writing {}", path.display()))?;
        command.arg("-f").arg(format!("{}@1", path.display()));
    }
    for (name, value) in &work.variables {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    command
        .arg(spec.database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().with_context(|| format!("running {}", spec.pgbench.display()))?;
    let pid = child.id().context("pgbench exited at once")?;
    let output = tokio::spawn(child.wait_with_output());
    // CPU over the window: pgbench's connections are open by the end of the warm-up.
    tokio::time::sleep(spec.load.warmup).await;
    let meter = CpuMeter::start(pid, spec.database);
    tokio::time::sleep(spec.load.duration).await;
    let cpu = meter.finish();
    let output = output.await.context("waiting for pgbench")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!("pgbench exited with {}: {}", output.status, last.into_iter().rev().collect::<Vec<_>>().join(" / "));
    }
    let classes: Vec<usize> = work.scripts.iter().map(|s| s.class).collect();
    let window = log::read(dir, &classes, work.classes, spec.load)?;
    Ok((window, log::summary_value(&stdout, "tps = "), log::summary_value(&stdout, "latency average = "), cpu))
}
