//! The real Kubernetes control plane, run on loopback: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler v1.34, from
//! the multi-call binary `scripts/upstream.sh` builds from their Go modules
//! (tests/upstream/kube). With node agents (`crate::agent`) it is a whole
//! cluster whose every rule is upstream's own.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Kubernetes version of tests/upstream/kube/go.mod.
pub const KUBERNETES_VERSION: &str = "v1.34.4";
/// Where `scripts/upstream.sh` caches the binary, under the repository root.
pub const CACHED_BINARY: &str = ".cache/upstream/kube-v1.34.4/upstream-kube";
/// The environment variable naming the binary elsewhere.
pub const BINARY_ENV: &str = "MULTIARCH_UPSTREAM_KUBE";
/// How long the API server and its controllers may take to come up on a
/// loaded two-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the control plane runs with.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// The multi-call binary (`upstream-kube etcd|kube-apiserver|...`).
    pub binary: PathBuf,
    /// kube-controller-manager's `--terminated-pod-gc-threshold`.
    pub terminated_pod_gc_threshold: usize,
    /// Extra kube-apiserver flags.
    pub apiserver_flags: Vec<String>,
}

impl ControlPlaneConfig {
    /// The cached binary below `repo_root` (or `$MULTIARCH_UPSTREAM_KUBE`);
    /// the error says how to build it.
    pub fn locate(repo_root: &Path) -> anyhow::Result<ControlPlaneConfig> {
        let binary = std::env::var_os(BINARY_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root.join(CACHED_BINARY));
        if !binary.is_file() {
            bail!(
                "the real control plane ({}) is not built: run `bash scripts/upstream.sh` \
                 (it needs Go and the Go module proxy), or set {BINARY_ENV}",
                binary.display()
            );
        }
        Ok(ControlPlaneConfig {
            binary,
            terminated_pod_gc_threshold: crate::DEFAULT_TERMINATED_POD_GC_THRESHOLD,
            apiserver_flags: vec![],
        })
    }
}

/// A running control plane; every process stops on drop.
pub struct ControlPlane {
    processes: Vec<(String, Child)>,
    dir: tempfile::TempDir,
    port: u16,
    ca_pem: String,
    kubeconfig: PathBuf,
}

/// The static tokens of `--token-auth-file`: the admin, then the
/// identities the default RBAC policy grants the controller manager and the
/// scheduler (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go).
const ADMIN: (&str, &str, &str) = ("kubernetes-admin", "kubernetes-admin", "system:masters");
const COMPONENTS: [(&str, &str); 2] = [
    ("kube-controller-manager", "system:kube-controller-manager"),
    ("kube-scheduler", "system:kube-scheduler"),
];

