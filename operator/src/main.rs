//! `borcelle-operator`: the Kubernetes controller for Borcelle's resources. Parses arguments,
//! sets up logging, the client, the health/metrics listener and signals, then runs
//! [`borcelle_operator::run::run`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use borcelle_operator::context::{Context, JobSettings, system_clock};
use borcelle_operator::leader::LeaseSettings;
use borcelle_operator::metrics::Metrics;
use borcelle_operator::run::{RunSettings, run};
use borcelle_operator::server::{self, Health};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Reconciles ScheduledReminder and Broadcast resources into Jobs that run `borcelle worker`.
#[derive(Debug, Parser)]
#[command(name = "borcelle-operator", version, about)]
struct Args {
    /// Namespace to watch; all namespaces when unset.
    #[arg(long, env = "BORCELLE_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Image the created Jobs run (`borcelle worker occurrence …`).
    #[arg(long, env = "BORCELLE_WORKER_IMAGE", default_value = "borcelle:latest")]
    worker_image: String,
    /// Secret whose keys become the worker's environment (envFrom).
    #[arg(long, env = "BORCELLE_WORKER_ENV_SECRET", default_value = "borcelle-env")]
    worker_env_secret: String,
    /// ConfigMap whose keys also become the worker's environment (envFrom).
    #[arg(long, env = "BORCELLE_WORKER_ENV_CONFIGMAP")]
    worker_env_configmap: Option<String>,
    /// Service account the worker pods run as.
    #[arg(long, env = "BORCELLE_WORKER_SERVICE_ACCOUNT", default_value = "borcelle-worker")]
    worker_service_account: String,
    /// Secrets the worker pods pull the image with (comma-separated names, in the Jobs' namespace).
    #[arg(long, env = "BORCELLE_WORKER_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    worker_image_pull_secrets: Vec<String>,
    /// Retries of a failed occurrence pod (Job backoffLimit).
    #[arg(long, env = "BORCELLE_JOB_BACKOFF_LIMIT", default_value_t = 3)]
    job_backoff_limit: i32,
    /// Seconds an occurrence may run before it is stopped (Job activeDeadlineSeconds).
    #[arg(long, env = "BORCELLE_JOB_ACTIVE_DEADLINE_SECONDS", default_value_t = 3600)]
    job_active_deadline_seconds: i64,
    /// Address of the health and metrics listener.
    #[arg(long, env = "BORCELLE_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// Take part in leader election through a coordination.k8s.io Lease.
    #[arg(long, env = "BORCELLE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "BORCELLE_LEASE_NAME", default_value = "borcelle-operator")]
    lease_name: String,
    /// Namespace of the Lease; the client's default namespace (in a pod: its own) when unset.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's name in the Lease and on events; the host name when unset.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Log format.
    #[arg(long, env = "BORCELLE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Serve the validating admission webhook that refuses unschedulable resources at `kubectl apply`.
    #[arg(long, env = "BORCELLE_WEBHOOK", default_value_t = false, action = clap::ArgAction::Set)]
    webhook: bool,
    /// Address of the webhook's TLS listener.
    #[arg(long, env = "BORCELLE_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    webhook_listen: SocketAddr,
    /// Directory with `tls.crt` and `tls.key` (a mounted cert-manager Secret); without it the
    /// operator keeps a certificate of its own in `--webhook-secret` and publishes its CA.
    #[arg(long, env = "BORCELLE_WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<std::path::PathBuf>,
    /// The Secret (in the operator's namespace) holding the operator's own webhook certificate.
    #[arg(long, env = "BORCELLE_WEBHOOK_SECRET", default_value = "borcelle-operator-webhook-tls")]
    webhook_secret: String,
    /// The Service the API server reaches the webhook through (the certificate's names).
    #[arg(long, env = "BORCELLE_WEBHOOK_SERVICE", default_value = "borcelle-operator-webhook")]
    webhook_service: String,
    /// The ValidatingWebhookConfiguration whose `caBundle` gets the operator's CA.
    #[arg(long, env = "BORCELLE_WEBHOOK_CONFIGURATION", default_value = "borcelle-operator")]
    webhook_configuration: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
fn cancel_on_signal(token: CancellationToken) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
    Ok(())
}

async fn operate(args: Args) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone())?;
    let client = kube::Client::try_default().await.context("configuring the Kubernetes client")?;
    let metrics = Arc::new(Metrics::new());
    let health = Health::default();
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "health and metrics listener");
    let server =
        tokio::spawn(server::serve(listener, server::router(health.clone(), metrics.clone()), shutdown.clone()));

    if args.webhook {
        start_webhook(&args, &client, shutdown.clone()).await?;
    }

    let host =
        args.pod_name.clone().or_else(|| std::env::var("HOSTNAME").ok()).unwrap_or_else(|| "borcelle-operator".into());
    let identity = format!("{host}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let jobs = JobSettings {
        image: args.worker_image,
        backoff_limit: args.job_backoff_limit,
        active_deadline_seconds: args.job_active_deadline_seconds,
        env_secret: args.worker_env_secret,
        env_configmap: args.worker_env_configmap,
        service_account: args.worker_service_account,
        image_pull_secrets: args
            .worker_image_pull_secrets
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    let lease = args.leader_election.then(|| {
        let namespace = args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        LeaseSettings::new(args.lease_name.clone(), namespace, identity.clone())
    });
    let ctx = Arc::new(Context::new(client, jobs, system_clock(), metrics).with_instance(Some(identity.clone())));
    tracing::info!(
        identity,
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        leader_election = args.leader_election,
        "starting"
    );
    run(ctx, RunSettings { namespace: args.namespace, lease }, health, shutdown.clone()).await;
    shutdown.cancel();
    server.await.context("the listener task")?.context("the listener")?;
    tracing::info!("stopped");
    Ok(())
}

/// Sets up the webhook's certificate and serves it until shutdown.
async fn start_webhook(args: &Args, client: &kube::Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    use borcelle_operator::webhook::{self, CertSource};
    let source = match &args.webhook_cert_dir {
        Some(dir) => CertSource::Files(dir.clone()),
        None => {
            let namespace = args.lease_namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
            let names = webhook::service_names(&args.webhook_service, &namespace);
            let pems = webhook::secret_certificate(client.clone(), &namespace, &args.webhook_secret, &names)
                .await
                .context("the webhook's certificate")?;
            webhook::publish_ca(client.clone(), &args.webhook_configuration, &pems.ca)
                .await
                .context("publishing the webhook's CA")?;
            CertSource::Pems(pems)
        }
    };
    let config = webhook::tls_config(source).context("the webhook's TLS configuration")?;
    let listener = tokio::net::TcpListener::bind(args.webhook_listen)
        .await
        .with_context(|| format!("binding {}", args.webhook_listen))?;
    tracing::info!(address = %args.webhook_listen, "admission webhook listening");
    tokio::spawn(webhook::serve(listener, webhook::router(), config, shutdown));
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    match operate(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "operator failed");
            std::process::ExitCode::FAILURE
        }
    }
}
