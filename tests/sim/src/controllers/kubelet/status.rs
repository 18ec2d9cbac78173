//! A pod's state as the kubelet reports it: container statuses, the phase
//! (pkg/kubelet/kubelet_pods.go, getPhase) and the pod conditions, written
//! to `pods/status`, and the pod's events.

use super::host::Host;
use super::lock;
use crate::util::set_condition;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub(crate) struct PodCtx {
    pub(super) host: Arc<dyn Host>,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) dir: PathBuf,
    pub(super) pod: Value,
    pub(super) status: Mutex<PodStatus>,
    /// Held from snapshot to write, so writes leave in the order the
    /// snapshots were taken (parallel containers publish concurrently).
    pub(super) publishing: Mutex<()>,
    /// Projected ServiceAccount tokens, by volume and path (see volumes.rs).
    pub(super) tokens: Mutex<super::volumes::TokenCache>,
}

#[derive(Default)]
pub(super) struct PodStatus {
    pub(super) init: Vec<Value>,
    pub(super) main: Vec<Value>,
    pub(super) phase: String,
    pub(super) initialized: bool,
    pub(super) host_ip: String,
    pub(super) pod_ip: String,
    pub(super) start: String,
}

/// The kubelet's part of a pod's status at one moment: what a `Host`
/// writes to `pods/{name}/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub phase: String,
    pub host_ip: String,
    pub pod_ip: String,
    pub start: String,
    pub init: Vec<Value>,
    pub main: Vec<Value>,
    pub initialized: bool,
    pub all_ready: bool,
}

/// The pod conditions the kubelet owns (pkg/kubelet/status/generate.go);
/// others (PodScheduled, DisruptionTarget) belong to other writers.
pub const KUBELET_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

impl StatusUpdate {
    pub fn terminal(&self) -> bool {
        self.phase == "Succeeded" || self.phase == "Failed"
    }

    /// Write this status into a pod object: the kubelet's fields replaced,
    /// its conditions set (transition times kept while unchanged), other
    /// conditions left alone.
    pub fn apply(&self, p: &mut Value) {
        let terminal = self.terminal();
        let (initialized, all_ready) = (self.initialized, self.all_ready);
        let st = crate::util::ensure_obj(p, &["status"]);
        st.insert("phase".into(), json!(self.phase));
        st.insert("hostIP".into(), json!(self.host_ip));
        st.insert("hostIPs".into(), json!([{"ip": self.host_ip}]));
        st.insert("podIP".into(), json!(self.pod_ip));
        st.insert("podIPs".into(), json!([{"ip": self.pod_ip}]));
        st.insert("startTime".into(), json!(self.start));
        if !self.init.is_empty() {
            st.insert("initContainerStatuses".into(), json!(self.init));
        }
        st.insert("containerStatuses".into(), json!(self.main));
        let mut conds: Vec<Value> = st
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let cond = |t: &str, ok: bool, reason: Option<&str>| {
            let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            c
        };
        let done_reason = if terminal {
            Some("PodCompleted")
        } else if !initialized {
            Some("ContainersNotInitialized")
        } else {
            Some("ContainersNotReady")
        };
        let ready = all_ready && !terminal;
        let init_reason = if initialized {
            (terminal && !self.init.is_empty()).then_some("PodCompleted")
        } else {
            Some("ContainersNotInitialized")
        };
        set_condition(
            &mut conds,
            cond("PodReadyToStartContainers", !terminal, None),
        );
        set_condition(&mut conds, cond("Initialized", initialized, init_reason));
        let ready_reason = if ready { None } else { done_reason };
        set_condition(&mut conds, cond("Ready", ready, ready_reason));
        set_condition(&mut conds, cond("ContainersReady", ready, ready_reason));
        st.insert("conditions".into(), json!(conds));
    }
}

pub(crate) fn waiting(
    name: &str,
    image: &str,
    reason: &str,
    message: Option<&str>,
    restarts: u32,
) -> Value {
    let mut w = json!({"reason": reason});
    if let Some(m) = message {
        w["message"] = json!(m);
    }
    json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": restarts, "started": false, "state": {"waiting": w}})
}

impl PodCtx {
    pub(super) fn publish(&self) {
        let _order = lock(&self.publishing);
        let s = lock(&self.status);
        let all_ready = !s.main.is_empty() && s.main.iter().all(|c| c["ready"] == true);
        let terminal = s.phase == "Succeeded" || s.phase == "Failed";
        // Follows pkg/kubelet/kubelet_pods.go (getPhase): Pending while
        // initialising or while any container still waits to start.
        let phase = if terminal {
            s.phase.clone()
        } else if !s.initialized || s.main.iter().any(|c| c["state"].get("waiting").is_some()) {
            "Pending".to_string()
        } else {
            "Running".to_string()
        };
        let update = StatusUpdate {
            phase,
            host_ip: s.host_ip.clone(),
            pod_ip: s.pod_ip.clone(),
            start: s.start.clone(),
            init: s.init.clone(),
            main: s.main.clone(),
            initialized: s.initialized,
            all_ready,
        };
        drop(s);
        self.host
            .write_pod_status(&self.ns, &self.name, &self.uid, &update);
    }

    pub(super) fn event(&self, ty: &str, reason: &str, msg: &str) {
        let mut involved = self.pod.clone();
        involved["apiVersion"] = json!("v1");
        involved["kind"] = json!("Pod");
        self.host.event(&involved, ty, reason, msg);
    }

    pub(super) fn set_status(&self, init: bool, idx: usize, v: Value) {
        let mut s = lock(&self.status);
        let list = if init { &mut s.init } else { &mut s.main };
        if idx < list.len() {
            list[idx] = v;
        }
    }
}
