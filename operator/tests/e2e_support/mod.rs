//! What the end-to-end tests (`e2e.rs`) share: the cluster, the installed CRDs and RBAC, a fresh
//! namespace and the operator process with its health listener ([`jobs`]: a stand-in for the Job
//! controller; [`kubectl`]: what `kubectl get` shows).

mod jobs;
mod kubectl;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use jobs::{complete, completion_patch, event_reasons, first_job, jobs_of};
pub use kubectl::{kubectl_next_cell, next_cell, on_path};

const SKIP: &str = "skipped: set BORCELLE_E2E_KUBECONFIG to run against a real cluster";

/// The field manager of what the tests apply.
const MANAGER: &str = "borcelle-e2e";

/// Says the test was skipped where `cargo test` shows it (the test harness captures `println!`,
/// not the process's stderr).
pub fn skipped(test: &str) {
    note(test, SKIP);
}

/// A line on stderr about `test`, visible in `cargo test` output.
pub fn note(test: &str, text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "e2e {test}: {text}");
}

/// The cluster of `BORCELLE_E2E_KUBECONFIG`, if set.
pub async fn cluster() -> Option<(Client, PathBuf)> {
    let path = PathBuf::from(std::env::var_os("BORCELLE_E2E_KUBECONFIG")?);
    let kubeconfig = Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    Some((Client::try_from(config).expect("client"), path))
}

/// A test's cluster: the CRDs installed, a fresh namespace and the operator watching it.
pub struct Env {
    pub client: Client,
    pub kubeconfig: PathBuf,
    // Fields drop in declaration order: the operator stops before its namespace is deleted.
    pub operator: Operator,
    pub namespace: TestNamespace,
}

impl Env {
    /// The environment on the configured cluster; `None`, said on stderr, without one.
    pub async fn start(test: &str) -> Option<Env> {
        let Some((client, kubeconfig)) = cluster().await else {
            skipped(test);
            return None;
        };
        Some(Env::on(client, kubeconfig).await)
    }

    pub async fn on(client: Client, kubeconfig: PathBuf) -> Env {
        Env::with_operator_args(client, kubeconfig, &[]).await
    }

    /// [`Env::on`] with the operator given `args` beyond the usual ones.
    pub async fn with_operator_args(client: Client, kubeconfig: PathBuf, args: &[String]) -> Env {
        install_crds(&client).await;
        let namespace = TestNamespace::create(&client).await;
        let operator = Operator::start(&client, &kubeconfig, &namespace.name, args).await;
        Env { client, kubeconfig, operator, namespace }
    }

    pub fn ns(&self) -> &str {
        &self.namespace.name
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.ns())
    }
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/borcelle/crds");
    for entry in std::fs::read_dir(&dir).expect("charts/borcelle/crds") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let crd: CustomResourceDefinition = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd)).await.expect("apply CRD");
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established).await.expect("CRD established in 30 s").unwrap();
    }
}

/// The chart's operator ServiceAccount and RBAC for an operator watching one namespace, as typed
/// objects placed in that namespace.
///
/// Each rendered document goes through its typed struct: indexing the JSON (`doc["subjects"]`)
/// inserts `null` for a missing key, and server-side apply refuses a Role with a `subjects` field.
pub struct ChartRbac {
    pub account: ServiceAccount,
    pub roles: Vec<Role>,
    pub bindings: Vec<RoleBinding>,
}

/// Renders the chart's operator RBAC for `namespace` with Helm's engine; `Err` with its output
/// when rendering fails (`scripts/chart-check` installs Helm's library once).
pub fn render_chart_rbac(namespace: &str) -> Result<ChartRbac, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/tests/render.py");
    let values = json!({ "operator": { "watchNamespace": namespace } }).to_string();
    let output = std::process::Command::new("python3").arg(&script).arg(values).output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let documents: Vec<Value> = serde_json::from_slice(&output.stdout).expect("rendered manifests");
    let (mut account, mut roles, mut bindings) = (None, Vec::new(), Vec::new());
    for doc in documents {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        if !matches!(kind.as_str(), "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding")
            || !name.ends_with("-operator") && !name.ends_with("-operator-leader-election")
        {
            continue;
        }
        assert!(!kind.starts_with("Cluster"), "an operator watching one namespace needs no cluster-wide {kind}");
        match kind.as_str() {
            "ServiceAccount" => {
                let mut sa: ServiceAccount = typed(doc, &kind);
                sa.metadata.namespace = Some(namespace.to_owned());
                account = Some(sa);
            }
            "Role" => {
                let mut role: Role = typed(doc, &kind);
                role.metadata.namespace = Some(namespace.to_owned());
                roles.push(role);
            }
            "RoleBinding" => {
                let mut binding: RoleBinding = typed(doc, &kind);
                binding.metadata.namespace = Some(namespace.to_owned());
                // The chart binds the account of its release namespace; here that is the test's.
                for subject in binding.subjects.iter_mut().flatten() {
                    subject.namespace = Some(namespace.to_owned());
                }
                bindings.push(binding);
            }
            _ => unreachable!("filtered above"),
        }
    }
    let account = account.expect("the chart renders the operator's ServiceAccount");
    Ok(ChartRbac { account, roles, bindings })
}

