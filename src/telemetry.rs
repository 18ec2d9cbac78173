//! Logs, metrics and the health endpoints.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing_subscriber::{prelude::*, EnvFilter};

use crate::error::{Error, Result};

/// Structured logs on stderr; `RUST_LOG` filters (default `info`), and
/// `json` switches to one JSON object a line.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init();
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

/// `Hit`, `Miss`, `Unavailable`, or `Disabled` for a build without a cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
}

impl CacheLabels {
    pub fn of(state: Option<crate::api::CacheState>) -> Self {
        CacheLabels {
            cache: state.map_or("Disabled", |s| s.as_str()).to_string(),
        }
    }
}

/// The buckets of the build duration: 1 s to about 4.5 hours.
fn build_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

/// The operator's Prometheus metrics.
pub struct Metrics {
    pub reconciles: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    /// Resources entering each phase.
    pub builds: Family<PhaseLabels, Counter>,
    /// Seconds from a platform's start to its image being pushed, by how
    /// its cache served it.
    pub build_duration: Family<CacheLabels, Histogram>,
    /// Seconds from the last platform built to the index pushed.
    pub merge_duration: Histogram,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("multiarch");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let builds = Family::<PhaseLabels, Counter>::default();
        let build_duration = Family::<CacheLabels, Histogram>::new_with_constructor(
            build_duration_histogram as fn() -> Histogram,
        );
        let merge_duration = Histogram::new(exponential_buckets(0.25, 2.0, 12));
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by kind",
            errors.clone(),
        );
        registry.register(
            "builds",
            "MultiArchImages entering each phase",
            builds.clone(),
        );
        registry.register(
            "platform_build_duration_seconds",
            "Time from a platform's build start to its push, by cache state",
            build_duration.clone(),
        );
        registry.register(
            "merge_duration_seconds",
            "Time from the last platform pushed to the index pushed",
            merge_duration.clone(),
        );
        Metrics {
            reconciles,
            errors,
            builds,
            build_duration,
            merge_duration,
            registry,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("metrics encode to a String");
        out
    }
}

/// What `/readyz` reports: ready once the API server has answered.
#[derive(Default)]
pub struct Health {
    pub ready: AtomicBool,
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` until `shutdown` resolves.
pub async fn serve(
    addr: String,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, health });
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| Error::Serve {
            addr: addr.clone(),
            source,
        })?;
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(addr.clone()), "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source })
}

async fn metrics_page(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
