//! The command line: every flag has an environment variable, and `borcelle --help` lists them.
//! This is the only place that reads the environment.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use borcelle_store::users::Role;

use crate::config::DatabaseSettings;
use serve::{InboundCommandArgs, ServeArgs, WorkerAction, WorkerArgs};

mod dkim;
mod parts;
mod serve;

/// Borcelle: a Kubernetes-native CRM with email at its core.
#[derive(Debug, Parser)]
#[command(name = "borcelle", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// PostgreSQL URL; the database is created when missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/borcelle"
    )]
    database_url: String,
    /// Largest number of pooled database connections.
    #[arg(long, env = "BORCELLE_DB_MAX_CONNECTIONS", global = true, default_value_t = 16)]
    db_max_connections: u32,
    /// Seconds a request waits for a pooled database connection before answering 503; while
    /// PostgreSQL is down, requests fail after this long (0.1 to 60).
    #[arg(long, env = "BORCELLE_DB_ACQUIRE_TIMEOUT_SECS", global = true, default_value_t = 5.0, value_parser = acquire_timeout_secs)]
    db_acquire_timeout_secs: f64,
    /// Redis URL: live events travel between processes over its pub/sub. In-process when unset.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    redis_url: Option<String>,
    /// Log format: `text` for people, `json` for log collectors. Levels come from RUST_LOG.
    #[arg(long, env = "BORCELLE_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the web UI, the JSON API and the background work.
    Serve(Box<ServeArgs>),
    /// Create the database if missing, apply pending migrations, and exit.
    Migrate,
    /// Run only the delivery engine: send queued mail until SIGTERM.
    Worker(Box<WorkerArgs>),
    /// Run only the SMTP receiver of inbound mail (replies, bounces) until SIGTERM.
    Inbound(Box<InboundCommandArgs>),
    /// Manage accounts from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// DKIM keys for signing outgoing mail.
    #[command(subcommand)]
    Dkim(dkim::DkimCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a verified account. The password is read from BORCELLE_ADMIN_PASSWORD or stdin.
    CreateUser {
        #[arg(long)]
        email: String,
        /// Display name (default: the part of the email before the @).
        #[arg(long)]
        name: Option<String>,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Give an account the admin role.
    Promote {
        #[arg(long)]
        email: String,
    },
    /// Take the admin role away from an account.
    Demote {
        #[arg(long)]
        email: String,
    },
}

impl GlobalArgs {
    fn database(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretString::from(self.database_url.clone()),
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs_f64(self.db_acquire_timeout_secs),
        }
    }
}

fn acquire_timeout_secs(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(secs) if (0.1..=60.0).contains(&secs) => Ok(secs),
        _ => Err("give a number of seconds between 0.1 and 60".to_owned()),
    }
}

