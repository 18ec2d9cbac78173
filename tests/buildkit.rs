//! The real BuildKit (v0.18.2, built from its Go module by
//! scripts/upstream.sh) runs the build container the operator renders, as
//! the rootless image runs it: `buildctl-daemonless.sh` as uid 1000 under
//! Debian's `rootlesskit` and `runc`, with the rendered arguments and
//! `buildkitd.toml`; then the rendered push container (`multiarch-operator
//! push`) pushes the OCI layout it wrote to a real registry. Only the
//! volume mount paths are moved into a temp dir (this runs on the host, not
//! in a pod): every other argument is the rendered one.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require_tool, Registry};
use serde_json::Value;

/// What the upstream rootless image sets (moby/buildkit Dockerfile,
/// `rootless` stage): the user's name, home and runtime dir.
const ROOTLESS_UID: &str = "1000";

fn buildkit_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream/buildkit-v0.18.2");
    assert!(
        dir.join("buildkitd").is_file(),
        "BuildKit is not built: run `bash scripts/upstream.sh` (it needs Go)"
    );
    dir
}

/// The rendered Jobs of `resource` (`multiarch-operator render -f`).
fn render(resource: &str, dir: &Path) -> Vec<Value> {
    let file = dir.join("resource.yaml");
    std::fs::write(&file, resource).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_multiarch-operator"))
        .args(["render", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_slice(&out.stdout)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|j| j["kind"] == "Job")
        .collect()
}

/// A build pod's volumes, each moved to a folder of `root`.
struct Mounts(BTreeMap<String, PathBuf>);

impl Mounts {
    fn new(pod: &Value, root: &Path) -> Mounts {
        let mut map = BTreeMap::new();
        for c in pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_array().into_iter().flatten())
        {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let path = m["mountPath"].as_str().unwrap().to_string();
                let host = root.join(m["name"].as_str().unwrap());
                std::fs::create_dir_all(&host).unwrap();
                map.insert(path, host);
            }
        }
        Mounts(map)
    }

    /// `s` with each mount path (longest first) replaced by its folder.
    fn place(&self, s: &str) -> String {
        let mut paths: Vec<&String> = self.0.keys().collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let mut out = s.to_string();
        for p in paths {
            out = out.replace(p.as_str(), self.0[p].to_str().unwrap());
        }
        out
    }
}

