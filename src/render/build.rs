//! One build Job per platform, pinned to a native node of that platform, or
//! to a node of its `spec.buildOn` platform.
//!
//! Every user-supplied value (build args, paths, URLs) reaches the tools as a
//! separate argument: no shell ever interprets it.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::{json, Value};

use super::cache;
use super::mirrors::{self, RegistryMirror};
use super::storage::BuildStorage;
use super::{
    git, labels, owner_reference, pull_secret_volume, push_secret_volume, staging_tag,
    BuilderImages, DOCKER_CONFIG_DIR, PLATFORM_ANNOTATION, PLATFORM_LABEL, PULL_CONFIG_DIR,
    RESOURCE_ANNOTATION, SOURCE_DIR, SOURCE_VOLUME, WORKSPACE_VOLUME,
};
use crate::api::{BuilderStrategy, MultiArchImage, MultiArchImageSpec};
use crate::platform::Platform;

/// Where a config-writing step leaves the builder's configuration
/// (`registries.conf`, `buildkitd.toml`), on an emptyDir.
const BUILDER_CONFIG_DIR: &str = "/var/run/multiarch/builder";
/// Connection attempts `buildctl-daemonless.sh` makes while buildkitd
/// starts. Upstream's default (10) waits about 2 s in all, which a busy or
/// slow node misses; attempt N sleeps 0.1 + 0.02 N s, so 70 wait about 57 s.
pub const BUILDKIT_CONNECT_RETRIES: u32 = 70;
/// The builder writes the image here, an OCI layout, for the push step.
const IMAGE_LAYOUT: &str = "/workspace/image";
/// The container pushing the built image.
pub const PUSH_CONTAINER: &str = "push";
/// The container exporting buildah's cache, with the push secret.
pub const CACHE_EXPORT_CONTAINER: &str = "export-cache";
/// BuildKit writes its result metadata here; the report step reads it.
const BUILDKIT_METADATA: &str = "/workspace/buildkit-metadata.json";
/// The image buildah builds locally before pushing it.
const BUILDAH_LOCAL_IMAGE: &str = "localhost/multiarch-build:latest";

/// The build Job of one platform, building `commit` of a git source (None:
/// the fetch step resolves the revision itself).
pub fn build_job(
    resource: &MultiArchImage,
    build_id: &str,
    platform: &Platform,
    images: &BuilderImages,
    commit: Option<&str>,
) -> Job {
    let spec = &resource.spec;
    let name = super::build_job_name(&resource.name_any(), build_id, platform);
    let mut labels = labels(resource, build_id, "build");
    labels.insert(PLATFORM_LABEL.into(), platform.slug());

    let mut volumes = vec![images
        .storage
        .volume(WORKSPACE_VOLUME, spec.resources.as_ref())];
    // Each registry Secret is mounted where it is needed only: the pull
    // secret into the build, which runs the Dockerfile's steps; the push
    // secret into the step that pushes, which runs none.
    let mounts = Mounts::of(spec, &mut volumes);
    let mut init_containers = source_containers(spec, images, commit, &mut volumes);
    // The strategy adds its steps; the last init step and the main
    // container come back.
    let (pod_security, last_step, report) = match spec.builder.strategy {
        BuilderStrategy::Buildkit => buildkit(
            spec,
            platform,
            images,
            &mut volumes,
            &mut init_containers,
            &mounts,
        ),
        BuilderStrategy::Buildah => buildah(
            spec,
            build_id,
            platform,
            images,
            &mut volumes,
            &mut init_containers,
            &mounts,
        ),
    };
    init_containers.push(last_step);

    // The builder is asked for `platform` whatever node it runs on.
    let node = node_platform(spec, platform);
    let mut node_selector = spec.node_selector.clone();
    node_selector.insert("kubernetes.io/os".into(), node.node_os().into());
    node_selector.insert("kubernetes.io/arch".into(), node.node_arch().into());
    // GKE and others taint Arm nodes `kubernetes.io/arch=arm64:NoSchedule`.
    let mut tolerations = vec![json!({
        "key": "kubernetes.io/arch", "operator": "Equal",
        "value": node.node_arch(), "effect": "NoSchedule",
    })];
    tolerations.extend(super::user_tolerations(spec));

    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "nodeSelector": node_selector,
        "tolerations": tolerations,
        "securityContext": pod_security,
        "initContainers": init_containers,
        "containers": [report],
        "volumes": volumes,
        // The build never talks to the Kubernetes API.
        "automountServiceAccountToken": false,
    });
    if let Some(account) = &spec.service_account_name {
        pod_spec["serviceAccountName"] = json!(account);
    }
    // The push step runs the operator's image, which may be private.
    let runs_operator_image = pod_spec["containers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["image"] == json!(images.merge)));
    if runs_operator_image && !images.merge_image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = images
            .merge_image_pull_secrets
            .iter()
            .map(|name| json!({"name": name}))
            .collect();
    }
    super::into_job(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": resource.namespace(),
            "labels": labels,
            "annotations": {PLATFORM_ANNOTATION: platform.to_string()},
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            // A disruption (eviction, preemption, node drain, spot reclaim)
            // is not the build's fault: retried without counting against
            // backoffLimit. Follows pkg/controller/job/pod_failure_policy.go.
            "podFailurePolicy": {"rules": [{
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }]},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": pod_annotations(platform, resource),
                },
                "spec": pod_spec,
            },
        },
    }))
}

