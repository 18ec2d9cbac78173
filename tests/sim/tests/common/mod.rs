//! Helpers shared by the kube-sim integration tests.
#![allow(dead_code)]

use kube_sim::{Sim, SimConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Fail (never skip) when a tool the test drives is missing.
pub fn require_tool(cmd: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(cmd))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{cmd}` not found: install the Debian package `{package}` (apt-get install {package})"
        )
    })
}

/// A sim whose `busybox` image runs the host's programs (sh, echo, true...).
pub fn start_sim() -> Sim {
    require_tool("bwrap", "bubblewrap");
    Sim::start(SimConfig {
        images: vec![("busybox".into(), None)],
        job_backoff: Duration::from_millis(200),
        ..Default::default()
    })
    .expect("start kube-sim")
}

/// Poll `f` until it returns Some, or panic after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub const LONG: Duration = Duration::from_secs(30);

/// Runs the real kubectl against a kubeconfig, with a private HOME (discovery cache).
pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub home: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().unwrap(),
            bin: require_tool("kubectl", "kubernetes-client"),
        }
    }

    /// Run kubectl; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .output()
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Run kubectl and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    /// Run kubectl with stdin; returns (success, stdout, stderr).
    pub fn run_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        use std::io::Write;
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Run kubectl with stdin and require success; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let (ok, o, e) = self.run_stdin(args, input);
        assert!(ok, "kubectl {args:?} failed:\nstdout: {o}\nstderr: {e}");
        o
    }

    /// Poll a kubectl command until its stdout satisfies `pred`.
    pub fn until(&self, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let (_, out, err) = self.run(args);
            if pred(&out) {
                return out;
            }
            if start.elapsed() > LONG {
                panic!(
                    "timed out waiting for {what}: kubectl {args:?}\nstdout: {out}\nstderr: {err}"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
