//! Disruptions: the `pods/eviction` subresource, node drain, node removal,
//! and node reclaims as Karpenter, a spot interruption, the taint manager or
//! the scheduler's preemption do them. Every disrupted pod first gets the
//! `DisruptionTarget` condition with the reason the real component writes,
//! so a Job's `podFailurePolicy` can tell disruptions from failures.

use crate::api::DeleteOpts;
use crate::error::ApiError;
use crate::util::{name_of, ns_of, set_condition, uid_of};
use crate::Shared;
use serde_json::{json, Value};
use std::sync::Arc;

/// How a node is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// Karpenter consolidation (or drift, expiry, a Karpenter-handled spot
    /// interruption): the node gets `karpenter.sh/disrupted:NoSchedule`, its
    /// pods are evicted through the Eviction API (`EvictionByEvictionAPI`),
    /// then the node is deleted. Follows kubernetes-sigs/karpenter
    /// pkg/controllers/node/termination (terminator, eviction queue).
    KarpenterConsolidation,
    /// A spot interruption met by the kubelet's graceful node shutdown
    /// (pkg/kubelet/nodeshutdown/nodeshutdown_manager_linux.go): pods are
    /// killed and marked Failed with `TerminationByKubelet`, then the node
    /// disappears and PodGC removes the pods.
    SpotInterruption,
    /// A `NoExecute` taint (`node.kubernetes.io/unreachable`) and the taint
    /// eviction controller (pkg/controller/tainteviction/taint_eviction.go):
    /// untolerating pods are deleted with `DeletionByTaintManager`; the node
    /// is then removed.
    TaintManager,
    /// The scheduler preempting the node's pods for a higher-priority pod
    /// (pkg/scheduler/framework/preemption/preemption.go); the node stays.
    Preemption,
}

