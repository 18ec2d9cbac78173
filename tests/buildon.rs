//! `spec.buildOn` end to end: a simulated cluster with amd64 nodes only,
//! the real operator, real buildah builds of base images made from Debian
//! packages, the real merge, a real registry.
//!
//! Emulation is the kernel's `binfmt_misc`, which is machine-wide. The tests
//! that change it live in this binary only, take `BINFMT` one at a time, and
//! put back exactly what they changed (`common::debian::Aarch64Emulation`).
//! No other test of the project runs foreign code (their images have no
//! `RUN` step), so none is disturbed.

mod common;
#[path = "e2e/harness.rs"]
mod harness;

use common::debian::{file_in_image, push_busybox_index, Aarch64Emulation};
use harness::World;
use multiarch_operator::api::{MultiArchImage, Phase};
use serde_json::json;

static BINFMT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const AMD64_ONLY: &[(&str, &str)] = &[("sim-amd64", "linux/amd64")];

/// A world with amd64 nodes only, and a busybox index (amd64, arm64) in its
/// registry as `base/busybox:1` and `:build`. Two tags, because buildah
/// 1.28 (Debian 12's) reuses an image it holds by name whatever platform
/// it was pulled for: stages on two platforms must name two references.
async fn amd64_world() -> (World, String) {
    let world = World::start(AMD64_ONLY).await;
    push_busybox_index(&world.registry, "base/busybox", &["1", "build"]);
    let base = world.registry.repo("base/busybox");
    (world, base)
}

fn built_on(resource: &MultiArchImage) -> Vec<(String, String)> {
    resource
        .status
        .as_ref()
        .unwrap()
        .platforms
        .iter()
        .map(|p| (p.platform.clone(), p.built_on.clone().unwrap_or_default()))
        .collect()
}

