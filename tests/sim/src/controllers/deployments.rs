//! The Deployment controller (apps/v1), following pkg/controller/deployment:
//! one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`
//! (sync.go getNewReplicaSet, with the `deployment.kubernetes.io/revision`,
//! `desired-replicas` and `max-replicas` annotations), rolled out by the
//! `RollingUpdate` (rolling.go: maxSurge/maxUnavailable) or `Recreate`
//! (recreate.go) strategy, old ReplicaSets beyond `revisionHistoryLimit`
//! removed (cleanupDeployment), and the status kubectl's rollout status
//! reads (sync.go calculateStatus, progress.go syncRolloutStatus):
//! `observedGeneration`, `replicas`, `updatedReplicas`, `readyReplicas`,
//! `availableReplicas`, `unavailableReplicas`, and the `Available` and
//! `Progressing` conditions (NewReplicaSetCreated, ReplicaSetUpdated,
//! NewReplicaSetAvailable, ProgressDeadlineExceeded after
//! `progressDeadlineSeconds` without progress).

use super::replicasets::pods_by_controller;
use crate::api::{DeleteOpts, WriteOpts};
use crate::util::{name_of, now_rfc3339, ns_of, parse_time, uid_of};
use crate::Shared;
use serde_json::{json, Value};
use std::sync::Arc;

const MANAGER: &str = "deployment-controller";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";
/// rand.SafeEncodeString's alphabet (apimachinery/pkg/util/rand): no vowels,
/// no confusable characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The pod template's hash (controller.ComputeHash: FNV-32a of the template,
/// printed in decimal and safe-encoded). Upstream hashes Go's printout of the
/// struct; this hashes the stored JSON, so the values differ but are as stable.
pub fn template_hash(template: &Value, collisions: i64) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |b: u8| {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    };
    for b in serde_json::to_vec(template).unwrap_or_default() {
        feed(b);
    }
    if collisions > 0 {
        for b in collisions.to_le_bytes() {
            feed(b);
        }
    }
    h.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The template without the hash label, for comparing a ReplicaSet's with
/// the Deployment's (EqualIgnoreHash).
fn template_sans_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"].as_object_mut().unwrap().remove("labels");
        }
    }
    t
}

/// intstr.GetScaledValueFromIntOrPercent.
fn scaled(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let p: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (p * total + 99) / 100
            } else {
                p * total / 100
            }
        }
        _ => 0,
    }
}

