//! The merge Job: `multiarch-operator merge` pushes the image index.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::json;

use super::{
    build::restricted_container, labels, owner_reference, push_secret_volume, registry_host,
    BuilderImages, DOCKER_CONFIG_DIR, RESOURCE_ANNOTATION,
};
use crate::api::MultiArchImage;
use crate::platform::Platform;

/// Architectures the operator image (which runs the merge) is published for.
pub const MERGE_IMAGE_ARCHITECTURES: &[&str] = &["amd64", "arm64"];

/// OCI image-spec annotations the index of a git source carries.
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";

/// The merge Job, given each platform's pushed digest in spec order; the
/// commit of a git source is the one `status.source` records.
pub fn merge_job(
    resource: &MultiArchImage,
    build_id: &str,
    digests: &[(Platform, String)],
    images: &BuilderImages,
) -> Job {
    let commit = resource
        .status
        .as_ref()
        .and_then(|s| s.source.as_ref())
        .map(|s| s.commit.as_str());
    merge_job_for_commit(resource, build_id, digests, images, commit)
}

/// The merge Job of a build of `commit` (git sources): the index is
/// annotated with the source URL (validation refuses URLs with
/// credentials) and the commit.
pub fn merge_job_for_commit(
    resource: &MultiArchImage,
    build_id: &str,
    digests: &[(Platform, String)],
    images: &BuilderImages,
    commit: Option<&str>,
) -> Job {
    let spec = &resource.spec;
    let mut args: Vec<String> = vec!["merge".into()];
    for (platform, digest) in digests {
        args.extend([
            "--platform-image".into(),
            format!("{platform}={}@{digest}", spec.image),
        ]);
    }
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
        args.extend([
            "--insecure-registry".into(),
            registry_host(&spec.image).to_string(),
        ]);
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
    let mut tolerations: Vec<serde_json::Value> = MERGE_IMAGE_ARCHITECTURES
        .iter()
        .map(|arch| json!({"key": "kubernetes.io/arch", "operator": "Equal", "value": arch, "effect": "NoSchedule"}))
        .collect();
    tolerations.extend(
        spec.tolerations
            .iter()
            .map(|t| serde_json::to_value(t).expect("toleration")),
    );
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
                "values": MERGE_IMAGE_ARCHITECTURES,
            }]}],
        }}},
        "tolerations": tolerations,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
        "containers": [{
            "name": "merge",
            "image": images.merge,
            "imagePullPolicy": "IfNotPresent",
            "command": ["multiarch-operator"],
            "args": args,
            "volumeMounts": mounts,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": container_security,
            "resources": {
                "requests": {"cpu": "50m", "memory": "32Mi"},
                "limits": {"memory": "128Mi"},
            },
        }],
        "volumes": volumes,
    });
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
            "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {RESOURCE_ANNOTATION: resource.name_any()},
                },
                "spec": pod_spec,
            },
        },
    }))
}
