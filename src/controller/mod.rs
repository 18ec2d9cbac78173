//! `multiarch-operator controller`: watches MultiArchImages, their Jobs and
//! their Pods, and drives each build to a pushed image index.

mod apply;
pub mod context;
pub mod decide;
mod leader;
pub mod observe;
mod reconcile;
pub mod report;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

pub use apply::FIELD_MANAGER;
pub use context::{Caches, Context};
pub use leader::LeaderConfig;
pub use reconcile::{error_policy, reconcile};

use crate::api::MultiArchImage;
use crate::error::{Error, Result};
use crate::render::{ImageArgs, MANAGED_BY, MANAGED_BY_LABEL, RESOURCE_ANNOTATION};
use crate::telemetry::{self, Health, Metrics};

/// Flags of `multiarch-operator controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Watch only this namespace; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Elect a leader on a Lease, so several replicas can run.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "multiarch-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a leader's Lease lasts without renewal, in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Reconciles running at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Log one JSON object a line.
    #[arg(long, env = "LOG_JSON")]
    pub log_json: bool,
}

/// Runs the operator until SIGTERM or SIGINT.
pub async fn run(args: ControllerArgs) -> Result<()> {
    let client = client().await?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let server = tokio::spawn(telemetry::serve(
        args.metrics_addr.clone(),
        metrics.clone(),
        health.clone(),
        stopped(stop_rx.clone()),
    ));

    let resources: Api<MultiArchImage> = scoped(&client, args.namespace.as_deref());
    tokio::select! {
        checked = check_crd(&resources) => checked?,
        () = stopped(stop_rx.clone()) => return Ok(()),
    }
    health.ready.store(true, Ordering::Relaxed);

    let leader = args.leader_elect.then(|| LeaderConfig {
        namespace: args.leader_election_namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity: args.identity.clone().unwrap_or_else(default_identity),
        lease_duration: Duration::from_secs(args.lease_duration_seconds.max(2)),
        renew_every: Duration::from_secs((args.lease_duration_seconds / 3).max(1)),
    });
    if let Some(leader) = &leader {
        tokio::select! {
            acquired = leader::acquire(client.clone(), leader) => acquired?,
            () = stopped(stop_rx.clone()) => return Ok(()),
        }
    }
    let (controller, caches) = controller(&client, args.namespace.as_deref(), args.concurrency);
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "multiarch-operator".into(),
                instance: leader.as_ref().map(|l| l.identity.clone()),
            },
        ),
        metrics,
        images: args.images.clone().into(),
        caches,
    });
    let controller = controller
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile, error_policy, context)
        .for_each(|_| async {});
    let outcome = match &leader {
        Some(config) => tokio::select! {
            () = controller => Ok(()),
            lost = leader::hold(client.clone(), config) => Err(lost),
        },
        None => {
            controller.await;
            Ok(())
        }
    };
    if let Some(config) = &leader {
        leader::release(client, config).await;
    }
    server.abort();
    outcome
}

/// Checks that the CRD is served. An API server that fails or throttles
/// for a while (5xx, 429, no connection) is waited out, not taken for a
/// missing CRD: the operator stays unready and tries again.
async fn check_crd(resources: &Api<MultiArchImage>) -> Result<()> {
    let mut delay = Duration::from_millis(500);
    loop {
        match resources.list(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "the API server is not answering well; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(Error::CrdMissing(e)),
        }
    }
}

/// An error worth retrying: the server failed or throttled, or did not answer.
fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// A client from the in-cluster config or KUBECONFIG, naming itself in the
/// User-Agent so API server audit logs say who acted.
async fn client() -> Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("multiarch-operator/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(Client::try_from(config)?)
}

/// The Controller: MultiArchImages, the Jobs they own, and the Jobs' Pods
/// (whose scheduling and termination messages drive the status).
///
/// The Job and Pod watches run in tasks of their own, filling the caches and
/// forwarding each change to the Controller: a reconcile may wait for the
/// caches without starving the very streams that fill them.
fn controller(
    client: &Client,
    namespace: Option<&str>,
    concurrency: u16,
) -> (Controller<MultiArchImage>, Caches) {
    let ours = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let (jobs, job_changes) = cached_watch(scoped::<Job>(client, namespace), ours.clone());
    let (pods, pod_changes) = cached_watch(scoped::<Pod>(client, namespace), ours);
    let (ready_tx, ready) = watch::channel(false);
    let (jobs_ready, pods_ready) = (jobs.clone(), pods.clone());
    // One waiter per store: a Store wakes only its latest waiter.
    tokio::spawn(async move {
        if jobs_ready.wait_until_ready().await.is_ok()
            && pods_ready.wait_until_ready().await.is_ok()
        {
            let _ = ready_tx.send(true);
        }
    });
    let controller = Controller::new(
        scoped::<MultiArchImage>(client, namespace),
        watcher::Config::default(),
    )
    // No debounce: reconciles are idempotent, and each step of a build waits
    // on the one before, so any delay here adds to the time to index.
    .with_config(ControllerConfig::default().concurrency(concurrency))
    .owns_stream(job_changes)
    .watches_stream(pod_changes, |pod| {
        let name = pod.annotations().get(RESOURCE_ANNOTATION).cloned();
        let namespace = pod.namespace();
        name.zip(namespace)
            .map(|(name, ns)| ObjectRef::<MultiArchImage>::new(&name).within(&ns))
    });
    (controller, Caches { jobs, pods, ready })
}

/// A watch feeding a cache, run in its own task; its changes come out of
/// the returned stream.
fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let changes = watcher(api, config)
        .default_backoff()
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects();
    tokio::spawn(changes.for_each(move |change| {
        let _ = tx.unbounded_send(change);
        futures::future::ready(())
    }));
    (store, rx)
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn default_identity() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "operator".into());
    format!("{}-{}", host.trim(), std::process::id())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
