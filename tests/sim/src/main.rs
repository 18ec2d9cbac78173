//! `kube-sim serve`: run a simulated cluster until SIGTERM/SIGINT.
//! `kube-sim node ...` / `kube-sim clock ...`: change a running one.
//! `kube-sim kubelet`: a node agent against any API server.

mod control;

use clap::{Parser, Subcommand};
use kube_sim::{Faults, NodeGroup, NodeSpec, PullFailure, Sim, SimConfig, Taint};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kube-sim", about = "A simulated Kubernetes cluster for tests")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API on 127.0.0.1 (free port) and write a kubeconfig once ready.
    Serve(Box<Serve>),
    /// Add, remove, drain or reclaim a node of a running `kube-sim serve`.
    Node(control::NodeCmd),
    /// Shift the clock of a running `kube-sim serve`.
    Clock(control::ClockCmd),
    /// Run a node agent (kube-sim's kubelet) against any API server.
    Kubelet(Kubelet),
}

#[derive(clap::Args)]
struct Kubelet {
    /// Credentials and address of the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// NAME=os/arch[/variant]: the Node to register.
    #[arg(long)]
    node: String,
    /// key=value:Effect; repeatable.
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// key=value, a label besides the kubernetes.io ones; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// IMAGE_REPO[=HOST_BIN_DIR]; repeatable.
    #[arg(long = "image")]
    images: Vec<String>,
    /// Work directory for pod files (default: a temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// First image pull back-off (doubles per failure up to 30x), e.g. 10s.
    #[arg(long, default_value = "10s")]
    image_pull_backoff: String,
}

#[derive(clap::Args)]
struct Serve {
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// NAME=os/arch[/variant]; repeatable. Default: sim-amd64 and sim-arm64.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// NAME=key=value:Effect; repeatable.
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// IMAGE_REPO[=HOST_BIN_DIR]; repeatable.
    #[arg(long = "image")]
    images: Vec<String>,
    /// Work directory for pod files (default: a temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Watch events retained before a watch gets 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    history_window: usize,
    /// Seconds between watch BOOKMARKs.
    #[arg(long, default_value_t = 5)]
    bookmark_seconds: u64,
    /// Share of requests answered 500/429.
    #[arg(long, default_value_t = 0.0)]
    fault_error_rate: f64,
    /// 500, 429, or 0 for a mix.
    #[arg(long, default_value_t = 0)]
    fault_error_code: u16,
    /// Added latency per request, milliseconds.
    #[arg(long, default_value_t = 0)]
    fault_latency_ms: u64,
    /// Cut watch streams after this many seconds.
    #[arg(long)]
    fault_watch_cut_seconds: Option<u64>,
    /// Share of writes answered 409 Conflict.
    #[arg(long, default_value_t = 0.0)]
    fault_conflict_rate: f64,
    /// Only force conflicts on status writes.
    #[arg(long)]
    fault_conflicts_status_only: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// NAME[:GROUP,...]: a user with a static token, written to the
    /// kubeconfig as a context named NAME; repeatable.
    #[arg(long = "user")]
    users: Vec<String>,
    /// Enable the OwnerReferencesPermissionEnforcement admission plugin.
    #[arg(long)]
    owner_references_permission_enforcement: bool,
    /// NAME=os/arch,min=0,max=N,delay=20s[,taint=key=value:Effect][,label=k=v]
    /// [,scale-down-unneeded=10m]; repeatable. An autoscaled node group.
    #[arg(long = "node-group")]
    node_groups: Vec<String>,
    /// PodGC deletes the oldest terminated pods above this many (0: never).
    #[arg(long, default_value_t = kube_sim::DEFAULT_TERMINATED_POD_GC_THRESHOLD)]
    terminated_pod_gc_threshold: usize,
    /// First image pull back-off (doubles per failure up to 30x), e.g. 10s.
    #[arg(long, default_value = "10s")]
    image_pull_backoff: String,
    /// IMAGE=COUNT[=MESSAGE]: the first COUNT pulls of IMAGE fail; repeatable.
    #[arg(long = "fault-image-pull")]
    fault_image_pulls: Vec<String>,
    /// The cluster's clock minus the host's, seconds.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    clock_offset_seconds: i64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let s = match Cli::parse().cmd {
        Cmd::Serve(s) => s,
        Cmd::Node(n) => return control::node(n),
        Cmd::Clock(c) => return control::clock(c),
        Cmd::Kubelet(k) => return kubelet(k),
    };
    let mut cfg = SimConfig {
        kubeconfig_path: Some(s.kubeconfig.clone()),
        workdir: s.workdir,
        history_window: s.history_window,
        bookmark_interval: Duration::from_secs(s.bookmark_seconds.max(1)),
        seed: s.seed,
        faults: Faults {
            error_rate: s.fault_error_rate,
            error_code: s.fault_error_code,
            retry_after_seconds: 1,
            latency: Duration::from_millis(s.fault_latency_ms),
            watch_cut_after: s.fault_watch_cut_seconds.map(Duration::from_secs),
            conflict_rate: s.fault_conflict_rate,
            conflicts_status_only: s.fault_conflicts_status_only,
            seed: s.seed,
            user_agent_prefix: None,
            image_pull_failures: s
                .fault_image_pulls
                .iter()
                .map(|f| parse_pull_fault(f))
                .collect::<anyhow::Result<_>>()?,
        },
        owner_references_permission_enforcement: s.owner_references_permission_enforcement,
        terminated_pod_gc_threshold: s.terminated_pod_gc_threshold,
        image_pull_backoff: kube_sim::nodes::parse_duration(&s.image_pull_backoff)?,
        clock_offset_seconds: s.clock_offset_seconds,
        ..Default::default()
    };
    for u in &s.users {
        let (name, groups) = u.split_once(':').unwrap_or((u, ""));
        let groups = groups
            .split(',')
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect();
        cfg.users.push((name.to_string(), groups));
    }
    for n in &s.nodes {
        cfg.nodes.push(NodeSpec::parse(n)?);
    }
    for g in &s.node_groups {
        cfg.node_groups.push(NodeGroup::parse(g)?);
    }
    for t in &s.taints {
        let (node, taint) = t
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("taint must be NAME=key=value:Effect"))?;
        cfg.taints.push((node.to_string(), Taint::parse(taint)?));
    }
    cfg.images = parse_images(&s.images);
    let sim = Sim::start(cfg)?;
    eprintln!(
        "kube-sim serving {} (kubeconfig {})",
        sim.url(),
        sim.kubeconfig_path().display()
    );
    wait_for_signal()?;
    drop(sim);
    Ok(())
}

