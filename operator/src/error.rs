//! The operator library's errors, and their bounded classification for metrics.

/// Why a reconcile (or the lease logic) failed. Spec problems are not errors: they are reported in
/// status and events (see `reconcile::invalid_spec`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} has no namespace")]
    MissingNamespace(String),
    #[error("{0} has no uid")]
    MissingUid(String),
    #[error("could not serialize the spec: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("Job {0} already exists and is not owned by this resource")]
    JobNameTaken(String),
    /// The status was written since it was read (the write carried the old resourceVersion).
    #[error("the status changed since it was read")]
    StaleStatus,
}

impl Error {
    /// A label value from a small fixed set, for `borcelle_operator_reconcile_errors_total`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                401 | 403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                422 | 400 => "invalid",
                429 => "throttled",
                500..=599 => "server_error",
                _ => "api_error",
            },
            Error::Kube(kube::Error::SerdeError(_)) => "decode",
            Error::Kube(_) => "transport",
            Error::MissingNamespace(_) | Error::MissingUid(_) => "incomplete_object",
            Error::Serialize(_) => "serialize",
            Error::JobNameTaken(_) => "job_name_taken",
            Error::StaleStatus => "stale_status",
        }
    }

    /// Whether this is an API answer with the given HTTP status code.
    pub fn is_status(&self, code: u16) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(status)) if status.code == code)
    }
}

/// The HTTP status code of a failed API call, if it was one.
pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
