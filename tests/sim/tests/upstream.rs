//! The real control plane (`kube_sim::upstream`, Kubernetes v1.34 built by
//! scripts/upstream.sh) with two node agents is a whole cluster: the real
//! scheduler places a Job's pod by architecture and taint, the real Job
//! controller completes it, and `kubectl logs` reaches the agent through
//! the real API server.

mod common;

use common::{eventually, require_tool, LONG};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube_sim::agent::{Agent, AgentConfig};
use kube_sim::upstream::{ControlPlane, ControlPlaneConfig};
use kube_sim::{NodeSpec, Taint};
use serde_json::json;
use std::path::Path;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_the_real_control_plane_on_the_node_of_its_architecture() {
    require_tool("bwrap", "bubblewrap");
    require_tool("kubectl", "kubernetes-client");
    let config = ControlPlaneConfig::locate(repo_root()).unwrap();
    let plane = tokio::task::spawn_blocking(move || ControlPlane::start(config))
        .await
        .unwrap()
        .expect("start the real control plane");
    let work = tempfile::tempdir().unwrap();
    let agent = |node: NodeSpec| {
        let mut cfg = AgentConfig::new(
            plane.kubeconfig_path().to_path_buf(),
            node,
            work.path().to_path_buf(),
        );
        cfg.images = vec![("busybox".into(), None)];
        Agent::start(cfg).expect("start a node agent")
    };
    let _amd = agent(NodeSpec::new("node-amd64", "linux/amd64"));
    let _arm = agent(
        NodeSpec::new("node-arm64", "linux/arm64").with_taint(Taint::new(
            "kubernetes.io/arch",
            "arm64",
            "NoSchedule",
        )),
    );
    let client = plane.client().unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "hello"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/arch": "arm64"},
            "tolerations": [{"key": "kubernetes.io/arch", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}],
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "echo hello from $(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"]}],
        }}},
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    eventually("the Job to complete", LONG, || async {
        let job = jobs.get("hello").await.ok()?;
        (job.status?.succeeded? == 1).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=hello"))
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-arm64"),
        "the real scheduler placed it by architecture, past the taint"
    );
    let name = pod.metadata.name.unwrap();
    let logs = plane.kubectl(&["logs", &name]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&logs.stdout).trim(),
        "hello from default",
        "kubectl logs through the real API server: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
}
