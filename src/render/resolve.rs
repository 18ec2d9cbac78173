//! The source-resolve Job: resolves `spec.source.git.revision` to the one
//! commit every platform of a build fetches. It mounts the git Secret (the
//! operator never reads it) and nothing else: no push secret, no token.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::json;

use super::git::{git_container, git_volumes, resolve_script, GIT_UID};
use super::{labels, owner_reference, BuilderImages, RESOURCE_ANNOTATION};
use crate::api::MultiArchImage;

/// Retries of a resolve pod (a git host hiccup), and its time limit.
pub const RESOLVE_BACKOFF_LIMIT: i32 = 2;
pub const RESOLVE_DEADLINE_SECONDS: i64 = 300;

/// The name of the resolve Job of one attempt (`run` tells attempts apart:
/// a generation, a poll tick).
pub fn resolve_job_name(resource_name: &str, run: &str) -> String {
    super::object_name(resource_name, &format!("{run}-resolve"))
}

/// The resolve Job of a git source, or None for other sources. Its pod's
/// termination message is the 40-hex commit, alone.
pub fn resolve_job(resource: &MultiArchImage, run: &str, images: &BuilderImages) -> Option<Job> {
    let spec = &resource.spec;
    let git = spec.source.git.as_ref()?;
    let revision = git.revision.clone().unwrap_or_default();
    let labels = labels(resource, run, "resolve");
    let container = git_container("resolve", resolve_script(), git, &[&revision], images, &[]);
    let mut tolerations = vec![
        // The git image is published for every common architecture.
        json!({"key": "kubernetes.io/arch", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    tolerations.extend(super::user_tolerations(spec));
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": tolerations,
        "securityContext": {"runAsNonRoot": true, "runAsUser": GIT_UID, "runAsGroup": GIT_UID},
        "containers": [container],
        "volumes": git_volumes(git),
    });
    if let Some(account) = &spec.service_account_name {
        pod_spec["serviceAccountName"] = json!(account);
    }
    Some(super::into_job(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": resolve_job_name(&resource.name_any(), run),
            "namespace": resource.namespace(),
            "labels": labels,
            "ownerReferences": [owner_reference(resource)],
        },
        "spec": {
            "backoffLimit": RESOLVE_BACKOFF_LIMIT,
            "activeDeadlineSeconds": RESOLVE_DEADLINE_SECONDS,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {RESOURCE_ANNOTATION: resource.name_any()},
                },
                "spec": pod_spec,
            },
        },
    })))
}

/// The commit in a resolve pod's termination message, if it is one.
pub fn parse_resolved_commit(message: &str) -> Option<String> {
    let commit = message.trim();
    (commit.len() == 40
        && commit
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then(|| commit.to_string())
}
