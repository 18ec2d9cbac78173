//! The kubelet's `Host` against a real API server, through kube-rs: reads
//! (pods from the agent's watch cache, the rest by GET, as the kubelet's
//! secret and configmap managers do with `--config-map-and-secret-change-
//! detection-strategy=Get`), pod status patches and deletions through a
//! status writer, Events through a recorder task, ServiceAccount tokens by
//! TokenRequest.

use crate::controllers::kubelet::{
    Host, Kind, KubeletConfig, KubeletState, StatusUpdate, KUBELET_CONDITIONS,
};
use crate::util::{name_of, ns_of, uid_of};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// An API call's failure: the HTTP code (0: no answer) and message.
pub(crate) type CallError = (u16, String);

/// A kube-rs client with the raw JSON calls the agent needs.
#[derive(Clone)]
pub(crate) struct Api {
    pub client: kube::Client,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", content_type)
            .body(body)
            .map_err(|e| (0, e.to_string()))?;
        self.client
            .request::<Value>(req)
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) => (s.code, s.message.clone()),
                other => (0, other.to_string()),
            })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CallError> {
        self.call("GET", path, "application/json", None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call("POST", path, "application/json", Some(body))
            .await
    }

    pub async fn merge_patch(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.call("PATCH", path, "application/merge-patch+json", Some(body))
            .await
    }
}

/// Where a core/v1 object lives.
pub(crate) fn core_path(plural: &str, ns: &str, name: &str) -> String {
    if ns.is_empty() {
        format!("/api/v1/{plural}/{name}")
    } else {
        format!("/api/v1/namespaces/{ns}/{plural}/{name}")
    }
}

/// Status writes and deletions waiting for the writer, by pod uid.
#[derive(Default)]
struct Pending {
    ns: String,
    name: String,
    update: Option<StatusUpdate>,
    delete: bool,
}

/// One Event for the recorder.
struct EventReq {
    involved: Value,
    ty: String,
    reason: String,
    message: String,
}

pub(crate) struct RemoteHost {
    pub api: Api,
    pub node: String,
    pub config: KubeletConfig,
    pub state: KubeletState,
    pub pods: Store<Pod>,
    pub server: (String, u16),
    pub ca_pem: String,
    /// Wakes the agent's reconcile loop.
    pub wake: Notify,
    pending: Mutex<HashMap<String, Pending>>,
    /// The pod as the server answered our last status patch, by uid: newer
    /// than the watch cache until the watch catches up.
    written: Mutex<HashMap<String, Value>>,
    /// Pods deleted lately (uid → when), so passes do not repeat the call.
    deleted: Mutex<HashMap<String, Instant>>,
    writer_wake: Notify,
    events: mpsc::UnboundedSender<EventReq>,
    /// Set when the agent stops: a stopped kubelet writes nothing more.
    pub stopping: AtomicBool,
}

impl RemoteHost {
    /// The host, with its status writer and event recorder running on the
    /// current runtime.
    pub fn start(
        api: Api,
        node: String,
        config: KubeletConfig,
        pods: Store<Pod>,
        server: (String, u16),
        ca_pem: String,
    ) -> Arc<RemoteHost> {
        let (events, rx) = mpsc::unbounded_channel();
        let host = Arc::new(RemoteHost {
            api,
            node,
            config,
            state: KubeletState::default(),
            pods,
            server,
            ca_pem,
            wake: Notify::new(),
            pending: Mutex::default(),
            written: Mutex::default(),
            deleted: Mutex::default(),
            writer_wake: Notify::new(),
            events,
            stopping: AtomicBool::new(false),
        });
        tokio::spawn(record_events(host.clone(), rx));
        tokio::spawn(write_statuses(host.clone()));
        host
    }