/// The mounts every step has, and the registry Secrets' mounts, for the
/// steps that may have them.
struct Mounts {
    /// The workspace.
    shared: Vec<Value>,
    /// The pull secret's mount, for the build step.
    pull: Option<Value>,
    /// The push secret's mount, for the push step.
    push: Option<Value>,
}

impl Mounts {
    fn of(spec: &MultiArchImageSpec, volumes: &mut Vec<Value>) -> Mounts {
        let mut mount = |secret: Option<(Value, Value)>| {
            secret.map(|(volume, mount)| {
                volumes.push(volume);
                mount
            })
        };
        Mounts {
            shared: vec![json!({"name": WORKSPACE_VOLUME, "mountPath": "/workspace"})],
            pull: mount(pull_secret_volume(spec)),
            push: mount(push_secret_volume(spec)),
        }
    }
}

/// The platform of the nodes `platform` is built on: its `spec.buildOn`
/// entry (validated: the key is spelled as in `spec.platforms`, which may
/// be an alias), or the platform itself.
pub fn node_platform(spec: &MultiArchImageSpec, platform: &Platform) -> Platform {
    spec.build_on
        .iter()
        .find(|(key, _)| Platform::parse(key).is_ok_and(|k| &k == platform))
        .and_then(|(_, value)| Platform::parse(value).ok())
        .unwrap_or_else(|| platform.clone())
}

/// The build pod's annotations: which resource and platform it works for,
/// and the requests that keep it whole until it finishes. Autoscalers
/// (Karpenter consolidation, cluster-autoscaler scale-down) would otherwise
/// move it, and a service mesh's sidecar would keep the pod running after
/// the build, so the Job would never complete.
fn pod_annotations(platform: &Platform, resource: &MultiArchImage) -> Value {
    json!({
        PLATFORM_ANNOTATION: platform.to_string(),
        RESOURCE_ANNOTATION: resource.name_any(),
        "karpenter.sh/do-not-disrupt": "true",
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
        "sidecar.istio.io/inject": "false",
        "linkerd.io/inject": "disabled",
    })
}

/// Init containers that put the build context at `SOURCE_DIR`: for git,
/// one step fetching exactly `commit`, the only one that sees the git Secret.
fn source_containers(
    spec: &MultiArchImageSpec,
    images: &BuilderImages,
    commit: Option<&str>,
    volumes: &mut Vec<Value>,
) -> Vec<Value> {
    if let Some(config_map) = &spec.source.config_map {
        volumes.push(json!({"name": SOURCE_VOLUME, "configMap": {"name": config_map.name}}));
        return Vec::new();
    }
    let Some(git) = &spec.source.git else {
        return Vec::new();
    };
    volumes.extend(git::git_volumes(git));
    vec![git::fetch_container(git, commit, images)]
}

/// Mounts of the source for the build step: the ConfigMap, if that is the source.
fn source_mounts(spec: &MultiArchImageSpec, mounts: &[Value]) -> Vec<Value> {
    let mut mounts = mounts.to_vec();
    if spec.source.config_map.is_some() {
        mounts.push(json!({"name": SOURCE_VOLUME, "mountPath": SOURCE_DIR, "readOnly": true}));
    }
    mounts
}

