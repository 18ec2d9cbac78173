//! The agent's Node: registration, status heartbeats and the node Lease,
//! as a kubelet keeps them (pkg/kubelet/kubelet_node_status.go
//! registerWithAPIServer and updateNodeStatus; the lease controller of
//! k8s.io/component-helpers/apimachinery/lease, renewing every 10 s a lease
//! of 40 s, `--node-lease-duration-seconds`).

use super::remote::{core_path, Api, CallError};
use crate::controllers::kubelet;
use crate::nodes::{node_object, NodeSpec, Taint};
use serde_json::{json, Value};
use std::time::Duration;

/// The version the agent reports (the API server it is tested with).
pub const KUBELET_VERSION: &str = "v1.34.4-kube-sim";
/// `--node-lease-duration-seconds`.
pub const LEASE_DURATION_SECONDS: u32 = 40;
/// How often the lease is renewed (a quarter of its duration, as upstream).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often the Ready heartbeat is written (the kubelet's
/// `nodeStatusUpdateFrequency` is 10 s, its report frequency with leases
/// 5 min; the node lifecycle controller reads either).
pub const NODE_STATUS_INTERVAL: Duration = Duration::from_secs(30);

/// The Node a kubelet registers: labels, taints, capacity, conditions,
/// addresses, nodeInfo and the kubelet's endpoint (its log server).
pub(crate) fn node_for(spec: &NodeSpec, kubelet_port: u16) -> Value {
    let mut n = node_object(spec, 0);
    // A real cluster's node gets a pod CIDR only from kube-controller-manager.
    if let Some(s) = n["spec"].as_object_mut() {
        s.remove("podCIDR");
    }
    n["metadata"]["annotations"]["volumes.kubernetes.io/controller-managed-attach-detach"] =
        json!("true");
    // Against kube-sim's own API server, its in-process kubelet leaves
    // this node's pods to the agent.
    n["metadata"]["annotations"][kubelet::AGENT_ANNOTATION] = json!(spec.name);
    let st = &mut n["status"];
    // The API server reaches a kubelet at the first address of its
    // `--kubelet-preferred-address-types` (Hostname first by default): both
    // resolve to the loopback the log server listens on.
    st["addresses"] = json!([
        {"type": "InternalIP", "address": "127.0.0.1"},
        {"type": "Hostname", "address": "localhost"},
    ]);
    let id = format!("{:032x}", fnv(&spec.name));
    let info = &mut st["nodeInfo"];
    info["kubeletVersion"] = json!(KUBELET_VERSION);
    info["machineID"] = json!(id);
    info["systemUUID"] = json!(id);
    info["bootID"] = json!(format!("{:032x}", fnv(&format!("{}/boot", spec.name))));
    st["daemonEndpoints"] = json!({"kubeletEndpoint": {"Port": kubelet_port}});
    n["apiVersion"] = json!("v1");
    n["kind"] = json!("Node");
    n
}

fn fnv(s: &str) -> u128 {
    s.bytes()
        .fold(0x6c62272e07bb014262b821756295c58d_u128, |h, b| {
            (h ^ b as u128).wrapping_mul(0x0000000001000000000000000000013B)
        })
}

fn taints_json(taints: &[Taint]) -> Vec<Value> {
    taints.iter().map(Taint::to_json).collect()
}

