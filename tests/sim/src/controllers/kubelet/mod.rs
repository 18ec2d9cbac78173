//! The local kubelet: runs the containers of pods bound to simulated nodes
//! as host processes (each in a bubblewrap sandbox), with env, volumes,
//! termination messages and logs, and reports pod and container status the
//! way a real kubelet does.

mod container;
mod env;
pub mod host;
pub mod pull;
mod status;
mod volumes;

use crate::util::{name_of, now_rfc3339, ns_of, uid_of};
use crate::Shared;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub(crate) use container::tail_lines;
use container::{run_container, Outcome};
pub use host::{Host, Kind, KubeletConfig, SimHost};
use status::PodStatus;
pub(crate) use status::{waiting, PodCtx};
pub use status::{StatusUpdate, KUBELET_CONDITIONS};
use volumes::prepare_volumes;

struct PodHandle {
    stop: watch::Sender<bool>,
    done: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct KubeletState {
    pods: Mutex<HashMap<String, PodHandle>>,
    logs: Mutex<HashMap<String, PathBuf>>,
    groups: Mutex<HashMap<u32, ()>>,
    ip_counter: AtomicU32,
    /// Images present on each node: (node, image reference as written).
    present: Mutex<HashSet<(String, String)>>,
    /// Failed pulls injected so far, by index in `Faults::image_pull_failures`.
    pull_failures: Mutex<HashMap<usize, u32>>,
}

impl KubeletState {
    /// The log file of a container, as registered when it started.
    pub fn log_path(&self, ns: &str, pod: &str, container: &str) -> Option<PathBuf> {
        lock(&self.logs)
            .get(&format!("{ns}/{pod}/{container}"))
            .cloned()
    }

    /// Kill a pod's containers without deleting it (node shutdown): the pod
    /// ends Failed.
    pub fn stop_pod(&self, uid: &str) {
        if let Some(h) = lock(&self.pods).get(uid) {
            h.stop.send_replace(true);
        }
    }

    /// Forget the images a node had pulled (the machine is gone).
    pub fn forget_node(&self, node: &str) {
        lock(&self.present).retain(|(n, _)| n != node);
    }

