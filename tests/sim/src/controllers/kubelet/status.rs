//! A pod's state as the kubelet reports it: container statuses, the phase
//! (pkg/kubelet/kubelet_pods.go, getPhase) and the pod conditions, written
//! to `pods/status`, and the pod's events.

use super::lock;
use crate::util::set_condition;
use crate::Shared;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub(crate) struct PodCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) ns: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) dir: PathBuf,
    pub(super) pod: Value,
    pub(super) status: Mutex<PodStatus>,
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
        let c = &self.shared.cluster;
        let pdef = c.def("", "pods");
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
        let (init, main, initialized) = (s.init.clone(), s.main.clone(), s.initialized);
        let (host_ip, pod_ip, start) = (s.host_ip.clone(), s.pod_ip.clone(), s.start.clone());
        drop(s);
        let _ = c.mutate(&pdef, &self.ns, &self.name, "status", "kubelet", |p| {
            let st = crate::util::ensure_obj(p, &["status"]);
            st.insert("phase".into(), json!(phase));
            st.insert("hostIP".into(), json!(host_ip));
            st.insert("hostIPs".into(), json!([{"ip": host_ip}]));
            st.insert("podIP".into(), json!(pod_ip));
            st.insert("podIPs".into(), json!([{"ip": pod_ip}]));
            st.insert("startTime".into(), json!(start));
            if !init.is_empty() {
                st.insert("initContainerStatuses".into(), json!(init));
            }
            st.insert("containerStatuses".into(), json!(main));
            let mut conds: Vec<Value> = st.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            let cond = |t: &str, ok: bool, reason: Option<&str>| {
                let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null});
                if let Some(r) = reason {
                    c["reason"] = json!(r);
                }
                c
            };
            let done_reason = if terminal { Some("PodCompleted") } else if !initialized { Some("ContainersNotInitialized") } else { Some("ContainersNotReady") };
            set_condition(&mut conds, cond("PodReadyToStartContainers", !terminal, None));
            set_condition(&mut conds, cond("Initialized", initialized, if initialized { if terminal && !init.is_empty() { Some("PodCompleted") } else { None } } else { Some("ContainersNotInitialized") }));
            set_condition(&mut conds, cond("Ready", all_ready && !terminal, if all_ready && !terminal { None } else { done_reason }));
            set_condition(&mut conds, cond("ContainersReady", all_ready && !terminal, if all_ready && !terminal { None } else { done_reason }));
            st.insert("conditions".into(), json!(conds));
        });
    }

    pub(super) fn event(&self, ty: &str, reason: &str, msg: &str) {
        let mut involved = self.pod.clone();
        involved["apiVersion"] = json!("v1");
        involved["kind"] = json!("Pod");
        self.shared
            .cluster
            .record_event(&involved, ty, reason, msg, "kubelet");
    }

    pub(super) fn set_status(&self, init: bool, idx: usize, v: Value) {
        let mut s = lock(&self.status);
        let list = if init { &mut s.init } else { &mut s.main };
        if idx < list.len() {
            list[idx] = v;
        }
    }
}
