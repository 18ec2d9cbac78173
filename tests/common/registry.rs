//! A real registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on a free loopback port, plain or with htpasswd (Basic) auth.
//!
//! The registry runs under a small `sh` that kills it when our end of its
//! stdin closes: on drop, and also when the test process exits or dies in
//! any way, so even the shared registries (statics are never dropped) do
//! not outlive the tests.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::tools::{require_tool, run_checked};

/// The user of the shared htpasswd registry.
pub const AUTH_USER: &str = "merge-tester";
/// Its password: distinctive, so a test can assert it never appears in output.
pub const AUTH_PASSWORD: &str = "Pw-7c1f9e2b-never-print-me";

pub struct Registry {
    host: String,
    credentials: Option<(String, String)>,
    dir: tempfile::TempDir,
    supervisor: Child,
    /// Closing it tells the supervisor to kill the registry.
    lifeline: Option<ChildStdin>,
}

/// Runs `docker-registry serve CONFIG` under the supervising `sh`,
/// appending to `log`; returns the supervisor and its lifeline.
fn spawn_supervised(binary: &Path, config: &Path, log: &Path) -> (Child, Option<ChildStdin>) {
    let mut supervisor = Command::new("sh")
        .args([
            "-c",
            r#""$0" serve "$1" >>"$2" 2>&1 </dev/null & pid=$!; read _ignored; kill "$pid"; wait "$pid""#,
        ])
        .arg(binary)
        .arg(config)
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let lifeline = supervisor.stdin.take();
    (supervisor, lifeline)
}

impl Registry {
    /// A registry without authentication.
    pub fn start_plain() -> Registry {
        Self::start(None, false)
    }

    /// A registry serving HTTPS with a self-signed certificate no client
    /// trusts: what `--insecure-registry` (unverified TLS) is for.
    pub fn start_self_signed() -> Registry {
        Self::start(None, true)
    }

    /// A registry that wants HTTP Basic credentials (`auth: htpasswd`,
    /// answering `WWW-Authenticate: Basic`), for this one user.
    pub fn start_htpasswd(user: &str, password: &str) -> Registry {
        Self::start(Some((user.to_string(), password.to_string())), false)
    }

    fn start(credentials: Option<(String, String)>, tls: bool) -> Registry {
        // A port found free can be taken before the registry binds it: retry.
        let mut last_log = String::new();
        for _ in 0..5 {
            let registry = Self::try_start(credentials.clone(), tls);
            if registry.wait_until_ready(Duration::from_secs(30)) {
                return registry;
            }
            last_log = registry.log();
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    fn try_start(credentials: Option<(String, String)>, tls: bool) -> Registry {
        let binary = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let mut auth_section = String::new();
        if let Some((user, password)) = &credentials {
            let htpasswd = require_tool("htpasswd", "apache2-utils");
            let out = run_checked(Command::new(htpasswd).args(["-Bbn", user, password]));
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, out.stdout).expect("write htpasswd");
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                path.display()
            );
        }
        let mut tls_section = String::new();
        if tls {
            let key = rcgen::KeyPair::generate().expect("a key");
            let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .expect("certificate parameters")
                .self_signed(&key)
                .expect("a self-signed certificate");
            let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
            std::fs::write(&cert_path, cert.pem()).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            tls_section = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert_path.display(),
                key_path.display()
            );
        }
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-only-upload-secret\n{tls_section}{auth_section}",
                dir.path().join("data").display()
            ),
        )
        .expect("write registry config");
        let log = dir.path().join("registry.log");
        let (supervisor, lifeline) = spawn_supervised(&binary, &config, &log);
        Registry {
            host: format!("127.0.0.1:{port}"),
            credentials,
            dir,
            supervisor,
            lifeline,
        }
    }

    fn stop(&mut self) {
        self.lifeline.take();
        let _ = self.supervisor.wait();
    }

    /// Stops the registry process (as an outage would), keeping its port,
    /// configuration and storage for [`Registry::serve_again`].
    pub fn stop_serving(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while http_status(&self.host, "/v2/").is_some() {
            assert!(Instant::now() < deadline, "the registry did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether something answers on the registry's port.
    pub fn is_serving(&self) -> bool {
        http_status(&self.host, "/v2/").is_some()
    }

    /// Starts the registry again on the same port with the same storage
    /// (after [`Registry::stop_serving`]); waits until it answers.
    pub fn serve_again(&mut self) {
        assert!(self.lifeline.is_none(), "the registry is still serving");
        let binary = require_tool("docker-registry", "docker-registry");
        let config = self.dir.path().join("config.yml");
        let log = self.dir.path().join("registry.log");
        let (supervisor, lifeline) = spawn_supervised(&binary, &config, &log);
        self.supervisor = supervisor;
        self.lifeline = lifeline;
        assert!(
            self.wait_until_ready(Duration::from_secs(30)),
            "docker-registry did not start again on {}; its log:\n{}",
            self.host,
            self.log()
        );
    }

    fn wait_until_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = http_status(&self.host, "/v2/") {
                // 401 is a ready registry that wants credentials; 400 one
                // that serves HTTPS only (Go's answer to plain HTTP).
                if status == 200 || status == 401 || status == 400 {
                    return true;
                }
            }
            if self.log().contains("address already in use") {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:PORT`: pass it to `--insecure-registry`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `127.0.0.1:PORT/<repository>`.
    pub fn repo(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host)
    }

    /// The user and password of an htpasswd registry.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// `user:password` for buildah/skopeo `--creds`.
    pub fn creds_arg(&self) -> Option<String> {
        self.credentials().map(|(u, p)| format!("{u}:{p}"))
    }

    /// Writes a docker config.json with this registry's credentials (the
    /// `auth` base64 form a `kubernetes.io/dockerconfigjson` Secret holds)
    /// into `dir`, and returns its path.
    pub fn write_docker_config(&self, dir: &Path) -> PathBuf {
        let (user, password) = self
            .credentials()
            .expect("write_docker_config needs an htpasswd registry");
        write_docker_config(dir, &[(self.host(), user, password)])
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a docker config.json holding `(registry key, user, password)`
/// entries in the `auth` form, into `dir`; returns its path.
pub fn write_docker_config(dir: &Path, entries: &[(&str, &str, &str)]) -> PathBuf {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(key, user, password)| {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (key.to_string(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string())
        .expect("write config.json");
    path
}

/// A plain registry shared by every test of this test binary.
pub fn shared_plain_registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::start_plain)
}

/// An htpasswd registry (user [`AUTH_USER`], password [`AUTH_PASSWORD`])
/// shared by every test of this test binary.
pub fn shared_auth_registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry::start_htpasswd(AUTH_USER, AUTH_PASSWORD))
}

/// A loopback port that nothing listens on (for "unreachable" tests).
pub fn closed_port() -> u16 {
    free_port()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// The HTTP status of a GET, or None when nothing answers.
pub fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}