    /// Forget injected pull failures (new faults start counting afresh).
    pub fn reset_pull_faults(&self) {
        lock(&self.pull_failures).clear();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a Node whose pods a node agent runs (`crate::agent`): the
/// simulator's own kubelet leaves them alone.
pub const AGENT_ANNOTATION: &str = "kube-sim/node-agent";

/// The simulator's kubelet pass: every bound pod of the in-process store,
/// but those of nodes a node agent serves.
pub fn reconcile_sim(host: &Arc<dyn Host>, shared: &Arc<Shared>) {
    let (mut pods, nodes) = {
        let s = shared.cluster.lock();
        (s.list("/pods", ""), s.list("/nodes", ""))
    };
    let agents: HashSet<&str> = nodes
        .iter()
        .filter(|n| n["metadata"]["annotations"][AGENT_ANNOTATION].is_string())
        .map(|n| name_of(n))
        .collect();
    if !agents.is_empty() {
        pods.retain(|p| !agents.contains(p["spec"]["nodeName"].as_str().unwrap_or("")));
    }
    reconcile(host, &pods);
}

/// One pass over the pods bound to this kubelet's node(s): start pods not
/// yet running, stop pods that are terminating or gone, and delete
/// terminating pods whose containers all stopped (pkg/kubelet/kubelet.go
/// HandlePodCleanups; status_manager.go canBeDeleted).
pub fn reconcile(host: &Arc<dyn Host>, pods: &[Arc<Value>]) {
    let st = host.state();
    let mut deletions = vec![];
    {
        let mut handles = lock(&st.pods);
        let live: HashSet<&str> = pods.iter().map(|p| uid_of(p)).collect();
        handles.retain(|uid, h| {
            if !live.contains(uid.as_str()) {
                h.stop.send_replace(true);
                return !h.done.load(Ordering::Relaxed);
            }
            true
        });
        for p in pods {
            if p["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
                continue;
            }
            let uid = uid_of(p).to_string();
            let terminating = !p["metadata"]["deletionTimestamp"].is_null();
            match handles.get(&uid) {
                None => {
                    let terminal = matches!(
                        p["status"]["phase"].as_str(),
                        Some("Succeeded") | Some("Failed")
                    );
                    if terminating {
                        deletions.push(p.clone());
                    } else if !terminal {
                        let (tx, rx) = watch::channel(false);
                        let done = Arc::new(AtomicBool::new(false));
                        handles.insert(
                            uid,
                            PodHandle {
                                stop: tx,
                                done: done.clone(),
                            },
                        );
                        let host = host.clone();
                        let pod = (**p).clone();
                        tokio::spawn(async move {
                            run_pod(&host, pod, rx).await;
                            done.store(true, Ordering::Relaxed);
                            // Wake the loop so a terminating pod gets removed promptly.
                            host.wake();
                        });
                    }
                }
                Some(h) => {
                    if terminating {
                        h.stop.send_replace(true);
                        if h.done.load(Ordering::Relaxed) {
                            deletions.push(p.clone());
                            handles.remove(&uid);
                        }
                    }
                }
            }
        }
    }
    // Outside the handles' lock: a remote host's delete is a request.
    for p in deletions {
        host.delete_pod(ns_of(&p), name_of(&p), uid_of(&p));
    }
}

/// Stop every pod process (SIGTERM, then SIGKILL after a second).
pub async fn shutdown(state: &KubeletState) {
    for h in lock(&state.pods).values() {
        h.stop.send_replace(true);
    }
    let groups: Vec<u32> = lock(&state.groups).keys().copied().collect();
    for g in &groups {
        signal_group(*g, libc::SIGTERM);
    }
    for _ in 0..20 {
        if lock(&state.groups).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for g in lock(&state.groups).keys() {
        signal_group(*g, libc::SIGKILL);
    }
}

pub(crate) fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we created.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

async fn run_pod(host: &Arc<dyn Host>, pod: Value, mut stop: watch::Receiver<bool>) {
    let (ns, name, uid) = (
        ns_of(&pod).to_string(),
        name_of(&pod).to_string(),
        uid_of(&pod).to_string(),
    );
    let dir = host
        .config()
        .workdir
        .join("pods")
        .join(format!("{ns}_{name}_{uid}"));
    let _ = std::fs::create_dir_all(dir.join("logs"));
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let node = host.get(Kind::Node, "", &node_name);
    let host_ip = node
        .as_ref()
        .and_then(|n| {
            n["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str().map(String::from))
        })
        .unwrap_or_else(|| "10.0.0.10".into());
    let subnet = node.as_ref().and_then(|n| {
        n["spec"]["podCIDR"]
            .as_str()
            .map(|c| c.trim_end_matches(".0/24").to_string())
    });
    let n = host.state().ip_counter.fetch_add(1, Ordering::Relaxed) % 250 + 2;
    // A node without a pod CIDR (a real cluster's, unless kube-controller-
    // manager allocates them) gets the host network's address: the
    // containers do share the host's network.
    let pod_ip = match (&subnet, &node) {
        (None, Some(_)) => host_ip.clone(),
        (s, _) => format!("{}.{n}", s.as_deref().unwrap_or("10.244.0")),
    };
    let inits: Vec<Value> = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mains: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ctx = Arc::new(PodCtx {
        host: host.clone(),
        publishing: Mutex::new(()),
        tokens: Mutex::new(Default::default()),
        ns,
        name,
        uid,
        dir,
        status: Mutex::new(PodStatus {
            init: inits
                .iter()
                .map(|c| {
                    waiting(
                        c["name"].as_str().unwrap_or(""),
                        c["image"].as_str().unwrap_or(""),
                        "PodInitializing",
                        None,
                        0,
                    )
                })
                .collect(),
            main: mains
                .iter()
                .map(|c| {
                    waiting(
                        c["name"].as_str().unwrap_or(""),
                        c["image"].as_str().unwrap_or(""),
                        if inits.is_empty() {
                            "ContainerCreating"
                        } else {
                            "PodInitializing"
                        },
                        None,
                        0,
                    )
                })
                .collect(),
            phase: "Pending".into(),
            initialized: inits.is_empty(),
            host_ip,
            pod_ip,
            start: now_rfc3339(),
        }),
        pod,
    });
    ctx.publish();
    // Volumes (retried until their sources exist, like a kubelet).
    let mut reported = String::new();
    let volumes = loop {
        match prepare_volumes(&ctx) {
            Ok(v) => break v,
            Err(msg) => {
                if msg != reported {
                    ctx.event("Warning", "FailedMount", &msg);
                    reported = msg;
                }
                if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    return;
                }
            }
        }
    };
    // Secret and ConfigMap volumes follow their sources while the pod runs
    // (the kubelet re-projects on each pod sync).
    {
        let ctx = ctx.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            while !sleep_or_stop(volumes::RESYNC, &mut stop).await {
                volumes::refresh(&ctx);
            }
        });
    }
    let restart_policy = ctx.pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_string();
    // Init containers, in order.
    for (i, c) in inits.iter().enumerate() {
        let mut restarts = 0u32;
        loop {
            match run_container(&ctx, c, true, i, restarts, &volumes, &mut stop).await {
                Outcome::Stopped => return finish(&ctx, "Failed"),
                Outcome::Exited(0) => break,
                Outcome::Exited(_) if restart_policy == "Never" => return finish(&ctx, "Failed"),
                Outcome::Exited(_) => {
                    restarts += 1;
                    if sleep_or_stop(Duration::from_secs(restarts.min(10) as u64), &mut stop).await
                    {
                        return finish(&ctx, "Failed");
                    }
                }
            }
        }
    }
    lock(&ctx.status).initialized = true;
    ctx.publish();
    let futs = mains.iter().enumerate().map(|(i, c)| {
        let ctx = ctx.clone();
        let volumes = volumes.clone();
        let mut stop = stop.clone();
        let policy = restart_policy.clone();
        let c = c.clone();
        async move {
            let mut restarts = 0u32;
            loop {
                let out = run_container(&ctx, &c, false, i, restarts, &volumes, &mut stop).await;
                let restart = match out {
                    Outcome::Stopped => false,
                    Outcome::Exited(code) => {
                        policy == "Always" || (policy == "OnFailure" && code != 0)
                    }
                };
                let code = match out {
                    Outcome::Exited(c) => c,
                    Outcome::Stopped => 137,
                };
                if !restart {
                    return code;
                }
                restarts += 1;
                if sleep_or_stop(Duration::from_secs(restarts.min(10) as u64), &mut stop).await {
                    return code;
                }
            }
        }
    });
    let codes = futures::future::join_all(futs).await;
    finish(
        &ctx,
        if codes.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        },
    );
}

fn finish(ctx: &PodCtx, phase: &str) {
    lock(&ctx.status).phase = phase.into();
    ctx.publish();
}
