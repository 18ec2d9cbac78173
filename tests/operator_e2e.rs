//! End to end: `MultiArchImage` in, a pushed multi-arch index out, through
//! the real operator, the simulated cluster, real buildah and the real merge.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use std::time::Duration;

use harness::{
    assert_clients_get_their_platform, assert_one_job_per_platform, eventually, hello_context,
    World,
};
use multiarch_operator::api::{Phase, PlatformPhase};
use serde_json::json;

const TWO_NODES: &[(&str, &str)] = &[("sim-amd64", "linux/amd64"), ("sim-arm64", "linux/arm64")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platforms_end_in_a_pushed_index() {
    let world = World::start(TWO_NODES).await;
    world
        .apply(
            "hello",
            &["linux/amd64", "linux/arm64"],
            &hello_context("hello\n"),
            json!({}),
        )
        .await;
    let done = world.wait_phase("hello", Phase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.platforms_ready.as_deref(), Some("2/2"));
    let digest = status.digest.clone().unwrap();
    assert_eq!(
        status.image.as_deref(),
        Some(format!("{}@{digest}", done.spec.image).as_str())
    );
    let nodes: Vec<_> = status
        .platforms
        .iter()
        .map(|p| p.node.clone().unwrap())
        .collect();
    assert_eq!(
        nodes,
        ["sim-amd64", "sim-arm64"],
        "each platform built on its own architecture"
    );
    assert!(status
        .platforms
        .iter()
        .all(|p| p.phase == PlatformPhase::Succeeded && p.start_time.is_some()));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("True", done.metadata.generation)
    );

    let raw = common::inspect_raw(&format!("{}:latest", done.spec.image), None).unwrap();
    assert_eq!(
        common::sha256_digest(&raw),
        digest,
        "the tag holds the index in status"
    );
    assert_clients_get_their_platform("hello", &done);
    assert_one_job_per_platform(&world, "hello", 2).await;

    // Events follow the status writes: wait for each.
    for reason in ["BuildStarted", "PlatformBuilt", "Merging", "Succeeded"] {
        world.wait_event("hello", reason).await;
    }
    let metrics = world.operator.metrics();
    assert!(metrics.contains("multiarch_reconciles_total"), "{metrics}");
    assert!(
        metrics.contains("multiarch_builds_total{phase=\"Succeeded\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reapply_does_nothing() {
    let world = World::start(TWO_NODES).await;
    let context = hello_context("same\n");
    world
        .apply("same", &["linux/amd64"], &context, json!({}))
        .await;
    let first = world.wait_phase("same", Phase::Succeeded).await;
    // Let the operator settle, then count what it writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.sim.clear_requests();
    world
        .apply("same", &["linux/amd64"], &context, json!({}))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = world.get("same").await;
    assert_eq!(again.metadata.generation, first.metadata.generation);
    assert_eq!(again.status, first.status, "status untouched");
    let operator_writes: Vec<_> = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("multiarch-operator/"))
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .filter(|r| r.resource != "leases")
        .collect();
    assert!(
        operator_writes.is_empty(),
        "no writes for an unchanged spec: {operator_writes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_architecture_is_reported_within_seconds() {
    let world = World::start(&[("sim-amd64", "linux/amd64")]).await;
    world
        .apply(
            "lonely",
            &["linux/amd64", "linux/arm64"],
            &hello_context("x\n"),
            json!({}),
        )
        .await;
    let waiting = eventually(
        "the arm64 platform to say why it waits",
        Duration::from_secs(30),
        || async {
            let resource = world.get("lonely").await;
            let status = resource.status?;
            let arm = status
                .platforms
                .iter()
                .find(|p| p.platform == "linux/arm64")?;
            arm.message
                .contains("cannot be scheduled")
                .then_some(status)
        },
    )
    .await;
    assert_ne!(waiting.phase, Some(Phase::Succeeded));
    let ready = waiting
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("linux/arm64"), "{}", ready.message);
    // The event follows the status write: wait for it too.
    eventually(
        "an Unschedulable warning event",
        Duration::from_secs(10),
        || async {
            world
                .events("lonely")
                .await
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("Unschedulable")
                        && e.type_.as_deref() == Some("Warning")
                })
                .then_some(())
        },
    )
    .await;
    // A node of the missing architecture joins: the build completes.
    world
        .sim
        .add_node(kube_sim::NodeSpec::new("late-arm64", "linux/arm64"));
    let done = world.wait_phase("lonely", Phase::Succeeded).await;
    let arm = done
        .status
        .unwrap()
        .platforms
        .into_iter()
        .find(|p| p.platform == "linux/arm64")
        .unwrap();
    assert_eq!(arm.node.as_deref(), Some("late-arm64"));
    assert!(arm.message.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_platforms_including_a_variant() {
    let nodes = [
        ("sim-amd64", "linux/amd64"),
        ("sim-arm64", "linux/arm64"),
        ("sim-armv7", "linux/arm/v7"),
    ];
    let world = World::start(&nodes).await;
    let platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"];
    // The default buildah image has no linux/arm/v7 build: name one (the
    // simulated kubelet runs the host's buildah for that repository).
    let builder = json!({"builder": {"strategy": "buildah", "image": "quay.io/buildah/stable:v1.38.1-armv7"}});
    world
        .apply("trio", &platforms, &hello_context("three\n"), builder)
        .await;
    let done = world.wait_phase("trio", Phase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.platforms_ready.as_deref(), Some("3/3"));
    let nodes: Vec<_> = status
        .platforms
        .iter()
        .map(|p| p.node.clone().unwrap())
        .collect();
    assert_eq!(nodes, ["sim-amd64", "sim-arm64", "sim-armv7"]);
    assert_clients_get_their_platform("trio", &done);
    assert_one_job_per_platform(&world, "trio", 3).await;
}

/// A context whose Dockerfile needs a file per architecture; only amd64's is there.
fn per_arch_context() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /arch.txt\n",
        ),
        ("amd64.txt", "amd64\n"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_platform_fails_the_resource_saying_which_and_why() {
    let world = World::start(TWO_NODES).await;
    world
        .apply(
            "half",
            &["linux/amd64", "linux/arm64"],
            &per_arch_context(),
            json!({"backoffLimit": 0}),
        )
        .await;
    let failed = world.wait_phase("half", Phase::Failed).await;
    let status = failed.status.clone().unwrap();
    let arm = status
        .platforms
        .iter()
        .find(|p| p.platform == "linux/arm64")
        .unwrap();
    assert_eq!(arm.phase, PlatformPhase::Failed);
    assert!(
        arm.message.contains("container build exited with code"),
        "{}",
        arm.message
    );
    assert!(
        arm.message.contains("arm64.txt"),
        "the builder's own words: {}",
        arm.message
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "BuildFailed")
    );
    assert!(ready.message.contains("linux/arm64"), "{}", ready.message);
    assert!(status.digest.is_none(), "no index claimed");
    let stalled = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Stalled")
        .unwrap();
    assert_eq!(stalled.status, "True");
    let tags = common::inspect_raw(&format!("{}:latest", failed.spec.image), None);
    assert!(tags.is_err(), "nothing pushed under the tags");
    world.wait_event("half", "PlatformFailed").await;

    // amd64 goes on building after arm64 failed, and keeps what it built.
    let amd = eventually("amd64 to be built", Duration::from_secs(60), || async {
        let status = world.get("half").await.status?;
        status
            .platforms
            .into_iter()
            .find(|p| p.platform == "linux/amd64" && p.phase == PlatformPhase::Succeeded)
    })
    .await;
    let amd_job = world.jobs().get(&amd.job).await.unwrap();
    // Fix the context, then retry without a spec change, as README says:
    // `kubectl annotate mai half multiarch.dev/retry=1`.
    let mut fixed = per_arch_context();
    fixed.push(("arm64.txt", "arm64\n"));
    world
        .apply(
            "half",
            &["linux/amd64", "linux/arm64"],
            &fixed,
            json!({"backoffLimit": 0}),
        )
        .await;
    let home = tempfile::tempdir().unwrap();
    let annotate = std::process::Command::new(common::require_tool("kubectl", "kubernetes-client"))
        .args([
            "annotate",
            "mai",
            "half",
            "multiarch.dev/retry=1",
            "-n",
            harness::NAMESPACE,
        ])
        .env("KUBECONFIG", world.sim.kubeconfig_path())
        .env("HOME", home.path())
        .output()
        .expect("run kubectl");
    assert!(
        annotate.status.success(),
        "{}",
        String::from_utf8_lossy(&annotate.stderr)
    );
    let done = eventually("the retry to succeed", Duration::from_secs(90), || async {
        let resource = world.get("half").await;
        let status = resource.status.clone()?;
        let retried = status.last_handled_retry.as_deref() == Some("1");
        (retried && status.phase == Some(Phase::Succeeded)).then_some(resource)
    })
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.build_id,
        failed.status.as_ref().unwrap().build_id,
        "the same build"
    );
    let amd_after = status
        .platforms
        .iter()
        .find(|p| p.platform == "linux/amd64")
        .unwrap();
    assert_eq!(amd_after.digest, amd.digest, "amd64 keeps its digest");
    let amd_job_after = world.jobs().get(&amd.job).await.unwrap();
    assert_eq!(
        amd_job_after.metadata.uid, amd_job.metadata.uid,
        "amd64 was not rebuilt"
    );
    harness::assert_clients_get_their_platform("half", &done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_operator_at_any_point_changes_nothing_in_the_end() {
    let mut world = World::start(TWO_NODES).await;
    let mut seen = Vec::new();
    // Kill right after the apply, then as soon as each phase shows.
    let points = [
        None,
        Some(Phase::Pending),
        Some(Phase::Building),
        Some(Phase::Merging),
    ];
    for (round, point) in points.into_iter().enumerate() {
        let name = format!("crash{round}");
        world
            .apply(
                &name,
                &["linux/amd64", "linux/arm64"],
                &hello_context("crash\n"),
                json!({}),
            )
            .await;
        let killed_at = match point {
            None => None,
            Some(phase) => {
                eventually("the kill point", Duration::from_secs(60), || async {
                    let current = world.get(&name).await.status.and_then(|s| s.phase);
                    // A phase may pass quicker than one poll: take the next one.
                    let reached = current.is_some_and(|c| phase_rank(c) >= phase_rank(phase));
                    reached.then_some(current)
                })
                .await
            }
        };
        world.operator.kill();
        seen.push(format!("{name}: wanted {point:?}, killed at {killed_at:?}"));
        // The cluster goes on without the operator for a while.
        tokio::time::sleep(Duration::from_millis(800)).await;
        world.operator.restart();
        let done = world.wait_phase(&name, Phase::Succeeded).await;
        assert_clients_get_their_platform(&name, &done);
        assert_one_job_per_platform(&world, &name, 2).await;
    }
    println!("{}", seen.join("\n"));
}

fn phase_rank(phase: Phase) -> u8 {
    match phase {
        Phase::Pending => 0,
        Phase::Building => 1,
        Phase::Merging => 2,
        Phase::Succeeded | Phase::Failed => 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_mid_build_supersedes_the_old_build() {
    let world = World::start(TWO_NODES).await;
    let context = hello_context("v1\n");
    world
        .apply(
            "moving",
            &["linux/amd64", "linux/arm64"],
            &context,
            json!({}),
        )
        .await;
    let first_id = eventually(
        "the first build to start",
        Duration::from_secs(30),
        || async {
            let status = world.get("moving").await.status?;
            (!status.platforms.is_empty()).then(|| status.build_id.unwrap())
        },
    )
    .await;
    world
        .apply(
            "moving",
            &["linux/amd64", "linux/arm64"],
            &context,
            json!({"tags": ["v2"]}),
        )
        .await;
    let done = world.wait_phase("moving", Phase::Succeeded).await;
    let status = done.status.clone().unwrap();
    assert_ne!(status.build_id.as_deref(), Some(first_id.as_str()));
    assert_eq!(done.spec.tags, ["v2"]);
    assert!(common::inspect_raw(&format!("{}:v2", done.spec.image), None).is_ok());
    eventually(
        "the old build's Jobs to go",
        Duration::from_secs(30),
        || async {
            let names = world.job_names().await;
            (!names.iter().any(|n| n.contains(&first_id))).then_some(())
        },
    )
    .await;
    assert_one_job_per_platform(&world, "moving", 2).await;
    world.wait_event("moving", "Superseded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_mid_build_removes_the_jobs_and_the_operator_carries_on() {
    let world = World::start(TWO_NODES).await;
    world
        .apply(
            "doomed",
            &["linux/amd64", "linux/arm64"],
            &hello_context("bye\n"),
            json!({}),
        )
        .await;
    eventually("the build Jobs", Duration::from_secs(30), || async {
        let names = world.job_names().await;
        (names.iter().filter(|n| n.starts_with("doomed-")).count() >= 2).then_some(())
    })
    .await;
    world.delete("doomed").await;
    eventually(
        "the Jobs to be garbage-collected",
        Duration::from_secs(30),
        || async {
            world
                .job_names()
                .await
                .iter()
                .all(|n| !n.starts_with("doomed-"))
                .then_some(())
        },
    )
    .await;
    world
        .apply(
            "after",
            &["linux/amd64"],
            &hello_context("still here\n"),
            json!({}),
        )
        .await;
    world.wait_phase("after", Phase::Succeeded).await;
    assert!(
        !world.operator.log().contains("panicked"),
        "{}",
        world.operator.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resources_build_at_once() {
    let world = World::start(TWO_NODES).await;
    let (a, b) = (hello_context("a\n"), hello_context("b\n"));
    tokio::join!(
        world.apply("left", &["linux/amd64", "linux/arm64"], &a, json!({})),
        world.apply(
            "right",
            &["linux/arm64", "linux/amd64"],
            &b,
            json!({"tags": ["edge"]})
        ),
    );
    let (left, right) = tokio::join!(
        world.wait_phase("left", Phase::Succeeded),
        world.wait_phase("right", Phase::Succeeded)
    );
    assert_ne!(
        left.status.clone().unwrap().digest,
        right.status.clone().unwrap().digest
    );
    assert_clients_get_their_platform("left", &left);
    assert_clients_get_their_platform("right", &right);
    assert_one_job_per_platform(&world, "left", 2).await;
    assert_one_job_per_platform(&world, "right", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_operator_cleanly_and_hands_over_the_lease() {
    let mut world = World::start(TWO_NODES).await;
    eventually(
        "the operator to be ready",
        Duration::from_secs(20),
        || async { harness::http_get(world.operator.metrics_port, "/readyz") },
    )
    .await;
    assert!(harness::http_get(world.operator.metrics_port, "/healthz").is_some());
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(world.client.clone(), harness::OPERATOR_NAMESPACE);
    // Ready comes before leading: wait until it holds the Lease.
    eventually("the operator to lead", Duration::from_secs(20), || async {
        let lease = leases.get_opt("multiarch-operator").await.ok()??;
        lease
            .spec?
            .holder_identity
            .filter(|h| h.starts_with("e2e-"))
    })
    .await;
    let status = world.operator.stop_gracefully();
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        world.operator.log()
    );
    let lease = leases.get("multiarch-operator").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        None,
        "released on shutdown"
    );
    // The next replica takes over at once and builds.
    world.operator.restart();
    world
        .apply(
            "next",
            &["linux/amd64"],
            &hello_context("next\n"),
            json!({}),
        )
        .await;
    world.wait_phase("next", Phase::Succeeded).await;
}

/// The chart's RBAC rules, as `(verb, group, resource)` from Helm's own
/// rendering (tests/chart/render.py); `core` is the empty group.
fn chart_grants() -> std::collections::BTreeSet<(String, String, String)> {
    let out = std::process::Command::new("python3")
        .args(["tests/chart/render.py", "--rules"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 (Debian package python3) runs tests/chart/render.py");
    assert!(
        out.status.success(),
        "render.py --rules: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let group = if fields[1] == "core" { "" } else { fields[1] };
            (
                fields[0].to_string(),
                group.to_string(),
                fields[2].to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_covers_exactly_what_the_operator_does() {
    let world = World::start(TWO_NODES).await;
    let context = hello_context("rbac\n");
    // A build to the end, then two spec changes mid-build: Jobs applied,
    // superseded Jobs deleted, a repeated event patched.
    world
        .apply("rbac", &["linux/amd64", "linux/arm64"], &context, json!({}))
        .await;
    world.wait_phase("rbac", Phase::Succeeded).await;
    world
        .apply(
            "rbac",
            &["linux/amd64", "linux/arm64"],
            &context,
            json!({"tags": ["b"]}),
        )
        .await;
    world
        .apply(
            "rbac",
            &["linux/amd64", "linux/arm64"],
            &context,
            json!({"tags": ["c"]}),
        )
        .await;
    world.wait_phase("rbac", Phase::Succeeded).await;
    // Leases are renewed every quarter of the lease duration (8 s here).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut used = std::collections::BTreeSet::new();
    for r in world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("multiarch-operator/"))
    {
        assert!(
            r.code < 400 || r.code == 404 || r.code == 409,
            "the operator got {}: {r:?}",
            r.code
        );
        // It authenticates as its chart-rendered ServiceAccount, so RBAC
        // (not the request log alone) decides what it may do.
        assert_eq!(
            r.user.as_ref().map(|u| u.username.as_str()),
            Some("system:serviceaccount:multiarch-system:multiarch-operator"),
        );
        let resource = if r.subresource.is_empty() {
            r.resource.clone()
        } else {
            format!("{}/{}", r.resource, r.subresource)
        };
        used.insert((r.verb.clone(), r.group.clone(), resource.clone()));
        // An apply that creates the object is authorized as create as well.
        if r.verb == "patch" && r.code == 201 {
            used.insert(("create".to_string(), r.group.clone(), resource));
        }
    }
    let mut granted = chart_grants();
    // Checked by the OwnerReferencesPermissionEnforcement admission plugin
    // when a Job's owner reference sets blockOwnerDeletion; never called
    // (tests/owner_references.rs shows it is needed there).
    granted.remove(&(
        "update".to_string(),
        "multiarch.dev".to_string(),
        "multiarchimages/finalizers".to_string(),
    ));
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty(),
        "the operator does what the chart does not grant: {missing:?}"
    );
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never does: {unused:?}\nused: {used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watching_two_namespaces_leaves_the_others_alone() {
    let world = World::start_with(TWO_NODES, &["--namespace", "team-a,team-b"]).await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(world.client.clone());
    for team in ["team-a", "team-b"] {
        let namespace = serde_json::from_value(json!({"metadata": {"name": team}})).unwrap();
        namespaces
            .create(&Default::default(), &namespace)
            .await
            .unwrap();
    }
    let context = hello_context("scoped\n");
    world
        .apply("elsewhere", &["linux/amd64"], &context, json!({}))
        .await;
    for team in ["team-a", "team-b"] {
        world
            .apply_in(team, "mine", &["linux/amd64"], &context, json!({}))
            .await;
    }
    for team in ["team-a", "team-b"] {
        let api = world.mais_in(team);
        eventually(
            &format!("the {team} build"),
            harness::BUILD_TIMEOUT,
            || async {
                let status = api.get("mine").await.ok()?.status?;
                (status.phase == Some(Phase::Succeeded)).then_some(())
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let elsewhere = world.get("elsewhere").await;
    assert!(
        elsewhere.status.is_none(),
        "untouched outside team-a and team-b: {:?}",
        elsewhere.status
    );
    assert!(world
        .job_names()
        .await
        .iter()
        .all(|j| !j.starts_with("elsewhere-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_long_tags_still_get_their_succeeded_event() {
    let world = World::start(TWO_NODES).await;
    let tags: Vec<String> = (0..30)
        .map(|i| format!("release-{i:02}-{}", "x".repeat(90)))
        .collect();
    world
        .apply(
            "tags",
            &["linux/amd64", "linux/arm64"],
            &hello_context("tags\n"),
            json!({"tags": tags}),
        )
        .await;
    let done = world.wait_phase("tags", Phase::Succeeded).await;
    let event = world.wait_event("tags", "Succeeded").await;
    let note = event.message.clone().unwrap_or_default();
    assert!(note.len() <= 1024, "{} bytes", note.len());
    assert!(note.contains(&tags[0]), "{note}");
    for tag in [&tags[0], &tags[29]] {
        let raw = common::inspect_raw(&format!("{}:{tag}", done.spec.image), None).unwrap();
        assert_eq!(
            Some(common::sha256_digest(&raw)),
            done.status.clone().unwrap().digest
        );
    }
    println!(
        "30 tags of 100 characters: Succeeded Event delivered, {} bytes",
        note.len()
    );
}
