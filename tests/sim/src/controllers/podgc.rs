//! PodGC, as kube-controller-manager's pod garbage collector
//! (pkg/controller/podgc/gc_controller.go):
//! - gcTerminated: above `--terminated-pod-gc-threshold` terminated pods
//!   (phase neither Pending, Running nor Unknown), the oldest are deleted,
//!   evicted ones first (byEvictionAndCreationTimestamp);
//! - gcOrphaned: pods bound to a node that no longer exists get
//!   `DisruptionTarget` (DeletionByPodGC), phase Failed, and are deleted;
//! - gcUnscheduledTerminating: terminating pods never bound to a node are
//!   force-deleted.
//!
//! The real controller runs every 20 s and waits 40 s (quarantine) before
//! believing a node is gone; here both happen at once.

use crate::api::DeleteOpts;
use crate::util::{name_of, ns_of, set_condition};
use crate::Shared;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

const MANAGER: &str = "pod-garbage-collector";

fn is_terminated(p: &Value) -> bool {
    !matches!(
        p["status"]["phase"].as_str(),
        Some("Pending") | Some("Running") | Some("Unknown") | None
    )
}

/// Patch to Failed (with `condition`) unless terminal, then delete with
/// grace 0 (markFailedAndDeletePodWithCondition).
fn mark_failed_and_delete(shared: &Shared, p: &Value, condition: Option<Value>) {
    let c = &shared.cluster;
    let def = c.def("", "pods");
    let phase = p["status"]["phase"].as_str().unwrap_or("");
    if phase != "Succeeded" && phase != "Failed" {
        let _ = c.mutate(&def, ns_of(p), name_of(p), "status", MANAGER, |o| {
            o["status"]["phase"] = json!("Failed");
            if let Some(cond) = condition {
                let mut conds = o["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                set_condition(&mut conds, cond);
                o["status"]["conditions"] = json!(conds);
            }
        });
    }
    let _ = c.delete(
        &def,
        ns_of(p),
        name_of(p),
        &DeleteOpts {
            grace_seconds: Some(0),
            ..Default::default()
        },
    );
}

pub fn reconcile(shared: &Arc<Shared>) {
    let (pods, nodes) = {
        let s = shared.cluster.lock();
        (s.list("/pods", ""), s.list("/nodes", ""))
    };
    let threshold = shared.config.terminated_pod_gc_threshold;
    if threshold > 0 {
        let mut terminated: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| is_terminated(p) && p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        if terminated.len() > threshold {
            let evicted = |p: &Value| p["status"]["reason"] == "Evicted";
            terminated.sort_by(|a, b| {
                evicted(b)
                    .cmp(&evicted(a))
                    .then_with(|| {
                        let t = |p: &Value| {
                            p["metadata"]["creationTimestamp"]
                                .as_str()
                                .unwrap_or("")
                                .to_string()
                        };
                        t(a).cmp(&t(b))
                    })
                    .then_with(|| name_of(a).cmp(name_of(b)))
            });
            let n = terminated.len() - threshold;
            for p in &terminated[..n] {
                mark_failed_and_delete(shared, p, None);
            }
        }
    }
    let existing: HashSet<&str> = nodes.iter().map(|n| name_of(n)).collect();
    for p in &pods {
        let node = p["spec"]["nodeName"].as_str().unwrap_or("");
        let terminating = !p["metadata"]["deletionTimestamp"].is_null();
        if !node.is_empty() && !existing.contains(node) {
            mark_failed_and_delete(
                shared,
                p,
                Some(json!({"type": "DisruptionTarget", "status": "True",
                    "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"})),
            );
        } else if node.is_empty() && terminating {
            mark_failed_and_delete(shared, p, None);
        }
    }
}