fn pair(platform: &str, on: &str) -> (String, String) {
    (platform.to_string(), on.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_compiling_stage_builds_arm64_on_amd64_nodes() {
    let (world, base) = amd64_world().await;
    // The work runs in a $BUILDPLATFORM stage; the arm64 stage only copies.
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {base}:build AS build\n\
         ARG TARGETPLATFORM\n\
         ARG BUILDPLATFORM\n\
         RUN echo \"for $TARGETPLATFORM on $BUILDPLATFORM by $(uname -m)\" > /out.txt\n\
         FROM {base}:1\n\
         COPY --from=build /out.txt /out.txt\n"
    );
    world
        .apply(
            "cross",
            &["linux/amd64", "linux/arm64"],
            &[("Dockerfile", dockerfile.as_str())],
            json!({"buildOn": {"linux/arm64": "linux/amd64"}}),
        )
        .await;
    let done = world.wait_phase("cross", Phase::Succeeded).await;
    assert_eq!(
        built_on(&done),
        [
            pair("linux/amd64", "linux/amd64"),
            pair("linux/arm64", "linux/amd64")
        ]
    );
    let event = world.wait_event("cross", "BuiltOnOtherPlatform").await;
    let note = event.message.unwrap_or_default();
    assert!(
        note.starts_with("linux/arm64 was built on node sim-amd64 of platform linux/amd64"),
        "{note}"
    );
    // One foreign build, one event: the native platform has none.
    let foreign = world
        .events("cross")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("BuiltOnOtherPlatform"))
        .count();
    assert_eq!(foreign, 1);
    // The index has an arm64 child whose config says arm64 (the merge
    // checked it too), and a client of each platform gets its own.
    harness::assert_clients_get_their_platform("cross", &done);
    let status = done.status.clone().unwrap();
    let arm64 = format!(
        "{}@{}",
        done.spec.image,
        status.platforms[1].digest.as_deref().unwrap()
    );
    assert_eq!(
        common::inspect_for_platform(&arm64, "linux/arm64", None).architecture,
        "arm64"
    );
    // The work ran natively on the amd64 node, for arm64; the image's own
    // files are arm64 ones.
    assert_eq!(
        file_in_image(&arm64, "out.txt").trim(),
        "for linux/arm64 on linux/amd64 by x86_64"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_platform_step_fails_plainly_without_emulation_and_runs_under_qemu() {
    let _serial = BINFMT.lock().await;
    let (world, base) = amd64_world().await;
    // A RUN step of the arm64 stage: arm64 code on the amd64 node.
    let dockerfile = format!("FROM {base}:1\nRUN uname -m > /arch.txt\n");
    let context = [("Dockerfile", dockerfile.as_str())];
    let spec = json!({"buildOn": {"linux/arm64": "linux/amd64"}, "backoffLimit": 0});

    {
        let _none = Aarch64Emulation::unavailable();
        world
            .apply("emulated", &["linux/arm64"], &context, spec.clone())
            .await;
        let failed = world.wait_phase("emulated", Phase::Failed).await;
        let platform = &failed.status.as_ref().unwrap().platforms[0];
        assert_eq!(platform.built_on.as_deref(), Some("linux/amd64"));
        eprintln!("the failed platform's message: {}", platform.message);
        for needle in [
            "a build step ran linux/arm64 code on a linux/amd64 node",
            "exec format error",
            "FROM --platform=$BUILDPLATFORM",
            "binfmt_misc on the linux/amd64 nodes",
        ] {
            assert!(
                platform.message.contains(needle),
                "{needle:?} in {}",
                platform.message
            );
        }
    }

    // The same step with Debian's qemu-user-static registered.
    let _qemu = Aarch64Emulation::qemu();
    world
        .apply("emulated-qemu", &["linux/arm64"], &context, spec)
        .await;
    let done = world.wait_phase("emulated-qemu", Phase::Succeeded).await;
    assert_eq!(built_on(&done), [pair("linux/arm64", "linux/amd64")]);
    harness::assert_clients_get_their_platform("emulated-qemu", &done);
    let status = done.status.clone().unwrap();
    let image = format!(
        "{}@{}",
        done.spec.image,
        status.platforms[0].digest.as_deref().unwrap()
    );
    // The step really ran as arm64 code.
    assert_eq!(file_in_image(&image, "arch.txt").trim(), "aarch64");
}

/// The CRD's rules for `spec.buildOn`, as the API server applies them: a
/// key must be one of `spec.platforms`, a value a platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_a_build_on_entry_naming_no_listed_platform() {
    use kube::api::{Api, PostParams};
    let sim = harness::start_sim(AMD64_ONLY);
    let client = sim.client();
    harness::install_crd(&client).await;
    let mais: Api<MultiArchImage> = Api::namespaced(client, harness::NAMESPACE);
    let resource = |name: &str, build_on: serde_json::Value| -> MultiArchImage {
        serde_json::from_value(json!({
            "apiVersion": "multiarch.dev/v1alpha1", "kind": "MultiArchImage",
            "metadata": {"name": name},
            "spec": {
                "image": "registry.example.com/x",
                "platforms": ["linux/amd64", "linux/arm64"],
                "source": {"configMap": {"name": "ctx"}},
                "buildOn": build_on,
            },
        }))
        .unwrap()
    };
    let refused = |error: kube::Error| format!("{error:?}");
    let unlisted = mais
        .create(
            &PostParams::default(),
            &resource("unlisted", json!({"linux/s390x": "linux/amd64"})),
        )
        .await
        .map(|_| "accepted".to_string())
        .unwrap_or_else(refused);
    assert!(
        unlisted.contains(multiarch_operator::api::BUILD_ON_KEYS_MESSAGE),
        "{unlisted}"
    );
    let malformed = mais
        .create(
            &PostParams::default(),
            &resource("malformed", json!({"linux/arm64": "AMD64"})),
        )
        .await
        .map(|_| "accepted".to_string())
        .unwrap_or_else(refused);
    assert!(malformed.contains("spec.buildOn"), "{malformed}");
    mais.create(
        &PostParams::default(),
        &resource("listed", json!({"linux/arm64": "linux/amd64"})),
    )
    .await
    .expect("a listed platform built on amd64 nodes is accepted");
}
