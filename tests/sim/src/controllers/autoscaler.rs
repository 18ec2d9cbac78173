//! Node groups scaled like cluster-autoscaler does (kubernetes/autoscaler,
//! cluster-autoscaler/core/static_autoscaler.go RunOnce):
//! - scale-up (core/scaleup/orchestrator/orchestrator.go): a pod the
//!   scheduler reported `Unschedulable` that a group's template node would
//!   take (nodeSelector, required node affinity, taints vs tolerations, as
//!   the scheduler's own predicates) and that no node already on its way
//!   would take raises the group's target size, within `max`; the node
//!   registers after the group's `delay`. The pod gets `TriggeredScaleUp`,
//!   or `NotTriggerScaleUp` with the aggregated reasons
//!   (processors/status/eventing_scale_up_processor.go);
//! - scale-down (core/scaledown/planner, actuation): a group node with no
//!   non-terminated pods for `scale_down_unneeded` is tainted
//!   `ToBeDeletedByClusterAutoscaler` and deleted, never below `min`.
//!
//! Also completes node reclaims (`disruption::reclaim`): the node is
//! deleted once its pods have finished.

use crate::nodes::{node_object, NodeGroup, NODE_GROUP_LABEL};
use crate::util::{name_of, uid_of, Rng};
use crate::Shared;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Pods one node takes (the sim's nodes advertise `pods: 110`; there is no
/// other resource accounting, so this is the whole bin-packing).
pub const PODS_PER_NODE: usize = 110;

/// Keeps node names apart from the API server's generated names.
const RNG_SALT: u64 = 0xa5ca1e;

struct Upcoming {
    group: String,
    node: String,
    ready_at: Instant,
    /// Pending pods this node was brought up for.
    pods: usize,
}

#[derive(Default)]
struct Inner {
    started: bool,
    upcoming: Vec<Upcoming>,
    unneeded_since: HashMap<String, Instant>,
    retiring: HashSet<String>,
    /// Last scale-up message given to each pending pod (uid).
    told: HashMap<String, String>,
    rng: Option<Rng>,
}

#[derive(Default)]
pub struct AutoscalerState {
    inner: Mutex<Inner>,
}

impl AutoscalerState {
    /// Delete `node` once none of its pods is running any more.
    pub fn retire(&self, node: &str) {
        lock(&self.inner).retiring.insert(node.to_string());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn terminal(p: &Value) -> bool {
    matches!(
        p["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

fn unschedulable(p: &Value) -> bool {
    p["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
        && p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
}

fn with_kind(o: &Value, kind: &str) -> Value {
    let mut o = o.clone();
    o["apiVersion"] = json!("v1");
    o["kind"] = json!(kind);
    o
}

pub fn reconcile(shared: &Arc<Shared>) {
    let groups = &shared.config.node_groups;
    let st = &shared.autoscaler;
    let mut inner = lock(&st.inner);
    let c = &shared.cluster;
    let (pods, nodes) = {
        let s = c.lock();
        (s.list("/pods", ""), s.list("/nodes", ""))
    };
    let busy: HashSet<&str> = pods
        .iter()
        .filter(|p| !terminal(p))
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    // Reclaimed nodes go once their pods are done.
    let gone: Vec<String> = inner
        .retiring
        .iter()
        .filter(|n| !busy.contains(n.as_str()))
        .cloned()
        .collect();
    for n in gone {
        crate::disruption::remove_node(shared, &n);
        inner.retiring.remove(&n);
    }
    if groups.is_empty() {
        return;
    }
    if inner.rng.is_none() {
        inner.rng = Some(Rng::new(shared.config.seed ^ RNG_SALT));
    }
    // The cloud provider creates each group's minimum size at once.
    if !inner.started {
        inner.started = true;
        for g in groups {
            for _ in 0..g.min {
                let name = new_node_name(&mut inner, g);
                add_group_node(shared, g, &name);
            }
        }
        return;
    }
    // Nodes whose provisioning delay is over register.
    let now = Instant::now();
    let (ready, waiting): (Vec<Upcoming>, Vec<Upcoming>) = std::mem::take(&mut inner.upcoming)
        .into_iter()
        .partition(|u| u.ready_at <= now);
    inner.upcoming = waiting;
    for u in ready {
        if let Some(g) = groups.iter().find(|g| g.name == u.group) {
            add_group_node(shared, g, &u.node);
        }
    }
    let size = |g: &NodeGroup, upcoming: &[Upcoming]| {
        nodes
            .iter()
            .filter(|n| n["metadata"]["labels"][NODE_GROUP_LABEL] == g.name.as_str())
            .count()
            + upcoming.iter().filter(|u| u.group == g.name).count()
    };
    scale_up(shared, groups, &pods, &nodes, &mut inner, size);
    scale_down(shared, groups, &nodes, &busy, &mut inner, now);
}

fn scale_up(
    shared: &Arc<Shared>,
    groups: &[NodeGroup],
    pods: &[Arc<Value>],
    nodes: &[Arc<Value>],
    inner: &mut Inner,
    size: impl Fn(&NodeGroup, &[Upcoming]) -> usize,
) {
    let c = &shared.cluster;
    // Pods an existing node would take now are the scheduler's, not ours
    // (core/podlistprocessor/filter_out_schedulable.go).
    let pending: Vec<&Arc<Value>> = pods
        .iter()
        .filter(|p| unschedulable(p))
        .filter(|p| {
            !nodes
                .iter()
                .any(|n| crate::controllers::scheduler::unfit_reason(p, n).is_none())
        })
        .collect();
    let live: HashSet<&str> = pending.iter().map(|p| uid_of(p)).collect();
    inner.told.retain(|uid, _| live.contains(uid.as_str()));
    for p in pending {
        // Room on a node already being provisioned for a group it fits.
        let covered = inner.upcoming.iter_mut().find(|u| {
            u.pods < PODS_PER_NODE
                && groups
                    .iter()
                    .find(|g| g.name == u.group)
                    .is_some_and(|g| fits(p, g))
        });
        if let Some(u) = covered {
            u.pods += 1;
            continue;
        }
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut chosen = None;
        for g in groups {
            match crate::controllers::scheduler::unfit_reason(p, &template(g)) {
                Some(r) => *reasons.entry(r).or_default() += 1,
                None if size(g, &inner.upcoming) >= g.max => {
                    *reasons
                        .entry("max node group size reached".into())
                        .or_default() += 1
                }
                None => {
                    chosen = Some(g);
                    break;
                }
            }
        }
        let msg = match chosen {
            Some(g) => {
                let current = size(g, &inner.upcoming);
                let node = new_node_name(inner, g);
                inner.upcoming.push(Upcoming {
                    group: g.name.clone(),
                    node,
                    ready_at: Instant::now() + g.delay,
                    pods: 1,
                });
                format!(
                    "pod triggered scale-up: [{{{} {}->{} (max: {})}}]",
                    g.name,
                    current,
                    current + 1,
                    g.max
                )
            }
            None => {
                let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                format!("pod didn't trigger scale-up: {}", parts.join(", "))
            }
        };
        if inner.told.get(uid_of(p)) != Some(&msg) {
            let reason = if chosen.is_some() {
                "TriggeredScaleUp"
            } else {
                "NotTriggerScaleUp"
            };
            c.record_event(
                &with_kind(p, "Pod"),
                "Normal",
                reason,
                &msg,
                "cluster-autoscaler",
            );
            inner.told.insert(uid_of(p).to_string(), msg);
        }
    }
}

fn scale_down(
    shared: &Arc<Shared>,
    groups: &[NodeGroup],
    nodes: &[Arc<Value>],
    busy: &HashSet<&str>,
    inner: &mut Inner,
    now: Instant,
) {
    let c = &shared.cluster;
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for n in nodes {
        if let Some(g) = n["metadata"]["labels"][NODE_GROUP_LABEL].as_str() {
            *sizes.entry(g).or_default() += 1;
        }
    }
    let names: HashSet<&str> = nodes.iter().map(|n| name_of(n)).collect();
    inner
        .unneeded_since
        .retain(|n, _| names.contains(n.as_str()));
    for n in nodes {
        let name = name_of(n);
        let Some(g) = n["metadata"]["labels"][NODE_GROUP_LABEL]
            .as_str()
            .and_then(|g| groups.iter().find(|x| x.name == g))
        else {
            continue;
        };
        if busy.contains(name) || inner.retiring.contains(name) {
            inner.unneeded_since.remove(name);
            continue;
        }
        let since = *inner.unneeded_since.entry(name.to_string()).or_insert(now);
        let size = sizes.get(g.name.as_str()).copied().unwrap_or(0);
        if now.duration_since(since) < g.scale_down_unneeded || size <= g.min {
            continue;
        }
        // Follows core/scaledown/actuation: taint, then delete the instance.
        let ts = crate::util::now().timestamp().to_string();
        let _ = c.mutate(&c.def("", "nodes"), "", name, "", "cluster-autoscaler", |o| {
            let mut taints = o["spec"]["taints"].as_array().cloned().unwrap_or_default();
            taints.push(json!({"key": "ToBeDeletedByClusterAutoscaler", "value": ts, "effect": "NoSchedule"}));
            o["spec"]["taints"] = json!(taints);
        });
        c.record_event(
            &with_kind(n, "Node"),
            "Normal",
            "ScaleDown",
            "marked the node as toBeDeleted/unschedulable",
            "cluster-autoscaler",
        );
        crate::disruption::remove_node(shared, name);
        inner.unneeded_since.remove(name);
        if let Some(s) = sizes.get_mut(g.name.as_str()) {
            *s -= 1;
        }
    }
}

fn template(g: &NodeGroup) -> Value {
    let mut t = g.template.clone();
    t.name = format!("template-node-for-{}", g.name);
    node_object(&t, 0)
}

fn fits(p: &Value, g: &NodeGroup) -> bool {
    crate::controllers::scheduler::unfit_reason(p, &template(g)).is_none()
}

fn new_node_name(inner: &mut Inner, g: &NodeGroup) -> String {
    let rng = inner.rng.get_or_insert_with(|| Rng::new(RNG_SALT));
    format!("{}-{}", g.name, rng.name_suffix(5))
}

fn add_group_node(shared: &Shared, g: &NodeGroup, name: &str) {
    let mut spec = g.template.clone();
    spec.name = name.to_string();
    crate::nodes::add_node(shared, &spec);
}
