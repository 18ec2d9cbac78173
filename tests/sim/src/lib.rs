//! kube-sim: a simulated Kubernetes cluster for tests. It serves the real
//! Kubernetes API over HTTP on loopback (so the real `kubectl` and kube-rs
//! clients work unchanged), and runs a scheduler, a Job controller, garbage
//! collection and a local kubelet that executes pod containers as host
//! processes inside bubblewrap sandboxes. See README.md for what it
//! simplifies.

pub mod admin;
pub mod admission;
pub mod agent;
pub mod api;
pub mod apply;
pub mod auth;
pub mod builtin;
pub mod cel;
pub mod cel_cost;
pub mod controllers;
pub mod discovery;
pub mod disruption;
pub mod error;
pub mod faults;
pub mod http;
pub mod k8scel;
pub mod k8scel_lib;
pub mod nodes;
pub mod openapi;
pub mod patch;
pub mod podlogs;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod sandbox;
pub mod schema;
pub mod selectors;
pub mod store;
pub mod table;
pub mod tls;
pub mod upstream;
pub mod util;
pub mod validation;
pub mod watch;

pub use auth::UserInfo;
pub use disruption::Disruption;
pub use faults::{Faults, PullFailure, RequestRecord};
pub use nodes::{NodeGroup, NodeSpec, Taint};

use anyhow::Context;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// kube-controller-manager's default `--terminated-pod-gc-threshold`.
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: usize = 12_500;

/// Configuration of a simulated cluster.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Nodes; empty means the default `sim-amd64` (linux/amd64) and `sim-arm64` (linux/arm64).
    pub nodes: Vec<NodeSpec>,
    /// Extra taints added to nodes by name: (node, taint).
    pub taints: Vec<(String, Taint)>,
    /// Image repository (tag/digest ignored) → host directory searched first
    /// for the container's `command[0]` (None: PATH only). Unmapped images
    /// fail to pull.
    pub images: Vec<(String, Option<PathBuf>)>,
    /// Image repository → its ENTRYPOINT (the image config's), run when a
    /// container sets no `command`, with the container's `args`.
    pub image_entrypoints: Vec<(String, Vec<String>)>,
    pub faults: Faults,
    /// Watch events retained; a watch from an older resourceVersion gets 410 Gone.
    pub history_window: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// First retry delay of a failed Job pod (the real controller uses 10s,
    /// doubling up to 6 minutes); doubles per failure, capped at 10x.
    pub job_backoff: Duration,
    /// Where to write the kubeconfig; None: inside the work directory.
    pub kubeconfig_path: Option<PathBuf>,
    /// Work directory for pod files and logs; None: a fresh temp dir removed on drop.
    pub workdir: Option<PathBuf>,
    /// Seed for names, uids and fault injection.
    pub seed: u64,
    /// Extra host directories each container gets a private, empty copy of
    /// (only when they exist on the host), e.g. container storage.
    pub private_dirs: Vec<PathBuf>,
    /// Users with static tokens, each a context (named after the user) in
    /// the kubeconfig besides the admin one: (name, groups).
    pub users: Vec<(String, Vec<String>)>,
    /// The OwnerReferencesPermissionEnforcement admission plugin (off by
    /// default, as upstream; on in OpenShift).
    pub owner_references_permission_enforcement: bool,
    /// First image pull back-off (the kubelet's is 10 s, doubling to 300 s).
    pub image_pull_backoff: Duration,
    /// kube-controller-manager's `--terminated-pod-gc-threshold`: PodGC
    /// deletes the oldest terminated pods above this many (0: never).
    pub terminated_pod_gc_threshold: usize,
    /// Autoscaled node groups (cluster-autoscaler).
    pub node_groups: Vec<NodeGroup>,
    /// The cluster's clock minus the host's, in seconds: every time the API
    /// server and its controllers write is shifted by it (negative: an
    /// operator on the host runs ahead of the cluster).
    pub clock_offset_seconds: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: vec![],
            taints: vec![],
            images: vec![],
            faults: Faults::default(),
            history_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            job_backoff: Duration::from_secs(1),
            kubeconfig_path: None,
            workdir: None,
            seed: 42,
            private_dirs: vec![PathBuf::from("/var/lib/containers")],
            users: vec![],
            owner_references_permission_enforcement: false,
            image_pull_backoff: Duration::from_secs(10),
            image_entrypoints: vec![],
            terminated_pod_gc_threshold: DEFAULT_TERMINATED_POD_GC_THRESHOLD,
            node_groups: vec![],
            clock_offset_seconds: 0,
        }
    }
}