fn context_path(spec: &MultiArchImageSpec) -> String {
    join_path(SOURCE_DIR, &spec.context_dir)
}

fn join_path(base: &str, relative: &str) -> String {
    let relative = relative.trim_start_matches("./").trim_end_matches('/');
    if relative.is_empty() || relative == "." {
        base.to_string()
    } else {
        format!("{base}/{relative}")
    }
}

/// Rootless BuildKit: no privileged pod, seccomp and AppArmor unconfined
/// (it makes its own namespaces), state on an emptyDir; pushes by digest.
///
/// On nodes the operator image runs on (`--operator-image-architecture`), the
/// build has the pull secret only: it writes the image and the cache as
/// OCI layouts, and `multiarch-operator push`, alone with the push secret,
/// pushes them. Elsewhere (linux/arm/v7, s390x, ... nodes) no image of the
/// operator runs, and BuildKit pushes from the build step itself, with the
/// push secret: validate refuses that unless the admin allows it
/// (`--allow-build-step-push`).
fn buildkit(
    spec: &MultiArchImageSpec,
    platform: &Platform,
    images: &BuilderImages,
    volumes: &mut Vec<Value>,
    init_containers: &mut Vec<Value>,
    mounts: &Mounts,
) -> (Value, Value, Value) {
    let split = pushes_from_layout(spec, platform, images);
    let image = spec
        .builder
        .image
        .clone()
        .unwrap_or_else(|| images.buildkit.clone());
    volumes.push(
        images
            .storage
            .volume("buildkit-state", spec.resources.as_ref()),
    );
    let mut build_mounts = source_mounts(spec, &mounts.shared);
    build_mounts
        .push(json!({"name": "buildkit-state", "mountPath": "/home/user/.local/share/buildkit"}));
    // Without a privileged pod BuildKit cannot sandbox build steps in a PID
    // namespace of their own; the pod is the sandbox.
    let mut daemon_flags = "--oci-worker-no-process-sandbox".to_string();
    // Base images (and the cache) pulled from an insecure registry: HTTPS
    // without verification first, then plain HTTP (buildkitd's `insecure`
    // and `http`), as the push's `registry.insecure` does; and the admin's
    // mirrors.
    let config = mirrors::buildkitd_toml(&images.mirrors, &insecure_hosts(spec));
    if !config.is_empty() {
        init_containers.push(config_writer(&image, "buildkitd.toml", config, volumes));
        build_mounts.push(
            json!({"name": "builder-config", "mountPath": BUILDER_CONFIG_DIR, "readOnly": true}),
        );
        daemon_flags.push_str(&format!(" --config={BUILDER_CONFIG_DIR}/buildkitd.toml"));
    }
    let context = context_path(spec);
    let dockerfile = join_path(&context, &spec.dockerfile);
    let (dockerfile_dir, dockerfile_name) = dockerfile.rsplit_once('/').expect("an absolute path");
    let output = if split {
        format!("type=oci,dest={IMAGE_LAYOUT},tar=false")
    } else {
        let mut output = format!(
            "type=image,name={},push=true,push-by-digest=true,oci-mediatypes=true",
            spec.image
        );
        if spec.insecure_registry {
            output.push_str(",registry.insecure=true");
        }
        output
    };
    let mut args: Vec<String> = vec![
        "buildctl-daemonless.sh".into(),
        "build".into(),
        // `#N CACHED` lines, which the report step counts.
        "--progress=plain".into(),
        "--frontend=dockerfile.v0".into(),
        format!("--local=context={context}"),
        format!("--local=dockerfile={dockerfile_dir}"),
        "--opt".into(),
        format!("filename={dockerfile_name}"),
        "--opt".into(),
        format!("platform={platform}"),
    ];
    if !spec.target.is_empty() {
        args.extend(["--opt".into(), format!("target={}", spec.target)]);
    }
    for (name, value) in &spec.build_args {
        args.extend(["--opt".into(), format!("build-arg:{name}={value}")]);
    }
    args.extend(cache::buildkit_cache_args(spec, platform, split));
    args.extend(["--output".into(), output]);
    if !split {
        args.extend(["--metadata-file".into(), BUILDKIT_METADATA.into()]);
    }
    // The one registry credential of the build: the pull secret, or where
    // the build pushes, the push secret.
    let auth = if split {
        mounts.pull.as_ref().map(|m| (m, PULL_CONFIG_DIR))
    } else {
        mounts.push.as_ref().map(|m| (m, DOCKER_CONFIG_DIR))
    };
    let mut env = vec![
        json!({"name": "BUILDKITD_FLAGS", "value": daemon_flags}),
        json!({"name": "BUILDCTL_CONNECT_RETRIES_MAX", "value": BUILDKIT_CONNECT_RETRIES.to_string()}),
    ];
    if let Some((mount, dir)) = auth {
        build_mounts.push(mount.clone());
        env.push(json!({"name": "DOCKER_CONFIG", "value": dir}));
    }
    let mut build = json!({
        "name": "build",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": cache::logged(args),
        "env": env,
        "volumeMounts": build_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": true,
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        },
    });
    build["resources"] = images.storage.resources(spec.resources.as_ref());
    let last = if split {
        let cache = match cache::buildkit_cache_ref(spec, platform) {
            Some(reference) => PushCache::Buildkit(reference),
            None => PushCache::None,
        };
        push_container(spec, images, mounts, cache)
    } else {
        report_container(spec, &image, &mounts.shared)
    };
    let pod_security = json!({
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "runAsNonRoot": true,
    });
    (pod_security, build, last)
}

