//! `kube-sim serve` with a node group, and `kube-sim node ...` changing
//! the running cluster, observed through the real kubectl.

mod common;

use common::Kubectl;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: signalling the child we spawned.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn kube_sim(kc: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kube-sim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn node_groups_and_node_commands_on_a_served_cluster() {
    common::require_tool("bwrap", "bubblewrap");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "serve",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--node",
            "n1=linux/amd64",
            "--node-group",
            "arm=linux/arm64,min=0,max=1,delay=1s,scale-down-unneeded=1s,taint=kubernetes.io/arch=arm64:NoSchedule",
            "--image",
            "busybox",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    let start = Instant::now();
    while !kc.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no kubeconfig");
        std::thread::sleep(Duration::from_millis(50));
    }
    let k = Kubectl::new(&kc);
    // A pending arm64 pod that tolerates the group's taint scales it up.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: arm}\nspec:\n  restartPolicy: Never\n  nodeSelector: {kubernetes.io/arch: arm64}\n  tolerations: [{key: kubernetes.io/arch, operator: Exists}]\n  containers: [{name: c, image: busybox, command: ['true']}]\n";
    k.ok_stdin(&["apply", "-f", "-"], pod);
    k.until(
        &["get", "pod", "arm", "-o", "jsonpath={.status.phase}"],
        "the arm pod to succeed on a new node",
        |o| o == "Succeeded",
    );
    let node = k.ok(&["get", "pod", "arm", "-o", "jsonpath={.spec.nodeName}"]);
    assert!(node.starts_with("arm-"), "{node}");
    let taint = k.ok(&[
        "get",
        "node",
        &node,
        "-o",
        "jsonpath={.spec.taints[0].value}",
    ]);
    assert_eq!(taint, "arm64");
    // Idle: removed again.
    k.until(
        &[
            "get",
            "nodes",
            "-l",
            "kube-sim/node-group=arm",
            "-o",
            "name",
        ],
        "the idle group node removed",
        |o| o.trim().is_empty(),
    );

    // Nodes added, drained and removed from the command line.
    kube_sim(&kc, &["node", "add", "n2=linux/arm64"]);
    let arch = k.ok(&[
        "get",
        "node",
        "n2",
        "-o",
        "jsonpath={.status.nodeInfo.architecture}",
    ]);
    assert_eq!(arch, "arm64");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: long}\nspec:\n  nodeName: n2\n  containers: [{name: c, image: busybox, command: ['sleep', '300']}]\n";
    k.ok_stdin(&["apply", "-f", "-"], pod);
    k.until(
        &["get", "pod", "long", "-o", "jsonpath={.status.phase}"],
        "the long pod running",
        |o| o == "Running",
    );
    let out = kube_sim(&kc, &["node", "drain", "n2"]);
    assert!(out.contains("long"), "{out}");
    k.until(
        &["get", "pods", "-o", "name"],
        "the drained pod gone",
        |o| !o.contains("pod/long"),
    );
    assert_eq!(
        k.ok(&["get", "node", "n2", "-o", "jsonpath={.spec.unschedulable}"]),
        "true"
    );
    kube_sim(&kc, &["node", "remove", "n2"]);
    k.until(&["get", "nodes", "-o", "name"], "n2 removed", |o| {
        !o.contains("node/n2")
    });
    // An unknown node is an error.
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["node", "remove", "nope", "--kubeconfig"])
        .arg(&kc)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    kube_sim(&kc, &["clock", "--offset-seconds", "-60"]);
}