    /// Run a request from the kubelet's synchronous code.
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| rt.block_on(f))
    }

    pub fn cached_pod(&self, ns: &str, name: &str) -> Option<Value> {
        let pod = self.pods.get(&ObjectRef::new(name).within(ns))?;
        serde_json::to_value(&*pod).ok()
    }

    /// The newest pod object known: the watch cache's or our last write's.
    fn base_pod(&self, uid: &str, ns: &str, name: &str) -> Option<Value> {
        let rv = |p: &Value| {
            p["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let cached = self.cached_pod(ns, name).filter(|p| uid_of(p) == uid);
        let written = lock(&self.written).get(uid).cloned();
        match (cached, written) {
            (Some(c), Some(w)) => Some(if rv(&w) > rv(&c) { w } else { c }),
            (c, w) => c.or(w),
        }
    }

    /// Patch the kubelet's part of the status (pkg/util/pod/pod.go
    /// PatchPodStatus: a strategic merge patch with the uid as a
    /// precondition; `conditions` merge by type, so other writers'
    /// conditions survive). Err(true): try again later.
    async fn patch_status(&self, uid: &str, p: &Pending, u: &StatusUpdate) -> Result<(), bool> {
        let base = match self.base_pod(uid, &p.ns, &p.name) {
            Some(b) => b,
            None => match self.api.get(&core_path("pods", &p.ns, &p.name)).await {
                Ok(b) if uid_of(&b) == uid => b,
                Ok(_) | Err((404, _)) => return Err(false),
                Err(_) => return Err(true),
            },
        };
        // The API server refuses to change a terminal phase.
        let old_phase = base["status"]["phase"].as_str().unwrap_or("");
        if matches!(old_phase, "Succeeded" | "Failed") && old_phase != u.phase {
            return Err(false);
        }
        let mut new = base.clone();
        u.apply(&mut new);
        if new["status"] == base["status"] {
            return Ok(());
        }
        let patch = status_patch(uid, &new["status"]);
        let path = format!("{}/status", core_path("pods", &p.ns, &p.name));
        match self
            .api
            .call(
                "PATCH",
                &path,
                "application/strategic-merge-patch+json",
                Some(&patch),
            )
            .await
        {
            Ok(written) => {
                lock(&self.written).insert(uid.to_string(), written);
                Ok(())
            }
            Err((404 | 409, _)) => Err(false),
            Err((code, msg)) if (400..500).contains(&code) && code != 429 => {
                tracing::warn!(pod = %p.name, code, %msg, "pod status refused");
                Err(false)
            }
            Err((code, msg)) => {
                tracing::debug!(pod = %p.name, code, %msg, "pod status write failed");
                Err(true)
            }
        }
    }

    /// Delete with grace 0 and the uid as a precondition
    /// (pkg/kubelet/status/status_manager.go, syncPod). Err(true): retry.
    async fn delete(&self, uid: &str, p: &Pending) -> Result<(), bool> {
        let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": uid}});
        match self
            .api
            .call(
                "DELETE",
                &core_path("pods", &p.ns, &p.name),
                "application/json",
                Some(&body),
            )
            .await
        {
            Ok(_) | Err((404 | 409, _)) => {
                lock(&self.written).remove(uid);
                Ok(())
            }
            Err((code, msg)) => {
                tracing::debug!(pod = %p.name, code, %msg, "pod delete failed");
                Err(code == 0 || code >= 500 || code == 429)
            }
        }
    }

    /// Drop the last writes of pods the watch no longer shows.
    fn forget_gone_pods(&self) {
        let mut written = lock(&self.written);
        if written.len() > 256 {
            let live: std::collections::HashSet<String> = self
                .pods
                .state()
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            written.retain(|uid, _| live.contains(uid));
        }
    }

    fn queue(&self, ns: &str, name: &str, uid: &str, f: impl FnOnce(&mut Pending)) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let mut pending = lock(&self.pending);
        let p = pending.entry(uid.to_string()).or_default();
        p.ns = ns.to_string();
        p.name = name.to_string();
        f(p);
        drop(pending);
        self.writer_wake.notify_one();
    }
}

