//! The `crds` and `render` subcommands, run as a user runs them, with the
//! output checked by a real Kubernetes schema validator.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.34.0";

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run multiarch-operator")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `kubernetes-validate --strict` on a file; panics naming the package
/// when the tool is missing.
fn strict_validate(file: &Path) -> String {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(file)
        .output()
        .expect("kubernetes-validate is missing: install it with `python3 -m pip install kubernetes-validate` (scripts/test.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed on {}:\n{text}",
        file.display()
    );
    text
}

#[test]
fn committed_crd_is_the_generated_one() {
    let out = operator(&["crds"]);
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed =
        std::fs::read_to_string(repo("crds/multiarchimages.multiarch.dev.yaml")).unwrap();
    assert!(
        generated == committed,
        "crds/multiarchimages.multiarch.dev.yaml is stale: run `cargo run -- crds > crds/multiarchimages.multiarch.dev.yaml`"
    );
}

#[test]
fn crd_is_strictly_valid() {
    let text = strict_validate(&repo("crds/multiarchimages.multiarch.dev.yaml"));
    assert!(
        text.contains("passed for resource customresourcedefinition/multiarchimages.multiarch.dev"),
        "{text}"
    );
}

#[test]
fn render_prints_strictly_valid_jobs_for_every_example() {
    let dir = tempfile::tempdir().unwrap();
    for example in [
        "deploy/examples/sample-buildkit.yaml",
        "deploy/examples/configmap-buildah.yaml",
    ] {
        let out = operator(&["render", "-f", example]);
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let yaml = String::from_utf8(out.stdout).unwrap();
        let rendered = dir.path().join("jobs.yaml");
        std::fs::write(&rendered, &yaml).unwrap();
        let report = strict_validate(&rendered);
        let jobs = report.matches("passed for resource job/").count();
        let platforms = 2;
        let resolve = usize::from(yaml.contains("-resolve\n"));
        assert_eq!(
            jobs,
            platforms + 1 + resolve,
            "{example}: one Job per platform and a merge Job (and a resolve Job for git):\n{report}"
        );
    }
}

#[test]
fn render_pins_the_platforms_of_the_first_build() {
    let out = operator(&["render", "-f", "deploy/examples/sample-buildkit.yaml"]);
    let yaml = String::from_utf8(out.stdout).unwrap();
    for arch in ["amd64", "arm64"] {
        assert!(
            yaml.contains(&format!("kubernetes.io/arch: {arch}\n")),
            "{arch} pinned"
        );
        assert!(yaml.contains("name: sample-"), "named after the resource");
    }
    assert!(yaml.contains("-resolve\n"), "a source-resolve Job");
    assert!(yaml.contains("-merge\n"), "a merge Job");
    assert!(
        yaml.contains("sha256:<digest of linux/arm64>"),
        "digest placeholders"
    );
}

/// linux/arm/v7 with BuildKit, on nodes the operator image is not
/// published for: refused, unless the admin publishes it there or allows
/// the build step to push.
#[test]
fn render_refuses_a_build_step_push_unless_the_flags_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    let arm = dir.path().join("arm.yaml");
    let text = std::fs::read_to_string(repo("deploy/examples/sample-buildkit.yaml"))
        .unwrap()
        .replace("linux/arm64]", "linux/arm64, linux/arm/v7]");
    std::fs::write(&arm, text).unwrap();
    let file = arm.to_str().unwrap();
    let out = operator(&["render", "-f", file]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.platforms[2]: linux/arm/v7: builds on linux/arm nodes")
            && stderr.contains("--allow-build-step-push"),
        "{stderr}"
    );
    let allowed = operator(&["render", "-f", file, "--allow-build-step-push=true"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let yaml = String::from_utf8(allowed.stdout).unwrap();
    assert!(
        yaml.contains("name: report-digest"),
        "BuildKit pushes itself"
    );
    let published = operator(&[
        "render",
        "-f",
        file,
        "--operator-image-architecture=amd64,arm64,arm",
    ]);
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let yaml = String::from_utf8(published.stdout).unwrap();
    assert!(
        !yaml.contains("name: report-digest"),
        "every platform pushes with the operator image"
    );
    assert_eq!(yaml.matches("name: push\n").count(), 3, "{yaml}");
}

#[test]
fn render_refuses_a_bad_platform_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(repo("deploy/examples/sample-buildkit.yaml"))
        .unwrap()
        .replace("linux/arm64]", "linux/amd65]");
    std::fs::write(&bad, text).unwrap();
    let out = operator(&["render", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.platforms[1]: \"linux/amd65\" is not a known architecture"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing rendered for an invalid resource"
    );
}

#[test]
fn render_refuses_offline_the_pod_fields_the_api_server_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let mut text = std::fs::read_to_string(repo("deploy/examples/sample-buildkit.yaml")).unwrap();
    text.push_str(
        "  tolerations: [{key: pool, operator: Exists, value: builds}]\n\
         \x20 resources: {requests: {cpu: \"4\", memory: 1Gi}, limits: {cpu: \"2\", memory: garbage}}\n",
    );
    std::fs::write(&bad, text).unwrap();
    let out = operator(&["render", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "spec.tolerations[0].value: value must be empty when `operator` is 'Exists'",
        "spec.resources.limits.memory: \"garbage\": quantities must match the regular expression",
        "spec.resources.requests.cpu: must be less than or equal to cpu limit of 2",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "nothing rendered: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
