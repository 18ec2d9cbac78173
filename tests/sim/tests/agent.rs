//! The node agent (`kube_sim::agent`) against an API server it reaches
//! only through its kubeconfig: here kube-sim's own (over HTTPS), whose
//! in-process kubelet leaves the agent's node alone. The agent registers
//! its Node and Lease, runs the pods bound to it, writes their status
//! without disturbing other writers' conditions, records Events, deletes
//! terminating pods once stopped, and serves logs the way a kubelet does.

mod common;

use common::{eventually, require_tool, LONG};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_sim::agent::{Agent, AgentConfig, KUBELET_VERSION, LEASE_DURATION_SECONDS};
use kube_sim::{NodeSpec, Sim, SimConfig, Taint};
use serde_json::json;

fn pod(name: &str, script: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "nodeSelector": {"kubernetes.io/hostname": "agent-arm"},
            "tolerations": [{"key": "kubernetes.io/arch", "operator": "Exists"}],
            // What the ServiceAccount admission plugin of a real API server
            // adds (plugin/pkg/admission/serviceaccount, TokenVolumeSource).
            "volumes": [
                {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "root-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ]}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            ],
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script],
                "volumeMounts": [
                    {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                    {"name": "info", "mountPath": "/etc/podinfo"},
                ]}],
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn an_agent_registers_its_node_and_runs_its_pods() {
    require_tool("bwrap", "bubblewrap");
    let sim = Sim::start(SimConfig {
        images: vec![("busybox".into(), None)],
        ..Default::default()
    })
    .expect("start kube-sim");
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "root-ca"}, "data": {"ca.crt": sim.ca_pem()}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();

    let work = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new("agent-arm", "linux/arm64").with_taint(Taint::new(
        "kubernetes.io/arch",
        "arm64",
        "NoSchedule",
    ));
    let mut cfg = AgentConfig::new(
        sim.kubeconfig_path().to_path_buf(),
        spec,
        work.path().into(),
    );
    cfg.node.labels.push(("pool".into(), "arm".into()));
    cfg.images.push(("busybox".into(), None));
    let agent = Agent::start(cfg).expect("start the agent");

    // The Node, as a kubelet registers it, Ready; its Lease.
    let nodes: Api<Node> = Api::all(client.clone());
    let n = nodes.get("agent-arm").await.unwrap();
    let labels = n.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/arch"], "arm64");
    assert_eq!(labels["pool"], "arm");
    let taints = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap();
    assert_eq!(taints[0].key, "kubernetes.io/arch");
    let status = n.status.unwrap();
    assert_eq!(status.node_info.unwrap().kubelet_version, KUBELET_VERSION);
    let endpoint = status.daemon_endpoints.unwrap().kubelet_endpoint.unwrap();
    assert_eq!(endpoint.port, agent.kubelet_port() as i32);
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = leases.get("agent-arm").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("agent-arm"));
    assert_eq!(
        lease.lease_duration_seconds,
        Some(LEASE_DURATION_SECONDS as i32)
    );

    // A pod the sim's scheduler places on the agent's node: the agent runs
    // it, with the projected ServiceAccount volume and the downward API.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let script = "echo ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace); \
        test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token; \
        grep -q 'BEGIN CERTIFICATE' /var/run/secrets/kubernetes.io/serviceaccount/ca.crt && echo ca; \
        cat /etc/podinfo/labels; echo; echo api=$KUBERNETES_SERVICE_HOST; \
        echo done > /dev/termination-log; exit 3";
    pods.create(&PostParams::default(), &pod("once", script))
        .await
        .unwrap();
    let done = eventually("the agent's pod to fail", LONG, || async {
        let p = pods.get("once").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
    })
    .await;
    let st = done.status.unwrap();
    assert_eq!(done.spec.unwrap().node_name.as_deref(), Some("agent-arm"));
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    let cs = &st.container_statuses.unwrap()[0];
    let term = cs.state.as_ref().unwrap().terminated.clone().unwrap();
    assert_eq!(term.exit_code, 3);
    assert_eq!(term.message.as_deref(), Some("done\n"));
    // The scheduler's condition survives the kubelet's status writes.
    let conds = st.conditions.unwrap();
    let ty = |t: &str| {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    assert_eq!(ty("PodScheduled").as_deref(), Some("True"));
    assert_eq!(ty("Ready").as_deref(), Some("False"));

    // Logs from the agent's own endpoint, as the API server asks for them.
    let mut kcfg = kube::Config::new(
        format!("https://127.0.0.1:{}", agent.kubelet_port())
            .parse()
            .unwrap(),
    );
    kcfg.accept_invalid_certs = true;
    let kubelet = kube::Client::try_from(kcfg).unwrap();
    let get = |path: &str| {
        http::Request::get(path.to_string())
            .body(Vec::new())
            .unwrap()
    };
    let log = kubelet
        .request_text(get("/containerLogs/default/once/main"))
        .await
        .unwrap();
    for want in ["ns=default", "token", "ca", "app=\"once\"", "api=127.0.0.1"] {
        assert!(log.lines().any(|l| l == want), "{want} not in {log:?}");
    }
    let tail = kubelet
        .request_text(get("/containerLogs/default/once/main?tailLines=1"))
        .await
        .unwrap();
    assert_eq!(tail, "api=127.0.0.1\n");
    let missing = kubelet
        .request_text(get("/containerLogs/default/once/nope"))
        .await;
    assert!(missing.is_err(), "{missing:?}");

    // Events from the kubelet on this node.
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let started = eventually("a Started event", LONG, || async {
        let evs = events.list(&ListParams::default()).await.ok()?;
        evs.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some("once")
                && e.reason.as_deref() == Some("Started")
        })
    })
    .await;
    let source = started.source.unwrap();
    assert_eq!(source.component.as_deref(), Some("kubelet"));
    assert_eq!(source.host.as_deref(), Some("agent-arm"));

    // A running pod deleted gracefully: stopped, then removed by the agent.
    pods.create(&PostParams::default(), &pod("sleeper", "sleep 300"))
        .await
        .unwrap();
    eventually("the sleeper to run", LONG, || async {
        let p = pods.get("sleeper").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the sleeper to be gone", LONG, || async {
        pods.get_opt("sleeper")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;

    // Stopping the agent kills what it runs.
    pods.create(&PostParams::default(), &pod("orphan", "sleep 4243"))
        .await
        .unwrap();
    eventually("the orphan to run", LONG, || async {
        let p = pods.get("orphan").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    assert!(running("sleep 4243"));
    drop(agent);
    assert!(
        !running("sleep 4243"),
        "the orphan's process outlived the agent"
    );
}

/// Whether a process whose command line (NUL-separated) holds this runs.
fn running(cmdline: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(cmdline))
    })
}

