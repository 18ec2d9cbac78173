//! The scenarios that matter, on the real control plane (Kubernetes v1.34
//! built from its Go modules by scripts/upstream.sh) with two node agents:
//! the real scheduler, Job controller, garbage collector and admission
//! judge what the operator renders.

mod common;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/real.rs"]
mod real;

use harness::{assert_clients_get_their_platform, hello_context};
use multiarch_operator::api::{Phase, PlatformPhase};
use real::RealWorld;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platforms_end_in_a_pushed_index_on_the_real_control_plane() {
    let world = RealWorld::start(&[]).await;
    let applied = std::time::Instant::now();
    world
        .apply(
            "hello",
            &["linux/amd64", "linux/arm64"],
            &hello_context("hello\n"),
            json!({}),
        )
        .await;
    let done = world.wait_phase("hello", Phase::Succeeded).await;
    println!(
        "REAL time to index, two platforms, one COPY (buildah): {:.2} s",
        applied.elapsed().as_secs_f64()
    );
    let status = done.status.clone().unwrap();
    assert_eq!(status.platforms_ready.as_deref(), Some("2/2"));
    let nodes: Vec<_> = status
        .platforms
        .iter()
        .map(|p| p.node.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        nodes,
        ["node-amd64", "node-arm64"],
        "the real scheduler put each platform on its own architecture"
    );
    assert!(status
        .platforms
        .iter()
        .all(|p| p.phase == PlatformPhase::Succeeded && p.digest.is_some()));
    let raw = common::inspect_raw(&format!("{}:latest", done.spec.image), None).unwrap();
    assert_eq!(
        Some(common::sha256_digest(&raw)),
        status.digest,
        "the tag holds the index in status"
    );
    assert_clients_get_their_platform("hello", &done);
}

/// The tenant bar of docs/security.md, judged by the real API server: a
/// ServiceAccount allowed only MultiArchImages gets no Pod and no Secret,
/// and the chart's policy refuses every MultiArchImage that would mount a
/// Secret it cannot read or choose what runs where, naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_allowed_only_multiarchimages_is_refused_every_escalation() {
    let world = RealWorld::start(&[]).await;
    real::kubectl_apply(
        &world.plane,
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: tenant, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: image-author, namespace: default}
rules:
  - apiGroups: [multiarch.dev]
    resources: [multiarchimages]
    verbs: ["*"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: image-author, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: image-author}