/// The `DisruptionTarget` condition a component writes (reasons from
/// k8s.io/api/core/v1 PodReason* constants).
fn disruption_condition(reason: &str, message: &str) -> Value {
    json!({"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message, "lastProbeTime": null})
}

fn add_condition(shared: &Shared, ns: &str, name: &str, cond: Value, manager: &str) {
    let c = &shared.cluster;
    let _ = c.mutate(&c.def("", "pods"), ns, name, "status", manager, |p| {
        let mut conds = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        set_condition(&mut conds, cond);
        p["status"]["conditions"] = json!(conds);
    });
}

fn terminal(p: &Value) -> bool {
    matches!(
        p["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// `POST pods/{name}/eviction` with a policy/v1 (or v1beta1) Eviction.
/// Follows pkg/registry/core/pod/storage/eviction.go: the pod gets
/// `DisruptionTarget` (EvictionByEvictionAPI, "Eviction API: evicting") and
/// is deleted with the Eviction's deleteOptions; the answer is a Success
/// Status. PodDisruptionBudgets are not served, so nothing blocks (no 429).
pub fn evict(shared: &Shared, ns: &str, name: &str, body: &Value) -> Result<Value, ApiError> {
    let in_body = body["metadata"]["name"].as_str().unwrap_or(name);
    if in_body != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let c = &shared.cluster;
    let pdef = c.def("", "pods");
    let pod = c.get(&pdef, ns, name)?;
    let d = &body["deleteOptions"];
    let opts = DeleteOpts {
        grace_seconds: d["gracePeriodSeconds"].as_i64(),
        precondition_uid: d["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: d["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
        dry_run: d["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
        ..Default::default()
    };
    if let Some(uid) = &opts.precondition_uid {
        if uid != uid_of(&pod) {
            return Err(ApiError::new(409, "Conflict", format!(
                "Operation cannot be fulfilled on pods \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                uid_of(&pod))));
        }
    }
    // A pod already being deleted is not disrupted again.
    if pod["metadata"]["deletionTimestamp"].is_null() {
        if !opts.dry_run {
            add_condition(
                shared,
                ns,
                name,
                disruption_condition("EvictionByEvictionAPI", "Eviction API: evicting"),
                "kube-apiserver",
            );
        }
        c.delete(&pdef, ns, name, &opts)?;
    }
    Ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn pods_on(shared: &Shared, node: &str) -> Vec<Arc<Value>> {
    shared
        .cluster
        .lock()
        .list("/pods", "")
        .into_iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .collect()
}

fn set_node(shared: &Shared, node: &str, f: impl FnOnce(&mut Value)) -> Result<(), ApiError> {
    let c = &shared.cluster;
    c.mutate(&c.def("", "nodes"), "", node, "", "kube-sim", f)
        .map(|_| ())
}

fn add_taint(n: &mut Value, key: &str, value: &str, effect: &str) {
    let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
    if !taints.iter().any(|t| t["key"] == key) {
        let mut t = json!({"key": key, "effect": effect, "timeAdded": crate::util::now_rfc3339()});
        if !value.is_empty() {
            t["value"] = json!(value);
        }
        taints.push(t);
    }
    n["spec"]["taints"] = json!(taints);
}

/// `kubectl drain --force --ignore-daemonsets` (staging/src/k8s.io/kubectl/
/// pkg/drain): cordon (`spec.unschedulable`, plus the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint the node lifecycle
/// controller adds), then evict every non-terminal pod on the node.
pub fn drain(shared: &Shared, node: &str) -> Result<Vec<String>, ApiError> {
    set_node(shared, node, |n| {
        n["spec"]["unschedulable"] = json!(true);
        add_taint(n, "node.kubernetes.io/unschedulable", "", "NoSchedule");
    })?;
    let mut evicted = vec![];
    for p in pods_on(shared, node) {
        if terminal(&p) || !p["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        evict(shared, ns_of(&p), name_of(&p), &json!({}))?;
        evicted.push(name_of(&p).to_string());
    }
    Ok(evicted)
}

/// Delete a node object (its kubelet is gone with it); PodGC then fails and
/// removes the pods still bound to it.
pub fn remove_node(shared: &Shared, node: &str) {
    let c = &shared.cluster;
    let _ = c.delete(&c.def("", "nodes"), "", node, &Default::default());
    // A node that comes back under the same name is a new machine.
    shared.kubelet.forget_node(node);
}

/// Take a node away as `how` does; the node itself is deleted by the
/// autoscaler loop once its pods have finished (except for preemption).
pub fn reclaim(shared: &Shared, node: &str, how: Disruption) -> Result<(), ApiError> {
    let c = &shared.cluster;
    let pdef = c.def("", "pods");
    c.get(&c.def("", "nodes"), "", node)?;
    let pods: Vec<Arc<Value>> = pods_on(shared, node)
        .into_iter()
        .filter(|p| !terminal(p) && p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    match how {
        Disruption::KarpenterConsolidation => {
            set_node(shared, node, |n| {
                add_taint(n, "karpenter.sh/disrupted", "", "NoSchedule")
            })?;
            if let Ok(n) = c.get(&c.def("", "nodes"), "", node) {
                let mut n = n;
                n["apiVersion"] = json!("v1");
                n["kind"] = json!("Node");
                c.record_event(
                    &n,
                    "Normal",
                    "DisruptionTerminating",
                    "Disrupting Node: Underutilized/Delete",
                    "karpenter",
                );
            }
            for p in &pods {
                evict(shared, ns_of(p), name_of(p), &json!({}))?;
                let mut o = (**p).clone();
                o["apiVersion"] = json!("v1");
                o["kind"] = json!("Pod");
                c.record_event(&o, "Normal", "Evicted", "Evicted pod", "karpenter");
            }
        }
        Disruption::SpotInterruption => {
            for p in &pods {
                add_condition(
                    shared,
                    ns_of(p),
                    name_of(p),
                    disruption_condition(
                        "TerminationByKubelet",
                        "Pod was terminated in response to imminent node shutdown.",
                    ),
                    "kubelet",
                );
                let _ = c.mutate(&pdef, ns_of(p), name_of(p), "status", "kubelet", |o| {
                    o["status"]["reason"] = json!("Terminated");
                    o["status"]["message"] =
                        json!("Pod was terminated in response to imminent node shutdown.");
                });
                shared.kubelet.stop_pod(uid_of(p));
            }
        }
        Disruption::TaintManager => {
            let taint = json!({"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"});
            set_node(shared, node, |n| {
                add_taint(n, "node.kubernetes.io/unreachable", "", "NoExecute")
            })?;
            for p in &pods {
                let tolerated = p["spec"]["tolerations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    // A toleration with tolerationSeconds only delays eviction.
                    .any(|t| {
                        crate::controllers::scheduler::tolerates(t, &taint)
                            && t["tolerationSeconds"].is_null()
                    });
                if tolerated {
                    continue;
                }
                add_condition(
                    shared,
                    ns_of(p),
                    name_of(p),
                    disruption_condition(
                        "DeletionByTaintManager",
                        "Taint manager: deleting due to NoExecute taint",
                    ),
                    "taint-eviction-controller",
                );
                let _ = c.delete(&pdef, ns_of(p), name_of(p), &DeleteOpts::default());
            }
        }
        Disruption::Preemption => {
            for p in &pods {
                add_condition(
                    shared,
                    ns_of(p),
                    name_of(p),
                    disruption_condition(
                        "PreemptionByScheduler",
                        "default-scheduler: preempting to accommodate a higher priority pod",
                    ),
                    "default-scheduler",
                );
                let mut o = (**p).clone();
                o["apiVersion"] = json!("v1");
                o["kind"] = json!("Pod");
                c.record_event(
                    &o,
                    "Normal",
                    "Preempted",
                    "Preempted by pod on node",
                    "default-scheduler",
                );
                let _ = c.delete(&pdef, ns_of(p), name_of(p), &DeleteOpts::default());
            }
            return Ok(());
        }
    }
    shared.autoscaler.retire(node);
    Ok(())
}
