//! The scheduler: binds pending pods to Ready nodes whose labels match the
//! pod's nodeSelector / required node affinity and whose NoSchedule and
//! NoExecute taints it tolerates; otherwise reports Unschedulable like
//! kube-scheduler does.

use crate::util::{name_of, ns_of, set_condition};
use crate::Shared;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn tolerates(tol: &Value, taint: &Value) -> bool {
    let effect = tol["effect"].as_str().unwrap_or("");
    if !effect.is_empty() && effect != taint["effect"].as_str().unwrap_or("") {
        return false;
    }
    let key = tol["key"].as_str().unwrap_or("");
    match tol["operator"].as_str().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint["key"].as_str().unwrap_or(""),
        _ => {
            key == taint["key"].as_str().unwrap_or("")
                && tol["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("")
        }
    }
}

fn term_matches(term: &Value, labels: &Value) -> bool {
    term["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let v = labels
                .get(e["key"].as_str().unwrap_or(""))
                .and_then(Value::as_str);
            let vals: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str().unwrap_or("") {
                "In" => v.is_some_and(|v| vals.contains(&v)),
                "NotIn" => !v.is_some_and(|v| vals.contains(&v)),
                "Exists" => v.is_some(),
                "DoesNotExist" => v.is_none(),
                "Gt" => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .zip(vals.first().and_then(|x| x.parse::<i64>().ok()))
                    .is_some_and(|(a, b)| a > b),
                "Lt" => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .zip(vals.first().and_then(|x| x.parse::<i64>().ok()))
                    .is_some_and(|(a, b)| a < b),
                _ => false,
            }
        })
}

fn selector_matches(pod: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let sel_ok = pod["spec"]["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let aff_ok = match terms.as_array() {
        Some(ts) if !ts.is_empty() => ts.iter().any(|t| term_matches(t, labels)),
        _ => true,
    };
    sel_ok && aff_ok
}

fn node_ready(n: &Value) -> bool {
    n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Why `node` cannot take `pod` (None: it can), in kube-scheduler's words.
pub fn unfit_reason(pod: &Value, node: &Value) -> Option<String> {
    if !node["metadata"]["deletionTimestamp"].is_null() {
        return Some("node(s) were being deleted".into());
    }
    if node["spec"]["unschedulable"] == true {
        return Some("node(s) were unschedulable".into());
    }
    if !node_ready(node) {
        return Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into());
    }
    if !selector_matches(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector".into());
    }
    let tols = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in node["spec"]["taints"].as_array().into_iter().flatten() {
        let eff = t["effect"].as_str().unwrap_or("");
        if eff != "NoSchedule" && eff != "NoExecute" {
            continue;
        }
        if !tols.iter().any(|tol| tolerates(tol, t)) {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t["key"].as_str().unwrap_or(""),
                t["value"].as_str().unwrap_or("")
            ));
        }
    }
    None
}

/// The resources whose requests the scheduler counts against a node's
/// allocatable (plugins/noderesources/fit.go `fitsRequest`). Only
/// ephemeral-storage for now: cpu and memory are not counted yet.
const FIT_RESOURCES: &[&str] = &["ephemeral-storage"];

/// A pod's request of `resource`: the larger of its containers' sum and
/// its largest init container (component-helpers resource.PodRequests).
fn pod_request(pod: &Value, resource: &str) -> f64 {
    let request = |c: &Value| {
        crate::validation::quantity::parse(&c["resources"]["requests"][resource]).unwrap_or(0.0)
    };
    let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
    let init = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten();
    let sum: f64 = containers.map(request).sum();
    init.map(request).fold(sum, f64::max)
}

/// What pods bound to the node, and not finished, already request.
fn requested(pods: &[Value], node: &str, resource: &str) -> f64 {
    pods.iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .map(|p| pod_request(p, resource))
        .sum()
}

/// `Insufficient <resource>` where the pod's requests do not fit what the
/// node has left (fit.go: `allocatable < podRequest + nodeRequested`).
fn insufficient(pod: &Value, node: &Value, pods: &[Value]) -> Option<String> {
    FIT_RESOURCES.iter().find_map(|resource| {
        let want = pod_request(pod, resource);
        if want == 0.0 {
            return None;
        }
        let allocatable =
            crate::validation::quantity::parse(&node["status"]["allocatable"][resource]).ok()?;
        (want + requested(pods, name_of(node), resource) > allocatable)
            .then(|| format!("Insufficient {resource}"))
    })
}