subjects: [{kind: ServiceAccount, name: tenant, namespace: default}]
---
apiVersion: v1
kind: Secret
metadata: {name: regcred, namespace: default}
type: kubernetes.io/dockerconfigjson
stringData: {.dockerconfigjson: '{"auths": {}}'}
"#,
    );
    let token = world
        .plane
        .service_account_token("default", "tenant")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tenant = dir.path().join("tenant.kubeconfig");
    world
        .plane
        .write_kubeconfig_with_token(&tenant, "tenant", &token)
        .unwrap();
    let create = |yaml: &str| {
        let out = real::kubectl_with_input(&tenant, &["create", "-f", "-"], yaml);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n";
    let (ok, said) = create(pod);
    assert!(!ok && said.contains("forbidden"), "no Pods: {said}");
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n";
    let (ok, said) = create(secret);
    assert!(!ok && said.contains("forbidden"), "no Secrets: {said}");
    let mai = |name: &str, extra: &str| {
        format!(
            "apiVersion: multiarch.dev/v1alpha1\nkind: MultiArchImage\nmetadata: {{name: {name}}}\n\
             spec:\n  image: registry.example.com/team/app\n  platforms: [linux/amd64]\n  \
             source: {{git: {{url: https://git.example.com/app.git}}}}\n{extra}"
        )
    };
    for (name, extra, field) in [
        (
            "push",
            "  pushSecret: {name: regcred}\n",
            "spec.pushSecret.name",
        ),
        (
            "builder",
            "  builder: {strategy: buildah, image: evil.example.com/b}\n",
            "spec.builder.image",
        ),
        (
            "account",
            "  serviceAccountName: operator\n",
            "spec.serviceAccountName",
        ),
        (
            "nodes",
            "  nodeSelector: {kubernetes.io/hostname: node-amd64}\n",
            "spec.nodeSelector",
        ),
    ] {
        let (ok, said) = create(&mai(name, extra));
        assert!(
            !ok && said.contains(field) && said.contains("multiarch-operator-tenant-rights"),
            "{name}: the real API server refuses it, naming {field}: {said}"
        );
    }
    let (ok, said) = create(&mai("plain", ""));
    assert!(ok, "a spec that uses no right is admitted: {said}");
    // What the tenant may not do, an admin may.
    let admin = world.plane.kubeconfig_path();
    let out = real::kubectl_with_input(
        admin,
        &["create", "-f", "-"],
        &mai("push", "  pushSecret: {name: regcred}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pods the real PodSecurity admission refuses: the real Job controller's
/// FailedCreate reaches the platform's message and `Stalled` within
/// seconds, and once the administrator relaxes the namespace the build
/// goes on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_refused_by_the_real_pod_security_admission_are_named() {
    use kube::Api;
    use multiarch_operator::api::MultiArchImage;
    let world = RealWorld::start(&[]).await;
    let label = |level: &str| {
        let out = world
            .plane
            .kubectl(&[
                "label",
                "--overwrite",
                "namespace",
                "restricted",
                &format!("pod-security.kubernetes.io/enforce={level}"),
            ])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let out = world
        .plane
        .kubectl(&["create", "namespace", "restricted"])
        .unwrap();
    assert!(out.status.success());
    label("restricted");
    harness::apply_context_build(
        &world.client,
        &world.registry,
        "restricted",
        "psa",
        &["linux/amd64", "linux/arm64"],
        &hello_context("psa\n"),
        json!({}),
    )
    .await;
    let mais: Api<MultiArchImage> = Api::namespaced(world.client.clone(), "restricted");
    let started = std::time::Instant::now();
    let message = harness::eventually(
        "FailedCreate named",
        std::time::Duration::from_secs(60),
        || async {
            let status = mais.get("psa").await.ok()?.status?;
            let stalled = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True");
            let message = status
                .platforms
                .iter()
                .map(|p| p.message.clone())
                .find(|m| m.contains("FailedCreate") && m.contains("PodSecurity"))?;
            stalled.then_some(message)
        },
    )
    .await;
    println!(
        "REAL PodSecurity refusal named in {:.1} s: {message}",
        started.elapsed().as_secs_f64()
    );
    label("privileged");
    harness::wait_phase(&mais, &world.operator, "psa", Phase::Succeeded).await;
}

/// `multiarch.dev/rebuild` on the real API server: a new value builds every
/// platform again under a new build id, and the real garbage collector
/// removes the Jobs of the build it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rebuild_annotation_builds_again_under_a_new_build_id() {
    use multiarch_operator::api::REBUILD_ANNOTATION;
    let world = RealWorld::start(&[]).await;
    world
        .apply(
            "again",
            &["linux/amd64", "linux/arm64"],
            &hello_context("again\n"),
            json!({}),
        )
        .await;
    let first = world.wait_phase("again", Phase::Succeeded).await;
    let first_id = first.status.unwrap().build_id.unwrap();
    let out = world
        .plane
        .kubectl(&[
            "annotate",
            "mai",
            "again",
            &format!("{REBUILD_ANNOTATION}=1"),
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = harness::eventually(
        "a second build",
        std::time::Duration::from_secs(120),
        || async {
            let resource = world.mais().get("again").await.ok()?;
            let status = resource.status.clone()?;
            (status.phase == Some(Phase::Succeeded)
                && status.build_id.as_deref() != Some(first_id.as_str()))
            .then_some(resource)
        },
    )
    .await;
    let second_id = second.status.clone().unwrap().build_id.unwrap();
    let short = multiarch_operator::render::short_id(&second_id).to_string();
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(world.client.clone(), harness::NAMESPACE);
    harness::eventually(
        "only the new build's Jobs",
        std::time::Duration::from_secs(60),
        || async {
            let names: Vec<String> = jobs
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .filter_map(|j| j.metadata.name)
                .collect();
            (names.len() == 3 && names.iter().all(|n| n.contains(&short))).then_some(())
        },
    )
    .await;
    assert_clients_get_their_platform("again", &second);
}

/// The real PodGC (kube-controller-manager `--terminated-pod-gc-threshold`
/// 1, checked every 20 s) deletes finished build pods once more than one
/// exists: the build still ends in a pushed index, and what the operator
/// recorded stays in status after the pods are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_survives_the_real_pod_gc_collecting_its_pods() {
    let world = RealWorld::start_with(&[], |c| c.terminated_pod_gc_threshold = 1).await;
    world
        .apply(
            "collected",
            &["linux/amd64", "linux/arm64"],
            &hello_context("collected\n"),
            json!({}),
        )
        .await;
    let done = world.wait_phase("collected", Phase::Succeeded).await;
    assert_clients_get_their_platform("collected", &done);
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(world.client.clone(), harness::NAMESPACE);
    harness::eventually(
        "PodGC to leave at most one finished pod",
        std::time::Duration::from_secs(90),
        || async {
            let finished = pods
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| {
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                    matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
                })
                .count();
            (finished <= 1).then_some(())
        },
    )
    .await;
    let after = world.mais().get("collected").await.unwrap();
    assert_eq!(
        after.status.unwrap().digest,
        done.status.unwrap().digest,
        "collected pods change nothing in status"
    );
}
