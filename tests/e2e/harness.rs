//! End-to-end harness: the simulated cluster (tests/sim), a real registry,
//! the real operator binary as a child process, real buildah builds and the
//! real merge, all on loopback.

// The tests and the benchmark each use a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_sim::{NodeSpec, Sim, SimConfig};
use multiarch_operator::api::{MultiArchImage, Phase};
use multiarch_operator::render;
use serde_json::json;

use crate::common::{require_tool, Registry};

pub const NAMESPACE: &str = "default";
/// The operator's own namespace, ServiceAccount and Lease namespace, as the
/// rendered manifest names them.
pub const OPERATOR_NAMESPACE: &str = "multiarch-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "multiarch-operator";
/// Kinds of the rendered manifest that give the operator its identity and rights.
pub const IDENTITY_KINDS: [&str; 6] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];
/// Generous: the machine may be busy with other tests.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// The operator binary under test.
pub fn operator_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multiarch-operator"))
}

fn repository(image: &str) -> String {
    image
        .rsplit_once(':')
        .map(|(repo, _)| repo.to_string())
        .unwrap_or_default()
}

/// A simulated cluster whose kubelet runs buildah and the merge binary.
pub fn start_sim(nodes: &[(&str, &str)]) -> Sim {
    start_sim_with(nodes, |_| {})
}

/// `start_sim`, with the configuration changed by `adjust` (node groups,
/// clock offset, pull back-off...).
pub fn start_sim_with(nodes: &[(&str, &str)], adjust: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = sim_config(nodes);
    adjust(&mut config);
    Sim::start(config).expect("start the simulated cluster")
}

/// The configuration `start_sim` uses, for a test to change before starting.
pub fn sim_config(nodes: &[(&str, &str)]) -> SimConfig {
    require_tool("bwrap", "bubblewrap");
    require_tool("buildah", "buildah");
    SimConfig {
        nodes: nodes
            .iter()
            .map(|(name, platform)| NodeSpec::new(name, platform))
            .collect(),
        images: node_images(),
        ..SimConfig::default()
    }
}

/// The images a node runs, mapped to host programs: buildah and git from
/// the host, the operator's own image from the binary under test.
pub fn node_images() -> Vec<(String, Option<PathBuf>)> {
    let bin_dir = operator_binary().parent().unwrap().to_path_buf();
    vec![
        (repository(render::DEFAULT_BUILDAH_IMAGE), None),
        (repository(render::DEFAULT_GIT_IMAGE), None),
        (repository(render::DEFAULT_MERGE_IMAGE), Some(bin_dir)),
    ]
}

/// Installs the committed CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/multiarchimages.multiarch.dev.yaml"),
    )
    .unwrap();
    let document = text.split("\n---\n").nth(1).expect("the CRD document");
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(document).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.create(&PostParams::default(), &crd)
        .await
        .expect("create the CRD");
    let mais: Api<MultiArchImage> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the CRD to be served", Duration::from_secs(20), || async {
        mais.list(&ListParams::default())
            .await
            .is_ok()
            .then_some(())
    })
    .await;
}

/// The documents of deploy/multiarch-operator.yaml (the chart as rendered)
/// of the given kinds.
pub fn manifest_documents(kinds: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/multiarch-operator.yaml"),
    )
    .unwrap();
    text.split("\n---\n")
        .filter(|doc| {
            doc.lines()
                .any(|l| kinds.iter().any(|k| l == format!("kind: {k}")))
        })
        .map(str::to_string)
        .collect()
}

/// Applies the chart-rendered Namespace, ServiceAccount and RBAC
/// (deploy/multiarch-operator.yaml) into the cluster, so the operator runs
/// with exactly the rights it ships with.
pub fn install_operator_identity(sim: &Sim) {
    let docs = manifest_documents(&IDENTITY_KINDS);
    sim.apply_manifest(&docs.join("\n---\n"))
        .expect("apply the operator's ServiceAccount and RBAC");
}