/// Whether `platform`'s build node runs the operator's image, so that the
/// build writes the image to its own storage and `multiarch-operator push`,
/// alone with the push secret, pushes it by digest.
fn pushes_from_layout(
    spec: &MultiArchImageSpec,
    platform: &Platform,
    images: &BuilderImages,
) -> bool {
    operator_image_runs_on(
        &node_platform(spec, platform),
        &images.operator_architectures,
    )
}

/// Whether the operator's image, published for `architectures`, runs on
/// nodes of `node`.
pub fn operator_image_runs_on(node: &Platform, architectures: &[String]) -> bool {
    node.node_os() == "linux" && architectures.iter().any(|a| a == node.node_arch())
}

/// What the push step reports of the cache, besides the image digest.
enum PushCache {
    None,
    /// BuildKit's export, an OCI layout, pushed under this ref.
    Buildkit(String),
    /// buildah's cache repository, which the export step wrote.
    Buildah(String),
}

/// `multiarch-operator push`, on the operator's image: the image (and
/// BuildKit's cache) from their layouts, by digest, with the push secret;
/// it runs nothing of the build and writes the report.
fn push_container(
    spec: &MultiArchImageSpec,
    images: &BuilderImages,
    mounts: &Mounts,
    cache: PushCache,
) -> Value {
    let mut args: Vec<String> = vec![
        "push".into(),
        "--layout".into(),
        IMAGE_LAYOUT.into(),
        "--repository".into(),
        spec.image.clone(),
        "--build-log".into(),
        cache::BUILD_LOG.into(),
        "--report".into(),
        "/dev/termination-log".into(),
    ];
    match cache {
        PushCache::None => {}
        PushCache::Buildkit(reference) => args.extend([
            "--cache-layout".into(),
            cache::BUILDKIT_CACHE_LAYOUT.into(),
            "--cache-to".into(),
            reference,
        ]),
        PushCache::Buildah(repository) => args.extend([
            "--buildah-cache".into(),
            repository,
            "--cache-export-log".into(),
            cache::CACHE_EXPORT_LOG.into(),
        ]),
    }
    // The workspace, read-only: what the build wrote is input here.
    let mut volume_mounts =
        vec![json!({"name": WORKSPACE_VOLUME, "mountPath": "/workspace", "readOnly": true})];
    if let Some(mount) = &mounts.push {
        volume_mounts.push(mount.clone());
        args.extend([
            "--registry-config".into(),
            format!("{DOCKER_CONFIG_DIR}/config.json"),
        ]);
    }
    for host in insecure_hosts(spec) {
        args.extend(["--insecure-registry".into(), host]);
    }
    let mut security = restricted_container();
    security["readOnlyRootFilesystem"] = json!(true);
    json!({
        "name": PUSH_CONTAINER,
        "image": images.merge,
        "imagePullPolicy": "IfNotPresent",
        "command": ["multiarch-operator"],
        "args": args,
        "volumeMounts": volume_mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security,
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": super::MERGE_MEMORY_LIMIT},
        },
    })
}

