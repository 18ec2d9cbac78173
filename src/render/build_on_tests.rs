//! `spec.buildOn` in rendering: the pin follows the nodes, the builder the
//! target platform, and the build id the way the image is made.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;
use crate::validate::parse_manifests;

fn resource(strategy: &str, build_on: &str) -> MultiArchImage {
    parse_manifests(&format!(
        r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {{name: cross, namespace: ci}}
spec:
  image: registry.example.com/tools/cross
  platforms: [linux/amd64, linux/aarch64, linux/riscv64]
  source: {{configMap: {{name: cross-context}}}}
  builder: {{strategy: {strategy}}}
  nodeSelector: {{pool: builders}}
  buildOn: {build_on}
"#
    ))
    .expect("fixture parses")
    .remove(0)
}

fn jobs(r: &MultiArchImage) -> Vec<Job> {
    let valid = validate::validate_allowing_build_step_push(r).expect("the fixture is valid");
    plan(
        r,
        &valid,
        build_id(&r.spec, &BuildInputs::default()),
        &BuilderImages::default(),
        None,
    )
    .build_jobs
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

/// The build step's whole argv (its command, which wraps the builder's own
/// command line to keep its output for the report, and its args).
fn argv(job: &Job) -> Vec<String> {
    let step = build(job);
    step.command
        .into_iter()
        .flatten()
        .chain(step.args.into_iter().flatten())
        .collect()
}

fn build(job: &Job) -> Container {
    pod(job)
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == "build")
        .expect("the build step")
        .clone()
}

fn pin(job: &Job) -> (String, String, String) {
    let selector = pod(job).node_selector.clone().unwrap();
    let toleration = pod(job).tolerations.clone().unwrap()[0].clone();
    assert_eq!(toleration.key.as_deref(), Some("kubernetes.io/arch"));
    assert_eq!(selector["pool"], "builders", "spec.nodeSelector merged");
    (
        selector["kubernetes.io/os"].clone(),
        selector["kubernetes.io/arch"].clone(),
        toleration.value.unwrap(),
    )
}

#[test]
fn a_platform_is_pinned_to_its_build_on_nodes_and_built_for_itself() {
    let on_amd64 = "{linux/aarch64: linux/amd64, linux/riscv64: linux/arm64}";
    for strategy in ["buildah", "buildkit"] {
        let jobs = jobs(&resource(strategy, on_amd64));
        let pins: Vec<_> = jobs.iter().map(pin).collect();
        let want = |arch: &str| ("linux".to_string(), arch.to_string(), arch.to_string());
        assert_eq!(
            pins,
            [want("amd64"), want("amd64"), want("arm64")],
            "{strategy}"
        );
        // The builder is still asked for the target platform.
        let targets: Vec<String> = jobs
            .iter()
            .map(|job| {
                let args = argv(job);
                match strategy {
                    "buildah" => args
                        .windows(2)
                        .find(|w| w[0] == "--platform")
                        .map(|w| w[1].clone())
                        .unwrap(),
                    _ => args
                        .iter()
                        .find_map(|a| a.strip_prefix("platform="))
                        .unwrap()
                        .to_string(),
                }
            })
            .collect();
        assert_eq!(
            targets,
            ["linux/amd64", "linux/arm64", "linux/riscv64"],
            "{strategy}"
        );
        // Job names and platform labels stay the target's.
        assert!(jobs[1]
            .metadata
            .name
            .as_deref()
            .unwrap()
            .ends_with("-linux-arm64"));
    }
}

#[test]
fn without_an_entry_each_platform_is_pinned_to_its_own_nodes() {
    let jobs = jobs(&resource("buildkit", "{}"));
    let arches: Vec<String> = jobs.iter().map(|j| pin(j).1).collect();
    assert_eq!(arches, ["amd64", "arm64", "riscv64"]);
}

#[test]
fn build_on_is_part_of_the_build_id_only_when_it_moves_a_platform() {
    let id =
        |build_on: &str| build_id(&resource("buildah", build_on).spec, &BuildInputs::default());
    let native = id("{}");
    assert_eq!(
        id("{linux/aarch64: linux/arm64}"),
        native,
        "a native entry changes nothing"
    );
    let cross = id("{linux/aarch64: linux/amd64}");
    assert_ne!(cross, native, "built another way, possibly another image");
    assert_eq!(
        id("{linux/aarch64: linux/x86_64}"),
        cross,
        "values are normalised"
    );
    assert_ne!(id("{linux/riscv64: linux/amd64}"), cross);
}

#[test]
fn buildah_is_told_the_build_platform_when_it_builds_elsewhere() {
    let jobs = jobs(&resource(
        "buildah",
        "{linux/aarch64: linux/amd64, linux/riscv64: linux/arm64}",
    ));
    let build_args: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            argv(job)
                .windows(2)
                .filter(|w| w[0] == "--build-arg")
                .map(|w| w[1].clone())
                .collect()
        })
        .collect();
    assert_eq!(
        build_args,
        [
            vec![],
            vec!["BUILDPLATFORM=linux/amd64".to_string()],
            vec!["BUILDPLATFORM=linux/arm64".to_string()]
        ]
    );
}
