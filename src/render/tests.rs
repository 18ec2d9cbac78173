//! Rendering from YAML fixtures: each spec field lands where it should.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;
use crate::validate::parse_manifests;

const FULL: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: cowsay, namespace: ci, uid: 0b7c5c3e-1111-2222-3333-444455556666}
spec:
  image: registry.example.com:5000/tools/cowsay
  tags: [latest, v2.0.4]
  platforms: [linux/amd64, linux/aarch64, linux/arm/v7]
  source:
    git: {url: "https://example.com/cowsay.git", revision: v2.0.4, secretRef: {name: git-cred}}
  contextDir: ./app
  dockerfile: build/Dockerfile
  target: release
  buildArgs: {VERSION: "v2.0.4", EVIL: "$(rm -rf /); `id`"}
  builder: {strategy: buildah, image: registry.example.com/tools/buildah:v1.38.1}
  pushSecret: {name: regcred}
  insecureRegistry: true
  nodeSelector: {pool: builders}
  tolerations: [{key: dedicated, operator: Equal, value: builds, effect: NoSchedule}]
  resources: {requests: {cpu: "2", memory: 4Gi}}
  serviceAccountName: builder
  activeDeadlineSeconds: 900
  backoffLimit: 2
"#;

fn resource(yaml: &str) -> MultiArchImage {
    parse_manifests(yaml).expect("fixture parses").remove(0)
}

/// The plan of a valid fixture, through the same steps the controller takes.
fn planned(r: &MultiArchImage) -> Plan {
    let valid = validate::validate(r).expect("the fixture is valid");
    plan(
        r,
        &valid,
        build_id(&r.spec, &BuildInputs::default()),
        &BuilderImages::default(),
        None,
    )
}

/// Every key of a rendered Job survives the typed round trip (nulls, which
/// mean "unset", aside).
pub(super) fn assert_round_trips(rendered: &Value, job: &Job) {
    fn without_nulls(value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), without_nulls(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
            other => other.clone(),
        }
    }
    let typed = serde_json::to_value(job).expect("a Job serialises");
    assert_eq!(
        without_nulls(rendered),
        typed,
        "a rendered key was lost or changed by the typed Job"
    );
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn init(job: &Job, name: &str) -> Container {
    pod(job)
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("init container {name}"))
        .clone()
}

fn args(c: &Container) -> Vec<String> {
    c.args.clone().unwrap_or_default()
}

/// What a step runs under the fixed logging or report script: the
/// positional arguments after `sh -c SCRIPT NAME`. The script itself holds
/// no user value.
fn under_script(c: &Container, user_values: &[&str]) -> Vec<String> {
    let command = c.command.clone().unwrap();
    assert_eq!(command[..2], ["sh", "-c"], "{}", c.name);
    for value in user_values {
        assert!(
            !command[2].contains(value),
            "{value} in the script of {}",
            c.name
        );
    }
    command[4..].to_vec()
}

fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

#[test]
fn one_job_per_platform_pinned_and_tolerated() {
    let r = resource(FULL);
    let plan = planned(&r);
    assert_eq!(plan.build_jobs.len(), 3);
    let arches: Vec<_> = plan
        .build_jobs
        .iter()
        .map(|j| pod(j).node_selector.clone().unwrap())
        .collect();
    for (selector, arch) in arches.iter().zip(["amd64", "arm64", "arm"]) {
        assert_eq!(selector["kubernetes.io/arch"], arch);
        assert_eq!(selector["kubernetes.io/os"], "linux");
        assert_eq!(selector["pool"], "builders", "spec.nodeSelector merged");
    }
    let tolerations = pod(&plan.build_jobs[1]).tolerations.clone().unwrap();
    assert_eq!(tolerations[0].key.as_deref(), Some("kubernetes.io/arch"));
    assert_eq!(tolerations[0].value.as_deref(), Some("arm64"));
    assert_eq!(tolerations[0].effect.as_deref(), Some("NoSchedule"));
    assert_eq!(tolerations[1].key.as_deref(), Some("dedicated"));
}