/// Where BuildKit pushed itself: a fixed script, never built from user
/// input, reporting the pushed digest from BuildKit's metadata and what
/// the build's output says of the cache, as the termination message.
fn report_container(spec: &MultiArchImageSpec, image: &str, mounts: &[Value]) -> Value {
    json!({
        "name": "report-digest",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": cache::buildkit_report(BUILDKIT_METADATA, spec.cache.enabled),
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container(),
    })
}

/// Buildah: `bud` in an init container, writing the image as an OCI layout
/// that `multiarch-operator push` pushes by digest; where the operator's
/// image cannot run, a buildah step pushes it under a staging tag. Root
/// inside the container (no user namespace is assumed) but not
/// privileged: chroot isolation, vfs storage on an emptyDir.
fn buildah(
    spec: &MultiArchImageSpec,
    build_id: &str,
    platform: &Platform,
    images: &BuilderImages,
    volumes: &mut Vec<Value>,
    init_containers: &mut Vec<Value>,
    mounts: &Mounts,
) -> (Value, Value, Value) {
    volumes.push(
        images
            .storage
            .volume("containers-storage", spec.resources.as_ref()),
    );
    let mut storage_mounts = mounts.shared.clone();
    storage_mounts.push(json!({"name": "containers-storage", "mountPath": "/var/lib/containers"}));
    let image = spec
        .builder
        .image
        .clone()
        .unwrap_or_else(|| images.buildah.clone());
    init_containers.push(config_writer(
        &image,
        "registries.conf",
        registries_conf(spec, &images.mirrors),
        volumes,
    ));
    storage_mounts
        .push(json!({"name": "builder-config", "mountPath": BUILDER_CONFIG_DIR, "readOnly": true}));
    // Each step reads the one auth file it mounts; none is buildah's
    // default, so a step without one has no credentials at all.
    let env = |auth: Option<(&Value, &str)>| {
        let mut env = vec![
            json!({"name": "STORAGE_DRIVER", "value": "vfs"}),
            json!({"name": "BUILDAH_ISOLATION", "value": "chroot"}),
            json!({"name": "CONTAINERS_REGISTRIES_CONF", "value": format!("{BUILDER_CONFIG_DIR}/registries.conf")}),
        ];
        if let Some((_, dir)) = auth {
            env.push(json!({"name": "REGISTRY_AUTH_FILE", "value": format!("{dir}/config.json")}));
        }
        env
    };
    let pull = mounts.pull.as_ref().map(|m| (m, PULL_CONFIG_DIR));
    let push_auth = mounts.push.as_ref().map(|m| (m, DOCKER_CONFIG_DIR));
    let with = |auth: Option<(&Value, &str)>| {
        let mut mounts = source_mounts(spec, &storage_mounts);
        mounts.extend(auth.map(|(mount, _)| mount.clone()));
        mounts
    };
    let security = json!({
        "privileged": false,
        "runAsUser": 0,
        // Unpacking base layers that carry file capabilities needs SETFCAP.
        "capabilities": {"add": ["SETFCAP"]},
        "seccompProfile": {"type": "Unconfined"},
        "appArmorProfile": {"type": "Unconfined"},
    });
    let context = context_path(spec);
    // Everything after `bud` and its cache flags, for the build and the
    // push step's cache export alike.
    let mut args: Vec<String> = vec![
        "--platform".into(),
        platform.to_string(),
        "--format".into(),
        "oci".into(),
        "--file".into(),
        join_path(&context, &spec.dockerfile),
        "--tag".into(),
        BUILDAH_LOCAL_IMAGE.into(),
    ];
    if !spec.target.is_empty() {
        args.extend(["--target".into(), spec.target.clone()]);
    }
    // Recent buildah defines $BUILDPLATFORM as its host's platform
    // (imagebuilder's builtinArgDefaults); some releases (Debian 12's 1.28)
    // leave it empty in a `FROM --platform=$BUILDPLATFORM` line, which then
    // pulls the target's base and runs it emulated. Given here: the same
    // value either way. A user's own BUILDPLATFORM build argument comes
    // after it and wins.
    let node = node_platform(spec, platform);
    if &node != platform {
        args.extend(["--build-arg".into(), format!("BUILDPLATFORM={node}")]);
    }
    for (name, value) in &spec.build_args {
        args.extend(["--build-arg".into(), format!("{name}={value}")]);
    }
    args.push(context);
    let cache_repository = cache::buildah_cache_repository(spec, platform);
    let mut build_command: Vec<String> = vec!["buildah".into(), "bud".into()];
    if let Some(repository) = &cache_repository {
        // `--layers` keeps each step's image, which the cache is made of.
        build_command.extend(["--layers".into(), "--cache-from".into(), repository.clone()]);
    }
    build_command.extend(args.iter().cloned());
    let mut build = json!({
        "name": "build",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": cache::logged(build_command.clone()),
        "env": env(pull),
        "volumeMounts": with(pull),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security,
    });
    build["resources"] = images.storage.resources(spec.resources.as_ref());
    if !pushes_from_layout(spec, platform, images) {
        // No image of the operator runs on this node: buildah pushes from
        // a step of its own, which runs none of the Dockerfile's, under a
        // staging tag (it pushes nothing by digest alone).
        let destination = format!("{}:{}", spec.image, staging_tag(build_id, platform));
        let push = json!({
            "name": PUSH_CONTAINER,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": cache::buildah_push(
                BUILDAH_LOCAL_IMAGE,
                &destination,
                !spec.insecure_registry,
                cache_repository.as_deref(),
                &args,
            ),
            "env": env(push_auth),
            // The cache export reads the context again.
            "volumeMounts": with(push_auth),
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": security,
        });
        return (json!({}), build, push);
    }
    // The build also writes the image as an OCI layout (compressed as a
    // push would), with no credential but the pull secret.
    let save =
        format!("buildah push --quiet --format oci {BUILDAH_LOCAL_IMAGE} oci:{IMAGE_LAYOUT}");
    build["command"] = json!(cache::logged_then(build_command, Some(&save)));
    let push_cache = match cache_repository {
        // The cache is made of buildah's own step images, which only
        // buildah exports: a step of its own, with the push secret and
        // flags that run no step of the Dockerfile.
        Some(repository) => {
            init_containers.push(build);
            build = json!({
                "name": CACHE_EXPORT_CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": cache::buildah_export(&repository, &args),
                "env": env(push_auth),
                // The export reads the context again.
                "volumeMounts": with(push_auth),
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": security,
            });
            PushCache::Buildah(repository)
        }
        None => PushCache::None,
    };
    let push = push_container(spec, images, mounts, push_cache);
    (json!({}), build, push)
}

