//! Git sources through the operator, end to end on the simulated cluster
//! with buildah and a real git server on loopback: the revision resolved
//! once for the whole build, recorded in `status.source` and in the index's
//! annotations; a polled branch built again for each new commit, and for
//! no other reason.

#[path = "e2e/cache_images.rs"]
mod cache_images;
mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::git::{GitServer, Work};
use common::run_checked;
use harness::{eventually, World};
use kube::api::{Patch, PatchParams};
use multiarch_operator::api::{MultiArchImage, Phase, SourceStatus};
use serde_json::json;

const AMD64_ONLY: &[(&str, &str)] = &[("sim-amd64", "linux/amd64")];

/// A Dockerfile that labels the image with `marker`, so a test can tell
/// which commit was built.
fn dockerfile(marker: &str) -> String {
    format!("FROM scratch\nLABEL built-from={marker}\nCOPY Dockerfile /Dockerfile\n")
}

/// A repository `app.git` whose `main` holds a Dockerfile marked `first`.
fn repository(server: &GitServer) -> Work {
    server.create("app.git");
    let work = server.work("app.git");
    work.commit(&[("Dockerfile", &dockerfile("first"))], "first");
    work.push();
    work
}

async fn apply(world: &World, name: &str, git: serde_json::Value) {
    let resource = json!({
        "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "image": world.registry.repo(&format!("git/{name}")),
            "tags": ["latest"],
            "platforms": ["linux/amd64", "linux/arm64"],
            "source": {"git": git},
            "builder": {"strategy": "buildah"},
            "insecureRegistry": true,
        },
    });
    world
        .mais()
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&resource),
        )
        .await
        .expect("apply the MultiArchImage");
}

