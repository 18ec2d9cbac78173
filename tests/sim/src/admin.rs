//! The simulator's own control endpoints, under `/kube-sim/` on the API
//! server's port (no Kubernetes API lives there), so `kube-sim node ...`
//! can change a running `kube-sim serve` the way a cloud provider or an
//! administrator changes a real cluster:
//!
//! - `POST /kube-sim/nodes` `{"name", "platform", "taints": ["k=v:Effect"]}`: add (or replace) a node
//! - `DELETE /kube-sim/nodes/NAME`: remove a node (PodGC fails its pods)
//! - `POST /kube-sim/nodes/NAME/drain`: cordon and evict
//! - `POST /kube-sim/nodes/NAME/reclaim` `{"how": "karpenter" | "spot" | "taint" | "preemption"}`
//! - `PUT /kube-sim/clock` `{"offsetSeconds": N}`: shift the cluster's clock

use crate::disruption::{self, Disruption};
use crate::error::ApiError;
use crate::nodes::{NodeSpec, Taint};
use crate::Shared;
use http::Method;
use serde_json::{json, Value};

impl Disruption {
    /// `karpenter`, `spot`, `taint` or `preemption`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "karpenter" | "consolidation" => Disruption::KarpenterConsolidation,
            "spot" | "spot-interruption" => Disruption::SpotInterruption,
            "taint" | "taint-manager" => Disruption::TaintManager,
            "preemption" => Disruption::Preemption,
            _ => return None,
        })
    }
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))
}

pub fn handle(
    shared: &Shared,
    method: &Method,
    path: &[&str],
    body: &[u8],
) -> Result<Value, ApiError> {
    let c = &shared.cluster;
    match (method, path) {
        (&Method::POST, ["nodes"]) => {
            let b = body_json(body)?;
            let name = b["name"].as_str().unwrap_or("");
            if name.is_empty() {
                return Err(ApiError::bad_request("node name is required"));
            }
            let mut spec = NodeSpec::new(name, b["platform"].as_str().unwrap_or("linux/amd64"));
            for t in b["taints"].as_array().into_iter().flatten() {
                let t = Taint::parse(t.as_str().unwrap_or(""))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                spec.taints.push(t);
            }
            crate::nodes::add_node(shared, &spec);
            c.get(&c.def("", "nodes"), "", name)
        }
        (&Method::DELETE, ["nodes", name]) => {
            c.get(&c.def("", "nodes"), "", name)?;
            disruption::remove_node(shared, name);
            Ok(json!({"removed": name}))
        }
        (&Method::POST, ["nodes", name, "drain"]) => {
            let evicted = disruption::drain(shared, name)?;
            Ok(json!({"evicted": evicted}))
        }
        (&Method::POST, ["nodes", name, "reclaim"]) => {
            let b = body_json(body)?;
            let how_s = b["how"].as_str().unwrap_or("karpenter");
            let how = Disruption::parse(how_s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown reclaim `{how_s}` (karpenter, spot, taint, preemption)"
                ))
            })?;
            disruption::reclaim(shared, name, how)?;
            Ok(json!({"reclaimed": name, "how": how_s}))
        }
        (&Method::PUT, ["clock"]) => {
            let b = body_json(body)?;
            let secs = b["offsetSeconds"]
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("offsetSeconds (integer) is required"))?;
            shared
                .clock_offset
                .store(secs * 1000, std::sync::atomic::Ordering::Relaxed);
            Ok(json!({"offsetSeconds": secs}))
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    }
}