/// Create the Node, or bring an existing one up to this agent's labels and
/// taints (taints the node controllers own, `node.kubernetes.io/*`, stay);
/// then write its status, which the API server keeps apart from the spec.
pub(crate) async fn register(api: &Api, spec: &NodeSpec, kubelet_port: u16) -> anyhow::Result<()> {
    let node = node_for(spec, kubelet_port);
    let path = core_path("nodes", "", &spec.name);
    match api.post("/api/v1/nodes", &node).await {
        Ok(_) => {}
        Err((409, _)) => {
            let existing = api.get(&path).await.map_err(err)?;
            let mut taints = taints_json(&spec.taints);
            for t in existing["spec"]["taints"].as_array().into_iter().flatten() {
                let system = t["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("node.kubernetes.io/"));
                if system && !taints.iter().any(|o| o["key"] == t["key"]) {
                    taints.push(t.clone());
                }
            }
            let patch = json!({"metadata": {"labels": node["metadata"]["labels"],
                "annotations": node["metadata"]["annotations"]},
                "spec": {"taints": taints}});
            api.merge_patch(&path, &patch).await.map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    write_status(api, spec, kubelet_port).await
}

fn err((code, msg): CallError) -> anyhow::Error {
    anyhow::anyhow!("API server answered {code}: {msg}")
}

/// Write the node's status with fresh heartbeats; a condition keeps its
/// transition time while its status stays the same.
pub(crate) async fn write_status(
    api: &Api,
    spec: &NodeSpec,
    kubelet_port: u16,
) -> anyhow::Result<()> {
    let path = core_path("nodes", "", &spec.name);
    let current = api.get(&path).await.map_err(err)?;
    let mut status = node_for(spec, kubelet_port)["status"].clone();
    let old = current["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in status["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(o) = old
            .iter()
            .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
        {
            if !o["lastTransitionTime"].is_null() {
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
            }
        }
    }
    api.merge_patch(&format!("{path}/status"), &json!({"status": status}))
        .await
        .map_err(err)?;
    Ok(())
}

/// Whether the node reads Ready.
pub(crate) async fn is_ready(api: &Api, name: &str) -> bool {
    api.get(&core_path("nodes", "", name)).await.is_ok_and(|n| {
        n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Renew (or create) the node's Lease in `kube-node-lease`, owned by the
/// Node so it goes with it.
pub(crate) async fn renew_lease(api: &Api, node: &str) -> Result<(), CallError> {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": now});
    match api.merge_patch(&path, &json!({"spec": spec})).await {
        Err((404, _)) => {}
        other => return other.map(|_| ()),
    }
    let owner = api.get(&core_path("nodes", "", node)).await?;
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                "uid": owner["metadata"]["uid"]}]},
        "spec": spec});
    api.post(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        &lease,
    )
    .await
    .map(|_| ())
}

/// Keep the node alive until `stop`: the lease every 10 s, the status every
/// 30 s (registering the node again if someone deleted it).
pub(crate) async fn keep_alive(
    api: Api,
    spec: NodeSpec,
    kubelet_port: u16,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_status = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LEASE_RENEW_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if let Err((code, msg)) = renew_lease(&api, &spec.name).await {
            tracing::warn!(node = %spec.name, code, %msg, "lease renewal failed");
        }
        if last_status.elapsed() >= NODE_STATUS_INTERVAL {
            let missing = api
                .get(&core_path("nodes", "", &spec.name))
                .await
                .is_err_and(|(code, _)| code == 404);
            let r = if missing {
                register(&api, &spec, kubelet_port).await
            } else {
                write_status(&api, &spec, kubelet_port).await
            };
            match r {
                Ok(()) => last_status = tokio::time::Instant::now(),
                Err(e) => tracing::warn!(node = %spec.name, "node status failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_of_an_agent() {
        let spec = NodeSpec::new("arm-1", "linux/arm64").with_taint(Taint::new(
            "kubernetes.io/arch",
            "arm64",
            "NoSchedule",
        ));
        let n = node_for(&spec, 10250);
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/arch"], "arm64");
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "arm-1");
        assert_eq!(n["spec"]["taints"][0]["key"], "kubernetes.io/arch");
        assert!(n["spec"].get("podCIDR").is_none());
        assert_eq!(n["status"]["addresses"][0]["address"], "127.0.0.1");
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        assert_eq!(
            n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
        assert_ne!(
            node_for(&NodeSpec::new("b", "linux/amd64"), 1)["status"]["nodeInfo"]["machineID"],
            n["status"]["nodeInfo"]["machineID"]
        );
    }
}
