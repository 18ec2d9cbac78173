//! Git sources for real: the rendered source-resolve Job and build Jobs,
//! applied to the simulated cluster (its kubelet runs the host's git and
//! buildah for the default images) against a real git server on loopback
//! (smart HTTP through `git http-backend`, ssh through `sshd`).

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::git::{git_out, GitServer, Work};
use common::{run_checked, Registry};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use multiarch_operator::api::MultiArchImage;
use multiarch_operator::render::{self, BuilderImages};
use multiarch_operator::validate;
use serde_json::json;

const NAMESPACE: &str = "default";
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];

/// A buildah MultiArchImage of a git source, pushing to `registry`.
fn resource(name: &str, registry: &Registry, git: serde_json::Value) -> MultiArchImage {
    serde_json::from_value(json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}")},
        "spec": {
            "image": registry.repo(&format!("git/{name}")),
            "platforms": ["linux/amd64", "linux/arm64"],
            "source": {"git": git},
            "builder": {"strategy": "buildah"},
            "insecureRegistry": true,
        },
    }))
    .unwrap()
}

/// How a Job ended: whether it succeeded, and its pod's termination
/// message from `container`.
struct Outcome {
    succeeded: bool,
    message: String,
}

async fn run_job(client: &Client, job: &Job, container: &str) -> Outcome {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    let name = job.metadata.name.clone().unwrap();
    // No MultiArchImage exists here: an owner the garbage collector cannot
    // find would have the Job deleted at once.
    let mut job = job.clone();
    job.metadata.owner_references = None;
    jobs.create(&PostParams::default(), &job)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    let deadline = Instant::now() + JOB_TIMEOUT;
    let succeeded = loop {
        let current = jobs.get(&name).await.unwrap();
        let conditions = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default();
        let done = |kind: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == kind && c.status == "True")
        };
        if done("Complete") {
            break true;
        }
        if done("Failed") {
            break false;
        }
        assert!(Instant::now() < deadline, "{name} did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .unwrap();
    let message = list
        .items
        .iter()
        .rev()
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter(|c| c.name == container || !succeeded)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .find(|m| !m.is_empty())
        .unwrap_or_default();
    Outcome { succeeded, message }
}

/// Runs the resolve Job of `resource`; the commit, or the failure message.
async fn resolve(client: &Client, resource: &MultiArchImage, run: &str) -> Result<String, String> {
    let job = render::resolve_job(resource, run, &BuilderImages::default()).expect("git source");
    let outcome = run_job(client, &job, "resolve").await;
    if !outcome.succeeded {
        return Err(outcome.message);
    }
    render::parse_resolved_commit(&outcome.message)
        .ok_or_else(|| format!("not a commit: {:?}", outcome.message))
}

/// Runs the build Job of the first platform at `commit`; panics on failure.
async fn build(client: &Client, resource: &MultiArchImage, commit: Option<&str>) -> String {
    build_with_host_dir(client, resource, commit, None).await
}