/// Kinds of the rendered manifest that make up the chart's admission policy.
pub const POLICY_KINDS: [&str; 2] = [
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// Applies the chart-rendered admission policies (deploy/multiarch-operator.yaml)
/// as a release installs them: MultiArchImages are admitted only from who
/// holds the rights their spec uses, and the operator's ServiceAccount may
/// create only Jobs like its own.
pub fn install_admission_policy(sim: &Sim) {
    let docs = manifest_documents(&POLICY_KINDS);
    assert_eq!(
        docs.len(),
        4,
        "the manifest ships the two policies and their bindings"
    );
    sim.apply_manifest(&docs.join("\n---\n"))
        .expect("apply the admission policy");
}

/// A kubeconfig for the operator's ServiceAccount.
pub fn operator_kubeconfig(sim: &Sim, path: &Path) -> PathBuf {
    install_operator_identity(sim);
    let token = sim
        .service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
        .expect("a token for the operator's ServiceAccount");
    sim.write_kubeconfig_with_token(path, OPERATOR_SERVICE_ACCOUNT, &token)
        .unwrap();
    path.to_path_buf()
}

/// The operator, running as its own process against the simulated cluster,
/// as its ServiceAccount under the chart's RBAC.
pub struct Operator {
    extra: Vec<String>,
    /// Behind a lock so that a waiting test (holding `&World`) can restart
    /// an operator that stepped down, as the kubelet would.
    child: Mutex<Option<Child>>,
    kubeconfig: PathBuf,
    log: PathBuf,
    pub metrics_port: u16,
    starts: u32,
}

/// What the operator logs as it exits for a lost leader lease.
const LOST_LEASE: &str = "lost the leader lease";

impl Operator {
    pub fn start(sim: &Sim, log_dir: &Path) -> Operator {
        Self::start_with(sim, log_dir, &[])
    }

    /// Starts it with extra `controller` flags.
    pub fn start_with(sim: &Sim, log_dir: &Path, extra: &[&str]) -> Operator {
        let kubeconfig = operator_kubeconfig(sim, &log_dir.join("operator.kubeconfig"));
        Self::start_as(kubeconfig, log_dir, extra)
    }

    /// Starts it with the credentials of `kubeconfig` (any cluster's).
    pub fn start_as(kubeconfig: PathBuf, log_dir: &Path, extra: &[&str]) -> Operator {
        let mut operator = Operator {
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: Mutex::new(None),
            kubeconfig,
            log: log_dir.join("operator.log"),
            metrics_port: free_port(),
            starts: 0,
        };
        operator.spawn();
        operator
    }

    /// A new replica, with an identity of its own (a new pod).
    fn spawn(&mut self) {
        self.starts += 1;
        let child = self.command().spawn().expect("start the operator");
        *self.child.get_mut().unwrap() = Some(child);
    }

    fn command(&self) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Short enough that a restarted operator takes over soon, long
        // enough that a renewal slowed by a loaded machine still fits its
        // deadline (three quarters of it); a test may give its own.
        let lease: &[&str] = if self.extra.iter().any(|a| a == "--lease-duration-seconds") {
            &[]
        } else {
            &["--lease-duration-seconds", "8"]
        };
        let mut command = Command::new(operator_binary());
        command
            .args([
                "controller",
                "--metrics-addr",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--leader-election-namespace", OPERATOR_NAMESPACE])
            .args(lease)
            .args(["--identity", &format!("e2e-{}", self.starts)])
            .args(&self.extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        command
    }

    /// Restarts the operator, in place and under the same identity, when it
    /// exited because it lost its lease (its renewals went unanswered on a
    /// loaded machine): the kubelet restarts such a container, and the
    /// Deployment's pod keeps its name. Any other exit is left for the test
    /// to see.
    pub fn restart_if_it_lost_its_lease(&self) {
        let mut child = self.child.lock().unwrap();
        let Some(running) = child.as_mut() else {
            return;
        };
        // The exit's own last words, not an earlier run's.
        if running.try_wait().unwrap().is_none() || !tail(&self.log(), 3).contains(LOST_LEASE) {
            return;
        }
        eprintln!("the operator lost its lease and exited; restarting it as the kubelet would");
        *child = Some(self.command().spawn().expect("restart the operator"));
    }

    /// SIGKILL, as a crash or an evicted pod would end it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.get_mut().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop_gracefully(&mut self) -> std::process::ExitStatus {
        let slot = self.child.get_mut().unwrap();
        let child = slot.as_mut().expect("running");
        send_sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                *slot = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the operator did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for the operator to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let slot = self.child.get_mut().unwrap();
        let child = slot.as_mut().expect("running");
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                *slot = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

fn send_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP GET on loopback; the body when the status is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Everything one end-to-end test needs.
pub struct World {
    pub sim: Sim,
    pub registry: Registry,
    pub client: Client,
    pub operator: Operator,
    /// Holds the operator's log until the test ends.
    _dir: tempfile::TempDir,
}

impl World {
    pub async fn start(nodes: &[(&str, &str)]) -> World {
        Self::start_with(nodes, &[]).await
    }

    /// A world whose operator runs with extra `controller` flags.
    pub async fn start_with(nodes: &[(&str, &str)], operator_flags: &[&str]) -> World {
        Self::start_on(start_sim(nodes), operator_flags).await
    }

    /// A world whose cluster is configured by `adjust` as well.
    pub async fn start_configured(
        nodes: &[(&str, &str)],
        operator_flags: &[&str],
        adjust: impl FnOnce(&mut SimConfig),
    ) -> World {
        Self::start_on(start_sim_with(nodes, adjust), operator_flags).await
    }

    /// A world on a cluster the test started (and may have prepared).
    pub async fn start_on(sim: Sim, operator_flags: &[&str]) -> World {
        let registry = Registry::start_plain();
        let client = sim.client();
        install_crd(&client).await;
        install_admission_policy(&sim);
        let dir = tempfile::tempdir().unwrap();
        let operator = Operator::start_with(&sim, dir.path(), operator_flags);
        World {
            sim,
            registry,
            client,
            operator,
            _dir: dir,
        }
    }

    pub fn mais(&self) -> Api<MultiArchImage> {
        self.mais_in(NAMESPACE)
    }

    pub fn mais_in(&self, namespace: &str) -> Api<MultiArchImage> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn jobs(&self) -> Api<Job> {
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
        self.apply_in(NAMESPACE, name, platforms, context, extra_spec)
            .await
    }

    /// Like `apply`, in another namespace.
    pub async fn apply_in(
        &self,
        namespace: &str,
        name: &str,
        platforms: &[&str],
        context: &[(&str, &str)],
        extra_spec: serde_json::Value,
    ) {
        apply_context_build(
            &self.client,
            &self.registry,
            namespace,
            name,
            platforms,
            context,
            extra_spec,
        )
        .await
    }

    pub async fn get(&self, name: &str) -> MultiArchImage {
        self.mais().get(name).await.expect("get the MultiArchImage")
    }

    /// Waits until the resource reaches `phase` (failing fast, with the
    /// operator's log, if it reaches another terminal phase).
    pub async fn wait_phase(&self, name: &str, phase: Phase) -> MultiArchImage {
        wait_phase(&self.mais(), &self.operator, name, phase).await
    }
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), NAMESPACE);
        let selector = format!("involvedObject.name={name},involvedObject.kind=MultiArchImage");
        events
            .list(&ListParams::default().fields(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Waits for an event of `reason` about the resource.
    pub async fn wait_event(&self, name: &str, reason: &str) -> Event {
        let what = format!("event {reason} about {name}");
        eventually(&what, Duration::from_secs(15), || async {
            self.operator.restart_if_it_lost_its_lease();
            self.events(name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await
    }

    pub async fn job_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .jobs()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter_map(|j| j.metadata.name)
            .collect();
        names.sort();
        names
    }

    pub async fn delete(&self, name: &str) {
        self.mais()
            .delete(name, &DeleteParams::background())
            .await
            .expect("delete");
    }

    /// The log of `container` in the pod of each platform's current Job.
    pub async fn platform_logs(&self, resource: &MultiArchImage, container: &str) -> Vec<String> {
        use k8s_openapi::api::core::v1::Pod;
        let namespace = resource.metadata.namespace.as_deref().unwrap_or(NAMESPACE);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let mut logs = Vec::new();
        for platform in resource.status.clone().unwrap_or_default().platforms {
            let selector = format!("batch.kubernetes.io/job-name={}", platform.job);
            let listed = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .unwrap()
                .items;
            let name = listed[0].metadata.name.clone().unwrap();
            let params = kube::api::LogParams {
                container: Some(container.into()),
                ..Default::default()
            };
            logs.push(pods.logs(&name, &params).await.unwrap());
        }
        logs
    }
}

/// Applies a ConfigMap build context and a buildah MultiArchImage building it.
pub async fn apply_context_build(
    client: &Client,
    registry: &Registry,
    namespace: &str,
    name: &str,
    platforms: &[&str],
    context: &[(&str, &str)],
    extra_spec: serde_json::Value,
) {
    let data: serde_json::Map<String, serde_json::Value> = context
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let config_map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-context"), "namespace": namespace},
        "data": data,
    }))
    .unwrap();
    let params = PatchParams::apply("e2e").force();
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            &format!("{name}-context"),
            &params,
            &Patch::Apply(&config_map),
        )
        .await
        .expect("apply the context ConfigMap");
    let mut spec = json!({
        "image": registry.repo(&format!("e2e/{name}")),
        "tags": ["latest", "v1"],
        "platforms": platforms,
        "source": {"configMap": {"name": format!("{name}-context")}},
        "builder": {"strategy": "buildah"},
        "insecureRegistry": true,
    });
    for (k, v) in extra_spec.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let resource = json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    Api::<MultiArchImage>::namespaced(client.clone(), namespace)
        .patch(name, &params, &Patch::Apply(&resource))
        .await
        .expect("apply the MultiArchImage");
}

/// Waits until the resource reaches `phase` (failing fast, with the
/// operator's log, if it reaches another terminal phase).
pub async fn wait_phase(
    mais: &Api<MultiArchImage>,
    operator: &Operator,
    name: &str,
    phase: Phase,
) -> MultiArchImage {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        operator.restart_if_it_lost_its_lease();
        let resource = mais.get(name).await.expect("get the MultiArchImage");
        let status = resource.status.clone().unwrap_or_default();
        let current = status.phase;
        let generation_seen = status.observed_generation == resource.metadata.generation;
        if current == Some(phase) && generation_seen {
            return resource;
        }
        let terminal = matches!(current, Some(Phase::Succeeded | Phase::Failed));
        if (terminal && generation_seen && current != Some(phase)) || Instant::now() > deadline {
            panic!(
                "{name}: wanted {phase:?}, status is {}\noperator log tail:\n{}",
                serde_json::to_string_pretty(&status).unwrap(),
                tail(&operator.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls `check` until it yields a value, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A Dockerfile that copies one file, and that file.
pub fn hello_context(text: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
        ("hello.txt", text),
    ]
}

/// Every build Job and the merge Job of the current build exist exactly once.
pub async fn assert_one_job_per_platform(world: &World, name: &str, platforms: usize) {
    let resource = world.get(name).await;
    let build_id = resource.status.unwrap().build_id.unwrap();
    let ours: Vec<String> = world
        .job_names()
        .await
        .into_iter()
        .filter(|j| j.starts_with(&format!("{name}-")))
        .collect();
    // Job names carry the short form of the build id.
    let short = multiarch_operator::render::short_id(&build_id);
    let current: Vec<&String> = ours.iter().filter(|j| j.contains(short)).collect();
    assert_eq!(
        current.len(),
        platforms + 1,
        "one Job per platform and one merge Job: {ours:?}"
    );
    assert_eq!(
        ours.len(),
        current.len(),
        "no Job of another build is left: {ours:?}"
    );
    for job in &current {
        let creations = world
            .sim
            .history("batch/v1", "Job", NAMESPACE, job)
            .iter()
            .filter(|version| version["metadata"]["generation"] == json!(1))
            .filter_map(|version| version["metadata"]["uid"].as_str().map(String::from))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(creations, 1, "{job} was created once");
    }
}

/// The index lists each platform's pushed image, and a client of each
/// platform resolves the tag to an image of its own platform.
pub fn assert_clients_get_their_platform(
    name: &str,
    resource: &multiarch_operator::api::MultiArchImage,
) {
    let status = resource.status.clone().unwrap();
    for tag in &resource.spec.tags {
        let reference = format!("{}:{tag}", resource.spec.image);
        let raw = crate::common::inspect_raw(&reference, None).unwrap();
        let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), status.platforms.len(), "{name}: {index}");
        for (entry, platform) in manifests.iter().zip(&status.platforms) {
            let p = &entry["platform"];
            let mut spelled = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                spelled = format!("{spelled}/{v}");
            }
            assert_eq!(
                spelled, platform.platform,
                "{name}: index order follows spec.platforms"
            );
            assert_eq!(
                entry["digest"].as_str(),
                platform.digest.as_deref(),
                "{name}: {spelled}"
            );
            let resolved =
                crate::common::inspect_for_platform(&reference, &platform.platform, None);
            let mut got = format!("{}/{}", resolved.os, resolved.architecture);
            if !resolved.variant.is_empty() {
                got = format!("{got}/{}", resolved.variant);
            }
            assert_eq!(
                got, platform.platform,
                "{name}: a {} client of {reference}",
                platform.platform
            );
        }
    }
}