#[test]
fn job_metadata_names_labels_and_owner() {
    let r = resource(FULL);
    let plan = planned(&r);
    let job = &plan.build_jobs[2];
    let meta = &job.metadata;
    let name = meta.name.clone().unwrap();
    assert_eq!(
        name,
        format!("cowsay-{}-linux-arm-v7", short_id(&plan.build_id))
    );
    assert_eq!(meta.namespace.as_deref(), Some("ci"));
    let labels = meta.labels.clone().unwrap();
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(labels[NAME_LABEL], "cowsay");
    assert_eq!(labels[BUILD_ID_LABEL], plan.build_id);
    assert_eq!(labels[PLATFORM_LABEL], "linux-arm-v7");
    assert_eq!(
        meta.annotations.clone().unwrap()[PLATFORM_ANNOTATION],
        "linux/arm/v7"
    );
    let owner = &meta.owner_references.clone().unwrap()[0];
    assert_eq!(owner.kind, "MultiArchImage");
    assert_eq!(owner.uid, "0b7c5c3e-1111-2222-3333-444455556666");
    assert_eq!(owner.controller, Some(true));
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(spec.active_deadline_seconds, Some(900));
    assert_eq!(pod(job).restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod(job).service_account_name.as_deref(), Some("builder"));
}

#[test]
fn buildah_gets_every_field_as_an_argument() {
    let r = resource(FULL);
    let plan = planned(&r);
    let job = &plan.build_jobs[1];
    let build = init(job, "build");
    let a = under_script(&build, &["cowsay", "EVIL", "release"]);
    assert_eq!(a[..2], ["buildah", "bud"]);
    assert!(has_pair(&a, "--platform", "linux/arm64"));
    assert!(has_pair(
        &a,
        "--file",
        "/workspace/source/app/build/Dockerfile"
    ));
    assert!(has_pair(&a, "--target", "release"));
    assert!(has_pair(&a, "--build-arg", "VERSION=v2.0.4"));
    // Shell metacharacters travel verbatim as one argument.
    assert!(has_pair(&a, "--build-arg", "EVIL=$(rm -rf /); `id`"));
    assert_eq!(a.last().unwrap(), "/workspace/source/app");
    let resources = build.resources.clone().unwrap();
    assert_eq!(resources.requests.unwrap()["memory"].0, "4Gi");

    // The cache export: the same build, every step from local storage,
    // with the push secret.
    let export = init(job, "export-cache");
    let e = under_script(&export, &["cowsay", "EVIL", "release"]);
    assert_eq!(
        e[0],
        "registry.example.com:5000/tools/cowsay-buildcache-linux-arm64"
    );
    assert_eq!(e[1..], a[5..], "the cache export builds the same");
    let env = export.env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "REGISTRY_AUTH_FILE"
        && e.value.as_deref() == Some("/var/run/multiarch/docker/config.json")));
    // The image goes by digest, from the layout the build wrote.
    let push = &pod(job).containers[0];
    assert_eq!(
        push.image.as_deref(),
        Some(BuilderImages::default().merge.as_str())
    );
    let p = push.args.clone().unwrap();
    assert!(has_pair(&p, "--layout", "/workspace/image"));
    assert!(has_pair(
        &p,
        "--repository",
        "registry.example.com:5000/tools/cowsay"
    ));
    assert!(has_pair(
        &p,
        "--buildah-cache",
        "registry.example.com:5000/tools/cowsay-buildcache-linux-arm64"
    ));
    assert!(!p.iter().any(|a| a.contains(":mai-")), "no staging tag");
    // Where the operator's image cannot run, a buildah step pushes under a
    // staging tag.
    let arm = &plan.build_jobs[2];
    let push = &pod(arm).containers[0];
    let p = under_script(push, &["cowsay", "EVIL", "release"]);
    assert_eq!(
        p[..3],
        [
            format!(
                "registry.example.com:5000/tools/cowsay:mai-{}-linux-arm-v7",
                short_id(&plan.build_id)
            ),
            "false".to_string(),
            "registry.example.com:5000/tools/cowsay-buildcache-linux-arm-v7".to_string(),
        ],
        "destination, --tls-verify, cache repository"
    );
    let env = push.env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "REGISTRY_AUTH_FILE"
        && e.value.as_deref() == Some("/var/run/multiarch/docker/config.json")));
    let security = build.security_context.clone().unwrap();
    assert_eq!(security.privileged, Some(false));
}