/// The chart's ServiceAccount and RBAC for an operator watching `namespace`, applied there;
/// returns the ServiceAccount's and the Lease's names.
async fn install_chart_rbac(client: &Client, namespace: &str) -> (String, String) {
    let rbac = render_chart_rbac(namespace).unwrap_or_else(|err| {
        panic!("rendering the chart failed (run scripts/chart-check once to install Helm's library): {err}")
    });
    apply(client, &rbac.account).await;
    for role in &rbac.roles {
        apply(client, role).await;
    }
    for binding in &rbac.bindings {
        apply(client, binding).await;
    }
    let account = rbac.account.name_any();
    // The chart lets the operator update only the Lease named after it.
    (account.clone(), account)
}

/// A rendered document as its typed struct.
fn typed<K: DeserializeOwned>(doc: Value, kind: &str) -> K {
    serde_json::from_value(doc).unwrap_or_else(|err| panic!("the chart renders a {kind} that does not parse: {err}"))
}

/// Server-side applies `object` in its namespace.
async fn apply<K>(client: &Client, object: &K)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let namespace = object.namespace().expect("a namespaced object names its namespace");
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let name = object.name_any();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .unwrap_or_else(|err| panic!("apply {} {name}: {err}", K::kind(&())));
}

/// A fresh namespace, deleted on drop.
pub struct TestNamespace {
    client: Client,
    pub name: String,
}

impl TestNamespace {
    async fn create(client: &Client) -> Self {
        let name = format!("borcelle-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        namespaces.create(&PostParams::default(), &namespace).await.expect("create namespace");
        TestNamespace { client: client.clone(), name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = namespaces.delete(&name, &DeleteParams::background()).await;
            })
        });
    }
}

/// The operator binary under the chart's ServiceAccount (impersonated), watching one namespace
/// (its Lease there too), with its health listener on a free local port; killed on drop.
pub struct Operator {
    process: tokio::process::Child,
    /// Its health and metrics listener.
    pub address: SocketAddr,
    /// The Lease it elects itself through.
    pub lease: String,
}

impl Operator {
    /// This replica's name (`--pod-name`): its Lease holder identity is `e2e_<suffix>`.
    pub const POD_NAME: &str = "e2e";

    async fn start(client: &Client, kubeconfig: &Path, namespace: &str, extra: &[String]) -> Operator {
        let (account, lease) = install_chart_rbac(client, namespace).await;
        // A port free now; the operator binds it a moment later (another taker in between would
        // make it exit, which `wait_leader_ready` reports).
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_borcelle-operator"))
            .env("KUBECONFIG", kubeconfig)
            .env("KUBE_RS_DEBUG_IMPERSONATE_USER", format!("system:serviceaccount:{namespace}:{account}"))
            .env("RUST_LOG", "info,borcelle_operator=debug")
            .args(["--namespace", namespace, "--lease-namespace", namespace, "--lease-name", &lease])
            .args(["--pod-name", Self::POD_NAME, "--listen", &address.to_string(), "--log-format", "text"])
            .args(["--worker-image", "registry.example/borcelle:e2e"])
            .args(extra)
            .kill_on_drop(true)
            .spawn()
            .expect("start borcelle-operator");
        Operator { process, address, lease }
    }

    /// Waits until the operator is the leader and ready: `/readyz` answers 200 (a standby is
    /// ready too, so the leader gauge of `/metrics` must read 1 as well). Fails if it exits.
    pub async fn wait_leader_ready(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = String::from("no answer yet");
        loop {
            if let Some(status) = self.process.try_wait().expect("the operator's state") {
                panic!("the operator exited ({status}) before it was ready; last seen: {last}");
            }
            let ready = http_get(self.address, "/readyz").await;
            let metrics = http_get(self.address, "/metrics").await;
            let leader =
                metrics.as_ref().is_some_and(|(_, body)| body.lines().any(|l| l == "borcelle_operator_leader 1"));
            if matches!(ready, Some((200, _))) && leader {
                return;
            }
            last = format!("/readyz {ready:?}, leader gauge 1: {leader}");
            assert!(tokio::time::Instant::now() < deadline, "the operator was not a ready leader in {limit:?}: {last}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// `GET path` on `address`: the status code and body; `None` when the listener does not answer
/// within 5 s. A plain HTTP/1.1 exchange, enough for the operator's listener.
async fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.ok().flatten()
}

/// Polls `probe` every second until it yields a value, for at most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