/// `kube-sim kubelet`: the agent as a process, stopped by SIGTERM.
#[tokio::test]
async fn the_kubelet_command_serves_a_node_until_sigterm() {
    require_tool("bwrap", "bubblewrap");
    let sim = Sim::start(SimConfig::default()).expect("start kube-sim");
    let work = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .arg("kubelet")
        .arg("--kubeconfig")
        .arg(sim.kubeconfig_path())
        .args(["--node", "agent-arm=linux/arm64"])
        .args(["--taint", "kubernetes.io/arch=arm64:NoSchedule"])
        .args(["--label", "pool=arm", "--image", "busybox"])
        .arg("--workdir")
        .arg(work.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = sim.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually("the agent's node", LONG, || async {
        nodes.get_opt("agent-arm").await.ok().flatten()
    })
    .await;
    assert_eq!(node.metadata.labels.unwrap()["pool"], "arm");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("cli", "sleep 4244");
    p.spec.as_mut().unwrap().volumes = None;
    p.spec.as_mut().unwrap().containers[0].volume_mounts = None;
    pods.create(&PostParams::default(), &p).await.unwrap();
    eventually("the pod to run", LONG, || async {
        let p = pods.get("cli").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    assert!(running("sleep 4244"));
    // SAFETY: signalling the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
    assert!(
        !running("sleep 4244"),
        "the pod outlived `kube-sim kubelet`"
    );
}
