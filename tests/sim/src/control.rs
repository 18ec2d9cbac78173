//! `kube-sim node ...` and `kube-sim clock ...`: requests to a running
//! `kube-sim serve`'s control endpoints (`/kube-sim/...`, see admin.rs),
//! found through the kubeconfig it wrote.

use anyhow::Context;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct NodeCmd {
    #[command(subcommand)]
    action: NodeAction,
    /// The kubeconfig `kube-sim serve` wrote.
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum NodeAction {
    /// Add (or replace) a Ready node: NAME=os/arch[/variant].
    Add {
        node: String,
        /// key=value:Effect; repeatable.
        #[arg(long = "taint")]
        taints: Vec<String>,
    },
    /// Remove a node: its pods fail and PodGC deletes them.
    Remove { name: String },
    /// Cordon the node and evict its pods (as `kubectl drain --force`).
    Drain { name: String },
    /// Take the node away: karpenter (consolidation), spot (node
    /// shutdown), taint (NoExecute taint manager) or preemption.
    Reclaim {
        name: String,
        #[arg(long, default_value = "karpenter")]
        how: String,
    },
}

#[derive(clap::Args)]
pub struct ClockCmd {
    /// The cluster's clock minus the host's, seconds.
    #[arg(long, allow_hyphen_values = true)]
    offset_seconds: i64,
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

pub fn node(cmd: NodeCmd) -> anyhow::Result<()> {
    let kc = kubeconfig(cmd.kubeconfig)?;
    let out = match cmd.action {
        NodeAction::Add { node, taints } => {
            let (name, platform) = node
                .split_once('=')
                .context("node must be NAME=os/arch[/variant]")?;
            request(
                &kc,
                "POST",
                "/kube-sim/nodes",
                &json!({"name": name, "platform": platform, "taints": taints}),
            )?
        }
        NodeAction::Remove { name } => request(
            &kc,
            "DELETE",
            &format!("/kube-sim/nodes/{name}"),
            &Value::Null,
        )?,
        NodeAction::Drain { name } => request(
            &kc,
            "POST",
            &format!("/kube-sim/nodes/{name}/drain"),
            &Value::Null,
        )?,
        NodeAction::Reclaim { name, how } => request(
            &kc,
            "POST",
            &format!("/kube-sim/nodes/{name}/reclaim"),
            &json!({"how": how}),
        )?,
    };
    println!("{out}");
    Ok(())
}

pub fn clock(cmd: ClockCmd) -> anyhow::Result<()> {
    let kc = kubeconfig(cmd.kubeconfig)?;
    let out = request(
        &kc,
        "PUT",
        "/kube-sim/clock",
        &json!({"offsetSeconds": cmd.offset_seconds}),
    )?;
    println!("{out}");
    Ok(())
}

fn kubeconfig(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    flag.or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
        .context("--kubeconfig (or KUBECONFIG) is required")
}

/// The first user's bearer token in the kubeconfig (the admin's in the one
/// `kube-sim serve` writes).
fn token(kubeconfig: &Path) -> anyhow::Result<String> {
    let kc: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(kubeconfig)?)?;
    Ok(kc["users"][0]["user"]["token"]
        .as_str()
        .unwrap_or("")
        .to_string())
}

/// `host:port` of the kubeconfig's current cluster (loopback; the API port
/// answers plain HTTP besides HTTPS).
fn server(kubeconfig: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let kc: Value = serde_yaml_ng::from_str(&text).context("parsing the kubeconfig")?;
    let url = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .context("the kubeconfig names no cluster server")?;
    let hostport = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .context("the kubeconfig's server is not a kube-sim URL")?;
    Ok(hostport.trim_end_matches('/').to_string())
}

/// One HTTP/1.1 request; the answer's JSON body, or an error with the
/// server's message.
fn request(kubeconfig: &Path, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
    let addr = server(kubeconfig)?;
    let token = token(kubeconfig)?;
    let payload = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut s =
        std::net::TcpStream::connect(&addr).with_context(|| format!("connecting to {addr}"))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nUser-Agent: kube-sim-cli\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let v: Value = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    if code != 200 {
        anyhow::bail!(
            "{method} {path}: {code} {}",
            v["message"].as_str().unwrap_or(body)
        );
    }
    Ok(v)
}
