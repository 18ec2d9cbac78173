//! The end-to-end world on the real control plane: Kubernetes v1.34
//! (kube_sim::upstream, built by scripts/upstream.sh), two node agents
//! (amd64, and arm64 tainted as GKE taints it), a real registry, and the
//! real operator as its ServiceAccount under the chart's RBAC, with the
//! chart's admission policies enforced by the real API server.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kube::{Api, Client};
use kube_sim::agent::{Agent, AgentConfig};
use kube_sim::upstream::{ControlPlane, ControlPlaneConfig};
use kube_sim::{NodeSpec, Taint};
use multiarch_operator::api::{MultiArchImage, Phase};

use crate::common::{require_tool, Registry};
use crate::harness::{
    apply_context_build, manifest_documents, node_images, wait_phase, Operator, IDENTITY_KINDS,
    NAMESPACE, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, POLICY_KINDS,
};

pub struct RealWorld {
    pub plane: ControlPlane,
    pub registry: Registry,
    pub client: Client,
    pub operator: Operator,
    _agents: Vec<Agent>,
    _dir: tempfile::TempDir,
}

impl RealWorld {
    pub async fn start(operator_flags: &[&str]) -> RealWorld {
        Self::start_with(operator_flags, |_| {}).await
    }

    /// A world whose control plane is configured by `adjust` as well.
    pub async fn start_with(
        operator_flags: &[&str],
        adjust: impl FnOnce(&mut ControlPlaneConfig),
    ) -> RealWorld {
        require_tool("bwrap", "bubblewrap");
        require_tool("buildah", "buildah");
        require_tool("kubectl", "kubernetes-client");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut config = ControlPlaneConfig::locate(root).expect("the real control plane");
        adjust(&mut config);
        let plane = tokio::task::spawn_blocking(move || ControlPlane::start(config))
            .await
            .unwrap()
            .expect("start the real control plane");
        let dir = tempfile::tempdir().unwrap();
        let agent = |node: NodeSpec| {
            let mut cfg = AgentConfig::new(
                plane.kubeconfig_path().to_path_buf(),
                node,
                dir.path().join("nodes"),
            );
            cfg.images = node_images();
            Agent::start(cfg).expect("start a node agent")
        };
        let agents = vec![
            agent(NodeSpec::new("node-amd64", "linux/amd64")),
            agent(
                NodeSpec::new("node-arm64", "linux/arm64").with_taint(Taint::new(
                    "kubernetes.io/arch",
                    "arm64",
                    "NoSchedule",
                )),
            ),
        ];
        let crd =
            std::fs::read_to_string(root.join("crds/multiarchimages.multiarch.dev.yaml")).unwrap();
        kubectl_apply(&plane, &crd);
        let established = plane
            .kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd/multiarchimages.multiarch.dev",
                "--timeout=60s",
            ])
            .unwrap();
        assert!(established.status.success(), "the CRD is established");
        kubectl_apply(&plane, &manifest_documents(&IDENTITY_KINDS).join("\n---\n"));
        kubectl_apply(&plane, &manifest_documents(&POLICY_KINDS).join("\n---\n"));
        let token = plane
            .service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
            .expect("a token for the operator's ServiceAccount");
        let kubeconfig = dir.path().join("operator.kubeconfig");
        plane
            .write_kubeconfig_with_token(&kubeconfig, OPERATOR_SERVICE_ACCOUNT, &token)
            .unwrap();
        let operator = Operator::start_as(kubeconfig, dir.path(), operator_flags);
        RealWorld {
            client: plane.client().unwrap(),
            registry: Registry::start_plain(),
            plane,
            operator,
            _agents: agents,
            _dir: dir,
        }
    }

    pub fn mais(&self) -> Api<MultiArchImage> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    /// Applies a ConfigMap build context and a buildah MultiArchImage.
    pub async fn apply(
        &self,
        name: &str,
        platforms: &[&str],
        context: &[(&str, &str)],
        extra_spec: serde_json::Value,
    ) {
        apply_context_build(
            &self.client,
            &self.registry,
            NAMESPACE,
            name,
            platforms,
            context,
            extra_spec,
        )
        .await
    }

    pub async fn wait_phase(&self, name: &str, phase: Phase) -> MultiArchImage {
        wait_phase(&self.mais(), &self.operator, name, phase).await
    }
}

/// `kubectl apply -f -` as the admin: the real client against the real
/// API server, with its validation.
pub fn kubectl_apply(plane: &ControlPlane, yaml: &str) {
    let args = ["apply", "--server-side", "-f", "-"];
    let out = kubectl_with_input(plane.kubeconfig_path(), &args, yaml);
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The real kubectl with `kubeconfig`, `input` on its standard input.
pub fn kubectl_with_input(kubeconfig: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl (Debian package kubernetes-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