/// State shared by the HTTP server, the controllers and the `Sim` handle.
pub struct Shared {
    pub cluster: Arc<api::Cluster>,
    pub faults: Mutex<Faults>,
    pub fault_rng: util::Rng,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub config: SimConfig,
    pub workdir: PathBuf,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub bookmark_interval: Duration,
    pub port: std::sync::atomic::AtomicU16,
    pub kubelet: controllers::kubelet::KubeletState,
    pub tokens: auth::Tokens,
    pub tls: tls::ServerTls,
    /// The cluster clock's offset from the host's, milliseconds (see `util::now`).
    pub clock_offset: Arc<std::sync::atomic::AtomicI64>,
    pub autoscaler: controllers::autoscaler::AutoscalerState,
}

impl Shared {
    pub fn port(&self) -> u16 {
        self.port.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A running simulated cluster; stops (and kills its pods' processes) on drop.
pub struct Sim {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    kubeconfig: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Sim {
    /// Start a cluster on its own thread and runtime (so a test's runtime
    /// cannot starve it); returns once the API answers and the kubeconfig is written.
    pub fn start(config: SimConfig) -> anyhow::Result<Sim> {
        let (tmp, workdir) = match &config.workdir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("kube-sim-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let kubeconfig = config
            .kubeconfig_path
            .clone()
            .unwrap_or_else(|| workdir.join("kubeconfig"));
        let cluster = api::Cluster::new(config.history_window, config.seed);
        cluster
            .admission
            .owner_references_permission_enforcement
            .store(
                config.owner_references_permission_enforcement,
                std::sync::atomic::Ordering::Relaxed,
            );
        rbac::bootstrap::install(&cluster);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            cluster,
            faults: Mutex::new(config.faults.clone()),
            fault_rng: util::Rng::new(config.faults.seed ^ config.seed),
            requests: Mutex::new(vec![]),
            workdir: workdir.clone(),
            shutdown,
            bookmark_interval: config.bookmark_interval,
            port: Default::default(),
            kubelet: Default::default(),
            tokens: auth::Tokens::new(config.seed),
            tls: tls::generate()?,
            clock_offset: Arc::new(std::sync::atomic::AtomicI64::new(
                config.clock_offset_seconds * 1000,
            )),
            autoscaler: Default::default(),
            config,
        });
        let mut nodes = shared.config.nodes.clone();
        if nodes.is_empty() {
            nodes = vec![
                NodeSpec::new("sim-amd64", "linux/amd64"),
                NodeSpec::new("sim-arm64", "linux/arm64"),
            ];
        }
        for (node, t) in &shared.config.taints {
            if let Some(n) = nodes.iter_mut().find(|n| &n.name == node) {
                n.taints.push(t.clone());
            }
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<u16>>();
        let sh = shared.clone();
        let clock = shared.clock_offset.clone();
        let thread = std::thread::Builder::new()
            .name("kube-sim".into())
            .spawn(move || {
                util::bind_clock(clock.clone());
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .on_thread_start(move || util::bind_clock(clock.clone()))
                    .enable_all()
                    .thread_name("kube-sim-rt")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                    sh.port.store(port, std::sync::atomic::Ordering::Relaxed);
                    sh.cluster.publish_apiserver_endpoints(port);
                    let mut stop = sh.shutdown.subscribe();
                    tokio::spawn(http::serve(listener, sh.clone()));
                    controllers::spawn_all(sh.clone());
                    let _ = ready_tx.send(Ok(port));
                    let _ = stop.changed().await;
                    controllers::kubelet::shutdown(&sh.kubelet).await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        ready_rx.recv().context("kube-sim thread died")??;
        let sim = Sim {
            shared,
            thread: Some(thread),
            kubeconfig,
            _tmp: tmp,
        };
        let _clock = sim.clock();
        for n in &nodes {
            nodes::add_node(&sim.shared, n);
        }
        let mut contexts = vec![(
            "kube-sim".to_string(),
            sim.shared.tokens.admin_token().to_string(),
        )];
        for (name, groups) in &sim.shared.config.users {
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            contexts.push((name.clone(), sim.token_for(&UserInfo::new(name, &groups))));
        }
        auth::write_kubeconfig(
            &sim.kubeconfig,
            &sim.url(),
            &sim.shared.tls.ca_pem,
            &contexts,
        )?;
        Ok(sim)
    }

    /// Base URL of the API server, e.g. `https://127.0.0.1:41234` (plain
    /// `http://` on the same port answers too).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.shared.port())
    }

    /// The bearer token of the default kubeconfig's `system:masters` admin.
    pub fn admin_token(&self) -> &str {
        self.shared.tokens.admin_token()
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.shared.tls.ca_pem
    }

    /// A fresh kube-rs client for this cluster, as the `system:masters`
    /// admin (call from within any tokio runtime).
    pub fn client(&self) -> kube::Client {
        self.client_with_token(self.shared.tokens.admin_token())
    }

    /// A client authenticating with a bearer token. In-process clients use
    /// the plain-HTTP side of the API port (kube-rs sends the token either
    /// way, and does not set TCP_NODELAY, which over TLS delays each
    /// request); kubeconfigs point at HTTPS.
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let url = format!("http://127.0.0.1:{}", self.shared.port());
        let mut cfg = kube::Config::new(url.parse().expect("url"));
        cfg.default_namespace = "default".into();
        cfg.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(cfg).expect("kube client")
    }

    /// A client for a user (a static token is minted; `system:authenticated`
    /// is added to the groups).
    pub fn client_for(&self, user: &UserInfo) -> kube::Client {
        self.client_with_token(&self.token_for(user))
    }

    /// A client for a ServiceAccount, which must exist.
    pub fn client_for_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        Ok(self.client_with_token(&self.service_account_token(namespace, name)?))
    }

    /// A static bearer token for a user.
    pub fn token_for(&self, user: &UserInfo) -> String {
        self.shared.tokens.add_user(user.clone())
    }

    /// A token for an existing ServiceAccount, valid while it exists.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let c = &self.shared.cluster;
        let sa = c
            .get(&c.def("", "serviceaccounts"), namespace, name)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(self.shared.tokens.add_service_account(&sa, None))
    }

    /// Writes a kubeconfig (for kubectl or a child process) that
    /// authenticates with `token`; its one context is named `context`.
    pub fn write_kubeconfig_with_token(
        &self,
        path: &Path,
        context: &str,
        token: &str,
    ) -> anyhow::Result<()> {
        auth::write_kubeconfig(
            path,
            &self.url(),
            &self.shared.tls.ca_pem,
            &[(context.into(), token.into())],
        )?;
        Ok(())
    }

    /// The kubeconfig for `kubectl --kubeconfig` or a child process (KUBECONFIG).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The work directory (pod volumes, logs).
    pub fn workdir(&self) -> &Path {
        &self.shared.workdir
    }

    /// Add (or replace) a node; pending pods are reconsidered.
    pub fn add_node(&self, node: NodeSpec) {
        let _clock = self.clock();
        nodes::add_node(&self.shared, &node);
    }

    /// Remove a node; its running pods fail (PodGC) and Jobs retry elsewhere.
    pub fn remove_node(&self, name: &str) {
        let _clock = self.clock();
        disruption::remove_node(&self.shared, name);
    }

    /// Cordon a node and evict its pods through the Eviction API, as
    /// `kubectl drain` does. Returns the evicted pods' names.
    pub fn drain_node(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let _clock = self.clock();
        disruption::drain(&self.shared, name).map_err(|e| anyhow::anyhow!(e.message))
    }

    /// Take a node away as `how` does (Karpenter consolidation, a spot
    /// interruption, ...): its pods get `DisruptionTarget`, are terminated,
    /// and the node is removed once they are gone.
    pub fn reclaim_node(&self, name: &str, how: Disruption) -> anyhow::Result<()> {
        let _clock = self.clock();
        disruption::reclaim(&self.shared, name, how).map_err(|e| anyhow::anyhow!(e.message))
    }

    /// Shift the cluster's clock (see `SimConfig::clock_offset_seconds`).
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared
            .clock_offset
            .store(seconds * 1000, std::sync::atomic::Ordering::Relaxed);
    }

    /// Calls from the test's thread write times on the cluster's clock too.
    fn clock(&self) -> ClockGuard {
        util::bind_clock(self.shared.clock_offset.clone());
        ClockGuard
    }

    /// Replace a node's taints.
    pub fn set_taints(&self, node: &str, taints: Vec<Taint>) -> anyhow::Result<()> {
        let _clock = self.clock();
        let c = &self.shared.cluster;
        c.mutate(&c.def("", "nodes"), "", node, "", "kube-sim", |n| {
            n["spec"]["taints"] = json!(taints.iter().map(Taint::to_json).collect::<Vec<_>>());
        })
        .map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(())
    }

    /// Switch fault injection at runtime (reseeds the RNG with `faults.seed`).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.fault_rng.reseed(faults.seed);
        self.shared.kubelet.reset_pull_faults();
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Every API request served so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Every stored version of an object (including its deletion), oldest first.
    /// `api_version` like `batch/v1`; `namespace` empty for cluster-scoped kinds.
    pub fn history(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Vec<Value> {
        let c = &self.shared.cluster;
        let Some(def) = c.registry().by_kind(api_version, kind) else {
            return vec![];
        };
        c.history(&def.gr(), namespace, name)
            .iter()
            .map(|o| api::present(&def, o))
            .collect()
    }

    /// Creates every object of a multi-document YAML manifest whose kind is
    /// served (as the admin; objects that exist already are left alone) and
    /// returns the `Kind/name` of those it created. Namespaced objects
    /// without a namespace go to `default`.
    pub fn apply_manifest(&self, yaml: &str) -> anyhow::Result<Vec<String>> {
        use serde::Deserialize;
        let c = &self.shared.cluster;
        let mut created = vec![];
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let obj = Value::deserialize(doc)?;
            if !obj.is_object() {
                continue;
            }
            let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
            let kind = obj["kind"].as_str().unwrap_or("").to_string();
            let def = c
                .registry()
                .by_kind(&api_version, &kind)
                .with_context(|| format!("{api_version} {kind} is not served"))?;
            let ns = if def.namespaced {
                obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string()
            } else {
                String::new()
            };
            let name = util::name_of(&obj).to_string();
            match c.create(&def, &ns, obj, &api::WriteOpts::internal("kube-sim")) {
                Ok(_) => created.push(format!("{kind}/{name}")),
                Err(e) if e.code == 409 => {}
                Err(e) => anyhow::bail!("{kind}/{name}: {}", e.message),
            }
        }
        Ok(created)
    }

    /// The in-process API (for direct, HTTP-free inspection).
    pub fn cluster(&self) -> &Arc<api::Cluster> {
        &self.shared.cluster
    }
}

/// Restores the calling thread's clock binding when a `Sim` call ends.
struct ClockGuard;

impl Drop for ClockGuard {
    fn drop(&mut self) {
        util::unbind_clock();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Log locations the kubelet registers for `pods/log`.
pub type LogIndex = Mutex<HashMap<String, PathBuf>>;