/// ResolveFenceposts (deployment_util.go): maxSurge rounds up,
/// maxUnavailable down; both zero means one may be unavailable.
fn fenceposts(d: &Value, replicas: i64) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = scaled(&ru["maxSurge"], replicas, true);
    let mut unavailable = scaled(&ru["maxUnavailable"], replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn is_recreate(d: &Value) -> bool {
    d["spec"]["strategy"]["type"] == "Recreate"
}

fn replicas_of(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn status_of(rs: &Value, f: &str) -> i64 {
    rs["status"][f].as_i64().unwrap_or(0)
}

fn revision_of(o: &Value) -> i64 {
    o["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn reconcile(shared: &Arc<Shared>) {
    let c = &shared.cluster;
    let (deployments, sets) = {
        let s = c.lock();
        (
            s.list("apps/deployments", ""),
            s.list("apps/replicasets", ""),
        )
    };
    if deployments.is_empty() {
        return;
    }
    let by_owner = pods_by_controller(&sets, "Deployment");
    for d in &deployments {
        if !d["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let owned: Vec<Value> = by_owner
            .get(uid_of(d))
            .into_iter()
            .flatten()
            .map(|r| (***r).clone())
            .collect();
        sync(shared, d, owned);
    }
}

fn scale(shared: &Shared, d: &Value, rs: &mut Value, to: i64, events: &mut Vec<String>) {
    let from = replicas_of(rs);
    if from == to {
        return;
    }
    let c = &shared.cluster;
    let (surge, _) = fenceposts(d, d["spec"]["replicas"].as_i64().unwrap_or(1));
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let r = c.mutate(
        &c.def("apps", "replicasets"),
        ns_of(rs),
        name_of(rs),
        "",
        MANAGER,
        |o| {
            o["spec"]["replicas"] = json!(to);
            let a = crate::util::ensure_obj(o, &["metadata", "annotations"]);
            a.insert(DESIRED.into(), json!(desired.to_string()));
            a.insert(MAX_REPLICAS.into(), json!((desired + surge).to_string()));
        },
    );
    if let Ok(o) = r {
        *rs = o;
        let dir = if to > from { "up" } else { "down" };
        events.push(format!(
            "Scaled {dir} replica set {} from {from} to {to}",
            name_of(rs)
        ));
    }
}

fn sync(shared: &Arc<Shared>, d: &Value, mut sets: Vec<Value>) {
    let c = &shared.cluster;
    let (ns, name) = (ns_of(d).to_string(), name_of(d).to_string());
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let template = &d["spec"]["template"];
    let mut events: Vec<String> = vec![];
    let mut created_new = false;
    // The new ReplicaSet: the one whose template is the Deployment's.
    let mut new_idx = sets
        .iter()
        .position(|rs| template_sans_hash(&rs["spec"]["template"]) == *template);
    if new_idx.is_none() {
        let collisions = d["status"]["collisionCount"].as_i64().unwrap_or(0);
        let hash = template_hash(template, collisions);
        let rev = sets.iter().map(revision_of).max().unwrap_or(0) + 1;
        let mut tpl = template.clone();
        crate::util::ensure_obj(&mut tpl, &["metadata", "labels"])
            .insert(HASH_LABEL.into(), json!(hash));
        let mut selector = d["spec"]["selector"].clone();
        crate::util::ensure_obj(&mut selector, &["matchLabels"])
            .insert(HASH_LABEL.into(), json!(hash));
        let (surge, _) = fenceposts(d, replicas);
        // A Recreate rollout starts the new ReplicaSet at zero; a rolling
        // one within the surge (reconcileNewReplicaSet scales it below).
        let rs = json!({
            "metadata": {
                "name": format!("{name}-{hash}"),
                "labels": tpl["metadata"]["labels"],
                "annotations": {REVISION: rev.to_string(), DESIRED: replicas.to_string(), MAX_REPLICAS: (replicas + surge).to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid_of(d),
                    "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": {"replicas": 0, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                "selector": selector, "template": tpl},
        });
        match c.create(
            &c.def("apps", "replicasets"),
            &ns,
            rs,
            &WriteOpts::internal(MANAGER),
        ) {
            Ok(rs) => {
                sets.push(rs);
                new_idx = Some(sets.len() - 1);
                created_new = true;
            }
            Err(e) => {
                // A name taken by a ReplicaSet it does not own: a hash
                // collision (sync.go bumps status.collisionCount).
                if e.code == 409 {
                    let _ = c.mutate(
                        &c.def("apps", "deployments"),
                        &ns,
                        &name,
                        "status",
                        MANAGER,
                        |o| {
                            o["status"]["collisionCount"] = json!(collisions + 1);
                        },
                    );
                }
                return;
            }
        }
    }
    let Some(ni) = new_idx else { return };
    let mut new_rs = sets.remove(ni);
    // Revision: the new ReplicaSet's is the highest; the Deployment shows it.
    let max_old = sets.iter().map(revision_of).max().unwrap_or(0);
    if revision_of(&new_rs) <= max_old {
        let rev = (max_old + 1).to_string();
        if let Ok(o) = c.mutate(
            &c.def("apps", "replicasets"),
            &ns,
            name_of(&new_rs),
            "",
            MANAGER,
            |o| {
                crate::util::ensure_obj(o, &["metadata", "annotations"])
                    .insert(REVISION.into(), json!(rev));
            },
        ) {
            new_rs = o;
        }
    }
    let rev = revision_of(&new_rs).to_string();
    if d["metadata"]["annotations"][REVISION].as_str() != Some(rev.as_str()) {
        let _ = c.mutate(
            &c.def("apps", "deployments"),
            &ns,
            &name,
            "",
            MANAGER,
            |o| {
                crate::util::ensure_obj(o, &["metadata", "annotations"])
                    .insert(REVISION.into(), json!(rev));
            },
        );
    }
    let paused = d["spec"]["paused"] == true;
    if !paused {
        if is_recreate(d) {
            // recreate.go: old ReplicaSets to zero; the new one once no old pod runs.
            for rs in sets.iter_mut() {
                scale(shared, d, rs, 0, &mut events);
            }
            let old_running: i64 = sets.iter().map(|rs| status_of(rs, "replicas")).sum();
            if old_running == 0 {
                scale(shared, d, &mut new_rs, replicas, &mut events);
            }
        } else {
            rolling(shared, d, &mut new_rs, &mut sets, replicas, &mut events);
        }
    }
    // cleanupDeployment: old, empty ReplicaSets beyond the history limit.
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty: Vec<&Value> = sets
        .iter()
        .filter(|rs| replicas_of(rs) == 0 && status_of(rs, "replicas") == 0)
        .collect();
    if empty.len() > limit {
        empty.sort_by_key(|rs| revision_of(rs));
        for rs in &empty[..empty.len() - limit] {
            let _ = c.delete(
                &c.def("apps", "replicasets"),
                &ns,
                name_of(rs),
                &DeleteOpts::default(),
            );
        }
    }
    write_status(shared, d, &new_rs, &sets, created_new);
    for msg in events {
        c.record_event(d, "Normal", "ScalingReplicaSet", &msg, MANAGER);
    }
}

/// rolling.go: scale the new ReplicaSet up within maxSurge, the old ones
/// down while at least `replicas - maxUnavailable` pods stay available.
fn rolling(
    shared: &Shared,
    d: &Value,
    new_rs: &mut Value,
    old: &mut [Value],
    replicas: i64,
    events: &mut Vec<String>,
) {
    let (surge, max_unavailable) = fenceposts(d, replicas);
    let total: i64 = replicas_of(new_rs) + old.iter().map(replicas_of).sum::<i64>();
    // reconcileNewReplicaSet (NewRSNewReplicas).
    let cur = replicas_of(new_rs);
    let target = if cur > replicas {
        replicas
    } else {
        let room = (replicas + surge - total).max(0);
        cur + room.min(replicas - cur)
    };
    scale(shared, d, new_rs, target, events);
    // reconcileOldReplicaSets.
    let all_pods: i64 = replicas_of(new_rs) + old.iter().map(replicas_of).sum::<i64>();
    let min_available = replicas - max_unavailable;
    let new_unavailable = replicas_of(new_rs) - status_of(new_rs, "availableReplicas");
    let mut budget = all_pods - min_available - new_unavailable;
    old.sort_by_key(revision_of);
    // cleanupUnhealthyReplicas: unavailable old pods go first.
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (replicas_of(rs) - status_of(rs, "availableReplicas")).max(0);
        let n = unhealthy.min(budget);
        if n > 0 {
            let to = replicas_of(rs) - n;
            scale(shared, d, rs, to, events);
            budget -= n;
        }
    }
    // scaleDownOldReplicaSetsForRollingUpdate: available ones above minAvailable.
    let available: i64 = status_of(new_rs, "availableReplicas")
        + old
            .iter()
            .map(|rs| status_of(rs, "availableReplicas").min(replicas_of(rs)))
            .sum::<i64>();
    let mut down = available - min_available;
    for rs in old.iter_mut() {
        if down <= 0 {
            break;
        }
        let n = replicas_of(rs).min(down);
        if n > 0 {
            let to = replicas_of(rs) - n;
            scale(shared, d, rs, to, events);
            down -= n;
        }
    }
}

fn write_status(shared: &Shared, d: &Value, new_rs: &Value, old: &[Value], created_new: bool) {
    let c = &shared.cluster;
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let all = || std::iter::once(new_rs).chain(old.iter());
    let actual: i64 = all().map(|rs| status_of(rs, "replicas")).sum();
    let updated = status_of(new_rs, "replicas");
    let ready: i64 = all().map(|rs| status_of(rs, "readyReplicas")).sum();
    let available: i64 = all().map(|rs| status_of(rs, "availableReplicas")).sum();
    let spec_total: i64 = all().map(replicas_of).sum();
    let unavailable = (spec_total - available).max(0);
    let (_, max_unavailable) = fenceposts(d, replicas);
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let rs_name = name_of(new_rs).to_string();
    let old_status = d["status"].clone();
    let deadline = d["spec"]["progressDeadlineSeconds"].as_i64();
    let _ = c.mutate(
        &c.def("apps", "deployments"),
        ns_of(d),
        name_of(d),
        "status",
        MANAGER,
        |o| {
            let now = now_rfc3339();
            let st = crate::util::ensure_obj(o, &["status"]);
            st.insert("observedGeneration".into(), json!(generation));
            st.insert("replicas".into(), json!(actual));
            st.insert("updatedReplicas".into(), json!(updated));
            st.insert("readyReplicas".into(), json!(ready));
            st.insert("availableReplicas".into(), json!(available));
            st.insert("unavailableReplicas".into(), json!(unavailable));
            // Go omits zero counts (omitempty).
            for k in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
            ] {
                if st[k] == 0 {
                    st.remove(k);
                }
            }
            let mut conds: Vec<Value> = st
                .get("conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let set = |conds: &mut Vec<Value>,
                       ty: &str,
                       status: &str,
                       reason: &str,
                       msg: String,
                       touch: bool| {
                let prev = conds.iter().find(|c| c["type"] == ty).cloned();
                let same = prev
                    .as_ref()
                    .is_some_and(|p| p["status"] == status && p["reason"] == reason);
                let mut cnd = json!({"type": ty, "status": status, "reason": reason, "message": msg,
                "lastUpdateTime": now, "lastTransitionTime": now});
                if let Some(p) = &prev {
                    if p["status"] == status {
                        cnd["lastTransitionTime"] = p["lastTransitionTime"].clone();
                    }
                    if same && !touch && p["message"] == cnd["message"] {
                        cnd["lastUpdateTime"] = p["lastUpdateTime"].clone();
                    }
                }
                conds.retain(|c| c["type"] != ty);
                conds.push(cnd);
            };
            if available >= replicas - max_unavailable {
                set(
                    &mut conds,
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                    false,
                );
            } else {
                set(
                    &mut conds,
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                    false,
                );
            }
            // progress.go syncRolloutStatus.
            let complete = updated == replicas && actual == replicas && available == replicas;
            let progressed = updated > old_status["updatedReplicas"].as_i64().unwrap_or(0)
                || actual < old_status["replicas"].as_i64().unwrap_or(0)
                || ready > old_status["readyReplicas"].as_i64().unwrap_or(0)
                || available > old_status["availableReplicas"].as_i64().unwrap_or(0);
            let prev = conds.iter().find(|c| c["type"] == "Progressing").cloned();
            let timed_out = match (
                deadline,
                prev.as_ref()
                    .and_then(|p| p["lastUpdateTime"].as_str())
                    .and_then(parse_time),
            ) {
                (Some(secs), Some(at)) => (crate::util::now() - at).num_seconds() > secs,
                _ => false,
            };
            if created_new {
                set(
                    &mut conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set {rs_name:?}"),
                    true,
                );
            } else if complete {
                set(
                    &mut conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("ReplicaSet {rs_name:?} has successfully progressed."),
                    false,
                );
            } else if progressed || prev.is_none() {
                set(
                    &mut conds,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("ReplicaSet {rs_name:?} is progressing."),
                    true,
                );
            } else if timed_out
                && prev
                    .as_ref()
                    .is_some_and(|p| p["reason"] != "NewReplicaSetAvailable")
            {
                set(
                    &mut conds,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {rs_name:?} has timed out progressing."),
                    false,
                );
            }
            // Available first, as upstream lists them.
            conds.sort_by_key(|c| c["type"] != "Available");
            st.insert("conditions".into(), json!(conds));
        },
    );
}