/// Levels when RUST_LOG sets none (or none that parse).
const DEFAULT_LOG: &str = "info,sqlx=warn,tower_http=info";

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, Registry, fmt};

    let from_env = std::env::var("RUST_LOG").ok().filter(|directives| !directives.trim().is_empty());
    let directives = from_env.as_deref().unwrap_or(DEFAULT_LOG);
    // Directives that only name targets and levels (the default's kind) filter as `Targets`, which
    // does nothing as a span is entered or left; `EnvFilter` looks each span up under a lock every
    // time (every poll of every request: about 2 % of serve's CPU on a page of contacts). Span and
    // field directives (`[…]`) need `EnvFilter`: `Targets` would take `[request]` for a target's
    // name and ignore a field list, and say nothing.
    let targets = if directives.contains('[') { None } else { directives.parse::<Targets>().ok() };
    let filter: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> = match targets {
        Some(targets) => targets.boxed(),
        None => EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)).boxed(),
    };
    let logs = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => logs.with(fmt::layer().with_writer(std::io::stderr)).init(),
        LogFormat::Json => logs
            .with(fmt::layer().json().flatten_event(true).with_current_span(true).with_writer(std::io::stderr))
            .init(),
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = match cli.command {
        Command::Serve(args) => {
            let settings = args.settings(&cli.global)?;
            let open_files = crate::startup::raise_open_files_limit();
            tracing::info!(open_files = ?open_files, "open-files limit");
            let app = crate::startup::Application::build(settings).await?;
            app.run_until_stopped(crate::startup::shutdown_signal()).await
        }
        Command::Worker(args) => {
            let role = match (&args.action, args.listen) {
                (Some(WorkerAction::Occurrence(_)), _) => "occurrence".to_owned(),
                (None, Some(listen)) => format!("worker:{}", listen.port()),
                (None, None) => "worker".to_owned(),
            };
            let settings = crate::startup::WorkerSettings {
                listen: args.listen,
                database: cli.global.database(),
                mail: args.mail.settings()?,
                delivery: args.delivery.settings(&role)?,
                redis_url: cli.global.redis_url.clone().map(SecretString::from),
                storage: args.storage.settings()?,
                public_url: args.public_url.clone(),
                unsubscribe_one_to_one: args.consent.unsubscribe_one_to_one,
                inbound_domain: args.inbound.domain()?,
            };
            match args.action {
                None => crate::startup::run_worker(settings, crate::startup::shutdown_signal()).await,
                Some(WorkerAction::Occurrence(occurrence)) => {
                    let job = crate::startup::OccurrenceJob {
                        kind: occurrence.kind,
                        resource: format!("{}/{}", occurrence.namespace, occurrence.name),
                        uid: occurrence.uid,
                        scheduled: occurrence.scheduled,
                        spec: occurrence.spec,
                        termination_log: occurrence.termination_log,
                    };
                    return crate::startup::run_occurrence_job(settings, job, crate::startup::shutdown_signal()).await;
                }
            }
        }
        Command::Inbound(args) => {
            let Some(inbound) = args.inbound.settings(std::net::SocketAddr::from(([0, 0, 0, 0], 2525)))? else {
                bail!("set BORCELLE_INBOUND_DOMAIN: the receiver accepts mail only for that domain's addresses");
            };
            let settings = crate::startup::InboundProcessSettings {
                health_listen: args.health_listen,
                database: cli.global.database(),
                redis_url: cli.global.redis_url.clone().map(SecretString::from),
                storage: args.storage.settings()?,
                inbound,
            };
            crate::startup::run_inbound(settings, crate::startup::shutdown_signal()).await
        }
        Command::Migrate => {
            let pool = borcelle_store::connect_and_migrate(&cli.global.database()).await?;
            pool.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(command) => admin(&cli.global, command).await,
        Command::Dkim(command) => dkim::run(command),
    };
    done.map(|()| ExitCode::SUCCESS)
}

async fn admin(global: &GlobalArgs, command: AdminCommand) -> anyhow::Result<()> {
    let pool = borcelle_store::connect_and_migrate(&global.database()).await?;
    let result = match command {
        AdminCommand::CreateUser { email, name, admin } => {
            let password = admin_password()?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_owned());
            let role = if admin { Role::Admin } else { Role::User };
            let id = borcelle_engine::accounts::create_verified_user(&pool, &email, &name, password, role)
                .await
                .map_err(explain)?;
            println!("created {} account {id} for {}", role.as_str(), email.trim().to_ascii_lowercase());
            Ok(())
        }
        AdminCommand::Promote { email } => set_role(&pool, &email, Role::Admin).await,
        AdminCommand::Demote { email } => set_role(&pool, &email, Role::User).await,
    };
    pool.close().await;
    result
}

async fn set_role(pool: &borcelle_store::PgPool, email: &str, role: Role) -> anyhow::Result<()> {
    let email = borcelle_engine::validate::email("email", email).map_err(explain)?;
    if !borcelle_store::users::set_role(pool, &email, role).await? {
        bail!("no account has the email {email}");
    }
    println!("{email} is now {}", role.as_str());
    Ok(())
}

fn explain(err: borcelle_engine::Error) -> anyhow::Error {
    match err.field() {
        Some(field) => anyhow::anyhow!("{field}: {err}"),
        None => anyhow::anyhow!("{err}"),
    }
}

/// The new account's password: BORCELLE_ADMIN_PASSWORD, else the first line of stdin.
fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("BORCELLE_ADMIN_PASSWORD") {
        return Ok(password);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password for the new account (input is not hidden; pipe it in to keep it off the screen):");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("no password given: set BORCELLE_ADMIN_PASSWORD or pipe the password into stdin");
    }
    Ok(password)
}