/// The labels of the image `platform` gets from `image`.
fn labels(image: &str, platform: &str) -> BTreeMap<String, String> {
    let (os, arch) = platform.split_once('/').unwrap();
    let output = run_checked(common::skopeo::command().args([
        "--override-os",
        os,
        "--override-arch",
        arch,
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    serde_json::from_value(config["config"]["Labels"].clone()).unwrap_or_default()
}

/// The annotations of the index a tag names.
fn index_annotations(image: &str) -> BTreeMap<String, String> {
    let raw = common::skopeo::inspect_raw(image, None).expect("the tag is pushed");
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    serde_json::from_value(index["annotations"].clone()).unwrap_or_default()
}

fn source(resource: &MultiArchImage) -> SourceStatus {
    resource
        .status
        .clone()
        .unwrap_or_default()
        .source
        .expect("status.source is recorded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_platforms_build_the_one_resolved_commit_of_a_branch_even_when_it_moves() {
    let server = GitServer::start();
    let work = repository(&server);
    work.checkout_new_branch("release-1");
    work.commit(&[("Dockerfile", &dockerfile("release"))], "release");
    work.push();
    let resolved = work.head();
    // No arm64 node yet: amd64 builds, arm64 waits for a node.
    let world = World::start(AMD64_ONLY).await;
    let url = server.http_url("app.git");
    apply(&world, "app", json!({"url": url, "revision": "release-1"})).await;
    eventually("amd64 built", Duration::from_secs(120), || async {
        let status = world.get("app").await.status.unwrap_or_default();
        status
            .platforms
            .iter()
            .any(|p| p.platform == "linux/amd64" && p.digest.is_some())
            .then_some(())
    })
    .await;
    // The branch moves before arm64 clones: it must build the same commit.
    work.commit(&[("Dockerfile", &dockerfile("moved"))], "moved");
    work.push();
    world
        .sim
        .add_node(kube_sim::NodeSpec::new("late-arm64", "linux/arm64"));
    let done = world.wait_phase("app", Phase::Succeeded).await;
    let recorded = source(&done);
    assert_eq!(recorded.url, url);
    assert_eq!(recorded.revision, "release-1");
    assert_eq!(recorded.commit, resolved);
    let image = format!("{}:latest", done.spec.image);
    for platform in ["linux/amd64", "linux/arm64"] {
        assert_eq!(
            labels(&image, platform)
                .get("built-from")
                .map(String::as_str),
            Some("release"),
            "{platform} built the resolved commit"
        );
    }
    let annotations = index_annotations(&image);
    assert_eq!(
        annotations
            .get("org.opencontainers.image.source")
            .map(String::as_str),
        Some(url.as_str())
    );
    assert_eq!(
        annotations
            .get("org.opencontainers.image.revision")
            .map(String::as_str),
        Some(resolved.as_str())
    );
    let events = world.events("app").await;
    let resolved_event = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("SourceResolved"))
        .expect("a SourceResolved event");
    assert!(
        resolved_event
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&resolved),
        "{resolved_event:?}"
    );
    // Nothing more happens to a built source that is not polled.
    let jobs = world.job_names().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(world.job_names().await, jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_that_does_not_resolve_fails_saying_so_and_a_retry_builds_it_once_pushed() {
    let server = GitServer::start();
    let work = repository(&server);
    let world = World::start(&[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")]).await;
    let url = server.http_url("app.git");
    apply(&world, "later", json!({"url": url, "revision": "v2.0.0"})).await;
    let failed = world.wait_phase("later", Phase::Failed).await;
    let status = failed.status.unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "SourceFailed");
    assert!(
        ready.message.contains("spec.source.git.revision") && ready.message.contains("v2.0.0"),
        "{}",
        ready.message
    );
    assert!(world
        .job_names()
        .await
        .iter()
        .all(|j| j.ends_with("-resolve")));
    // The tag is pushed; a retry resolves it again and builds.
    work.tag_annotated("v2.0.0");
    work.push();
    world
        .mais()
        .patch(
            "later",
            &PatchParams::apply("e2e-retry").force(),
            &Patch::Apply(json!({
                "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
                "metadata": {"name": "later", "annotations": {"multiarch.dev/retry": "1"}},
            })),
        )
        .await
        .unwrap();
    eventually("the retry taken", Duration::from_secs(30), || async {
        let status = world.get("later").await.status?;
        (status.last_handled_retry.as_deref() == Some("1") && status.phase != Some(Phase::Failed))
            .then_some(())
    })
    .await;
    let done = world.wait_phase("later", Phase::Succeeded).await;
    assert_eq!(source(&done).commit, work.head());
    assert_eq!(
        done.status.unwrap().last_handled_retry.as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polled_branch_builds_each_new_commit_within_the_interval_and_nothing_else() {
    const INTERVAL: u64 = 10;
    let server = GitServer::start();
    let work = repository(&server);
    let world = World::start(&[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")]).await;
    let url = server.http_url("app.git");
    let git = json!({"url": url, "revision": "main", "pollInterval": format!("{INTERVAL}s")});
    apply(&world, "polled", git).await;
    let first = world.wait_phase("polled", Phase::Succeeded).await;
    let first_status = first.status.clone().unwrap();
    assert_eq!(source(&first).commit, work.head());
    let image = format!("{}:latest", first.spec.image);

    // Two intervals pass with no new commit: the revision is checked
    // again, and nothing is built.
    tokio::time::sleep(Duration::from_secs(2 * INTERVAL + 2)).await;
    let unchanged = world.get("polled").await;
    let status = unchanged.status.clone().unwrap();
    assert_eq!(status.build_id, first_status.build_id, "no new build");
    assert_ne!(
        source(&unchanged).resolve_job,
        source(&first).resolve_job,
        "each interval checks the revision"
    );
    let builds: Vec<String> = world
        .job_names()
        .await
        .into_iter()
        .filter(|j| !j.ends_with("-resolve"))
        .collect();
    assert_eq!(builds.len(), 3, "two build Jobs and one merge: {builds:?}");

    // A push: built within the interval (plus the build's own time), while
    // the previous index stays published until the new one is pushed.
    work.commit(&[("Dockerfile", &dockerfile("second"))], "second");
    work.push();
    let pushed = Instant::now();
    let second = work.head();
    let building = eventually(
        "the new commit's build",
        Duration::from_secs(INTERVAL + 15),
        || async {
            let resource = world.get("polled").await;
            (source(&resource).commit == second).then_some(resource)
        },
    )
    .await;
    let noticed = pushed.elapsed();
    eprintln!(
        "a push to the polled branch started its build after {noticed:?} (interval {INTERVAL}s)"
    );
    assert!(
        noticed <= Duration::from_secs(INTERVAL + 10),
        "noticed after {noticed:?}"
    );
    assert_ne!(building.status.unwrap().build_id, first_status.build_id);
    if world.get("polled").await.status.unwrap().phase != Some(Phase::Succeeded) {
        assert_eq!(
            labels(&image, "linux/amd64")
                .get("built-from")
                .map(String::as_str),
            Some("first"),
            "the previous image stays published during the new build"
        );
    }
    let done = world.wait_phase("polled", Phase::Succeeded).await;
    eprintln!(
        "and its index was pushed {:?} after the push",
        pushed.elapsed()
    );
    assert_ne!(done.status.clone().unwrap().digest, first_status.digest);
    assert_eq!(source(&done).commit, second);
    assert_eq!(
        labels(&image, "linux/arm64")
            .get("built-from")
            .map(String::as_str),
        Some("second")
    );
    assert_eq!(
        index_annotations(&image)
            .get("org.opencontainers.image.revision")
            .map(String::as_str),
        Some(second.as_str())
    );
}

async fn create_secret(world: &World, name: &str, kind: &str, data: serde_json::Value) {
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": kind,
        "stringData": data,
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(world.client.clone(), "default")
        .create(&Default::default(), &secret)
        .await
        .expect("create the Secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repositories_build_through_the_operator_and_no_secret_is_ever_shown() {
    let password = "Pw-git-9d3e-never-shown";
    let server = GitServer::start_with_basic_auth("builder", password).with_ssh();
    let work = repository(&server);
    let first = work.head();
    work.commit(&[("Dockerfile", &dockerfile("tip"))], "tip");
    work.push();
    let world = World::start(&[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")]).await;
    create_secret(
        &world,
        "basic",
        "kubernetes.io/basic-auth",
        json!({"username": "builder", "password": password}),
    )
    .await;
    create_secret(
        &world,
        "ssh",
        "kubernetes.io/ssh-auth",
        json!({"ssh-privatekey": server.ssh().client_key(), "known_hosts": server.ssh().known_hosts()}),
    )
    .await;
    create_secret(
        &world,
        "wrong",
        "kubernetes.io/basic-auth",
        json!({"username": "builder", "password": "Pw-wrong-4c1a"}),
    )
    .await;
    // ssh-auth, an abbreviated commit (not the branch's tip); basic-auth,
    // a full commit; and refused credentials.
    let short = &first[..10];
    apply(
        &world,
        "over-ssh",
        json!({"url": server.ssh_url("app.git"), "revision": short, "secretRef": {"name": "ssh"}}),
    )
    .await;
    apply(
        &world,
        "over-https",
        json!({"url": server.http_url("app.git"), "revision": work.head(), "secretRef": {"name": "basic"}}),
    )
    .await;
    apply(
        &world,
        "refused",
        json!({"url": server.http_url("app.git"), "secretRef": {"name": "wrong"}}),
    )
    .await;
    let over_ssh = world.wait_phase("over-ssh", Phase::Succeeded).await;
    assert_eq!(source(&over_ssh).commit, first);
    assert_eq!(source(&over_ssh).revision, short);
    let image = format!("{}:latest", over_ssh.spec.image);
    assert_eq!(
        labels(&image, "linux/arm64")
            .get("built-from")
            .map(String::as_str),
        Some("first")
    );
    let over_https = world.wait_phase("over-https", Phase::Succeeded).await;
    assert_eq!(source(&over_https).commit, work.head());
    let refused = world.wait_phase("refused", Phase::Failed).await;
    let status = serde_json::to_string(&refused.status).unwrap();
    assert!(status.contains("SourceFailed"), "{status}");
    // Neither password is in any status, Event or operator log line.
    let mut shown = status;
    for name in ["over-ssh", "over-https", "refused"] {
        shown.push_str(&serde_json::to_string(&world.get(name).await.status).unwrap());
        shown.push_str(&serde_json::to_string(&world.events(name).await).unwrap());
    }
    shown.push_str(&world.operator.log());
    for secret in [password, "Pw-wrong-4c1a"] {
        assert!(!shown.contains(secret), "a secret was shown");
    }
}

/// A hostile repository: the `RUN` step of its Dockerfile looks for the
/// git credentials that fetched it (and for any registry credential) in
/// its container's files, processes and environments, and finds none:
/// only the fetch step mounts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_repository_finds_no_git_credential_in_its_build() {
    let password = "Pw-git-5b7e-out-of-reach";
    let server = GitServer::start_with_basic_auth("builder", password);
    server.create("app.git");
    let work = server.work("app.git");
    let world = World::start(&[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")]).await;
    let base = cache_images::push_base_image(&world.registry);
    let dockerfile = format!(
        "FROM {base}\nCOPY probe.sh /probe.sh\nRUN [\"/bin/busybox\", \"sh\", \"/probe.sh\"]\n"
    );
    let probe = common::probe::script(Some(password));
    work.commit(
        &[("Dockerfile", &dockerfile), ("probe.sh", &probe)],
        "hostile",
    );
    work.push();
    create_secret(
        &world,
        "basic",
        "kubernetes.io/basic-auth",
        json!({"username": "builder", "password": password}),
    )
    .await;
    apply(
        &world,
        "hostile",
        json!({"url": server.http_url("app.git"), "secretRef": {"name": "basic"}}),
    )
    .await;
    let done = world.wait_phase("hostile", Phase::Succeeded).await;
    for log in world.platform_logs(&done, "build").await {
        let found = common::probe::findings(&log);
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("reached ") && f.ends_with("/workspace")),
            "the probe saw its container's files: {found:?}"
        );
        assert!(
            found.iter().all(|f| !f.starts_with("holds the needle")
                && ["multiarch/git", "multiarch/docker", "multiarch/pull"]
                    .iter()
                    .all(|dir| !f.contains(dir))),
            "a credential within a RUN step's reach: {found:?}"
        );
    }
}