#[test]
fn git_source_is_fetched_before_the_build_and_only_there_with_credentials() {
    let r = resource(FULL);
    let plan = planned(&r);
    let job = &plan.build_jobs[0];
    let fetch = init(job, "fetch-source");
    let command = fetch.command.clone().unwrap();
    assert_eq!(command[..2], ["sh", "-c"]);
    assert_eq!(
        command[3..],
        [
            "fetch-source",
            "https://example.com/cowsay.git",
            "",
            "v2.0.4"
        ],
        "user values are positional arguments; no commit yet: the step resolves v2.0.4"
    );
    assert!(!command[2].contains("example.com"), "never in the script");
    let names: Vec<_> = pod(job)
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "fetch-source",
            "write-builder-config",
            "build",
            "export-cache"
        ],
        "source before build"
    );
    let volumes = pod(job).volumes.clone().unwrap();
    let git = volumes
        .iter()
        .find(|v| v.name == "git-credentials")
        .unwrap();
    assert_eq!(
        git.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("git-cred")
    );
    let mounted_by: Vec<String> = pod(job)
        .init_containers
        .iter()
        .flatten()
        .chain(&pod(job).containers)
        .filter(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "git-credentials" || m.name == "git-home")
        })
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        mounted_by,
        ["fetch-source"],
        "git credentials reach the fetch alone"
    );
    let push = volumes.iter().find(|v| v.name == "push-secret").unwrap();
    let items = push.secret.as_ref().unwrap().items.clone().unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        (".dockerconfigjson", "config.json")
    );
}

const GOLDEN_FULL: &str = "da396f29c213697b";
const GOLDEN_BUILDKIT: &str = "e1264f0c896e7a35";

const BUILDKIT: &str = r#"
apiVersion: multiarch.dev/v1alpha1
kind: MultiArchImage
metadata: {name: hello, namespace: default}
spec:
  image: localhost:5000/hello
  source: {configMap: {name: hello-context}}
  buildArgs: {A: "x,y=z"}
"#;

#[test]
fn defaults_apply_and_buildkit_is_rootless() {
    let r = resource(BUILDKIT);
    assert_eq!(r.spec.tags, ["latest"]);
    assert_eq!(r.spec.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(r.spec.backoff_limit, 1);
    assert_eq!(r.spec.active_deadline_seconds, 3600);
    let plan = planned(&r);
    let job = &plan.build_jobs[0];
    let build = init(job, "build");
    assert_eq!(build.image.as_deref(), Some(DEFAULT_BUILDKIT_IMAGE));
    let a = under_script(&build, &["hello", "x,y=z"]);
    assert_eq!(a[..2], ["buildctl-daemonless.sh", "build"]);
    assert!(has_pair(&a, "--opt", "platform=linux/amd64"));
    assert!(has_pair(&a, "--opt", "build-arg:A=x,y=z"));
    assert!(has_pair(
        &a,
        "--output",
        "type=oci,dest=/workspace/image,tar=false"
    ));
    let push = &pod(job).containers[0];
    assert_eq!(push.image.as_deref(), Some(DEFAULT_MERGE_IMAGE));
    assert_eq!(
        push.args.as_ref().unwrap()[..3],
        ["push", "--layout", "/workspace/image"]
    );
    let security = build.security_context.clone().unwrap();
    assert_eq!(security.privileged, None, "never privileged");
    assert_eq!(security.seccomp_profile.unwrap().type_, "Unconfined");
    assert_eq!(security.app_armor_profile.unwrap().type_, "Unconfined");
    let pod_security = pod(job).security_context.clone().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(1000));
    let mounts = build.volume_mounts.clone().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m.mount_path == "/home/user/.local/share/buildkit"));
    assert!(mounts
        .iter()
        .any(|m| m.mount_path == SOURCE_DIR && m.name == "source"));
    assert!(
        pod(job)
            .init_containers
            .iter()
            .flatten()
            .all(|c| c.name == "build"),
        "no git step"
    );
    assert!(pod(job)
        .volumes
        .iter()
        .flatten()
        .all(|v| v.name != "push-secret"));
}

