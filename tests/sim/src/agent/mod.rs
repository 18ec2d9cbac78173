//! The node agent: kube-sim's kubelet on its own against any Kubernetes
//! API server (a real kube-apiserver with kube-controller-manager and
//! kube-scheduler, say). It registers a Node, keeps it Ready (status
//! heartbeats and the node Lease), watches the pods bound to it and runs
//! them through the same kubelet code as the simulator (host processes in
//! bubblewrap sandboxes), and serves their logs to the API server.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use kube_sim::agent::{Agent, AgentConfig};
//! use kube_sim::{NodeSpec, Taint};
//! let mut cfg = AgentConfig::new("/tmp/admin.kubeconfig".into(),
//!     NodeSpec::new("arm-1", "linux/arm64")
//!         .with_taint(Taint::new("kubernetes.io/arch", "arm64", "NoSchedule")),
//!     "/tmp/arm-1".into());
//! cfg.images.push(("busybox".into(), None));
//! let agent = Agent::start(cfg)?; // the Node is registered and Ready
//! drop(agent);                    // stops its pods' processes
//! # Ok(()) }
//! ```

mod logs;
mod node;
mod remote;

pub use node::{KUBELET_VERSION, LEASE_DURATION_SECONDS};

use crate::controllers::kubelet::{self, Host, KubeletConfig};
use crate::nodes::NodeSpec;
use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use remote::{Api, RemoteHost};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long `Agent::start` waits for the API server to take the Node and
/// show it Ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node agent runs with (a kubelet's flags).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Credentials and address of the API server.
    pub kubeconfig: PathBuf,
    /// The Node: name, platform, taints, extra labels.
    pub node: NodeSpec,
    /// Image repository → host directory searched first for the
    /// container's `command[0]` (None: PATH only); unmapped images fail to pull.
    pub images: Vec<(String, Option<PathBuf>)>,
    /// Image repository → its ENTRYPOINT, run when a container sets no `command`.
    pub image_entrypoints: Vec<(String, Vec<String>)>,
    /// Pod directories (volumes, logs) go under `<workdir>/pods`.
    pub workdir: PathBuf,
    /// Host directories each container gets a private, empty copy of.
    pub private_dirs: Vec<PathBuf>,
    /// First image pull back-off (doubling per failure up to 30x).
    pub image_pull_backoff: Duration,
}

impl AgentConfig {
    /// Defaults as `SimConfig`'s: no images, `/var/lib/containers` private,
    /// a 10 s pull back-off.
    pub fn new(kubeconfig: PathBuf, node: NodeSpec, workdir: PathBuf) -> Self {
        AgentConfig {
            kubeconfig,
            node,
            images: vec![],
            image_entrypoints: vec![],
            workdir,
            private_dirs: vec![PathBuf::from("/var/lib/containers")],
            image_pull_backoff: Duration::from_secs(10),
        }
    }
}

