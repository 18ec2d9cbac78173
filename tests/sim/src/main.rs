//! `kube-sim serve`: run a simulated cluster until SIGTERM/SIGINT.

use clap::{Parser, Subcommand};
use kube_sim::{Faults, NodeSpec, Sim, SimConfig, Taint};
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
    Serve(Serve),
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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let Cmd::Serve(s) = Cli::parse().cmd;
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
        },
        owner_references_permission_enforcement: s.owner_references_permission_enforcement,
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
    for t in &s.taints {
        let (node, taint) = t
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("taint must be NAME=key=value:Effect"))?;
        cfg.taints.push((node.to_string(), Taint::parse(taint)?));
    }
    for i in &s.images {
        let (repo, dir) = match i.split_once('=') {
            Some((r, d)) => (r.to_string(), Some(PathBuf::from(d))),
            None => (i.clone(), None),
        };
        cfg.images.push((repo, dir));
    }
    let sim = Sim::start(cfg)?;
    eprintln!(
        "kube-sim serving {} (kubeconfig {})",
        sim.url(),
        sim.kubeconfig_path().display()
    );
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
    })?;
    drop(sim);
    Ok(())
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