#[test]
fn merge_job_lists_platforms_in_order_and_every_tag() {
    let r = resource(FULL);
    let plan = planned(&r);
    let digests: Vec<_> = plan
        .platforms
        .iter()
        .enumerate()
        .map(|(i, _)| format!("sha256:{}", i.to_string().repeat(64)))
        .collect();
    let job = plan.merge.job(&digests);
    assert_eq!(
        job.metadata.name.clone().unwrap(),
        format!("cowsay-{}-merge", short_id(&plan.build_id))
    );
    let c = &pod(&job).containers[0];
    assert_eq!(c.image.as_deref(), Some(DEFAULT_MERGE_IMAGE));
    let a = args(c);
    assert_eq!(a[0], "merge");
    let platforms: Vec<_> = a
        .windows(2)
        .filter(|w| w[0] == "--platform-image")
        .map(|w| w[1].clone())
        .collect();
    assert_eq!(platforms.len(), 3);
    assert!(
        platforms[2].starts_with("linux/arm/v7=registry.example.com:5000/tools/cowsay@sha256:2222")
    );
    assert!(has_pair(
        &a,
        "--target",
        "registry.example.com:5000/tools/cowsay:v2.0.4"
    ));
    assert!(has_pair(
        &a,
        "--insecure-registry",
        "registry.example.com:5000"
    ));
    assert!(has_pair(
        &a,
        "--registry-config",
        "/var/run/multiarch/docker/config.json"
    ));
    assert!(has_pair(&a, "--digest-file", "/dev/termination-log"));
    let security = c.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
}