/// A running node agent; stops on drop (its pods' processes get SIGTERM,
/// then SIGKILL, and the agent writes nothing more: to the cluster the node
/// then stops heartbeating, as when a kubelet dies).
pub struct Agent {
    node: String,
    kubelet_port: u16,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    /// Start on its own thread and runtime; returns once the Node is
    /// registered and Ready and the agent watches its pods.
    pub fn start(config: AgentConfig) -> anyhow::Result<Agent> {
        std::fs::create_dir_all(&config.workdir)
            .with_context(|| format!("creating {}", config.workdir.display()))?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<u16>>();
        let node = config.node.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kube-sim-agent-{node}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .thread_name("kube-sim-agent-rt")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(run(config, ready_tx, stop_rx));
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        let started = ready_rx
            .recv_timeout(START_TIMEOUT + Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("node agent {node} did not start"))
            .and_then(|r| r);
        let kubelet_port = match started {
            Ok(p) => p,
            Err(e) => {
                stop.send_replace(true);
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(Agent {
            node,
            kubelet_port,
            stop,
            thread: Some(thread),
        })
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The port of its log server (the Node's `kubeletEndpoint`).
    pub fn kubelet_port(&self) -> u16 {
        self.kubelet_port
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `KUBERNETES_SERVICE_HOST`/`_PORT` for pods: the API server's address
/// from the kubeconfig (nothing routes the Service's ClusterIP here).
fn server_address(url: &http::Uri) -> (String, u16) {
    let host = url
        .host()
        .unwrap_or("127.0.0.1")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_u16().unwrap_or(match url.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    (host, port)
}

/// The cluster CA of the kubeconfig, PEM (empty when it has none).
fn ca_pem(config: &kube::Config) -> String {
    let mut out = String::new();
    for der in config.root_cert.iter().flatten() {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = crate::api::b64(der);
        for line in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

async fn run(
    config: AgentConfig,
    ready: std::sync::mpsc::Sender<anyhow::Result<u16>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let started = tokio::select! {
        r = start(&config, stop.clone()) => r,
        _ = stop.changed() => return,
    };
    let (host, port) = match started {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(port));
    tokio::spawn(node::keep_alive(
        host.api.clone(),
        config.node.clone(),
        port,
        stop.clone(),
    ));
    let dynhost: Arc<dyn Host> = host.clone();
    loop {
        let pods: Vec<Arc<Value>> = host
            .pods
            .state()
            .iter()
            .filter_map(|p| serde_json::to_value(&**p).ok().map(Arc::new))
            .collect();
        kubelet::reconcile(&dynhost, &pods);
        tokio::select! {
            _ = host.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => break,
        }
        // Coalesce bursts of watch events into one pass.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    host.stopping.store(true, Ordering::Relaxed);
    kubelet::shutdown(&host.state).await;
}

/// Connect, watch the node's pods, start the log server, register the
/// Node and wait until it is Ready.
async fn start(
    config: &AgentConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Arc<RemoteHost>, u16)> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&config.kubeconfig)
        .with_context(|| format!("reading {}", config.kubeconfig.display()))?;
    let kcfg = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let server = server_address(&kcfg.cluster_url);
    let ca = ca_pem(&kcfg);
    let client = kube::Client::try_from(kcfg)?;
    let api = Api {
        client: client.clone(),
    };
    let node = config.node.name.clone();

    // The pods bound to this node (the kubelet's pod config source,
    // pkg/kubelet/config/apiserver.go: a field selector on spec.nodeName).
    let (reader, writer) = reflector::store::<Pod>();
    let kc = KubeletConfig {
        images: config.images.clone(),
        image_entrypoints: config.image_entrypoints.clone(),
        private_dirs: config.private_dirs.clone(),
        image_pull_backoff: config.image_pull_backoff,
        workdir: config.workdir.clone(),
        pull_faults: vec![],
    };
    let host = RemoteHost::start(api.clone(), node.clone(), kc, reader.clone(), server, ca);
    let pods = kube::Api::<Pod>::all(client);
    let watch = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = reflector::reflector(writer, watcher(pods, watch)).default_backoff();
    let h = Arc::downgrade(&host);
    tokio::spawn(stream.for_each(move |ev| {
        let h = h.clone();
        async move {
            if let Err(e) = ev {
                tracing::debug!("pod watch: {e}");
            }
            if let Some(h) = h.upgrade() {
                h.wake.notify_one();
            }
        }
    }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let tls = crate::tls::generate()?;
    tokio::spawn(logs::serve(listener, tls.acceptor, host.clone(), stop));

    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    // The API server may still be starting (or its RBAC bootstrapping).
    loop {
        match node::register(&api, &config.node, port).await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%node, "registration failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context(format!("registering node {node}"))),
        }
    }
    if let Err((code, msg)) = node::renew_lease(&api, &node).await {
        tracing::warn!(%node, code, %msg, "first lease failed");
    }
    while !node::is_ready(&api, &node).await {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "node {node} never read Ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::timeout(
        deadline.saturating_duration_since(tokio::time::Instant::now()),
        reader.wait_until_ready(),
    )
    .await
    .context("the pod watch never synced")??;
    Ok((host, port))
}
