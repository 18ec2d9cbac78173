//! The source-resolve Job: resolves `spec.source.git.revision` to the one
//! commit every platform of a build fetches. It mounts the git Secret (the
//! operator never reads it) and nothing else: no push secret, no token.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use serde_json::json;

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::git::{git_container, git_volumes, resolve_script, GIT_UID};
use super::{labels, owner_reference, BuilderImages, BUILD_ID_LABEL, RESOURCE_ANNOTATION};
use crate::api::{GitSource, MultiArchImage};

/// The label naming the resolve run a Job belongs to. Resolve Jobs carry no
/// build id: they come before the build, whose id includes their commit.
pub const SOURCE_RUN_LABEL: &str = "multiarch.dev/source-run";

/// Retries of a resolve pod (a git host hiccup), and its time limit.
pub const RESOLVE_BACKOFF_LIMIT: i32 = 2;
pub const RESOLVE_DEADLINE_SECONDS: i64 = 300;

/// The resolve run of `git` in poll interval number `tick` (0 when the
/// revision is not polled): 8 hex digits of the URL, the revision and the
/// tick. The same source in the same interval is the same run, so the
/// revision is resolved once per interval, and never again without polling.
pub fn source_run(git: &GitSource, tick: u64) -> String {
    let key = serde_json::json!([git.url, git.revision.as_deref().unwrap_or(""), tick]);
    hex::encode(&Sha256::digest(key.to_string().as_bytes())[..4])
}

/// The poll interval `now` falls in (seconds since the Unix epoch), on the
/// operator's own clock; 0 without polling.
pub fn poll_tick(interval: Option<Duration>, now: Duration) -> u64 {
    interval.map_or(0, |i| now.as_secs() / i.as_secs().max(1))
}

/// How long from `now` until the next poll interval begins.
pub fn until_next_tick(interval: Duration, now: Duration) -> Duration {
    let period = interval.as_secs().max(1);
    Duration::from_secs(period - now.as_secs() % period)
}

/// The name of the resolve Job of one run.
pub fn resolve_job_name(resource_name: &str, run: &str) -> String {
    super::object_name(resource_name, &format!("{run}-resolve"))
}

/// The resolve Job of a git source, or None for other sources. Its pod's
/// termination message is the 40-hex commit, alone.
pub fn resolve_job(resource: &MultiArchImage, run: &str, images: &BuilderImages) -> Option<Job> {
    let spec = &resource.spec;
    let git = spec.source.git.as_ref()?;
    let revision = git.revision.clone().unwrap_or_default();
    let mut labels = labels(resource, run, "resolve");
    labels.remove(BUILD_ID_LABEL);
    labels.insert(SOURCE_RUN_LABEL.to_string(), run.to_string());
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