#[test]
fn disruptions_do_not_count_and_pods_are_left_whole() {
    let r = resource(FULL);
    let plan = planned(&r);
    let merge = plan.merge.job(&[]);
    for job in plan.build_jobs.iter().chain([&merge]) {
        let spec = job.spec.as_ref().unwrap();
        let rules = &spec.pod_failure_policy.as_ref().unwrap().rules;
        assert_eq!(rules[0].action, "Ignore");
        let on = rules[0].on_pod_conditions.as_ref().unwrap();
        assert_eq!(on[0].type_, "DisruptionTarget");
        let annotations = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .clone()
            .unwrap();
        assert_eq!(annotations["sidecar.istio.io/inject"], "false");
        assert_eq!(annotations["linkerd.io/inject"], "disabled");
    }
    let annotations = plan.build_jobs[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["karpenter.sh/do-not-disrupt"], "true");
    assert_eq!(
        annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
}

#[test]
fn names_stay_within_63_characters_and_unique() {
    let long = "a".repeat(250);
    let other = format!("{}b", "a".repeat(249));
    let p = Platform::parse("linux/arm/v7").unwrap();
    let n1 = build_job_name(&long, "0123abcd", &p);
    let n2 = build_job_name(&other, "0123abcd", &p);
    assert!(n1.len() <= 63 && n2.len() <= 63, "{n1} {n2}");
    assert_ne!(n1, n2);
    assert!(n1.ends_with("-0123abcd-linux-arm-v7"));
    assert!(name_label_value(&long).len() <= 63);
    assert_eq!(
        build_job_name("short", "0123abcd", &p),
        "short-0123abcd-linux-arm-v7"
    );
}

/// Two long names whose SHA-256 share their first 24 bits (what names were
/// told apart by before) get Jobs and labels of their own.
#[test]
fn long_names_colliding_in_24_bits_are_kept_apart() {
    use sha2::{Digest, Sha256};
    let mut seen = std::collections::HashMap::new();
    let (first, second) = (0u32..)
        .find_map(|i| {
            let name = format!("{}-{i}", "team-platform-release-candidate-image".repeat(2));
            let key: [u8; 3] = Sha256::digest(name.as_bytes())[..3].try_into().unwrap();
            seen.insert(key, name.clone())
                .map(|earlier| (earlier, name))
        })
        .unwrap();
    let p = Platform::parse("linux/arm64").unwrap();
    let jobs = [&first, &second].map(|n| build_job_name(n, "0123abcd", &p));
    assert_ne!(jobs[0], jobs[1]);
    assert!(jobs.iter().all(|j| j.len() <= 63), "{jobs:?}");
    let labels = [&first, &second].map(|n| name_label_value(n));
    assert_ne!(labels[0], labels[1]);
    assert!(labels.iter().all(|l| l.len() <= 63), "{labels:?}");
    assert_ne!(
        merge_job_name(&first, "0123abcd"),
        merge_job_name(&second, "0123abcd")
    );
}

#[test]
fn build_id_follows_what_shapes_the_image_only() {
    let id = |r: &MultiArchImage| build_id(&r.spec, &BuildInputs::default());
    let a = resource(BUILDKIT);
    let mut b = a.clone();
    b.metadata.uid = Some("another".into());
    b.metadata.generation = Some(7);
    assert_eq!(id(&a), id(&b), "metadata does not count");
    // How a build runs does not change what it makes.
    b.spec.backoff_limit = 5;
    b.spec.active_deadline_seconds = 60;
    b.spec.node_selector.insert("pool".into(), "fast".into());
    b.spec.push_secret = Some(crate::api::LocalObjectRef {
        name: "other".into(),
    });
    assert_eq!(id(&a), id(&b), "scheduling and secrets do not count");
    // Tags are a set; aliases of a platform are one platform.
    b.spec.tags.reverse();
    b.spec.platforms = a
        .spec
        .platforms
        .iter()
        .map(|p| p.replace("arm64", "aarch64"))
        .collect();
    assert_eq!(id(&a), id(&b));
    b.spec.build_args.insert("NEW".into(), "1".into());
    assert_ne!(id(&a), id(&b));
    assert_eq!(id(&a).len(), BUILD_ID_LENGTH);
    let with = |inputs: BuildInputs| build_id(&a.spec, &inputs);
    assert_ne!(
        with(BuildInputs {
            rebuild: Some("1"),
            ..Default::default()
        }),
        id(&a)
    );
    assert_ne!(
        with(BuildInputs {
            commit: Some("0123456789abcdef0123456789abcdef01234567"),
            ..Default::default()
        }),
        id(&a)
    );
}

/// The ids of the fixtures, pinned: an operator release must not change
/// the id of an unchanged resource (that would rebuild every image). A new
/// canonical form is a new version, with these ids kept.
#[test]
fn build_ids_are_stable_across_releases() {
    let id = |yaml: &str| build_id(&resource(yaml).spec, &BuildInputs::default());
    let golden = [(FULL, "FULL"), (BUILDKIT, "BUILDKIT")].map(|(yaml, name)| (name, id(yaml)));
    assert_eq!(
        golden,
        [
            ("FULL", GOLDEN_FULL.to_string()),
            ("BUILDKIT", GOLDEN_BUILDKIT.to_string())
        ],
    );
}

#[test]
fn registry_hosts_resolve_like_docker() {
    let registry_host = |repository: &str| {
        crate::reference::parse_repository(repository)
            .unwrap()
            .registry
    };
    assert_eq!(registry_host("localhost:5000/a"), "localhost:5000");
    assert_eq!(registry_host("ghcr.io/a/b"), "ghcr.io");
    assert_eq!(registry_host("library/alpine"), "docker.io");
    assert_eq!(registry_host("alpine"), "docker.io");
}

#[test]
fn the_mounted_objects_come_from_the_spec_in_volume_order() {
    let r = resource(FULL);
    let mounts = mounted_objects(&r.spec);
    let volumes: Vec<String> = pod(&planned(&r).build_jobs[0])
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .filter(|name| mounts.iter().any(|m| m.volume == name))
        .collect();
    let named: Vec<&str> = mounts.iter().map(|m| m.volume).collect();
    assert_eq!(volumes, named);
    assert_eq!(
        mounts[1].to_string(),
        "Secret \"git-cred\" (spec.source.git.secretRef)"
    );
}
