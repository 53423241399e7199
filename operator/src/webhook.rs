//! The validating admission webhook. The API server asks it about every ScheduledReminder and
//! Broadcast that is created or changed, and it refuses what could never be scheduled: a schedule
//! that is not cron, six fields, `61 * * * *`, an unknown time zone, a field that cannot be sent.
//! `kubectl apply` then fails at once, as it does for a CronJob, instead of the status saying so
//! later. The CRDs' CEL rules keep checking what CEL can; this checks the rest with the code the
//! operator and the in-process scheduler decide with (`spec.timing()`).
//!
//! It is served over TLS on every replica (leader or not). The certificate comes from files (a
//! cert-manager Certificate's Secret, mounted; re-read when they change) or, without cert-manager,
//! from a Secret this operator creates once with its own CA, which it also writes into the
//! webhook configuration's `caBundle`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Json;
use axum::routing::post;
use borcelle_crds::{Broadcast, ScheduledReminder};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, status_code};

/// The path the webhook configuration points at.
pub const PATH: &str = "/validate";

/// The webhook's routes.
pub fn router() -> Router {
    Router::new().route(PATH, post(review))
}

async fn review(Json(review): Json<AdmissionReview<DynamicObject>>) -> Json<AdmissionReview<DynamicObject>> {
    Json(validate(review))
}

/// The answer to one admission review.
pub fn validate(review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(err) => return AdmissionResponse::invalid(err).into_review(),
    };
    let response = AdmissionResponse::from(&request);
    match problem(&request) {
        Some(problem) => response.deny(problem),
        None => response,
    }
    .into_review()
}

/// What is wrong with the object under review, if anything.
fn problem(request: &AdmissionRequest<DynamicObject>) -> Option<String> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return None;
    }
    let object = request.object.as_ref()?;
    // An update that leaves the spec as it was (labels, annotations, finalizers, an object being
    // deleted) is never refused: an object stored before the webhook existed, or before a rule
    // tightened, must still be relabelled, and its finalizers removed so that it can go.
    if let Some(old) = request.old_object.as_ref()
        && (old.data.get("spec") == object.data.get("spec") || object.metadata.deletion_timestamp.is_some())
    {
        return None;
    }
    let object = serde_json::to_value(object).ok()?;
    let now = chrono::Utc::now();
    let result = match request.kind.kind.as_str() {
        "ScheduledReminder" => serde_json::from_value::<ScheduledReminder>(object)
            .map_err(|err| format!("spec: {err}"))
            .and_then(|r| r.spec.timing().map(|_| ()).map_err(|err| err.to_string())),
        "Broadcast" => serde_json::from_value::<Broadcast>(object)
            .map_err(|err| format!("spec: {err}"))
            .and_then(|b| b.spec.timing(now).map(|_| ()).map_err(|err| err.to_string())),
        _ => Ok(()),
    };
    result.err()
}

/// A certificate and its key, PEM-encoded, and the CA that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pems {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A CA and a serving certificate for `dns_names`, valid ten years.
pub fn self_signed(dns_names: &[String]) -> Result<Pems, rcgen::Error> {
    use chrono::Datelike;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd};
    let year = chrono::Utc::now().year();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "borcelle-operator webhook CA");
    ca_params.not_before = date_time_ymd(year - 1, 1, 1);
    ca_params.not_after = date_time_ymd(year + 10, 1, 1);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 10, 1, 1);
    let cert = params.signed_by(&key, &ca)?;
    Ok(Pems { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() })
}

/// The DNS names the API server reaches `service` in `namespace` by.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn secret_pems(secret: &Secret) -> Option<Pems> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
    Some(Pems { ca: text("ca.crt")?, cert: text("tls.crt")?, key: text("tls.key")? })
}

