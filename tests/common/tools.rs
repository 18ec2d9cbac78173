//! Finding and running the external tools the tests drive.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::Digest as _;

/// The absolute path of `command`; panics (fails the test) naming the Debian
/// package that provides it when it is missing.
pub fn require_tool(command: &str, debian_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(command))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{command}` not found on PATH: install the Debian package {debian_package} \
                 (apt-get install -y {debian_package}, or run scripts/test.sh as root)"
            )
        })
}

/// Runs a command to completion; panics with its output when it fails.
pub fn run_checked(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A containers signature policy accepting everything, so buildah and skopeo
/// never depend on the host's /etc/containers/policy.json.
pub fn permissive_policy() -> &'static std::path::Path {
    static POLICY: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = POLICY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("policy.json");
        std::fs::write(&path, r#"{"default":[{"type":"insecureAcceptAnything"}]}"#)
            .expect("write policy");
        (dir, path)
    });
    path
}