pub fn reconcile(shared: &Arc<Shared>) {
    let c = &shared.cluster;
    let (pods, nodes) = {
        let s = c.lock();
        (s.list("/pods", ""), s.list("/nodes", ""))
    };
    let mut load: BTreeMap<String, usize> =
        nodes.iter().map(|n| (name_of(n).to_string(), 0)).collect();
    for p in &pods {
        if let Some(n) = p["spec"]["nodeName"].as_str() {
            *load.entry(n.to_string()).or_default() += 1;
        }
    }
    let def = c.def("", "pods");
    // Pods bound so far, this round's included.
    let mut bound: Vec<Value> = pods
        .iter()
        .filter(|p| !p["spec"]["nodeName"].as_str().unwrap_or("").is_empty())
        .map(|p| Value::clone(p))
        .collect();
    for p in pods {
        if !p["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
            || !p["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        if p["spec"]["schedulerName"]
            .as_str()
            .unwrap_or("default-scheduler")
            != "default-scheduler"
        {
            continue;
        }
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(usize, String)> = None;
        for n in &nodes {
            match unfit_reason(&p, n).or_else(|| insufficient(&p, n, &bound)) {
                Some(r) => *reasons.entry(r).or_default() += 1,
                None => {
                    let l = load[name_of(n)];
                    if best.as_ref().is_none_or(|b| l < b.0) {
                        best = Some((l, name_of(n).to_string()));
                    }
                }
            }
        }
        let (ns, name) = (ns_of(&p).to_string(), name_of(&p).to_string());
        match best {
            Some((_, node)) => {
                *load.get_mut(&node).unwrap() += 1;
                let mut placed = Value::clone(&p);
                placed["spec"]["nodeName"] = json!(node);
                bound.push(placed);
                let r = c.mutate(&def, &ns, &name, "", "default-scheduler", |o| {
                    o["spec"]["nodeName"] = json!(node);
                });
                if r.is_ok() {
                    let _ = c.mutate(&def, &ns, &name, "status", "default-scheduler", |o| {
                        let mut conds = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
                        set_condition(&mut conds, json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}));
                        o["status"]["conditions"] = json!(conds);
                    });
                    c.record_event(
                        &p,
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node}"),
                        "default-scheduler",
                    );
                }
            }
            None => {
                let total = nodes.len();
                let msg = if total == 0 {
                    "no nodes available to schedule pods".to_string()
                } else {
                    let parts: Vec<String> =
                        reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                    format!("0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.", parts.join(", "))
                };
                let current = p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "PodScheduled")
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or("")
                    .to_string();
                if current != msg {
                    let _ = c.mutate(&def, &ns, &name, "status", "default-scheduler", |o| {
                        let mut conds = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
                        set_condition(&mut conds, json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastProbeTime": null}));
                        o["status"]["conditions"] = json!(conds);
                    });
                    c.record_event(&p, "Warning", "FailedScheduling", &msg, "default-scheduler");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_semantics() {
        let taint = json!({"key": "kubernetes.io/arch", "value": "arm64", "effect": "NoSchedule"});
        assert!(tolerates(
            &json!({"key": "kubernetes.io/arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}),
            &taint
        ));
        assert!(tolerates(
            &json!({"key": "kubernetes.io/arch", "operator": "Exists"}),
            &taint
        ));
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
        assert!(!tolerates(
            &json!({"key": "kubernetes.io/arch", "value": "amd64"}),
            &taint
        ));
        assert!(!tolerates(
            &json!({"operator": "Exists", "effect": "NoExecute"}),
            &taint
        ));
    }
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    fn pod(node: &str, phase: &str, init: &str, main: &str) -> Value {
        let c = |q: &str| json!({"name": "c", "resources": {"requests": {"ephemeral-storage": q}}});
        json!({"metadata": {"name": "p"}, "spec": {"nodeName": node,
            "initContainers": [c(init)], "containers": [c(main), c(main)]},
            "status": {"phase": phase}})
    }

    #[test]
    fn requests_count_against_what_the_node_has_left() {
        let node = json!({"metadata": {"name": "n"}, "status": {"allocatable": {"ephemeral-storage": "100Gi"}}});
        // max(init 50Gi, 2 x 10Gi) = 50Gi.
        assert_eq!(
            pod_request(&pod("", "Pending", "50Gi", "10Gi"), "ephemeral-storage"),
            50.0 * (1u64 << 30) as f64
        );
        let running = pod("n", "Running", "50Gi", "1Gi");
        let done = pod("n", "Succeeded", "90Gi", "1Gi");
        let new = pod("", "Pending", "40Gi", "1Gi");
        assert_eq!(
            insufficient(&new, &node, &[running.clone(), done.clone()]),
            None,
            "a finished pod frees its share"
        );
        let big = pod("", "Pending", "60Gi", "1Gi");
        assert_eq!(
            insufficient(&big, &node, &[running, done]).as_deref(),
            Some("Insufficient ephemeral-storage")
        );
    }
}
