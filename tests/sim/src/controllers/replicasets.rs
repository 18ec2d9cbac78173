//! The ReplicaSet controller (apps/v1), following
//! pkg/controller/replicaset/replica_set.go: keeps `spec.replicas` active
//! pods made from the template (manageReplicas: creates with the
//! `SuccessfulCreate`/`FailedCreate` events, deletes the surplus preferring
//! unscheduled, then not-ready, then the youngest pods, as
//! getPodsToDelete ranks them) and writes `replicas`, `fullyLabeledReplicas`,
//! `readyReplicas`, `availableReplicas` (ready for `minReadySeconds`) and
//! `observedGeneration` (replica_set_utils.go, calculateStatus).

use crate::api::{DeleteOpts, WriteOpts};
use crate::util::{name_of, ns_of, parse_time, uid_of};
use crate::Shared;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const MANAGER: &str = "replicaset-controller";

pub fn pod_ready_since(p: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .and_then(parse_time)
                .unwrap_or_else(crate::util::now)
        })
}

/// IsPodAvailable (pkg/api/v1/pod/util.go): ready for at least minReadySeconds.
pub fn pod_available(p: &Value, min_ready_seconds: i64) -> bool {
    pod_ready_since(p).is_some_and(|t| {
        min_ready_seconds <= 0 || (crate::util::now() - t).num_seconds() >= min_ready_seconds
    })
}

/// FilterActivePods: not terminal and not being deleted.
fn active(p: &Value) -> bool {
    !matches!(
        p["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    ) && p["metadata"]["deletionTimestamp"].is_null()
}

/// Pods by the uid of their controlling owner of `kind`.
pub fn pods_by_controller<'a>(
    pods: &'a [Arc<Value>],
    kind: &str,
) -> HashMap<String, Vec<&'a Arc<Value>>> {
    let mut by: HashMap<String, Vec<&Arc<Value>>> = HashMap::new();
    for p in pods {
        if let Some(r) = p["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true && r["kind"] == kind)
        {
            by.entry(r["uid"].as_str().unwrap_or("").to_string())
                .or_default()
                .push(p);
        }
    }
    by
}

pub fn reconcile(shared: &Arc<Shared>) {
    let c = &shared.cluster;
    let (sets, pods) = {
        let s = c.lock();
        (s.list("apps/replicasets", ""), s.list("/pods", ""))
    };
    if sets.is_empty() {
        return;
    }
    let by_owner = pods_by_controller(&pods, "ReplicaSet");
    for rs in &sets {
        if !rs["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let owned = by_owner.get(uid_of(rs)).cloned().unwrap_or_default();
        sync(shared, rs, &owned);
    }
}

fn sync(shared: &Arc<Shared>, rs: &Value, pods: &[&Arc<Value>]) {
    let c = &shared.cluster;
    let (ns, name) = (ns_of(rs).to_string(), name_of(rs).to_string());
    let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let mut live: Vec<&Arc<Value>> = pods.iter().copied().filter(|p| active(p)).collect();
    let pdef = c.def("", "pods");
    let mut events: Vec<(&str, &str, String)> = vec![];
    let mut failure: Option<String> = None;
    if live.len() < want {
        for _ in live.len()..want {
            match c.create(
                &pdef,
                &ns,
                pod_from_template(rs),
                &WriteOpts::internal(MANAGER),
            ) {
                Ok(p) => events.push((
                    "Normal",
                    "SuccessfulCreate",
                    format!("Created pod: {}", name_of(&p)),
                )),
                Err(e) => {
                    events.push((
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {}", e.message),
                    ));
                    failure = Some(e.message.clone());
                    break;
                }
            }
        }
    } else if live.len() > want {
        // getPodsToDelete: unassigned < assigned, not ready < ready, then
        // the most recently ready/created first.
        live.sort_by_key(|p| {
            let assigned = p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let ready = pod_ready_since(p).is_some();
            (
                assigned,
                ready,
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        let surplus = live.len() - want;
        for p in live.drain(..surplus) {
            if c.delete(&pdef, &ns, name_of(p), &DeleteOpts::default())
                .is_ok()
            {
                events.push((
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {}", name_of(p)),
                ));
            }
        }
    }
    let tpl_labels = &rs["spec"]["template"]["metadata"]["labels"];
    let counted: Vec<&&Arc<Value>> = live.iter().filter(|p| active(p)).collect();
    let fully = counted
        .iter()
        .filter(|p| {
            tpl_labels
                .as_object()
                .is_none_or(|m| m.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
        })
        .count();
    let ready = counted
        .iter()
        .filter(|p| pod_ready_since(p).is_some())
        .count();
    let available = counted
        .iter()
        .filter(|p| pod_available(p, min_ready))
        .count();
    let generation = rs["metadata"]["generation"].clone();
    let rsdef = c.def("apps", "replicasets");
    let _ = c.mutate(&rsdef, &ns, &name, "status", MANAGER, |o| {
        let st = crate::util::ensure_obj(o, &["status"]);
        st.insert("replicas".into(), json!(counted.len()));
        st.insert("fullyLabeledReplicas".into(), json!(fully));
        st.insert("readyReplicas".into(), json!(ready));
        st.insert("availableReplicas".into(), json!(available));
        st.insert("observedGeneration".into(), generation);
        // ReplicaFailure while pods cannot be created (replica_set_utils.go).
        let mut conds: Vec<Value> = st.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        match &failure {
            Some(msg) => {
                crate::util::set_condition(&mut conds, json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": msg}));
            }
            None => conds.retain(|c| c["type"] != "ReplicaFailure"),
        }
        if conds.is_empty() {
            st.remove("conditions");
        } else {
            st.insert("conditions".into(), json!(conds));
        }
    });
    for (ty, reason, msg) in events {
        c.record_event(rs, ty, reason, &msg, MANAGER);
    }
}

fn pod_from_template(rs: &Value) -> Value {
    let tpl = &rs["spec"]["template"];
    let mut md = json!({
        "generateName": format!("{}-", name_of(rs)),
        "namespace": ns_of(rs),
        "labels": tpl["metadata"]["labels"],
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name_of(rs), "uid": uid_of(rs),
            "controller": true, "blockOwnerDeletion": true}],
    });
    if let Some(a) = tpl["metadata"].get("annotations") {
        md["annotations"] = a.clone();
    }
    if md["labels"].is_null() {
        md.as_object_mut().unwrap().remove("labels");
    }
    json!({"metadata": md, "spec": tpl["spec"]})
}