/// A container or init container of the pod, by name.
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod[*list].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Runs a rendered container's command and args (paths placed), as
/// `uid` when given, with the container's env plus `env`.
fn run(c: &Value, mounts: &Mounts, uid: Option<&str>, env: &[(&str, String)]) -> (bool, String) {
    let argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(c["args"].as_array().into_iter().flatten())
        .map(|a| mounts.place(a.as_str().unwrap()))
        .collect();
    let mut cmd = match uid {
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid", uid, "--regid", uid, "--clear-groups", "--"]);
            cmd.args(&argv);
            cmd
        }
        None => {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            cmd
        }
    };
    cmd.env_clear();
    for e in c["env"].as_array().into_iter().flatten() {
        cmd.env(
            e["name"].as_str().unwrap(),
            mounts.place(e["value"].as_str().unwrap_or("")),
        );
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the container's command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Builds and pushes one platform's rendered build pod; its report and
/// the build log.
fn build_and_push(job: &Value, context: &[(&str, &str)], root: &Path) -> (String, String) {
    let pod = &job["spec"]["template"]["spec"];
    let mounts = Mounts::new(pod, root);
    for (name, text) in context {
        std::fs::write(mounts.0["/workspace/source"].join(name), text).unwrap();
    }
    let home = root.join("home");
    let runtime = root.join("run");
    for d in [&home, &runtime] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The state volume is where the image's HOME keeps BuildKit's state.
    let state = home.join(".local/share/buildkit");
    std::fs::create_dir_all(&state).unwrap();
    let path = format!(
        "{}:{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        buildkit_dir().display(),
        Path::new(env!("CARGO_BIN_EXE_multiarch-operator"))
            .parent()
            .unwrap()
            .display()
    );
    let mut mounts = mounts;
    mounts
        .0
        .insert("/home/user/.local/share/buildkit".into(), state);
    let env = [
        ("PATH", path),
        ("USER", "user".to_string()),
        ("HOME", home.display().to_string()),
        ("XDG_RUNTIME_DIR", runtime.display().to_string()),
        ("TMPDIR", root.join("tmp").display().to_string()),
    ];
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    let chown = Command::new("chown")
        .args(["-R", &format!("{ROOTLESS_UID}:{ROOTLESS_UID}")])
        .arg(root)
        .status()
        .unwrap();
    assert!(chown.success());
    let write_config = container(pod, "write-builder-config");
    let (ok, said) = run(write_config, &mounts, Some(ROOTLESS_UID), &env);
    assert!(ok, "write-builder-config: {said}");
    let build = container(pod, "build");
    let (ok, said) = run(build, &mounts, Some(ROOTLESS_UID), &env);
    assert!(ok, "the real BuildKit ran the rendered build: {said}");
    let report = root.join("report");
    mounts
        .0
        .insert("/dev/termination-log".into(), report.clone());
    let push = container(pod, "push");
    let (ok, said) = run(push, &mounts, None, &env[..1]);
    assert!(ok, "multiarch-operator push: {said}");
    let log = std::fs::read_to_string(mounts.0["/workspace"].join("build.log")).unwrap();
    (std::fs::read_to_string(report).unwrap(), log)
}

#[test]
fn the_rendered_buildkit_build_runs_on_the_real_buildkit_and_its_push_reports_the_cache() {
    for (cmd, package) in [
        ("rootlesskit", "rootlesskit"),
        ("runc", "runc"),
        ("newuidmap", "uidmap"),
        ("setpriv", "util-linux"),
        ("skopeo", "skopeo"),
    ] {
        require_tool(cmd, package);
    }
    let registry = Registry::start_plain();
    let repo = registry.repo("e2e/buildkit");
    let resource = format!(
        "apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata: {{name: bk, namespace: default}}\n\
         spec:\n  image: {repo}\n  platforms: [linux/amd64, linux/arm64]\n  \
         source: {{configMap: {{name: bk-context}}}}\n  insecureRegistry: true\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let jobs = render(&resource, dir.path());
    let builds: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["metadata"]["labels"]["multiarch.dev/component"] == "build")
        .collect();
    assert_eq!(builds.len(), 2, "a build Job per platform");
    let context = [
        ("Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n"),
        ("hello.txt", "hello from BuildKit\n"),
    ];
    for (i, job) in builds.iter().enumerate() {
        let platform = job["metadata"]["labels"]["multiarch.dev/platform"]
            .as_str()
            .unwrap()
            .replacen('-', "/", 1);
        let (cold, _) = build_and_push(job, &context, &dir.path().join(format!("cold-{i}")));
        let report = multiarch_operator::termination::parse(&cold);
        let digest = report.digest.clone().expect("a digest in the report");
        let resolved = common::inspect_for_platform(&format!("{repo}@{digest}"), &platform, None);
        assert_eq!(
            format!("{}/{}", resolved.os, resolved.architecture),
            platform,
            "the pushed image is {platform}"
        );
        // Empty state again: every step can come only from the registry cache.
        let (warm, log) = build_and_push(job, &context, &dir.path().join(format!("warm-{i}")));
        let warm = multiarch_operator::termination::parse(&warm);
        println!("BUILDKIT {platform}: cold {cold:?}, warm {warm:?}");
        assert_eq!(warm.digest, Some(digest), "the same bytes again");
        assert_eq!(
            warm.cache.map(|c| c.state),
            Some(multiarch_operator::api::CacheState::Hit),
            "{platform}: the COPY came from the registry cache:\n{log}"
        );
    }
}
