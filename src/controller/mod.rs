//! `multiarch-operator controller`: watches MultiArchImages, their Jobs and
//! their Pods, and drives each build to a pushed image index.

mod apply;
pub mod context;
pub mod decide;
mod leader;
pub mod observe;
mod reconcile;
pub mod report;
mod sightings;
pub mod source;
mod trim;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
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

/// Shorter leases leave no time to renew before a standby may take over.
const MIN_LEASE_DURATION_SECONDS: u64 = 2;

/// Flags of `multiarch-operator controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Watch only these namespaces (repeat the flag, or separate them with
    /// commas); all namespaces when unset.
    #[arg(long = "namespace", env = "WATCH_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    #[command(flatten)]
    pub images: ImageArgs,
    #[command(flatten)]
    pub allowlists: crate::validate::Allowlists,
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

/// The Job controller's Event for a pod it could not create.
const FAILED_CREATE: &str = "FailedCreate";
/// The cluster autoscaler's Event for a pod a new node is coming for.
const TRIGGERED_SCALE_UP: &str = "TriggeredScaleUp";

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

    // One scope per watched namespace, or one for the whole cluster.
    let scopes: Vec<Option<&str>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    for scope in &scopes {
        let resources: Api<MultiArchImage> = scoped(&client, *scope);
        tokio::select! {
            checked = check_crd(&resources) => checked?,
            () = stopped(stop_rx.clone()) => return Ok(()),
        }
    }
    health.ready.store(true, Ordering::Relaxed);

    let leader = args.leader_elect.then(|| {
        LeaderConfig::new(
            &args.leader_election_namespace,
            &args.lease_name,
            &args.identity.clone().unwrap_or_else(default_identity),
            Duration::from_secs(args.lease_duration_seconds.max(MIN_LEASE_DURATION_SECONDS)),
        )
    });
    let acquired = match &leader {
        Some(leader) => tokio::select! {
            acquired = leader::acquire(client.clone(), leader) => Some(acquired?),
            () = stopped(stop_rx.clone()) => return Ok(()),
        },
        None => None,
    };
    // A Controller, with its own caches, per scope: a watch covers one
    // namespace or all of them, and one cache cannot be fed by several.
    let images: crate::render::BuilderImages = args.images.clone().into();
    let controllers = scopes.iter().map(|scope| {
        let (controller, caches) = controller(&client, *scope, args.concurrency);
        let context = Arc::new(Context {
            client: client.clone(),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: "multiarch-operator".into(),
                    instance: leader.as_ref().map(|l| l.identity.clone()),
                },
            ),
            metrics: metrics.clone(),
            images: images.clone(),
            allowlists: args.allowlists.clone().with_operator_image(&images),
            caches,
            backoff: Default::default(),
            sightings: Default::default(),
        });
        controller
            .graceful_shutdown_on(stopped(stop_rx.clone()))
            .run(reconcile, error_policy, context)
            .for_each(|_| async {})
    });
    let controller = futures::future::join_all(controllers).map(|_| ());
    let outcome = match (&leader, acquired) {
        (Some(config), Some(acquired)) => tokio::select! {
            () = controller => Ok(()),
            lost = leader::hold(client.clone(), config, acquired) => Err(lost),
        },
        _ => {
            controller.await;
            Ok(())
        }
    };
    // Released on shutdown only: a lost lease is not ours to give up.
    if let (Some(config), Ok(())) = (&leader, &outcome) {
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
    let (jobs, job_changes) =
        cached_watch(scoped::<Job>(client, namespace), ours.clone(), trim::job);
    let (pods, pod_changes) = cached_watch(scoped::<Pod>(client, namespace), ours, trim::pod);
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
    // Events: only those the operator acts on, selected by the server.
    let event_watch = |selector: &str| {
        cached_watch(
            scoped::<Event>(client, namespace),
            watcher::Config::default().fields(selector),
            |event: &mut Event| event.metadata.managed_fields = None,
        )
    };
    let (failed_creates, failed_create_changes) =
        event_watch(&format!("involvedObject.kind=Job,reason={FAILED_CREATE}"));
    let (scale_ups, scale_up_changes) = event_watch(&format!(
        "involvedObject.kind=Pod,reason={TRIGGERED_SCALE_UP}"
    ));
    let (job_owners, pod_owners) = (jobs.clone(), pods.clone());
    let event_owner = move |event: Event| -> Option<ObjectRef<MultiArchImage>> {
        let about = &event.involved_object;
        let (name, namespace) = (about.name.clone()?, about.namespace.clone()?);
        let owner = match about.kind.as_deref()? {
            "Job" => job_owners
                .get(&ObjectRef::<Job>::new(&name).within(&namespace))?
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true) && o.kind == "MultiArchImage")?
                .name
                .clone(),
            _ => pod_owners
                .get(&ObjectRef::<Pod>::new(&name).within(&namespace))?
                .annotations()
                .get(RESOURCE_ANNOTATION)?
                .clone(),
        };
        Some(ObjectRef::new(&owner).within(&namespace))
    };
    let event_changes = futures::stream::select(failed_create_changes, scale_up_changes);
    let (resources, writer) = reflector::store();
    let resource_changes = watcher(
        scoped::<MultiArchImage>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(trim::resource)
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream(resource_changes, resources)
        // No debounce: reconciles are idempotent, and each step of a build waits
        // on the one before, so any delay here adds to the time to index.
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .owns_stream(job_changes)
        .watches_stream(pod_changes, |pod| {
            let name = pod.annotations().get(RESOURCE_ANNOTATION).cloned();
            let namespace = pod.namespace();
            name.zip(namespace)
                .map(|(name, ns)| ObjectRef::<MultiArchImage>::new(&name).within(&ns))
        })
        .watches_stream(event_changes, event_owner);
    let events = vec![failed_creates, scale_ups];
    (
        controller,
        Caches {
            jobs,
            pods,
            ready,
            events,
        },
    )
}

/// A watch feeding a cache, run in its own task; its changes come out of
/// the returned stream. `trim` cuts each object to what the operator reads
/// before it is cached.
fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
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
        .modify(trim)
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
