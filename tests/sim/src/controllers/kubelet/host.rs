//! The kubelet's seam: everything it needs from the cluster, so the same
//! pod code runs inside the simulator (`SimHost`: the in-process store) and
//! as a node agent against any API server (`crate::agent`: kube-rs calls).
//! A real kubelet has the same split: its pod workers talk to a status
//! manager, a secret/configmap manager, a token manager and an event
//! recorder (pkg/kubelet/kubelet.go, NewMainKubelet), never to the API
//! directly.

use super::status::StatusUpdate;
use super::KubeletState;
use crate::api::DeleteOpts;
use crate::faults::PullFailure;
use crate::Shared;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The kinds the kubelet reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Node,
    Secret,
    ConfigMap,
    ServiceAccount,
}

impl Kind {
    /// The core/v1 resource name (also the in-process store's path).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::ServiceAccount => "serviceaccounts",
        }
    }
}

/// What a kubelet is configured with (its flags and the machine it runs on).
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Image repository → host directory searched first for `command[0]`
    /// (None: PATH only). Unmapped images fail to pull.
    pub images: Vec<(String, Option<PathBuf>)>,
    /// Image repository → its ENTRYPOINT.
    pub image_entrypoints: Vec<(String, Vec<String>)>,
    /// Host directories each container gets a private, empty copy of.
    pub private_dirs: Vec<PathBuf>,
    /// First image pull back-off.
    pub image_pull_backoff: Duration,
    /// Pod directories (volumes, logs) live under `<workdir>/pods`.
    pub workdir: PathBuf,
    /// Pulls that fail first (see `Host::pull_faults`).
    pub pull_faults: Vec<PullFailure>,
}

/// The cluster as the kubelet sees it. Calls are synchronous: they run
/// inside the kubelet's tokio tasks, and an implementation that needs the
/// network blocks in place (`tokio::task::block_in_place`) or queues the
/// work (status writes and events, as the real status manager and event
/// broadcaster do).
pub trait Host: Send + Sync + 'static {
    fn config(&self) -> &KubeletConfig;
    /// The kubelet's own bookkeeping (processes, logs, pulled images).
    fn state(&self) -> &KubeletState;
    /// Injected pull failures in force now.
    fn pull_faults(&self) -> Vec<PullFailure> {
        self.config().pull_faults.clone()
    }
    /// An object (`ns` empty for nodes); None when missing or unreadable.
    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Arc<Value>>;
    /// Write the kubelet's part of a pod's status (pkg/kubelet/status,
    /// status_manager.go syncPod): other writers' conditions survive.
    fn write_pod_status(&self, ns: &str, name: &str, uid: &str, update: &StatusUpdate);
    /// Delete a pod whose containers all stopped: grace 0 with a UID
    /// precondition (status_manager.go syncPod, canBeDeleted).
    fn delete_pod(&self, ns: &str, name: &str, uid: &str);
    /// Record a core/v1 Event about `involved` from the kubelet.
    fn event(&self, involved: &Value, ty: &str, reason: &str, message: &str);
    /// A token for the pod's ServiceAccount `sa` (TokenRequest bound to the
    /// pod, pkg/kubelet/token/token_manager.go).
    fn service_account_token(
        &self,
        pod: &Value,
        sa: &str,
        audience: Option<&str>,
        expiration_seconds: Option<i64>,
    ) -> Result<String, String>;
    /// The cluster CA (PEM) for the implicit ServiceAccount mount.
    fn ca_pem(&self) -> String;
    /// Where pods reach the API server: `KUBERNETES_SERVICE_HOST`/`_PORT`.
    fn api_server(&self) -> (String, u16);
    /// Whether the kubelet itself mounts the ServiceAccount credentials
    /// (the simulator's API server adds no `kube-api-access-*` volume; a
    /// real one does, and then the projected volume carries them).
    fn mounts_service_account(&self) -> bool;
    /// Run the kubelet's reconcile pass soon (a pod's containers stopped).
    fn wake(&self);
}

/// The simulator's kubelet: reads and writes the in-process store.
pub struct SimHost {
    shared: Arc<Shared>,
    config: KubeletConfig,
}

impl SimHost {
    pub fn new(shared: Arc<Shared>) -> Self {
        let c = &shared.config;
        let config = KubeletConfig {
            images: c.images.clone(),
            image_entrypoints: c.image_entrypoints.clone(),
            private_dirs: c.private_dirs.clone(),
            image_pull_backoff: c.image_pull_backoff,
            workdir: shared.workdir.clone(),
            pull_faults: vec![],
        };
        SimHost { shared, config }
    }
}

impl Host for SimHost {
    fn config(&self) -> &KubeletConfig {
        &self.config
    }

    fn state(&self) -> &KubeletState {
        &self.shared.kubelet
    }

    fn pull_faults(&self) -> Vec<PullFailure> {
        // Faults change at run time (`Sim::set_faults`).
        super::lock(&self.shared.faults).image_pull_failures.clone()
    }

    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.shared
            .cluster
            .lock()
            .get(&format!("/{}", kind.plural()), ns, name)
    }

    fn write_pod_status(&self, ns: &str, name: &str, _uid: &str, update: &StatusUpdate) {
        let c = &self.shared.cluster;
        let pdef = c.def("", "pods");
        let _ = c.mutate(&pdef, ns, name, "status", "kubelet", |p| update.apply(p));
    }

    fn delete_pod(&self, ns: &str, name: &str, uid: &str) {
        let c = &self.shared.cluster;
        let pdef = c.def("", "pods");
        let _ = c.delete(
            &pdef,
            ns,
            name,
            &DeleteOpts {
                grace_seconds: Some(0),
                precondition_uid: Some(uid.to_string()),
                ..Default::default()
            },
        );
    }

    fn event(&self, involved: &Value, ty: &str, reason: &str, message: &str) {
        self.shared
            .cluster
            .record_event(involved, ty, reason, message, "kubelet");
    }

    fn service_account_token(
        &self,
        pod: &Value,
        sa: &str,
        _audience: Option<&str>,
        expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        let ns = crate::util::ns_of(pod);
        let account = self
            .get(Kind::ServiceAccount, ns, sa)
            .ok_or_else(|| format!("serviceaccounts \"{sa}\" not found"))?;
        let ttl = expiration_seconds.map(|s| Duration::from_secs(s.max(0) as u64));
        Ok(self.shared.tokens.add_service_account(&account, ttl))
    }

    fn ca_pem(&self) -> String {
        self.shared.tls.ca_pem.clone()
    }

    fn api_server(&self) -> (String, u16) {
        // Nothing routes the `kubernetes` Service's ClusterIP here: pods
        // reach the API server at its own address.
        ("127.0.0.1".into(), self.shared.port())
    }

    fn mounts_service_account(&self) -> bool {
        true
    }

    fn wake(&self) {
        self.shared.cluster.changed.send_modify(|_| {});
    }
}