/// Like `build`, with a host directory given to the fetch step by a
/// hostPath volume at the same path: a pod sees no host path otherwise
/// (in the simulator every container has its own /tmp, and the checkout
/// may live under it).
async fn build_with_host_dir(
    client: &Client,
    resource: &MultiArchImage,
    commit: Option<&str>,
    host_dir: Option<&std::path::Path>,
) -> String {
    let platform = &validate::validate(resource).unwrap().platforms[0];
    let build_id = render::build_id(&resource.spec, &Default::default());
    let mut job = render::build_job(
        resource,
        &build_id,
        platform,
        &BuilderImages::default(),
        commit,
    );
    if let Some(dir) = host_dir {
        let mut value = serde_json::to_value(&job).unwrap();
        let path = dir.display().to_string();
        let pod = &mut value["spec"]["template"]["spec"];
        pod["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "host-dir", "hostPath": {"path": path}}));
        for container in pod["initContainers"].as_array_mut().unwrap() {
            if container["name"] == "fetch-source" {
                container["volumeMounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "host-dir", "mountPath": path, "readOnly": true}));
            }
        }
        job = serde_json::from_value(value).unwrap();
    }
    let outcome = run_job(client, &job, "push").await;
    assert!(
        outcome.succeeded,
        "{}: build failed: {}",
        resource.metadata.name.as_deref().unwrap(),
        outcome.message
    );
    // The build pod's report, read as the operator reads it.
    let digest = multiarch_operator::termination::parse(&outcome.message)
        .digest
        .unwrap_or_else(|| panic!("no digest in the report: {}", outcome.message));
    format!("{}@{digest}", resource.spec.image)
}

/// The labels of a pushed image's config.
fn labels(image: &str) -> BTreeMap<String, String> {
    let output = run_checked(
        common::skopeo::command()
            .args(["inspect", "--config", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    );
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    serde_json::from_value(config["config"]["Labels"].clone()).unwrap_or_default()
}

/// A Dockerfile that labels the image with `marker`, so a test can tell
/// which commit was built; `extra` adds steps.
fn dockerfile(marker: &str, extra: &str) -> String {
    format!("FROM scratch\nLABEL built-from={marker}\nCOPY Dockerfile /Dockerfile\n{extra}")
}

async fn create_secret(client: &Client, name: &str, kind: &str, data: serde_json::Value) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": kind,
        "stringData": data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolve_job_gives_one_commit_for_every_kind_of_revision() {
    let server = GitServer::start();
    server.create("app.git");
    let work = server.work("app.git");
    let older = work.commit(&[("Dockerfile", &dockerfile("zero", ""))], "zero");
    let main = work.commit(&[("Dockerfile", &dockerfile("one", ""))], "one");
    work.tag_lightweight("v1");
    work.checkout_new_branch("release-1");
    let release = work.commit(&[("Dockerfile", &dockerfile("two", ""))], "two");
    work.tag_annotated("v2");
    work.checkout("main");
    work.push();
    let tag_object = git_out(work.path(), &["rev-parse", "v2"]);
    assert_ne!(tag_object, release, "v2 is an annotated tag object");

    let sim = harness::start_sim(TWO_NODES);
    let client = sim.client();
    let registry = Registry::start_plain();
    let url = server.http_url("app.git");
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, &main),
        (Some("release-1".into()), &release),
        (Some("v1".into()), &main),
        (Some("v2".into()), &release),
        (Some("refs/heads/release-1".into()), &release),
        (Some(older.clone()), &older),
        (Some(older[..8].to_string()), &older),
    ];
    let runs = cases.iter().enumerate().map(|(i, (revision, _))| {
        let mut git = json!({"url": url});
        if let Some(revision) = revision {
            git["revision"] = json!(revision);
        }
        let resource = resource(&format!("rev-{i}"), &registry, git);
        let client = client.clone();
        async move { resolve(&client, &resource, "1").await }
    });
    let results = futures::future::join_all(runs).await;
    for ((revision, expected), got) in cases.iter().zip(results) {
        assert_eq!(
            got.as_deref(),
            Ok(*expected),
            "revision {revision:?} resolved to the wrong commit"
        );
    }

    let missing = resource(
        "missing",
        &registry,
        json!({"url": url, "revision": "no-such-branch"}),
    );
    let error = resolve(&client, &missing, "1").await.unwrap_err();
    assert!(
        error.contains("has no branch or tag no-such-branch"),
        "{error}"
    );
    let unknown = resource(
        "unknown",
        &registry,
        json!({"url": url, "revision": "0".repeat(40)}),
    );
    let error = resolve(&client, &unknown, "1").await.unwrap_err();
    assert!(error.contains("has no commit"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_fetches_the_resolved_commit_with_its_submodule_after_the_branch_moved() {
    let server = GitServer::start();
    server.create("lib.git");
    let lib = server.work("lib.git");
    lib.commit(&[("lib.txt", "library v1\n")], "lib v1");
    lib.push();
    server.create("app.git");
    let work = server.work("app.git");
    work.commit(
        &[(
            "Dockerfile",
            &dockerfile("one", "COPY lib/lib.txt /lib.txt\n"),
        )],
        "one",
    );
    work.add_submodule(&server.http_url("lib.git"), "lib");
    work.push();

    let sim = harness::start_sim(TWO_NODES);
    let client = sim.client();
    let registry = Registry::start_plain();
    let app = resource(
        "app",
        &registry,
        json!({"url": server.http_url("app.git"), "revision": "main"}),
    );
    let resolved = resolve(&client, &app, "1").await.expect("resolves");
    assert_eq!(resolved, work.head());

    // The branch moves between resolution and the build.
    work.commit(&[("Dockerfile", &dockerfile("two", ""))], "two");
    work.push();
    assert_ne!(work.head(), resolved);

    let image = build(&client, &app, Some(&resolved)).await;
    assert_eq!(
        labels(&image).get("built-from").map(String::as_str),
        Some("one"),
        "the resolved commit was built, not the branch's new tip"
    );
    // Without a resolved commit, the fetch step resolves the revision (a
    // branch other than the default) itself: the branch's tip now.
    work.checkout_new_branch("release-1");
    work.commit(&[("Dockerfile", &dockerfile("three", ""))], "three");
    work.push();
    let release = resource(
        "release",
        &registry,
        json!({"url": server.http_url("app.git"), "revision": "release-1"}),
    );
    let image = build(&client, &release, None).await;
    assert_eq!(
        labels(&image).get("built-from").map(String::as_str),
        Some("three")
    );
    // Exactly one commit was asked for, by id: no clone of the history.
    let fetches: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("POST /app.git/git-upload-pack"))
        .collect();
    assert!(!fetches.is_empty(), "{:?}", server.requests());
}

/// The content of `path` in the single layer of `image`.
fn file_in_image(image: &str, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    run_checked(
        common::skopeo::command()
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", dir.path().display())),
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let blob = entry.unwrap().path();
        let output = Command::new("tar")
            .arg("-xzOf")
            .arg(&blob)
            .arg(path)
            .output()
            .unwrap();
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).to_string();
        }
    }
    panic!("{path} is in no layer of {image}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_lfs_files_are_pulled_into_the_context() {
    common::require_tool("git-lfs", "git-lfs");
    // The LFS store: a repository the fetch step reaches by path (git-lfs's
    // standalone transfer for file:// URLs), given to it by a hostPath volume.
    let store = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    run_checked(common::git::git(store.path()).args(["init", "-q", "--bare", "store.git"]));
    let store_url = format!("file://{}/store.git", store.path().display());
    let server = GitServer::start();
    server.create("app.git");
    let work = server.work("app.git");
    git_out(work.path(), &["lfs", "install", "--local"]);
    git_out(work.path(), &["lfs", "track", "*.bin"]);
    let commit = work.commit(
        &[
            (
                "Dockerfile",
                &dockerfile("lfs", "COPY data.bin /data.bin\n"),
            ),
            ("data.bin", "the real content, not a pointer\n"),
            (".lfsconfig", &format!("[lfs]\n\turl = {store_url}\n")),
        ],
        "lfs",
    );
    work.push();
    let pointer = git_out(work.path(), &["cat-file", "-p", "HEAD:data.bin"]);
    assert!(pointer.starts_with("version https://git-lfs"), "{pointer}");

    let sim = harness::start_sim(TWO_NODES);
    let client = sim.client();
    let registry = Registry::start_plain();
    let app = resource("lfs", &registry, json!({"url": server.http_url("app.git")}));
    let image = build_with_host_dir(&client, &app, Some(&commit), Some(store.path())).await;
    assert_eq!(
        file_in_image(&image, "data.bin"),
        "the real content, not a pointer\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repositories_fetch_with_basic_auth_and_ssh_auth_secrets() {
    let password = "s3cret-pa55";
    let server = GitServer::start_with_basic_auth("builder", password).with_ssh();
    server.create("private.git");
    let work = server.work("private.git");
    let commit = work.commit(&[("Dockerfile", &dockerfile("private", ""))], "private");
    work.push();

    let sim = harness::start_sim(TWO_NODES);
    let client = sim.client();
    let registry = Registry::start_plain();
    create_secret(
        &client,
        "basic",
        "kubernetes.io/basic-auth",
        json!({"username": "builder", "password": password}),
    )
    .await;
    create_secret(
        &client,
        "wrong",
        "kubernetes.io/basic-auth",
        json!({"username": "builder", "password": "not-it"}),
    )
    .await;
    create_secret(
        &client,
        "ssh",
        "kubernetes.io/ssh-auth",
        json!({"ssh-privatekey": server.ssh().client_key(), "known_hosts": server.ssh().known_hosts()}),
    )
    .await;
    create_secret(
        &client,
        "ssh-no-known-hosts",
        "kubernetes.io/ssh-auth",
        json!({"ssh-privatekey": server.ssh().client_key()}),
    )
    .await;

    let https = resource(
        "https",
        &registry,
        json!({"url": server.http_url("private.git"), "secretRef": {"name": "basic"}}),
    );
    let ssh = resource(
        "ssh",
        &registry,
        json!({"url": server.ssh_url("private.git"), "secretRef": {"name": "ssh"}}),
    );
    for private in [&https, &ssh] {
        let name = private.metadata.name.clone().unwrap();
        let resolved = resolve(&client, private, "1")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\nsshd: {}", server.ssh().log()));
        assert_eq!(resolved, commit, "{name}");
        let image = build(&client, private, Some(&resolved)).await;
        assert_eq!(
            labels(&image).get("built-from").map(String::as_str),
            Some("private")
        );
    }

    let anonymous = resource(
        "anonymous",
        &registry,
        json!({"url": server.http_url("private.git")}),
    );
    assert!(resolve(&client, &anonymous, "1").await.is_err());
    let wrong = resource(
        "wrong",
        &registry,
        json!({"url": server.http_url("private.git"), "secretRef": {"name": "wrong"}}),
    );
    let error = resolve(&client, &wrong, "1").await.unwrap_err();
    assert!(
        !error.contains("not-it"),
        "no secret in the message: {error}"
    );
    let no_known_hosts = resource(
        "no-known-hosts",
        &registry,
        json!({"url": server.ssh_url("private.git"), "secretRef": {"name": "ssh-no-known-hosts"}}),
    );
    let error = resolve(&client, &no_known_hosts, "1").await.unwrap_err();
    assert!(error.contains("no known_hosts"), "{error}");
}

/// OpenSSH exits when the uid has no passwd entry; the uid the git steps
/// run as (65534, `nobody`) has one. Run as the kubelet would run the
/// container with `runAsUser`, in a user namespace mapping that uid.
#[test]
fn ssh_needs_a_passwd_entry_and_the_git_steps_uid_has_one() {
    let bwrap = common::require_tool("bwrap", "bubblewrap");
    let server = GitServer::start().with_ssh();
    server.create("app.git");
    let work: Work = server.work("app.git");
    let commit = work.commit(&[("Dockerfile", "FROM scratch\n")], "one");
    work.push();
    let secrets = tempfile::tempdir().unwrap();
    common::git::write_file(
        &secrets.path().join("ssh-privatekey"),
        &server.ssh().client_key(),
    );
    common::git::write_file(
        &secrets.path().join("known_hosts"),
        &server.ssh().known_hosts(),
    );
    let registry_placeholder: MultiArchImage = serde_json::from_value(json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": "ssh", "namespace": NAMESPACE},
        "spec": {"image": "registry.example.com/ssh",
                 "source": {"git": {"url": server.ssh_url("app.git"), "secretRef": {"name": "ssh"}}}},
    }))
    .unwrap();
    let job = render::resolve_job(&registry_placeholder, "1", &BuilderImages::default()).unwrap();
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let command = container.command.clone().unwrap();
    let uid = container
        .security_context
        .as_ref()
        .unwrap()
        .run_as_user
        .unwrap();
    assert_eq!(uid, render::GIT_UID);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let listed = |uid: i64| {
        passwd
            .lines()
            .any(|l| l.split(':').nth(2) == Some(&uid.to_string()))
    };
    assert!(
        listed(uid),
        "the host lists {uid} (nobody), as Alpine and Debian images do"
    );
    let unlisted = (1000..).find(|u| !listed(*u)).unwrap();
    let term = tempfile::NamedTempFile::new().unwrap();
    let run = |uid: i64| {
        let output = Command::new(&bwrap)
            .args(["--bind", "/", "/", "--tmpfs", "/run", "--dev", "/dev"])
            .arg("--bind")
            .arg(term.path())
            .arg("/dev/termination-log")
            .arg("--ro-bind")
            .arg(secrets.path())
            .arg("/run/multiarch/git")
            .args(["--dir", "/run/multiarch/git-home", "--unshare-user"])
            .args(["--uid", &uid.to_string(), "--gid", &uid.to_string(), "--"])
            .args(&command)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (ok, stderr) = run(unlisted);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("No user exists for uid {unlisted}")),
        "{stderr}"
    );
    let (ok, stderr) = run(uid);
    assert!(ok, "{stderr}\nsshd: {}", server.ssh().log());
    assert_eq!(std::fs::read_to_string(term.path()).unwrap(), commit);
}
