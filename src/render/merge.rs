//! The merge Job: `multiarch-operator merge` pushes the image index.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::json;

use super::{
    build::restricted_container, labels, owner_reference, push_secret_volume, BuilderImages,
    DOCKER_CONFIG_DIR, RESOURCE_ANNOTATION,
};
use crate::api::MultiArchImage;
use crate::platform::Platform;
use crate::validate::Validated;

/// Architectures the operator image (which runs the merge) is published
/// for: the default of `--operator-image-architecture`.
pub const MERGE_IMAGE_ARCHITECTURES: &[&str] = &["amd64", "arm64"];

/// The container of the merge Job.
pub const MERGE_CONTAINER: &str = "merge";
/// The merge container's memory limit: it streams layers and holds at most
/// one capped manifest or config per source at a time (src/merge/limits.rs).
pub const MERGE_MEMORY_LIMIT: &str = "128Mi";

/// OCI image-spec annotations the index of a git source carries.
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";

/// The merge Job of one build, rendered whole but for the per-platform
/// digests, which are known only once every platform has pushed.
#[derive(Clone, Debug)]
pub struct MergeTemplate {
    job: Job,
    repository: String,
    platforms: Vec<Platform>,
}

impl MergeTemplate {
    /// `commit`: the resolved commit of a git source (None for others, and
    /// for `render`, which resolves nothing).
    pub fn new(
        resource: &MultiArchImage,
        valid: &Validated,
        build_id: &str,
        images: &BuilderImages,
        commit: Option<&str>,
    ) -> Self {
        MergeTemplate {
            job: merge_job(resource, valid, build_id, images, commit),
            repository: resource.spec.image.clone(),
            platforms: valid.platforms.clone(),
        }
    }

    pub fn name(&self) -> String {
        self.job.name_any()
    }

    /// The merge Job, given each platform's pushed digest in plan order.
    pub fn job(&self, digests: &[String]) -> Job {
        let images = self
            .platforms
            .iter()
            .zip(digests)
            .flat_map(|(platform, digest)| {
                [
                    "--platform-image".to_string(),
                    format!("{platform}={}@{digest}", self.repository),
                ]
            });
        let mut job = self.job.clone();
        let container = job
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|s| s.containers.first_mut())
            .expect("the merge Job has its container");
        let args = container.args.get_or_insert_with(Vec::new);
        // Right after the subcommand, in index order.
        args.splice(1..1, images);
        job
    }
}

/// The merge Job without its `--platform-image` arguments. A git source's
/// index is annotated with its URL (validation refuses URLs with
/// credentials) and the commit built.
fn merge_job(
    resource: &MultiArchImage,
    valid: &Validated,
    build_id: &str,
    images: &BuilderImages,
    commit: Option<&str>,
) -> Job {
    let spec = &resource.spec;
    let mut args: Vec<String> = vec!["merge".into()];
    for tag in &spec.tags {
        args.extend(["--target".into(), format!("{}:{tag}", spec.image)]);
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some((volume, mount)) = push_secret_volume(spec) {
        volumes.push(volume);
        mounts.push(mount);
        args.extend([
            "--registry-config".into(),
            format!("{DOCKER_CONFIG_DIR}/config.json"),
        ]);
    }
    if spec.insecure_registry {
        args.extend(["--insecure-registry".into(), valid.image.registry.clone()]);
    }
    if let Some(git) = &spec.source.git {
        args.extend([
            "--annotation".into(),
            format!("{SOURCE_ANNOTATION}={}", git.url),
        ]);
        if let Some(commit) = commit {
            args.extend([
                "--annotation".into(),
                format!("{REVISION_ANNOTATION}={commit}"),
            ]);
        }
    }
    args.extend(["--digest-file".into(), "/dev/termination-log".into()]);

    // The merge only talks to the registry: any Linux node of an
    // architecture the operator image has will do.
    let mut tolerations: Vec<serde_json::Value> = images
        .operator_architectures
        .iter()
        .map(|arch| json!({"key": "kubernetes.io/arch", "operator": "Equal", "value": arch, "effect": "NoSchedule"}))
        .collect();
    tolerations.extend(super::user_tolerations(spec));
    let mut container_security = restricted_container();
    container_security["readOnlyRootFilesystem"] = json!(true);
    let labels = labels(resource, build_id, "merge");
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{
                "key": "kubernetes.io/arch", "operator": "In",
                "values": images.operator_architectures,
            }]}],
        }}},
        "tolerations": tolerations,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
        "containers": [{
            "name": MERGE_CONTAINER,
            "image": images.merge,
            "imagePullPolicy": "IfNotPresent",
            "command": ["multiarch-operator"],
            "args": args,
            "volumeMounts": mounts,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": container_security,
            "resources": {
                "requests": {"cpu": "50m", "memory": "32Mi"},
                "limits": {"memory": MERGE_MEMORY_LIMIT},
            },
        }],
        "volumes": volumes,
    });
    // For an operator image in a private registry.
    if let Some(account) = &images.merge_service_account {
        pod_spec["serviceAccountName"] = json!(account);
    }
    if !images.merge_image_pull_secrets.is_empty() {
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
            "name": super::merge_job_name(&resource.name_any(), build_id),
            "namespace": resource.namespace(),
            "labels": labels,
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            // A registry hiccup gets retried; the push is idempotent.
            "backoffLimit": 3,
            "podFailurePolicy": {"rules": [{
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }]},
            "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {
                    "labels": labels,
                    // A mesh sidecar would keep the pod running after the push.
                    "annotations": {
                        RESOURCE_ANNOTATION: resource.name_any(),
                        "sidecar.istio.io/inject": "false",
                        "linkerd.io/inject": "disabled",
                    },
                },
                "spec": pod_spec,
            },
        },
    }))
}