/// The patch body: the kubelet's fields, and its own conditions with the
/// keys it leaves unset deleted (a merge would keep an old `reason`).
fn status_patch(uid: &str, status: &Value) -> Value {
    let mut st = serde_json::Map::new();
    for k in [
        "phase",
        "hostIP",
        "hostIPs",
        "podIP",
        "podIPs",
        "startTime",
        "initContainerStatuses",
        "containerStatuses",
    ] {
        if let Some(v) = status.get(k) {
            st.insert(k.into(), v.clone());
        }
    }
    let conds: Vec<Value> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| KUBELET_CONDITIONS.contains(&c["type"].as_str().unwrap_or("")))
        .map(|c| {
            let mut c = c.clone();
            for k in ["reason", "message"] {
                if c.get(k).is_none() {
                    c[k] = Value::Null;
                }
            }
            c
        })
        .collect();
    st.insert("conditions".into(), json!(conds));
    json!({"metadata": {"uid": uid}, "status": st})
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The status writer: the latest status of each pod, then its deletion,
/// retried until the API server takes them (the kubelet's status manager,
/// pkg/kubelet/status/status_manager.go).
async fn write_statuses(host: Arc<RemoteHost>) {
    loop {
        tokio::select! {
            _ = host.writer_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        host.forget_gone_pods();
        let batch: Vec<(String, Pending)> = lock(&host.pending).drain().collect();
        let results = futures::future::join_all(batch.into_iter().map(|(uid, p)| {
            let host = host.clone();
            async move {
                let mut retry = false;
                let mut rest = Pending {
                    ns: p.ns.clone(),
                    name: p.name.clone(),
                    ..Default::default()
                };
                if let Some(u) = &p.update {
                    if let Err(again) = host.patch_status(&uid, &p, u).await {
                        retry = again;
                        if again {
                            rest.update = p.update.clone();
                        }
                    }
                }
                if p.delete {
                    // A deletion waits for the last status to land.
                    if retry || host.delete(&uid, &p).await == Err(true) {
                        retry = true;
                        rest.delete = true;
                    }
                }
                (uid, retry.then_some(rest))
            }
        }))
        .await;
        let again = requeue(&host, results);
        if again {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Put failed writes back; true when there were any. A newer status queued
/// meanwhile wins; a deletion stays due.
fn requeue(host: &RemoteHost, results: Vec<(String, Option<Pending>)>) -> bool {
    let mut again = false;
    let mut pending = lock(&host.pending);
    for (uid, rest) in results {
        let Some(rest) = rest else { continue };
        again = true;
        let p = pending.entry(uid).or_insert(Pending {
            ns: rest.ns,
            name: rest.name,
            ..Default::default()
        });
        if p.update.is_none() {
            p.update = rest.update;
        }
        p.delete |= rest.delete;
    }
    again
}

type EventKey = (String, String, String, String);

/// The event recorder: core/v1 Events from `kubelet` on this node, repeats
/// counted on the first one (client-go tools/record, events_cache.go
/// EventCorrelator).
async fn record_events(host: Arc<RemoteHost>, mut rx: mpsc::UnboundedReceiver<EventReq>) {
    // (object uid, type, reason, message) → (namespace, event name, count)
    let mut seen: HashMap<EventKey, (String, String, i64)> = HashMap::new();
    while let Some(e) = rx.recv().await {
        let ns = match ns_of(&e.involved) {
            "" => "default",
            n => n,
        }
        .to_string();
        let now = crate::util::now_rfc3339();
        let key = (
            uid_of(&e.involved).to_string(),
            e.ty.clone(),
            e.reason.clone(),
            e.message.clone(),
        );
        if let Some((ens, ename, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": now});
            let path = core_path("events", ens, ename);
            if host.api.merge_patch(&path, &patch).await.is_ok() {
                continue;
            }
        }
        // client-go names events <object>.<unix nanos in hex>.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!("{}.{:x}", name_of(&e.involved), nanos);
        let md = &e.involved["metadata"];
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": e.involved["apiVersion"], "kind": e.involved["kind"],
                "name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                "resourceVersion": md["resourceVersion"],
            },
            "reason": e.reason, "message": e.message, "type": e.ty,
            "source": {"component": "kubelet", "host": host.node},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": "kubelet", "reportingInstance": host.node,
        });
        match host
            .api
            .post(&format!("/api/v1/namespaces/{ns}/events"), &ev)
            .await
        {
            Ok(_) => {
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (ns, name, 1));
            }
            Err((code, msg)) => tracing::debug!(code, %msg, "event not recorded"),
        }
    }
}

impl Host for RemoteHost {
    fn config(&self) -> &KubeletConfig {
        &self.config
    }

    fn state(&self) -> &KubeletState {
        &self.state
    }

    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Arc<Value>> {
        if kind == Kind::Pod {
            return self.cached_pod(ns, name).map(Arc::new);
        }
        let path = core_path(kind.plural(), ns, name);
        match self.block(self.api.get(&path)) {
            Ok(v) => Some(Arc::new(v)),
            Err((code, msg)) => {
                if code != 404 {
                    tracing::debug!(%path, code, %msg, "kubelet read failed");
                }
                None
            }
        }
    }

    fn write_pod_status(&self, ns: &str, name: &str, uid: &str, update: &StatusUpdate) {
        self.queue(ns, name, uid, |p| p.update = Some(update.clone()));
    }

    fn delete_pod(&self, ns: &str, name: &str, uid: &str) {
        let mut deleted = lock(&self.deleted);
        deleted.retain(|_, at| at.elapsed() < Duration::from_secs(10));
        if deleted.insert(uid.to_string(), Instant::now()).is_some() {
            return;
        }
        drop(deleted);
        self.queue(ns, name, uid, |p| p.delete = true);
    }

    fn event(&self, involved: &Value, ty: &str, reason: &str, message: &str) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let _ = self.events.send(EventReq {
            involved: involved.clone(),
            ty: ty.into(),
            reason: reason.into(),
            message: message.into(),
        });
    }

    fn service_account_token(
        &self,
        pod: &Value,
        sa: &str,
        audience: Option<&str>,
        expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        // The TokenRequest the kubelet's token manager sends for a
        // projected serviceAccountToken source, bound to the pod
        // (pkg/volume/projected/projected.go, collectData).
        let mut spec = json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
            "name": name_of(pod), "uid": uid_of(pod)}});
        if let Some(a) = audience {
            spec["audiences"] = json!([a]);
        }
        if let Some(e) = expiration_seconds {
            spec["expirationSeconds"] = json!(e);
        }
        let body =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let path = format!("{}/token", core_path("serviceaccounts", ns_of(pod), sa));
        match self.block(self.api.post(&path, &body)) {
            Ok(tr) => tr["status"]["token"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| "TokenRequest answered no token".to_string()),
            Err((_, msg)) => Err(msg),
        }
    }

    fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    fn api_server(&self) -> (String, u16) {
        self.server.clone()
    }

    fn mounts_service_account(&self) -> bool {
        // The ServiceAccount admission plugin adds the projected volume.
        false
    }

    fn wake(&self) {
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patch_carries_the_kubelets_fields_and_conditions_only() {
        let update = StatusUpdate {
            phase: "Running".into(),
            host_ip: "127.0.0.1".into(),
            pod_ip: "127.0.0.1".into(),
            start: "2025-01-01T00:00:00Z".into(),
            init: vec![],
            main: vec![json!({"name": "main", "ready": true, "state": {"running": {}}})],
            initialized: true,
            all_ready: true,
        };
        let mut pod = json!({"status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        ]}});
        update.apply(&mut pod);
        let patch = status_patch("u-1", &pod["status"]);
        assert_eq!(patch["metadata"]["uid"], "u-1");
        let st = &patch["status"];
        assert_eq!(st["phase"], "Running");
        assert!(st.get("qosClass").is_none());
        assert!(st.get("initContainerStatuses").is_none());
        let conds = st["conditions"].as_array().unwrap();
        // Others' conditions are left to the merge; the old reason deleted.
        assert!(conds.iter().all(|c| c["type"] != "PodScheduled"));
        let ready = conds.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert!(ready["reason"].is_null() && ready.get("reason").is_some());
        assert_eq!(conds.len(), KUBELET_CONDITIONS.len());
    }

    #[test]
    fn api_paths() {
        assert_eq!(core_path("nodes", "", "n1"), "/api/v1/nodes/n1");
        assert_eq!(core_path("pods", "ci", "p"), "/api/v1/namespaces/ci/pods/p");
    }
}
