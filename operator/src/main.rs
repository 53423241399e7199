//! `borcelle-operator`: the Kubernetes controller for Borcelle's resources.
//!
//! Reconciliation arrives with the operator issue; this binary already accepts its final
//! arguments so that the chart and the image can be wired against a stable interface.

use clap::Parser;

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
    /// Address of the health and metrics listener.
    #[arg(long, env = "BORCELLE_OPERATOR_LISTEN", default_value = "0.0.0.0:8081")]
    listen: std::net::SocketAddr,
    /// Take part in leader election through a coordination.k8s.io Lease.
    #[arg(long, env = "BORCELLE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    eprintln!(
        "borcelle-operator: resources {} are not reconciled yet by this build (namespace: {}, worker image: {}, listen: {}, leader election: {})",
        borcelle_crds::api_version(),
        args.namespace.as_deref().unwrap_or("all"),
        args.worker_image,
        args.listen,
        args.leader_election
    );
    std::process::ExitCode::from(2)
}