/// buildah's `registries.conf` (containers-registries.conf(5)): short names
/// (`FROM golang`, `FROM org/img`) resolve through docker.io as BuildKit
/// resolves them, instead of failing in `enforcing` mode for want of a TTY;
/// with `insecureRegistry`, the registries of `spec.image` and of the cache
/// may be plain HTTP or unverified TLS, for pulls and pushes alike; the
/// admin's mirrors serve base-image pulls.
pub(super) fn registries_conf(spec: &MultiArchImageSpec, mirrors: &[RegistryMirror]) -> String {
    let mut conf = String::from(
        "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
    );
    // Hosts matched REPOSITORY_PATTERN and mirrors were validated: no
    // quote can end a string.
    conf.push_str(&mirrors::registries_conf_tables(
        mirrors,
        &insecure_hosts(spec),
    ));
    conf
}

/// The registries `insecureRegistry` covers: the image's, and the cache's.
fn insecure_hosts(spec: &MultiArchImageSpec) -> Vec<String> {
    if !spec.insecure_registry {
        return Vec::new();
    }
    let mut hosts = vec![registry_host(&spec.image)];
    hosts.extend(cache::cache_registry_host(spec));
    hosts
}

/// A step writing one builder configuration file that the operator
/// generated (never user text as script: the content is `$1`). It runs the
/// builder image, which the node pulls anyway.
fn config_writer(image: &str, file: &str, content: String, volumes: &mut Vec<Value>) -> Value {
    volumes.push(BuildStorage::small_volume("builder-config"));
    json!({
        "name": "write-builder-config",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", "printf '%s' \"$1\" > \"$2\"", "write-builder-config",
            content, format!("{BUILDER_CONFIG_DIR}/{file}")],
        "volumeMounts": [{"name": "builder-config", "mountPath": BUILDER_CONFIG_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container(),
    })
}

/// The registry host of `spec.image` (validated before rendering).
fn registry_host(image: &str) -> String {
    crate::reference::parse_repository(image)
        .map(|r| r.registry)
        .unwrap_or_default()
}

/// For steps that need nothing: no escalation, no capabilities.
pub(super) fn restricted_container() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}
