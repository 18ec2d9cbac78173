//! The operator's one error type.

/// Everything that can go wrong in the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the MultiArchImage CRD is not installed: apply crds/multiarchimages.multiarch.dev.yaml ({0})")]
    CrdMissing(kube::Error),
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("{0} has no namespace")]
    MissingNamespace(String),
    #[error("the watch caches of Jobs and Pods closed (the operator is stopping)")]
    CacheClosed,
    #[error("lost the leader lease {0}")]
    LeaseLost(String),
    #[error("serving metrics and health on {addr}: {source}")]
    Serve {
        addr: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::CrdMissing(_) => "crd_missing",
            Error::Config(_) => "config",
            Error::MissingNamespace(_) => "invalid_object",
            Error::LeaseLost(_) => "lease_lost",
            Error::CacheClosed => "cache_closed",
            Error::Serve { .. } => "serve",
        }
    }
}
