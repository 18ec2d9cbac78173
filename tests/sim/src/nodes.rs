//! Simulated nodes: their spec (platform, taints, labels), the Node object
//! a kubelet would register, and autoscaled node groups.

use anyhow::Context;
use serde_json::{json, Value};
use std::time::Duration;

/// A node taint, as in `node.spec.taints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
}

impl Taint {
    pub fn new(key: &str, value: &str, effect: &str) -> Self {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }
    /// Parse `key=value:Effect` (or `key:Effect`).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let (kv, effect) = s
            .rsplit_once(':')
            .context("taint must be key=value:Effect")?;
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        Ok(Taint::new(k, v, effect))
    }
    pub(crate) fn to_json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if !self.value.is_empty() {
            t["value"] = json!(self.value);
        }
        t
    }
}

/// A simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
    pub taints: Vec<Taint>,
    /// Extra labels besides the standard kubernetes.io ones.
    pub labels: Vec<(String, String)>,
}

impl NodeSpec {
    /// A Ready node labelled like a real one for `os/arch[/variant]`.
    pub fn new(name: &str, platform: &str) -> Self {
        let mut p = platform.split('/');
        NodeSpec {
            name: name.into(),
            os: p.next().unwrap_or("linux").into(),
            arch: p.next().unwrap_or("amd64").into(),
            variant: p.next().map(String::from),
            taints: vec![],
            labels: vec![],
        }
    }
    pub fn with_taint(mut self, t: Taint) -> Self {
        self.taints.push(t);
        self
    }
    /// Parse `NAME=os/arch[/variant]`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let (n, p) = s
            .split_once('=')
            .context("node must be NAME=os/arch[/variant]")?;
        Ok(NodeSpec::new(n, p))
    }
}