/// The webhook's certificate from the Secret `name` in `namespace`, created once (by whichever
/// replica gets there first) with a CA of its own.
pub async fn secret_certificate(
    client: kube::Client,
    namespace: &str,
    name: &str,
    dns_names: &[String],
) -> Result<Pems, WebhookError> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    if let Some(pems) = secrets.get_opt(name).await?.as_ref().and_then(secret_pems) {
        return Ok(pems);
    }
    let pems = self_signed(dns_names)?;
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [("ca.crt", &pems.ca), ("tls.crt", &pems.cert), ("tls.key", &pems.key)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), bytes(v)))
                .collect(),
        ),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(pems),
        // Another replica created it first: use theirs, so that one CA serves every replica.
        Err(err) if status_code(&err) == Some(409) => {
            secret_pems(&secrets.get(name).await?).ok_or(WebhookError::IncompleteSecret)
        }
        Err(err) => Err(err.into()),
    }
}

/// Writes `ca` into every webhook of the configuration `name` whose `caBundle` differs.
pub async fn publish_ca(client: kube::Client, name: &str, ca: &str) -> Result<(), WebhookError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    let mut configuration = api.get(name).await?;
    let bundle = ByteString(ca.as_bytes().to_vec());
    let mut changed = false;
    for webhook in configuration.webhooks.iter_mut().flatten() {
        if webhook.client_config.ca_bundle.as_ref() != Some(&bundle) {
            webhook.client_config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    if changed {
        // The resourceVersion read: a concurrent writer (another replica) makes this a 409, and
        // theirs carries the same CA.
        match api.replace(name, &PostParams::default(), &configuration).await {
            Ok(_) => tracing::info!(configuration = name, "published the webhook's CA"),
            Err(err) if status_code(&err) == Some(409) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Why the webhook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Api(#[from] Error),
    #[error("generating the webhook certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the webhook certificate is not usable: {0}")]
    Tls(String),
    #[error("the webhook's Secret lacks ca.crt, tls.crt or tls.key")]
    IncompleteSecret,
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

impl From<kube::Error> for WebhookError {
    fn from(err: kube::Error) -> Self {
        WebhookError::Api(err.into())
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, WebhookError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| WebhookError::Tls(err.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|err| WebhookError::Tls(err.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key, &provider).map_err(|err| WebhookError::Tls(err.to_string()))
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// Fixed (the operator's own Secret).
    Pems(Pems),
    /// `tls.crt` and `tls.key` in a directory (a mounted cert-manager Secret), re-read when they
    /// change, so a renewed certificate is served without a restart.
    Files(PathBuf),
}

/// Hands rustls the current certificate.
#[derive(Debug)]
struct Resolver {
    source: CertSource,
    current: RwLock<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Resolver {
    fn new(source: CertSource) -> Result<Self, WebhookError> {
        let (stamp, key) = Self::load(&source)?;
        Ok(Resolver { source, current: RwLock::new((stamp, Arc::new(key))) })
    }

    fn load(source: &CertSource) -> Result<(Option<SystemTime>, CertifiedKey), WebhookError> {
        match source {
            CertSource::Pems(pems) => Ok((None, certified_key(&pems.cert, &pems.key)?)),
            CertSource::Files(dir) => {
                let read = |file: &str| {
                    let path = dir.join(file);
                    std::fs::read_to_string(&path).map_err(|source| WebhookError::Read { path, source })
                };
                let stamp = std::fs::metadata(dir.join("tls.crt")).and_then(|m| m.modified()).ok();
                Ok((stamp, certified_key(&read("tls.crt")?, &read("tls.key")?)?))
            }
        }
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let CertSource::Files(dir) = &self.source {
            let stamp = std::fs::metadata(dir.join("tls.crt")).and_then(|m| m.modified()).ok();
            let stale = self.current.read().map(|current| current.0 != stamp).unwrap_or(false);
            if stale && let Ok((stamp, key)) = Self::load(&self.source) {
                tracing::info!("the webhook certificate changed: serving the new one");
                if let Ok(mut current) = self.current.write() {
                    *current = (stamp, Arc::new(key));
                }
            }
        }
        self.current.read().ok().map(|current| current.1.clone())
    }
}

/// The TLS configuration for `source`.
pub fn tls_config(source: CertSource) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| WebhookError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver::new(source)?));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "webhook accept failed");
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return tracing::debug!(%peer, error = %err, "webhook TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "webhook TLS handshake timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(err) = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await {
                tracing::debug!(%peer, error = %err, "webhook connection ended");
            }
        });
    }
}