/// `kube-sim kubelet`: register the node, run its pods until SIGTERM/SIGINT.
fn kubelet(k: Kubelet) -> anyhow::Result<()> {
    use kube_sim::agent::{Agent, AgentConfig};
    let mut node = NodeSpec::parse(&k.node)?;
    for t in &k.taints {
        node.taints.push(Taint::parse(t)?);
    }
    for l in &k.labels {
        let (key, value) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("label must be key=value"))?;
        node.labels.push((key.into(), value.into()));
    }
    // Kept until the agent stopped: the pods' files live there.
    let tmp;
    let workdir = match k.workdir {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("kube-sim-kubelet-")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut cfg = AgentConfig::new(k.kubeconfig, node, workdir);
    cfg.images = parse_images(&k.images);
    cfg.image_pull_backoff = kube_sim::nodes::parse_duration(&k.image_pull_backoff)?;
    let agent = Agent::start(cfg)?;
    eprintln!(
        "kube-sim kubelet: node {} Ready (log server on 127.0.0.1:{})",
        agent.node_name(),
        agent.kubelet_port()
    );
    wait_for_signal()?;
    drop(agent);
    Ok(())
}

/// `IMAGE_REPO[=HOST_BIN_DIR]` flags.
fn parse_images(flags: &[String]) -> Vec<(String, Option<PathBuf>)> {
    flags
        .iter()
        .map(|i| match i.split_once('=') {
            Some((r, d)) => (r.to_string(), Some(PathBuf::from(d))),
            None => (i.clone(), None),
        })
        .collect()
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        anyhow::Ok(())
    })
}

/// `IMAGE=COUNT[=MESSAGE]`.
fn parse_pull_fault(s: &str) -> anyhow::Result<PullFailure> {
    let mut parts = s.splitn(3, '=');
    let image = parts.next().unwrap_or("");
    let count = parts
        .next()
        .ok_or_else(|| anyhow::anyhow!("--fault-image-pull must be IMAGE=COUNT[=MESSAGE]"))?
        .parse()?;
    let message = parts
        .next()
        .unwrap_or("toomanyrequests: You have reached your pull rate limit (injected by kube-sim)");
    Ok(PullFailure::new(image, count, message))
}

fn tracing_subscriber_init() {
    // Logs only when RUST_LOG asks for them.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}