pub(crate) fn node_object(n: &NodeSpec, index: usize) -> Value {
    let mut labels = json!({
        "kubernetes.io/os": n.os, "kubernetes.io/arch": n.arch, "kubernetes.io/hostname": n.name,
        "beta.kubernetes.io/os": n.os, "beta.kubernetes.io/arch": n.arch,
        "node.kubernetes.io/instance-type": "kube-sim",
    });
    for (k, v) in &n.labels {
        labels[k] = json!(v);
    }
    let mut annotations = json!({"node.alpha.kubernetes.io/ttl": "0"});
    if let Some(v) = &n.variant {
        annotations["kube-sim/arch-variant"] = json!(v);
    }
    let res = json!({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let now = crate::util::now_rfc3339();
    let cond = |t: &str, s: &str, r: &str, m: &str| {
        json!({"type": t, "status": s, "reason": r, "message": m,
        "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({
        "metadata": {"name": n.name, "labels": labels, "annotations": annotations},
        "spec": {"taints": n.taints.iter().map(Taint::to_json).collect::<Vec<_>>(), "podCIDR": format!("10.244.{index}.0/24")},
        "status": {
            "capacity": res, "allocatable": res,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", 10 + index)}, {"type": "Hostname", "address": n.name}],
            "nodeInfo": {"architecture": n.arch, "operatingSystem": n.os, "kubeletVersion": "v1.34.0-sim",
                "kubeProxyVersion": "", "containerRuntimeVersion": "kube-sim://local-processes", "osImage": "kube-sim host processes",
                "kernelVersion": "sim", "machineID": format!("{index:032}"), "systemUUID": format!("sim-{index}"), "bootID": format!("boot-{index}")},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }
    })
}

/// Register (or replace) a Ready node, as its kubelet would.
pub(crate) fn add_node(shared: &crate::Shared, n: &NodeSpec) {
    let c = &shared.cluster;
    let def = c.def("", "nodes");
    let existing = c.lock().list("/nodes", "");
    // A fresh index per node keeps pod CIDRs and addresses distinct.
    let index = existing
        .iter()
        .filter_map(|o| {
            o["spec"]["podCIDR"]
                .as_str()?
                .split('.')
                .nth(2)?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    if existing.iter().any(|o| crate::util::name_of(o) == n.name) {
        let _ = c.delete(&def, "", &n.name, &Default::default());
    }
    let _ = c.create(
        &def,
        "",
        node_object(n, index % 240),
        &crate::api::WriteOpts::internal("kubelet"),
    );
}

/// The label every node of a node group carries (its group's name).
pub const NODE_GROUP_LABEL: &str = "kube-sim/node-group";

/// An autoscaled node group, as a cloud provider's (an ASG, a managed node
/// pool) seen by cluster-autoscaler: nodes made from one template, between
/// `min` and `max` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroup {
    pub name: String,
    /// The template of its nodes (name unused: nodes are `<group>-<suffix>`).
    pub template: NodeSpec,
    pub min: usize,
    pub max: usize,
    /// From the scale-up decision to the node being Ready (provisioning).
    pub delay: Duration,
    /// How long a node must stay empty before it is removed
    /// (cluster-autoscaler's `--scale-down-unneeded-time`, default 10 min).
    pub scale_down_unneeded: Duration,
}

/// cluster-autoscaler's default `--scale-down-unneeded-time`.
pub const DEFAULT_SCALE_DOWN_UNNEEDED: Duration = Duration::from_secs(600);

impl NodeGroup {
    pub fn new(name: &str, platform: &str, min: usize, max: usize, delay: Duration) -> Self {
        let mut template = NodeSpec::new(name, platform);
        template.labels.push((NODE_GROUP_LABEL.into(), name.into()));
        NodeGroup {
            name: name.into(),
            template,
            min,
            max,
            delay,
            scale_down_unneeded: DEFAULT_SCALE_DOWN_UNNEEDED,
        }
    }

    pub fn with_taint(mut self, t: Taint) -> Self {
        self.template.taints.push(t);
        self
    }

    pub fn with_scale_down_unneeded(mut self, d: Duration) -> Self {
        self.scale_down_unneeded = d;
        self
    }

    /// Parse `NAME=os/arch,min=0,max=N,delay=20s[,taint=key=value:Effect]
    /// [,label=key=value][,scale-down-unneeded=30s]` (taint and label repeatable).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or("");
        let (name, platform) = head
            .split_once('=')
            .context("node group must start with NAME=os/arch")?;
        let mut g = NodeGroup::new(name, platform, 0, 1, Duration::ZERO);
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("node group option `{p}` must be key=value"))?;
            match k {
                "min" => g.min = v.parse().context("min must be a number")?,
                "max" => g.max = v.parse().context("max must be a number")?,
                "delay" => g.delay = parse_duration(v)?,
                "scale-down-unneeded" => g.scale_down_unneeded = parse_duration(v)?,
                "taint" => g.template.taints.push(Taint::parse(v)?),
                "label" => {
                    let (lk, lv) = v.split_once('=').context("label must be key=value")?;
                    g.template.labels.push((lk.into(), lv.into()));
                }
                other => anyhow::bail!("unknown node group option `{other}`"),
            }
        }
        anyhow::ensure!(g.min <= g.max, "node group {name}: min > max");
        Ok(g)
    }
}

/// `20s`, `500ms`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().with_context(|| format!("bad duration `{s}`"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => anyhow::bail!("bad duration unit in `{s}` (ms, s, m, h)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_group_flags() {
        let g = NodeGroup::parse(
            "arm=linux/arm64,min=0,max=3,delay=20s,taint=kubernetes.io/arch=arm64:NoSchedule,scale-down-unneeded=500ms",
        )
        .unwrap();
        assert_eq!((g.min, g.max, g.delay), (0, 3, Duration::from_secs(20)));
        assert_eq!(g.template.arch, "arm64");
        assert_eq!(g.template.taints[0].value, "arm64");
        assert_eq!(g.scale_down_unneeded, Duration::from_millis(500));
        assert!(NodeGroup::parse("x=linux/amd64,min=2,max=1").is_err());
        assert!(NodeGroup::parse("x=linux/amd64,size=2").is_err());
    }
}