impl ControlPlane {
    /// Starts etcd, the API server, the controller manager and the
    /// scheduler; returns once the API server is ready and the controller
    /// manager has made the `default` ServiceAccount.
    pub fn start(config: ControlPlaneConfig) -> anyhow::Result<ControlPlane> {
        let dir = tempfile::Builder::new()
            .prefix("kube-upstream-")
            .tempdir()?;
        let d = dir.path();
        let pki = Pki::generate(d)?;
        let tokens: Vec<(&str, &str, &str)> = std::iter::once(ADMIN)
            .chain(COMPONENTS.iter().map(|(c, user)| (*c, *user, "")))
            .collect();
        let mut token_file = String::new();
        let mut secrets = vec![];
        for (i, (name, user, group)) in tokens.iter().enumerate() {
            let token = format!("{}{i}", random_hex());
            token_file.push_str(&format!("{token},{user},{user}"));
            if !group.is_empty() {
                token_file.push_str(&format!(",{group}"));
            }
            token_file.push('\n');
            secrets.push((name.to_string(), token));
        }
        write_private(&d.join("tokens.csv"), &token_file)?;
        let (etcd_client, etcd_peer, port) = (free_port()?, free_port()?, free_port()?);
        let server = format!("https://127.0.0.1:{port}");
        for (name, token) in &secrets {
            crate::auth::write_kubeconfig(
                &d.join(format!("{name}.kubeconfig")),
                &server,
                &pki.ca_pem,
                &[(name.clone(), token.clone())],
            )?;
        }
        let mut plane = ControlPlane {
            processes: vec![],
            port,
            ca_pem: pki.ca_pem.clone(),
            kubeconfig: d.join(format!("{}.kubeconfig", ADMIN.0)),
            dir,
        };
        let d = plane.dir.path().to_path_buf();
        let path = |f: &str| d.join(f).display().to_string();
        plane.spawn(
            &config.binary,
            "etcd",
            &[
                "--name=default".into(),
                format!("--data-dir={}", path("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
                // A test cluster's data need not survive a power cut.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let mut apiserver = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", path("apiserver.crt")),
            format!("--tls-private-key-file={}", path("apiserver.key")),
            format!("--token-auth-file={}", path("tokens.csv")),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--allow-privileged=true".into(),
            "--profiling=false".into(),
        ];
        apiserver.extend(config.apiserver_flags.iter().cloned());
        plane.spawn(&config.binary, "kube-apiserver", &apiserver)?;
        plane.wait_ready()?;
        plane.spawn(
            &config.binary,
            "kube-controller-manager",
            &[
                format!(
                    "--kubeconfig={}",
                    path("kube-controller-manager.kubeconfig")
                ),
                format!("--service-account-private-key-file={}", path("sa.key")),
                format!("--root-ca-file={}", path("ca.crt")),
                "--use-service-account-credentials=true".into(),
                format!(
                    "--terminated-pod-gc-threshold={}",
                    config.terminated_pod_gc_threshold
                ),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--profiling=false".into(),
            ],
        )?;
        plane.spawn(
            &config.binary,
            "kube-scheduler",
            &[
                format!("--kubeconfig={}", path("kube-scheduler.kubeconfig")),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--profiling=false".into(),
            ],
        )?;
        plane.wait_for_default_service_account()?;
        Ok(plane)
    }

    fn spawn(&mut self, binary: &Path, name: &str, args: &[String]) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))?;
        let child = Command::new(binary)
            .arg(name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {name}", binary.display()))?;
        self.processes.push((name.to_string(), child));
        Ok(())
    }

    /// Fails with the log's tail when a process has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.processes {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("{name} exited ({status}):\n{}", tail.join("\n"));
            }
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            let out = Command::new("kubectl")
                .args(["--kubeconfig", &self.kubeconfig.display().to_string()])
                .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
                .output();
            match out {
                Ok(o) if o.status.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => bail!("kubectl (Debian package kubernetes-client): {e}"),
            }
            if Instant::now() > deadline {
                bail!("kube-apiserver was not ready in {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_for_default_service_account(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive()?;
            let out = self.kubectl(&["get", "serviceaccount", "default", "-n", "default"])?;
            let ca = self.kubectl(&["get", "configmap", "kube-root-ca.crt", "-n", "default"])?;
            if out.status.success() && ca.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "kube-controller-manager made no default ServiceAccount in {START_TIMEOUT:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs the real kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new("kubectl")
            .args(["--kubeconfig", &self.kubeconfig.display().to_string()])
            .args(args)
            .output()
            .context("kubectl (Debian package kubernetes-client)")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The admin's kubeconfig (`system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA of the API server's certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The admin's bearer token.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let csv = std::fs::read_to_string(self.dir.path().join("tokens.csv"))?;
        csv.lines()
            .next()
            .and_then(|l| l.split(',').next())
            .map(String::from)
            .context("no admin token")
    }

    /// A kube-rs client as the admin.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_with_token(&self.admin_token()?)
    }

    /// A kube-rs client authenticating with `token`.
    pub fn client_with_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        let mut cfg = kube::Config::new(self.url().parse()?);
        cfg.default_namespace = "default".into();
        let der = pem_to_der(&self.ca_pem)?;
        cfg.root_cert = Some(vec![der]);
        cfg.auth_info.token = Some(token.to_string().into());
        Ok(kube::Client::try_from(cfg)?)
    }

    /// A token for an existing ServiceAccount (the TokenRequest API, as
    /// `kubectl create token`), valid for an hour.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> anyhow::Result<String> {
        let out = self.kubectl(&["create", "token", name, "-n", namespace, "--duration=1h"])?;
        if !out.status.success() {
            bail!(
                "kubectl create token {namespace}/{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Writes a kubeconfig that authenticates with `token`.
    pub fn write_kubeconfig_with_token(
        &self,
        path: &Path,
        context: &str,
        token: &str,
    ) -> anyhow::Result<()> {
        crate::auth::write_kubeconfig(
            path,
            &self.url(),
            &self.ca_pem,
            &[(context.into(), token.into())],
        )?;
        Ok(())
    }

    /// A component's log so far (`kube-apiserver`, `etcd`, ...).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controllers first, etcd last, as a real shutdown goes.
        for (_, child) in self.processes.iter_mut().rev() {
            // SAFETY: kill(2) on the pid of a child we started.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        for (_, child) in self.processes.iter_mut().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The cluster CA, the API server's serving certificate and the
/// ServiceAccount signing key, written into the control plane's folder.
struct Pki {
    ca_pem: String,
}

impl Pki {
    fn generate(dir: &Path) -> anyhow::Result<Pki> {
        // The names kubeadm puts in an API server's certificate.
        let (ca, cert, key) = crate::tls::issue(
            "kubernetes-ca",
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.96.0.1",
            ],
        )?;
        std::fs::write(dir.join("ca.crt"), ca.pem())?;
        std::fs::write(dir.join("apiserver.crt"), cert.pem())?;
        write_private(&dir.join("apiserver.key"), &key.serialize_pem())?;
        // ES256 service account tokens: the API server takes ECDSA keys
        // (k8s.io/client-go/util/keyutil parses PKCS#8 and PKIX PEM).
        let sa = rcgen::KeyPair::generate()?;
        write_private(&dir.join("sa.key"), &sa.serialize_pem())?;
        std::fs::write(dir.join("sa.pub"), sa.public_key_pem())?;
        Ok(Pki { ca_pem: ca.pem() })
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    crate::api::b64_decode(&body).context("the CA is not PEM")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
